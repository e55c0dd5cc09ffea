"""The dataset build deduplicates train (synth.data.trajectory_dedup): copies inside the run, copies of a held-out
row and copies of an earlier run's rows are dropped and counted by reason in the summary, the card and the index
beside the dataset; held-out rows stay; off, every row is kept and still indexed; a changed earlier dataset plans
a new build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth.config import PipelineConfig
from synth.data.trajectory_dedup import DROPPED, INDEX_DIR, DedupIndex
from synth.errors import SynthError
from synth.schemas import TrajectoryRecord, Verdict, VerdictRecord
from synth.stages.base import StageContext
from synth.stages.dataset import DatasetStage
from synth.stages.dataset_build import build_dataset, dedup_digests, dedup_sources
from synth.stages.outputs import RunOutputs
from synth.stages.runner import run_stage
from tests.fixtures.dataset import write_stage
from tests.fixtures.runs import judged_run, task_ids

SHARE = 0.2
HELD = task_ids(1, SHARE, held=True)
TRAIN = task_ids(3, SHARE, held=False)
LATER = task_ids(1, SHARE, held=False, prefix="later")


def _copy(cfg: PipelineConfig, of: str, task_id: str, new_id: str, score: float) -> None:
    """Another episode of ``task_id`` whose transcript is ``of``'s (a trajectory id), judged ``score``."""
    src = next(t for t in RunOutputs(cfg.run_dir).rows("rollouts", TrajectoryRecord) if t.id == of)
    task = next(t for t in RunOutputs(cfg.run_dir).rows("rollouts", TrajectoryRecord) if t.id == _traj_of(cfg, task_id))
    write_stage(cfg.run_dir, "rollouts", [src.model_copy(update={"id": new_id, "task_id": task_id,
                                                                 "agent_id": task.agent_id, "seed": 99})])
    write_stage(cfg.run_dir, "judge", [VerdictRecord(id=new_id, trajectory_id=new_id, task_id=task_id, verdict=Verdict(
        passed=True, score=score, code_passed=True, verifiable=True, llm_passed=True))])


def _traj_of(cfg: PipelineConfig, task_id: str) -> str:
    """The episode ``judged_run`` wrote for ``task_id``."""
    return next(t.id for t in RunOutputs(cfg.run_dir).rows("rollouts", TrajectoryRecord)
                if t.task_id == task_id and t.id.startswith(f"{cfg.run}-traj-"))


@pytest.fixture
def earlier(tmp_path: Path) -> PipelineConfig:
    """Run ``a``: a held-out task and three training tasks; a second episode copying a training one (judged
    lower), and a training episode copying the held-out one."""
    cfg = judged_run(tmp_path, "a", HELD + TRAIN, share=SHARE)
    _copy(cfg, _traj_of(cfg, TRAIN[0]), TRAIN[0], "a-copy", score=0.9)
    _copy(cfg, _traj_of(cfg, HELD[0]), TRAIN[1], "a-copies-heldout", score=1.0)
    return cfg


def test_copies_inside_the_run_and_of_a_heldout_row_leave_train(earlier: PipelineConfig) -> None:
    from datasets import load_from_disk

    summary = build_dataset(earlier)
    d = summary.dedup
    assert d is not None and (d.checked, d.within_run, d.near_heldout, d.against, d.dropped) == (5, 1, 1, {}, 2)
    assert (summary.accepted, summary.heldout) == (3, 1)  # the held-out row stays; nothing moves across
    ds = load_from_disk(str(earlier.run_dir / "dataset" / "hf"))
    assert sorted(ds["train"]["id"]) == sorted(_traj_of(earlier, t) for t in TRAIN)  # the higher-scored original
    assert ds["heldout"]["id"] == [_traj_of(earlier, HELD[0])]
    assert all(i not in ds["rejected"]["id"] for i in ("a-copy", "a-copies-heldout"))
    folder = earlier.run_dir / "dataset" / INDEX_DIR
    dropped = [json.loads(line) for line in (folder / DROPPED).read_text().splitlines()]
    assert {x["id"]: (x["reason"], x["duplicate_of"]) for x in dropped} == {
        "a-copy": ("within_run", _traj_of(earlier, TRAIN[0])),
        "a-copies-heldout": ("heldout", _traj_of(earlier, HELD[0]))}
    index = DedupIndex.load(earlier.run_dir / "dataset")
    assert sorted(zip(index.ids, index.splits, strict=True)) == sorted(
        [*((i, "train") for i in ds["train"]["id"]), (ds["heldout"]["id"][0], "heldout")])
    card = (earlier.run_dir / "dataset" / "README.md").read_text()
    assert "## Deduplication" in card and "| near-duplicates dropped from train | 2 |" in card
    assert "| near a held-out row | 1 |" in card and "(the first, by judge score then id, is kept) | 1 |" in card
    assert json.loads((earlier.run_dir / "dataset" / "summary.json").read_text())["dedup"]["dropped"] == 2


