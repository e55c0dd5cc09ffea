"""Synthetic tools at K2's scale: `synth tools grow` measured end to end, and the agents stage drawing from it.

Three parts, each a subcommand that updates its own section of ``synthetic_scale.json`` (and rewrites the .md):

- ``instant``: the mechanics at full scale. `synth tools grow --target N` (on Ray) against the instant endpoint in
  its varied mode (distinct, schema-valid tools), killed (SIGKILL) part way and run again to the end: wall
  time, peak memory of the process tree, rounds, duplicates dropped by kind, schema rejects, tokens; the
  endpoint's request counts show what the resumed run sent again. Then the registry's own peak memory, and the
  deduplication's time at several sizes (it must grow linearly).
- ``agents``: the agents stage (plan: one toolset per agent; rows: one model call per agent) drawing from
  registries of several sizes cut from the grown one, a fresh process per size: wall time, plan time and peak
  memory, against the instant endpoint.
- ``content``: what a real model's tools look like, from a grow run's rows (finished or not): duplicate rate by
  kind, schema rejects, domain coverage, tokens, and 20 random tools rendered for a person.

    python -m synth.bench.synthetic_scale instant --target 20000
    python -m synth.bench.synthetic_scale agents --sizes 1000 5000 20000
    python -m synth.bench.synthetic_scale content --run-dir runs/NAME
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from synth.bench import instant_server
from synth.machine import machine_info
from synth.paths import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
NAME = "synthetic_scale"
RUNS = REPO_ROOT / "runs" / "bench-synthetic-scale"
GROW_RUN = "grow"
SIZES = (1000, 5000, 20000)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _watch(cmd: list[str], stop_when: Any = None, log: Path | None = None) -> dict[str, Any]:
    """Run ``cmd``, sampling its process tree's memory; ``stop_when()`` true: kill it."""
    started = time.monotonic()
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    # Ray kills workers when the node's memory passes 95%, and on a shared machine others' processes fill it: the
    # bench lets this run go to 98% instead of measuring someone else's memory as a lost shard.
    env = dict(os.environ)
    env.setdefault("RAY_memory_usage_threshold", "0.98")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    interrupted = False
    try:
        while proc.poll() is None:
            try:
                peak = max(peak, _tree_rss(ps))
            except psutil.NoSuchProcess:
                break
            if stop_when is not None and not interrupted and stop_when():
                # kill -9 of the driver alone, as a crash would: its Ray workers see it gone and end themselves
                # (synth.stages.lifeline); Ray's own processes left in its session go a little later.
                proc.kill()
                interrupted = True
                proc.wait()
                time.sleep(5)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.5)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        elif not interrupted:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind in its session
        if log is not None:
            out.close()  # type: ignore[union-attr]
    return {"returncode": proc.returncode, "wall_s": round(time.monotonic() - started, 2),
            "peak_tree_rss_mb": round(peak / 2**20, 1), "interrupted": interrupted}


def _journal_rows(stage_dir: Path) -> int:
    from synth.stages.store import StageStore

    return len(StageStore(stage_dir).done_ids())


