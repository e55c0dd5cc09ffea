"""What eval counts, on hand-made replies and verdicts: call outcomes, check pass rule, aggregates, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth.evaluate.metrics import CallStats, aggregate, episode_score, reply_calls
from synth.schemas.rubric import CodeCheck, Criterion, Rubric
from synth.schemas.verdict import CheckResult, Verdict

TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}}}


def _call(name: str, arguments: str) -> dict:
    return {"id": "c", "type": "function", "function": {"name": name, "arguments": arguments}}


def test_each_kind_of_call_is_told_apart() -> None:
    reply = {"content": None, "tool_calls": [
        _call("get_weather", '{"city": "Oslo"}'),       # valid
        _call("get_wether", '{"city": "Oslo"}'),        # not in the toolset
        _call("get_weather", '{"town": "Oslo"}'),       # misses the required argument, has an unknown one
        _call("get_weather", '["Oslo"]'),               # not an object
    ]}
    stats = reply_calls(reply, [TOOL])
    assert (stats.attempted, stats.valid) == (4, 1)
    assert stats.outcomes == {"valid": 1, "unknown_tool": 1, "schema_mismatch": 1, "not_an_object": 1}


def test_a_call_the_parser_could_not_read_is_a_failed_attempt() -> None:
    # The hermes parser hands back the whole text when a <tool_call> block is not valid JSON.
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}\n</tool_call>'
    stats = reply_calls({"content": text, "tool_calls": []}, [TOOL])
    assert (stats.attempted, stats.valid, stats.outcomes) == (1, 0, {"unparsed": 1})
    assert reply_calls({"content": "It is sunny.", "tool_calls": None}, [TOOL]).attempted == 0
    # Seen from a small model: the opening tag left out; still a call that did not parse.
    dropped = '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert reply_calls({"content": dropped}, [TOOL]).outcomes == {"unparsed": 1}


def _rubric(python_tests: str | None = None) -> Rubric:
    return Rubric(criteria=[Criterion(id="c", description="d")],
                  checks=[CodeCheck(id="called", kind="tool_called", tool="get_weather")], python_tests=python_tests)


def test_checks_that_never_ran_count_as_failed() -> None:
    ok = CheckResult(check_id="called", passed=True)
    verdict = Verdict(passed=False, score=0.5, checks=[ok])
    assert episode_score(CallStats(), verdict, _rubric(), errored=False).checks_passed
    # A coding task whose tests were never run (no final answer) did not pass its checks.
    coding = episode_score(CallStats(), verdict, _rubric("assert f() == 1"), errored=True)
    assert coding.has_checks and not coding.checks_passed
    nothing = episode_score(CallStats(), None, _rubric(), errored=True)
    assert nothing.has_checks and not nothing.checks_passed and nothing.judge_score == 0.0
    no_checks = episode_score(CallStats(), verdict, Rubric(criteria=[]), errored=False)
    assert not no_checks.has_checks


def test_aggregate_rates_and_counts() -> None:
    valid = reply_calls({"tool_calls": [_call("get_weather", '{"city": "Oslo"}')]}, [TOOL])
    bad = reply_calls({"tool_calls": [_call("nope", "{}")]}, [TOOL])
    passed = Verdict(passed=True, score=1.0, checks=[CheckResult(check_id="called", passed=True)])
    failed = Verdict(passed=False, score=0.25, checks=[CheckResult(check_id="called", passed=False)])
    s = aggregate([episode_score(valid, passed, _rubric(), False), episode_score(bad, failed, _rubric(), False),
                   episode_score(CallStats(), None, Rubric(criteria=[]), True)])
    assert (s.episodes, s.calls_attempted, s.calls_valid, s.valid_call_rate) == (3, 2, 1, 0.5)
    assert (s.checked_episodes, s.checks_passed, s.pass_rate) == (2, 1, 0.5)
    assert s.judge_score == pytest.approx((1.0 + 0.25 + 0.0) / 3)
    assert (s.accepted, s.errored, s.episodes_with_valid_call) == (1, 1, 1)
    assert aggregate([]).valid_call_rate == 0.0


def test_report_table_plots_json_and_card_section(tmp_path: Path) -> None:
    from synth.evaluate.episode import EvalSummary, ModelEval
    from synth.evaluate.metrics import Scores
    from synth.evaluate.report import with_section, write_report

    def model(name: str, valid: int) -> ModelEval:
        s = Scores(episodes=2, calls_attempted=4, calls_valid=valid, valid_call_rate=valid / 4, checked_episodes=2,
                   checks_passed=1, pass_rate=0.5, judge_score=0.4)
        return ModelEval(name=name, checkpoint=f"/ck/{name}", served_name=name, overall=s,
                         by_difficulty={"single_call": s})

    summary = EvalSummary(run="r", heldout_share=0.2, task_ids=["t1", "t2"], difficulties={"single_call": 2},
                          models={"base": model("base", 1), "muonclip": model("muonclip", 3)})
    out = write_report(summary, tmp_path / "eval")
    table = (tmp_path / "eval" / "eval.md").read_text()
    assert "| difficulty | tasks | base | muonclip |" in table
    assert "| single_call | 2 | 25% (1/4) | 75% (3/4) |" in table
    assert "| all | 2 | 50% (1/2) | 50% (1/2) |" in table  # pass rate with its counts
    assert len(out.plots) == 3 and all(Path(p).stat().st_size > 1000 for p in out.plots)
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert saved["models"]["muonclip"]["overall"]["valid_call_rate"] == 0.75
    assert not (tmp_path / "eval" / "card.md").exists()  # the card stage puts the section in, from the summary
    card = with_section(with_section("---\nlicense: x\n---\n# Card\n", summary), summary)
    assert card.startswith("---\nlicense: x\n---\n# Card\n") and card.count("## Held-out evaluation") == 1
    assert "| muonclip | unforced | 75% (3/4) | 50% (1/2) | 0.40 (n=2) |" in card
    assert "no seen/unseen columns" in card  # a summary that does not say which tasks hold a seen tool


def test_summarize_scores_each_mode_and_by_tools_seen_in_training() -> None:
    from synth.evaluate.episode import EvalRecord, ModelUnderTest, summarize
    from synth.evaluate.metrics import CallStats, EpisodeScore
    from synth.evaluate.report import markdown
    from synth.schemas import TaskRecord

    tasks = [TaskRecord(id=t, agent_id="a") for t in ("t1", "t2", "t3")]
    base = ModelUnderTest(name="base", checkpoint="/ck/base", identity="b")

    def row(task: str, mode: str, ok: bool) -> EvalRecord:
        score = EpisodeScore(calls=CallStats(), has_checks=True, checks_passed=ok, judge_score=0.0, accepted=ok,
                             errored=False)
        return EvalRecord(id=f"{task}-{mode}", model_name="base", identity="b", mode=mode, task_id=task,
                          difficulty="single", score=score)  # type: ignore[arg-type]

    rows = [row("t1", "unforced", False), row("t2", "unforced", False), row("t3", "unforced", True),
            row("t1", "forced", True), row("t2", "forced", True), row("t3", "forced", False),
            row("t-other", "forced", True)]  # a task not scored this time (eval.max_tasks): left out
    # An older dataset's held-out tasks could hold a tool training saw (t1 here): scores split by it.
    result = summarize("r", 0.2, tasks, [base], rows, seen=["t1"]).models["base"]
    assert (result.overall.checks_passed, result.overall.checked_episodes) == (1, 3)
    assert result.forced is not None and (result.forced.overall.checks_passed, result.forced.overall.episodes) == (2, 3)
    assert result.forced.by_tools["seen"].checks_passed == 1 and result.forced.by_tools["unseen"].checks_passed == 1
    assert result.by_tools["seen"].episodes == 1 and result.by_tools["unseen"].checks_passed == 1
    table = markdown(summarize("r", 0.2, tasks, [base], rows, seen=["t1"]))
    assert "| base | forced | 67% (2/3) | - (0/0) | 0 of 3 | 100% (1/1) | 50% (1/2) |" in table
    assert "the 1 held-out tasks holding a tool" in table
    # Split by tool group, none holds one: the seen column is empty, and said to be so.
    empty = markdown(summarize("r", 0.2, tasks, [base], rows, seen=[]))
    assert "| base | unforced | 33% (1/3) | - (0/0) | 0 of 3 | - (0/0) | 33% (1/3) |" in empty
    assert "empty by construction" in empty


async def test_episode_pool_routes_roles_and_records_the_agent() -> None:
    """Control flow only: agent requests go to the model under test and are kept; the other roles and the
    simulators' reply budgets stay with the run's pool."""
    from types import SimpleNamespace

    from synth.config import LLMConfig
    from synth.evaluate.episode import RecordingPool
    from synth.llm.roles import RoutedPool

    class Scripted:
        def __init__(self, name: str, max_tokens: int) -> None:
            self.name, self.config, self.usage, self.seen = name, LLMConfig(max_tokens=max_tokens), None, []

        async def model(self) -> str:
            return self.name

        async def chat(self, messages, *, role, **kwargs):
            self.seen.append(role)
            return SimpleNamespace(message={"content": f"{self.name} says hi", "tool_calls": []})

    run_pool, agent = Scripted("judge-model", 512), Scripted("under-test", 64)
    recorder = RecordingPool(agent, run_pool.config)  # type: ignore[arg-type]
    pool = RoutedPool(run_pool, {"agent": recorder})  # type: ignore[arg-type, dict-item]
    await pool.chat([], role="agent")
    await pool.chat([], role="user_sim")
    assert agent.seen == ["agent"] and run_pool.seen == ["user_sim"]
    assert recorder.replies == [{"content": "under-test says hi", "tool_calls": []}]
    assert await pool.model() == "under-test" and pool.config.max_tokens == 512


async def test_eval_judges_every_episode_whatever_llm_rows_says() -> None:
    """The judge score is an eval metric: an episode a code check failed is still scored (judge.llm_rows=needed
    would skip it outside the calibration sample, and the mean would rise)."""
    from synth.config import PipelineConfig
    from synth.evaluate.episode import eval_judge_config
    from synth.judge.judge import in_calibration_sample, judge_trajectory
    from tests.fixtures.fakes import ScriptedPool
    from tests.fixtures.judge import weather_task, weather_trajectory

    config = PipelineConfig()
    assert config.judge.llm_rows == "needed" and eval_judge_config(config).llm_rows == "all"
    outside = next(f"traj-{i}" for i in range(1000) if not in_calibration_sample(f"traj-{i}", 0.3))
    traj = weather_trajectory(final="It is sunny in Paris right now.", id=outside)  # fails mentions_18
    reply = {"scores": [{"criterion_id": "grounding", "evidence": '{"temp_c": 18, "sky": "sunny"}', "score": 2},
                        {"criterion_id": "helpfulness", "evidence": "It is sunny in Paris right now", "score": 2}],
             "summary": "ok"}
    pool = ScriptedPool([reply])
    verdict = await judge_trajectory(traj, weather_task(), pool, eval_judge_config(config), seed=0)
    assert len(pool.calls) == 1 and verdict.samples == 1 and verdict.score == 1.0


def test_eval_forces_nothing_and_cuts_no_call() -> None:
    """Generation may force a grounded task's call and answer and keep one call a step; evaluation does none of
    it, so a model that repeats its call is scored on what it wrote."""
    from synth.agents.turn import MAX_CALLS
    from synth.config import PipelineConfig
    from synth.evaluate.episode import eval_rollouts_config

    config = PipelineConfig.model_validate({"rollouts": {
        "grounded_calls_first": True, "grounded_answer_after_call": True, "max_calls_per_step": 1,
        "coding_runs_code": True, "max_turns": 1}})
    r = eval_rollouts_config(config)
    assert not (r.grounded_calls_first or r.grounded_answer_after_call or r.coding_runs_code)
    assert r.max_calls_per_step == MAX_CALLS and r.max_turns == 1  # the rest as the run has it


async def test_forced_episodes_are_constrained_as_generation_constrains_the_agent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced: a coding task's first step runs the sandbox, a turn that expects a call starts with one and the step
    after answers, whatever the run's rollouts set; unforced, none of it. The episode itself (sim.episode) applies
    these settings (its own tests); here play hands them over, and the row says which mode it is."""
    from types import SimpleNamespace

    import synth.judge.judge as judge
    import synth.sim.episode as episode
    from synth.config import PipelineConfig, RolloutsStageConfig
    from synth.evaluate.episode import ModelUnderTest, eval_rollouts_config, play
    from synth.schemas import AgentRecord, TaskRecord, TrajectoryRecord

    for run in (PipelineConfig(), PipelineConfig.model_validate({"rollouts": {
            "grounded_calls_first": True, "grounded_answer_after_call": True, "max_calls_per_step": 1}})):
        forced, unforced = eval_rollouts_config(run, "forced"), eval_rollouts_config(run)
        assert forced.coding_runs_code and forced.grounded_calls_first and forced.grounded_answer_after_call
        assert not (unforced.coding_runs_code or unforced.grounded_calls_first or unforced.grounded_answer_after_call)
        assert forced.max_calls_per_step == unforced.max_calls_per_step > 1  # every call scored, in both modes

    used = []

    async def episode_stub(task: TaskRecord, agent: AgentRecord, pool: object, cfg: RolloutsStageConfig,
                           **kwargs: object) -> TrajectoryRecord:
        used.append(cfg.grounded_calls_first)
        return TrajectoryRecord(id="e", task_id=task.id, agent_id=agent.id)

    async def judge_stub(*args: object, **kwargs: object) -> None:
        return None

    class Pool:
        config = SimpleNamespace(max_tokens=64)

        async def model(self) -> str:
            return "under-test"

    monkeypatch.setattr(episode, "run_episode", episode_stub)
    monkeypatch.setattr(judge, "judge_trajectory", judge_stub)
    model = ModelUnderTest(name="base", checkpoint="/ck", identity="b")
    rows = [await play(PipelineConfig(), TaskRecord(id="t", agent_id="a"), AgentRecord(id="a"), model, f"r-{m}",
                       default=Pool(), roles={}, under_test=Pool(), mode=m)  # type: ignore[arg-type]
            for m in ("unforced", "forced")]
    assert used == [False, True] and [r.mode for r in rows] == ["unforced", "forced"]
