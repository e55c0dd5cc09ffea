"""Requests in plain language for calls code chose: many sentence shapes, each value said where it belongs.

A tool's description becomes the request's verb phrase ("Returns the weather for a city" -> "get the weather
for a city"), a value the phrase already names goes into it ("get the weather for Lisbon"), and the others are
said the way a user says them: "3 km" for a distance in kilometres, "Lisbon, Osaka and Denver" for a list, "an
address with city Porto and zip 80202" for an object, "2 hours" for 120 minutes, "March 5, 2026" for a date.
Every phrase records the surfaces a reader recovers its values from (``Said.surfaces``): the request is kept
only when ``mentions`` finds each of them in it (``recoverable``), and a conversion is used only where the check
accepts the one value it stands for (a whole number of hours is one number of minutes).
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass
from typing import Any

from synth.tasks.values import Arg
from synth.text import mentions


@dataclass(frozen=True)
class Said:
    """A phrase of a request and the strings in it that state its values (each must be mentioned)."""

    text: str
    surfaces: tuple[str, ...]


def recoverable(text: str, surfaces: list[str] | tuple[str, ...]) -> bool:
    """Whether every surface is mentioned in ``text`` (whole words, numbers in their written forms)."""
    return all(mentions(text, s) for s in surfaces)


# ---- the verb phrase -------------------------------------------------------------------------------------------

VERBS = frozenset({"add", "analyze", "apply", "approve", "archive", "assign", "book", "calculate", "cancel",
    "change", "check", "clear", "close", "compare", "compute", "convert", "copy", "count", "create", "delete",
    "describe", "detect", "download", "draft", "edit", "estimate", "evaluate", "export", "extract", "fetch",
    "filter", "find", "forecast", "format", "generate", "get", "give", "import", "inspect", "install", "invite",
    "list", "load", "locate", "log", "look", "lookup", "manage", "mark", "merge", "modify", "monitor", "move",
    "notify", "open", "order", "parse", "pay", "place", "plan", "post", "predict", "preview", "print", "publish",
    "query", "read", "rebuild", "record", "register", "reject", "reload", "remove", "rename", "render", "reorder",
    "repair", "replace", "reply", "report", "request", "reschedule", "reserve", "reset", "resize", "resolve",
    "restart", "restore", "retrieve", "return", "review", "run", "save", "scan", "schedule", "search", "select",
    "send", "set", "share", "show", "sort", "split", "start", "stop", "submit", "subscribe", "suggest",
    "summarize", "sync", "tag", "test", "track", "transfer", "translate", "update", "upload", "validate", "verify",
    "view", "watch", "write", "perform", "execute", "provide", "obtain", "build", "enable", "disable", "display",
    "explore", "optimize", "populate", "invoke", "trigger", "navigate", "click", "take", "capture", "fill", "type",
    "press", "hover", "drag", "scroll", "wait", "connect", "disconnect", "authenticate", "clone", "commit", "push",
    "pull", "fork", "browse", "crawl", "scrape", "visit", "visualize", "plot", "draw", "insert", "append",
    "increment", "toggle", "play", "pause", "resume", "rate", "follow", "unfollow", "block", "comment", "star",
    "pin", "lock", "unlock", "encrypt", "decrypt", "encode", "decode", "compress", "transcribe", "classify",
    "answer", "ask", "complete", "embed", "rank", "recommend", "lint", "deploy", "release", "rollback", "scale",
    "provision", "terminate", "reboot", "attach", "detach", "mount", "link", "unlink", "map", "geocode", "route",
    "measure", "aggregate", "group", "join", "confirm", "accept", "decline", "remind", "dismiss", "acknowledge",
    "escalate", "label", "categorize", "highlight", "annotate", "bookmark", "duplicate", "backup", "refresh",
    "retry", "ping", "poll", "stream", "unsubscribe", "broadcast", "alert", "email", "message", "purchase", "buy",
    "sell", "trade", "quote", "charge", "refund", "invoice", "withdraw", "deposit", "identify", "collect",
    "determine", "discover", "diagnose", "troubleshoot", "summarise",
    "prepare", "configure", "setup", "initialize", "make", "activate", "deactivate", "integrate", "store", "keep",
    "bring", "turn", "put", "echo"})
_DETERMINERS = frozenset({"a", "an", "the", "all", "any", "one", "multiple", "new", "your", "details", "info",
                          "information", "data", "current", "existing", "specific", "list", "every",
                          "each", "several", "up", "out", "back", "comprehensive", "basic", "detailed"})
"""Words after a description's first word that say it was a verb in the third person ("Performs a search")."""
_ARTICLES = frozenset({"a", "an", "the", "all", "any", "multiple", "your", "my", "this", "these", "every", "each",
                       "some"})
