"""The pydantic config is the only source of defaults: pipelines/default.yaml and the README's config table say
the same as synth/config.py, so a user never reads one default and runs with another."""

from __future__ import annotations

import re
from typing import Any

from synth.config import PipelineConfig, load_config
from synth.paths import REPO_ROOT

# README words for defaults that are not literals.
WORDS = {"none": None, "derived": None, "true": True, "false": False, "{}": {}}


def _split(cell: str) -> list[str]:
    """Split 'a, [1, 2], b' at top-level commas."""
    parts, depth, cur = [], 0, ""
    for ch in cell:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*parts, cur.strip()] if cur.strip() else parts


def _lookup(cfg: PipelineConfig, dotted: str, section: str | None) -> Any:
    node: Any = cfg
    path = dotted.split(".") if "." in dotted or section is None else [section, dotted]
    for key in path:
        node = node[key] if isinstance(node, dict) else getattr(node, key)
    return node


def _same(readme: str, value: Any) -> bool:
    text = readme.strip("`")
    if text in WORDS:
        return WORDS[text] == value
    if isinstance(value, bool):
        return False
    if isinstance(value, tuple | list):
        if m := re.fullmatch(r"(\d+) kinds", text):  # a list described by its length
            return int(m.group(1)) == len(value)
        inner = text.strip("[]").strip()
        return [str(v) for v in value] == ([t.strip().strip("`") for t in inner.split(",")] if inner else [])
    if isinstance(value, float | int):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return text == str(value)


def _rows() -> list[tuple[list[str], list[str]]]:
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("## Config reference"):]
    table = table[: table.index("\n## ", 3)]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        rows.append((re.findall(r"`([^`]+)`", cells[0]), _split(cells[1])))
    return rows


def test_default_yaml_sets_nothing_the_code_does_not() -> None:
    assert load_config() == PipelineConfig()


def test_readme_config_table_matches_the_code() -> None:
    cfg = PipelineConfig()
    rows = _rows()
    assert len(rows) >= 15, "the README's config table was not found"
    checked, wrong = 0, []
    for fields, defaults in rows:
        if len(fields) != len(defaults):
            continue  # a row that describes its defaults in words (e.g. "4 kinds")
        section = fields[0].split(".")[0] if "." in fields[0] else None
        for field, shown in zip(fields, defaults, strict=True):
            try:
                value = _lookup(cfg, field, section)
            except (AttributeError, KeyError):
                wrong.append(f"{field}: no such config field")
                continue
            checked += 1
            if not _same(shown, value):
                wrong.append(f"{field}: README says {shown}, code says {value!r}")
    assert not wrong, "\n".join(wrong)
    assert checked >= 30


def test_every_pipeline_yaml_is_a_valid_config() -> None:
    """A config a Makefile target runs (make data-value) fails here, not an hour into a run."""
    from pathlib import Path

    from synth.config import load_config

    files = sorted(Path("pipelines").glob("*.yaml"))
    assert {f.name for f in files} >= {"default.yaml", "data_value.yaml"}
    for f in files:
        load_config(f)
