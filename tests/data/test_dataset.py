"""The dataset builder on hand-made rows: splits, OpenAI form, the TRL view, the card, publish without a token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth.config import PipelineConfig
from synth.data.heldout import is_heldout
from synth.data.publish import PublishError, publish
from synth.schemas import (
    AgentRecord,
    CallRecord,
    CheckResult,
    Criterion,
    FunctionCall,
    Message,
    Rubric,
    TaskRecord,
    ToolCall,
    TrajectoryRecord,
    Verdict,
    VerdictRecord,
)
from synth.stages.dataset_build import build_dataset
from synth.stages.store import JournalWriter, StageStore

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}


def _write(run_dir: Path, stage: str, rows: list) -> None:
    store = StageStore(run_dir / stage)
    writer = JournalWriter(store.new_journal())
    writer.write_many(rows)
    writer.close()
    store.compact()


def _trajectory(i: int) -> TrajectoryRecord:
    call = ToolCall(id=f"call_{i}", function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}'))
    return TrajectoryRecord(
        id=f"traj-{i}", task_id="task-3", agent_id="agent-1", tools=[TOOL], seed=i, model="m", turns=1,
        stop_reason="user_stop",
        messages=[Message(role="system", content="You help."), Message(role="user", content="Weather in Oslo?"),
                  Message(role="assistant", tool_calls=[call]),
                  Message(role="tool", tool_call_id=f"call_{i}", content='{"temp_c": 3}'),
                  Message(role="assistant", content="It is 3 °C in Oslo.")],
        calls=[CallRecord(tool_call_id=f"call_{i}", name="get_weather", mode="simulated")],
    )


@pytest.fixture
def cfg(tmp_path: Path) -> PipelineConfig:
    cfg = PipelineConfig(runs_dir=tmp_path, run="d")
    assert not is_heldout("task-3", cfg.dataset.heldout_share)  # the fixture's one task is a training task
    rubric = Rubric(criteria=[Criterion(id="grounding", kind="core", description="Uses tool results.")])
    _write(cfg.run_dir, "agents", [AgentRecord(id="agent-1", domain="weather", system_prompt="You help.",
                                               tools=[TOOL])])
    _write(cfg.run_dir, "tasks", [TaskRecord(id="task-3", agent_id="agent-1", user_goal="weather", rubric=rubric)])
    _write(cfg.run_dir, "rollouts", [_trajectory(1), _trajectory(2),
                                     TrajectoryRecord(id="traj-3", task_id="task-3", agent_id="agent-1",
                                                      error={"kind": "validation", "message": "bad"})])
    _write(cfg.run_dir, "judge", [
        VerdictRecord(id="traj-1", trajectory_id="traj-1", task_id="task-3",
                      verdict=Verdict(passed=True, score=1.0, checks=[CheckResult(check_id="c", passed=True)],
                                      code_passed=True, verifiable=True, llm_passed=True)),
        VerdictRecord(id="traj-2", trajectory_id="traj-2", task_id="task-3",
                      verdict=Verdict(passed=False, score=0.2, reasons=["weighted score 0.20 is below 0.60"],
                                      llm_passed=False)),
    ])
    return cfg


def test_splits_and_openai_form(cfg: PipelineConfig) -> None:
    from datasets import load_from_disk

    summary = build_dataset(cfg)
    assert (summary.accepted, summary.rejected, summary.errored) == (1, 1, 1)
    ds = load_from_disk(str(cfg.run_dir / "dataset" / "hf"))
    train = ds["train"][0]
    assert train["id"] == "traj-1" and train["verdict"]["passed"] is True
    assert train["tools"] == [TOOL]  # tools round-trip exactly, whatever their schema
    call = train["messages"][2]["tool_calls"][0]
    assert call["function"]["arguments"] == '{"city": "Oslo"}'
    assert train["messages"][3] == {"role": "tool", "content": '{"temp_c": 3}', "tool_calls": [],
                                    "tool_call_id": "call_1", "name": None}
    assert ds["rejected"][0]["verdict"]["reasons"] == ["weighted score 0.20 is below 0.60"]


def test_training_view_has_argument_objects(cfg: PipelineConfig) -> None:
    from datasets import load_dataset

    build_dataset(cfg)
    sft = load_dataset("parquet", data_files=str(cfg.run_dir / "dataset" / "sft" / "*.parquet"))["train"]
    assert sft.num_rows == 1
    assert sft[0]["messages"][2]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}


def test_card_has_metadata_and_statistics(cfg: PipelineConfig) -> None:
    import yaml

    build_dataset(cfg)
    card = (cfg.run_dir / "dataset" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert {c["config_name"] for c in meta["configs"]} == {"default", "sft"}
    assert "| accepted (train) | 1 |" in card and "| rejected | 1 |" in card
    assert json.loads((cfg.run_dir / "dataset" / "summary.json").read_text())["errored"] == 1


def test_empty_split_still_loads(tmp_path: Path) -> None:
    from datasets import load_from_disk

    cfg = PipelineConfig(runs_dir=tmp_path, run="none")
    for stage in ("agents", "tasks", "rollouts", "judge"):
        _write(cfg.run_dir, stage, [])
    summary = build_dataset(cfg)
    assert summary.trajectories == 0
    splits = load_from_disk(str(cfg.run_dir / "dataset" / "hf"))
    assert splits["train"].num_rows == 0 and "messages" in splits["train"].column_names


def test_publish_without_token_says_what_to_do(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    build_dataset(cfg)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(PublishError, match="export it as HF_TOKEN"):
        publish(cfg.run_dir / "dataset", "me/data")


def test_heldout_tasks_never_enter_train(cfg: PipelineConfig) -> None:
    from datasets import load_from_disk

    from synth.stages.dataset_build import heldout_task_ids

    # task-1 is held out (by its id); give it an accepted trajectory: it must go to `heldout`, not `train`.
    assert is_heldout("task-1", cfg.dataset.heldout_share)
    rubric = Rubric(criteria=[Criterion(id="grounding", kind="core", description="Uses tool results.")])
    _write(cfg.run_dir, "tasks", [TaskRecord(id="task-1", agent_id="agent-1", user_goal="weather", rubric=rubric)])
    held = _trajectory(9).model_copy(update={"id": "traj-9", "task_id": "task-1"})
    _write(cfg.run_dir, "rollouts", [held])
    _write(cfg.run_dir, "judge", [VerdictRecord(
        id="traj-9", trajectory_id="traj-9", task_id="task-1",
        verdict=Verdict(passed=True, score=1.0, code_passed=True, verifiable=True, llm_passed=True))])
    summary = build_dataset(cfg)
    assert heldout_task_ids(cfg) == ["task-1"]
    assert (summary.accepted, summary.heldout, summary.heldout_tasks) == (1, 1, 1)
    ds = load_from_disk(str(cfg.run_dir / "dataset" / "hf"))
    assert "traj-9" not in ds["train"]["id"] and ds["heldout"]["id"] == ["traj-9"]
    assert ds["heldout"][0]["heldout"] is True and all(not h for h in ds["train"]["heldout"])
    assert ds["train"][0]["accepted_by"] == "verifiable"  # auto, too few pairs to trust the judge
    from datasets import load_dataset

    view = load_dataset("parquet", data_files=str(cfg.run_dir / "dataset" / "sft" / "*.parquet"))["train"]
    assert view.num_rows == 1
    # Everyone who lists held-out tasks gets the same answer with another share: none at 0.
    assert heldout_task_ids(cfg.model_copy(update={"dataset": cfg.dataset.model_copy(
        update={"heldout_share": 0.0})})) == []


def test_card_has_calibration_and_acceptance(cfg: PipelineConfig) -> None:
    build_dataset(cfg)
    card = (cfg.run_dir / "dataset" / "README.md").read_text()
    assert "## Judge calibration" in card and "| overall (judge's decision) |" in card
    assert "| verifiable | 1 |" in card  # auto, nothing trusted (too few pairs): code checks accepted it
    assert "`judge.accept: auto`" in card
