"""The coding problem bank: every reference solution passes its tests in the real sandbox, a wrong one fails,
and a broken problem is refused at load time with the file and field named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from synth.paths import RUBRICS
from synth.runtime.sandbox import check_python
from synth.tasks.rubrics import RubricError, default_library, load_rubric_library

PROBLEMS = default_library().coding_problems


def test_bank_is_large_and_ids_are_unique() -> None:
    assert len(PROBLEMS) >= 20
    assert len({p.id for p in PROBLEMS}) == len(PROBLEMS)
    assert len({p.function for p in PROBLEMS}) == len(PROBLEMS)


@pytest.mark.sandbox
@pytest.mark.parametrize("problem", PROBLEMS, ids=[p.id for p in PROBLEMS])
def test_reference_passes_and_a_wrong_solution_fails(problem) -> None:  # type: ignore[no-untyped-def]
    good = check_python(problem.reference, problem.tests, timeout_s=20)
    assert good.ok, good.stderr
    wrong = check_python(f"def {problem.function}(*args, **kwargs):\n    return None\n", problem.tests, timeout_s=20)
    assert not wrong.ok and "AssertionError" in wrong.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tests": "assert 1 == 1"}, "no assert calls"),
        ({"tests": "x = reverse_words('a')"}, "assert statements only"),
        ({"request": "Reverse some words."}, "request must name the function"),
        ({"reference": "def other(text):\n    return text\n"}, "does not define"),
    ],
)
def test_broken_problem_is_refused_naming_file_and_entry(tmp_path: Path, change: dict, message: str) -> None:
    root = tmp_path / "rubrics"
    shutil.copytree(RUBRICS, root)
    data = yaml.safe_load((root / "coding_problems.yaml").read_text())
    data[0].update(change)
    (root / "coding_problems.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(RubricError, match=message) as info:
        load_rubric_library(root)
    assert "coding_problems.yaml" in str(info.value) and "[0]" in str(info.value)


def test_forbidden_names_are_found_on_the_syntax_tree() -> None:
    from synth.tasks.coding import forbidden_uses

    assert forbidden_uses("def to_binary(n):\n    return bin(n)[2:]\n", ["bin"]) == ["'bin' at line 2"]
    assert forbidden_uses("def m(a, b):\n    c = a + b\n    c.sort()\n    return c\n", ["sort", "sorted"]) == [
        "'sort' at line 3"]
    assert forbidden_uses("from math import gcd as g\n", ["math"]) == ["'math' at line 1"]
    assert forbidden_uses("import math.fsum\n", ["math"]) == ["'math' at line 1"]
    # A name in a string or a comment is not a use; a program that does not parse has none (its tests fail).
    assert forbidden_uses("def f(n):\n    # no bin() here\n    return 'bin'\n", ["bin"]) == []
    assert forbidden_uses("def f(:\n", ["bin"]) == []
    constrained = {p.id: p.forbidden for p in PROBLEMS if p.forbidden}
    assert constrained == {"gcd": ["math"], "binary": ["bin"], "merge_sorted": ["sort", "sorted"]}


def test_a_reference_that_uses_what_its_problem_forbids_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "rubrics"
    shutil.copytree(RUBRICS, root)
    data = yaml.safe_load((root / "coding_problems.yaml").read_text())
    binary = next(p for p in data if p["id"] == "binary")
    binary["reference"] = "def to_binary(n):\n    return bin(n)[2:]\n"
    (root / "coding_problems.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(RubricError) as info:
        load_rubric_library(root)
    assert "uses what the problem forbids" in str(info.value) and "'bin'" in str(info.value)
