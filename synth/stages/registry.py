"""The explicit list of stages, in pipeline order. Unknown names raise with the valid ones."""

from __future__ import annotations

import importlib

from synth.stages.base import Stage

# name -> "module:Class"; imported on first use so `synth --help` stays fast.
STAGES: dict[str, str] = {
    "tools": "synth.stages.tools:ToolsStage",
    "agents": "synth.stages.agents:AgentsStage",
    "tasks": "synth.stages.tasks:TasksStage",
    "rollouts": "synth.stages.rollouts:RolloutsStage",
    "judge": "synth.stages.judge:JudgeStage",
}
ORDER: list[str] = list(STAGES)


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; valid stages: {', '.join(ORDER)}")
    module, cls = STAGES[name].split(":")
    return getattr(importlib.import_module(module), cls)()