def run_instant(target: int, workers: int, kill_at: float, generations: int, per_generation: int,
                runs: Path) -> dict[str, Any]:
    run_dir = runs / GROW_RUN
    shutil.rmtree(run_dir, ignore_errors=True)
    runs.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    endpoint = json.dumps([{"base_url": instant_server.base_url(port), "max_concurrency": 64}])
    cmd = [sys.executable, "-m", "synth", "tools", "grow", "--target", str(target), "--run", GROW_RUN,
           "--set", f"runs_dir={runs}", "--set", f"llm.endpoints={endpoint}", "--set", f"ray.workers={workers}",
           "--set", f"tools.evolve_generations={generations}", "--set", f"tools.tools_per_leaf={per_generation}"]
    stage_dir = run_dir / "tools"
    first_round_items = None
    with instant_server.running(port, varied=True):
        from synth.tools.domains import load_categories, seed_leaves
        from synth.tools.grow import GrowState, slots_for

        leaves = len(seed_leaves(load_categories()))
        first_round_items = slots_for(GrowState(), target, leaves, generations * per_generation) * leaves
        kill_rows = int(first_round_items * kill_at)
        log = runs / "grow.log"
        first = _watch(cmd, stop_when=lambda: _journal_rows(stage_dir) >= kill_rows, log=log)
        if not first["interrupted"]:
            raise RuntimeError(f"the first run ended before it could be killed (exit {first['returncode']}): see {log}")
        rows_before = _journal_rows(stage_dir)
        calls_before = instant_server.get_stats(port)
        second = _watch(cmd, log=log)
        calls = instant_server.get_stats(port)
    if second["returncode"] != 0:
        raise RuntimeError(f"the resumed grow failed (exit {second['returncode']}): see {log}")
    summary = json.loads((stage_dir / "summary.json").read_text())
    state = json.loads((stage_dir / "grow.json").read_text())
    repeated = {k: n for k, n in calls["by_digest"].items() if n > 1}
    registry = stage_dir / "synthetic.jsonl"
    return {
        "command": " ".join(["synth", *cmd[3:]]).replace(endpoint, "'[instant endpoint, varied]'")
        .replace(f"{REPO_ROOT}/", ""),
        "target": target, "ray_workers": workers, "generations": generations, "per_generation": per_generation,
        "synthetic_tools": summary["extra"]["synthetic_tools"], "generated": summary["extra"]["synthetic_generated"],
        "real_tools": summary["extra"]["real_tools"], "levels": {k: summary["extra"]["grow"][k] for k in
                                                               ("categories", "domains", "subdomains", "tools")},
        "dropped": summary["extra"]["grow"]["dropped"],
        "duplicate_of_real": summary["extra"]["grow"]["duplicate_of_real"],
        "schema_rejects": summary["extra"]["grow"]["schema_rejects"], "rounds": state["rounds"],
        "items": summary["planned"], "failed_items": summary["failed"],
        "tokens": summary["usage"]["generator"], "kill": {
            "interrupted_after_rows": rows_before, "first_run": first, "requests_before_kill": calls_before["requests"],
        },
        "resumed_run": second,
        "wall_s_total": round(first["wall_s"] + second["wall_s"], 2),
        "requests": calls["requests"], "distinct_requests": len(calls["by_digest"]),
        "requests_sent_again": sum(n - 1 for n in repeated.values()),
        "registry_file_mb": round(registry.stat().st_size / 2**20, 1),
        "registry_memory": _in_fresh_process("memory", str(registry)),
    }


