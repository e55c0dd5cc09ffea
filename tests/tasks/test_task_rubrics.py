"""The rubric data in rubrics/ loads, and broken data fails with the file and the field named."""

import shutil
from pathlib import Path

import pytest

from synth.paths import RUBRICS
from synth.tasks.rubrics import DIFFICULTIES, RubricError, default_library, load_rubric_library


def test_repository_rubrics_load_for_every_difficulty() -> None:
    lib = default_library()
    assert set(lib.templates) == set(DIFFICULTIES)
    core = {c.id for c in lib.core}
    assert {"clarity", "fluency", "grounding", "helpfulness"} <= core
    assert {"no_invented_results", "no_false_success", "no_needless_calls", "asks_clarification"} <= {
        c.id for c in lib.prescriptive
    }
    refuse = [c.id for c in lib.base_criteria("refuse")]
    assert "refuses_appropriately" in refuse and "tool_use" not in refuse
    assert lib.template("refuse").checks == ["no_tool_called"] and lib.template("refuse").calls.max == 0
    assert lib.template("recover").require_ok
    assert "asks_clarification" in [c.id for c in lib.base_criteria("clarify")]
    with pytest.raises(KeyError, match="known"):
        lib.template("impossible")


@pytest.fixture
def rubric_dir(tmp_path: Path) -> Path:
    for name in ("core.yaml", "prescriptive.yaml", "task_templates.yaml"):
        shutil.copy(RUBRICS / name, tmp_path / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_bad_criterion_field_names_file_and_field(rubric_dir: Path) -> None:
    edit(rubric_dir / "core.yaml", "weight: 0.5", "weight: heavy")
    with pytest.raises(RubricError) as err:
        load_rubric_library(rubric_dir)
    assert str(rubric_dir / "core.yaml") in str(err.value)
    assert "[1].weight" in str(err.value) and "heavy" in str(err.value)


def test_misspelled_field_is_refused(rubric_dir: Path) -> None:
    edit(rubric_dir / "prescriptive.yaml", "required: true", "requird: true")
    with pytest.raises(RubricError, match=r"prescriptive\.yaml.*\n.*\[0\]\.requird: unknown field"):
        load_rubric_library(rubric_dir)


def test_bad_template_field_names_difficulty_and_field(rubric_dir: Path) -> None:
    edit(rubric_dir / "task_templates.yaml", "calls: {min: 2, max: 4}", "calls: {min: 2, max: many}")
    with pytest.raises(RubricError) as err:
        load_rubric_library(rubric_dir)
    assert "task_templates.yaml" in str(err.value) and "multi_call.calls.max" in str(err.value)

    edit(rubric_dir / "task_templates.yaml", "max: many", "max: 1")
    with pytest.raises(RubricError, match=r"multi_call\.calls: .*min \(2\) must not exceed max \(1\)"):
        load_rubric_library(rubric_dir)


def test_unknown_check_rule_and_unknown_criterion_reference(rubric_dir: Path) -> None:
    path = rubric_dir / "task_templates.yaml"
    edit(path, "checks: [no_tool_called]", "checks: [no_tools_called]")
    with pytest.raises(RubricError, match=r"refuse\.checks\[0\]"):
        load_rubric_library(rubric_dir)
    edit(path, "checks: [no_tools_called]", "checks: [no_tool_called]")
    edit(path, "prescriptive: [handles_tool_errors,", "prescriptive: [handles_errors,")
    with pytest.raises(RubricError, match=r"recover\.prescriptive\[0\]: unknown criterion 'handles_errors'"):
        load_rubric_library(rubric_dir)


def test_missing_difficulty_wrong_kind_duplicates_and_bad_yaml(rubric_dir: Path) -> None:
    templates = rubric_dir / "task_templates.yaml"
    text = templates.read_text()
    templates.write_text(text.replace("coding:", "codeing:"))
    with pytest.raises(RubricError, match="codeing: unknown difficulty"):
        load_rubric_library(rubric_dir)
    templates.write_text(text)

    edit(rubric_dir / "core.yaml", "kind: core", "kind: task")
    with pytest.raises(RubricError, match=r"core\.yaml: \[0\]\.kind: must be 'core'"):
        load_rubric_library(rubric_dir)
    edit(rubric_dir / "core.yaml", "kind: task", "kind: core")
    edit(rubric_dir / "core.yaml", "id: fluency", "id: clarity")
    with pytest.raises(RubricError, match=r"\[1\]\.id: duplicate id 'clarity'"):
        load_rubric_library(rubric_dir)

    (rubric_dir / "core.yaml").write_text("- id: [unclosed\n")
    with pytest.raises(RubricError, match=r"core\.yaml: not valid YAML"):
        load_rubric_library(rubric_dir)
    (rubric_dir / "core.yaml").unlink()
    with pytest.raises(RubricError, match=r"core\.yaml: file not found"):
        load_rubric_library(rubric_dir)
