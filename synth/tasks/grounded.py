"""Calls whose tool and argument values code chooses, so a task's check does not rest on the generator's guess.

A small generator writes expected arguments that contradict its own request (``targetPort: 0`` for "forward port
8080"), and a check built from them rejects correct episodes and accepts lucky ones. For a grounded task code
picks one of the agent's tools and a value for each argument it fills (from the parameter's schema: an enum, a
bounded number, a format, a name that says what it holds), the user's opening message states every value (code
makes sure of it), and the check asks for exactly those values. What remains for the agent is the skill the data
is meant to teach: pick the right tool and copy the details of the request into its arguments.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from typing import Any

import jsonschema

from synth.text import mentions

MAX_GROUNDED_ARGUMENTS = 3
"""Arguments a grounded call fixes at most: required ones first; more only makes the request read like a form."""

# Values for string parameters whose name says what they hold. Plain, common values a user would type.
NAMED_VALUES: dict[str, list[str]] = {
    "city": ["Lisbon", "Osaka", "Denver", "Nairobi", "Krakow", "Toronto", "Seville", "Melbourne"],
    "country": ["Portugal", "Japan", "Kenya", "Canada", "Chile", "Norway"],
    "name": ["Maria Lopez", "Kenji Sato", "Amara Obi", "Lukas Weber", "Priya Nair"],
    "email": ["maria.lopez@example.com", "k.sato@example.org", "amara.obi@example.net"],
    "language": ["Spanish", "German", "Japanese", "French"],
    "currency": ["EUR", "JPY", "CAD", "GBP"],
    "timezone": ["Europe/Lisbon", "Asia/Tokyo", "America/Denver", "Africa/Nairobi"],
    "color": ["blue", "green", "amber"],
    "status": ["pending", "shipped", "cancelled"],
    "namespace": ["payments", "staging", "web-frontend"],
    "branch": ["main", "release-2.4", "fix-login"],
    "query": ["quarterly revenue report", "wireless headphones", "vegan lasagna recipe"],
    "path": ["reports/summary.txt", "notes/todo.md", "data/input.csv"],
    "url": ["https://example.com/pricing", "https://example.org/docs/start"],
    "title": ["Team sync", "Budget review", "Site launch"],
}
ALIASES = {
    "location": "city", "destination": "city", "origin": "city", "town": "city",
    "username": "name", "user": "name", "customer": "name", "recipient": "email", "owner": "name",
    "lang": "language", "tz": "timezone", "q": "query", "search": "query", "keyword": "query", "term": "query",
    "file": "path", "filename": "path", "filepath": "path", "link": "url", "subject": "title",
}
_ID_WORDS = ("id", "number", "code", "ref", "reference", "sku", "key")


def param_words(param: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", param)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def string_value(param: str, schema: dict[str, Any], rng: random.Random) -> str | None:
    fmt = schema.get("format")
    if fmt == "date":
        return (dt.date(2026, 1, 5) + dt.timedelta(days=rng.randrange(0, 300))).isoformat()
    if fmt == "date-time":
        day = dt.datetime(2026, 1, 5, 9, 0) + dt.timedelta(days=rng.randrange(0, 300), hours=rng.randrange(0, 9))
        return day.isoformat(timespec="minutes")
    if fmt == "email":
        return rng.choice(NAMED_VALUES["email"])
    if fmt in ("uri", "url"):
        return rng.choice(NAMED_VALUES["url"])
    if schema.get("pattern"):
        return None  # a value that must match an arbitrary pattern is not guessed; the argument stays free
    words = param_words(param)
    for word in reversed(words):
        kind = word if word in NAMED_VALUES else ALIASES.get(word)
        if kind:
            return rng.choice(NAMED_VALUES[kind])
    if words and words[-1] in _ID_WORDS:
        letters = "".join(w[0] for w in words[:-1]).upper()[:2] or "ID"
        return f"{letters}-{rng.randrange(1000, 9999)}"
    return None  # free text ("description", "notes"): a correct call need not repeat a wording


def number_value(schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + (1 if integer else 0.5))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + 100))
    if not isinstance(low, int | float) or not isinstance(high, int | float) or high < low:
        low, high = 1, 100
    if integer:
        return rng.randint(int(low), int(high))
    return round(rng.uniform(float(low), float(high)), 1)


def value_for(param: str, schema: dict[str, Any], rng: random.Random) -> Any | None:
    """A value a user could state for ``param``, valid for its schema; None when no such value can be chosen."""
    if not isinstance(schema, dict):
        return None
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        value: Any = rng.choice(schema["enum"])
    else:
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        if kind == "string":
            value = string_value(param, schema, rng)
        elif kind == "integer":
            value = number_value(schema, rng, integer=True)
        elif kind == "number":
            value = number_value(schema, rng, integer=False)
        elif kind == "boolean":
            value = rng.random() < 0.5
        else:
            return None  # objects and arrays: a user does not dictate them in a sentence
    if value is None:
        return None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return None
    except jsonschema.SchemaError:
        pass  # a broken schema cannot rule the value out
    return value


def ground_call(tools: dict[str, dict[str, Any]], rng: random.Random,
                exclude: frozenset[str] = frozenset()) -> tuple[str, dict[str, Any]] | None:
    """One of ``tools`` (name -> parameters schema) and values for up to MAX_GROUNDED_ARGUMENTS of its arguments.

    A tool qualifies when code can choose a value for each of its required arguments (and for at least one
    argument); the others (sandboxes, tools that take only prose) are left to ungrounded tasks. None when no
    tool qualifies.
    """
    options: list[tuple[str, dict[str, Any]]] = []
    for name in sorted(tools):
        if name in exclude:
            continue
        params = tools[name] or {}
        props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
        required = [p for p in params.get("required", []) if isinstance(p, str)]
        if any(p not in props for p in required):
            continue
        local = random.Random(f"{rng.random()}:{name}")
        order = required + sorted(p for p in props if p not in required)
        args: dict[str, Any] = {}
        for param in order:
            if len(args) == MAX_GROUNDED_ARGUMENTS:
                break
            value = value_for(param, props[param], local)
            if value is None:
                if param in required:
                    args = {}
                    break
                continue
            args[param] = value
        if args:
            options.append((name, args))
    return rng.choice(options) if options else None


def spoken(value: Any) -> str:
    """How the user writes ``value`` in a sentence (booleans as yes/no would not match the check's value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def state_values(goal: str, arguments: dict[str, Any]) -> str:
    """``goal`` with every argument value in it: a sentence of details is added for the values it does not state.

    The check asks for these exact values, so the request must hold them; a generator's rewording that drops one
    would make a correct episode fail.
    """
    missing = {k: v for k, v in arguments.items() if not mentions(goal, spoken(v))}
    if not missing:
        return goal.strip()
    details = ", ".join(f"{k.replace('_', ' ')}: {spoken(v)}" for k, v in missing.items())
    return f"{goal.strip().rstrip('.')}. Details: {details}."


_OPENINGS = ("Could you {ask}? {details}", "I need to {ask}. {details}", "Please {ask}. {details}",
             "Hi! Can you {ask} for me? {details}")


def _request(description: str) -> str:
    """A tool's description as a request: its first sentence, lower-cased first letter, no final stop."""
    first = re.split(r"(?<=[.!?])\s|\n", description.strip(), maxsplit=1)[0].strip().rstrip(".!?")
    return (first[:1].lower() + first[1:]) if first else "help me with this"


def code_opening(description: str, arguments: dict[str, Any], rng: random.Random) -> str:
    """The user's opening written by code: what the tool does, as a request, and every value the check asks for.

    For a small generator (the embedded 135M) whose requests are garbled ("get_current_time with timezone(") the
    agent learns nothing from the episode, and the check (the exact call) no longer follows from the request. The
    code's opening states each value word for word, so a correct call is always possible; the agent still has to
    pick the tool from its toolset, copy the values and report the result.
    """
    details = " ".join(f"The {k.replace('_', ' ')} is {spoken(v)}." for k, v in arguments.items())
    return rng.choice(_OPENINGS).format(ask=_request(description), details=details).strip()
