"""A tiny critic for real: critic examples from a judged run, `synth train --role judge`'s job trained a few
steps on the CPU, then served by vLLM as the eval stage serves a trained checkpoint and asked for verdicts under
the judge's schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import PipelineConfig
from synth.critic.data import build, load_examples
from synth.critic.report import judge_checkpoint
from synth.critic.train import train_judge
from tests.fixtures.critic import SHARE, write_critic_run
from tests.fixtures.train import tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_tiny_critic_trains_and_serves_verdicts(tmp_path: Path) -> None:
    base = tiny_model(tmp_path / "tiny", layers=2, hidden=128, heads=2, kv_heads=1)  # head_dim 64: vLLM's CPU
    run = write_critic_run(tmp_path / "runs")
    data = tmp_path / "critic"
    summary = build([run], data, heldout_share=SHARE)
    (done,) = train_judge("judge", data, ["muonclip"], "tiny-critic",
                          [f"base_model={base}", "max_steps=3", "threads=1", "save_dtype=float32",
                           "micro_batch_tokens=1024"])
    assert done.steps == 3 and done.optimizer == "muonclip"
    assert done.data.examples == summary.splits["train"]["examples"] and done.data.heldout_dropped == 0
    assert (data / "tiny-critic" / "config.json").exists() and (data / "tiny-critic.yaml").exists()

    cfg = PipelineConfig.model_validate({"eval": {"kv_cache_gb": 1}, "embedded": {"max_model_len": 2048}})
    held = load_examples(data / "heldout.jsonl")[:2]
    judged = judge_checkpoint(data / "tiny-critic", "tiny", held, cfg, port=8779, concurrency=2)
    assert [j.id for j in judged.judgments] == [e.id for e in held]
    for j in judged.judgments:
        # Guided decoding holds any model to the judge's schema: every reply is a verdict on the one criterion.
        assert j.error is None and j.score is not None, j
        assert j.completion_tokens > 0 and 0.0 <= j.p_pass <= 1.0
