"""How much of BFCL is in a set of training rows: its function names and its questions, normalised.

For the dataset stage's report: nothing of BFCL may reach generation or training, so the count it reports must be 0.
A row counts when one of its tools (or one call it makes) has a BFCL function's name, or when one of its messages
holds a BFCL question. Names are compared case-folded with every run of non-alphanumerics as one underscore
(``math.factorial`` is ``math_factorial``, as BFCL's FC conversion writes it); texts case-folded with punctuation
and spacing dropped. A message holds a question when it is the question, or contains it and the question is at
least ``MIN_CONTAINED_CHARS`` long (a short question such as "What is 2+2?" inside a longer text is a coincidence).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, Field

from synth.bfcl.data import CATEGORIES, questions_and_functions

MIN_CONTAINED_CHARS = 40


class Contamination(BaseModel):
    rows: int = Field(description="Rows looked at.")
    contaminated_rows: int = Field(description="Rows with a BFCL function name or question (the number to report).")
    function_rows: int = Field(description="Rows with a tool or call named as a BFCL function.")
    question_rows: int = Field(description="Rows with a message holding a BFCL question.")
    function_names: list[str] = Field(default_factory=list, description="The BFCL names found (normalised).")
    question_ids: list[str] = Field(default_factory=list, description="The BFCL items whose question was found.")


def normal_name(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.casefold()).strip("_")


def normal_text(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.casefold()).split())


@cache
def _reference(categories: tuple[str, ...]) -> tuple[frozenset[str], dict[str, str]]:
    questions, names = questions_and_functions(categories)
    by_text: dict[str, str] = {}
    for item_id, text in questions.items():
        if norm := normal_text(text):
            by_text.setdefault(norm, item_id)
    return frozenset(normal_name(n) for n in names), by_text


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _names(row: Mapping[str, Any]) -> set[str]:
    """Every tool name a row declares or calls (tools as OpenAI dicts, bare function dicts or JSON strings)."""
    found = set()
    for tool in _json(row.get("tools")) or []:
        tool = _json(tool)
        if isinstance(tool, Mapping):
            fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
            if isinstance(fn.get("name"), str):
                found.add(fn["name"])
    for message in row.get("messages") or []:
        for call in (message.get("tool_calls") or []) if isinstance(message, Mapping) else []:
            fn = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
                found.add(fn["name"])
    return found


def _texts(row: Mapping[str, Any]) -> list[str]:
    return [normal_text(m["content"]) for m in row.get("messages") or []
            if isinstance(m, Mapping) and isinstance(m.get("content"), str)]


def function_names(categories: tuple[str, ...] = CATEGORIES) -> frozenset[str]:
    """BFCL's function names in ``categories``, normalised as :func:`normal_name` writes them."""
    return _reference(tuple(categories))[0]


def contamination(rows: Iterable[Mapping[str, Any]], categories: tuple[str, ...] = CATEGORIES) -> Contamination:
    """Count the ``rows`` (each with ``messages`` and ``tools``) that hold BFCL's function names or questions."""
    names, questions = _reference(tuple(categories))
    contained = [(q, i) for q, i in questions.items() if len(q) >= MIN_CONTAINED_CHARS]
    total = by_fn = by_q = dirty = 0
    hit_names: set[str] = set()
    hit_ids: set[str] = set()
    for row in rows:
        total += 1
        fn_hits = {normal_name(n) for n in _names(row)} & names
        q_hits = set()
        for text in _texts(row):
            if text in questions:
                q_hits.add(questions[text])
            q_hits.update(i for q, i in contained if q in text)
        by_fn += bool(fn_hits)
        by_q += bool(q_hits)
        dirty += bool(fn_hits or q_hits)
        hit_names |= fn_hits
        hit_ids |= q_hits
    return Contamination(rows=total, contaminated_rows=dirty, function_rows=by_fn, question_rows=by_q,
                         function_names=sorted(hit_names), question_ids=sorted(hit_ids))