"""Verbs a tool's description may open with; a description that opens otherwise is a noun phrase to "get"."""

_LEADS = re.compile(
    r"^(?:this (?:tool|function|endpoint|api)\s+(?:will\s+|can\s+|is used to\s+|lets you\s+|allows you to\s+)?|"
    r"(?:a )?(?:tool|function|endpoint) (?:to|that|which|for)\s+|use (?:this )?(?:tool )?to\s+|used to\s+|"
    r"allows? (?:you |users |the user )?to\s+|lets? (?:you |users )?|helps? (?:you )?(?:to )?|"
    r"can be used to\s+|will\s+|use (?:this|it)(?: tool)?(?: as [^,.]*?)? (?:to|for)\s+)", re.IGNORECASE)


def _base_verb(word: str, after: str = "") -> str | None:
    low = word.lower()
    if low in VERBS:
        return low
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("shes", "sh"), ("ches", "ch"), ("xes", "x"), ("es", "e"),
                         ("es", ""), ("s", "")):
        if low.endswith(suffix) and low[: len(low) - len(suffix)] + repl in VERBS:
            return low[: len(low) - len(suffix)] + repl
    if len(low) > 3 and low.endswith("s") and not low.endswith("ss") and after.lower() in _DETERMINERS:
        return low[:-3] + "y" if low.endswith("ies") else low[:-2] if low.endswith(
            ("shes", "ches", "xes", "oes", "sses")) else low[:-1]
    return None


def ask_phrase(description: str, name: str) -> str:
    """What the tool does, as an imperative verb phrase in lower case: "get the weather for a city"."""
    first = re.split(r"(?<=[.!?])\s|\n", (description or "").strip(), maxsplit=1)[0].strip().rstrip(".!?:")
    first = _LEADS.sub("", first).strip()
    words = first.split()
    if len(words) > 12:
        cut = re.split(r",|;| - | \(| which | that | when | if ", first, maxsplit=1)[0].strip()
        words = cut.split()[:14]
    if len(" ".join(words)) > 110 or sum(not c.isascii() for c in first) > 3:
        words = []  # a description too long, or not in English, to ask with: the tool's name says it
    if len(words) < 2 or not re.match(r"^[A-Za-z]", words[0]):
        words = [w for w in re.split(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])", name) if w]
        verb = _base_verb(words[0]) if words else None
        return " ".join([verb or "run", *[w.lower() for w in words[1 if verb else 0:]]]) or "help me"
    verb = _base_verb(words[0], words[1])
    if verb is None and words[1].lower() in _ARTICLES and words[0].isalpha():
        verb = words[0].lower()  # "Claim the next task": a verb the list lacks, before an article
    rest = " ".join(words[1:])
    if verb:
        return f"{verb} {rest}".strip()
    return f"get {words[0][:1].lower()}{words[0][1:]} {rest}".strip()


# ---- values ----------------------------------------------------------------------------------------------------

def number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def _date_text(value: str, rng: random.Random) -> str:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return value
    return rng.choice([value, f"{day:%B} {day.day}, {day.year}", f"{day.day} {day:%B} {day.year}"])