def test_copies_of_an_earlier_run_are_dropped_and_named_by_it(earlier: PipelineConfig, tmp_path: Path) -> None:
    run_stage("dataset", earlier, [], progress=False)
    # Run b asks TRAIN[0] again (a copy of a's row) and a task of its own; it checks against a.
    later = judged_run(tmp_path, "b", [TRAIN[0], *LATER], share=SHARE, dataset={"heldout_share": SHARE,
                                                                                  "dedup": {"runs": ["a"]}})
    built = run_stage("dataset", later, [], progress=False)
    d = built.extra["dataset"]["dedup"]
    assert (d["against"], d["within_run"], d["near_heldout"], built.extra["dataset"]["accepted"]) == (
        {"a": 1}, 0, 0, 1)
    assert "| near a train row of `a` | 1 |" in (later.run_dir / "dataset" / "README.md").read_text()
    # Rebuilding a with other rows changes what b checks against: b's dataset is planned anew.
    before = DatasetStage().plan(_ctx(later))[0].id
    _copy(earlier, _traj_of(earlier, TRAIN[2]), TRAIN[2], "a-another", score=0.5)
    run_stage("dataset", earlier, [], progress=False)
    assert DatasetStage().plan(_ctx(later))[0].id != before
    # A run with nothing earlier to check plans as before deduplication: no digest is added.
    assert dedup_digests(earlier) == {}
    # An earlier run without a dataset says so.
    missing = later.model_copy(update={"dataset": later.dataset.model_copy(update={
        "dedup": later.dataset.dedup.model_copy(update={"runs": ["none"]})})})
    with pytest.raises(SynthError, match="no dataset has been built"):
        build_dataset(missing)


def _ctx(cfg: PipelineConfig) -> StageContext:
    return StageContext(config=cfg, stage=DatasetStage())


def test_improve_rounds_check_the_runs_they_train_with(tmp_path: Path) -> None:
    cfg = PipelineConfig(runs_dir=tmp_path, run="round-3", train={"data_runs": ["round-1", "round-2", "round-3"]},
                         dataset={"dedup": {"runs": ["round-1", "x"], "indexes": [str(tmp_path / "pub")]}})
    assert dedup_sources(cfg) == {"round-1": tmp_path / "round-1" / "dataset", "x": tmp_path / "x" / "dataset",
                                  "round-2": tmp_path / "round-2" / "dataset", str(tmp_path / "pub"): tmp_path / "pub"}
    alone = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={
        "dedup": cfg.dataset.dedup.model_copy(update={"data_runs": False})})})
    assert list(dedup_sources(alone)) == ["round-1", "x", str(tmp_path / "pub")]


def test_off_keeps_every_row_and_still_indexes_them(earlier: PipelineConfig) -> None:
    off = earlier.model_copy(update={"dataset": earlier.dataset.model_copy(update={
        "dedup": earlier.dataset.dedup.model_copy(update={"enabled": False})})})
    summary = build_dataset(off)
    assert summary.dedup is not None and not summary.dedup.enabled and summary.dedup.dropped == 0
    assert summary.accepted == 5
    assert len(DedupIndex.load(off.run_dir / "dataset")) == 6  # five train rows and the held-out one
    assert "Off (`dataset.dedup.enabled: false`)" in (off.run_dir / "dataset" / "README.md").read_text()
