"""The orchestration's own ceiling: the default pipeline against the instant endpoint, so every CPU second spent is
synth's (and its helpers'), not the model's.

For 1 and 2 workers (Ray shards) on local Ray, each a fresh run of ``pipelines/default.yaml`` (more agents, so the
per-row costs dominate), it measures per stage the CPU time of every process of the pipeline: the driver, the Ray
workers and Ray's own processes, and the children they run (sandboxed Python, real MCP servers); the instant
server's own process is left out. From these:

- ``cpu_ms_per_call``: the pipeline's CPU over the model calls it made (the server's request count);
- ``cpu_ms_per_trajectory`` and ``trajectories_per_hour_per_core`` = 3600 s / CPU seconds per trajectory, with
  the CPU of every stage whose work grows with the run (agents, tasks, rollouts, judge, dataset) charged to the
  trajectories; the tools stage (a fixed number of domain leaves) and Ray's start are fixed costs, reported apart;
- the same split into the Python work inside the workers (``worker_python``) and the processes they start
  (``worker_children``: sandboxed Python, real MCP servers);
- scaling 1 -> 2 workers: trajectories per second of wall time in the rollouts and judge stages;
- a cProfile of the rollouts and judge stages run in-process (the same shard function), top costs by own time.

    python -m synth.bench.scale [--agents 24] [--workers 1 2] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from synth.bench import instant_server
from synth.config import EndpointConfig, PipelineConfig, load_config
from synth.machine import machine_info
from synth.paths import REPO_ROOT
from synth.stages.registry import ORDER

TARGET = 36_000  # trajectories an hour per worker core: 11 cores keep pace with Data Designer's 16 A100s
PER_TRAJECTORY = ("agents", "tasks", "rollouts", "judge", "dataset")  # stages whose work grows with the run


def tree_cpu(exclude: set[int]) -> float:
    """CPU seconds of this process and every descendant (and the children they waited for), minus ``exclude``'s
    subtrees. Ray's processes started by this driver are descendants; reaped children stay in their parent's
    ``children_*`` times, so nothing that ended is lost."""
    me = psutil.Process()
    skip: set[int] = set()
    for pid in exclude:
        try:
            proc = psutil.Process(pid)
            skip |= {pid, *(c.pid for c in proc.children(recursive=True))}
        except psutil.NoSuchProcess:
            pass
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        if proc.pid in skip:
            continue
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _config(run_dir: Path, run: str, port: int, agents: int, workers: int, ray: bool = True,
            extra: list[str] | None = None) -> PipelineConfig:
    endpoints = json.dumps([{"base_url": instant_server.base_url(port), "max_concurrency": 64}])
    return load_config(overrides=[f"runs_dir={run_dir}", f"run={run}", f"agents.count={agents}",
                                  f"ray.workers={workers}", f"ray.enabled={'true' if ray else 'false'}",
                                  f"llm.endpoints={endpoints}", *(extra or [])])


VARIANTS: dict[str, tuple[list[str], dict[str, str] | None]] = {
    "default": ([], None),
    # The same mix with every tool simulated: what the orchestration costs without starting real MCP servers.
    "simulated_tools": (["rollouts.real_exec=false"], None),
    # Real tools, but every episode starts its servers afresh (no shard pool): what the pool saves, in one run.
    "fresh_servers": ([], {"SYNTH_MCP_REUSE": "0"}),
}


def run_once(cfg: PipelineConfig, port: int, server_pid: int) -> dict[str, Any]:
    from synth.stages.dataset_build import build_dataset
    from synth.stages.runner import WORKERS_FILE, run_stage

    endpoints = [EndpointConfig.model_validate(e.model_dump()) for e in cfg.llm.endpoints]
    stages: dict[str, Any] = {}
    total_cpu = total_calls = 0.0
    started = time.monotonic()
    for name in [*ORDER, "dataset"]:
        calls0, cpu0, t0 = instant_server.get_stats(port)["requests"], tree_cpu({server_pid}), time.monotonic()
        if name == "dataset":
            build_dataset(cfg)
            rows = None
        else:
            summary = run_stage(name, cfg, endpoints, progress=False)
            rows = summary.planned
        cpu, wall = tree_cpu({server_pid}) - cpu0, time.monotonic() - t0
        calls = instant_server.get_stats(port)["requests"] - calls0
        shards_file = cfg.run_dir / name / WORKERS_FILE
        shards = json.loads(shards_file.read_text()) if shards_file.exists() else []
        stages[name] = {"rows": rows, "calls": calls, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                        "worker_cpu_s": round(sum(s["cpu_s"] for s in shards), 3),
                        "worker_children_cpu_s": round(sum(s["children_cpu_s"] for s in shards), 3),
                        "shards": len(shards)}
        total_cpu += cpu
        total_calls += calls
    trajectories = stages["rollouts"]["rows"]
    # The tools stage grows a fixed number of domain leaves whatever the run's size: a fixed cost, reported apart.
    scaled = [stages[s] for s in PER_TRAJECTORY]
    cpu = sum(s["cpu_s"] for s in scaled)
    calls = sum(s["calls"] for s in scaled)
    worker_cpu = sum(s["worker_cpu_s"] for s in scaled)
    children = sum(s["worker_children_cpu_s"] for s in scaled)
    fed = ("rollouts", "judge")  # the stages with one row per trajectory: what more workers speed up
    return {
        "workers": cfg.ray.workers, "trajectories": trajectories, "model_calls": calls,
        "calls_per_trajectory": round(calls / trajectories, 2),
        "wall_s": round(time.monotonic() - started, 2), "cpu_s": round(cpu, 2),
        "cpu_ms_per_call": round(1000 * cpu / calls, 2),
        "cpu_ms_per_trajectory": round(1000 * cpu / trajectories, 1),
        "trajectories_per_hour_per_core": round(3600 * trajectories / cpu),
        "worker_python": {
            "cpu_s": round(worker_cpu, 2),
            "cpu_ms_per_call": round(1000 * worker_cpu / calls, 2),
            "cpu_ms_per_trajectory": round(1000 * worker_cpu / trajectories, 1),
            "trajectories_per_hour_per_core": round(3600 * trajectories / worker_cpu),
        },
        "worker_children": {"cpu_s": round(children, 2),
                            "cpu_ms_per_trajectory": round(1000 * children / trajectories, 1)},
        "fixed": {"tools_stage_cpu_s": stages["tools"]["cpu_s"], "all_stages_cpu_s": round(total_cpu, 2),
                  "all_calls": int(total_calls)},
        "rollouts_judge_trajectories_per_s": round(trajectories / sum(stages[s]["wall_s"] for s in fed), 3),
        "stages": stages,
    }


@contextmanager
def _local_ray(cpus: int, env: dict[str, str] | None = None) -> Any:
    """Local Ray, started before anything is measured: its start-up is a once-per-job cost, not a trajectory's.
    ``env``: variables for every worker (and for this process while it runs)."""
    import logging

    import ray

    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": dict(env)} if env else None)  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def profile(cfg: PipelineConfig, source: Path, top: int = 25) -> tuple[str, list[dict[str, Any]], dict[str, float]]:
    """cProfile of rollouts + judge in-process on a copy of ``source``'s upstream stages."""
    from synth.stages.runner import run_stage

    for stage in ("tools", "agents", "tasks"):
        shutil.copytree(source / stage, cfg.run_dir / stage)
    endpoints = list(cfg.llm.endpoints)
    prof = cProfile.Profile(time.process_time)  # CPU time: waiting on the server is not a cost
    prof.enable()
    for name in ("rollouts", "judge"):
        run_stage(name, cfg, endpoints, progress=False)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    table = [{"function": f"{Path(f).name}:{line}:{fn}", "own_s": round(v[2], 3), "cum_s": round(v[3], 3),
              "share_own": round(v[2] / total, 3)} for (f, line, fn), v in rows]
    packages: dict[str, float] = {}
    for (f, _, fn), v in stats.stats.items():  # type: ignore[attr-defined]
        packages[_package(f, fn)] = packages.get(_package(f, fn), 0.0) + v[2]
    by_package = {k: round(v / total, 3) for k, v in sorted(packages.items(), key=lambda kv: -kv[1])[:12]}
    buf.write("\nown time by package (share of the profile):\n")
    buf.writelines(f"  {k:<28} {v:6.1%}\n" for k, v in by_package.items())
    return buf.getvalue(), table, by_package


