"""Coding tasks: the assistant's code is found and run against the task's tests in the real sandbox."""

import pytest
from judge_helpers import call, weather_task, weather_trajectory

from synth.config import JudgeStageConfig
from synth.judge.code_tests import extract_code, run_python_tests
from synth.judge.judge import judge_trajectory
from synth.schemas.messages import Message
from synth.schemas.records import CallRecord
from synth.sim.sandbox import sandbox_available
from tests.fakes import ScriptedPool

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"
TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"

needs_sandbox = pytest.mark.skipif(
    not sandbox_available()[0], reason=f"no sandbox here: {sandbox_available()[1]}"
)


def coding_trajectory(*messages: Message):
    return weather_trajectory(
        messages=[Message(role="user", content="Write add(a, b)."), *messages],
        calls=[CallRecord(tool_call_id="c1", name="run_python", mode="sandbox")],
    )


def test_extract_code_takes_the_last_program_from_tool_calls_or_fences() -> None:
    traj = coding_trajectory(
        Message(role="assistant", content=f"First try:\n```python\n{BAD}```"),
        Message(role="assistant", tool_calls=[call("c1", "run_python", {"code": GOOD})]),
        Message(role="tool", tool_call_id="c1", content="ok"),
        Message(role="assistant", content="Done, add works."),
    )
    assert extract_code(traj) == GOOD
    fenced = coding_trajectory(Message(role="assistant", content=f"Here:\n```\n{GOOD}```\nThat is all."))
    assert extract_code(fenced) == GOOD
    odd_name = coding_trajectory(Message(role="assistant", tool_calls=[call("c1", "exec", {"src": GOOD})]))
    assert extract_code(odd_name) == GOOD
    assert extract_code(coding_trajectory(Message(role="assistant", content="I can't write code."))) is None


async def test_missing_code_fails_without_running_anything() -> None:
    result = await run_python_tests(coding_trajectory(Message(role="assistant", content="No code.")), TESTS)
    assert not result.passed and "no Python code" in result.detail


@needs_sandbox
async def test_correct_code_passes_and_wrong_code_fails_in_the_sandbox() -> None:
    good = coding_trajectory(Message(role="assistant", content=f"```python\n{GOOD}```"))
    result = await run_python_tests(good, TESTS)
    assert result.passed, result.detail
    bad = coding_trajectory(Message(role="assistant", content=f"```python\n{BAD}```"))
    result = await run_python_tests(bad, TESTS)
    assert not result.passed and "AssertionError" in result.detail


@needs_sandbox
async def test_judge_adds_the_sandbox_run_to_the_code_checks() -> None:
    traj = coding_trajectory(Message(role="assistant", content=f"Here is add:\n```python\n{BAD}```"))
    task = weather_task(checks=[])
    task.rubric.python_tests = TESTS
    evidence = {"criterion_id": "grounding", "evidence": "Here is add:", "score": 2}
    helpful = {"criterion_id": "helpfulness", "evidence": "return a - b", "score": 2}
    pool = ScriptedPool([{"scores": [evidence, helpful], "summary": "ok"}])
    verdict = await judge_trajectory(traj, task, pool, JudgeStageConfig(), seed=0)
    assert [c.check_id for c in verdict.checks] == ["python_tests"]
    assert not verdict.passed and verdict.reasons[0].startswith(
        "code check python_tests failed: tests failed"
    )


@needs_sandbox
async def test_a_program_that_exits_before_the_tests_fails_with_a_count() -> None:
    # The reviewed defect: exit code 0 used to mean "tests passed" although no test had run.
    quitter = coding_trajectory(Message(role="assistant", content=f"```python\n{BAD}import sys\nsys.exit(0)\n```"))
    result = await run_python_tests(quitter, TESTS)
    assert not result.passed
    assert result.detail.startswith("tests failed (0 of 2 passed")
    good = await run_python_tests(coding_trajectory(Message(role="assistant", content=f"```python\n{GOOD}```")), TESTS)
    assert good.passed and good.detail.startswith("tests passed: all 2")
