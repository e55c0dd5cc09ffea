"""Which episodes of a coding task answer in free text: the first ceil(coding_free_text x samples), none of any
other task; the plan carries the choice so a resumed run makes the same one."""

from __future__ import annotations

from pathlib import Path

from synth.config import PipelineConfig, RolloutsStageConfig
from synth.schemas import AgentRecord, Rubric, TaskRecord
from synth.stages.base import StageContext
from synth.stages.rollouts import RolloutsStage, free_text_sample
from tests.fixtures.dataset import write_stage

CODING = TaskRecord(id="t", difficulty="coding", rubric=Rubric(criteria=[], python_tests="assert f() == 1\n"))
PLAIN = TaskRecord(id="t", difficulty="single_call")


def test_share_picks_the_first_samples_of_coding_tasks_only() -> None:
    def picks(share: float, samples: int, task: TaskRecord = CODING) -> list[bool]:
        cfg = RolloutsStageConfig(coding_free_text=share)
        return [free_text_sample(task, k, samples, cfg) for k in range(samples)]

    assert picks(1.0, 4) == [True] * 4 and picks(0.0, 4) == [False] * 4
    assert picks(0.5, 4) == [True, True, False, False] and picks(0.75, 4) == [True, True, True, False]
    assert picks(0.5, 1) == [True]  # a held-out task's one episode
    assert picks(1.0, 4, PLAIN) == [False] * 4


def test_the_plan_carries_the_choice(tmp_path: Path) -> None:
    cfg = PipelineConfig.model_validate({"runs_dir": str(tmp_path), "run": "ft", "ray": {"enabled": False},
                                         "rollouts": {"samples": 4, "coding_free_text": 0.5},
                                         "dataset": {"heldout_share": 0.0}})
    write_stage(cfg.run_dir, "agents", [AgentRecord(id="agent-1", system_prompt="s")])
    write_stage(cfg.run_dir, "tasks", [CODING.model_copy(update={"id": "task-code", "agent_id": "agent-1"}),
                                  PLAIN.model_copy(update={"id": "task-plain", "agent_id": "agent-1"})])
    items = RolloutsStage().plan(StageContext(config=cfg))
    got = {(i.payload["task_id"], i.payload["sample"]): i.payload["free_text"] for i in items}
    assert [got["task-code", k] for k in range(4)] == [True, True, False, False]
    assert not any(got["task-plain", k] for k in range(4))
    assert PipelineConfig().rollouts.coding_free_text == 1.0  # default: every coding episode in free text
