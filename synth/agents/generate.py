"""Write an agent's system prompt from its profile and toolset, with the model, under a schema."""

from __future__ import annotations

from pydantic import BaseModel, Field

from synth.agents.profiles import Profile
from synth.llm.client import LLMPool
from synth.prompts import render
from synth.schemas.tools import ToolSpec
from synth.schemas.usage import UsageByRole


class AgentDraft(BaseModel):
    name: str = Field(max_length=60, description="A short name for the assistant, e.g. 'Acme Travel Desk'.")
    system_prompt: str = Field(min_length=40, max_length=1500,
                               description="The system prompt, in the second person ('You are ...').")


async def write_agent(pool: LLMPool, profile: Profile, domain: str, tools: list[ToolSpec], *, seed: int,
                      usage: UsageByRole) -> AgentDraft:
    prompt = render("agent_prompt", profile=profile, domain=domain,
                    tools=[(t.function.name, t.function.description) for t in tools])
    return await pool.structured([{"role": "user", "content": prompt}], AgentDraft, role="generator",
                                 seed=seed, usage=usage, max_tokens=400)


def compose_system_prompt(draft: AgentDraft, profile: Profile) -> str:
    """The model's prompt plus the profile's policies stated verbatim, so every agent carries its rules even
    when a small model leaves them out."""
    rules = "\n".join(f"- {p}" for p in [*profile.policies, *profile.constraints])
    return f"{draft.system_prompt.strip()}\n\nRules you always follow:\n{rules}"
