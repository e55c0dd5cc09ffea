"""The real actions of an improve round: the pipeline, then the round's ``train`` and ``eval`` stages.

A trained checkpoint plays the agent by being served by vLLM (its tool template and the matching parser) on a port
of its own, for the agent role only (``llm.roles.agent``), in native tool-calling mode; the user simulator, the
tool simulator and the judge stay on the run's endpoints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from synth.config import EndpointConfig, PipelineConfig, RoleConfig
from synth.improve.models import Steps
from synth.pipeline import PipelineReport
from synth.stages.summary import StageSummary

AGENT_PORT_OFFSET = 1
"""The generating agent is served on ``eval.port + 1`` (``eval.port`` is the evaluator's)."""


@contextlib.contextmanager
def served_agent(config: PipelineConfig, checkpoint: Path) -> Iterator[EndpointConfig]:
    """Serve ``checkpoint`` with the training template and tool parser on ``eval.port + 1`` (or find exactly it
    served there); stop it at the end if this call started it."""
    from synth.evaluate.episode import served_checkpoint, serving

    emb = served_checkpoint(config, f"agent-{checkpoint.name}", checkpoint, config.eval.port + AGENT_PORT_OFFSET)
    with serving(emb, config.eval.concurrency) as ep:
        yield ep


def generate(config: PipelineConfig, endpoints: list[EndpointConfig], agent: Path | None) -> PipelineReport:
    """One round's pipeline run; with ``agent``, that checkpoint is the agent."""
    from synth.pipeline import run_pipeline
    from synth.report.page import write_page

    if agent is None:
        report = run_pipeline(config, endpoints)
    else:
        with served_agent(config, agent) as ep:
            roles = {**config.llm.roles, "agent": RoleConfig(endpoints=[ep])}
            cfg = config.model_copy(update={"llm": config.llm.model_copy(
                update={"roles": roles, "tool_calling": "native"})})
            report = run_pipeline(cfg, endpoints)
    write_page(config)
    return report


def train(config: PipelineConfig) -> StageSummary:
    from synth.stages.runner import run_stage

    return run_stage("train", config, [])


def evaluate(config: PipelineConfig, endpoints: list[EndpointConfig]) -> StageSummary:
    from synth.stages.runner import run_stage

    return run_stage("eval", config, endpoints)


def real_steps() -> Steps:
    return Steps(generate=generate, train=train, evaluate=evaluate)
