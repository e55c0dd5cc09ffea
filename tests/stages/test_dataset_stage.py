"""dataset and publish are stages like the others: registered, declared inputs, run by the runner, resumed when
nothing changed and redone when their inputs or settings did; the commands keep their output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synth.config import PipelineConfig
from synth.data.publish import PublishError
from synth.schemas import AgentRecord, CheckResult, Criterion, Rubric, TaskRecord, Verdict, VerdictRecord
from synth.stages import registry
from synth.stages.runner import StageIncomplete, run_stage
from tests.fixtures.dataset import TOOL, trajectory, write_stage


@pytest.fixture
def cfg(tmp_path: Path) -> PipelineConfig:
    cfg = PipelineConfig(runs_dir=tmp_path, run="d", ray={"enabled": False})
    rubric = Rubric(criteria=[Criterion(id="grounding", kind="core", description="Uses tool results.")])
    write_stage(cfg.run_dir, "agents", [AgentRecord(id="agent-1", domain="weather", system_prompt="You help.",
                                               tools=[TOOL])])
    write_stage(cfg.run_dir, "tasks", [TaskRecord(id="task-3", agent_id="agent-1", user_goal="weather", rubric=rubric)])
    write_stage(cfg.run_dir, "rollouts", [trajectory(1), trajectory(2)])
    _verdicts(cfg, passed=1)
    return cfg


def _verdicts(cfg: PipelineConfig, passed: int) -> None:
    """Judge rows: the first ``passed`` trajectories pass (replacing what the judge held)."""
    folder = cfg.run_dir / "judge"
    for old in folder.glob("data.parquet"):
        old.unlink()
    write_stage(cfg.run_dir, "judge", [
        VerdictRecord(id=f"traj-{i}", trajectory_id=f"traj-{i}", task_id="task-3",
                      verdict=Verdict(passed=i <= passed, score=1.0 if i <= passed else 0.1, llm_passed=i <= passed,
                                      checks=[CheckResult(check_id="c", passed=i <= passed)],
                                      code_passed=i <= passed, verifiable=True))
        for i in (1, 2)])


def test_dataset_and_publish_are_registered_stages() -> None:
    for name in ("dataset", "card", "publish"):
        stage = registry.get_stage(name)
        assert stage.name == name and not stage.uses_llm and stage.local and stage.derived
    assert registry.PIPELINE[-1] == "dataset" and "publish" not in registry.PIPELINE


def test_dataset_stage_builds_then_resumes_then_rebuilds_on_new_rows(cfg: PipelineConfig,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first = run_stage("dataset", cfg, [], progress=False)
    assert (first.planned, first.ok, first.resumed) == (1, 1, 0)
    assert first.extra["dataset"]["accepted"] == 1
    built = json.loads((cfg.run_dir / "dataset" / "summary.json").read_text())
    assert built["accepted"] == 1 and built["trajectories"] == 2  # the dataset's own summary, as before
    assert (cfg.run_dir / "dataset" / "hf").is_dir() and (cfg.run_dir / "dataset" / "README.md").exists()

    import synth.stages.dataset_build as build

    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dataset was built again though nothing changed")

    monkeypatch.setattr(build, "build_dataset", must_not_build)
    again = run_stage("dataset", cfg, [], progress=False)
    assert (again.planned, again.resumed) == (1, 1) and again.extra["dataset"]["accepted"] == 1
    monkeypatch.undo()

    _verdicts(cfg, passed=2)  # the judge's rows changed (a recomputed judge, a quota round)
    rebuilt = run_stage("dataset", cfg, [], progress=False)
    assert rebuilt.resumed == 0 and rebuilt.extra["dataset"]["accepted"] == 2
    assert json.loads((cfg.run_dir / "dataset" / "summary.json").read_text())["accepted"] == 2


def test_dataset_stage_recomputes_on_a_settings_change_instead_of_refusing(cfg: PipelineConfig) -> None:
    run_stage("dataset", cfg, [], progress=False)
    changed = cfg.model_copy(update={"judge": cfg.judge.model_copy(update={"accept": "verifiable"})})
    assert changed.on_change == "refuse"
    summary = run_stage("dataset", changed, [], progress=False)
    assert summary.resumed == 0 and summary.extra["dataset"]["accept_mode"] == "verifiable"
    assert json.loads((cfg.run_dir / "dataset" / "summary.json").read_text())["accept_mode"] == "verifiable"


def test_dataset_stage_rebuilds_a_deleted_dataset(cfg: PipelineConfig) -> None:
    import shutil

    run_stage("dataset", cfg, [], progress=False)
    shutil.rmtree(cfg.run_dir / "dataset")
    summary = run_stage("dataset", cfg, [], progress=False)
    assert summary.ok == 1 and (cfg.run_dir / "dataset" / "summary.json").exists()


def test_dataset_stage_waits_for_the_judge(cfg: PipelineConfig) -> None:
    (cfg.run_dir / "judge" / "data.parquet").unlink()
    with pytest.raises(StageIncomplete, match="'judge'"):
        run_stage("dataset", cfg, [], progress=False)


def test_publish_stage_pushes_once_per_dataset_card_and_repo(cfg: PipelineConfig,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import synth.stages.publish as publish_stage

    pushed: list[tuple[str, bool, str]] = []

    def push(folder: Path, repo_id: str, *, private: bool = False) -> str:
        # The Hub is out of reach in unit tests; what is pushed, where and how often is what this test checks.
        assert (folder / "data").is_dir() and (folder / "summary.json").exists()
        pushed.append((repo_id, private, (folder / "README.md").read_text()))
        return f"https://hub.example/datasets/{repo_id}/commit/{len(pushed)}"

    monkeypatch.setattr(publish_stage, "publish", push)
    judged = cfg.run_dir / "judge" / "data.parquet"
    kept = judged.read_bytes()
    judged.unlink()
    with pytest.raises(StageIncomplete, match=r"'publish' reads 'dataset'"):  # nothing to build a dataset from
        run_stage("publish", _repo(cfg, "me/data"), [], progress=False)
    judged.write_bytes(kept)
    with pytest.raises(PublishError, match="no Hub repo"):
        run_stage("publish", cfg, [], progress=False)
    # The dataset and its card are derived: publish brings them up to date first, then pushes the card as README.
    first = run_stage("publish", _repo(cfg, "me/data"), [], progress=False)
    card = (cfg.run_dir / "card" / "README.md").read_text()
    assert pushed == [("me/data", False, card)] and first.extra["url"].endswith("/1")
    assert card == (cfg.run_dir / "dataset" / "README.md").read_text()  # no evaluation yet: the dataset's card
    again = run_stage("publish", _repo(cfg, "me/data"), [], progress=False)
    assert len(pushed) == 1 and again.resumed == 1 and again.extra["url"].endswith("/1")
    _verdicts(cfg, passed=2)
    run_stage("publish", _repo(cfg, "me/data"), [], progress=False)  # a new build is pushed anew
    run_stage("publish", _repo(cfg, "me/other", private=True), [], progress=False)  # and to another repo
    assert [p[:2] for p in pushed[1:]] == [("me/data", False), ("me/other", True)]


def _repo(cfg: PipelineConfig, repo_id: str, private: bool = False) -> PipelineConfig:
    return cfg.model_copy(update={"publish": cfg.publish.model_copy(update={"repo_id": repo_id, "private": private})})


def _synth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synth", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_the_commands_keep_their_output(cfg: PipelineConfig) -> None:
    sets = ["--set", f"runs_dir={cfg.runs_dir}", "--run", "d", "--set", "ray.enabled=false"]
    done = _synth("dataset", *sets)
    assert done.returncode == 0, done.stderr[-2000:]
    # The dataset's summary as JSON after the builder's progress bars, on stderr as `synth dataset` always printed
    summary = json.loads(done.stderr[done.stderr.index("\n{") + 1:])
    assert summary["accepted"] == 1 and summary["path"] == str(cfg.run_dir / "dataset")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    done = subprocess.run([sys.executable, "-m", "synth", "publish", "--repo-id", "me/data", *sets],
                          capture_output=True, text=True, timeout=300, env={**env, "COLUMNS": "200"})
    assert done.returncode == 1
    assert "export it as HF_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_the_dataset_records_its_heldout_tasks_and_rebuilds_a_row_that_did_not(tmp_path: Path) -> None:
    from synth.stages.dataset import DatasetRecord, built_dataset
    from synth.stages.outputs import RunOutputs
    from synth.stages.store import JournalWriter, StageStore
    from tests.fixtures.runs import judged_run, task_ids

    held, train = task_ids(2, 0.2, held=True), task_ids(2, 0.2, held=False)
    cfg = judged_run(tmp_path, "h", held + train, share=0.2)
    first = run_stage("dataset", cfg, [], progress=False)
    assert first.extra["heldout"] == {"share": 0.2, "rule": "tool-group", "tasks": 2, "task_ids": sorted(held),
                                      "tools": ["get_alerts"], "groups": ["tool:get_alerts"], "problems": [],
                                      "seen": [], "excluded": {}}
    row = built_dataset(RunOutputs(cfg.run_dir))
    assert row is not None and row.heldout is not None and [t.id for t in row.heldout.tasks] == sorted(held)
    assert [a.id for a in row.heldout.agents] == ["agent-2"] and all(t.rubric for t in row.heldout.tasks)

    # A row from a dataset built before the held-out tasks were recorded, or chosen by task id: built again,
    # not taken as it is.
    for stale in (None, row.heldout.model_copy(update={"rule": "task-id"})):
        store = StageStore(cfg.run_dir / "dataset.stage")
        store.parquet.unlink()
        writer = JournalWriter(store.new_journal())
        writer.write(row.model_copy(update={"heldout": stale}))
        writer.close()
        store.compact()
        assert built_dataset(RunOutputs(cfg.run_dir)).heldout == stale  # type: ignore[union-attr]
        again = run_stage("dataset", cfg, [], progress=False)
        rebuilt = RunOutputs(cfg.run_dir).rows("dataset", DatasetRecord)[0].heldout
        assert again.resumed == 0 and rebuilt is not None and rebuilt.rule == "tool-group"
