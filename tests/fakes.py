"""Scripted stand-ins for the model, shared by the unit tests of control flow."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from synth.config import LLMConfig
from synth.llm.client import ReplyInvalid
from synth.schemas.usage import Usage, UsageByRole


class ScriptedPool:
    """Answers ``structured`` calls from a script: a JSON string, a model instance, or an exception to raise.

    It stands in for the server only to steer control flow; what the real model does is tested in
    the integration tier.
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
