"""The persona user simulator: plays a user with a goal, talks to the agent, and says when it is done.

The simulator sees the conversation from the user's side: the agent's text turns are the other party, its
own turns are its past messages, and tool calls and results are invisible (a user does not see them). Hidden
details are left out of the prompt for the opening message altogether, so at least the first message can
never leak them; after that the prompt asks to give each only when the agent asks for it.

A coding task opens with its problem's request word for word (``verbatim_opening``), written by code, not by the
simulator: the judge runs that problem's tests, so the agent must be asked exactly what they test. In a default
run the 135M simulator opened coding tasks with "Hello, I am a human," or "What do you want to know about
Python?" and never passed the request on.

A task code built (synth.tasks.kinds) has its later messages scripted as well (``TaskRecord.follow_ups``): the user
says them in turn and then ends the episode, with no simulator call.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from pydantic import BaseModel, Field

from synth.agents.turn import reply_chars
from synth.prompts import render
from synth.schemas.messages import Message
from synth.schemas.records import TaskRecord
from synth.schemas.usage import UsageByRole
from synth.sim.world import sub_seed

OPENING_CUE = "Write your first message to the assistant now."
SCRIPT_DONE = "Thanks, that's all."
"""The stop of a scripted conversation (not added to the transcript: a stop ends the episode)."""


class UserReply(BaseModel):
    """What the user simulator answers each turn."""

    message: str = Field(
        min_length=1,
        max_length=600,
        description="Your next message to the assistant, in your persona's voice: one to three sentences.",
    )
    stop: bool = Field(
        description="true only when your goal has been met or the assistant clearly cannot help, which ends "
        "the conversation; false to keep talking."
    )


class StructuredPool(Protocol):
    async def structured(self, messages: list[dict[str, Any]], schema: type[Any], **kwargs: Any) -> Any: ...


def user_view(messages: list[Message]) -> list[dict[str, str]]:
    """The conversation as the user simulator sees it, roles flipped (it is the 'assistant' of its chat)."""
    out: list[dict[str, str]] = []
    for m in messages:
        if m.role == "user":
            out.append({"role": "assistant", "content": m.content or ""})
        elif m.role == "assistant" and not m.tool_calls and m.content:
            out.append({"role": "user", "content": m.content})
    return out


def verbatim_opening(task: TaskRecord) -> str | None:
    """The opening message code writes for ``task``: a grounded task's request with every value its check asks
    for, a coding task's request as it stands; None for the others (the user simulator writes theirs)."""
    if task.opening:
        return task.opening
    if task.difficulty == "coding" and task.rubric is not None and task.rubric.python_tests and task.user_goal.strip():
        return task.user_goal.strip()
    return None


class UserSimulator:
    """One user for one episode; ``reply`` is called once per user turn."""

    def __init__(
        self, pool: StructuredPool, task: TaskRecord, *, seed: int, usage: UsageByRole | None = None
    ) -> None:
        self.pool = pool
        self.task = task
        self.seed = seed
        self.usage = usage

    def prompt(self, messages: list[Message], turn: int) -> list[dict[str, Any]]:
        opening = turn == 0
        details = "" if opening or not self.task.hidden_details else json.dumps(
            self.task.hidden_details, ensure_ascii=False)
        system = render(
            "user_sim",
            persona=self.task.persona or "an ordinary user",
            goal=self.task.user_goal,
            hidden_details=details,
            opening=opening,
        )
        chat: list[dict[str, Any]] = [{"role": "system", "content": system}, *user_view(messages)]
        if opening or chat[-1]["role"] != "user":
            cue = OPENING_CUE if opening else "(The assistant is waiting.)"
            chat.append({"role": "user", "content": cue})
        return chat

    async def reply(self, messages: list[Message], turn: int) -> UserReply:
        """The user's message for ``turn`` (0 = opening). Raises ``ReplyInvalid`` on an unusable reply."""
        if turn == 0 and (opening := verbatim_opening(self.task)) is not None:
            return UserReply(message=opening, stop=False)
        if turn > 0 and self.task.follow_ups is not None:
            # Code scripted the whole conversation (synth.tasks.kinds): its next message, or the end of it.
            if turn <= len(self.task.follow_ups):
                return UserReply(message=self.task.follow_ups[turn - 1], stop=False)
            return UserReply(message=SCRIPT_DONE, stop=True)
        schema = UserReply.model_json_schema()
        props = schema["properties"]["message"]
        props["maxLength"] = min(props["maxLength"], reply_chars(self.pool, "user_sim"))
        reply: UserReply = await self.pool.structured(
            self.prompt(messages, turn), UserReply, role="user_sim",
            seed=sub_seed(self.seed, "user", turn), usage=self.usage, json_schema=schema,
        )
        if turn == 0 and reply.stop:
            # Nothing has happened yet, so a stop here is the model misreading its role, not a finished goal.
            reply = reply.model_copy(update={"stop": False})
        return reply
