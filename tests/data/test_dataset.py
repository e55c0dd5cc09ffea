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
    Criterion,
    FunctionCall,
    Rubric,
    TaskRecord,
    TrajectoryRecord,
    Verdict,
    VerdictRecord,
)
from synth.stages.dataset_build import build_dataset
from tests.fixtures.dataset import TOOL, judged_run, trajectory, write_stage
from tests.fixtures.runs import ALERTS


@pytest.fixture
def cfg(tmp_path: Path) -> PipelineConfig:
    return judged_run(tmp_path)


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
        write_stage(cfg.run_dir, stage, [])
    summary = build_dataset(cfg)
    assert summary.trajectories == 0
    splits = load_from_disk(str(cfg.run_dir / "dataset" / "hf"))
    assert splits["train"].num_rows == 0 and "messages" in splits["train"].column_names


def test_publish_without_token_says_what_to_do(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    build_dataset(cfg)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(PublishError, match="no Hugging Face token") as err:
        publish(cfg.run_dir / "dataset", "me/data")
    assert "export it as HF_TOKEN" in err.value.hint


def test_heldout_tasks_never_enter_train(cfg: PipelineConfig) -> None:
    from datasets import load_from_disk

    from synth.stages.dataset_build import heldout_task_ids

    # task-1's agent holds only the alerts tool, whose group (its name: it has no id) is held out; task-2's holds
    # both tools, one on each side. Each has an accepted trajectory: task-1's goes to `heldout`, task-2's nowhere.
    share = cfg.dataset.heldout_share
    assert is_heldout("tool:get_alerts", share) and not is_heldout("tool:get_weather", share)
    write_stage(cfg.run_dir, "agents", [AgentRecord(id="agent-1", domain="weather", system_prompt="You help.",
                                                    tools=[TOOL]),
                                        AgentRecord(id="agent-2", system_prompt="You warn.", tools=[ALERTS]),
                                        AgentRecord(id="agent-3", system_prompt="Both.", tools=[TOOL, ALERTS])])
    rubric = Rubric(criteria=[Criterion(id="grounding", kind="core", description="Uses tool results.")])
    pairs = (("task-1", "agent-2"), ("task-2", "agent-3"), ("task-4", "agent-1"))
    write_stage(cfg.run_dir, "tasks", [TaskRecord(id=t, agent_id=a, user_goal="weather", rubric=rubric)
                                       for t, a in pairs])
    trajs = [trajectory(9).model_copy(update={"id": f"traj-{t}", "task_id": t, "agent_id": a}) for t, a in pairs]
    # task-4 trains, but its episode called the held-out tool by name (outside its toolset): that row stays out.
    alerts = trajs[2].messages[2].model_copy(update={"tool_calls": [trajs[2].messages[2].tool_calls[0].model_copy(
        update={"function": FunctionCall(name="get_alerts", arguments="{}")})]})
    trajs[2] = trajs[2].model_copy(update={"messages": [*trajs[2].messages[:2], alerts, *trajs[2].messages[3:]]})
    write_stage(cfg.run_dir, "rollouts", trajs)
    write_stage(cfg.run_dir, "judge", [VerdictRecord(
        id=t.id, trajectory_id=t.id, task_id=t.task_id,
        verdict=Verdict(passed=True, score=1.0, code_passed=True, verifiable=True, llm_passed=True)) for t in trajs])
    summary = build_dataset(cfg)
    assert heldout_task_ids(cfg) == ["task-1"]
    assert (summary.accepted, summary.heldout, summary.heldout_tasks) == (1, 1, 1)
    assert (summary.excluded, summary.excluded_tasks, summary.heldout_tools) == (2, {"mixed groups": 1}, 1)
    ds = load_from_disk(str(cfg.run_dir / "dataset" / "hf"))
    assert "traj-task-1" not in ds["train"]["id"] and ds["heldout"]["id"] == ["traj-task-1"]
    assert all("traj-task-2" not in list(ds[split]["id"]) for split in ("train", "rejected", "heldout"))
    assert ds["heldout"][0]["heldout"] is True and all(not h for h in ds["train"]["heldout"])
    assert ds["heldout"][0]["split_keys"] == ["tool:get_alerts"] and ds["train"][0]["split_keys"] == [
        "tool:get_weather"]
    card = (cfg.run_dir / "dataset" / "README.md").read_text()
    assert "traj-task-4" not in ds["train"]["id"]
    no_split = "| in no split (1 tasks on neither side; training episodes that call a held-out tool) | 2 |"
    assert no_split in card
    assert "1 mixed groups" in card
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


def _accepted(cfg: PipelineConfig, task_id: str, agent: AgentRecord, question: str) -> None:
    """Add ``task_id`` for ``agent`` (on the training side), its opening ``question``, accepted."""
    from synth.stages.outputs import RunOutputs

    rubric = Rubric(criteria=[Criterion(id="grounding", kind="core", description="Uses tool results.")])
    old = RunOutputs(cfg.run_dir)
    write_stage(cfg.run_dir, "agents", [*old.rows("agents", AgentRecord), agent])
    write_stage(cfg.run_dir, "tasks", [*old.rows("tasks", TaskRecord),
                                       TaskRecord(id=task_id, agent_id=agent.id, user_goal="x", rubric=rubric)])
    traj = trajectory(7).model_copy(update={"id": f"traj-{task_id}", "task_id": task_id, "agent_id": agent.id,
                                            "tools": agent.tools})
    traj.messages[1] = traj.messages[1].model_copy(update={"content": question})
    write_stage(cfg.run_dir, "rollouts", [*old.rows("rollouts", TrajectoryRecord), traj])
    write_stage(cfg.run_dir, "judge", [*old.rows("judge", VerdictRecord), VerdictRecord(
        id=traj.id, trajectory_id=traj.id, task_id=task_id,
        verdict=Verdict(passed=True, score=1.0, code_passed=True, verifiable=True, llm_passed=True))])


def test_bfcl_function_names_and_questions_never_reach_train(cfg: PipelineConfig) -> None:
    from datasets import load_from_disk

    from synth.bfcl.data import questions_and_functions

    questions, names = questions_and_functions()
    assert "translate" in names and not is_heldout("tool:translate", cfg.dataset.heldout_share)
    translate = dict(TOOL, function={**TOOL["function"], "name": "translate"})
    # One accepted row holds a tool named as a BFCL function, one asks a BFCL question word for word.
    _accepted(cfg, "task-7", AgentRecord(id="agent-7", system_prompt="s", tools=[translate]), "Translate it.")
    _accepted(cfg, "task-8", AgentRecord(id="agent-8", system_prompt="s", tools=[TOOL]), questions["simple_python_0"])
    summary = build_dataset(cfg)
    c = summary.contamination
    assert c is not None and (c.count, c.kept_out, c.names, c.questions) == (0, 2, ["translate"], ["simple_python_0"])
    assert summary.accepted == 1 and load_from_disk(str(cfg.run_dir / "dataset" / "hf"))["train"]["id"] == ["traj-1"]
    card = (cfg.run_dir / "dataset" / "README.md").read_text()
    assert "Rows of `train` holding a BFCL function name or question: 0." in card
    assert "Accepted rows kept out of `train` for holding one: 2 (translate; 1 BFCL question)." in card


def test_without_bfcl_data_the_contamination_is_unknown_not_zero(cfg: PipelineConfig,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import synth.bfcl.contamination as bfcl
    from synth.bfcl.package import BfclNotInstalled

    def missing(*_: object, **__: object) -> object:
        raise BfclNotInstalled("bfcl-eval is not installed", hint="pip install --no-deps bfcl-eval")

    monkeypatch.setattr(bfcl, "contamination", missing)
    summary = build_dataset(cfg)
    assert summary.contamination is not None and summary.contamination.count is None and summary.accepted == 1
    assert "bfcl-eval is not installed" in (summary.contamination.note or "")
    card = (cfg.run_dir / "dataset" / "README.md").read_text()
    assert "holding a BFCL function name or question: unknown (bfcl-eval is not installed" in card
