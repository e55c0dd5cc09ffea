"""BFCL v4's non-live AST items, loaded with BFCL's own loaders, and the fixed subsets ``--limit/--seed`` pick."""

from __future__ import annotations

import copy
import random
from functools import cache
from typing import Any

from pydantic import BaseModel, Field

from synth.bfcl.package import load
from synth.errors import SynthError

CATEGORIES: tuple[str, ...] = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")
"""The BFCL v4 non-live categories synth scores (Python; Java and JavaScript need tree-sitter)."""
NON_LIVE_MEAN: tuple[str, ...] = ("simple_python", "multiple", "parallel", "parallel_multiple")
"""BFCL's non-live mean here: the unweighted mean of these four categories' accuracies."""
RELEVANCE = ("irrelevance",)
"""Categories scored by BFCL's relevance rule (correct when no call is decoded), not by the AST checker."""


class BfclError(SynthError, ValueError):
    """A BFCL run that cannot go on as asked: an unknown category or mode, a dead endpoint."""


class BfclItem(BaseModel):
    """One BFCL test entry with what the model is shown and what the checker is given."""

    id: str
    category: str
    messages: list[dict[str, Any]] = Field(description="The entry's first (only) turn, as BFCL sends it.")
    functions: list[dict[str, Any]] = Field(
        description="The function docs as BFCL's generation shows them (with its language hint in descriptions).")
    checker_functions: list[dict[str, Any]] = Field(
        description="The function docs as BFCL's eval runner gives the checker (no language hint).")
    ground_truth: list[dict[str, Any]] | None = Field(
        default=None, description="BFCL's possible answers; None for irrelevance (no call is the answer).")

    def question(self) -> str:
        """The user's text of the entry (its user turns, joined)."""
        return "\n".join(m.get("content") or "" for m in self.messages if m.get("role") == "user")


def check_categories(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown:
        raise BfclError(f"unknown BFCL categories: {', '.join(unknown)}",
                        hint=f"use any of {', '.join(CATEGORIES)} (or 'all')")
    return [c for c in CATEGORIES if c in names]


@cache
def _load(category: str) -> tuple[BfclItem, ...]:
    bfcl = load()
    shown = bfcl.load_dataset_entry(category, include_prereq=False, include_language_specific_hint=True)
    checked = {e["id"]: e for e in bfcl.load_dataset_entry(category, include_prereq=False,
                                                             include_language_specific_hint=False)}
    answers = {} if category in RELEVANCE else {e["id"]: e["ground_truth"]
                                                for e in bfcl.load_ground_truth_entry(category)}
    items = []
    for entry in shown:
        if category not in RELEVANCE and entry["id"] not in answers:
            raise BfclError(f"BFCL's {category} entry {entry['id']} has no possible answer in bfcl-eval "
                            f"{bfcl.version}", hint="reinstall bfcl-eval (its data is incomplete)")
        items.append(BfclItem(id=entry["id"], category=category, messages=entry["question"][0],
                              functions=entry["function"], checker_functions=checked[entry["id"]]["function"],
                              ground_truth=answers.get(entry["id"])))
    return tuple(items)


def load_items(category: str) -> list[BfclItem]:
    """Every item of ``category`` in BFCL's order (copies: callers may change them)."""
    check_categories([category])
    return [item.model_copy(deep=True) for item in _load(category)]


def select(items: list[BfclItem], limit: int | None, seed: int) -> list[BfclItem]:
    """A fixed subset of ``limit`` items (all when ``limit`` is None or not smaller), in BFCL's order.

    The draw depends only on the seed and the category, so one category's subset does not move when another
    category is added or its limit changes.
    """
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise BfclError(f"--limit must be at least 1, got {limit}", hint="leave it out to score every item")
    category = items[0].category if items else ""
    rng = random.Random(f"synth-bfcl:{category}:{seed}")
    chosen = sorted(rng.sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def questions_and_functions(categories: tuple[str, ...] = CATEGORIES) -> tuple[dict[str, str], set[str]]:
    """Every item's question (id -> text) and every function name of ``categories``."""
    questions: dict[str, str] = {}
    names: set[str] = set()
    for category in categories:
        for item in _load(category):
            questions[item.id] = item.question()
            names.update(f["name"] for f in item.functions)
    return questions, names


def deep(value: Any) -> Any:
    """A deep copy: BFCL's helpers change the function docs and messages they are given."""
    return copy.deepcopy(value)