def _package(filename: str, function: str) -> str:
    """Who owns a profiled function: a site-packages distribution, a synth module, the stdlib, or a builtin."""
    if filename == "~":  # builtins: name them by their module (_socket, select, pydantic_core, builtins ...)
        found = re.search(r"of '([\w.]+)'", function) or re.search(r"built-in method ([\w.]+)", function)
        return "builtin:" + (found.group(1).split(".")[0] if found else "other")
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    if "synth" in parts:
        return ".".join(parts[parts.index("synth"):parts.index("synth") + 2]).removesuffix(".py")
    return "stdlib:" + Path(filename).stem


async def _token_rate(url: str, reqs: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    """Raw completion-token rate of the recorded pipeline mix straight to the server (no synth in between)."""
    from openai import AsyncOpenAI

    from synth.bench.serving import replay_all

    client = AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=1800)
    try:
        model = (await client.models.list()).data[0].id
        tokens, wall = await replay_all(client, model, reqs, concurrency)
    finally:
        await client.close()
    return {"concurrency": concurrency, "requests": len(reqs), "completion_tokens": tokens,
            "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 1)}


def real_server(url: str, agents: int, concurrencies: list[int], per_level: int) -> dict[str, Any]:
    """Trajectories an hour of the default mix on a real server at the concurrency that maximises its token rate.

    Kept short (the server may be shared): a few mix requests per concurrency level, then rollouts and judge of
    ``2 * agents`` tasks (one episode each) at the best level. The tasks come from the instant endpoint: what is
    measured is the episodes' and the judge's demand on the real server.
    """
    from synth.bench.serving import MIX, load_mix
    from synth.stages.runner import run_stage

    # The same requests at every level (the first n of one shuffle), at least two per slot so the level is real.
    sweep = [asyncio.run(_token_rate(url, load_mix(MIX, max(per_level, 2 * c)), c)) for c in concurrencies]
    best = max(sweep, key=lambda r: r["tokens_per_s"])
    work = Path(tempfile.mkdtemp(prefix="synth-scale-real-"))
    port = _free_port()
    base = ["rollouts.samples=1", f"agents.count={agents}", "ray.enabled=false"]
    try:
        with instant_server.running(port):
            cfg = load_config(overrides=[f"runs_dir={work}", "run=real", *base, "llm.endpoints=" + json.dumps(
                [{"base_url": instant_server.base_url(port), "max_concurrency": 64}])])
            for name in ("tools", "agents", "tasks"):
                run_stage(name, cfg, list(cfg.llm.endpoints), progress=False)
        real = [EndpointConfig(base_url=url, max_concurrency=best["concurrency"])]
        cfg = cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"endpoints": real})})
        stages = {}
        for name in ("rollouts", "judge"):
            summary = run_stage(name, cfg, real, progress=False)
            total = summary.usage.total()
            stages[name] = {"rows": summary.planned, "ok": summary.ok, "wall_s": summary.wall_s,
                            "calls": total.calls, "completion_tokens": total.completion_tokens}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall = sum(v["wall_s"] for v in stages.values())
    trajectories = stages["rollouts"]["rows"]
    tokens = sum(v["completion_tokens"] for v in stages.values())
    return {"server": url, "sweep": sweep, "best_concurrency": best["concurrency"],
            "raw_tokens_per_s_at_best": best["tokens_per_s"], "trajectories": trajectories, "stages": stages,
            "pipeline_tokens_per_s": round(tokens / wall, 1),
            "trajectories_per_hour": round(3600 * trajectories / wall),
            "note": "rollouts + judge only (tasks from the instant endpoint); the server was shared with other "
                    "work on the machine, so its rates are a floor"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 96 agents: a shard then runs more real-tool episodes than it has in flight (64), as any real run does; at 24
    # every one of them was in flight at once, so no server could be kept for a next episode.
    parser.add_argument("--agents", type=int, default=96, help="agents.count (tasks = 2 per agent).")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--port", type=int, default=0, help="Instant server port (0: a free one).")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--real-server", default=None, metavar="URL",
                        help="Instead: trajectories/hour on this real server (e.g. the embedded one) at the "
                        "concurrency that maximises its token rate -> scale_real.json.")
    parser.add_argument("--real-agents", type=int, default=4)
    parser.add_argument("--real-concurrency", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--real-requests", type=int, default=16,
                        help="Mix requests per concurrency level (at least twice the concurrency).")
    args = parser.parse_args()
    if args.real_server:
        real = {"benchmark": "real_server_throughput", "machine": machine_info(),
                **real_server(args.real_server, args.real_agents, args.real_concurrency, args.real_requests),
                "load_avg_1m": round(os.getloadavg()[0], 2)}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale_real.json").write_text(json.dumps(real, indent=2) + "\n")
        if (args.out / "scale.json").exists():
            (args.out / "scale.md").write_text(to_markdown(json.loads((args.out / "scale.json").read_text()), real))
        print(json.dumps({k: v for k, v in real.items() if k not in ("stages", "machine")}))
        return
    port = args.port or _free_port()
    work = Path(tempfile.mkdtemp(prefix="synth-scale-"))
    results: list[dict[str, Any]] = []
    variants: dict[str, dict[str, Any]] = {}
    load = [os.getloadavg()[0]]
    with instant_server.running(port) as server:
        with _local_ray(max(args.workers)):
            for workers in args.workers:
                cfg = _config(work, f"w{workers}", port, args.agents, workers)
                results.append(run_once(cfg, port, server.pid))
                load.append(os.getloadavg()[0])
                print(json.dumps({k: v for k, v in results[-1].items() if k != "stages"}))
            variants["default"] = results[0]
            for name, (sets, env) in VARIANTS.items():
                if name != "default" and env is None:
                    variants[name] = run_once(_config(work, name, port, args.agents, 1, extra=sets), port,
                                              server.pid)  # fmt: skip
                    print(name, json.dumps({k: v for k, v in variants[name].items() if k != "stages"}))
        for name, (sets, env) in VARIANTS.items():
            if env is not None:  # its own Ray, so that every worker sees the variables
                with _local_ray(1, env):
                    variants[name] = run_once(_config(work, name, port, args.agents, 1, extra=sets), port,
                                              server.pid)  # fmt: skip
                print(name, json.dumps({k: v for k, v in variants[name].items() if k != "stages"}))
        profile_text, top, by_package = "", [], {}
        if not args.no_profile:
            cfg = _config(work, "profile", port, args.agents, 1, ray=False)
            profile_text, top, by_package = profile(cfg, work / f"w{args.workers[0]}")
    shutil.rmtree(work, ignore_errors=True)
    base = results[0]
    out = {
        "benchmark": "orchestration_ceiling", "machine": machine_info(), "endpoint": "synth.bench.instant_server",
        "config": "pipelines/default.yaml", "agents": args.agents, "target_trajectories_per_hour_per_core": TARGET,
        "trajectories_per_hour_per_core": base["trajectories_per_hour_per_core"],
        "cpu_ms_per_call": base["cpu_ms_per_call"], "workers": results,
        "variants": {k: {m: v[m] for m in ("trajectories", "model_calls", "cpu_ms_per_call", "cpu_ms_per_trajectory",
                                           "trajectories_per_hour_per_core", "worker_python", "worker_children")}
                     for k, v in variants.items()},
        "scaling_2_over_1": (round(results[1]["rollouts_judge_trajectories_per_s"]
                                   / base["rollouts_judge_trajectories_per_s"], 2) if len(results) > 1 else None),
        "profile_top": top, "profile_by_package": by_package,
        "load_avg_1m": [round(x, 2) for x in load],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(out, indent=2) + "\n")
    if profile_text:
        (args.out / "scale_profile.txt").write_text(profile_text)
    real_file = args.out / "scale_real.json"
    real = json.loads(real_file.read_text()) if real_file.exists() else None
    (args.out / "scale.md").write_text(to_markdown(out, real))
    print(f"{out['trajectories_per_hour_per_core']} trajectories/hour/core (target {TARGET}), "
          f"{out['cpu_ms_per_call']} CPU ms per call -> {args.out / 'scale.json'}")