def _in_fresh_process(what: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "synth.bench.synthetic_scale", f"_{what}", *args], cwd=REPO_ROOT,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{what} probe failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe_memory(registry: str) -> dict[str, Any]:
    """Peak memory of the registry (real + synthetic) loaded into a fresh process, and the dedup's time by size."""
    from synth.tools.grow import select
    from synth.tools.registry import ToolRegistry, read_specs

    specs = read_specs(Path(registry))
    rss0 = psutil.Process().memory_info().rss
    t0 = time.monotonic()
    reg = ToolRegistry.load(extra=specs)
    load_s = time.monotonic() - t0
    rss = psutil.Process().memory_info().rss - rss0
    del reg
    tracemalloc.start()  # a second load, traced (tracing slows it several times): the heap it needs at its peak
    reg = ToolRegistry.load(extra=specs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    real = [s for s in reg if s.provenance.source != "synthetic"]
    dedup: dict[str, float] = {}
    for n in sorted({min(n, len(specs)) for n in SIZES}):
        t0 = time.monotonic()
        select(real, specs[:n])
        dedup[str(n)] = round(time.monotonic() - t0, 2)
    return {"tools": len(reg), "synthetic": len(specs), "load_s": round(load_s, 2),
            "python_heap_peak_mb": round(peak / 2**20, 1),
            "rss_growth_mb": round(rss / 2**20, 1),
            "dedup_s_by_synthetic_tools": dedup, "dedup_real_tools": len(real)}


def run_agents(sizes: list[int], agents: int, runs: Path, repeats: int = 2) -> list[dict[str, Any]]:
    """Each size ``repeats`` times, the sizes interleaved: on a shared machine a burst of load elsewhere hits one
    measurement, so each size reports its fastest (and every time it took)."""
    source = runs / GROW_RUN / "tools"
    if not (source / "synthetic.jsonl").exists():
        raise FileNotFoundError(f"no grown registry in {source}: run the `instant` part first")
    taken: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
    port = _free_port()
    with instant_server.running(port, varied=True):
        for _ in range(repeats):
            for size in sizes:
                taken[size].append(_in_fresh_process("agents", str(source), str(size), str(agents), str(port),
                                                     str(runs)))
    out = []
    for tries in taken.values():
        best = min(tries, key=lambda t: t["stage_wall_s"])
        out.append({**best, "plan_s": min(t["plan_s"] for t in tries),
                    "sampling_ms_per_agent": min(t["sampling_ms_per_agent"] for t in tries),
                    "stage_wall_s_all": [t["stage_wall_s"] for t in tries]})
    return out


def probe_agents(source: str, size: str, agents: str, port: str, runs: str) -> dict[str, Any]:
    """The agents stage in this process (no Ray, so its memory is this process's) over ``size`` synthetic tools."""
    from synth.config import load_config
    from synth.stages.agents import AgentsStage
    from synth.stages.base import StageContext
    from synth.stages.runner import run_stage

    name = f"agents-{size}"
    run_dir = Path(runs) / name
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(source, run_dir / "tools", ignore=shutil.ignore_patterns("journal", "synthetic.jsonl"))
    with (Path(source) / "synthetic.jsonl").open() as src, (run_dir / "tools" / "synthetic.jsonl").open("w") as dst:
        for i, line in enumerate(src):
            if i >= int(size):
                break
            dst.write(line)
    endpoint = json.dumps([{"base_url": instant_server.base_url(int(port)), "max_concurrency": 64}])
    cfg = load_config(overrides=[f"runs_dir={runs}", f"run={name}", f"agents.count={agents}", "ray.enabled=false",
                                 f"llm.endpoints={endpoint}"])
    stage = AgentsStage()
    ctx = StageContext(config=cfg, stage=stage)
    t0 = time.monotonic()
    stage.plan(ctx)  # registry load + one toolset per agent
    plan_s = time.monotonic() - t0
    registry_tools = len(ctx.cache["registry"])
    t0 = time.monotonic()
    AgentsStage.plan(stage, ctx)  # again, the registry cached: the sampling alone
    sample_s = time.monotonic() - t0
    summary = run_stage("agents", cfg, list(cfg.llm.endpoints), progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"synthetic_tools": int(size), "registry_tools": registry_tools, "agents": int(agents),
            "plan_s": round(plan_s, 2), "sampling_s": round(sample_s, 3),
            "sampling_ms_per_agent": round(1000 * sample_s / int(agents), 3), "stage_wall_s": summary.wall_s,
            "ok": summary.ok, "peak_rss_mb": round(peak, 1)}


def run_content(run_dir: Path, shown: int = 20, seed: int = 0) -> dict[str, Any]:
    """What a grow run's rows hold (finished or not), checked as the stage's finish checks them."""
    from synth.schemas.records import ToolBatchRecord
    from synth.schemas.usage import UsageByRole
    from synth.stages.store import StageStore
    from synth.tools.domains import load_categories, seed_leaves
    from synth.tools.grow import select, stats
    from synth.tools.registry import ToolRegistry

    rows = StageStore(run_dir / "tools").read(ToolBatchRecord)
    ok = [r for r in rows if r.error is None]
    usage = UsageByRole()
    for r in rows:
        usage.merge(r.usage)
    real = ToolRegistry.load().specs
    grown = [t for r in sorted(ok, key=lambda r: r.id) for t in r.tools]
    selection = select(real, grown)
    st = stats(selection, {s.id for s in real})
    seeds = {tuple(leaf) for leaf in seed_leaves(load_categories())}
    covered = {tuple(t.provenance.domain_path[:2]) for t in selection.kept}
    model = next((r.model for r in ok if r.model), None)
    picked = random.Random(seed).sample(selection.kept, min(shown, len(selection.kept)))
    return {
        "run_dir": str(run_dir.relative_to(REPO_ROOT) if run_dir.is_relative_to(REPO_ROOT) else run_dir),
        "model": model, "items": len(rows), "failed_items": len(rows) - len(ok),
        "item_errors": dict(Counter(r.error.kind for r in rows if r.error)),
        "generated": st.generated, "kept": st.tools,
        "duplicate_rate": round(sum(st.dropped.values()) / max(1, st.generated), 3), "dropped": st.dropped,
        "duplicate_of_real": st.duplicate_of_real,
        "schema_rejects": st.schema_rejects, "schema_reject_rate": round(st.schema_rejects / max(1, st.generated), 3),
        "reject_reasons": st.reject_reasons,
        "levels": {"categories": st.categories, "domains": st.domains, "subdomains": st.subdomains, "tools": st.tools},
        "seed_domains_covered": f"{len(covered & seeds)}/{len(seeds)}", "per_category": st.per_category,
        "distinct_subdomain_names": len({t.provenance.domain_path[2] for t in selection.kept}),
        "tokens": usage.total().model_dump(),
        "sample": [_render(t) for t in picked],
    }


def _render(spec: Any) -> str:
    params = spec.function.parameters.get("properties", {})
    required = set(spec.function.parameters.get("required", []))
    lines = [f"**{spec.function.name}** ({' > '.join(spec.provenance.domain_path)}): {spec.function.description}"]
    for name, p in params.items():
        kind = p.get("type", "?") + (f" of {p['items'].get('type', '?')}" if p.get("type") == "array" else "")
        extra = f", one of {p['enum']}" if p.get("enum") else f", format {p['format']}" if p.get("format") else ""
        lines.append(f"  - `{name}` ({kind}{', required' if name in required else ''}{extra}): "
                     f"{p.get('description', '')}")
    lines.append(f"  - errors: {'; '.join(spec.errors) or 'none'}")
    return "\n".join(lines)


def _update(section: str, value: Any, out: Path) -> dict[str, Any]:
    path = out / f"{NAME}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[section] = value
    data.setdefault("machines", {})[section] = machine_info()
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    (out / f"{NAME}.md").write_text(render(data))
    return data


def render(data: dict[str, Any]) -> str:
    lines = ["# Synthetic tools at scale", "",
             "Made by `python -m synth.bench.synthetic_scale` (synth/bench/synthetic_scale.py); "
             "docs/studies/synthetic-scale.md says how to read it.", ""]
    if inst := data.get("instant"):
        lines += ["## Mechanics at full scale (instant endpoint, varied tools)", "",
                  f"`{inst['command']}`, " + (
                      f"killed (SIGKILL) after {inst['kill']['interrupted_after_rows']} items, then run again to the "
                      "end." if inst["kill"]["first_run"]["interrupted"] else
                      "which ran to the end before the kill came (the second run only checked and deduplicated "
                      "again)."), "",
                  "| measure | value |", "| --- | --- |",
                  f"| synthetic tools kept | {inst['synthetic_tools']} (target {inst['target']}) |",
                  f"| generated | {inst['generated']} |",
                  f"| per level | {inst['levels']} |",
                  f"| duplicates dropped | {inst['dropped']} (of a real tool: {inst['duplicate_of_real']}) |",
                  f"| schema rejects | {inst['schema_rejects']} |",
                  f"| items (subdomains) / failed | {inst['items']} / {inst['failed_items']} |",
                  f"| rounds (slots per leaf, rows, kept) | {[tuple(r.values()) for r in inst['rounds']]} |",
                  f"| tokens (prompt / completion) | {inst['tokens']['prompt_tokens']} / "
                  f"{inst['tokens']['completion_tokens']} |",
                  f"| wall time: first run + second run | {inst['kill']['first_run']['wall_s']} s + "
                  f"{inst['resumed_run']['wall_s']} s |",
                  f"| peak memory of the process tree (driver + Ray) | {inst['kill']['first_run']['peak_tree_rss_mb']}"
                  f" / {inst['resumed_run']['peak_tree_rss_mb']} MB |",
                  f"| requests / distinct / sent again by the second run | {inst['requests']} / "
                  f"{inst['distinct_requests']} / {inst['requests_sent_again']} |",
                  f"| registry file | {inst['registry_file_mb']} MB |",
                  f"| registry in memory ({inst['registry_memory']['tools']} tools) | Python heap peak "
                  f"{inst['registry_memory']['python_heap_peak_mb']} MB, RSS "
                  f"+{inst['registry_memory']['rss_growth_mb']} MB, load {inst['registry_memory']['load_s']} s |",
                  f"| dedup time by synthetic tools (against {inst['registry_memory']['dedup_real_tools']} real) | "
                  f"{inst['registry_memory']['dedup_s_by_synthetic_tools']} s |", ""]
    if agents := data.get("agents"):
        lines += ["## The agents stage drawing from registries of several sizes (instant endpoint)", "",
                  "Fastest of the repeats (every stage time in brackets).", "",
                  "| synthetic tools | registry | agents | plan (load + sample) s | sampling ms/agent | stage wall s "
                  "| peak RSS MB |", "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {a['synthetic_tools']} | {a['registry_tools']} | {a['agents']} | {a['plan_s']} | "
                  f"{a['sampling_ms_per_agent']} | {a['stage_wall_s']} {a.get('stage_wall_s_all', '')} | "
                  f"{a['peak_rss_mb']} |" for a in agents]
        lines.append("")
    if content := data.get("content"):
        lines += [f"## Content: the embedded model ({content['model']})", "",
                  *([content["note"], ""] if content.get("note") else []),
                  "| measure | value |", "| --- | --- |",
                  f"| items (subdomains) / failed | {content['items']} / {content['failed_items']} "
                  f"{content['item_errors']} |",
                  f"| generated / kept | {content['generated']} / {content['kept']} |",
                  f"| duplicate rate | {content['duplicate_rate']} {content['dropped']} (of a real tool: "
                  f"{content['duplicate_of_real']}) |",
                  f"| schema rejects | {content['schema_rejects']} ({content['schema_reject_rate']}) "
                  f"{content['reject_reasons']} |",
                  f"| per level | {content['levels']} |",
                  f"| seed domains covered | {content['seed_domains_covered']} |",
                  f"| distinct subdomain names | {content['distinct_subdomain_names']} |",
                  f"| tokens | {content['tokens']} |", "",
                  "### 20 random kept tools", ""]
        lines += [f"{i}. {text}" for i, text in enumerate(content["sample"], 1)]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    inst = sub.add_parser("instant")
    inst.add_argument("--target", type=int, default=20_000)
    inst.add_argument("--workers", type=int, default=2)
    inst.add_argument("--kill-at", type=float, default=0.4, help="Interrupt after this share of the first round.")
    inst.add_argument("--generations", type=int, default=3)
    inst.add_argument("--per-generation", type=int, default=4)
    ag = sub.add_parser("agents")
    ag.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ag.add_argument("--agents", type=int, default=200)
    ag.add_argument("--repeats", type=int, default=2)
    co = sub.add_parser("content")
    co.add_argument("--run-dir", type=Path, required=True)
    co.add_argument("--note", default="", help="A line on how the run went (its target, why it stopped).")
    for p in (inst, ag, co):
        p.add_argument("--out", type=Path, default=RESULTS)
        p.add_argument("--runs", type=Path, default=RUNS)
    sub.add_parser("_memory").add_argument("registry")
    probe = sub.add_parser("_agents")
    for name in ("source", "size", "agents", "port", "runs"):
        probe.add_argument(name)
    args = parser.parse_args()
    if args.part == "_memory":
        print(json.dumps(probe_memory(args.registry)))
        return
    if args.part == "_agents":
        print(json.dumps(probe_agents(args.source, args.size, args.agents, args.port, args.runs)))
        return
    if args.part == "instant":
        _update("instant", run_instant(args.target, args.workers, args.kill_at, args.generations,
                                       args.per_generation, args.runs.resolve()), args.out)
    elif args.part == "agents":
        _update("agents", run_agents(args.sizes, args.agents, args.runs.resolve(), args.repeats), args.out)
    else:
        _update("content", {**run_content(args.run_dir.resolve()), "note": args.note}, args.out)
    print(f"written to {args.out}/{NAME}.json and .md")


if __name__ == "__main__":
    main()
