"""Token usage, kept per role so a run's cost can be split between agent, simulators and judge."""

from typing import Literal

from pydantic import BaseModel, Field

Role = Literal["agent", "user_sim", "tool_sim", "judge", "generator"]
ROLES: tuple[Role, ...] = ("agent", "user_sim", "tool_sim", "judge", "generator")


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def add(self, other: "Usage") -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls


class UsageByRole(BaseModel):
    """Usage split by role; ``generator`` covers the stages that write tools, agents and tasks."""

    agent: Usage = Field(default_factory=Usage)
    user_sim: Usage = Field(default_factory=Usage)
    tool_sim: Usage = Field(default_factory=Usage)
    judge: Usage = Field(default_factory=Usage)
    generator: Usage = Field(default_factory=Usage)

    def record(self, role: Role, usage: Usage) -> None:
        getattr(self, role).add(usage)

    def merge(self, other: "UsageByRole") -> None:
        for role in ROLES:
            self.record(role, getattr(other, role))

    def total(self) -> Usage:
        out = Usage()
        for role in ROLES:
            out.add(getattr(self, role))
        return out