def _datetime_text(value: str, rng: random.Random) -> str:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    return rng.choice([value, f"{moment:%B} {moment.day}, {moment.year} at {moment:%H:%M}"])


_CONVERSIONS = {"minutes": (60, "hour"), "seconds": (60, "minute"), "days": (7, "week"), "hours": (24, "day")}


def _unit_text(value: Any, unit: str, rng: random.Random) -> str:
    """'3 km'; a whole number of hours for minutes (and the like) half the time: one value, one correct form."""
    if unit in _CONVERSIONS and isinstance(value, int | float) and value > 0:
        size, bigger = _CONVERSIONS[unit]
        if value % size == 0 and rng.random() < 0.5:
            n = int(value // size)
            return f"{n} {bigger}{'s' if n != 1 else ''}"
    text = number_text(value)
    return f"{text}%" if unit == "percent" and rng.random() < 0.5 else f"{text} {unit}"


def value_text(arg: Arg, rng: random.Random) -> str:
    """A scalar value as a user writes it (a date may be "March 5, 2026", a number with its unit)."""
    if arg.kind == "date":
        return _date_text(str(arg.value), rng)
    if arg.kind == "datetime":
        return _datetime_text(str(arg.value), rng)
    if arg.kind == "number":
        return _unit_text(arg.value, arg.unit, rng) if arg.unit else number_text(arg.value)
    if arg.kind == "quoted":
        return f'"{arg.value}"'
    return str(arg.value)


def _surfaces(arg: Arg, text: str) -> tuple[str, ...]:
    if arg.kind == "quoted":
        return (str(arg.value),)
    if arg.kind == "number" and arg.paired:
        return (number_text(arg.value), str(arg.unit))
    return (text,)


def _noun(words: str) -> str:
    parts = words.split()
    return " ".join(parts[:-1]) if len(parts) > 1 and parts[-1] in ("id", "number", "code", "ref", "key") else ""


_COUNT_WORDS = frozenset({"num", "number", "n", "count", "total", "of", "no"})
_LIMIT_WORDS = ("limit", "max results", "max items", "page size", "per page", "top k", "max count", "max")


def join_phrases(items: list[str], rng: random.Random, *, values: bool = False) -> str:
    """"A, B and C". ``values``: the items are values of one list, which may also read "both A and B"."""
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        forms = ([f"{items[0]} and {items[1]}", f"both {items[0]} and {items[1]}", f"{items[0]} plus {items[1]}"]
                 if values else
                 [f"{items[0]} and {items[1]}", f"{items[0]}, and {items[1]}", f"{items[0]} as well as {items[1]}"])
        return rng.choice(forms)
    head = ", ".join(items[:-1])
    return rng.choice([f"{head} and {items[-1]}", f"{head}, and {items[-1]}"])


_VERBISH = frozenset({"include", "send", "notify", "show", "allow", "force", "use", "enable", "keep", "overwrite",
                      "follow", "ignore", "skip", "delete", "archive", "return", "fetch", "create", "open"})


def _bool_phrase(arg: Arg, rng: random.Random) -> str:
    w = arg.words
    options = ([f"with {w} on", f"with {w} turned on", f"{w}: yes", f"{w} enabled", f"{w} set to true"]
               if arg.value else [f"with {w} off", f"{w}: no", f"{w} disabled", f"with {w} turned off",
                                  f"{w} set to false"])
    if w.split()[0] in _VERBISH:
        options += [f"{w} too", f"please {w}"] if arg.value else [f"don't {w}", f"no need to {w}"]
    return rng.choice(options)


def bare(arg: Arg, rng: random.Random) -> Said:
    """The value as a noun phrase ("order AB-1234", "Lisbon", "3 km"): for lists of values and folded phrases."""
    if arg.kind in ("bool", "list", "object"):
        return bare_field(arg, rng) if arg.kind == "bool" else say(arg, rng)
    v = value_text(arg, rng)
    if arg.kind == "query":
        return Said(f'"{v}"', (v,))
    if arg.kind == "number" and not arg.unit and (counted := _counted(arg.words)):
        return Said(f"{v} {counted}", _surfaces(arg, v))
    lead = _noun(arg.words) if arg.kind == "id" else (
        arg.words if arg.kind == "enum" or (arg.kind == "number" and not arg.unit) or (
            arg.kind in ("path", "url", "email", "name", "date", "datetime") and arg.words not in _PLAIN) else "")
    return Said(f"{lead} {v}".strip(), _surfaces(arg, v))


def _counted(words: str) -> str:
    """The plural noun a count counts ("num_guests": "guests"), or "" when the name is no such noun."""
    counted = [x for x in words.split() if x not in _COUNT_WORDS]
    return " ".join(counted) if counted and counted[-1].endswith("s") and not counted[-1].endswith("ss") else ""


def article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


_PLAIN = frozenset({"city", "location", "town", "place", "destination", "origin", "date", "day", "time", "name",
                    "query", "q", "search", "keyword", "path", "file", "url", "link", "email", "timezone", "tz"})
"""Parameter names that say no more than their value does ("city" Lisbon): the value can stand alone."""
_LINKED = ("in ", "on ", "for ", "at ", "from ", "to ", "with", "using ", "where ", "about ", "covering ", "saying ",
           "named ", "dated ", "no more", "up to ", "limited ", "and ", "don't ", "no need", "setting ", "one ",
           "a single", "a ", "both ")


def say(arg: Arg, rng: random.Random, *, alone: bool = True) -> Said:
    """One way to state ``arg`` in a request. ``alone``: no other argument of the call is of its kind, so the
    parameter's name may be left out ("in Lisbon" rather than "origin city Lisbon")."""
    w = arg.words
    if arg.kind == "bool":
        text = _bool_phrase(arg, rng)
        return Said(text, (text,))
    if arg.kind == "list":
        return _say_list(arg, rng, alone)
    if arg.kind == "object":
        return _say_object(arg, rng)
    v = value_text(arg, rng)
    generic = [f"{w} {v}", f"with {w} {v}", f"{w} set to {v}", f"using {v} as the {w}", f"where the {w} is {v}",
               f"with the {w} being {v}", f"{w}: {v}", f"for {w} {v}"]
    forms = list(generic)
    plain = w in _PLAIN
    if arg.kind == "city" and (alone or plain):
        lead = "from" if w.split()[0] in ("origin", "from", "source", "departure") else (
            "to" if w.split()[0] in ("destination", "to", "arrival") else None)
        forms = [f"{lead} {v}"] * 3 if lead else [f"in {v}", f"for {v}", f"in {v}", *generic[:2]]
    elif arg.kind == "date" and alone and (plain or w.endswith(" date")):
        forms = [f"on {v}", f"for {v}", f"on {v}", f"dated {v}", *generic[:3]]
    elif arg.kind == "datetime" and alone and (plain or w.endswith(" time")):
        forms = [f"at {v}", f"for {v}", *generic[:3]]
    elif arg.kind == "id":
        noun = _noun(w)
        forms = [f"{noun} {v}", f"{noun} {v}", f"{noun} number {v}", *generic[:3]] if noun else generic
    elif arg.kind == "name" and alone and plain:
        forms = [f"for {v}", f"named {v}", *generic[:3]]
    elif arg.kind in ("email", "url", "path") and alone and plain:
        lead = {"email": "at", "url": "the page", "path": "the file"}[arg.kind]
        forms = [f"{lead} {v}", f"{lead} {v}", *generic[:3]]
    elif arg.kind == "query" and alone and plain:
        forms = [f'for "{v}"', f"about {v}", f'{w} "{v}"', f'with the search "{v}"']
    elif arg.kind == "quoted":
        forms = [f"saying {v}", f"with the {w} {v}", f"{w} {v}", f"{w}: {v}"]
    elif arg.kind == "number" and arg.unit:
        forms = [v, f"{w} of {v}", f"{w} {v}", f"{article(w)} of {v}", f"for {v}"]
    elif arg.kind == "number":
        if any(w == lim or w.startswith(lim + " ") for lim in _LIMIT_WORDS):
            forms = [f"no more than {v} results", f"up to {v} results", f"limited to {v}", f"at most {v}",
                     *generic[:2]]
        elif noun := _counted(w):
            forms = [f"{v} {noun}", f"for {v} {noun}", f"{v} {noun}", *generic[:3]]
    text = rng.choice(forms)
    return Said(text, _surfaces(arg, v))


def _say_list(arg: Arg, rng: random.Random, alone: bool) -> Said:
    w = arg.words
    if arg.fields:  # a list of one object
        inner = _fields(arg, rng)
        singular = w[:-1] if w.endswith("s") else w
        text = rng.choice([f"one {singular} with {inner.text}", f"a single {singular}: {inner.text}",
                           f"{w} holding one entry with {inner.text}"])
        return Said(text, inner.surfaces)
    items = [value_text(Arg(arg.key, v, {}, w, arg.item_kind), rng) for v in arg.value]
    joined = join_phrases(items, rng, values=True)
    forms = [f"{w} {joined}", f"with {w} {joined}", f"{w}: {joined}", f"covering {joined}", f"for {joined}"]
    if arg.item_kind == "city" and alone:
        forms += [f"in {joined}", f"for {joined}"]
    surfaces = tuple(str(v) if isinstance(v, str) else number_text(v) for v in arg.value)
    return Said(rng.choice(forms), surfaces)


def _fields(arg: Arg, rng: random.Random) -> Said:
    parts = [bare_field(f, rng) for f in arg.fields]
    return Said(join_phrases([p.text for p in parts], rng), tuple(s for p in parts for s in p.surfaces))


def bare_field(arg: Arg, rng: random.Random) -> Said:
    """An object's field: its name and value ("city Porto", "priority high", "notify: yes")."""
    if arg.kind == "bool":
        text = f"{arg.words} {'yes' if arg.value else 'no'}"
        return Said(text, (text,))
    v = value_text(arg, rng)
    text = f"{arg.words} {v}"
    return Said(text, _surfaces(arg, v))


def _say_object(arg: Arg, rng: random.Random) -> Said:
    inner = _fields(arg, rng)
    w = arg.words
    text = rng.choice([f"{w} with {inner.text}", f"with {article(w)} that has {inner.text}", f"{w} ({inner.text})",
                       f"setting {w} to {inner.text}"])
    return Said(text, inner.surfaces)


FOLDED = frozenset({"city", "id", "name", "path", "url", "email", "date", "timezone", "language", "currency",
                    "product", "company", "project", "repo", "symbol", "team", "channel", "category", "branch",
                    "namespace", "region", "airport", "room", "country"})
"""Kinds of value a verb phrase may name ("for a city", "in a specific timezone"), so the value can take its place."""


def fold_values(ask: str, args: list[Arg], rng: random.Random) -> tuple[str, list[Arg], list[str]]:
    """Put into the verb phrase the values it already names ("get the weather for a city" -> "... for Lisbon");
    returns the phrase, the arguments still to say, and the surfaces of those folded in."""
    rest, surfaces = [], []
    for arg in args:
        if arg.kind == "number" and arg.unit and arg.words:
            # "create a reminder that fires after a delay" + 2 hours: "... fires after 2 hours"
            pattern = re.compile(rf"\b(?:an?|the|given|specified|some)\s+(?:given\s+|specified\s+)?"
                                 rf"{re.escape(arg.words)}\b", re.IGNORECASE)
            if pattern.search(ask):
                v = value_text(arg, rng)
                ask = pattern.sub(v.replace("\\", r"\\"), ask, count=1)
                surfaces += list(_surfaces(arg, v))
                continue
        if arg.kind not in FOLDED or (arg.kind == "id" and not _noun(arg.words)):
            rest.append(arg)
            continue
        noun = _noun(arg.words) if arg.kind == "id" else arg.words.split()[-1]
        pattern = re.compile(
            rf"\b(?:an?|the|one|some|any|given|specified)\s+(?:given\s+|specified\s+|particular\s+|single\s+)?"
            rf"{re.escape(noun)}\b(?:\s+(?:by|with|using)\s+(?:its\s+|their\s+|an?\s+)?(?:id|name|identifier|key))?",
            re.IGNORECASE)
        if not pattern.search(ask):
            rest.append(arg)
            continue
        said = bare(arg, rng)
        ask = pattern.sub(said.text.replace("\\", r"\\"), ask, count=1)
        surfaces += list(said.surfaces)
    return ask, rest, surfaces


# ---- sentences -------------------------------------------------------------------------------------------------

FRAMES = (
    "{Ask} {slots}.", "Could you {ask} {slots}?", "Can you {ask} {slots} for me?", "Please {ask} {slots}.",
    "I'd like to {ask} {slots}.", "I need to {ask} {slots}.", "I want you to {ask} {slots}.",
    "Would you {ask} {slots}, please?", "Hey, can you {ask} {slots}?", "Hi! I need you to {ask} {slots}.",
    "Quick one: {ask} {slots}.", "When you get a chance, {ask} {slots}.", "Is it possible to {ask} {slots}?",
    "Help me {ask} {slots}.", "Go ahead and {ask} {slots}.", "Let's {ask} {slots}.", "{Ask} {slots}, thanks!",
    "{Ask} {slots}, please.", "I was hoping you could {ask} {slots}.", "Can I get you to {ask} {slots}?",
    "Here's what I need: {ask} {slots}.", "{context} Could you {ask} {slots}?", "{context} Please {ask} {slots}.",
    "{context} I need to {ask} {slots}.", "Could you please {ask}? {sentences}", "{Ask}. {sentences}",
    "I need you to {ask}. {sentences}", "For {first}, {ask} {rest}.", "For {first}, could you {ask} {rest}?",
    "{Mine} Can you {ask} {rest}?", "{Mine} Please {ask} {rest}.", "I need you to {ask}: {colon}.",
    "{Ask} ({colon}).", "Can you {ask}? Details: {colon}.",
)
"""Sentence shapes of a request. {slots}: every value said inline; {sentences}: one short sentence each;
{first}/{rest}: one value fronted; {Mine}: "My city is Lisbon."; {colon}: "city Lisbon, date 2026-03-05"."""

CONTEXTS = ("I'm sorting something out for work.", "This is for a report I'm writing.", "Need this before my "
            "meeting.", "Quick favour.", "I'm planning ahead for next week.", "A colleague asked me to check.",
            "Sorry to bother you.", "Following up on something from this morning.", "Hope you can help.",
            "I'm in a bit of a hurry.")

_SENTENCES = ("Use {v} as the {w}.", "The {w} should be {v}.", "Make the {w} {v}.", "The {w} is {v}.",
              "Set the {w} to {v}.", "Go with {v} for the {w}.")


def _sentence(arg: Arg, rng: random.Random) -> Said:
    if arg.kind == "bool":
        text = rng.choice([f"{cap(arg.words)}: {'yes' if arg.value else 'no'}.",
                           f"Turn {arg.words} {'on' if arg.value else 'off'}."])
        return Said(text, (text.rstrip("."),))
    if arg.kind in ("list", "object"):
        said = say(arg, rng)
        return Said(rng.choice([f"Do it {said.text}.", f"Make it {said.text}.", f"Go {said.text}."]), said.surfaces)
    v = value_text(arg, rng)
    return Said(rng.choice(_SENTENCES).format(v=v, w=arg.words), _surfaces(arg, v))


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([.,?!:;)])", r"\1", text)
    text = re.sub(r"\(\s*\)", "", text)
    return re.sub(r"([.?!])[.?!]+", r"\1", text).strip()


