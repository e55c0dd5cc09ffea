"""The coding check cannot be faked: programs that try to decide the outcome themselves all fail it.

Every adversarial program below defines the function wrongly (or not at all) and then tries to make the check
pass anyway: early exits of every kind, an atexit hook, a fake success line, redefined test functions or
AssertionError, patched builtins, a BaseException catch-all, a fork that exits 0, closed or dup'ed file
descriptors, killing the parent, an always-equal result, copying the expected value out of the test. Real
sandbox runs (the sandbox tier: root on Linux, as in CI); the reference solutions' own test lives in tests/tasks.
"""

from __future__ import annotations

import pytest

from synth.runtime.check_runner import SplitError, split_tests
from synth.runtime.sandbox import check_python

pytestmark = pytest.mark.timeout(120)

TESTS = (
    'assert reverse_words("hello big world") == "world big hello"\n'
    'assert reverse_words("  one  ") == "one"\n'
    'assert reverse_words("") == ""\n'
)
GOOD = 'def reverse_words(text):\n    return " ".join(reversed(text.split()))\n'
WRONG = "def reverse_words(text):\n    return text\n"

ADVERSARIAL = {
    "sys_exit_0": WRONG + "import sys\nsys.exit(0)\n",
    "os_exit_0": WRONG + "import os\nos._exit(0)\n",
    "raise_system_exit": WRONG + "raise SystemExit(0)\n",
    "main_guard_exit": WRONG
    + "import sys\ndef main():\n    return 0\nif __name__ == '__main__':\n    sys.exit(main())\n",
    "exit_inside_function": "import os\ndef reverse_words(text):\n    os._exit(0)\n",
    "sys_exit_inside_function": "import sys\ndef reverse_words(text):\n    sys.exit(0)\n",
    "atexit_hook": WRONG + "import atexit, os\natexit.register(lambda: os._exit(0))\n",
    "fake_success_line": WRONG
    + "print('tests passed'); print('{\"tests\": [], \"passed\": true}')\nimport sys\nsys.stdout.flush()\n",
    "redefine_tests_and_assertion_error": WRONG
    + "class AssertionError(Exception):\n    pass\n"
    + "def test_reverse():\n    pass\n"
    + "reverse_words_expected = None\n",
    "shadow_builtin_names": WRONG + "def sorted(*a, **k):\n    return True\nprint = lambda *a, **k: None\n",
    "patch_builtins": WRONG
    + "import builtins\n"
    + "class Fake(Exception):\n    pass\n"
    + "builtins.AssertionError = Fake\nbuiltins.print = lambda *a, **k: None\nbuiltins.isinstance = lambda *a: True\n"
    + "builtins.len = lambda x: 0\n",
    "catch_base_exception_everywhere": "import sys\n"
    + "def reverse_words(text):\n"
    + "    try:\n        return text\n    except BaseException:\n        return text\n"
    + "sys.excepthook = lambda *a: None\n"
    + "try:\n    pass\nexcept BaseException:\n    pass\n",
    "fork_that_exits_0": WRONG + "import os\nif os.fork() != 0:\n    os._exit(0)\n",
    "fork_in_function": "import os, sys\n"
    + "def reverse_words(text):\n    if os.fork() == 0:\n        return text\n    os._exit(0)\n",
    "close_and_dup_fds": WRONG
    + "import os\nfor fd in range(3, 256):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\n"
    + "os.dup2(1, 2)\n",
    "write_fake_reports_to_every_fd": "import os, json\n"
    + "def reverse_words(text):\n"
    + "    for fd in range(3, 64):\n"
    + "        for i in range(5):\n"
    + "            try:\n"
    + "                os.write(fd, (json.dumps({'kind': 'assert', 'index': i, 'values': ['world big hello']})"
    + " + '\\n').encode())\n"
    + "                os.write(fd, b'{\"kind\": \"finished\"}\\n')\n"
    + "            except OSError:\n"
    + "                pass\n"
    + "    os._exit(0)\n",
    "kill_the_parent": WRONG + "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "kill_everyone": WRONG + "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n",
    "always_equal_result": "class Eq(str):\n    def __eq__(self, other):\n        return True\n"
    + "    __hash__ = str.__hash__\n"
    + "def reverse_words(text):\n    return Eq('x')\n",
    "always_equal_object": "class Eq:\n    def __eq__(self, other):\n        return True\n"
    + "def reverse_words(text):\n    return Eq()\n",
    "copy_expected_from_caller_frame": "import sys\n"
    + "def reverse_words(text):\n"
    + "    frame = sys._getframe(1)\n"
    + "    strings = [c for c in frame.f_code.co_consts if isinstance(c, str) and c != text]\n"
    + "    return strings[-1] if strings else ''\n",
    "read_the_tests_file": "def reverse_words(text):\n"
    + "    import ast, glob\n"
    + "    for path in ['tests.py', *glob.glob('/work/**/coding_problems.yaml', recursive=True)]:\n"
    + "        try:\n            src = open(path).read()\n        except OSError:\n            continue\n"
    + "        for line in src.splitlines():\n"
    + "            if repr(text) in line.replace('\"', \"'\") and '==' in line:\n"
    + "                return ast.literal_eval(line.split('==')[-1].strip())\n"
    + "    return text\n",
    "settrace_skips_asserts": "import sys\n"
    + "def reverse_words(text):\n    return text\n"
    + "def _tracer(frame, event, arg):\n    return None\n"
    + "sys.settrace(_tracer)\n",
    "patch_report_channel": WRONG + "import os\n_real = os.write\nos.write = lambda fd, data: len(data)\n",
}


