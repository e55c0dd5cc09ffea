"""Rubric data from ``rubrics/``: core and prescriptive criteria, and one task template per difficulty.

The files are data that people edit by hand, so every error names the file and the field
(``refuse.calls.max``) and says what is allowed; a template that names an unknown prescriptive criterion fails
at load time, not when the first task of that difficulty is judged.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synth.errors import SynthError
from synth.paths import RUBRICS
from synth.schemas.records import Difficulty
from synth.schemas.rubric import Criterion
from synth.tasks.coding import CodingProblem, pick_problem, problems_path

DIFFICULTIES: tuple[Difficulty, ...] = get_args(Difficulty)
EntryT = TypeVar("EntryT", bound="CriterionEntry | CodingProblem")

DeriveRule = Literal[
    "expected_calls", "no_tool_called", "final_mentions", "state_equals", "python_tests", "sandbox_called",
    "reports_result", "call_budget",
]


class RubricError(SynthError, ValueError):
    """Rubric data that cannot be used; the message names the file and the field."""

    hint = "fix that entry of the rubric YAML (`git checkout rubrics/` restores the shipped files)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CriterionEntry(Criterion):
    """A criterion as written in a YAML file: unknown keys are typos, so they are refused."""

    model_config = ConfigDict(extra="forbid")


class CallBounds(_Strict):
    min: int = Field(default=0, ge=0)
    max: int = Field(default=4, ge=0, le=8)

    @model_validator(mode="after")
    def _ordered(self) -> CallBounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class TaskTemplate(_Strict):
    description: str = Field(
        min_length=1, description="What the generator is asked to write for this difficulty."
    )
    calls: CallBounds = Field(
        default_factory=CallBounds, description="How many tool calls the task may expect."
    )
    checks: list[DeriveRule] = Field(default_factory=list, description="Code checks derived from the draft.")
    min_hidden_details: int = Field(
        default=0, ge=0, le=4, description="Details the user must hold back (clarification tasks)."
    )
    require_ok: bool = Field(default=False, description="Call checks count only calls that succeeded.")
    grounded: bool = Field(
        default=False,
        description="Code picks the expected call's tool and argument values (synth.tasks.grounded); the user's "
        "opening message states them word for word, and the generator writes only the wording and the world.",
    )
    prescriptive: list[str] = Field(
        default_factory=list, description="Ids from prescriptive.yaml that apply."
    )
    skip_core: list[str] = Field(default_factory=list, description="Ids from core.yaml that do not apply.")


class RubricLibrary(BaseModel):
    core: list[Criterion]
    prescriptive: list[Criterion]
    templates: dict[Difficulty, TaskTemplate]
    coding_problems: list[CodingProblem] = Field(default_factory=list)

    def coding_problem(self, seed: int) -> CodingProblem:
        return pick_problem(self.coding_problems, seed)

    def template(self, difficulty: str) -> TaskTemplate:
        if difficulty not in self.templates:
            raise KeyError(f"no task template for difficulty {difficulty!r}; known: {sorted(self.templates)}")
        return self.templates[difficulty]  # type: ignore[index]

    def base_criteria(self, difficulty: str) -> list[Criterion]:
        """Core criteria plus the prescriptive ones the difficulty's template names, in file order."""
        template = self.template(difficulty)
        wanted, skipped = set(template.prescriptive), set(template.skip_core)
        core = [c.model_copy() for c in self.core if c.id not in skipped]
        return core + [c.model_copy() for c in self.prescriptive if c.id in wanted]


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _explain(path: Path, exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> RubricError:
    lines = []
    for err in exc.errors():
        field = _where((*prefix, *err["loc"]))
        msg = "unknown field (a typo?)" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {field}: {msg}; got {err.get('input')!r}")
    return RubricError(f"{path}: invalid rubric data:\n" + "\n".join(lines))


def _read(path: Path) -> Any:
    if not path.exists():
        raise RubricError(f"{path}: file not found; rubric data lives in {path.parent}/")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RubricError(f"{path}: not valid YAML: {exc}") from exc


def _entries(path: Path, model: type[EntryT], fields: str) -> list[EntryT]:
    """A YAML list of ``model`` entries with unique ids; errors name the file, the entry and the field."""
    data = _read(path)
    if not isinstance(data, list) or not data:
        raise RubricError(f"{path}: must hold a non-empty list of entries ({fields})")
    out: list[EntryT] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        try:
            entry = model.model_validate(item)
        except ValidationError as exc:
            raise _explain(path, exc, prefix=(i,)) from exc
        if entry.id in seen:
            raise RubricError(f"{path}: [{i}].id: duplicate id {entry.id!r}")
        seen.add(entry.id)
        out.append(entry)
    return out


def _criteria(path: Path, kind: Literal["core", "prescriptive"]) -> list[Criterion]:
    entries = _entries(path, CriterionEntry, "id, kind, description, weight, required")
    for i, entry in enumerate(entries):
        if entry.kind != kind:
            raise RubricError(f"{path}: [{i}].kind: must be {kind!r} in this file; got {entry.kind!r}")
        if entry.weight < 0:
            raise RubricError(f"{path}: [{i}].weight: must be >= 0; got {entry.weight}")
    return [Criterion.model_validate(e.model_dump()) for e in entries]


def _templates(
    path: Path, core: list[Criterion], prescriptive: list[Criterion]
) -> dict[Difficulty, TaskTemplate]:
    data = _read(path)
    if not isinstance(data, dict):
        raise RubricError(f"{path}: must map each difficulty ({', '.join(DIFFICULTIES)}) to a template")
    unknown = sorted(set(data) - set(DIFFICULTIES))
    if unknown:
        raise RubricError(f"{path}: {unknown[0]}: unknown difficulty; allowed: {list(DIFFICULTIES)}")
    missing = [d for d in DIFFICULTIES if d not in data]
    if missing:
        raise RubricError(
            f"{path}: {missing[0]}: missing template; every difficulty needs one: {list(DIFFICULTIES)}"
        )
    known = [c.id for c in prescriptive]
    known_core = [c.id for c in core]
    out: dict[Difficulty, TaskTemplate] = {}
    for difficulty in DIFFICULTIES:
        try:
            template = TaskTemplate.model_validate(data[difficulty])
        except ValidationError as exc:
            raise _explain(path, exc, prefix=(difficulty,)) from exc
        for i, cid in enumerate(template.prescriptive):
            if cid not in known:
                raise RubricError(
                    f"{path}: {difficulty}.prescriptive[{i}]: unknown criterion {cid!r}; "
                    f"known (from prescriptive.yaml): {known}"
                )
        for i, cid in enumerate(template.skip_core):
            if cid not in known_core:
                raise RubricError(
                    f"{path}: {difficulty}.skip_core[{i}]: unknown criterion {cid!r}; "
                    f"known (from core.yaml): {known_core}"
                )
        out[difficulty] = template
    return out


def load_rubric_library(root: Path | str | None = None) -> RubricLibrary:
    """Read ``core.yaml``, ``prescriptive.yaml``, ``task_templates.yaml`` and, when a template runs python
    tests, ``coding_problems.yaml`` from ``root`` (``rubrics/``)."""
    root = Path(root) if root else RUBRICS
    core = _criteria(root / "core.yaml", "core")
    prescriptive = _criteria(root / "prescriptive.yaml", "prescriptive")
    clash = {c.id for c in core} & {c.id for c in prescriptive}
    if clash:
        raise RubricError(
            f"{root / 'prescriptive.yaml'}: id {sorted(clash)[0]!r} is already used in core.yaml"
        )
    templates = _templates(root / "task_templates.yaml", core, prescriptive)
    problems: list[CodingProblem] = []
    if any("python_tests" in t.checks for t in templates.values()):
        problems = _entries(problems_path(root), CodingProblem, "id, function, request, reference, tests")
    return RubricLibrary(core=core, prescriptive=prescriptive, templates=templates, coding_problems=problems)


@cache
def default_library() -> RubricLibrary:
    """The repository's rubric data, read once per process."""
    return load_rubric_library()
