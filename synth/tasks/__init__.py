"""Tasks with rubrics: one task per (agent, difficulty), with LLM criteria and code checks."""

from synth.tasks.draft import TaskDraft
from synth.tasks.generate import generate_task
from synth.tasks.rubrics import RubricError, RubricLibrary, default_library, load_rubric_library

__all__ = [
    "RubricError",
    "RubricLibrary",
    "TaskDraft",
    "default_library",
    "generate_task",
    "load_rubric_library",
]