def _stated(args: list[Arg]) -> list[Arg]:
    """The arguments a sentence states: a unit said with its number is not said again."""
    paired = {a.paired for a in args if a.paired}
    return [a for a in args if a.key not in paired]


def inline(args: list[Arg], rng: random.Random, *, kinds: list[str] | None = None) -> Said:
    """Values said one after the other ("with order id AB-1234 and 3 km"), to follow a verb phrase. ``kinds``: the
    kinds of all the call's arguments (a value alone of its kind may leave its parameter's name out)."""
    kinds = kinds if kinds is not None else [a.kind for a in args]
    said_all = [say(a, rng, alone=kinds.count(a.kind) == 1) for a in args]
    text = join_phrases([s.text for s in said_all], rng) if said_all else ""
    if text and not text.lower().startswith(_LINKED):
        # A bare "client C-5079" straight after the verb phrase runs the two together.
        text = rng.choice(["with ", "for ", ": ", "- ", "using "]) + text
    return Said(text, tuple(s for said in said_all for s in said.surfaces))


def clause(ask: str, args: list[Arg], rng: random.Random) -> Said:
    """The verb phrase with every value in it and no sentence around it ("get the weather for Lisbon on
    2026-03-05"), for requests that join two of them."""
    args = _stated(args)
    ask, rest, folded = fold_values(ask, args, rng)
    said = inline(rest, rng, kinds=[a.kind for a in args])
    return Said(tidy(f"{ask} {said.text}"), tuple(folded) + said.surfaces)


