"""One row type per stage. Every row has a stable ``id`` and, when it failed, an ``error`` with the raw output."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from synth.schemas.messages import Message
from synth.schemas.rubric import Rubric
from synth.schemas.tools import ToolSpec
from synth.schemas.usage import UsageByRole
from synth.schemas.verdict import Verdict

Difficulty = Literal["single_call", "multi_call", "clarify", "refuse", "recover", "coding",
                     "single", "choose", "parallel", "no_tool", "follow_up"]
"""A task's kind: the generator writes the first six from a template, code builds the others (synth.tasks.kinds)."""


class RowError(BaseModel):
    """A row that failed keeps what the model said and why it was refused, so it can be inspected and counted."""

    kind: str = Field(description="Short class of failure, e.g. 'validation', 'endpoint', 'tool_sim'.")
    message: str
    raw: str | None = Field(default=None, description="The raw model output that could not be used.")


class Row(BaseModel):
    id: str
    seed: int = 0
    error: RowError | None = None
    usage: UsageByRole = Field(default_factory=UsageByRole)
    model: str | None = None
    node_id: str | None = Field(default=None, description="The Ray node that produced the row; None: in-process.")


class ToolBatchRecord(Row):
    """Synthetic tools grown for one leaf of the domain tree."""

    domain_path: list[str] = Field(default_factory=list)
    tools: list[ToolSpec] = Field(default_factory=list)


class AgentRecord(Row):
    name: str = ""
    domain: str = ""
    system_prompt: str = ""
    tool_ids: list[str] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list, description="OpenAI-form tools of the agent.")
    profile: dict[str, Any] = Field(default_factory=dict, description="Role, tone, policies the prompt was built from.")
    real_tools: dict[str, str] = Field(
        default_factory=dict,
        description="Tools executed for real: name -> MCP server id, or 'builtin' for synth's own (run_python).")


class TaskRecord(Row):
    agent_id: str = ""
    difficulty: Difficulty = "single_call"
    user_goal: str = ""
    persona: str = ""
    hidden_details: dict[str, Any] = Field(default_factory=dict, description="Facts the user reveals only when asked.")
    initial_state: dict[str, Any] = Field(default_factory=dict, description="World state the tools start from.")
    rubric: Rubric | None = None
    opening: str | None = Field(
        default=None,
        description="The user's first message word for word, when code wrote it because a check holds the episode "
        "to its details (grounded tasks); None: the user simulator writes it from user_goal.",
    )
    follow_ups: list[str] | None = Field(
        default=None,
        description="The user's later messages word for word, one a turn, written by code (task kinds code builds: "
        "a follow-up request that needs a second call); the user ends the episode after the last. None: the user "
        "simulator writes the later turns.",
    )

    @property
    def grounded(self) -> bool:
        """Code chose this task's call and wrote its opening (synth.tasks.grounded): one exact call answers it."""
        return self.opening is not None and self.rubric is not None and any(
            c.kind == "tool_called_with" for c in self.rubric.checks)


class CallRecord(BaseModel):
    """How one tool call in a trajectory was answered."""

    tool_call_id: str
    name: str
    mode: Literal["real", "simulated", "schema_error", "unknown_tool", "sandbox"]
    injected: Literal["none", "error", "timeout", "empty", "partial"] = "none"
    ok: bool = True
    server: str | None = Field(default=None, description="The MCP server that answered a real call.")
    patch_applied: bool | None = Field(default=None, description="Whether a simulated call's state change applied.")
    patch_error: str | None = Field(default=None, description="Why a simulated call's state change was dropped.")


class TrajectoryRecord(Row):
    task_id: str = ""
    agent_id: str = ""
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    calls: list[CallRecord] = Field(default_factory=list)
    final_state: dict[str, Any] = Field(default_factory=dict)
    turns: int = 0
    stop_reason: str = ""
    required_first_call: str | None = Field(
        default=None, description="Tool the first agent step was constrained to call (coding tasks), if any; '*': "
        "any of its tools (grounded tasks under rollouts.grounded_calls_first)."
    )
    forced_answer_step: int | None = Field(
        default=None, description="Agent step (0-based) that was constrained to answer without a call "
        "(rollouts.grounded_answer_after_call), if any.")
    sample: int = Field(default=0, ge=0, description="Which of the task's best-of-N episodes this is (0-based).")


class VerdictRecord(Row):
    trajectory_id: str = ""
    task_id: str = ""
    verdict: Verdict | None = None
