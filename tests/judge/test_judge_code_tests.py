"""Coding tasks: the assistant's code is found and run against the task's tests in the real sandbox."""

import pytest

from synth.config import JudgeStageConfig
from synth.judge.code_tests import extract_code, run_python_tests
from synth.judge.judge import judge_trajectory
from synth.schemas.messages import Message
from synth.schemas.records import CallRecord
from tests.fixtures.fakes import ScriptedPool
from tests.fixtures.judge import call, weather_task, weather_trajectory

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"
TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"



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


@pytest.mark.sandbox
async def test_correct_code_passes_and_wrong_code_fails_in_the_sandbox() -> None:
    good = coding_trajectory(Message(role="assistant", content=f"```python\n{GOOD}```"))
    result = await run_python_tests(good, TESTS)
    assert result.passed, result.detail
    bad = coding_trajectory(Message(role="assistant", content=f"```python\n{BAD}```"))
    result = await run_python_tests(bad, TESTS)
    assert not result.passed and "AssertionError" in result.detail


@pytest.mark.sandbox
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


@pytest.mark.sandbox
async def test_a_program_that_exits_before_the_tests_fails_with_a_count() -> None:
    # Guards against exit code 0 meaning "tests passed" although no test ran.
    quitter = coding_trajectory(Message(role="assistant", content=f"```python\n{BAD}import sys\nsys.exit(0)\n```"))
    result = await run_python_tests(quitter, TESTS)
    assert not result.passed
    assert result.detail.startswith("tests failed (0 of 2 passed")
    good = await run_python_tests(coding_trajectory(Message(role="assistant", content=f"```python\n{GOOD}```")), TESTS)
    assert good.passed and good.detail.startswith("tests passed: all 2")


FUNCTION_THEN_EXAMPLE = (
    "Here is a function that adds two numbers:\n```python\n" + GOOD + "```\n\nExample usage:\n```python\n"
    "print(add(2, 3))  # Output: 5\n```\nIt returns the sum."
)


def text_coding_trajectory(*answers: str):
    """A free-text coding episode as the rollouts write it: the request verbatim, answers in plain text, no tools."""
    from synth.schemas.records import TrajectoryRecord

    messages = [Message(role="system", content="You help with Python."),
                Message(role="user", content="Write a Python function add(a, b) that returns a + b.")]
    for i, text in enumerate(answers):
        if i:
            messages.append(Message(role="user", content="Thanks, one more look?"))
        messages.append(Message(role="assistant", content=text))
    return TrajectoryRecord(id="traj-text", task_id="task-code", agent_id="agent-code", messages=messages)


def test_a_message_program_is_its_blocks_joined_and_a_call_wins_over_text() -> None:
    from synth.judge.code_tests import message_program

    program = message_program(Message(role="assistant", content=FUNCTION_THEN_EXAMPLE))
    assert program == GOOD + "\n" + "print(add(2, 3))  # Output: 5\n"
    both = Message(role="assistant", content=f"```python\n{BAD}```",
                   tool_calls=[call("c1", "run_python", {"code": GOOD})])
    assert message_program(both) == GOOD  # what ran is the program, not the text beside it
    assert message_program(Message(role="assistant", content="```python\ndef add(a, b):\n  return a")) is None
    # The last message holding code decides; a later message without code changes nothing.
    traj = text_coding_trajectory(f"```python\n{BAD}```", FUNCTION_THEN_EXAMPLE, "Glad it helps!")
    assert extract_code(traj) == program


@pytest.mark.sandbox
async def test_a_function_then_an_example_block_passes_and_a_later_wrong_program_fails() -> None:
    passed = await run_python_tests(text_coding_trajectory(FUNCTION_THEN_EXAMPLE), TESTS)
    assert passed.passed, passed.detail
    # The last program is the one tested: a correct first answer replaced by a wrong one fails.
    replaced = await run_python_tests(text_coding_trajectory(FUNCTION_THEN_EXAMPLE, f"```python\n{BAD}```"), TESTS)
    assert not replaced.passed and "AssertionError" in replaced.detail
    # An example that calls a function the answer never defines fails the program as a whole.
    broken = "```python\ndef add(a, b):\n    return a + b\n```\n```python\nprint(plus(1, 2))\n```"
    result = await run_python_tests(text_coding_trajectory(broken), TESTS)
    assert not result.passed and "NameError" in result.detail


def _coding_task(tests: str):
    from synth.tasks.build import build_rubric
    from synth.tasks.draft import TaskDraft
    from synth.tasks.rubrics import default_library

    library = default_library()
    problem = next(p for p in library.coding_problems if p.tests == tests)
    rubric, _ = build_rubric(TaskDraft(user_goal=problem.request, persona="a student"), "coding",
                             [], library, problem)
    from synth.schemas.records import TaskRecord

    return TaskRecord(id="task-code", agent_id="agent-code", difficulty="coding", user_goal=problem.request,
                      rubric=rubric)


@pytest.mark.sandbox
async def test_a_free_text_coding_answer_is_accepted_on_the_reference_tests_alone() -> None:
    """The whole path on a hand-made trajectory: the coding rubric has no check but the bank's reference tests;
    they run in the sandbox on the fenced code; ``auto`` accepts on them, with the judge model failing it."""
    from synth.judge.accept import accept
    from synth.tasks.rubrics import default_library

    problem = next(p for p in default_library().coding_problems if p.id == "factorial")
    task = _coding_task(problem.tests)
    assert task.rubric is not None and task.rubric.checks == [] and task.rubric.python_tests == problem.tests
    good = text_coding_trajectory("Sure:\n```python\n" + problem.reference + "```\nExample:\n```python\n"
                                  "print(factorial(5))\n```")
    wrong = text_coding_trajectory("```python\ndef factorial(n):\n    return n * factorial(n - 1)\n```")
    criteria = task.rubric.criteria
    zeros = {"scores": [{"criterion_id": c.id, "evidence": "", "score": 0} for c in criteria], "summary": "bad"}
    cfg = JudgeStageConfig()
    for traj, ok in ((good, True), (wrong, False)):
        verdict = await judge_trajectory(traj, task, ScriptedPool([zeros]), cfg, seed=0)
        assert [c.check_id for c in verdict.checks] == ["python_tests"]
        assert verdict.verifiable and verdict.code_passed is ok and verdict.llm_passed is False
        decision = accept(verdict, criteria, cfg)
        assert decision.accepted is ok and decision.by == ("verifiable" if ok else None)


@pytest.mark.sandbox
async def test_a_program_that_passes_the_asserts_with_a_forbidden_call_fails() -> None:
    """to_binary "without using bin()": bin(n)[2:] passes every assert, and still is not what was asked."""
    from synth.tasks.rubrics import default_library

    problem = next(p for p in default_library().coding_problems if p.id == "binary")
    cheat = text_coding_trajectory("```python\ndef to_binary(n):\n    return bin(n)[2:]\n```")
    result = await run_python_tests(cheat, problem.tests)
    assert not result.passed and result.detail == "the program uses what the request rules out: 'bin' at line 2"
    honest = await run_python_tests(text_coding_trajectory(f"```python\n{problem.reference}```"), problem.tests)
    assert honest.passed, honest.detail
    # Tests that are not a bank problem's carry no such rule.
    other = await run_python_tests(text_coding_trajectory("```python\ndef add(a, b):\n    return a + b\nbin(3)\n```"),
                                   TESTS)
    assert other.passed, other.detail
