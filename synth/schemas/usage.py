"""Token usage, kept per role so a run's cost can be split between agent, simulators and judge."""

from typing import Literal

from pydantic import BaseModel, Field

Role = Literal["agent", "user_sim", "tool_sim", "judge", "generator"]
ROLES: tuple[Role, ...] = ("agent", "user_sim", "tool_sim", "judge", "generator")


class Usage(BaseModel):
    """What was paid for (``calls`` and their tokens: requests a server answered) and, apart, what was answered
    from the run's call cache (``cached_*``: calls an earlier, interrupted run had already paid for)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    cached_calls: int = 0

    def add(self, other: "Usage") -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls
        self.cached_prompt_tokens += other.cached_prompt_tokens
        self.cached_completion_tokens += other.cached_completion_tokens
        self.cached_calls += other.cached_calls

    def as_cached(self) -> "Usage":
        """The same tokens, counted as answered from the cache instead of paid."""
        return Usage(cached_prompt_tokens=self.prompt_tokens, cached_completion_tokens=self.completion_tokens,
                     cached_calls=self.calls)


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
