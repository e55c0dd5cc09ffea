"""Quality gates: each gate fails the answer it is for and passes a normal one; a call whose
arguments fail the tool's schema (a string "false" for a boolean) fails the gate and the call check; acceptance
and the judge stage drop a gated row and count it per gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from synth.config import QUALITY_GATES, EndpointConfig, JudgeStageConfig, PipelineConfig
from synth.judge.accept import accept, gate_summary, run_acceptance
from synth.judge.checks import run_check, schema_error
from synth.judge.gates import GATES, Episode, failed, is_coding, run_gates
from synth.judge.judge import judge_trajectory, skip_llm_reason
from synth.schemas.messages import Message
from synth.schemas.records import CallRecord, TaskRecord, TrajectoryRecord, VerdictRecord
from synth.schemas.rubric import CodeCheck, Criterion, Rubric
from synth.schemas.verdict import CheckResult, Verdict
from tests.fixtures.fakes import ScriptedPool
from tests.fixtures.judge import call, weather_task, weather_trajectory

NORMAL = "It is 18°C and sunny in Paris right now."

SEARCH_TOOL = {"type": "function", "function": {
    "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"},
                                                    "allow_external": {"type": "boolean"}},
                   "required": ["query"]}}}


def gate(name: str, traj: TrajectoryRecord, *, coding: bool = False) -> CheckResult:
    return GATES[name](Episode.of(traj, coding=coding))  # type: ignore[index]


def search_trajectory(arguments: dict[str, Any], final: str = "The top result is Example Domain.") -> TrajectoryRecord:
    return TrajectoryRecord(
        id="traj-s", task_id="task-s", agent_id="agent-s", tools=[SEARCH_TOOL],
        messages=[Message(role="user", content="Search for example.com, outside sources allowed? No."),
                  Message(role="assistant", tool_calls=[call("call_s1", "search", arguments)]),
                  Message(role="tool", tool_call_id="call_s1", content='{"top": "Example Domain"}'),
                  Message(role="assistant", content=final)],
        calls=[CallRecord(tool_call_id="call_s1", name="search", mode="real")])


def coding_trajectory(answer: str) -> TrajectoryRecord:
    return TrajectoryRecord(id="traj-c", messages=[
        Message(role="user", content="Write a Python function smaller(a, b) that returns the smaller number."),
        Message(role="assistant", content=answer)])


def test_the_registry_holds_every_configured_gate_and_a_normal_answer_passes_them_all() -> None:
    assert tuple(GATES) == QUALITY_GATES == tuple(JudgeStageConfig().gates)
    results = run_gates(weather_trajectory(NORMAL))
    assert [r.check_id for r in results] == list(QUALITY_GATES)
    assert failed(results) == [], results
    assert [r.check_id for r in run_gates(weather_trajectory(NORMAL), names=["says_nothing"])] == ["says_nothing"]


@pytest.mark.parametrize(("name", "bad", "why"), [
    ("empty_answer", "<pre><code></code></pre> ...", "no words"),
    ("repeated_fragment", "It is 18°C in Paris now. " * 3, "repeats"),
    ("repeated_fragment", "18 " + "2 " * 8, "repeats"),
    ("markup_loop", "<pre><code>18°C and sunny</code></pre>", "HTML code markup"),
    ("markup_loop", "It is 18°C.\n```\nsunny\n```", "code fence"),
    ("markup_loop", "<b>18°C</b>, <b>sunny</b>, <b>Paris</b>", "<b> opened 3 times"),
    ("markup_loop", "It is 18°C and sunny.</tool_response>", "tool format"),
    ("markup_loop", "It is 18°C ************ sunny", "markdown markers"),
    ("names_tool", "get_weather says it is 18°C and sunny.", "get_weather"),
    ("internal_id", "It is 18°C and sunny (call call_1).", "call_1"),
    ("internal_id", "It is 18°C and sunny, see task-0123456789abcdef.", "task-0123456789abcdef"),
    ("schema_dump", 'It is 18°C. {"type": "object", "properties": {"city": {"type": "string"}}}', "schema"),
    ("schema_dump", 'Sunny, 18°C. Parameters: "city": {"type": "string"}', "schema"),
    ("says_nothing", "The weather in Paris is what you asked for.", "none of the results' values"),
])
def test_each_gate_fails_its_answer_and_passes_a_normal_one(name: str, bad: str, why: str) -> None:
    result = gate(name, weather_trajectory(bad))
    assert not result.passed and result.check_id == name and why in result.detail, result
    assert gate(name, weather_trajectory(NORMAL)).passed


def test_normal_answers_that_look_alike_pass() -> None:
    # A list of similar items repeats a short frame around a changing value: no six-word fragment comes 3 times.
    listing = ("The weather in Paris is 18°C and sunny. The weather in Rome is 21°C and cloudy. "
               "The weather in Oslo is 3°C and snowing. The weather in Lima is 25°C and dry.")
    assert gate("repeated_fragment", weather_trajectory(listing)).passed
    assert gate("repeated_fragment", weather_trajectory(f"{NORMAL} To sum up: {NORMAL}")).passed  # said twice
    # Prose words that are schema keywords, a plain tool-like word, an ordinary dash rule, two tags: all fine.
    assert gate("schema_dump", weather_trajectory("It is 18°C; the hotel's properties: a pool, a spa.")).passed
    assert gate("markup_loop", weather_trajectory("It is <b>18°C</b> and <b>sunny</b>.\n\n-----")).passed
    assert gate("names_tool", weather_trajectory("I checked the weather: 18°C and sunny.")).passed


def test_a_coding_answer_keeps_its_code_and_a_runaway_fails() -> None:
    code = "```python\ndef smaller(a, b):\n    return a if a<b and b>a else b\n```\n\nExample:\n\n" \
           "```python\nprint(smaller(1, 2))\n```"
    traj = coding_trajectory(code)
    assert failed(run_gates(traj, coding=True)) == []
    # The same answer to a task that asks for no code is markup.
    assert not gate("markup_loop", traj, coding=False).passed
    runaway = coding_trajectory("\n".join(f"```python\nprint(smaller({i}, 2))\n```" for i in range(5)))
    assert "5 fenced code blocks" in gate("markup_loop", runaway, coding=True).detail
    coding_task = TaskRecord(id="t", difficulty="coding")
    assert is_coding(coding_task) and not is_coding(TaskRecord(id="t")) and not is_coding(None)


def test_no_gate_refuses_the_bank_solutions_answered_as_a_coding_task_answers() -> None:
    import yaml

    from synth.paths import RUBRICS
    from synth.tasks.coding import CodingProblem, problems_path

    problems = [CodingProblem(**p) for p in yaml.safe_load(problems_path(RUBRICS).read_text())]
    assert len(problems) >= 20
    for p in problems:
        example = p.tests.strip().splitlines()[0].removeprefix("assert ").split(" == ")[0].split(" is ")[0]
        # How a coding answer looks (synth.judge.code_tests.message_program): the function in one block, an
        # example that calls it in the next, a sentence.
        fenced = f"Here is {p.function}:\n\n```python\n{p.reference}```\n\nExample:\n\n```python\n" \
                 f"print({example})\n```\n\nIt returns the result for any input."
        for answer in (fenced, fenced.replace("```python", "<pre><code>").replace("```", "</code></pre>")):
            results = run_gates(coding_trajectory(answer), coding=True)
            assert failed(results) == [], (p.id, [r.detail for r in results if not r.passed])


def test_says_nothing_on_empty_and_failed_results() -> None:
    def with_result(content: str, final: str, ok: bool = True) -> TrajectoryRecord:
        traj = weather_trajectory(final)
        traj.messages[3] = Message(role="tool", tool_call_id="call_1", content=content)
        traj.calls[0] = traj.calls[0].model_copy(update={"ok": ok})
        return traj

    empty = '{"entities": [], "relations": []}'
    assert gate("says_nothing", with_result(empty, "I found nothing for Paris.")).passed
    made_up = gate("says_nothing", with_result(empty, "The weather in Paris is lovely."))
    assert not made_up.passed and "empty" in made_up.detail
    failure = "Error: get_weather failed: the service is down"
    assert gate("says_nothing", with_result(failure, "Sorry, the weather service is down.", ok=False)).passed
    assert not gate("says_nothing", with_result(failure, "Paris is lovely in spring.", ok=False)).passed
    # A plain-text result is reported in other words when the answer repeats what it holds.
    text = "Cloudy over Paris, temperature 17C, winds northwesterly"
    assert gate("says_nothing", with_result(text, "Paris: cloudy, 17C, northwesterly winds.")).passed
    # No call, nothing to report: the gate has nothing to say.
    assert gate("says_nothing", coding_trajectory("Here you go.")).passed


def test_a_string_typed_boolean_fails_the_schema_the_gate_and_the_call_check() -> None:
    params = SEARCH_TOOL["function"]["parameters"]
    assert schema_error(params, {"query": "example.com", "allow_external": False}) is None
    error = schema_error(params, {"query": "example.com", "allow_external": "false"})
    assert error is not None and "'false' is not of type 'boolean'" in error
    assert schema_error(params, {"allow_external": False}) is not None  # a required argument is missing

    good, bad = search_trajectory({"query": "example.com", "allow_external": False}), \
        search_trajectory({"query": "example.com", "allow_external": "false"})
    assert gate("invalid_arguments", good).passed
    result = gate("invalid_arguments", bad)
    assert not result.passed and "'false' is not of type 'boolean'" in result.detail
    # The call check no longer forgives the type: the same call with a string "false" is not the call asked for.
    check = CodeCheck(id="call", kind="tool_called_with", tool="search",
                      arguments={"query": "example.com", "allow_external": False})
    assert run_check(check, good).passed
    refused = run_check(check, bad)
    assert not refused.passed and "fails the tool's schema" in refused.detail


def test_a_call_to_a_tool_not_in_the_toolset_or_with_no_object_fails() -> None:
    traj = weather_trajectory(NORMAL)
    traj.messages[2] = Message(role="assistant", tool_calls=[call("call_1", "get_forecast", {"city": "Paris"})])
    assert "no such tool" in gate("invalid_arguments", traj).detail
    traj.messages[2] = Message(role="assistant", tool_calls=[call("call_1", "get_weather", "[1, 2]")])
    assert "not a JSON object" in gate("invalid_arguments", traj).detail


VERIFIED = dict(passed=True, score=1.0, code_passed=True, verifiable=True, llm_passed=True)
CRITERIA = [Criterion(id="grounding", description="g")]


def test_acceptance_drops_a_gated_row_in_every_mode_and_names_the_gate() -> None:
    loop = CheckResult(check_id="markup_loop", passed=False, detail="HTML code markup (<pre> x3)")
    gated = Verdict(**VERIFIED, gates=[loop, CheckResult(check_id="says_nothing", passed=True)])
    clean = Verdict(**VERIFIED, gates=[loop.model_copy(update={"passed": True})])
    for mode in ("llm", "verifiable", "both", "auto"):
        cfg = JudgeStageConfig(accept=mode)
        assert accept(clean, CRITERIA, cfg).accepted, mode
        a = accept(gated, CRITERIA, cfg)
        assert not a.accepted and a.by is None and a.gates == ["markup_loop"], mode
        assert a.reasons == ["quality gate markup_loop: HTML code markup (<pre> x3)"]
    # A gate that is turned off rejects nothing.
    assert accept(gated, CRITERIA, JudgeStageConfig(accept="verifiable", gates=["says_nothing"])).accepted
    # A row the mode rejects anyway keeps its own reasons after the gate's.
    both = accept(gated.model_copy(update={"code_passed": False, "reasons": ["code check c failed: x"]}),
                  CRITERIA, JudgeStageConfig(accept="verifiable"))
    assert both.reasons == ["quality gate markup_loop: HTML code markup (<pre> x3)", "code check c failed: x"]

    tasks = {"t": TaskRecord(id="t", rubric=Rubric(criteria=CRITERIA))}
    rows = [VerdictRecord(id=i, task_id="t", verdict=v) for i, v in (("a", gated), ("b", clean), ("c", gated))]
    decisions, _ = run_acceptance(rows, tasks, JudgeStageConfig(accept="verifiable"))
    assert [decisions[i].accepted for i in "abc"] == [False, True, False]
    assert gate_summary(decisions.values()) == {"rejected": {"markup_loop": 2}, "rejected_only_by_gates": 2}


async def test_the_judge_records_the_gates_and_asks_no_llm_for_a_gated_row() -> None:
    task = weather_task()
    pool = ScriptedPool([])  # any call to the judge model would fail: there is no reply
    cfg = JudgeStageConfig(calibration_share=0.01)
    loop = weather_trajectory("<pre><code>18</code></pre>" * 3, id="traj-not-in-the-sample")
    verdict = await judge_trajectory(loop, task, pool, cfg, seed=0)
    assert pool.calls == [] and verdict.code_passed is True
    assert failed(verdict.gates) == ["markup_loop"] and len(verdict.gates) == len(QUALITY_GATES)
    assert "quality gate(s) markup_loop already reject it" in verdict.notes[0]
    assert not accept(verdict, task.rubric.criteria, cfg).accepted  # type: ignore[union-attr]
    assert skip_llm_reason(True, JudgeStageConfig(llm_rows="all"), ["markup_loop"]) is None
    # judge.gates picks the gates that run.
    only = await judge_trajectory(loop, weather_task(criteria=[]), pool,
                                  cfg.model_copy(update={"gates": ["empty_answer"]}), seed=0)
    assert [g.check_id for g in only.gates] == ["empty_answer"] and not failed(only.gates)


def test_the_judge_stage_counts_rejections_per_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synth.stages.base import StageContext
    from synth.stages.runner import run_stage
    from synth.stages.store import JournalWriter, StageStore

    def write_stage(run_dir: Path, stage: str, rows: list[Any]) -> None:
        store = StageStore(run_dir / stage)
        writer = JournalWriter(store.new_journal())
        writer.write_many(rows)
        writer.close()
        store.compact()

    cfg = PipelineConfig(runs_dir=tmp_path, run="g", ray={"enabled": False}, judge={"accept": "verifiable"})
    task = weather_task(criteria=[])
    write_stage(cfg.run_dir, "tasks", [task])
    write_stage(cfg.run_dir, "rollouts", [
        weather_trajectory(NORMAL, id="traj-ok"),
        weather_trajectory("get_weather: 18°C and sunny.", id="traj-tool"),
        weather_trajectory("<pre><code>18°C and sunny</code></pre>", id="traj-pre"),
    ])
    monkeypatch.setattr(StageContext, "llm", lambda self, role: ScriptedPool([]))
    summary = run_stage("judge", cfg, [EndpointConfig(base_url="http://127.0.0.1:9/v1")], progress=False)
    assert summary.extra["accepted"] == 1
    assert summary.extra["gates"] == {"rejected": {"names_tool": 1, "markup_loop": 1}, "rejected_only_by_gates": 2}
    assert summary.rejected == {"quality gate names_tool": 1, "quality gate markup_loop": 1}


def test_the_report_script_counts_per_gate_and_renders_the_passing_rows(tmp_path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.quality_gates import main

    def row(traj: TrajectoryRecord) -> dict[str, Any]:
        return {"id": traj.id, "task_id": "task-1", "difficulty": "single_call", "domain": "weather",
                "messages": [m.openai() for m in traj.messages], "tools": [json.dumps(t) for t in traj.tools],
                "calls": json.dumps([c.model_dump() for c in traj.calls])}

    rows = [row(weather_trajectory(NORMAL, id="traj-good")),
            row(weather_trajectory("<pre><code>get_weather</code></pre>", id="traj-bad"))]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    assert main([str(tmp_path / "train.parquet"), "--out", str(tmp_path / "out"), "--sample", "5"]) == 0
    summary = json.loads((tmp_path / "out" / "quality_gates.json").read_text())
    assert summary["rows"] == 2 and summary["passing_all"] == 1 and summary["sample"] == ["traj-good"]
    assert summary["gates"]["markup_loop"]["rejected"] == summary["gates"]["names_tool"]["rejected"] == 1
    assert summary["gates"]["names_tool"]["rejected_alone"] == 0
    sample = (tmp_path / "out" / "accepted_sample.md").read_text()
    assert "## traj-good" in sample and "traj-bad" not in sample
    assert "Fewer rows pass than the 5 asked for (1)" in sample
    assert "**Call** `get_weather`" in sample and "**Final answer**" in sample and NORMAL in sample