def to_markdown(result: dict[str, Any], real: dict[str, Any] | None = None) -> str:
    """``bench/results/scale.md``: the figures of ``scale.json`` (and ``scale_real.json``) for people."""
    m = result["machine"]
    lines = [
        "# The orchestration's ceiling (`make bench-scale`)", "",
        f"Measured {m['date']} on {m['host']} ({m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB), the machine "
        f"shared with other work (1-minute load average {', '.join(map(str, result['load_avg_1m']))} during "
        "the runs): the default pipeline (`pipelines/default.yaml`, "
        f"agents.count={result['agents']}) against `synth.bench.instant_server`, an OpenAI-compatible server that "
        "answers at once with replies valid for each request's schema or tools. CPU is every process of the "
        "pipeline (driver, Ray workers, Ray's own processes, the sandboxes and MCP servers they start), not the "
        "server's. Per trajectory: the stages that grow with the run (agents, tasks, rollouts, judge, dataset). "
        "Real MCP servers are kept across a shard's episodes (`synth.sim.server_pool`: the root emptied between "
        "episodes, a server that may keep state in its process started afresh); `fresh_servers` is the same run "
        "with every episode starting its own servers (`SYNTH_MCP_REUSE=0`), `simulated_tools` the same mix with "
        "every tool simulated.", "",
        "| run | trajectories | model calls | CPU ms / call | CPU ms / trajectory | trajectories / h / core | "
        "of which worker Python ms / traj | child processes ms / traj |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = [(f"default, {r['workers']} worker(s)", r) for r in result["workers"]]
    rows += [(f"{k}, 1 worker", v) for k, v in result["variants"].items() if k != "default"]
    for name, r in rows:
        lines.append(f"| {name} | {r['trajectories']} | {r.get('model_calls', '')} | {r['cpu_ms_per_call']} | "
                     f"{r['cpu_ms_per_trajectory']} | {r['trajectories_per_hour_per_core']:,} | "
                     f"{r['worker_python']['cpu_ms_per_trajectory']} | "
                     f"{r['worker_children']['cpu_ms_per_trajectory']} |")
    lines += ["", f"Target: {result['target_trajectories_per_hour_per_core']:,} trajectories an hour per core. "
              f"Scaling 1 -> 2 workers (rollouts + judge, trajectories per second of wall time): "
              f"x{result['scaling_2_over_1']} on this {m['cores']}-core machine.", ""]
    if result.get("profile_by_package"):
        lines += ["Top costs per trajectory, default mix, 1 worker (child processes measured; the workers' Python "
                  "split by the profile's shares):", ""]
        lines += [f"{i}. {name}: {ms:.1f} ms" for i, (name, ms) in enumerate(top_costs(result), 1)][:3]
        lines += [""]
        lines += ["Where the workers' Python time goes (cProfile in CPU time, rollouts + judge in-process, own "
                  "time by package; `scale_profile.txt` has the functions):", ""]
        lines += [f"- {k}: {v:.1%}" for k, v in list(result["profile_by_package"].items())[:8]]
        lines.append("")
    if real:
        lines += ["## On the real embedded server", "",
                  f"{real['server']}, {real['machine']['date']} (shared with other helpers' tests; load average "
                  f"{real['load_avg_1m']}): raw completion-token rate of the recorded pipeline mix "
                  "(`bench/requests/default_mix.jsonl`) by concurrency:", "",
                  "| concurrency | requests | tokens/s |", "| --- | --- | --- |"]
        lines += [f"| {r['concurrency']} | {r['requests']} | {r['tokens_per_s']} |" for r in real["sweep"]]
        earlier = real.get("sweep_to_choose_concurrency")
        if earlier:  # a sweep from another run, kept beside this one's rate (not compared with it)
            lines += ["", f"Sweep that chose the level ({earlier['date']}, load average {earlier['load_avg_1m']}; "
                      f"{earlier['note']}):", "", "| concurrency | requests | tokens/s |", "| --- | --- | --- |"]
            lines += [f"| {r['concurrency']} | {r['requests']} | {r['tokens_per_s']} |" for r in earlier["sweep"]]
        stages = real.get("stages", {})
        if stages:
            lines += ["", "| stage | rows | calls | completion tokens | wall s |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| {k} | {v['rows']} | {v['calls']} | {v['completion_tokens']} | {v['wall_s']} |"
                      for k, v in stages.items()]
        lines += ["", f"At the best concurrency ({real['best_concurrency']}): rollouts + judge of "
                  f"{real['trajectories']} trajectories ran at {real['pipeline_tokens_per_s']} completion tokens/s "
                  f"(raw mix at that concurrency: {real['raw_tokens_per_s_at_best']} tokens/s), "
                  f"**{real['trajectories_per_hour']:,} trajectories an hour**. {real['note']}.", ""]
    return "\n".join(lines)


COST_GROUPS = {
    "HTTP client stack (httpx, httpcore, h11, anyio, sockets)": ("httpx2", "httpcore2", "h11", "anyio",
                                                                 "builtin:_socket", "builtin:select", "httpx",
                                                                 "httpcore"),
    "openai SDK (request options, response models, typing checks)": ("openai", "stdlib:typing",
                                                                     "typing_extensions"),
    "pydantic validation": ("pydantic", "builtin:pydantic_core"),
}


def top_costs(result: dict[str, Any]) -> list[tuple[str, float]]:
    """The default run's costs per trajectory, largest first: the child processes, then groups of the workers'
    Python time (the profile's package shares applied to the measured worker CPU)."""
    run = result["workers"][0]
    python_ms = run["worker_python"]["cpu_ms_per_trajectory"]
    shares = result.get("profile_by_package") or {}
    costs = [("processes the workers start (confined real MCP servers, sandboxed Python)",
              run["worker_children"]["cpu_ms_per_trajectory"])]
    costs += [(name, python_ms * sum(shares.get(p, 0.0) for p in members)) for name, members in COST_GROUPS.items()]
    return sorted(costs, key=lambda c: -c[1])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
