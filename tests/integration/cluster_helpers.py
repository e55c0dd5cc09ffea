"""A private Ray cluster on loopback for the cluster tests, and the pipeline CLI run against it.

Everything Ray writes goes under a private ``RAY_TMPDIR`` (its own sessions and ``ray_current_cluster`` file), so a
plain ``ray.init()`` elsewhere on the machine never joins this cluster; every port is chosen free; only the
processes this cluster started are stopped (a node is killed by its raylet's PID, never ``ray stop``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SMALL = ["agents.count=4", "tasks.per_agent=2", "tools.evolve_leaves=1", "tools.evolve_generations=1",
         "tools.tools_per_leaf=2", "rollouts.max_turns=2", "rollouts.max_steps=2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_tmpdir() -> Iterator[str]:
    # Unix socket paths are limited to ~107 bytes: a short directory right under /tmp.
    path = tempfile.mkdtemp(prefix="srt", dir="/tmp")
    os.makedirs(os.path.join(path, "ray"))  # where Ray keeps ray_current_cluster under RAY_TMPDIR
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = path
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if old is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old


@contextlib.contextmanager
def local_cluster(worker_nodes: int = 2, head_cpus: int = 0, dashboard: bool = False) -> Iterator[Any]:
    """A head (``head_cpus`` CPUs: 0 keeps shards off it, as on a real cluster's head) and ``worker_nodes`` nodes
    of one CPU each, all on this machine with their own ports, in this process's children. ``dashboard``: the
    head serves the job API (``ray job submit``) at ``cluster.webui_url``."""
    from ray.cluster_utils import Cluster

    # The node IP Ray picks (not 127.0.0.1): a driver given 127.0.0.1 resolves it to that IP anyway.
    common = {"object_store_memory": 80 * 2**20, "include_dashboard": False}
    head = {**common, "include_dashboard": dashboard, **({"dashboard_port": free_port()} if dashboard else {})}
    with ray_tmpdir() as tmp:
        cluster = Cluster(initialize_head=True, head_node_args={
            **head, "num_cpus": head_cpus, "gcs_server_port": free_port(), "temp_dir": os.path.join(tmp, "ray"),
            "dashboard_agent_listen_port": free_port(), "runtime_env_agent_port": free_port(),
            "metrics_export_port": free_port()})
        try:
            for _ in range(worker_nodes):
                cluster.add_node(**common, num_cpus=1, dashboard_agent_listen_port=free_port(),
                                 runtime_env_agent_port=free_port(), metrics_export_port=free_port())
            cluster.wait_for_nodes()
            yield cluster
        finally:
            with contextlib.suppress(Exception):
                cluster.shutdown()


def raylet_pid(node: Any) -> int:
    return node.all_processes["raylet"][0].process.pid


def synth_cmd(runs: Path, run: str, *extra: str, sets: list[str] | None = None) -> list[str]:
    args = [a for s in [*SMALL, *(sets or []), f"runs_dir={runs}"] for a in ("--set", s)]
    return [sys.executable, "-m", "synth", *extra, *args, "--run", run]


def endpoint_set(port: int, max_concurrency: int) -> str:
    return "llm.endpoints=" + json.dumps([{"base_url": f"http://127.0.0.1:{port}/v1",
                                           "max_concurrency": max_concurrency}])


def journal_lines(stage_dir: Path) -> dict[str, list[str]]:
    """Finished lines of every journal file of a stage (torn last lines left out), by file name."""
    out: dict[str, list[str]] = {}
    for path in sorted((stage_dir / "journal").glob("*.jsonl")):
        out[path.name] = [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
    return out


def env_for(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SYNTH_BASE_URL", "RAY_ADDRESS")}
    return {**env, "PYTHONUNBUFFERED": "1", **(extra or {})}


def run_ok(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd[:4])}... exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done
