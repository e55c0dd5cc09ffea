"""The test tiers: a sandbox test fails where the sandbox cannot run (it never passes by skipping); the tiers
that `make test` and `make test-slow` run select every test exactly once, each as a command of its own; a tier
imports only the modules that can hold its tests, and a marker applied from elsewhere is refused."""

from __future__ import annotations

import itertools
import shlex
import subprocess

import pytest

from synth.paths import REPO_ROOT
from synth.runtime import sandbox
from tests.conftest import required_markers

TIER_MARKERS = ("integration", "sandbox", "slow")
INNER = ("-p", "no:cacheprovider", "-p", "no:asyncio")  # the inner runs need neither
CONFTEST = "from tests.conftest import (  # noqa: F401\n" + "".join(
    f"    {hook},\n" for hook in ("pytest_collection_modifyitems", "pytest_configure", "pytest_ignore_collect",
                                 "pytest_runtest_setup")
) + ")\n"


@pytest.fixture
def sandbox_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A suite of one sandbox test and one unit test, under this project's conftest."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite="""
        import pytest

        @pytest.mark.sandbox
        def test_runs_code_in_the_sandbox():
            pass

        def test_unit():
            pass
    """)
    return pytester


@pytest.mark.parametrize("missing", ["sandbox_available", "confinement_available"])
def test_a_sandbox_test_fails_where_the_sandbox_cannot_run(sandbox_suite: pytest.Pytester,
                                                           monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setattr(sandbox, "sandbox_available", lambda: (True, "ok"))
    monkeypatch.setattr(sandbox, "confinement_available", lambda: (True, "ok"))
    monkeypatch.setattr(sandbox, missing, lambda: (False, "no namespaces in this container"))
    result = sandbox_suite.runpytest_inprocess(*INNER)
    result.assert_outcomes(passed=1, errors=1)  # failed in set-up: not skipped, and not a pass
    result.stdout.fnmatch_lines(["*no namespaces in this container*as root on Linux*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_sandbox_test_runs_where_the_sandbox_can(sandbox_suite: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "sandbox_available", lambda: (True, "ok"))
    monkeypatch.setattr(sandbox, "confinement_available", lambda: (True, "ok"))
    sandbox_suite.runpytest_inprocess(*INNER).assert_outcomes(passed=2)


def _make_pytest_commands(*targets: str) -> list[list[str]]:
    dry = subprocess.run(["make", "-n", "-C", str(REPO_ROOT), *targets], capture_output=True, text=True, check=True)
    return [shlex.split(line) for line in dry.stdout.splitlines() if " -m pytest " in line]


def test_make_test_and_test_slow_run_every_test_exactly_once(pytester: pytest.Pytester) -> None:
    commands = _make_pytest_commands("test", "test-slow")
    # A plain command each: make stops on any exit but 0, pytest's 5 (nothing collected) included.
    assert all(not {"|", "||", "&&", ";", "&"} & set(cmd) for cmd in commands), commands
    tiers = [cmd[cmd.index("-m", cmd.index("pytest")) + 1] for cmd in commands]
    assert len(tiers) == 4, tiers  # unit, sandbox, integration, then the slow tier
    combos = [c for n in range(len(TIER_MARKERS) + 1) for c in itertools.combinations(TIER_MARKERS, n)]
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_combos="import pytest\n" + "".join(
        "".join(f"@pytest.mark.{m}\n" for m in combo) + f"def test_{'_'.join(combo) or 'unit'}():\n    pass\n"
        for combo in combos
    ))
    selected = {}
    for tier in tiers:
        result = pytester.runpytest_inprocess(*INNER, "--collect-only", "-q", "-m", tier)
        selected[tier] = {line.split("::")[1] for line in result.outlines if "::" in line}
        assert selected[tier], f"the tier {tier!r} selects no test"
    counts = {name: sum(name in names for names in selected.values()) for name in
              (f"test_{'_'.join(c) or 'unit'}" for c in combos)}
    assert counts == dict.fromkeys(counts, 1), counts
    assert selected[tiers[0]] == {"test_unit"}  # the unit tier: no server, no root
    assert selected[tiers[1]] == {"test_sandbox"}


def test_a_tier_that_requires_a_marker_reads_only_the_modules_that_name_it() -> None:
    assert required_markers("sandbox and not integration and not slow and not gpu") == {"sandbox"}
    assert required_markers("integration and not slow and not gpu") == {"integration"}
    assert required_markers("slow and not gpu") == {"slow"}
    assert required_markers("not integration and not sandbox and not slow and not gpu") == set()
    assert required_markers("sandbox or integration") == set()  # either will do: neither is required
    assert required_markers("") == set()


def test_a_tier_does_not_import_modules_without_its_marker(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "sandbox_available", lambda: (True, "ok"))
    monkeypatch.setattr(sandbox, "confinement_available", lambda: (True, "ok"))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_marked="import pytest\n\n@pytest.mark.sandbox\ndef test_a():\n    pass\n",
                        test_plain="raise RuntimeError('imported')\n\ndef test_b():\n    pass\n")
    pytester.runpytest_inprocess(*INNER, "-m", "sandbox and not slow").assert_outcomes(passed=1)
    pytester.runpytest_inprocess(*INNER).assert_outcomes(errors=1)  # unfiltered, it is imported


def test_a_tier_marker_applied_from_another_module_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(markers="import pytest\n\nneeds_root = pytest.mark.sandbox\n",
                        test_hidden="from markers import needs_root\n\n@needs_root\ndef test_a():\n    pass\n")
    result = pytester.runpytest_inprocess(*INNER)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_a carries the 'sandbox' marker, but test_hidden.py never names it*"])
