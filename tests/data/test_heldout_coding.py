"""Held-out coding tasks go by their bank problem: every task of a held-out problem is held out, so no held-out
problem's tests or reference reach ``train``, whatever the task ids (two rounds, or two tasks of one run, can
share a problem)."""

from __future__ import annotations

import json
from pathlib import Path

from synth.config import PipelineConfig
from synth.data.heldout import SANDBOX, is_heldout, problem_key, row_side, side_of, split_keys
from synth.schemas import (
    AgentRecord,
    CheckResult,
    Criterion,
    Message,
    Rubric,
    TaskRecord,
    TrajectoryRecord,
    Verdict,
    VerdictRecord,
)
from synth.stages.base import StageContext
from synth.stages.dataset_build import build_dataset, heldout_task_ids
from synth.stages.rollouts import RolloutsStage
from synth.tasks.rubrics import default_library
from tests.fixtures.dataset import write_stage

SHARE = PipelineConfig().dataset.heldout_share
PROBLEMS = default_library().coding_problems
HELD = next(p for p in PROBLEMS if is_heldout(f"problem:{p.id}", SHARE))
KEPT = next(p for p in PROBLEMS if not is_heldout(f"problem:{p.id}", SHARE))
IDS = [f"task-c{i}" for i in range(40)]
# One task id that is held out on its own and one that is not: the problem must decide for both.
ID_IN = next(t for t in IDS if is_heldout(t, SHARE))
ID_OUT = next(t for t in IDS if not is_heldout(t, SHARE))


def coding_task(task_id: str, problem) -> TaskRecord:
    rubric = Rubric(criteria=[Criterion(id="code_correct", description="The code works.")],
                    python_tests=problem.tests)
    return TaskRecord(id=task_id, agent_id="agent-1", difficulty="coding", user_goal=problem.request, rubric=rubric)


def test_a_coding_task_is_held_out_by_its_problem_and_a_toolless_task_by_its_id() -> None:
    sandbox = {SANDBOX: f"builtin:{SANDBOX}"}
    for task_id in (ID_IN, ID_OUT):
        # The sandbox every coding task holds is not what decides: its problem is.
        assert split_keys(coding_task(task_id, HELD), sandbox) == [f"problem:{HELD.id}"]
        assert side_of(split_keys(coding_task(task_id, HELD), sandbox), SHARE) == "heldout"
        assert side_of(split_keys(coding_task(task_id, KEPT), sandbox), SHARE) == "train"
    plain = TaskRecord(id=ID_IN, agent_id="agent-1", rubric=Rubric(criteria=[]))
    assert split_keys(plain, {}) == [ID_IN] and side_of([ID_IN], SHARE) == "heldout"
    # The sandbox is never held out: a task other than coding that holds it is on the training side.
    assert not is_heldout(f"builtin:{SANDBOX}", 0.99) and split_keys(plain, sandbox) == [f"builtin:{SANDBOX}"]
    # Tests no longer in the bank still give one key for every task that carries them.
    assert problem_key("assert f(1) == 2\n").startswith("tests:")
    assert problem_key("assert f(1) == 2\n") != problem_key("assert f(1) == 3\n")
    # Dataset rows of a dataset built before rows recorded their split keys (rubric as an object, or as JSON
    # where datasets is missing) are split as that dataset split them: by problem, else by task id.
    row = {"task_id": ID_OUT, "rubric": coding_task(ID_OUT, HELD).rubric.model_dump()}
    assert row_side(row, SHARE) == row_side({**row, "rubric": json.dumps(row["rubric"])}, SHARE) == "heldout"
    assert row_side({"task_id": ID_OUT}, SHARE) == "train" and row_side({"task_id": ID_IN}, SHARE) == "heldout"
    # A row that records its keys is split by them, whatever its task id.
    assert row_side({"task_id": ID_IN, "split_keys": [f"problem:{KEPT.id}"]}, SHARE) == "train"


def _answer(traj_id: str, task: TaskRecord, code: str) -> TrajectoryRecord:
    return TrajectoryRecord(id=traj_id, task_id=task.id, agent_id="agent-1", stop_reason="user_stop",
                            messages=[Message(role="system", content="You write Python."),
                                      # The task's id: two tasks of one problem ask alike, and would be
                                      # near-duplicates (synth.data.trajectory_dedup) were their turns the same.
                                      Message(role="user", content=f"{task.id}: {task.user_goal}"),
                                      Message(role="assistant", content=f"```python\n{code}```")])


def test_no_held_out_problem_reaches_train(tmp_path: Path) -> None:
    cfg = PipelineConfig.model_validate({"runs_dir": str(tmp_path), "run": "h", "ray": {"enabled": False}})
    tasks = [coding_task(ID_IN, HELD), coding_task(ID_OUT, HELD), coding_task(ID_IN + "k", KEPT),
             coding_task(ID_OUT + "k", KEPT)]
    write_stage(cfg.run_dir, "agents", [AgentRecord(id="agent-1", system_prompt="You write Python.")])
    write_stage(cfg.run_dir, "tasks", tasks)
    # Every task has a passing answer (its reference) accepted on its tests.
    trajs = [_answer(f"traj-{i}", t, p.reference) for i, (t, p) in enumerate(zip(tasks, [HELD, HELD, KEPT, KEPT],
                                                                                   strict=True))]
    write_stage(cfg.run_dir, "rollouts", trajs)
    ok = Verdict(passed=True, score=1.0, checks=[CheckResult(check_id="python_tests", passed=True)],
                 code_passed=True, verifiable=True, llm_passed=False)
    write_stage(cfg.run_dir, "judge", [VerdictRecord(id=t.id, trajectory_id=t.id, task_id=t.task_id, verdict=ok)
                                  for t in trajs])
    # Rollouts give both tasks of the held-out problem one episode (held out), the others best-of-N.
    plan = RolloutsStage().plan(StageContext(config=cfg))
    per_task = {t.id: sum(i.payload["task_id"] == t.id for i in plan) for t in tasks}
    assert per_task == {ID_IN: 1, ID_OUT: 1, ID_IN + "k": cfg.rollouts.samples, ID_OUT + "k": cfg.rollouts.samples}
    assert sorted(heldout_task_ids(cfg)) == sorted([ID_IN, ID_OUT])

    summary = build_dataset(cfg)
    assert (summary.accepted, summary.heldout, summary.heldout_tasks) == (2, 2, 2)
    from datasets import load_from_disk

    ds = load_from_disk(str(cfg.run_dir / "dataset" / "hf"))
    assert sorted(ds["heldout"]["task_id"]) == sorted([ID_IN, ID_OUT])
    assert sorted(ds["train"]["task_id"]) == sorted([ID_IN + "k", ID_OUT + "k"])
    train_text = json.dumps([ds["train"][i] for i in range(ds["train"].num_rows)], default=str)
    assert HELD.tests.splitlines()[0] not in train_text and HELD.reference.strip() not in train_text
    assert KEPT.reference.strip().splitlines()[0] in train_text

    # synth train drops held-out rows again by the same key, whatever the row's task id says.
    from synth.train.data import build_examples

    held_rows = [ds["heldout"][i] for i in range(ds["heldout"].num_rows)]
    _, stats = build_examples(None, held_rows, max_seq_len=4096, heldout_share=SHARE)
    assert stats.heldout_dropped == 2 and stats.examples == 0
