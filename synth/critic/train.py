"""The judge role's training job: the agent's job spec (``synth.train.job.TrainJob``) with ``role: judge`` and the
critic examples as its data, so the trainer, MuonClip/AdamW, the checkpoint layout and serving are the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synth.config import Optimizer
from synth.critic.data import CriticError, CriticSummary
from synth.train.job import DataSource, TrainJob

JUDGE_DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "grad_accum": 1,
    "micro_batch_tokens": 4096,
    "max_seq_len": 1024,
    "lr": 1e-4,
    "muon_lr": 4.2e-4,  # matched to AdamW's update RMS at lr 1e-4 (docs/studies/data-value.md)
    "warmup_ratio": 0.05,
    # Critic rows are short (the builder keeps them under ~768 tokens): their eager attention fits without
    # recomputation, which would cost a third more per step on the CPU.
    "gradient_checkpointing": "off",
    "save_dtype": "bfloat16",
}
"""Where a judge job differs from an agent job's defaults: one pass over short rows, a step of a few rows."""


def critic_job(data_dir: Path, *, name: str, output_dir: Path, optimizer: Optimizer = "muonclip",
               seed: int = 0, settings: dict[str, Any] | None = None) -> TrainJob:
    """The judge job on ``data_dir``'s train split (``synth critic build``), held out at the share it was
    built with."""
    summary_path = data_dir / "summary.json"
    if not summary_path.exists() or not (data_dir / "train.jsonl").exists():
        raise CriticError(f"{data_dir} holds no critic data (summary.json, train.jsonl)",
                          hint="build it first: `synth critic build --run RUN --out DIR`")
    summary = CriticSummary.model_validate(json.loads(summary_path.read_text()))
    fields = {**JUDGE_DEFAULTS, **(settings or {})}
    return TrainJob(name=name, optimizer=optimizer, role="judge", seed=seed, output_dir=output_dir,
                    data=[DataSource(files=[data_dir / "train.jsonl"])], heldout_share=summary.heldout_share,
                    **fields)


def train_judge(role: str, data_dir: Path | None, optimizers: list[str], name: str | None,
                overrides: list[str] | None) -> list[Any]:
    """``synth train --role judge``: one judge job per optimizer on ``data_dir``, written beside the data
    (``<data>/<name>.yaml``, trainable elsewhere with ``synth train --job``) and trained here."""
    from synth.train.job import load_job, write_job
    from synth.train.trainer import train

    if role != "judge":
        raise CriticError(f"unknown training role {role!r}", hint="give --role agent (the default) or judge")
    if data_dir is None:
        raise CriticError("--role judge needs --data, the critic data folder",
                          hint="build it with `synth critic build --run RUN --out DIR`, then pass --data DIR")
    if name and len(optimizers) > 1:
        raise CriticError("--name names one job, but several optimizers were given",
                          hint="drop --name (each job is named judge-<optimizer>) or give one --optimizer")
    out = []
    for opt in optimizers:
        if opt not in ("muonclip", "adamw"):
            raise CriticError(f"unknown optimizer {opt!r}", hint="give muonclip or adamw")
        job_name = name or f"judge-{opt}"
        job = critic_job(data_dir, name=job_name, output_dir=data_dir / job_name, optimizer=opt)  # type: ignore[arg-type]
        path = write_job(job, data_dir / f"{job_name}.yaml")
        out.append(train(load_job(path, overrides)))
    return out
