"""Argument values code chooses for a call, from the tool's JSON Schema, for the task kinds code builds.

Beside the scalars ``synth.tasks.grounded`` fills (enums, bounded numbers, dates, named values, ids) this fills
what a user also dictates in a sentence: lists ("Lisbon, Osaka and Denver"), nested objects (an address with a
city and a postcode), numbers with a unit (a ``distance_km``, or a number beside a ``unit`` enum), a short quoted
text for a required message. Every value is valid for its parameter's schema (checked with jsonschema), so the
call a check asks for is one the tool accepts.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from synth.tasks.grounded import ALIASES, NAMED_VALUES, param_words, string_value

MAX_LEAVES = 4
"""Values one call fixes at most (an object's or a list's count one each): more reads like a form, not a request."""

MAX_DEPTH = 2
"""Objects inside objects this deep at most: a user does not dictate deeper structures in a sentence."""

# More plain values, by what a parameter's name says it holds, beside synth.tasks.grounded's bank.
EXTRA_VALUES: dict[str, list[str]] = {
    "city": ["Porto", "Kyoto", "Boulder", "Mombasa", "Gdansk", "Vancouver", "Valencia", "Adelaide", "Quito"],
    "name": ["Sofia Costa", "Hiro Tanaka", "Grace Mensah", "Jonas Berg", "Ana Ruiz", "Omar Haddad"],
    "product": ["wireless headphones", "standing desk", "espresso machine", "hiking boots", "desk lamp"],
    "company": ["Northwind Traders", "Blue Harbor Labs", "Greenfield Foods", "Atlas Freight"],
    "tag": ["urgent", "billing", "follow-up", "onboarding", "q3-review"],
    "project": ["apollo", "website-redesign", "mobile-app", "data-platform"],
    "repo": ["acme/webapp", "acme/data-pipeline", "tools/cli"],
    "category": ["electronics", "books", "garden", "toys", "groceries"],
    "symbol": ["AAPL", "NVDA", "SAP", "TSLA"],
    "team": ["Platform", "Support", "Design", "Finance"],
    "channel": ["general", "ops-alerts", "design-review"],
    "airport": ["LIS", "NRT", "DEN", "YYZ"],
    "zip": ["1100-148", "80202", "00100", "M5V 2T6"],
    "phone": ["+1 415 555 0134", "+351 912 345 678"],
    "room": ["Room 4B", "Atlas", "Boardroom"],
    "label": ["bug", "enhancement", "docs"],
    "region": ["eu-west-1", "us-east-2", "ap-northeast-1"],
    "model": ["gpt-mini", "resnet-50", "llama-small"],
}
EXTRA_ALIASES = {
    "item": "product", "goods": "product", "merchant": "company", "organization": "company", "org": "company",
    "vendor": "company", "supplier": "company", "tags": "tag", "labels": "label", "repository": "repo",
    "ticker": "symbol", "stock": "symbol", "postcode": "zip", "postal": "zip", "zipcode": "zip",
    "telephone": "phone", "mobile": "phone", "cities": "city", "locations": "city", "names": "name",
    "categories": "category", "genre": "category", "projects": "project", "teams": "team", "venue": "room",
    "iata": "airport", "airports": "airport", "symbols": "symbol", "products": "product", "items": "product",
}

QUOTED_TEXTS = ["running ten minutes late", "meeting moved to Friday", "please review the draft",
                "order shipped today", "call me back after lunch", "budget approved", "new login from Berlin"]
"""Short texts for a required free-text argument (a message, a note): the request quotes them, the check asks
for them as written (case and spacing aside)."""
QUOTED_WORDS = frozenset({"message", "text", "content", "body", "note", "notes", "comment", "description",
                          "summary", "subject", "title", "caption", "reason", "prompt"})

PROGRAM_PARAMS = frozenset({"code", "source", "script", "program", "query_sql", "sql", "expression", "regex"})
"""Parameters that hold a program: no value a user says in a sentence (the sandbox and coding tasks cover code)."""

UNIT_WORDS: dict[str, str] = {
    "km": "km", "kilometers": "km", "kilometres": "km", "meters": "meters", "metres": "meters",
    "miles": "miles", "mi": "miles", "kg": "kg", "kilograms": "kg", "grams": "grams", "pounds": "pounds",
    "lbs": "pounds", "minutes": "minutes", "mins": "minutes", "seconds": "seconds", "secs": "seconds",
    "hours": "hours", "hrs": "hours", "days": "days", "weeks": "weeks", "ms": "milliseconds",
    "milliseconds": "milliseconds", "celsius": "degrees Celsius", "fahrenheit": "degrees Fahrenheit",
    "percent": "percent", "pct": "percent", "usd": "USD", "eur": "EUR", "gbp": "GBP", "dollars": "dollars",
    "euros": "euros", "cents": "cents", "mb": "MB", "gb": "GB", "bytes": "bytes",
}
"""A number's unit, from the last word of its parameter's name or from its description ("in kilometers")."""
_UNIT_IN_DESCRIPTION = re.compile(r"\b(?:in|as|of)\s+(" + "|".join(sorted(UNIT_WORDS, key=len, reverse=True))
                                  + r")\b", re.IGNORECASE)
UNIT_ENUM_VALUES = frozenset({"km", "mi", "m", "ft", "miles", "kilometers", "meters", "feet", "kg", "lb", "lbs",
                              "g", "celsius", "fahrenheit", "c", "f", "minutes", "hours", "seconds", "days",
                              "usd", "eur", "gbp", "jpy"})
"""Values of a ``unit`` enum that read as a unit after a number ("3 km"), so the two are said together."""
UNIT_PARAMS = frozenset({"unit", "units"})


@dataclass
class Arg:
    """One argument code chose: its name, its value, its schema, and what the request says it with."""

    key: str
    value: Any
    schema: dict[str, Any]
    words: str = ""  # the parameter's name as words ("order id")
    kind: str = ""  # how a sentence states it: city, date, datetime, id, enum, number, bool, quoted, text, list,
    #                 object
    unit: str | None = None  # a number's unit, or the value of its unit argument (then ``paired`` names it)
    paired: str | None = None  # the unit argument this number is said together with ("3 km": distance and unit)
    fields: list[Arg] = field(default_factory=list)  # an object's fields (or a list of one object's)
    item_kind: str = ""  # a list's items' kind (city, enum, ...)

    def leaves(self) -> int:
        if self.fields:
            return sum(f.leaves() for f in self.fields)
        return len(self.value) if isinstance(self.value, list) else 1


def words_of(param: str) -> str:
    return " ".join(param_words(param)) or param


ID_WORDS = frozenset({"id", "ids", "number", "code", "ref", "reference", "sku", "key", "uuid", "index", "idx"})


def _known(word: str | None) -> str | None:
    for known in (word, ALIASES.get(word or ""), EXTRA_ALIASES.get(word or "")):
        if known and (known in NAMED_VALUES or known in EXTRA_VALUES):
            return known
    return None


def _named_kind(param: str) -> str | None:
    """What a parameter's name says it holds, by its last word ("destinationCity": a city); a name of something
    ("company_name") by the word before; an id ("organizationId") is no named value but an id."""
    words = param_words(param)
    if not words or words[-1] in ID_WORDS:
        return None
    if words[-1] == "name" and len(words) > 1 and words[-2] not in ("user", "full", "first", "last", "display"):
        return _known(words[-2]) if _known(words[-2]) != "name" else "name"
    return _known(words[-1])


def _named_value(kind: str, rng: random.Random) -> str:
    return rng.choice(NAMED_VALUES.get(kind, []) + EXTRA_VALUES.get(kind, []))


def unit_of(param: str, schema: dict[str, Any]) -> str | None:
    words = param_words(param)
    if len(words) > 1 and words[-1] in UNIT_WORDS:
        return UNIT_WORDS[words[-1]]
    found = _UNIT_IN_DESCRIPTION.search(str(schema.get("description") or ""))
    return UNIT_WORDS[found.group(1).lower()] if found else None


def _type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind is None and isinstance(schema.get("properties"), dict):
        return "object"
    return kind if isinstance(kind, str) else None


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return False
    except jsonschema.SchemaError:
        return True  # a broken schema cannot rule the value out
    return True


_INTEGER_WORDS = frozenset({"limit", "count", "page", "size", "index", "idx", "first", "last", "offset", "top", "k",
                            "max", "min", "number", "num", "id", "year", "month", "day", "days", "hours", "minutes",
                            "seconds", "nights", "guests", "adults", "seats", "quantity", "qty", "per", "port",
                            "depth", "level", "width", "height", "retries", "attempts", "cursor", "n", "rows",
                            "columns", "cols", "items", "results", "line", "lines", "version", "priority", "rank",
                            "age", "floor", "week", "length"})
"""A ``number`` parameter whose name says it counts or indexes gets a whole number: "28.8 results" is no limit."""


_WHOLE_UNITS = frozenset({"minutes", "seconds", "hours", "days", "weeks", "milliseconds", "bytes"})


def _number(param: str, schema: dict[str, Any], rng: random.Random, integer: bool, unit: str | None) -> int | float:
    """A number a user would say, within the schema's bounds: whole where the name counts something, small
    where the schema leaves it unbounded, sometimes a whole number of hours (weeks) for minutes (days)."""
    words = set(param_words(param))
    integer = integer or bool(words & _INTEGER_WORDS) or unit in _WHOLE_UNITS
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + (1 if integer else 0.5))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + 100))
    if not isinstance(low, int | float) or not isinstance(high, int | float) or high < low:
        low, high = 1, 100
    if words & ID_WORDS and high >= 1000:
        low, high = max(low, 1000), min(high, 99_999)
    high = min(high, low + (500 if integer else 100))
    first, last = math.ceil(low), math.floor(high)
    value: int | float = (rng.randint(first, last) if integer and first <= last
                          else round(rng.uniform(float(low), float(high)), 1))
    nice: int | float | None = None
    if unit in ("minutes", "seconds") and rng.random() < 0.4:
        nice = 60 * rng.randint(1, 3)
    elif unit == "days" and rng.random() < 0.4:
        nice = 7 * rng.randint(1, 3)
    elif unit is not None and not integer and rng.random() < 0.5:
        nice = float(rng.choice([1.5, 2.5, 3, 5, 12, 40]))
    return nice if nice is not None and _valid(nice, schema) else value


def _scalar(param: str, schema: dict[str, Any], rng: random.Random, required: bool) -> Arg | None:
    words = words_of(param)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        choices = [v for v in schema["enum"] if isinstance(v, str | int | float | bool) and v != ""]
        return Arg(param, rng.choice(choices), schema, words, "enum") if choices else None
    kind = _type(schema)
    if kind == "string":
        fmt = schema.get("format")
        if fmt in ("date", "date-time"):
            return Arg(param, string_value(param, schema, rng), schema, words,
                       "date" if fmt == "date" else "datetime")
        if fmt in ("email", "uri", "url"):
            return Arg(param, string_value(param, schema, rng), schema, words, "email" if fmt == "email" else "url")
        parts = param_words(param)
        if fmt is not None or schema.get("pattern") or param.lower() in PROGRAM_PARAMS:
            return None  # a pattern is not guessed, and a program is no value a user dictates
        named = _named_kind(param)
        if named:
            return Arg(param, _named_value(named, rng), schema, words, named)
        if parts and parts[-1] in ID_WORDS:
            letters = "".join(w[0] for w in parts[:-1]).upper()[:2] or "ID"
            return Arg(param, f"{letters}-{rng.randrange(1000, 9999)}", schema, words, "id")
        if required and set(parts) & QUOTED_WORDS:
            return Arg(param, rng.choice(QUOTED_TEXTS), schema, words, "quoted")
        return None
    if kind in ("integer", "number"):
        unit = unit_of(param, schema)
        named = param_words(param)
        if unit and len(named) > 1 and UNIT_WORDS.get(named[-1]) == unit:
            words = " ".join(named[:-1])  # "lookback minutes" is said "a lookback of 2 hours"
        return Arg(param, _number(param, schema, rng, kind == "integer", unit), schema, words, "number", unit)
    if kind == "boolean":
        return Arg(param, rng.random() < 0.5, schema, words, "bool")
    return None


def _distinct(make: Any, n: int) -> list[Arg]:
    out: list[Arg] = []
    for _ in range(4 * n):
        arg = make()
        if arg is None:
            return []
        if all(arg.value != o.value for o in out):
            out.append(arg)
        if len(out) == n:
            break
    return out


def _list(param: str, schema: dict[str, Any], rng: random.Random, depth: int, budget: int) -> Arg | None:
    items = schema.get("items")
    if not isinstance(items, dict) or budget < 1:
        return None
    low = max(1, int(schema.get("minItems", 1)))
    high = min(int(schema.get("maxItems", 3)), 3, budget)
    if _type(items) == "object" or isinstance(items.get("properties"), dict):
        if low > 1 or depth >= MAX_DEPTH:
            return None
        one = _object(param, items, rng, depth + 1, budget)
        if one is None:
            return None
        return Arg(param, [one.value], schema, words_of(param), "list", fields=one.fields)
    if high < max(2, low):
        return None
    singular = re.sub(r"(ies)$", "y", param) if param.endswith("ies") else param.removesuffix("s")
    got = _distinct(lambda: _scalar(singular, items, rng, required=False), rng.randint(max(2, low), high))
    if len(got) < max(2, low):
        return None
    return Arg(param, [g.value for g in got], schema, words_of(param), "list", item_kind=got[0].kind)


def _object(param: str, schema: dict[str, Any], rng: random.Random, depth: int, budget: int) -> Arg | None:
    props = schema.get("properties")
    if not isinstance(props, dict) or not props or depth > MAX_DEPTH:
        return None
    required = [p for p in schema.get("required", []) if isinstance(p, str) and p in props]
    optional = sorted(p for p in props if p not in required)
    rng.shuffle(optional)
    fields: list[Arg] = []
    for name in required + optional[:2]:
        if sum(f.leaves() for f in fields) >= budget:
            if name in required:
                return None
            break
        sub = props[name] if isinstance(props[name], dict) else {}
        arg = (_scalar(name, sub, rng, name in required) if _type(sub) not in ("object", "array")
               else None)  # objects in objects in a sentence lose the reader
        for _ in range(3):  # two fields with one text ("old text" and "new text" alike) ask for nothing
            if arg is None or arg.kind != "quoted" or all(f.value != arg.value for f in fields):
                break
            arg = _scalar(name, sub, rng, name in required)
        if arg is None:
            if name in required:
                return None
            continue
        fields.append(arg)
    if not fields:
        return None
    return Arg(param, {f.key: f.value for f in fields}, schema, words_of(param), "object", fields=fields)


def arg_for(param: str, schema: Any, rng: random.Random, *, required: bool, budget: int = MAX_LEAVES,
            depth: int = 0) -> Arg | None:
    """A value for ``param`` that its schema accepts and a sentence can state; None when there is none."""
    if not isinstance(schema, dict):
        return None
    kind = _type(schema)
    if kind == "array" and not isinstance(schema.get("enum"), list):
        arg = _list(param, schema, rng, depth, budget)
    elif kind == "object":
        arg = _object(param, schema, rng, depth + 1, budget)
    else:
        arg = _scalar(param, schema, rng, required)
    if arg is None or arg.value is None or not _valid(arg.value, schema):
        return None
    return arg


def _pair_units(args: list[Arg]) -> None:
    """A number said with its unit argument's value ("3 km"): the unit argument is then stated by the number."""
    units = [a for a in args if a.key.lower() in UNIT_PARAMS or a.key.lower().endswith("_unit")]
    numbers = [a for a in args if a.kind == "number" and a.unit is None]
    for unit in units:
        if numbers and str(unit.value).lower() in UNIT_ENUM_VALUES:
            number = numbers.pop(0)
            number.unit, number.paired = str(unit.value), unit.key


def pick_arguments(params: dict[str, Any], rng: random.Random, *, max_leaves: int = MAX_LEAVES,
                   optional: int | None = None) -> list[Arg] | None:
    """Values for a call of a tool whose parameters are ``params``: every required argument (None when one cannot
    be chosen) and up to ``optional`` optional ones (random when None), ``max_leaves`` values in all."""
    props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
    required = [p for p in params.get("required", []) if isinstance(p, str)]
    if any(p not in props for p in required):
        return None
    rest = sorted(p for p in props if p not in required)
    rng.shuffle(rest)
    extra = rng.randint(0, 2) if optional is None else optional
    out: list[Arg] = []
    for name in required + rest:
        used = sum(a.leaves() for a in out)
        is_required = name in required
        if not is_required and (extra <= 0 or used >= max_leaves):
            continue
        arg = arg_for(name, props[name], rng, required=is_required, budget=max(1, max_leaves - used))
        if arg is None:
            if is_required:
                return None
            continue
        if not is_required:
            extra -= 1
        out.append(arg)
    if not out or sum(a.leaves() for a in out) > max_leaves + 1:
        return None
    _pair_units(out)
    return out


def arguments(args: list[Arg]) -> dict[str, Any]:
    return {a.key: a.value for a in args}
