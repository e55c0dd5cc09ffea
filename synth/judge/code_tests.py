"""Coding tasks: run the task's assert-based tests against the code the assistant wrote, in the real sandbox.

The sandbox (``synth.runtime.sandbox``) isolates the run; where it cannot be set up the check fails closed, since a
coding trajectory whose code was never run has not been shown to work. ``check_python`` runs each test in its own
process and decides each one outside the program (``synth.runtime.check_runner``): the check passes only when every
test of the problem ran and passed, whatever the program does to its own process, and it does not use what the
request rules out (a bank problem's ``forbidden`` names, read from its syntax tree).
"""

from __future__ import annotations

import asyncio
import re

from synth.runtime.check_runner import SplitError, split_tests
from synth.runtime.sandbox import SandboxError, check_python, sandbox_available
from synth.schemas.messages import Message
from synth.schemas.records import TrajectoryRecord
from synth.schemas.verdict import CheckResult

CHECK_ID = "python_tests"
CODE_ARGUMENTS = ("code", "source", "script", "program", "python")
"""Argument names under which code tools take the program, most tools' spelling first."""

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def _code_in_arguments(arguments: dict[str, object]) -> str | None:
    for key in CODE_ARGUMENTS:
        value = arguments.get(key)
        if isinstance(value, str) and value.strip():
            return value
    # A tool that names its argument otherwise: the longest string that looks like a program.
    programs = [v for v in arguments.values() if isinstance(v, str) and ("def " in v or "print(" in v)]
    return max(programs, key=len) if programs else None


def message_program(msg: Message) -> str | None:
    """The program one assistant message holds: its code tool call's argument (the last one, if several), or
    else its fenced Python blocks joined in order.

    Joined, because that is how a reader runs an answer: a 135M model's usual reply is the function in one block
    and an example that calls it in the next, and the example alone is no program. A later block that redefines
    the function wins, as it would when the answer is run; a block that fails to run fails the whole program.
    """
    for tc in reversed(msg.tool_calls or []):
        try:
            code = _code_in_arguments(tc.function.parsed_arguments())
        except ValueError:
            continue
        if code:
            return code
    blocks = [block for block in _FENCE.findall(msg.content or "") if block.strip()]
    return "\n".join(blocks) if blocks else None


def extract_code(traj: TrajectoryRecord) -> str | None:
    """The last program the assistant wrote: that of its last message holding code (``message_program``)."""
    for msg in reversed(traj.messages):
        if msg.role == "assistant" and (code := message_program(msg)) is not None:
            return code
    return None


def _forbidden_in(code: str, tests: str) -> list[str]:
    """What ``code`` uses that the bank problem with these ``tests`` forbids (none for tests not in the bank)."""
    from synth.tasks.coding import forbidden_uses, problem_for_tests
    from synth.tasks.rubrics import default_library

    problem = problem_for_tests(default_library().coding_problems, tests)
    return forbidden_uses(code, problem.forbidden) if problem is not None else []


async def run_python_tests(traj: TrajectoryRecord, tests: str, *, timeout_s: float | None = None) -> CheckResult:
    """Run ``tests`` against the assistant's last program; a failed, missing or unrunnable run fails.

    ``timeout_s`` (wall clock for all the tests) defaults to 5 s plus 3 s per test: each test starts its own
    interpreter, which a loaded machine makes slow, and a correct program must not fail for want of time.
    """
    code = extract_code(traj)
    if code is None:
        return CheckResult(check_id=CHECK_ID, passed=False,
                           detail="no Python code found in the assistant's tool calls or messages")  # fmt: skip
    if used := _forbidden_in(code, tests):
        # "without using bin()": a program that passes the asserts with bin() still did not do what was asked.
        return CheckResult(check_id=CHECK_ID, passed=False,
                           detail=f"the program uses what the request rules out: {', '.join(used)}")  # fmt: skip
    available, why = sandbox_available()
    if not available:
        return CheckResult(check_id=CHECK_ID, passed=False, detail=f"sandbox unavailable, not run: {why}")
    try:
        if timeout_s is None:
            try:
                timeout_s = 5 + 3 * len(split_tests(tests))
            except SplitError:
                timeout_s = 10  # the runner reports why nothing can be checked
        result = await asyncio.to_thread(check_python, code, tests, timeout_s=timeout_s)
    except SandboxError as exc:
        return CheckResult(check_id=CHECK_ID, passed=False, detail=f"sandbox failed, not run: {exc}")
    if result.ok:
        return CheckResult(check_id=CHECK_ID, passed=True,
                           detail=f"tests passed: all {result.expected_tests} in {result.duration_s:.1f}s")  # fmt: skip
    killed = f", killed: {result.killed}" if result.killed else ""
    failed = [f"{t.name}: {t.detail}" for t in result.tests if not t.passed]
    if result.verdict_error:
        why = result.verdict_error + (f"; {result.stderr.strip()[-300:]}" if result.stderr.strip() else "")
    elif len(result.tests) != result.expected_tests:
        why = f"the runner reported {len(result.tests)} tests, the problem has {result.expected_tests}"
    else:
        why = "; ".join(failed)
    return CheckResult(check_id=CHECK_ID, passed=False,
                       detail=(f"tests failed ({result.passed_tests} of {result.expected_tests} passed"
                               f"{killed}): {why}")[:1500])  # fmt: skip