def request(ask: str, args: list[Arg], rng: random.Random) -> Said:
    """A request to ``ask`` with every value of ``args`` in it, in one of many sentence shapes."""
    args = _stated(args)
    ask, rest, folded = fold_values(ask, args, rng) if rng.random() < 0.7 else (ask, args, [])
    rest = list(rest)
    if rng.random() < 0.3:
        rng.shuffle(rest)
    kinds = [a.kind for a in args]
    frame = rng.choice(FRAMES)
    scalar = [a for a in rest if a.kind not in ("bool", "list", "object", "number", "enum", "quoted")
              or ("{first}" in frame and a.kind in ("number", "enum"))]
    needs_scalar = "{first}" in frame or "{Mine}" in frame
    needs_rest = "{sentences}" in frame or "{colon}" in frame
    if (needs_scalar and not scalar) or (needs_rest and not rest):
        frame = rng.choice([f for f in FRAMES if "{slots}" in f])  # every value went into the verb phrase
    surfaces = list(folded)
    parts: dict[str, str] = {"ask": ask, "Ask": cap(ask), "context": rng.choice(CONTEXTS)}
    if "{first}" in frame or "{Mine}" in frame:
        lead = scalar[0]
        others = [a for a in rest if a is not lead]
        if "{first}" in frame:
            said = bare(lead, rng) if lead.kind == "id" or lead.words in _PLAIN else bare_field(lead, rng)
            parts["first"] = said.text
        else:
            v = value_text(lead, rng)
            said = Said(f"My {lead.words} is {v}.", _surfaces(lead, v))
            parts["Mine"] = said.text
        surfaces += said.surfaces
        said = inline(others, rng, kinds=kinds)
        parts["rest"] = said.text
        surfaces += said.surfaces
    elif "{sentences}" in frame:
        said_all = [_sentence(a, rng) for a in rest]
        parts["sentences"] = " ".join(s.text for s in said_all)
        surfaces += [s for said in said_all for s in said.surfaces]
    elif "{colon}" in frame:
        said_all = [bare_field(a, rng) if a.kind not in ("list", "object") else say(a, rng) for a in rest]
        parts["colon"] = ", ".join(s.text for s in said_all)
        surfaces += [s for said in said_all for s in said.surfaces]
    else:
        said = inline(rest, rng, kinds=kinds)
        parts["slots"] = said.text
        surfaces += said.surfaces
    text = tidy(frame.format(**{k: parts.get(k, "") for k in ("ask", "Ask", "context", "slots", "sentences",
                                                                "first", "rest", "Mine", "colon")}))
    return Said(text, tuple(surfaces))
