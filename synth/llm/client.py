"""An async pool over one or more OpenAI-compatible endpoints.

Why not just ``AsyncOpenAI``: the pipeline needs a concurrency limit per endpoint (so one slow server does not
hold every request), least-loaded balancing over several servers, retries that move to another endpoint, usage
recorded per role, and every parsed reply constrained by a pydantic schema and validated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    wait_exponential_jitter,
)

from synth.config import EndpointConfig, LLMConfig
from synth.errors import SynthError
from synth.llm.cache import CallCache
from synth.schemas.usage import Role, Usage, UsageByRole

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)
FALLBACK_TIMEOUT_S = 600.0  # llm.timeout_s unset and no rate measured (see derive_timeout_s)
MAX_TIMEOUT_S = 3600.0
RECORD_ENV = "SYNTH_RECORD_REQUESTS"  # a JSONL path: every request is appended there (see _record_request)
RAW_CAP = 20_000  # characters of a bad reply kept in its row
CHARS_PER_TOKEN_CAP = 8  # accepted content beyond 8 characters per max_tokens is cut: no tokenizer writes more
HEALTH_TIMEOUT_S = 15.0  # a loaded vLLM still answers /health within seconds; 15 s allows for a busy event loop
MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is not waited out per request: the run stops and says so
QUOTE_CHARS = 200  # characters of a server's answer quoted in a message: enough to recognise a login page or a proxy
MALFORMED_STOP = 3
"""Replies in a row that are not chat completions, from an endpoint that never sent one, after which the stage stops:
that URL is no OpenAI-compatible server (a proxy's page, another service), and every further row would fail alike."""


class EndpointUnavailable(SynthError, RuntimeError):
    """No endpoint answered after every retry: connections refused, or timeouts on a server whose /health fails."""

    hint = ("start the embedded server with `make serve` (or `synth serve`), or point SYNTH_BASE_URL / "
            "llm.endpoints at a running OpenAI-compatible server")


class RateLimited(EndpointUnavailable):
    """Every endpoint answered 429 on every retry: the server is up but refuses this many requests."""

    hint = ("the server limits how many requests it takes: wait and run the same command again (finished rows "
            "and replies are kept), or lower the endpoint's max_concurrency (llm.endpoints) or ray.workers, "
            "or raise llm.max_retries")


class ServerFailing(EndpointUnavailable):
    """Every endpoint answered with a server error (HTTP 5xx) on every retry."""

    hint = ("the server answers but fails (see its log; a proxy's 502/504 means the model server behind it is down "
            "or too slow); fix it and run the same command again: finished rows and replies are kept")


class Refused(EndpointUnavailable):
    """The server refused the request for what every request shares: the API key (401, 403), the URL or the
    model name (404). No retry and no other row can fare better, so the stage stops at once."""

    hint = ("check the API key (SYNTH_API_KEY, or api_key in llm.endpoints), the base URL (it ends in /v1) and the "
            "model name (llm.model; the server's /v1/models lists what it serves)")


REFUSED = (401, 403, 404)  # statuses that say the request's setup is wrong, whatever the row


class NotOpenAI(EndpointUnavailable):
    """An endpoint answers, but never with an OpenAI chat completion or model list (an HTML page, another API)."""

    hint = ("the URL answers, but not as an OpenAI-compatible chat server: check llm.endpoints / SYNTH_BASE_URL "
            "(a base URL ending in /v1)")


class RequestTimedOut(SynthError, RuntimeError):
    """A healthy server did not finish this one request within its (already extended) deadlines.

    Not the stage's end: the server is slow, not dead, so the runner records the row's error and goes on.
    """

    hint = "on a slow server raise llm.timeout_s, or lower llm.max_tokens or the endpoint's max_concurrency"


class ReplyInvalid(SynthError, ValueError):
    """The model answered, but its reply does not fit the schema. Carries the raw output for the row.

    The raw output is capped (``RAW_CAP`` characters, the cut and the full length said at its end): a server that
    streams two million characters of junk must not put them into every row that keeps it.
    """

    kind = "validation"
    hint = ("the model could not write a reply of this schema: serve a stronger model, or raise llm.max_tokens "
            "when the reply was cut off")

    def __init__(self, message: str, raw: str | None = None) -> None:  # raw optional: unpickling passes args only
        super().__init__(message)
        self.raw = cap_raw(raw)


class ReplyMalformed(ReplyInvalid):
    """The server's answer is not a chat completion at all (an HTML page, no choices, usage that is not a
    number): the row keeps what it sent, and the message says what was wrong with it."""

    kind = "malformed"
    hint = ("the URL answers, but not as an OpenAI-compatible chat server: check llm.endpoints / SYNTH_BASE_URL "
            "(a base URL ending in /v1)")


def quote(text: str | bytes | None, chars: int = QUOTE_CHARS) -> str:
    """The first ``chars`` characters of what a server sent, quoted, with its length when longer."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text or ""
    return repr(text[:chars]) + (f" ... ({len(text)} characters)" if len(text) > chars else "")


def cap_raw(raw: str | None, cap: int | None = None) -> str | None:
    cap = RAW_CAP if cap is None else cap
    if raw is None or len(raw) <= cap:
        return raw
    return raw[:cap] + f"\n[... cut at {cap} of {len(raw)} characters]"


@dataclass
class _Sent:
    parsed: Any
    text: str
    url: str = ""  # the endpoint that sent it


def _parse_completion(response: Any, text: str, url: str = "") -> tuple[Any, Usage]:
    """The first choice and its usage, or ``ReplyMalformed`` naming ``url`` and quoting the body it sent."""
    sent = f" from {url}" if url else ""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        raise ReplyMalformed(f"the reply{sent} is not a chat completion ({type(response).__name__}, no 'choices'): "
                             f"{quote(text)}", text)
    if not choices or getattr(choices[0], "message", None) is None:
        raise ReplyMalformed(f"the reply{sent} has no choices (or a choice without a message): {quote(text)}", text)
    try:
        got = Usage(prompt_tokens=response.usage.prompt_tokens if response.usage else 0,
                    completion_tokens=response.usage.completion_tokens if response.usage else 0, calls=1)
    except (ValidationError, AttributeError) as exc:
        raise ReplyMalformed(f"the reply{sent}: its usage is not token counts ({exc.__class__.__name__}): "
                             f"{quote(text)}", text) from exc
    return choices[0], got


def _cap_content(choice: Any, max_tokens: int) -> int | None:
    """Cut content longer than ``max_tokens`` could ever be (``CHARS_PER_TOKEN_CAP`` characters a token) and mark
    it as cut at the length limit; returns its length before the cut, or None. A server that ignores max_tokens
    must not put megabytes into a row."""
    cap = CHARS_PER_TOKEN_CAP * max(int(max_tokens), 1)
    content = choice.message.content
    if not isinstance(content, str) or len(content) <= cap:
        return None
    log.warning("a reply of %d characters exceeds %d (max_tokens=%d); kept cut at %d", len(content), cap,
                max_tokens, cap)
    choice.message.content = content[:cap]
    choice.finish_reason = "length"
    return len(content)


def _failure(exc: BaseException) -> str:
    """What one failed attempt met, for the message: a 429 as rate-limited (with its Retry-After), a server
    error with the start of its body, anything else as its type and text."""
    response = getattr(exc, "response", None)
    if isinstance(exc, openai.RateLimitError):
        after = response.headers.get("retry-after") if response is not None else None
        return "HTTP 429: rate-limited" + (f" (Retry-After: {after})" if after else " (no Retry-After given)")
    if isinstance(exc, openai.APIStatusError) and response is not None:
        return f"HTTP {exc.status_code}: {quote(response.text)}"
    return f"{type(exc).__name__}: {exc}"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError | openai.RateLimitError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _record_request(path: Path, role: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> None:
    """Append one request as sent (role, messages, sampling, schema or tools) for ``make bench`` to replay:
    the benchmark then measures the pipeline's real request mix, not free chat alone."""
    line = json.dumps({"role": role, "messages": messages, "params": params}, default=str)
    with path.open("a") as fh:  # one write per line: concurrent workers' lines stay whole
        fh.write(line + "\n")


def health_url(base_url: str) -> str:
    """vLLM (and most OpenAI-compatible servers) answer ``/health`` beside ``/v1``."""
    root = base_url.rstrip("/")
    return (root[: -len("/v1")] if root.endswith("/v1") else root) + "/health"


def derive_timeout_s(max_tokens: int, batched_tokens_per_s: float, concurrency: int) -> float:
    """A request deadline from the measured rate: three times what a ``max_tokens`` reply takes when
    ``concurrency`` requests share the server's batched rate, plus 30 s for queueing and prefill; within
    120-1800 s. Why derived: a fixed 120 s was far too short on a CPU that generates 21 tokens/s in all."""
    per_stream = max(batched_tokens_per_s, 1e-3) / max(concurrency, 1)
    return float(min(1800.0, max(120.0, 30 + 3 * max_tokens / per_stream)))


@dataclass
class _Attempts:
    """What went wrong so far for one request: which failures count against which budget."""

    down: int = 0  # connection errors, 429/5xx, timeouts on a server whose /health fails
    slow: int = 0  # timeouts on a server that answers /health
    last_slow: bool = False
    errors: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # per error: "rate" (429), "status" (5xx) or "down"
    retry_after: float = 0.0  # seconds the last 429 asked to wait


def _unavailable(kinds: list[str], message: str) -> EndpointUnavailable:
    """The error for a request every retry failed: rate-limited or failing when every attempt said so (the
    hint differs: wait, or look at the server), else not answering."""
    if kinds and all(k == "rate" for k in kinds):
        return RateLimited(message.replace("no LLM endpoint answered", "every endpoint refused the request as "
                                           "rate-limited (HTTP 429)", 1))
    if kinds and "rate" in kinds and all(k in ("rate", "status") for k in kinds):
        return RateLimited(message.replace("no LLM endpoint answered", "every endpoint refused the request: "
                                           "rate-limited (HTTP 429) or failing (HTTP 5xx)", 1))
    if kinds and all(k == "status" for k in kinds):
        return ServerFailing(message.replace("no LLM endpoint answered", "every endpoint answered with a server "
                                             "error", 1))
    return EndpointUnavailable(message)


def cooldown_s(failures: int) -> float:
    """How long a failed endpoint's routing penalty lasts after ``failures`` failures in a row: 2 s after one,
    doubling with each more, at most 60 s."""
    return min(60.0, 2.0 ** min(failures, 6))  # capped before the power: an endpoint down for long counts past 1,023


@dataclass
class _Endpoint:
    config: EndpointConfig
    client: AsyncOpenAI
    semaphore: asyncio.Semaphore
    assigned: int = 0  # requests routed here and not finished: in flight or waiting for the semaphore
    failures: int = 0  # in a row, since the last success
    failed_at: float = 0.0  # clock() of the last failure
    answered: int = 0  # chat completions it sent: one is enough to show it speaks the protocol
    malformed: int = 0  # replies in a row that were no chat completion
    clock: Callable[[], float] = time.monotonic

    @property
    def load(self) -> float:
        # Counted from the moment of routing, not of sending, so a burst spreads over endpoints; recent failures
        # count extra so a dead endpoint is tried last while others answer. The penalty lapses after a cool-down
        # (``cooldown_s``): a replica that comes back is tried again even while the others are idle, and a dead
        # one costs one probe per cool-down.
        recent = self.clock() - self.failed_at < cooldown_s(self.failures)
        return (self.assigned + (4 * self.failures if recent else 0)) / self.config.max_concurrency


@dataclass
class ChatResult:
    content: str | None
    message: Any
    usage: Usage
    model: str
    finish_reason: str | None = None
    raw: Any = field(default=None, repr=False)
    cached: bool = False  # answered from the run's call cache, not by a server
    cut_from: int | None = None  # the content's length when it was cut to the cap (see _cap_content)


_VERBATIM = ("response_format", "tools", "tool_choice")
"""Request parts sent as given (with ``messages``), past the SDK's parameter transform."""


class LLMPool:
    """Load-balanced chat completions with retries, structured outputs and per-role usage."""

    def __init__(
        self,
        endpoints: list[EndpointConfig],
        config: LLMConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache: CallCache | None = None,
    ) -> None:
        if not endpoints:
            raise EndpointUnavailable("no LLM endpoint is configured")
        self.config = config or LLMConfig()
        self.timeout_s = self.config.timeout_s or FALLBACK_TIMEOUT_S
        self._endpoints = [
            _Endpoint(
                config=ep,
                # Retries are ours (they can move to another endpoint), so the client's own are off.
                client=AsyncOpenAI(base_url=ep.base_url, api_key=ep.api_key, max_retries=0, timeout=self.timeout_s),
                semaphore=asyncio.Semaphore(ep.max_concurrency),
                clock=clock,  # what failure cool-downs are measured on
            )
            for ep in endpoints
        ]
        self.usage = UsageByRole()
        self._model: str | None = self.config.model
        self._http: httpx.AsyncClient | None = None
        self.health_timeout_s = HEALTH_TIMEOUT_S
        self.cache = cache  # replies already paid for (synth.llm.cache); the runner gives each stage's pool one

    @property
    def urls(self) -> list[str]:
        return [ep.config.base_url for ep in self._endpoints]

    async def model(self) -> str:
        """The served model name: from config, else the first model the first answering endpoint lists."""
        if self._model is None:
            errors: list[str] = []
            kinds: list[str] = []
            for ep in self._endpoints:
                try:
                    # Listing models is cheap even on a loaded server; a tight request deadline must not fail it.
                    raw = await ep.client.with_options(timeout=max(self.timeout_s, 60)).models.with_raw_response.list()
                    self._model = served_model(raw.text, ep.config.base_url)
                    break
                except openai.APIError as exc:
                    errors.append(f"{ep.config.base_url}: {_failure(exc)}")
                    kinds.append(_kind(exc))
                except NotOpenAI as exc:
                    errors.append(str(exc))
                    kinds.append("garbage")
            else:
                message = self._unavailable_message(errors)
                if all(k == "garbage" for k in kinds):
                    raise NotOpenAI(message.replace("no LLM endpoint answered", "no endpoint answered as an "
                                                    "OpenAI-compatible server", 1))
                raise _unavailable(kinds, message)
        return self._model

    def _unavailable_message(self, errors: list[str]) -> str:
        lines: list[str] = []  # the same failure twice in a row is one line with its count
        counts: list[int] = []
        for error in errors:
            if lines and lines[-1] == error:
                counts[-1] += 1
            else:
                lines.append(error)
                counts.append(1)
        return "no LLM endpoint answered:\n  " + "\n  ".join(
            line + (f" ({n} times)" if n > 1 else "") for line, n in zip(lines, counts, strict=True))

    def _pick(self) -> _Endpoint:
        return min(self._endpoints, key=lambda ep: ep.load)

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        role: Role,
        seed: int | None = None,
        usage: UsageByRole | None = None,
        **params: Any,
    ) -> ChatResult:
        """One chat completion, retried on connection errors, 429 and 5xx, on the least-loaded endpoint."""
        model = await self.model()
        params.setdefault("temperature", self.config.temperature)
        params.setdefault("max_tokens", self.config.max_tokens)
        if seed is not None:
            params["seed"] = seed
        if RECORD_ENV in os.environ:
            _record_request(Path(os.environ[RECORD_ENV]), role, messages, params)
        key = self.cache.key(model, messages, params) if self.cache is not None else None
        known = self.cache.get(key) if self.cache is not None and key is not None else None
        if known is not None:  # answered before this run was interrupted: not paid again
            choice, got = _parse_completion(ChatCompletion.construct(**known), json.dumps(known))
            got = got.as_cached()
            self.usage.record(role, got)
            if usage is not None:
                usage.record(role, got)
            return ChatResult(content=choice.message.content, message=choice.message, usage=got, model=model,
                              finish_reason=choice.finish_reason, raw=None, cached=True)
        state = _Attempts()
        backoff = wait_exponential_jitter(multiplier=0.5, max=10)
        # llm.timeout_s is the deadline of an llm.max_tokens reply; a request that may write more (the judge's
        # one slot per criterion) gets proportionally more, or it would time out on a slow server by design.
        deadline = self.timeout_s * max(1.0, params["max_tokens"] / max(self.config.max_tokens, 1))
        try:
            async for attempt in AsyncRetrying(
                stop=lambda rs: state.down > self.config.max_retries or state.slow > self.config.slow_retries,
                # A 429's Retry-After (seconds, at most MAX_RETRY_AFTER_S) is waited out: retrying sooner is refused.
                wait=lambda rs: max(backoff(rs), state.retry_after),
                retry=retry_if_exception(_retryable),
                reraise=False,
            ):
                with attempt:
                    ep = self._pick()
                    try:
                        response = await self._call(ep, model, messages, {**params, "timeout": deadline})
                    except Exception as exc:
                        if isinstance(exc, openai.APIStatusError) and exc.status_code in REFUSED:
                            raise Refused(f"{ep.config.base_url} refused the request ({_failure(exc)}) for model "
                                          f"{model!r}") from exc
                        if _retryable(exc):
                            state.errors.append(f"{ep.config.base_url}: {_failure(exc)} (deadline {deadline:.0f}s)")
                            state.kinds.append(_kind(exc))
                            state.retry_after = _retry_after_s(exc)
                            state.last_slow = isinstance(exc, openai.APITimeoutError) and await self._healthy(ep)
                            if state.last_slow:
                                # Slow, not dead: the same request gets a longer deadline, and the endpoint keeps
                                # its place in the balancing.
                                state.slow += 1
                                deadline = min(deadline * 2, MAX_TIMEOUT_S)
                                log.warning("%s answers /health but a request took over %.0fs; retrying with %.0fs",
                                            ep.config.base_url, deadline / 2, deadline)
                            else:
                                state.down += 1
                                ep.failures += 1
                                ep.failed_at = ep.clock()
                        raise
                    ep.failures = 0
        except RetryError as exc:
            if state.last_slow:
                raise RequestTimedOut(
                    f"the server answers /health but did not finish this request within {deadline:.0f}s "
                    f"({state.slow} timeouts; max_tokens={params.get('max_tokens')})"
                ) from exc
            last = -len(self._endpoints) * 2
            raise _unavailable(state.kinds[last:], self._unavailable_message(state.errors[last:])) from exc
        except ReplyMalformed as exc:
            self._malformed(ep, exc)
            raise
        try:
            choice, got = _parse_completion(response.parsed, response.text, response.url)
        except ReplyMalformed as exc:
            self._malformed(ep, exc)
            raise
        ep.answered += 1
        ep.malformed = 0
        response = response.parsed
        cut = _cap_content(choice, params["max_tokens"])
        if self.cache is not None and key is not None:
            # Kept before the caller sees it, hence before any row that uses it is written.
            await self.cache.put(key, response.model_dump(mode="json", exclude_unset=True))
        self.usage.record(role, got)
        if usage is not None:
            usage.record(role, got)
        return ChatResult(
            content=choice.message.content,
            message=choice.message,
            usage=got,
            model=response.model,
            finish_reason=choice.finish_reason,
            raw=response,
            cut_from=cut,
        )

    def _malformed(self, ep: _Endpoint, exc: ReplyMalformed) -> None:
        """Count a reply that is no chat completion; from an endpoint that never sent one, ``MALFORMED_STOP`` in
        a row stop the stage (``NotOpenAI``): the URL is wrong, and every further row would fail the same way."""
        ep.malformed += 1
        if ep.answered == 0 and ep.malformed >= MALFORMED_STOP:
            raise NotOpenAI(f"{ep.config.base_url} answered {ep.malformed} requests in a row, none with an OpenAI "
                            f"chat completion; the last: {exc}") from exc

    async def _healthy(self, ep: _Endpoint) -> bool:
        """Whether the endpoint answers at all: ``/health``, else (servers without one) ``/v1/models``."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.health_timeout_s)
        headers = {"Authorization": f"Bearer {ep.config.api_key}"}
        for url in (health_url(ep.config.base_url), ep.config.base_url.rstrip("/") + "/models"):
            try:
                resp = await self._http.get(url, headers=headers)
            except httpx.HTTPError:
                return False  # refused, or no answer within health_timeout_s: down
            if resp.status_code == 200:
                return True
            if resp.status_code != 404:
                return False
        return False

    async def _call(self, ep: _Endpoint, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Any:
        ep.assigned += 1
        try:
            async with ep.semaphore:
                # The raw body is kept beside the parsed reply: when a server sends something that is not a chat
                # completion, the row keeps what it sent, not our re-serialisation of a half-parsed object.
                # The SDK walks every parameter against its TypedDicts before sending (openai._utils._transform);
                # for a chat body that changes nothing, and with big tool and response schemas it was a third of
                # the workers' Python CPU in `make bench-scale`. So the large parts go as extra_body, as they are.
                body = {**params.get("extra_body", {}), "messages": messages,
                        **{k: params[k] for k in _VERBATIM if k in params}}
                rest = {k: v for k, v in params.items() if k not in (*_VERBATIM, "extra_body")}
                raw = await ep.client.chat.completions.with_raw_response.create(model=model, messages=[],
                                                                               extra_body=body, **rest)
                try:
                    return _Sent(raw.parse(), raw.text, ep.config.base_url)
                except ValueError as exc:  # not JSON (an empty body, a cut-off stream): the row keeps what came
                    raise ReplyMalformed(f"the reply from {ep.config.base_url} is not JSON ({len(raw.text)} "
                                         f"characters): {quote(raw.text)} ({exc})", raw.text) from exc
        finally:
            ep.assigned -= 1

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: type[T],
        *,
        role: Role,
        seed: int | None = None,
        usage: UsageByRole | None = None,
        json_schema: dict[str, Any] | None = None,
        **params: Any,
    ) -> T:
        """A reply constrained to ``schema``'s JSON Schema (guided decoding) and validated with pydantic.

        ``json_schema`` replaces the schema sent to the server when it must be tighter than the model's own
        (e.g. tool names as an enum); the reply is still validated against ``schema``.
        Raises ``ReplyInvalid`` with the raw output when the reply does not validate.
        """
        sent = closed_schema(json_schema or schema.model_json_schema())
        response_format = {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": sent}}
        # A small model sometimes rambles inside a string until max_tokens; a fresh sample (another seed) usually
        # finishes. Every attempt's tokens are recorded; the last raw output is kept when all fail.
        attempts = self.config.structured_retries + 1
        for attempt in range(attempts):
            attempt_seed = seed if seed is None or attempt == 0 else seed + 7919 * attempt
            if attempt:
                # Greedy decoding would repeat the same failure whatever the seed, so a retry always samples.
                params["temperature"] = max(params.get("temperature", self.config.temperature), 0.7)
            result = await self.chat(messages, role=role, seed=attempt_seed, usage=usage,
                                     response_format=response_format, **params)
            raw = result.content or ""
            try:
                return schema.model_validate_json(raw)
            except ValidationError as exc:
                why = "reply cut off at max_tokens" if result.finish_reason == "length" else "reply does not fit"
                error = ReplyInvalid(f"{schema.__name__}: {why}: {_first_error(exc)}"
                                     + (f" (after {attempts} attempts)" if attempts > 1 else ""), raw)
                error.__cause__ = exc
        raise error

    async def aclose(self) -> None:
        for ep in self._endpoints:
            await ep.client.close()
        if self._http is not None:
            await self._http.aclose()


def _retry_after_s(exc: BaseException) -> float:
    """The seconds a 429's ``Retry-After`` header asks for (0 when absent, an HTTP date, or not a 429)."""
    response = getattr(exc, "response", None)
    if not isinstance(exc, openai.RateLimitError) or response is None:
        return 0.0
    try:
        return min(max(float(response.headers.get("retry-after", 0)), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0


def _kind(exc: BaseException) -> str:
    if isinstance(exc, openai.RateLimitError):
        return "rate"
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return "status"
    return "down"


def served_model(text: str, base_url: str) -> str:
    """The first model id in a ``/models`` answer, or ``NotOpenAI`` naming the URL and quoting what came."""
    try:
        data = json.loads(text)
        name = data["data"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise NotOpenAI(f"{base_url.rstrip('/')}/models answered with no model list: {quote(text)}") from exc
    if not isinstance(name, str):
        raise NotOpenAI(f"{base_url.rstrip('/')}/models lists a model without a name: {quote(text)}")
    return name


def closed_schema(schema: Any) -> Any:
    """Forbid keys a model did not declare (``additionalProperties: false`` on every object with properties).

    JSON Schema allows extra keys by default, and guided decoding follows the schema, not the pydantic model: a
    small model then pads its reply with invented keys until it runs out of tokens. Objects that say what
    extra keys they take (free-form dicts) are left as they are.
    """
    if isinstance(schema, dict):
        out = {k: closed_schema(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed_schema(v) for v in schema]
    return schema


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "<root>"
    return f"{loc}: {err['msg']} ({len(exc.errors())} error(s))"

