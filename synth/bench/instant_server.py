"""An OpenAI-compatible server that answers at once, for measuring synth's own cost and for orchestration tests.

It is a real HTTP server (aiohttp) in its own process, so the pipeline pays every cost it pays against vLLM
(HTTP, JSON, the ``openai`` client, validation) except the model's. Each reply is valid for its request: with a
``response_format`` JSON Schema the content is an instance of that schema; with ``tools`` (native tool calling)
it calls one of the listed tools with arguments valid for its ``parameters``; otherwise a short text. Choices
(``anyOf`` branches, enum values, lengths) are drawn from a generator seeded by the request, so the same request
always gets the same reply and a pipeline run against it is reproducible.

``--varied`` draws free text from a vocabulary of hundreds of thousands of made-up words, and snake_case names
(strings with a pattern) from verbs, made-up words and nouns, so thousands of evolved tools differ as a model's
would (``synth tools grow`` at scale); a few replies (``STOCK_SHARE``) reuse a small pool of stock tools, exactly or
with a word added, so the duplicate checks have duplicates to find.

``GET /stats`` returns the number of requests served, those in flight, when the last one arrived (and with
``?since=T`` how many arrived after T) and, per request digest (messages + seed + schema), how many times it was
asked: tests use it to check that no finished model call was sent twice and none after the driver died.

    python -m synth.bench.instant_server --port 8790 [--delay-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

from synth.errors import SynthError

MODEL = "instant"
_TEXT = ("the order ships today and the account holds two items while the user asks for a refund on the "
         "blue lamp from last week so please check the status then confirm the date and the total")
_WORDS = _TEXT.split(" ")
_MAX_DEPTH = 6
_CONSONANTS, _VOWELS = "bdfgklmnprstvz", "aeiou"
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]
_VERBS = ("get", "list", "create", "update", "delete", "search", "find", "check", "book", "cancel", "track",
          "schedule", "send", "compute", "export", "import", "validate", "approve", "assign", "archive", "merge",
          "estimate", "summarize", "reserve")
_NOUNS = ("order", "invoice", "report", "record", "slot", "ticket", "account", "item", "batch", "profile", "plan",
          "request", "entry", "route", "policy", "quote", "claim", "event", "note", "asset")
STOCK_SHARE = 0.04
"""Share of name+description objects (tools, subdomains, parameters) taken from the stock pool in varied mode."""
_STOCK = [(f"{verb}_{noun}", f"{verb.capitalize()} a {noun} by its identifier and return the {noun} with its "
           f"status, owner and the date it last changed.") for verb in _VERBS[:6] for noun in _NOUNS[:5]]


class InstantServerError(SynthError, RuntimeError):
    """The instant server did not come up: it exited, or never answered /health."""

    hint = "another process may hold the port: pick another --port (the message has the server's own error)"


class Unsatisfiable(ValueError):
    """No instance fits (an empty ``enum`` or ``anyOf``, e.g. a tool-name enum of an agent with no such tools)."""


class SchemaSampler:
    """Draws a JSON instance of a JSON Schema (the subset pydantic and the pipeline's tools use)."""

    def __init__(self, root: dict[str, Any], rng: random.Random, varied: bool = False) -> None:
        self.root = root
        self.rng = rng
        self.varied = varied

    def sample(self, schema: Any = None, depth: int = 0) -> Any:
        schema = self.root if schema is None else schema
        if schema is True or not isinstance(schema, dict) or not schema:
            return "ok"
        if "$ref" in schema:
            return self.sample(self._resolve(schema["$ref"]), depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            if not schema["enum"]:
                raise Unsatisfiable("an empty enum")
            return self.rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                if not schema[key]:
                    raise Unsatisfiable(f"an empty {key}")
                branches = [b for b in schema[key] if not (isinstance(b, dict) and b.get("type") == "null")]
                first = self.rng.choice(branches or schema[key])
                # A branch nothing fits (a harvested tool with an empty enum) gives way to the others, in order.
                for branch in [first, *(b for b in schema[key] if b is not first)]:
                    try:
                        return self.sample(branch, depth)
                    except Unsatisfiable:
                        continue
                raise Unsatisfiable(f"no branch of {key} can be satisfied")
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part["$ref"]) if "$ref" in part else part)
            return self.sample({**{k: v for k, v in schema.items() if k != "allOf"}, **merged}, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        return getattr(self, f"_{kind}", self._string)(schema, depth)

    def _resolve(self, ref: str) -> Any:
        node: Any = self.root
        for part in ref.lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        out: dict[str, Any] = {}
        for name, prop in props.items():
            if name in required or (depth < 2 and self.rng.random() < 0.5):
                try:
                    out[name] = self.sample(prop, depth + 1)
                except Unsatisfiable:
                    if name in required:
                        raise  # an optional property nothing fits is left out
        if self.varied and isinstance(out.get("name"), str) and isinstance(out.get("description"), str) \
                and self.rng.random() < STOCK_SHARE:
            self._stock(out, props)
        extra = schema.get("additionalProperties")
        if not props and extra not in (False, None) and depth < _MAX_DEPTH:
            for i in range(self.rng.randint(1, 2)):
                out[f"{self.rng.choice(_WORDS)}_{i}"] = self.sample(extra if isinstance(extra, dict) else
                                                                    {"type": "string"}, depth + 1)
        return out

    def _stock(self, out: dict[str, Any], props: dict[str, Any]) -> None:
        """Make ``out`` a stock name and description: as is, or the name with a made-up word added."""
        name, description = self.rng.choice(_STOCK)
        if self.rng.random() < 0.5:
            name = f"{name}_{self._word()}"
        pattern = (props.get("name") or {}).get("pattern")
        high = (props.get("description") or {}).get("maxLength")
        if (pattern is None or re.search(pattern, name)) and (high is None or len(description) <= high):
            out["name"], out["description"] = name, description

    def _word(self) -> str:
        return "".join(self.rng.choice(_SYLLABLES) for _ in range(self.rng.randint(2, 3)))

    def _varied_name(self, pattern: str, low: int, high: int | None) -> str | None:
        """A snake_case name unlikely to repeat: verb, made-up word and (sometimes) a noun."""
        for _ in range(4):
            parts = [self.rng.choice(_VERBS), self._word()]
            if self.rng.random() < 0.7:
                parts.append(self.rng.choice(_NOUNS))
            name = "_".join(parts)
            if re.search(pattern, name) and low <= len(name) <= (high or 10**9):
                return name
        return None

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", max(low, len(prefix)) + 2)
        n = self.rng.randint(low, max(low, min(high, low + 2))) if depth < _MAX_DEPTH else low
        items = schema.get("items", {"type": "string"})
        if items is False:  # a tuple: exactly the prefix slots
            n = min(n, len(prefix)) if prefix else 0
        n = max(n, len(prefix)) if items is not False else n
        try:
            return [self.sample(prefix[i] if i < len(prefix) else items, depth + 1) for i in range(n)]
        except Unsatisfiable:
            if low or prefix:
                raise
            return []  # no item fits: the empty array does

    def _string(self, schema: dict[str, Any], depth: int) -> str:
        fmt = schema.get("format")
        if fmt in ("date-time", "date", "time", "email", "uri", "url", "uuid"):
            return {"date-time": "2026-01-02T03:04:05Z", "date": "2026-01-02", "time": "03:04:05",
                    "email": "user@example.com", "uri": "https://example.com/a", "url": "https://example.com/a",
                    "uuid": "123e4567-e89b-12d3-a456-426614174000"}[fmt]
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if "pattern" in schema:
            varied = self._varied_name(schema["pattern"], low, high) if self.varied else None
            return varied or self._pattern(schema["pattern"], low, high)
        want = max(low, self.rng.randint(40, 160) if self.varied else self.rng.randint(12, 60))
        if high is not None:
            want = min(want, high)
        words: list[str] = []
        while len(" ".join(words)) < want:
            words.append(self._word() if self.varied else self.rng.choice(_WORDS))
        text = " ".join(words)[:want]
        return text if len(text) >= low else text.ljust(low, "a")

    def _pattern(self, pattern: str, low: int, high: int | None) -> str:
        for candidate in ("item_1", "a", "abc", "x1", "A1", "1", "2026-01-02", "a-b", "ab.c"):
            if re.search(pattern, candidate) and low <= len(candidate) <= (high or 10**9):
                return candidate
        return "a" * max(1, low)

    def _integer(self, schema: dict[str, Any], depth: int) -> int:
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in schema else 0)
        high = schema.get("maximum", schema.get("exclusiveMaximum", 0) - 1 if "exclusiveMaximum" in schema
                          else max(low, 0) + 9)
        return self.rng.randint(int(low), max(int(low), int(high)))

    def _number(self, schema: dict[str, Any], depth: int) -> float:
        return float(self._integer(schema, depth))

    def _boolean(self, schema: dict[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def _null(self, schema: dict[str, Any], depth: int) -> None:
        return None


def digest(body: dict[str, Any]) -> str:
    """What identifies one model call: its messages, seed, schema and tools (not the order of arrival)."""
    key = {k: body.get(k) for k in ("messages", "seed", "response_format", "tools", "tool_choice")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def reply(body: dict[str, Any], varied: bool = False) -> dict[str, Any]:
    """The chat completion for one request body: schema-valid content, a valid tool call, or text (``varied``:
    free text and names from a large vocabulary, see the module's docstring)."""
    key = digest(body)
    rng = random.Random(key)
    message: dict[str, Any] = {"role": "assistant", "content": None}
    finish = "stop"
    fmt = body.get("response_format") or {}
    tools = body.get("tools") or []
    if fmt.get("type") == "json_schema":
        schema = fmt["json_schema"].get("schema") or {}
        message["content"] = json.dumps(SchemaSampler(schema, rng, varied).sample(), separators=(",", ":"))
    elif fmt.get("type") == "json_object":
        message["content"] = "{}"
    elif tools and body.get("tool_choice") != "none" and rng.random() < 0.6:
        tool = rng.choice(tools)["function"]
        params = tool.get("parameters") or {"type": "object"}
        args = SchemaSampler(params, rng).sample()
        message["tool_calls"] = [{"id": f"call_{key[:8]}", "type": "function",
                                  "function": {"name": tool["name"], "arguments": json.dumps(args)}}]
        finish = "tool_calls"
    else:
        message["content"] = " ".join(rng.choice(_WORDS) for _ in range(12))
    prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [])
    completion_chars = len(message["content"] or json.dumps(message.get("tool_calls")))
    usage = {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": max(1, completion_chars // 4)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {"id": f"chatcmpl-{key}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model") or MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage}


def make_app(delay_s: float = 0.0, varied: bool = False) -> Any:
    from aiohttp import web

    counts: Counter[str] = Counter()
    arrivals: list[float] = []
    inflight = [0]

    async def chat(request: web.Request) -> web.Response:
        arrivals.append(time.time())
        inflight[0] += 1
        try:
            body = await request.json()
            counts[digest(body)] += 1
            if delay_s:
                await asyncio.sleep(delay_s)
            return web.Response(text=json.dumps(reply(body, varied)), content_type="application/json")
        finally:
            inflight[0] -= 1

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0,
                                                                "owned_by": "synth"}]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        since = float(request.query.get("since", "inf"))
        return web.json_response({"requests": len(arrivals), "inflight": inflight[0], "by_digest": dict(counts),
                                  "since": sum(1 for t in arrivals if t > since), "last": max(arrivals, default=0)})

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    return app


def serve(host: str, port: int, delay_s: float = 0.0, varied: bool = False) -> None:
    from aiohttp import web

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    web.run_app(make_app(delay_s, varied), host=host, port=port, print=None, access_log=None)


# --- helpers for tests and benchmarks: the server as a child process -------------------------------------------

def base_url(port: int, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}/v1"


def get_stats(port: int, host: str = "127.0.0.1", since: float | None = None) -> dict[str, Any]:
    """Requests served, in flight now, per digest, and (``since``: a Unix time) how many arrived after it."""
    query = f"?since={since}" if since is not None else ""
    with urllib.request.urlopen(f"http://{host}:{port}/stats{query}", timeout=30) as resp:
        return json.loads(resp.read())


def start(port: int, delay_ms: float = 0.0, host: str = "127.0.0.1", timeout_s: float = 60,
          varied: bool = False) -> subprocess.Popen:
    """Start the server as a child process (its own session, so a test can kill it alone) and wait for it."""
    proc = subprocess.Popen([sys.executable, "-m", "synth.bench.instant_server", "--host", host, "--port",
                             str(port), "--delay-ms", str(delay_ms), *(["--varied"] if varied else [])],
                            start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise InstantServerError(f"instant server on port {port} exited with {proc.returncode}: "
                               f"{proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2):
                return proc
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    proc.kill()
    raise InstantServerError(f"instant server on port {port} did not answer /health within {timeout_s:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running(port: int, delay_ms: float = 0.0, varied: bool = False) -> Iterator[subprocess.Popen]:
    proc = start(port, delay_ms, varied=varied)
    try:
        yield proc
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="Wait this long before each reply.")
    parser.add_argument("--varied", action="store_true", help="Free text and names from a large vocabulary.")
    args = parser.parse_args()
    serve(args.host, args.port, args.delay_ms / 1000, args.varied)


if __name__ == "__main__":
    main()
