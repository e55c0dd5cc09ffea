"""The ``card`` stage: the dataset card with the held-out evaluation, read through declared inputs (the dataset's
card and the eval stage's summary), redone when either changes; neither the dataset nor the eval writes into the
other's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import EndpointConfig, PipelineConfig
from synth.evaluate.report import CARD_BEGIN
from synth.stages.outputs import RunOutputs
from synth.stages.runner import run_stage
from tests.fixtures.runs import FakeEvaluation, FakeTrainer, fake_checkpoint, judged_run, task_ids

SHARE = 0.2
HELD, TRAIN = task_ids(2, SHARE, held=True), task_ids(2, SHARE, held=False)
ENDPOINTS = [EndpointConfig(base_url="http://127.0.0.1:1/v1")]


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineConfig:
    base = fake_checkpoint(tmp_path / "base-model", "base-weights")
    cfg = judged_run(tmp_path / "runs", "r", HELD + TRAIN, share=SHARE, llm={"model": "m"},
                     eval={"base_model": str(base)})
    run_stage("dataset", cfg, [], progress=False)
    FakeTrainer().install(monkeypatch)
    return cfg


def test_the_card_is_the_datasets_until_an_evaluation_adds_its_section(cfg: PipelineConfig,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEvaluation().install(monkeypatch)
    fake.passes = {"base": {HELD[0]}}
    dataset_card = (cfg.run_dir / "dataset" / "README.md").read_text()
    first = run_stage("card", cfg, [], progress=False)
    card = cfg.run_dir / "card" / "README.md"
    assert card.read_text() == dataset_card and first.extra == {"card": str(card), "evaluated": False}

    run_stage("eval", cfg, ENDPOINTS, progress=False)
    assert (cfg.run_dir / "dataset" / "README.md").read_text() == dataset_card  # eval writes no other stage's file
    assert not (cfg.run_dir / "eval" / "card.md").exists()
    second = run_stage("card", cfg, [], progress=False)
    text = card.read_text()
    assert second.resumed == 0 and second.extra["evaluated"]
    assert text.startswith(dataset_card.rstrip("\n")) and text.count(CARD_BEGIN) == 1
    assert "2 held-out tasks" in text and "| base | unforced | 50% (1/2) | 50% (1/2) | 0.50 (n=2) |" in text
    assert "| base | forced |" in text and "empty by construction" in text

    third = run_stage("card", cfg, [], progress=False)
    assert third.resumed == 1 and card.read_text() == text  # nothing changed: nothing rewritten
    run_stage("train", cfg, [], progress=False)
    run_stage("eval", cfg, ENDPOINTS, progress=False)  # a new model's scores: a new card
    fourth = run_stage("card", cfg, [], progress=False)
    assert fourth.resumed == 0 and "| muonclip |" in card.read_text()


def test_a_deleted_card_is_written_again(cfg: PipelineConfig) -> None:
    run_stage("card", cfg, [], progress=False)
    (cfg.run_dir / "card" / "README.md").unlink()
    again = run_stage("card", cfg, [], progress=False)
    assert again.ok == 1 and (cfg.run_dir / "card" / "README.md").exists()
    assert RunOutputs(cfg.run_dir).finished("card")
