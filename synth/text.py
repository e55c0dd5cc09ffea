"""Text matching shared by the code checks and the task builders: how an answer "mentions" a value.

One definition, so that a task's request is built to mention its values by the same rule the judge's
``final_mentions`` check later applies to the answer.
"""

from __future__ import annotations

import re
from typing import Any


def normalize(text: str) -> str:
    """Casefolded, whitespace collapsed: how quotes and mentions are compared."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


REPORTABLE_MIN_CHARS = 3
"""A result's string shorter than this ("ok", "a") is no evidence that the answer reports the result."""


def mentions(text: str, value: Any) -> bool:
    """Whether ``text`` mentions ``value`` as a whole word (numbers in their usual written forms)."""
    norm = normalize(text)
    return any(_mentioned(form, norm) for form in _mention_forms(value))


EDGE_PUNCTUATION = " .,;:!?\"'`"
"""Stripped from a value's ends for a second form: a result's 'Sunny,' is reported as 'sunny' (a trained agent
quotes a search result whole but for its trailing comma, and the check must not fail it for that)."""


def _mention_forms(value: Any) -> set[str]:
    """Ways a value can be written: 42.0 may appear as '42', 1500 as '1,500', 'Sunny,' as 'sunny'."""
    forms = {normalize(str(value))}
    bare = normalize(str(value)).strip(EDGE_PUNCTUATION)
    if len(bare) >= REPORTABLE_MIN_CHARS:
        forms.add(bare)
    number = as_number(value)
    if number is not None:
        if number.is_integer():
            forms |= {str(int(number)), f"{int(number):,}"}
        else:
            forms |= {repr(number), f"{number:,}"}
    return {f for f in forms if f}


def _mentioned(form: str, text: str) -> bool:
    # Whole words only, and a number not inside a longer one: "18" is not mentioned by "2018" or "18.5".
    return re.search(rf"(?<!\w)(?<!\d[.,]){re.escape(form)}(?!\w)(?![.,]\d)", text) is not None
