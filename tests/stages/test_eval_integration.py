"""Train and eval through the stages, for real: a judged run's dataset, the ``train`` stage training a tiny model a
few steps on the CPU, the ``eval`` stage scoring the base (unforced, and forced as generation forces the agent) and
the trained model on the two held-out tasks the dataset recorded against the real embedded server (user simulator,
tool simulator, judge), each model served by vLLM as the agent (template + hermes parser); a re-run resumes every
job and episode, and the card shows both."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import EndpointConfig, PipelineConfig
from synth.data.heldout import is_heldout
from synth.evaluate.episode import EvalRecord
from synth.schemas import AgentRecord, CodeCheck, Criterion, Rubric, TaskRecord, Verdict, VerdictRecord
from synth.schemas.records import TrajectoryRecord
from synth.stages.eval import eval_summary
from synth.stages.outputs import RunOutputs
from synth.stages.runner import run_stage
from tests.fixtures.dataset import trajectory, write_stage
from tests.fixtures.train import TOOL, USER_TEXTS, tool_calling_checkpoint

SHARE = 0.6  # the weather tool's group (by its name: it has no id) is held out, the station tool's is not
STATION = {"type": "function", "function": {
    "name": "lookup_station", "description": "The weather station nearest to a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
HELD = ["task-eval-0", "task-eval-1"]


def _station(traj: TrajectoryRecord) -> TrajectoryRecord:
    """The fixture's weather episode as the station agent's: its call and toolset name the station tool."""
    return TrajectoryRecord.model_validate_json(traj.model_dump_json().replace("get_weather", "lookup_station"))


def _run(root: Path, base: Path) -> PipelineConfig:
    cfg = PipelineConfig.model_validate({
        "runs_dir": str(root / "runs"), "run": "ev", "ray": {"enabled": False}, "dataset": {"heldout_share": SHARE},
        "rollouts": {"max_turns": 1, "max_steps": 2, "error_rate": 0, "timeout_rate": 0, "empty_rate": 0,
                     "partial_rate": 0},
        "train": {"base_model": str(base), "max_steps": 2, "lr": 1e-6, "micro_batch_tokens": 8192, "grad_accum": 1,
                  "warmup_ratio": 0, "threads": 1, "save_dtype": "float32"},
        "eval": {"base_model": str(base), "port": 8778, "kv_cache_gb": 1, "concurrency": 2, "temperature": 0.0},
        "embedded": {"max_model_len": 2048}})
    agent = AgentRecord(id="agent-w", name="weather", domain="weather", system_prompt="You answer weather questions.",
                        tools=[TOOL])
    stations = AgentRecord(id="agent-s", name="stations", domain="weather", system_prompt="You find stations.",
                           tools=[STATION])
    assert is_heldout("tool:get_weather", SHARE) and not is_heldout("tool:lookup_station", SHARE)
    called = CodeCheck(id="called", kind="tool_called", tool="get_weather")
    rubric = Rubric(criteria=[Criterion(id="answers", description="The assistant answers with the temperature.")],
                    checks=[called])
    # The first held-out task opens with a request the tiny model was trained on, so one episode makes the learnt
    # call on any CPU; one exact call answers it (a grounded task), so a forced episode must start with a call.
    # The second leaves the opening to the user simulator.
    grounded = rubric.model_copy(update={"checks": [called, CodeCheck(
        id="city", kind="tool_called_with", tool="get_weather", arguments={"city": "Oslo"})]})
    cities = ["Oslo", "Lima"]
    openings = [USER_TEXTS[0].format(city=cities[0]), None]
    held = [TaskRecord(id=tid, seed=i, agent_id=agent.id, difficulty="single_call", persona="A traveller.",
                       user_goal=f"Learn the temperature in {cities[i]} today.", rubric=[grounded, rubric][i],
                       opening=openings[i], initial_state={"weather": {cities[i]: {"temp_c": 3 + i}}})
            for i, tid in enumerate(HELD)]
    train = [TaskRecord(id=f"task-train-{i}", agent_id=stations.id, difficulty="single_call", user_goal="stations",
                        rubric=rubric) for i in range(3)]
    trajs = [trajectory(i).model_copy(update={"id": f"traj-{t.id}", "task_id": t.id, "agent_id": t.agent_id})
             for i, t in enumerate(held + train)]
    trajs = [t if t.agent_id == agent.id else _station(t) for t in trajs]
    write_stage(cfg.run_dir, "agents", [agent, stations])
    write_stage(cfg.run_dir, "tasks", held + train)
    write_stage(cfg.run_dir, "rollouts", trajs)
    write_stage(cfg.run_dir, "judge", [VerdictRecord(
        id=t.id, trajectory_id=t.id, task_id=t.task_id,
        verdict=Verdict(passed=True, score=1.0, code_passed=True, verifiable=True, llm_passed=True)) for t in trajs])
    return cfg


@pytest.mark.integration
@pytest.mark.timeout(2400)
def test_train_and_eval_stages_on_two_heldout_tasks(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                    live_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tool_calling_checkpoint(tmp_path_factory.getbasetemp() / "tool-caller")
    cfg = _run(tmp_path, base)
    held = sorted(HELD)
    dataset = run_stage("dataset", cfg, [], progress=False)
    assert dataset.extra["heldout"]["task_ids"] == held and dataset.extra["heldout"]["tools"] == ["get_weather"]
    assert dataset.extra["heldout"]["seen"] == [] and dataset.extra["dataset"]["contamination"]["count"] == 0

    trained = run_stage("train", cfg, [], progress=False)
    job = trained.extra["jobs"]["muonclip"]
    assert trained.ok == 1 and job["steps"] == 2 and job["examples"] == 3 and job["device"] == "cpu"
    assert Path(job["checkpoint"], "config.json").exists()

    endpoints = [EndpointConfig(base_url=live_url, max_concurrency=8)]
    done = run_stage("eval", cfg, endpoints, progress=False)
    result = eval_summary(done)
    assert result.task_ids == held and result.difficulties == {"single_call": 2} and result.seen == []
    # The base plays unforced and forced, the trained model unforced.
    assert list(result.models) == ["base", "muonclip"] and (done.planned, done.failed) == (6, 0)
    assert result.models["base"].forced is not None and result.models["muonclip"].forced is None
    for name, m in result.models.items():
        for scores in filter(None, (m.mode("unforced"), m.mode("forced"))):
            o = scores.overall
            assert o.episodes == 2 and o.checked_episodes == 2 and 0.0 <= o.judge_score <= 1.0, (name, o)
            assert o.calls_attempted >= o.calls_valid and scores.by_difficulty["single_call"].episodes == 2
            assert scores.by_tools["seen"].episodes == 0 and scores.by_tools["unseen"].episodes == 2
    # The base is the tool-calling model itself; it makes the learnt call on the opening it was trained on.
    assert result.models["base"].overall.calls_valid >= 1, result.models["base"].overall
    rows = RunOutputs(cfg.run_dir).rows("eval", EvalRecord)
    assert len(rows) == 6 and all(r.verdict is not None and r.trajectory and r.trajectory.messages for r in rows)
    for row in rows:
        # What eval counted from the server's replies agrees with the episode's own record: every call the parser
        # returned is in the trajectory, and the rubric's check passed exactly where such a call was made.
        assert row.trajectory is not None and row.verdict is not None and row.score is not None
        parsed = [c for msg in row.trajectory.messages for c in msg.tool_calls or []]
        assert row.score.calls.valid == len(parsed) and all(c.function.name == "get_weather" for c in parsed)
        check = next(c for c in row.verdict.checks if c.check_id == "called")
        assert check.passed == bool(parsed) and row.score.checks_passed == all(c.passed for c in row.verdict.checks)
    # Forced, the grounded task's first step must call (tool_choice=required): the call is there whatever the
    # model would have said, and the step after it answers.
    forced = next(r for r in rows if r.mode == "forced" and r.task_id == HELD[0])
    assert forced.trajectory is not None and forced.trajectory.required_first_call == "*"
    first = next(m for m in forced.trajectory.messages if m.role == "assistant")
    assert first.tool_calls and forced.trajectory.forced_answer_step == 1, forced.trajectory.messages
    assert all(r.trajectory is not None and r.trajectory.required_first_call is None
               for r in rows if r.mode == "unforced")
    table = (cfg.run_dir / "eval" / "eval.md").read_text()
    assert "| single_call | 2 |" in table and len(result.plots) == 3

    # Run again: every job and episode is on disk, nothing is trained, served or asked again.
    import synth.stages.eval as eval_stage

    monkeypatch.setattr(eval_stage, "serving", lambda *a, **k: pytest.fail("nothing may be served"))
    assert run_stage("train", cfg, [], progress=False).resumed == 1
    again = run_stage("eval", cfg, endpoints, progress=False)
    assert again.resumed == 6 and eval_summary(again).models == result.models
    card = run_stage("card", cfg, [], progress=False)
    text = Path(card.extra["card"]).read_text()
    assert "## Held-out evaluation" in text and "| base |" in text and "| muonclip |" in text
