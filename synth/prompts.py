"""Prompts are data: Jinja templates under ``rubrics/prompts/``, rendered with strict undefined variables."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from synth.paths import RUBRICS

PROMPTS_DIR = RUBRICS / "prompts"


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **variables: Any) -> str:
    """Render ``rubrics/prompts/<name>.j2``; a missing template or variable raises with its name."""
    try:
        return _env().get_template(f"{name}.j2").render(**variables).strip()
    except jinja2.TemplateNotFound as exc:
        known = sorted(p.stem for p in PROMPTS_DIR.glob("*.j2"))
        raise KeyError(f"no prompt template {name!r}; known: {known}") from exc
