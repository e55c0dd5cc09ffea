"""The persona user simulator: what it is shown, how its turns are framed, its stop signal."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from synth.config import EndpointConfig, LLMConfig
from synth.llm.client import LLMPool
from synth.schemas.messages import FunctionCall, Message, ToolCall
from synth.schemas.records import TaskRecord
from synth.schemas.usage import UsageByRole
from synth.sim.user import OPENING_CUE, UserReply, UserSimulator, user_view

TASK = TaskRecord(
    id="task-1",
    user_goal="Cancel order A1.",
    persona="A terse night-shift nurse.",
    hidden_details={"order_id": "A1-SECRET"},
)


class ScriptedUserPool:
    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    async def structured(self, messages: list[dict[str, Any]], schema: type[Any], **kw: Any) -> Any:
        self.requests.append({"messages": messages, **kw})
        return schema.model_validate_json(json.dumps(self.replies.pop(0)))


def test_opening_prompt_never_contains_hidden_details() -> None:
    sim = UserSimulator(ScriptedUserPool([]), TASK, seed=0)
    opening = sim.prompt([Message(role="system", content="agent prompt")], 0)
    assert "A1-SECRET" not in json.dumps(opening)
    assert "Cancel order A1." in opening[0]["content"] and "nurse" in opening[0]["content"]
    assert opening[-1] == {"role": "user", "content": OPENING_CUE}
    later = sim.prompt(
        [
            Message(role="system", content="x"),
            Message(role="user", content="cancel pls"),
            Message(role="assistant", content="Which order?"),
        ],
        1,
    )
    assert "A1-SECRET" in later[0]["content"]


def test_user_view_flips_roles_and_hides_tools() -> None:
    call = ToolCall(id="call_00000001", function=FunctionCall(name="get_order", arguments="{}"))
    messages = [
        Message(role="system", content="agent secret prompt"),
        Message(role="user", content="hi"),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id="call_00000001", content="{}"),
        Message(role="assistant", content="Done."),
    ]
    assert user_view(messages) == [
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "Done."},
    ]


async def test_stop_is_ignored_on_the_opening_turn_but_kept_later() -> None:
    pool = ScriptedUserPool(
        [{"message": "Cancel my order", "stop": True}, {"message": "thanks", "stop": True}]
    )
    usage = UsageByRole()
    sim = UserSimulator(pool, TASK, seed=3, usage=usage)
    first = await sim.reply([Message(role="system", content="x")], 0)
    assert first == UserReply(message="Cancel my order", stop=False)
    last = await sim.reply(
        [
            Message(role="system", content="x"),
            Message(role="user", content="Cancel my order"),
            Message(role="assistant", content="Cancelled."),
        ],
        1,
    )
    assert last.stop
    assert [r["role"] for r in pool.requests] == ["user_sim", "user_sim"]
    assert pool.requests[0]["seed"] != pool.requests[1]["seed"]


def test_reply_schema_describes_its_fields_to_the_model() -> None:
    schema = UserReply.model_json_schema()
    assert "description" in schema["properties"]["message"] and "description" in schema["properties"]["stop"]
    assert schema["properties"]["message"]["minLength"] == 1




@pytest.mark.integration
async def test_real_server_opening_message(live_url: str) -> None:
    pool = LLMPool(
        [EndpointConfig(base_url=live_url, api_key=os.environ.get("SYNTH_API_KEY", "EMPTY"))],
        LLMConfig(max_tokens=200, temperature=0.0),
    )
    usage = UsageByRole()
    try:
        reply = await UserSimulator(pool, TASK, seed=0, usage=usage).reply(
            [Message(role="system", content="x")], 0
        )
    finally:
        await pool.aclose()
    assert reply.message.strip() and reply.stop is False
    assert usage.user_sim.calls == 1 and usage.user_sim.prompt_tokens > 0


async def test_a_coding_task_opens_with_its_request_word_for_word_and_no_model_call() -> None:
    from synth.schemas.rubric import Rubric
    from synth.sim.user import verbatim_opening

    request = "Write a Python function factorial(n) that returns n! for a non-negative integer n."
    coding = TaskRecord(id="task-code", difficulty="coding", user_goal=request, persona="A student.",
                        rubric=Rubric(criteria=[], python_tests="assert factorial(0) == 1\n"))
    pool = ScriptedUserPool([{"message": "thanks", "stop": True}])
    sim = UserSimulator(pool, coding, seed=0)
    opening = await sim.reply([Message(role="system", content="agent")], 0)
    assert opening.message == request and not opening.stop and pool.requests == []
    # Later turns are the simulator's again.
    later = await sim.reply([Message(role="system", content="agent"), Message(role="user", content=request),
                             Message(role="assistant", content="```python\n...\n```")], 1)
    assert later.stop and len(pool.requests) == 1
    # Other tasks, and a coding task without tests (nothing checks the wording), still ask the simulator.
    assert verbatim_opening(TASK) is None
    assert verbatim_opening(coding.model_copy(update={"rubric": Rubric(criteria=[])})) is None
