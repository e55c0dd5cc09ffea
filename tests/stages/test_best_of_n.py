"""Best-of-N rollouts: ``rollouts.samples`` episodes per task, each with its own id and seed, the same on every
plan and on resume; held-out tasks get one; a failed episode still names its task."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import EndpointConfig, PipelineConfig
from synth.data.heldout import is_heldout
from synth.runtime import sandbox
from synth.schemas.ids import stable_id
from synth.schemas.records import AgentRecord, Row, TaskRecord, TrajectoryRecord
from synth.schemas.usage import UsageByRole
from synth.stages.base import StageContext, WorkItem
from synth.stages.rollouts import RolloutsStage
from synth.stages.runner import run_stage
from synth.stages.store import StageStore
from tests.fixtures.dataset import write_stage

TASKS = [f"task-{i}" for i in range(1, 9)]  # 1, 2, 6 and 7 are held out at 0.2


@pytest.fixture
def cfg(tmp_path: Path) -> PipelineConfig:
    cfg = PipelineConfig.model_validate({"runs_dir": str(tmp_path), "run": "bon", "rollouts": {"samples": 3},
                                         "ray": {"enabled": False}})
    write_stage(cfg.run_dir, "agents", [AgentRecord(id="agent-1", system_prompt="s")])
    write_stage(cfg.run_dir, "tasks", [TaskRecord(id=t, agent_id="agent-1", seed=10 + i) for i, t in enumerate(TASKS)])
    return cfg


def test_ids_and_seeds_distinct_and_stable(cfg: PipelineConfig) -> None:
    ctx = StageContext(config=cfg)
    items = RolloutsStage().plan(ctx)
    held = [t for t in TASKS if is_heldout(t, cfg.dataset.heldout_share)]
    assert held and len(held) < len(TASKS)
    assert len(items) == 3 * (len(TASKS) - len(held)) + len(held)  # held-out tasks: one episode each
    assert len({i.id for i in items}) == len(items)
    for task in TASKS:
        mine = [i for i in items if i.payload["task_id"] == task]
        assert [i.payload["sample"] for i in mine] == list(range(1 if task in held else 3))
        assert len({i.seed for i in mine}) == len(mine)  # each sample draws its own numbers
    # Sample 0 keeps the id and seed a one-episode run always had, so older runs resume as they were.
    first = next(i for i in items if i.payload["task_id"] == "task-3" and i.payload["sample"] == 0)
    assert first.id == stable_id("traj", "task-3", 12) and first.seed == 12
    assert [i.model_dump() for i in RolloutsStage().plan(StageContext(config=cfg))] == [i.model_dump() for i in items]
    # More samples later: the first ones keep their ids (a larger N resumes a smaller one).
    more = RolloutsStage().plan(StageContext(config=cfg.model_copy(update={
        "rollouts": cfg.rollouts.model_copy(update={"samples": 5})})))
    assert {i.id for i in items} <= {i.id for i in more}


def test_resume_runs_only_missing_samples(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    done: list[str] = []

    async def fake_process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        done.append(item.id)
        if item.payload["sample"] == 2:
            raise ValueError("the episode failed")
        return TrajectoryRecord(id=item.id, seed=item.seed, task_id=item.payload["task_id"],
                                sample=item.payload["sample"])

    async def no_setup(self, ctx: StageContext) -> None:
        return None

    monkeypatch.setattr(RolloutsStage, "process", fake_process)
    monkeypatch.setattr(RolloutsStage, "setup", no_setup)
    # The stand-in starts no MCP server: whether this machine could confine one (root) is not this test's concern.
    monkeypatch.setattr(sandbox, "confinement_available", lambda: (True, "stand-in episodes start no server"))
    endpoints = [EndpointConfig(base_url="http://127.0.0.1:9/v1")]  # never called by the stand-in
    planned = RolloutsStage().plan(StageContext(config=cfg))
    # An earlier, interrupted run finished the first four rows.
    write_stage(cfg.run_dir, "rollouts", [TrajectoryRecord(id=i.id, seed=i.seed, task_id=i.payload["task_id"],
                                                      sample=i.payload["sample"]) for i in planned[:4]])
    summary = run_stage("rollouts", cfg, endpoints, progress=False)
    assert summary.resumed == 4 and sorted(done) == sorted(i.id for i in planned[4:])
    rows = StageStore(cfg.run_dir / "rollouts").read(TrajectoryRecord)
    assert sorted(r.id for r in rows) == sorted(i.id for i in planned)
    failed = [r for r in rows if r.error is not None]
    # A failed episode keeps its task and sample, so the judge and the dataset can place it.
    assert failed and all(r.task_id in TASKS and r.sample == 2 for r in failed)


async def test_judge_handles_an_episode_with_no_task(cfg: PipelineConfig) -> None:
    from synth.stages.judge import JudgeStage

    stage = JudgeStage()
    ctx = StageContext(config=cfg)
    ctx.cache["tasks"] = {}
    ctx.cache["trajs"] = {"t": TrajectoryRecord(id="t", error={"kind": "validation", "message": "cut off"})}
    row = await stage.process(WorkItem(id="t"), ctx, UsageByRole())
    assert row.verdict is not None and not row.verdict.eligible
    assert "trajectory failed before judging: validation: cut off" in row.verdict.reasons[0]


def test_plan_size_and_acceptance_do_not_make_rows_stale(cfg: PipelineConfig) -> None:
    from synth.stages import fingerprint

    def digest(stage: str, **section: object) -> str:
        part = getattr(cfg, stage).model_copy(update=section)
        return fingerprint.digest(fingerprint.compute(stage, cfg.model_copy(update={stage: part}), "m", None))

    # More samples, more agents (quota growth), another acceptance mode: the same rows stay valid.
    assert digest("rollouts", samples=3) == digest("rollouts", samples=8)
    assert digest("agents", count=1) == digest("agents", count=2)
    assert digest("judge", accept="auto") == digest("judge", accept="verifiable")
    # What shapes a row still counts.
    assert digest("rollouts", max_turns=1) != digest("rollouts", max_turns=2)
    assert digest("judge", pass_threshold=0.6) != digest("judge", pass_threshold=0.7)
