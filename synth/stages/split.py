"""The run's held-out split (``synth.data.heldout``), read from its stages: the dataset builds its splits by it,
rollouts give a task that never trains one episode, the judge counts the rows that go to train, the report shows
the sides. Each reads it through the stages it declares (tasks, agents, and the tools stage as an optional input)."""

from __future__ import annotations

from synth.config import PipelineConfig
from synth.data.heldout import TaskSplit, ToolGroups
from synth.schemas.records import AgentRecord, TaskRecord, ToolBatchRecord
from synth.stages.outputs import RunOutputs


def task_split(config: PipelineConfig, inputs: RunOutputs | None = None) -> TaskSplit:
    """Every usable task of the run on its side of the held-out split (``synth.data.heldout``) at
    ``dataset.heldout_share``, from its tasks, its agents and the tools stage's synthetic tools (read when that
    stage has finished)."""
    inputs = inputs or RunOutputs(config.run_dir)
    batches = inputs.rows("tools", ToolBatchRecord) if inputs.finished("tools") else []
    return TaskSplit.of(config.dataset.heldout_share, inputs.rows("tasks", TaskRecord),
                        inputs.rows("agents", AgentRecord), ToolGroups.of_batches(batches))