@pytest.mark.sandbox
def test_correct_solution_passes_with_a_result_per_test() -> None:
    run = check_python(GOOD, TESTS, timeout_s=30)
    assert run.ok, (run.stderr, run.tests, run.verdict_error)
    assert run.expected_tests == 3 and [t.passed for t in run.tests] == [True, True, True]
    assert [t.line for t in run.tests] == [1, 2, 3]


@pytest.mark.sandbox
def test_main_guard_does_not_run_and_a_correct_solution_with_one_still_passes() -> None:
    code = GOOD + "if __name__ == '__main__':\n    raise SystemExit(1)\n"
    run = check_python(code, TESTS, timeout_s=30)
    assert run.ok, (run.stderr, run.tests)


@pytest.mark.sandbox
def test_one_failing_test_fails_the_check_and_names_the_test() -> None:
    code = 'def reverse_words(text):\n    return " ".join(reversed(text.split(" ")))\n'  # wrong on "  one  "
    run = check_python(code, TESTS, timeout_s=30)
    assert not run.ok
    assert [t.passed for t in run.tests] == [True, False, True]
    assert "AssertionError" in run.tests[1].detail and "line 2" in run.stderr


@pytest.mark.sandbox
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_program_fails_the_check(name: str) -> None:
    run = check_python(ADVERSARIAL[name], TESTS, timeout_s=30)
    assert not run.ok, (name, run.tests, run.stdout[-500:])
    assert run.passed_tests < run.expected_tests == 3


@pytest.mark.sandbox
def test_a_solution_that_hides_a_fork_keeps_nothing_running_into_the_next_test() -> None:
    # A background child of test 1 that would kill test 2's process is gone before test 2 starts.
    code = GOOD + "import os, time, signal\nif os.fork() == 0:\n    time.sleep(2)\n    os.kill(-1, signal.SIGKILL)\n"
    run = check_python(code, TESTS, timeout_s=30)
    # Each test re-imports the solution (so each forks again); the fork is killed when its test's process ends.
    assert run.ok, (run.stderr, run.tests, run.verdict_error)
    assert run.duration_s < 6 * 3  # nobody waited for the sleeping forks


def test_split_counts_top_level_asserts_and_test_functions_and_keeps_expected_values_out() -> None:
    source = (
        "import math\n"
        "assert f(1) == 2\n"
        "x = 3\n"
        "assert 0 < f(x) <= 10, 'bounded'\n"
        "def helper():\n    return 4\n"
        "def test_more():\n    y = f(helper())\n    assert y == 'secret-expected'\n    assert y\n"
    )
    units = split_tests(source)
    assert [u.name for u in units] == ["assert at line 2", "assert at line 4", "test_more"]
    assert [len(u.asserts) for u in units] == [1, 1, 2]
    assert "secret-expected" not in units[2].code and "== 2" not in units[0].code
    assert "x = 3" not in units[0].code and "x = 3" in units[1].code  # set-up written before it only
    with pytest.raises(SplitError, match="nothing would be checked"):
        split_tests("x = 1\n")
    with pytest.raises(SplitError, match="do not parse"):
        split_tests("assert (\n")
