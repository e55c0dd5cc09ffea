"""The explicit list of stages, in pipeline order. Unknown names raise with the valid ones."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type-only: the reading API (synth.stages.outputs) asks this module for row models
    from synth.stages.base import Stage

# name -> "module:Class"; imported on first use so `synth --help` stays fast.
STAGES: dict[str, str] = {
    "tools": "synth.stages.tools:ToolsStage",
    "agents": "synth.stages.agents:AgentsStage",
    "tasks": "synth.stages.tasks:TasksStage",
    "rollouts": "synth.stages.rollouts:RolloutsStage",
    "judge": "synth.stages.judge:JudgeStage",
    "dataset": "synth.stages.dataset:DatasetStage",
    "train": "synth.stages.train:TrainStage",
    "eval": "synth.stages.eval:EvalStage",
    "card": "synth.stages.card:CardStage",
    "publish": "synth.stages.publish:PublishStage",
}
ORDER: list[str] = ["tools", "agents", "tasks", "rollouts", "judge"]
"""The stages that make rows with a model, in order: what the pipeline's report lists and rounds repeat."""
PIPELINE: list[str] = [*ORDER, "dataset"]
"""What `synth pipeline` runs. `train` and `eval` run when asked (`synth train`, `synth eval`, `synth improve`):
they need a GPU or hours of CPU. `card` runs before `publish` (and after `synth eval`); `publish` only when asked
(`synth publish --repo-id`): it needs a Hub token."""


def stage_class(name: str) -> type[Stage]:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; valid stages: {', '.join(STAGES)}")
    module, cls = STAGES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_stage(name: str) -> Stage:
    stage = stage_class(name)()
    if hasattr(stage, "needs"):  # the one-input attribute `inputs` replaced: ignoring it would hide a dependency
        raise TypeError(f"stage {name!r} declares `needs`; declare `inputs = (...)` (the stages it reads) instead")
    unknown = [i for i in stage.inputs if i not in STAGES]
    if unknown:
        raise KeyError(f"stage {name!r} declares inputs that are no stage: {unknown}; valid stages: "
                       f"{', '.join(STAGES)}")
    return stage


def upstream(name: str) -> set[str]:
    """Every stage ``name`` depends on, directly or through its inputs."""
    seen: set[str] = set()
    todo = list(get_stage(name).inputs)
    while todo:
        stage = todo.pop()
        if stage == name:
            raise ValueError(f"stage {name!r} depends on itself through its inputs")
        if stage not in seen:
            seen.add(stage)
            todo.extend(get_stage(stage).inputs)
    return seen


def direct_inputs(name: str) -> list[str]:
    """``name``'s required inputs (not its ``optional`` ones, which are not fingerprinted) without those another
    of them already depends on, in declared order: the fingerprint chains through each stage's inputs, so these
    cover the rest."""
    stage = get_stage(name)
    inputs = [i for i in stage.inputs if i not in stage.optional]
    covered = set().union(*(upstream(i) for i in inputs)) if inputs else set()
    return [i for i in inputs if i not in covered]
