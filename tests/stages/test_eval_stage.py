"""The ``eval`` stage: exactly the held-out tasks the dataset recorded, the base and every trained job (or the
models asked for), one served model after another, a row per episode that a re-run resumes, failures scored as
failed episodes, the report written; the serving and the episodes themselves are stood in for here (the
integration test runs them for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import ConfigError, EndpointConfig, PipelineConfig, load_config
from synth.evaluate.episode import EvalRecord
from synth.stages.eval import EvalStage, NoHeldoutTasks, TrainedOnHeldout, UnknownModel, eval_summary
from synth.stages.fingerprint import StageSettingsChanged
from synth.stages.outputs import RunOutputs
from synth.stages.runner import run_stage
from tests.fixtures.runs import FakeEvaluation, FakeTrainer, fake_checkpoint, judged_run, task_ids

SHARE = 0.2
HELD, TRAIN = task_ids(3, SHARE, held=True), task_ids(2, SHARE, held=False)
ENDPOINTS = [EndpointConfig(base_url="http://127.0.0.1:1/v1")]  # the simulators' and judge's: never called here


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineConfig:
    base = fake_checkpoint(tmp_path / "base-model", "base-weights")
    cfg = judged_run(tmp_path / "runs", "r", HELD + TRAIN, share=SHARE, llm={"model": "m"},
                     train={"optimizers": ["muonclip", "adamw"]}, eval={"base_model": str(base)})
    run_stage("dataset", cfg, [], progress=False)
    FakeTrainer().install(monkeypatch)
    return cfg


def _rows(cfg: PipelineConfig) -> list[EvalRecord]:
    return RunOutputs(cfg.run_dir).rows("eval", EvalRecord)


def test_scores_the_base_and_every_trained_job_on_the_recorded_heldout_tasks(cfg: PipelineConfig,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEvaluation().install(monkeypatch)
    fake.passes = {"muonclip": {HELD[0], HELD[1]}, "adamw": {HELD[0]}, "base:forced": {HELD[2]}}
    base_only = run_stage("eval", cfg, ENDPOINTS, progress=False)  # nothing trained yet: the base alone
    assert eval_summary(base_only).task_ids == sorted(HELD) and list(eval_summary(base_only).models) == ["base"]
    run_stage("train", cfg, [], progress=False)
    done = run_stage("eval", cfg, ENDPOINTS, progress=False)
    result = eval_summary(done)
    # The base plays every task unforced and forced (eval.forced_models), the trained models unforced.
    assert list(result.models) == ["base", "adamw", "muonclip"] and (done.planned, done.resumed) == (12, 6)
    assert fake.served == [str(cfg.eval.base_model), str(cfg.run_dir / "train" / "adamw"),
                           str(cfg.run_dir / "train" / "muonclip")]  # one model at a time, the base once
    assert {t for m, t in fake.played} == set(HELD)  # never a training task
    muon = result.models["muonclip"].overall
    assert (muon.episodes, muon.checks_passed, muon.checked_episodes) == (3, 2, 3)
    assert result.models["adamw"].overall.pass_rate == pytest.approx(1 / 3) and result.models["adamw"].forced is None
    base = result.models["base"]
    assert base.forced is not None and (base.forced.overall.checks_passed, base.overall.checks_passed) == (1, 0)
    # The split is by tool group: no held-out task holds a tool training saw, and the table says so.
    assert result.seen == [] and base.by_tools["seen"].episodes == 0 and base.by_tools["unseen"].episodes == 3
    table = (cfg.run_dir / "eval" / "eval.md").read_text()
    assert (cfg.run_dir / "eval" / "eval.json").exists() and "| single_call | 3 |" in table
    assert "| base | forced | 33% (1/3) |" in table and "empty by construction" in table
    assert "| muonclip | unforced | 67% (2/3) | 67% (2/3) | 2 of 3 | - (0/0) | 67% (2/3) |" in table

    fake.served, fake.played = [], []
    again = run_stage("eval", cfg, ENDPOINTS, progress=False)
    assert again.resumed == 12 and fake.served == [] and fake.played == []  # every episode on disk: nothing served
    assert eval_summary(again).models == result.models


def test_eval_episodes_are_greedy_by_default() -> None:
    from synth.evaluate.episode import agent_pool

    cfg = PipelineConfig()
    assert cfg.eval.temperature == 0.0 and cfg.llm.temperature > 0
    assert agent_pool(cfg, EndpointConfig(base_url="http://127.0.0.1:1/v1"), "m").config.temperature == 0.0
    warm = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"temperature": None})})
    assert agent_pool(warm, EndpointConfig(base_url="http://127.0.0.1:1/v1"), "m").config.temperature == \
        cfg.llm.temperature


def test_the_tasks_are_those_the_dataset_recorded(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeEvaluation().install(monkeypatch)
    first = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"max_tasks": 2})})
    assert eval_summary(run_stage("eval", first, ENDPOINTS, progress=False)).task_ids == sorted(HELD)[:2]
    # The share is the dataset's alone: eval has none to disagree with, and a dataset rebuilt at another share
    # makes the stored episodes stale, which the stage refuses rather than score other tasks under old rows.
    with pytest.raises(ConfigError, match="heldout_share"):
        load_config(overrides=["eval.heldout_share=0.5"])
    other = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"heldout_share": 0.5})})
    with pytest.raises(StageSettingsChanged, match="upstream"):
        run_stage("eval", other, ENDPOINTS, progress=False)


def test_a_model_is_never_scored_on_tasks_it_may_have_trained_on(cfg: PipelineConfig,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEvaluation().install(monkeypatch)
    run_stage("train", cfg, [], progress=False)
    # At 0.6 the training agent's tool is held out as well (its group's key draws 0.58): the dataset, rebuilt at
    # that share, would have the trained models scored on their own training tasks.
    wider = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"heldout_share": 0.6})})
    with pytest.raises(TrainedOnHeldout, match=r"trained with held-out share 0\.2, but the tasks to score were held "
                       r"out at 0\.6"):
        run_stage("eval", wider, ENDPOINTS, progress=False)
    assert fake.played == []
    # The base trained on nothing, and a smaller share holds out only tasks the larger one held out too.
    narrower = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"heldout_share": 0.1})})
    assert eval_summary(run_stage("eval", narrower, ENDPOINTS, progress=False)).task_ids == sorted(HELD)


def test_a_dataset_that_held_out_tasks_by_id_is_refused(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from synth.stages.base import StageContext
    from synth.stages.dataset import built_dataset
    from synth.stages.store import JournalWriter, StageStore

    FakeEvaluation().install(monkeypatch)
    row = built_dataset(RunOutputs(cfg.run_dir))
    assert row is not None and row.heldout is not None
    store = StageStore(cfg.run_dir / "dataset.stage")
    store.parquet.unlink()
    writer = JournalWriter(store.new_journal())
    writer.write(row.model_copy(update={"heldout": row.heldout.model_copy(update={"rule": "task-id"})}))
    writer.close()
    store.compact()
    stage = EvalStage()
    with pytest.raises(NoHeldoutTasks, match="chose its held-out tasks by task-id"):
        stage.heldout(StageContext(config=cfg, stage=stage))


def test_tasks_from_another_run_and_a_dataset_without_heldout_tasks(cfg: PipelineConfig, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    FakeEvaluation().install(monkeypatch)
    later = judged_run(cfg.runs_dir, "later", TRAIN, share=SHARE, llm={"model": "m"},
                       eval={"base_model": str(cfg.eval.base_model)})
    run_stage("dataset", later, [], progress=False)
    with pytest.raises(NoHeldoutTasks, match="recorded no held-out tasks"):
        run_stage("eval", later, ENDPOINTS, progress=False)
    scored = later.model_copy(update={"eval": later.eval.model_copy(update={"tasks_from": "r"})})
    assert eval_summary(run_stage("eval", scored, ENDPOINTS, progress=False)).task_ids == sorted(HELD)


def test_models_asked_for_and_models_that_do_not_exist(cfg: PipelineConfig, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEvaluation().install(monkeypatch)
    outside = fake_checkpoint(tmp_path / "elsewhere" / "mine", "outside-weights")
    asked = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"models": [str(outside)]})})
    assert list(eval_summary(run_stage("eval", asked, ENDPOINTS, progress=False)).models) == ["mine"]
    missing = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"models": ["adamw"]})})
    with pytest.raises(UnknownModel, match="found: none"):
        run_stage("eval", missing, ENDPOINTS, progress=False)
    # A model left out this time keeps its episodes: asked for again, it is not played again.
    run_stage("train", cfg, [], progress=False)
    run_stage("eval", cfg, ENDPOINTS, progress=False)
    fake.played = []
    run_stage("eval", asked, ENDPOINTS, progress=False)
    assert fake.played == [] and len(_rows(cfg)) == 3 * 5  # the base's forced episodes as well


def test_a_retrained_model_gets_new_episodes(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEvaluation().install(monkeypatch)
    run_stage("train", cfg, [], progress=False)
    run_stage("eval", cfg, ENDPOINTS, progress=False)
    fake.played = []
    retrained = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": 5e-4})})
    run_stage("train", retrained, [], progress=False)  # same folders, other weights
    run_stage("eval", retrained, ENDPOINTS, progress=False)
    assert sorted({m for m, _ in fake.played}) == ["adamw", "muonclip"]  # the base's episodes stand


def test_an_episode_that_fails_is_a_failed_episode_not_a_missing_one(cfg: PipelineConfig,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEvaluation().install(monkeypatch)
    fake.passes = {"base": set(HELD)}
    fake.fail = {("base", HELD[0])}
    done = run_stage("eval", cfg, ENDPOINTS, progress=False)
    base = eval_summary(done).models["base"]
    assert (done.failed, base.errored_rows) == (1, 1) and done.errors == {"TimeoutError": 1}
    assert (base.overall.episodes, base.overall.checks_passed, base.overall.errored) == (3, 2, 1)
    failed = next(r for r in _rows(cfg) if r.error is not None)
    assert failed.task_id == HELD[0] and failed.score is not None and failed.score.has_checks


def test_eval_is_a_local_stage_that_reads_the_dataset_and_optionally_train() -> None:
    stage = EvalStage()
    assert stage.inputs == ("dataset", "train") and stage.optional == ("train",) and stage.local and stage.retains


def test_synth_eval_runs_the_stage_and_writes_the_card(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from synth.cli import app

    fake = FakeEvaluation().install(monkeypatch)
    fake.passes = {"base": {HELD[0]}}
    sets = [f"runs_dir={cfg.runs_dir}", "llm.model=m", 'llm.endpoints=[{base_url: "http://127.0.0.1:1/v1"}]',
            f"eval.base_model={cfg.eval.base_model}", f"dataset.heldout_share={SHARE}", "ray.enabled=false"]
    result = CliRunner().invoke(app, ["eval", "--run", "r", "-m", "base", *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert "base: valid calls 33% (1/3), checks passed 33% (1/3)" in printed
    assert "base forced: valid calls 0% (0/3), checks passed 0% (0/3)" in printed
    card = (cfg.run_dir / "card" / "README.md").read_text()
    assert "## Held-out evaluation" in card and "| base | unforced | 33% (1/3) |" in card
    assert "| base | forced | 0% (0/3) |" in card
