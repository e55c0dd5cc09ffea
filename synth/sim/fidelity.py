"""How close the tool simulator comes to the real MCP servers it imitates, measured call by call.

The replay (``synth sim fidelity``): every call (``synth.sim.fidelity_calls``: generated from each server's tool
schemas, and read from real-execution episodes) goes to the real server, confined like a rollout's, in a fresh
scratch world per sequence; the same call goes through the ``ToolSimulator`` given the same world state: the
real world's snapshot just before the call (``RealToolHub.asnapshot``: files, memory graph, git log and status,
the parts the server works on), the workspace path and the current UTC time (the time servers read the clock).
Each simulator variant answers every call from the real state, so one wrong simulated change never carries into
the next call; the simulator keeps its own earlier answers as in an episode.

Per call (``CallComparison``):
- outcome: both succeeded or both failed (a server error, an ``isError`` result; a simulated ``Error: ...``);
- schema: where the real result is JSON that follows the tool's declared output schema, whether the simulated
  one does too (calls both answered);
- key values (``synth.sim.fidelity_keys``): the share of the real result's key values that the simulated result
  has (calls both answered);
- state (memory, filesystem, git): the simulated world after the call against the real one, reduced to what the
  state means (``state_projection``);
- ``agrees``: the outcome agrees and, where both answered, every key value, the schema and the state agree too.

Variants: ``baseline`` is the simulator as rollouts run it; ``examples`` gives it real answers of the same tool
to other calls (a calibration pass over each server, never the replayed call's own arguments), shown in its
prompt and shaping its result (``synth.sim.tool_sim.result_shape``). Injected failures are off in both: they are
the simulator's noise on purpose, not its fidelity.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import jsonschema
from pydantic import BaseModel, Field

from synth.config import EndpointConfig, PipelineConfig
from synth.errors import SynthError
from synth.llm.client import EndpointUnavailable, LLMPool, RequestTimedOut
from synth.llm.roles import RoutedPool, role_pools
from synth.machine import machine_info
from synth.schemas.messages import ToolCall
from synth.sim.fidelity_calls import (
    FILESYSTEM,
    GIT,
    MEMORY,
    REPLAY_SERVERS,
    SEED_FILES,
    UNCOMMITTED,
    WORKSPACE,
    ReplayCall,
    ReplaySequence,
    generated_sequences,
    rollout_sequences,
)
from synth.sim.fidelity_keys import Key, key_agreement, key_values, parse_json, state_projection
from synth.sim.real_exec import RealToolHub
from synth.sim.tool_sim import ToolExample, ToolSimulator
from synth.sim.world import WorldState
from synth.tools.errors import ToolError
from synth.tools.harvest import jsonl_path
from synth.tools.registry import MCP_DIR
from synth.tools.servers import ServerEntry, load_servers

log = logging.getLogger(__name__)

STATEFUL = (MEMORY, FILESYSTEM, GIT)
VARIANTS = ("baseline", "examples")
TEXT_CHARS = 600
"""Characters of each result kept in a comparison (the JSON stays readable; extraction saw the whole text)."""
WORST_SHOWN = 12


class FidelityError(SynthError, ValueError):
    """The replay cannot run as asked (an unknown server, nothing to replay)."""

    hint = "pick servers from synth.sim.fidelity_calls.REPLAY_SERVERS that `synth tools harvest` has listed"


class CallComparison(BaseModel):
    """One call, answered by the real server and by one simulator variant."""

    sequence: str
    server: str
    tool: str
    arguments: dict[str, Any]
    source: str
    variant: str
    real_ok: bool
    real: str
    sim_ok: bool
    sim: str
    sim_failed: str | None = Field(default=None, description="The simulator's model gave no usable reply: why.")
    unmeasured: bool = Field(default=False, description="The model server did not answer (down, or past the "
                             "deadline): the call says nothing of the simulator and is left out of the rates.")
    outcome_agrees: bool
    schema_valid: bool | None = Field(default=None, description="None: the real result follows no declared schema.")
    key_score: float | None = Field(default=None, description="None: not both answered, or no key value.")
    keys_real: dict[str, Any] = Field(default_factory=dict)
    keys_sim: dict[str, Any] = Field(default_factory=dict)
    state_agrees: bool | None = Field(default=None, description="None: a server without state, or not both ok.")
    real_changed: bool | None = None
    sim_changed: bool | None = None
    agrees: bool


class Agreement(BaseModel):
    """Agreement over a set of calls; each rate over the calls it applies to (its count beside it)."""

    calls: int = 0
    agrees: float = 0.0
    outcome: float = 0.0
    schema_calls: int = 0
    schema_valid: float | None = None
    key_calls: int = 0
    key_score: float | None = None
    key_exact: float | None = None
    state_calls: int = 0
    state: float | None = None
    sim_failed: int = 0
    unmeasured: int = Field(default=0, description="Calls left out: the model server did not answer.")


class VariantResult(BaseModel):
    overall: Agreement
    servers: dict[str, Agreement]
    worst: list[CallComparison]


class FidelityReport(BaseModel):
    """What ``bench/results/sim_fidelity.json`` holds."""

    model: str
    endpoints: list[str]
    machine: dict[str, Any]
    command: str
    servers: list[str]
    calls: int
    sources: dict[str, int]
    variants: dict[str, VariantResult]
    anchor: str = "SynthTools (arXiv 2511.09572): 94% simulation accuracy"
    seconds: float = 0.0


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def agreement(rows: Sequence[CallComparison]) -> Agreement:
    unmeasured = sum(r.unmeasured for r in rows)
    rows = [r for r in rows if not r.unmeasured]
    if not rows:
        return Agreement(unmeasured=unmeasured)
    schema = [r.schema_valid for r in rows if r.schema_valid is not None]
    keys = [r.key_score for r in rows if r.key_score is not None]
    state = [r.state_agrees for r in rows if r.state_agrees is not None]
    return Agreement(
        calls=len(rows),
        agrees=round(sum(r.agrees for r in rows) / len(rows), 4),
        outcome=round(sum(r.outcome_agrees for r in rows) / len(rows), 4),
        schema_calls=len(schema), schema_valid=_mean([float(v) for v in schema]),
        key_calls=len(keys), key_score=_mean(keys), key_exact=_mean([float(k >= 1.0) for k in keys]),
        state_calls=len(state), state=_mean([float(v) for v in state]),
        sim_failed=sum(r.sim_failed is not None for r in rows), unmeasured=unmeasured,
    )  # fmt: skip


def _badness(row: CallComparison) -> tuple[float, ...]:
    return (float(not row.outcome_agrees), float(row.state_agrees is False), 1.0 - (row.key_score or 0.0),
            float(row.schema_valid is False))  # fmt: skip


def worst(rows: Sequence[CallComparison], shown: int = WORST_SHOWN, per_server: int = 2) -> list[CallComparison]:
    """The worst disagreements, at most ``per_server`` of each server so one bad server does not fill the list."""
    picked: list[CallComparison] = []
    count: dict[str, int] = {}
    for row in sorted((r for r in rows if not r.agrees and not r.unmeasured), key=_badness, reverse=True):
        if count.get(row.server, 0) < per_server:
            picked.append(row)
            count[row.server] = count.get(row.server, 0) + 1
        if len(picked) >= shown:
            break
    return picked


def summarize(rows: Sequence[CallComparison]) -> VariantResult:
    servers = sorted({r.server for r in rows})
    return VariantResult(overall=agreement(rows),
                         servers={s: agreement([r for r in rows if r.server == s]) for s in servers},
                         worst=worst(rows))  # fmt: skip


def _plain(keys: Mapping[str, Key]) -> dict[str, Any]:
    return {k: sorted(map(str, v)) if isinstance(v, frozenset) else v for k, v in keys.items()}


def schema_valid(output_schema: Mapping[str, Any] | None, real: str, sim: str) -> bool | None:
    """Whether the simulated result follows the declared output schema, where the real one does (else None)."""
    if not output_schema:
        return None
    validator = jsonschema.Draft202012Validator(dict(output_schema))
    real_value = parse_json(real)
    if real_value is None or not validator.is_valid(real_value):
        return None  # the server's text is not its structured result: nothing to hold the simulator to
    sim_value = parse_json(sim)
    return sim_value is not None and validator.is_valid(sim_value)


def compare(call: ReplayCall, sequence: str, variant: str, *, real_ok: bool, real: str, sim_ok: bool, sim: str,
            sim_failed: str | None = None, output_schema: Mapping[str, Any] | None = None,
            state_before: Mapping[str, Any] | None = None, real_after: Mapping[str, Any] | None = None,
            sim_after: Mapping[str, Any] | None = None) -> CallComparison:  # fmt: skip
    """Compare one call's real and simulated answers (and states, for a server with state)."""
    outcome = real_ok == sim_ok
    both = real_ok and sim_ok
    keys_real = key_values(call.server, call.tool, real, call.arguments) if both else {}
    keys_sim = key_values(call.server, call.tool, sim, call.arguments) if both else {}
    score = key_agreement(keys_real, keys_sim) if both else None
    valid = schema_valid(output_schema, real, sim) if both else None
    state = real_changed = sim_changed = None
    if call.server in STATEFUL and state_before is not None and real_after is not None and sim_after is not None:
        before = state_projection(call.server, state_before)
        real_state = state_projection(call.server, real_after)
        sim_state = state_projection(call.server, sim_after)
        real_changed, sim_changed = real_state != before, sim_state != before
        state = real_state == sim_state
    agrees = outcome and (not both or (score in (None, 1.0) and valid is not False and state is not False))
    if not both:
        # A call that failed on both sides changed nothing on either; a disagreement is already in the outcome.
        agrees = outcome and state is not False
    return CallComparison(
        sequence=sequence, server=call.server, tool=call.tool, arguments=call.arguments, source=call.source,
        variant=variant, real_ok=real_ok, real=real[:TEXT_CHARS], sim_ok=sim_ok, sim=sim[:TEXT_CHARS],
        sim_failed=sim_failed, outcome_agrees=outcome, schema_valid=valid, key_score=score,
        keys_real=_plain(keys_real), keys_sim=_plain(keys_sim), state_agrees=state, real_changed=real_changed,
        sim_changed=sim_changed, agrees=agrees,
    )  # fmt: skip


