"""Pydantic models for every boundary between stages, the model and the dataset."""

from synth.schemas.ids import stable_id
from synth.schemas.messages import FunctionCall, Message, ToolCall
from synth.schemas.records import (
    AgentRecord,
    CallRecord,
    RowError,
    TaskRecord,
    ToolBatchRecord,
    TrajectoryRecord,
    VerdictRecord,
)
from synth.schemas.rubric import CodeCheck, Criterion, Rubric
from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
from synth.schemas.usage import Usage, UsageByRole
from synth.schemas.verdict import CheckResult, CriterionScore, Verdict

__all__ = [
    "AgentRecord",
    "CallRecord",
    "CheckResult",
    "CodeCheck",
    "Criterion",
    "CriterionScore",
    "FunctionCall",
    "FunctionSpec",
    "Message",
    "RowError",
    "Rubric",
    "TaskRecord",
    "ToolBatchRecord",
    "ToolCall",
    "ToolProvenance",
    "ToolSpec",
    "TrajectoryRecord",
    "Usage",
    "UsageByRole",
    "Verdict",
    "VerdictRecord",
    "stable_id",
]
