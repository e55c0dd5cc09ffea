"""The real actions of an improve round: the pipeline, ``synth train`` and ``synth eval``.

A trained checkpoint plays the agent by being served by vLLM (its tool template and the matching parser) on a port
of its own, for the agent role only (``llm.roles.agent``), in native tool-calling mode; the user simulator, the
tool simulator and the judge stay on the run's endpoints.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import yaml

from synth.config import EndpointConfig, PipelineConfig, RoleConfig
from synth.improve.models import ModelScores, Steps, TrainElsewhere

log = logging.getLogger(__name__)
AGENT_PORT_OFFSET = 1
"""The generating agent is served on ``eval.port + 1`` (``eval.port`` is the evaluator's)."""


@contextlib.contextmanager
def served_agent(config: PipelineConfig, checkpoint: Path) -> Iterator[EndpointConfig]:
    """Serve ``checkpoint`` with the training template and tool parser on ``eval.port + 1`` (or find exactly it
    served there); stop it at the end if this call started it."""
    from synth.evaluate.run import served_checkpoint, serving

    emb = served_checkpoint(config, f"agent-{checkpoint.name}", checkpoint, config.eval.port + AGENT_PORT_OFFSET)
    with serving(emb, config.eval.concurrency) as ep:
        yield ep


def generate(config: PipelineConfig, endpoints: list[EndpointConfig], agent: Path | None) -> int:
    """One round's pipeline run; with ``agent``, that checkpoint is the agent. Returns rows added to train."""
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
    return report.dataset.accepted if report.dataset else 0


def train(config: PipelineConfig, files: list[Path]) -> dict:
    from synth.train.trainer import output_dir, trained
    from synth.train.trainer import train as run_train

    cfg = config.model_copy(update={"train": config.train.model_copy(update={"data_files": files})})
    if config.improve.train_here:
        return run_train(cfg).model_dump()
    done = trained(cfg)
    if done is not None:
        return done.model_dump()
    job = config.run_dir / "train-jobs" / f"{config.train.name or config.train.optimizer}.yaml"
    job.parent.mkdir(parents=True, exist_ok=True)
    # The whole config, so the other machine computes the same fingerprint; its paths are relative to the
    # project root as they are here.
    job.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    raise TrainElsewhere(job, output_dir(cfg))


def fingerprint(config: PipelineConfig, files: list[Path]) -> str:
    from synth.train.trainer import training_fingerprint

    return training_fingerprint(config.model_copy(update={"train": config.train.model_copy(
        update={"data_files": files})}))


def evaluate(config: PipelineConfig, endpoints: list[EndpointConfig], models: dict[str, Path | None],
             task_ids: list[str], round_k: int) -> dict[str, ModelScores]:
    """Held-out scores of each model through ``synth eval`` (synth.evaluate), rows kept per round."""
    from synth.improve.eval_adapter import evaluate_models

    return evaluate_models(config, endpoints, models, task_ids, tag=f"-round{round_k}" if round_k else "")


def real_steps() -> Steps:
    return Steps(generate=generate, train=train, evaluate=evaluate, fingerprint=fingerprint)