def world_view(server: str, snapshot: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The world state the simulator is given for a call to ``server``: the parts of the real world's snapshot
    that server works on, the workspace it sees and the clock."""
    view: dict[str, Any] = {"workspace": WORKSPACE, "clock": {"utc": now}}
    if server == MEMORY:
        view["memory"] = snapshot.get("memory") or {"entities": [], "relations": []}
    if server in (FILESYSTEM, GIT):
        view["files"] = snapshot.get("files") or {}
    if server == GIT:
        view["git"] = snapshot.get("git") or {}
    return view


def harvested_tools(server: str) -> list[dict[str, Any]]:
    """The server's tools as its harvest listed them (name, inputSchema, outputSchema), or [] if not harvested."""
    path = jsonl_path(MCP_DIR, server)
    if not path.exists():
        return []
    return [json.loads(line)["tool"] for line in path.read_text().splitlines() if line.strip()]


def replay_entries(servers: Iterable[str]) -> dict[str, ServerEntry]:
    """The servers' entries, marked for real calls: the replay runs each one confined as a rollout runs its
    sandbox-safe servers (no network, a read-only host but the scratch world), whatever the list says of it."""
    known = {e.id: e for e in load_servers()}
    out = {}
    for server in servers:
        if server not in known:
            raise FidelityError(f"no server {server!r} in tools_registry/mcp_servers.yaml")
        out[server] = known[server].model_copy(update={"sandbox_safe": True})
    return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


async def _real_call(hub: RealToolHub, call: ReplayCall) -> tuple[bool, str]:
    try:
        return True, (await hub.call(call.tool, call.arguments)).content
    except ToolError as exc:
        return False, str(exc)


async def _sim_call(sim: ToolSimulator, tc: ToolCall) -> tuple[bool, str, str | None]:
    try:
        return True, (await sim.call(tc)).content, None
    except ToolError as exc:
        return False, str(exc), None
    except (EndpointUnavailable, RequestTimedOut) as exc:  # the server, not the simulator: left out (unmeasured)
        return False, f"(no answer from the model server: {type(exc).__name__})", f"unmeasured: {exc}"[:300]
    except SynthError as exc:  # the model gave no usable reply: counted as a failed simulated call, and said so
        return False, f"Error: simulator gave no usable reply ({type(exc).__name__})", str(exc)[:300]


async def _answer(sim: ToolSimulator, tc: ToolCall, answers: dict[str, tuple[bool, str, str | None]],
                  variant: str) -> None:  # fmt: skip
    answers[variant] = await _sim_call(sim, tc)


async def replay_sequence(
    seq: ReplaySequence, entry: ServerEntry, pool: Any, rollouts: Any, *,
    examples: Mapping[str, Sequence[ToolExample]] | None, variants: Sequence[str], seed: int,
    output_schemas: Mapping[str, Mapping[str, Any]],
) -> list[CallComparison]:  # fmt: skip
    """Replay one sequence on a fresh real world and through each simulator variant; one comparison per call and
    variant."""
    out: list[CallComparison] = []
    async with RealToolHub([entry], initial_files=SEED_FILES) as hub:
        if seq.server == GIT:
            for rel, text in UNCOMMITTED.items():
                (hub.root / rel).write_text(text, encoding="utf-8")
        tools = [spec.openai() for spec in hub.tools()]
        sims = {v: ToolSimulator(tools, WorldState({}), pool, rollouts, seed=seed, hub=None,
                                 examples=examples if v == "examples" else None) for v in variants}  # fmt: skip
        for index, call in enumerate(seq.calls):
            before = await hub.asnapshot()
            now = _now()
            real_ok, real = await _real_call(hub, call)
            after = await hub.asnapshot()
            view = world_view(seq.server, before, now)
            tc = ToolCall.model_validate({"id": f"call_{index}", "type": "function", "function": {
                "name": call.tool, "arguments": json.dumps(call.arguments)}})  # fmt: skip
            answers: dict[str, tuple[bool, str, str | None]] = {}
            async with anyio.create_task_group() as tg:
                for variant in variants:
                    sim = sims[variant]
                    sim.world = WorldState(view)
                    if variant == "examples" and examples is not None:
                        # Never the replayed call's own answer: only other calls of the same tool.
                        sim.examples = {name: [e for e in found if e.arguments != call.arguments]
                                        for name, found in examples.items()}  # fmt: skip
                    tg.start_soon(_answer, sim, tc, answers, variant)
            for variant in variants:
                sim_ok, sim_text, failed = answers[variant]
                row = compare(
                    call, seq.id, variant, real_ok=real_ok, real=real, sim_ok=sim_ok, sim=sim_text, sim_failed=failed,
                    output_schema=output_schemas.get(call.tool), state_before=view,
                    real_after=world_view(seq.server, after, now), sim_after=sims[variant].world.doc,
                )  # fmt: skip
                row.unmeasured = bool(failed and failed.startswith("unmeasured"))
                out.append(row)
    return out


async def calibrate(sequences: Sequence[ReplaySequence], entries: Mapping[str, ServerEntry],
                    concurrency: int) -> dict[str, dict[str, list[ToolExample]]]:  # fmt: skip
    """Real answers per server and tool from calibration sequences (the first success and the first failure)."""
    found: dict[str, dict[str, list[ToolExample]]] = {}
    limit = anyio.Semaphore(concurrency)

    async def run(seq: ReplaySequence) -> None:
        async with limit, RealToolHub([entries[seq.server]], initial_files=SEED_FILES) as hub:
            if seq.server == GIT:
                for rel, text in UNCOMMITTED.items():
                    (hub.root / rel).write_text(text, encoding="utf-8")
            for call in seq.calls:
                ok, text = await _real_call(hub, call)
                kept = found.setdefault(seq.server, {}).setdefault(call.tool, [])
                if not any(e.ok == ok for e in kept):
                    kept.append(ToolExample(arguments=call.arguments, result=text, ok=ok))

    async with anyio.create_task_group() as tg:
        for seq in sequences:
            tg.start_soon(run, seq)
    for tools in found.values():
        for name in tools:
            tools[name].sort(key=lambda e: not e.ok)  # the success first: it gives the result's shape
    return found


class FidelityOptions(BaseModel):
    servers: list[str] = Field(default_factory=lambda: list(REPLAY_SERVERS))
    calls_per_server: int = Field(default=36, ge=1)
    calls_per_sequence: int = Field(default=6, ge=1, description="Calls per generated sequence: a sequence waits "
                                    "for each call in turn, so shorter ones finish sooner on a busy server.")
    rollouts_dir: Path | None = Field(default=Path("runs"), description="Where to read real-execution episodes.")
    rollout_calls_per_server: int = Field(default=20, ge=0)
    variants: list[str] = Field(default_factory=lambda: list(VARIANTS))
    concurrency: int = Field(default=6, ge=1)
    seed: int = 0
    command: str = "synth sim fidelity"


async def run_fidelity_async(cfg: PipelineConfig, endpoints: list[EndpointConfig], opts: FidelityOptions,
                             calls_out: Path | None = None, pool: Any = None) -> FidelityReport:  # fmt: skip
    """Replay, compare and summarise (see the module docstring). ``calls_out``: every comparison as a JSON line,
    written as each sequence ends (a long replay that stops keeps what it did). ``pool``: the simulator's model
    (default: a pool over ``endpoints``, routed by ``llm.roles`` as in rollouts)."""
    unknown = [v for v in opts.variants if v not in VARIANTS]
    if unknown:
        raise FidelityError(f"unknown variants {unknown}; known: {list(VARIANTS)}", hint="drop them")
    started = anyio.current_time()
    entries = replay_entries(opts.servers)
    harvested = {s: harvested_tools(s) for s in opts.servers}
    missing = [s for s, tools in harvested.items() if not tools]
    if missing:
        raise FidelityError(f"no harvested tools for {missing} under {MCP_DIR}",
                            hint="run `synth tools harvest --only SERVER_ID` for them first")  # fmt: skip
    sequences = generated_sequences(harvested, opts.calls_per_server, seed=opts.seed,
                                    calls_per_sequence=opts.calls_per_sequence)
    if opts.rollouts_dir is not None and opts.rollout_calls_per_server and opts.rollouts_dir.exists():
        sequences += rollout_sequences(opts.rollouts_dir, opts.servers, opts.rollout_calls_per_server)
    if not sequences:
        raise FidelityError("nothing to replay")
    examples: dict[str, dict[str, list[ToolExample]]] = {}
    if "examples" in opts.variants:
        # One sequence per server, at least one pass over its tools, drawn with another seed than the replay's.
        most = max(len(tools) for tools in harvested.values())
        calibration = generated_sequences(harvested, most, seed=opts.seed + 1, calls_per_sequence=most)
        examples = await calibrate(calibration, entries, opts.concurrency)
    rollouts = cfg.rollouts.model_copy(update={"error_rate": 0.0, "timeout_rate": 0.0, "empty_rate": 0.0,
                                               "partial_rate": 0.0, "real_exec": False})  # fmt: skip
    if pool is None:
        pool = RoutedPool(LLMPool(endpoints, cfg.llm), role_pools(cfg.llm, endpoints), primary="tool_sim")
    if calls_out is not None:
        calls_out.parent.mkdir(parents=True, exist_ok=True)
        calls_out.write_text("")
    rows: list[CallComparison] = []
    limit = anyio.Semaphore(opts.concurrency)
    schemas = {s: {str(t["name"]): t.get("outputSchema") for t in tools} for s, tools in harvested.items()}
    rng = random.Random(opts.seed)
    order = list(sequences)
    rng.shuffle(order)  # servers interleaved, so a slow one does not hold the others back at the end

    async def run(seq: ReplaySequence) -> None:
        async with limit:
            try:
                done = await replay_sequence(
                    seq, entries[seq.server], pool, rollouts, examples=examples.get(seq.server),
                    variants=opts.variants, seed=opts.seed, output_schemas=schemas[seq.server])  # fmt: skip
            except SynthError as exc:  # a server that would not start: its calls are left out, and said so
                log.warning("sequence %s not replayed: %s", seq.id, exc)
                return
            rows.extend(done)
            if calls_out is not None:
                with calls_out.open("a") as fh:
                    fh.write("".join(r.model_dump_json() + "\n" for r in done))
            log.info("replayed %s: %d of %d sequences", seq.id, len({r.sequence for r in rows}), len(order))

    try:
        model = await pool.model()
        async with anyio.create_task_group() as tg:
            for seq in order:
                tg.start_soon(run, seq)
    finally:
        closing = getattr(pool, "aclose", None)
        if closing is not None:
            await closing()
    return build_report(rows, model=model, endpoints=[e.base_url for e in endpoints], command=opts.command,
                        seconds=anyio.current_time() - started)  # fmt: skip


def build_report(rows: Sequence[CallComparison], *, model: str, endpoints: list[str], command: str,
                 seconds: float = 0.0) -> FidelityReport:  # fmt: skip
    """The report of a set of comparisons (a replay's, or those a calls file kept: ``read_calls``)."""
    variants = list(dict.fromkeys(r.variant for r in rows))
    first = [r for r in rows if variants and r.variant == variants[0]]
    sources: dict[str, int] = {}
    for r in first:
        sources[r.source] = sources.get(r.source, 0) + 1
    return FidelityReport(
        model=model, endpoints=endpoints, machine=machine_info(), command=command,
        servers=sorted({r.server for r in first}), calls=len(first), sources=sources,
        variants={v: summarize([r for r in rows if r.variant == v]) for v in variants}, seconds=round(seconds, 1),
    )  # fmt: skip


def read_calls(path: Path) -> list[CallComparison]:
    """The comparisons a replay wrote (``calls_out``), so a report can be made again without replaying."""
    if not path.exists():
        raise FidelityError(f"no calls file at {path}", hint="run `synth sim fidelity` first; it writes "
                            "runs/<run>/sim_fidelity/calls.jsonl")  # fmt: skip
    return [CallComparison.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def run_fidelity(cfg: PipelineConfig, endpoints: list[EndpointConfig], opts: FidelityOptions,
                 calls_out: Path | None = None, pool: Any = None) -> FidelityReport:  # fmt: skip
    return anyio.run(run_fidelity_async, cfg, endpoints, opts, calls_out, pool)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def render_markdown(report: FidelityReport) -> str:
    """The report for a person: per variant, the overall and per-server agreement, then the worst calls."""
    m = report.machine
    lines = [
        "# Tool simulator fidelity against real MCP servers", "",
        f"- model (tool simulator): `{report.model}`"
        + (f" at {', '.join(report.endpoints)}" if report.endpoints else " (the calls file's replay)"),
        f"- machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('mem_gib')} GiB; date: {m.get('date')}",
        f"- command: `{report.command}`" + (f" ({report.seconds:.0f} s)" if report.seconds else ""),
        f"- {report.calls} calls replayed over {len(report.servers)} real servers; sources: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.sources.items())),
        f"- anchor: {report.anchor}", "",
        "Columns: `agrees` = outcome, key values, schema and state all agree; `outcome` = both succeeded or both "
        "failed; `keys` = mean share of the real result's key values the simulated one has (calls both answered); "
        "`schema` = simulated results that follow the declared output schema where the real one does; `state` = "
        "simulated state equal to the real one after the call (memory, filesystem, git). `calls` counts the "
        "replayed calls; the rates leave out those the model server never answered (below). See "
        "docs/studies/sim-fidelity.md.", "",
    ]  # fmt: skip
    variants = list(report.variants)
    lines += ["| server | calls | " + " | ".join(f"{v}: agrees | {v}: outcome | {v}: keys | {v}: schema | "
                                                f"{v}: state" for v in variants) + " |"]  # fmt: skip
    lines += ["| --- | ---: | " + " | ".join("---: | ---: | ---: | ---: | ---:" for _ in variants) + " |"]
    names = ["overall", *report.servers]
    for name in names:
        cells = []
        calls = -1
        for v in variants:
            a = report.variants[v].overall if name == "overall" else report.variants[v].servers.get(name, Agreement())
            calls = a.calls + a.unmeasured if calls < 0 else calls  # replayed calls, measured or not
            cells.append(f"{_pct(a.agrees)} | {_pct(a.outcome)} | {_pct(a.key_score)} | {_pct(a.schema_valid)} | "
                         f"{_pct(a.state)}")  # fmt: skip
        label = f"**{name}**" if name == "overall" else f"`{name}`"
        lines.append(f"| {label} | {calls} | " + " | ".join(cells) + " |")
    for v in variants:
        result = report.variants[v]
        lines += ["", f"## Worst disagreements ({v})", ""]
        if result.overall.sim_failed:
            lines.append(f"{result.overall.sim_failed} calls got no usable simulator reply (counted as failed).")
            lines.append("")
        if result.overall.unmeasured:
            lines.append(f"{result.overall.unmeasured} calls got no answer from the model server (left out).")
            lines.append("")
        for row in result.worst:
            args = json.dumps(row.arguments, ensure_ascii=False)[:160]
            lines += [f"- `{row.server}` `{row.tool}({args})`: outcome {'agrees' if row.outcome_agrees else 'differs'}"
                      f", keys {_pct(row.key_score)}, state {row.state_agrees}",
                      f"  - real ({'ok' if row.real_ok else 'error'}): `{_one_line(row.real)}`",
                      f"  - simulated ({'ok' if row.sim_ok else 'error'}): `{_one_line(row.sim)}`"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split()).replace("`", "'")
    return flat[:limit] + ("..." if len(flat) > limit else "")


def write_results(report: FidelityReport, json_path: Path) -> Path:
    """Write ``json_path`` and the Markdown beside it (same name, ``.md``); returns the Markdown's path."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(report.model_dump_json(indent=2) + "\n")
    md = json_path.with_suffix(".md")
    md.write_text(render_markdown(report))
    return md
