"""The ``train`` stage: one job per optimizer (and seed replicate) on the dataset it declares, a row per job, a
finished job skipped on a re-run, a killed stage resumed at the job it was in, other runs' datasets added as data,
and jobs written out to train elsewhere (``train.here`` false) then taken back as they come."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from synth.config import PipelineConfig
from synth.errors import SynthError
from synth.stages.base import StageWaiting
from synth.stages.outputs import RunOutputs
from synth.stages.runner import run_stage
from synth.stages.train import TrainRecord
from synth.train.job import TrainJob, load_job
from tests.fixtures.runs import FakeTrainer, judged_run, task_ids

SHARE = 0.2
HELD, TRAIN = task_ids(2, SHARE, held=True), task_ids(3, SHARE, held=False)


@pytest.fixture
def cfg(tmp_path: Path) -> PipelineConfig:
    cfg = judged_run(tmp_path, "r", HELD + TRAIN, share=SHARE, train={"optimizers": ["muonclip", "adamw"]})
    run_stage("dataset", cfg, [], progress=False)
    return cfg


def _jobs(cfg: PipelineConfig) -> dict[str, TrainRecord]:
    return {r.name: r for r in RunOutputs(cfg.run_dir).rows("train", TrainRecord)}


def test_one_job_per_optimizer_on_the_declared_dataset(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTrainer().install(monkeypatch)
    summary = run_stage("train", cfg, [], progress=False)
    assert (summary.planned, summary.ok) == (2, 2)
    assert [t["name"] for t in fake.trained] == ["muonclip", "adamw"]
    assert all(t["tasks"] == sorted(TRAIN) for t in fake.trained)  # held-out tasks never reach a job
    rows = _jobs(cfg)
    job = rows["adamw"].job
    assert job is not None and job.optimizer == "adamw" and job.seed == cfg.seed
    assert [d.dataset for d in job.data] == [cfg.run_dir / "dataset"] and job.heldout_share == SHARE
    assert job.output_dir == cfg.run_dir / "train" / "adamw" and job.lr == cfg.train.lr
    assert summary.extra["jobs"]["muonclip"]["checkpoint"] == str(cfg.run_dir / "train" / "muonclip")
    assert summary.extra["jobs"]["muonclip"]["examples"] == len(TRAIN)


def test_finished_jobs_are_skipped_and_a_killed_stage_resumes_at_its_job(cfg: PipelineConfig,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTrainer().install(monkeypatch)
    fake.fail_on = lambda job: job.name == "adamw"  # the process is killed while the second job trains
    with pytest.raises(KeyboardInterrupt):
        run_stage("train", cfg, [], progress=False)
    assert [t["name"] for t in fake.trained] == ["muonclip"] and set(_jobs(cfg)) == {"muonclip"}
    fake.fail_on = None
    again = run_stage("train", cfg, [], progress=False)
    assert (again.ok, again.resumed) == (2, 1) and [t["name"] for t in fake.trained] == ["muonclip", "adamw"]
    third = run_stage("train", cfg, [], progress=False)
    assert third.resumed == 2 and len(fake.trained) == 2
    # Other settings are another job: planned and trained anew (no refusal, the old row is not the new job's).
    changed = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": 3e-4})})
    fourth = run_stage("train", changed, [], progress=False)
    assert fourth.resumed == 0 and [t["lr"] for t in fake.trained[2:]] == [3e-4, 3e-4]


def test_replicates_and_other_runs_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTrainer().install(monkeypatch)
    early = task_ids(1, SHARE, held=False, prefix="early")
    earlier = judged_run(tmp_path, "earlier", HELD + early, share=SHARE)
    run_stage("dataset", earlier, [], progress=False)
    cfg = judged_run(tmp_path, "r", TRAIN, share=SHARE, seed=4,
                     train={"optimizers": ["adamw"], "replicates": 2, "data_runs": ["earlier"]})
    run_stage("dataset", cfg, [], progress=False)
    run_stage("train", cfg, [], progress=False)
    assert [(t["name"], t["seed"]) for t in fake.trained] == [("adamw", 4), ("adamw-seed5", 5), ("adamw-seed6", 6)]
    assert all(t["tasks"] == sorted(TRAIN + early) for t in fake.trained)  # both runs' train splits
    job = _jobs(cfg)["adamw"].job
    assert job is not None and [d.dataset for d in job.data] == [earlier.run_dir / "dataset", cfg.run_dir / "dataset"]
    with pytest.raises(SynthError, match="no dataset has been built"):
        run_stage("train", cfg.model_copy(update={"train": cfg.train.model_copy(update={"data_runs": ["none"]})}),
                  [], progress=False)


def test_jobs_trained_elsewhere_are_written_out_then_taken_back(cfg: PipelineConfig, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTrainer().install(monkeypatch)
    away = cfg.model_copy(update={"train": cfg.train.model_copy(update={"here": False})})
    with pytest.raises(StageWaiting) as stopped:
        run_stage("train", away, [], progress=False)
    files = sorted(str(w.job) for w in stopped.value.waiting)  # type: ignore[attr-defined]
    assert files == [str(cfg.run_dir / "train" / "jobs" / f"{n}.yaml") for n in ("adamw", "muonclip")]
    assert "synth train --job" in stopped.value.hint and fake.trained == []
    spec = yaml.safe_load(Path(files[1]).read_text())
    assert spec["optimizer"] == "muonclip" and spec["data"] == [{"dataset": str(cfg.run_dir / "dataset"), "files": []}]

    # Elsewhere: the job file alone, its data and output at other paths there; then its folder is copied back.
    there = tmp_path / "gpu"
    shutil.copytree(cfg.run_dir / "dataset", there / "dataset")
    job = load_job(Path(files[1]), [f"data=[{{dataset: {there / 'dataset'}}}]", f"output_dir={there / 'out'}"])
    fake.train(job)
    shutil.copytree(there / "out", cfg.run_dir / "train" / "muonclip")
    with pytest.raises(StageWaiting) as still:  # adamw is still away
        run_stage("train", away, [], progress=False)
    assert [str(w.job) for w in still.value.waiting] == [files[0]]  # type: ignore[attr-defined]
    assert set(_jobs(cfg)) == {"muonclip"} and len(fake.trained) == 1  # taken as it is, not trained here

    here = run_stage("train", cfg, [], progress=False)  # train.here: the last job trains on this machine
    assert (here.ok, here.resumed) == (2, 1) and [t["name"] for t in fake.trained] == ["muonclip", "adamw"]


def test_a_job_spec_is_what_synth_train_job_reads(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeTrainer().install(monkeypatch)
    run_stage("train", cfg, [], progress=False)
    job = _jobs(cfg)["muonclip"].job
    assert job is not None and TrainJob.model_validate(job.model_dump(mode="json")) == job


def test_a_job_may_not_be_named_after_the_stages_own_folders(cfg: PipelineConfig) -> None:
    one = cfg.model_copy(update={"train": cfg.train.model_copy(update={"optimizers": ["adamw"], "name": "jobs"})})
    with pytest.raises(SynthError, match="may not be named 'jobs'"):
        run_stage("train", one, [], progress=False)


def test_synth_train_runs_the_stage_one_job_per_optimizer(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from synth.cli import app

    fake = FakeTrainer().install(monkeypatch)
    sets = [f"runs_dir={cfg.runs_dir}", f"dataset.heldout_share={SHARE}", "ray.enabled=false"]
    args = ["train", "--run", "r", "--optimizer", "adamw", *(a for s in sets for a in ("--set", s))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [t["name"] for t in fake.trained] == ["adamw"]
    printed = " ".join(result.output.split())  # rich wraps long lines
    assert f"adamw: 1 steps, loss 2.0 -> 1.0, checkpoint {cfg.run_dir / 'train' / 'adamw'}" in printed
