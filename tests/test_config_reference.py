"""docs/config.md is generated from the pydantic models: it is exactly what ``render()`` writes now, it lists every
field with its real default, and every field has a description to show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from synth.config import PipelineConfig
from synth.config_reference import TOP, fields, render, sections, type_name
from synth.paths import REPO_ROOT


def test_docs_config_md_is_the_generated_reference() -> None:
    page = REPO_ROOT / "docs" / "config.md"
    assert page.read_text() == render(), "docs/config.md is out of date: run `make docs` and commit it"


def test_every_field_has_a_description() -> None:
    missing = [f.name for f in fields() if not f.description]
    assert not missing, f"config fields without description=: {missing}"


def test_a_field_without_description_is_reported() -> None:
    class Section(BaseModel):
        said: int = Field(default=1, description="Has one.")
        unsaid: int = 2

    class Config(BaseModel):
        top: str = Field(default="x", description="Top.")
        section: Section = Field(default_factory=Section)

    got = {f.name: f for _, _, rows in sections(Config) for f in rows}
    assert set(got) == {"top", "section.said", "section.unsaid"}
    assert got["section.unsaid"].description == "" and got["section.said"].description == "Has one."
    assert got["top"].section == TOP and got["section.said"].section == "section"


def test_every_field_is_listed_with_its_real_default() -> None:
    cfg = PipelineConfig().model_dump(mode="json")
    listed = {f.name: f for f in fields()}
    expected: list[tuple[str, object]] = []

    def leaves(model: type[BaseModel], values: dict, prefix: str) -> None:
        for name, value in values.items():  # as dumped: a field a section leaves out at its default is not here
            sub = model.model_fields[name].annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):  # a section, nested ones too
                leaves(sub, value, f"{prefix}{name}.")
            else:
                expected.append((f"{prefix}{name}", value))

    leaves(PipelineConfig, cfg, "")
    assert {n for n, _ in expected} <= set(listed)
    wrong = [f"{n}: page says {listed[n].default}, code says {v!r}" for n, v in expected
             if listed[n].default != f"`{json.dumps(v)}`"]
    assert not wrong, "\n".join(wrong)
    # Items of lists and mappings of models are listed by their own fields.
    assert {"llm.endpoints[].base_url", "llm.roles.<role>.max_tokens"} <= set(listed)
    assert listed["llm.endpoints[].base_url"].default == "required"


def test_type_names_read_as_yaml() -> None:
    assert type_name(Literal["auto", "native"]) == '"auto" | "native"'
    assert type_name(int | None) == "int | null"
    assert type_name(list[Annotated[str, StringConstraints(pattern="x")]]) == "list[str]"
    assert type_name(Path | None) == "path | null"
    assert type_name(tuple[int, int]) == "tuple[int, int]"
