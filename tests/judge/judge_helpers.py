"""Helpers for judge tests: a scripted pool (control flow only) and hand-made trajectories."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

from pydantic import BaseModel, ValidationError

from synth.config import LLMConfig
from synth.llm.client import ReplyInvalid
from synth.schemas.messages import FunctionCall, Message, ToolCall
from synth.schemas.records import CallRecord, TaskRecord, TrajectoryRecord
from synth.schemas.rubric import CodeCheck, Criterion, Rubric
from synth.schemas.usage import Usage, UsageByRole

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class ScriptedPool:
    """Answers ``structured`` calls from a script: a JSON string, a model instance, or an exception to raise.

    It stands in for the server only to steer control flow; what the real model does is tested in
    ``test_judge_integration.py``.
    """

    def __init__(self, replies: list[Any]) -> None:
        self.replies = list(replies)
        self.calls: list[dict[str, Any]] = []
        self.config = LLMConfig()

    async def model(self) -> str:
        return "scripted"

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: type[BaseModel],
        *,
        role: str,
        seed: int | None = None,
        usage: UsageByRole | None = None,
        json_schema: dict[str, Any] | None = None,
        **params: Any,
    ) -> BaseModel:
        self.calls.append(
            {
                "messages": messages,
                "schema": schema,
                "role": role,
                "seed": seed,
                "json_schema": json_schema,
                "params": params,
            }
        )
        if usage is not None:
            usage.record(role, Usage(prompt_tokens=10, completion_tokens=5, calls=1))  # type: ignore[arg-type]
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, BaseModel):
            return reply
        raw = reply if isinstance(reply, str) else json.dumps(reply)
        try:
            return schema.model_validate_json(raw)
        except ValidationError as exc:
            raise ReplyInvalid(
                f"{schema.__name__}: reply does not fit: {exc.errors()[0]['msg']}", raw
            ) from exc


def call(call_id: str, name: str, arguments: dict[str, Any] | str) -> ToolCall:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=args))


def weather_trajectory(
    final: str | None = "It is 18°C and sunny in Paris right now.", **extra: Any
) -> TrajectoryRecord:
    """user asks, assistant calls get_weather(Paris), tool answers, assistant reports."""
    messages = [
        Message(role="system", content="You are a weather assistant."),
        Message(role="user", content="What's the weather in Paris?"),
        Message(role="assistant", tool_calls=[call("call_1", "get_weather", {"city": "Paris"})]),
        Message(role="tool", tool_call_id="call_1", content='{"temp_c": 18, "sky": "sunny"}'),
    ]
    if final is not None:
        messages.append(Message(role="assistant", content=final))
    data: dict[str, Any] = {
        "id": "traj-1",
        "task_id": "task-1",
        "agent_id": "agent-1",
        "tools": [WEATHER_TOOL],
        "messages": messages,
        "calls": [CallRecord(tool_call_id="call_1", name="get_weather", mode="simulated")],
        "final_state": {"cities": {"paris": {"temp_c": 18, "sky": "sunny"}}},
    }
    data.update(extra)
    return TrajectoryRecord(**data)


def weather_task(
    criteria: list[Criterion] | None = None, checks: list[CodeCheck] | None = None
) -> TaskRecord:
    criteria = (
        criteria
        if criteria is not None
        else [
            Criterion(
                id="grounding",
                kind="core",
                description="Facts come from tool results.",
                weight=2,
                required=True,
            ),
            Criterion(id="helpfulness", kind="core", description="Answers the question.", weight=1),
        ]
    )
    checks = (
        checks
        if checks is not None
        else [
            CodeCheck(
                id="calls_weather", kind="tool_called_with", tool="get_weather", arguments={"city": "Paris"}
            ),
            CodeCheck(id="mentions_18", kind="final_mentions", value="18"),
        ]
    )
    return TaskRecord(
        id="task-1",
        agent_id="agent-1",
        user_goal="What's the weather in Paris?",
        rubric=Rubric(criteria=criteria, checks=checks),
    )


def server_url() -> str | None:
    """The OpenAI-compatible server to run integration tests against, or None when nothing answers."""
    url = os.environ.get("SYNTH_BASE_URL", "").split(",")[0].strip() or "http://127.0.0.1:8765/v1"
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/models", timeout=3) as response:
            return url if response.status == 200 else None
    except OSError:
        return None
