"""A real Ray cluster of three nodes on loopback (a head without CPUs, two worker nodes of one CPU each): the pipeline
runs through ``RAY_ADDRESS`` with its code shipped as a runtime_env, its shards spread over both worker nodes, and
one worker node is killed (its raylet, SIGKILL by PID) in the middle of the rollouts. The run must finish on the
node that is left with the same row ids as an uninterrupted run, no duplicates, and no finished model call sent
again: only the calls of episodes that were in flight on the dead node are repeated.

The endpoint is the instant server (synth.bench.instant_server, a real HTTP server whose replies are valid for each
request's schema, with a per-request delay): what is under test is Ray's scheduling, the loss of a node and resume,
so the model's speed must not decide when the kill lands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from synth.bench import instant_server
from synth.stages.registry import ORDER
from synth.stages.store import StageStore
from tests.fixtures.cluster import (
    endpoint_set,
    env_for,
    free_port,
    journal_lines,
    local_cluster,
    raylet_pid,
    run_ok,
    synth_cmd,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]
CONCURRENCY = 4  # 2 episodes in flight per shard: rows finish one after another, so the kill lands mid-stage
DELAY_MS = 60


def _rows(stage_dir: Path) -> list[dict]:
    return [{**r, "record": json.loads(r["record"])} for r in StageStore(stage_dir).raw_rows()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("cluster")
    ref_port, port = free_port(), free_port()
    with instant_server.running(ref_port), instant_server.running(port, DELAY_MS):
        # The uninterrupted reference: same config, in-process, its own server (so request counts stay apart).
        ref_sets = [endpoint_set(ref_port, CONCURRENCY), "ray.enabled=false"]
        run_ok(synth_cmd(root, "ref", "pipeline", sets=ref_sets), env_for(), timeout=600)
        with local_cluster(worker_nodes=2, head_cpus=0) as cluster:
            workers = {n.node_id: n for n in cluster.worker_nodes}
            env = env_for({"RAY_ADDRESS": cluster.address})
            cmd = synth_cmd(root, "cl", "pipeline", sets=[endpoint_set(port, CONCURRENCY), "ray.workers=2"])
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            rollouts = root / "cl" / "rollouts"
            killed: dict = {}
            deadline = time.monotonic() + 900
            try:
                while time.monotonic() < deadline and proc.poll() is None and not killed:
                    lines = journal_lines(rollouts) if rollouts.exists() else {}
                    rows = [json.loads(line) for part in lines.values() for line in part]
                    nodes = Counter(json.loads(r["record"])["node_id"] for r in rows)
                    # Kill the node once both worker nodes have finished rows: the stage is under way on each.
                    if len(nodes) == 2 and sum(nodes.values()) >= 4:
                        victim = sorted(nodes)[0]
                        os.kill(raylet_pid(workers[victim]), signal.SIGKILL)
                        killed = {"node_id": victim, "at": time.monotonic(), "rows": len(rows)}
                        time.sleep(1.0)  # whatever the dead node's worker still wrote lands before the snapshot
                        killed["journals"] = journal_lines(rollouts)
                    time.sleep(0.05)
                out, err = proc.communicate(timeout=max(60, deadline - time.monotonic()))
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
            # Ray marks a node dead only after its health checks fail (seconds to tens of seconds); on a quiet
            # machine the stage can finish first, so wait for Ray's verdict instead of reading it at once.
            wait_until = time.monotonic() + 120
            while True:
                nodes_alive = {n["NodeID"]: n["Alive"] for n in cluster.global_state.node_table()}
                if not killed or nodes_alive.get(killed["node_id"]) is False or time.monotonic() > wait_until:
                    break
                time.sleep(1)
        stats = instant_server.get_stats(port)
    return {"root": root, "rc": proc.returncode, "stderr": err, "stdout": out, "killed": killed,
            "workers": set(workers), "stats": stats, "nodes_alive": nodes_alive}


def test_run_finishes_after_a_node_is_lost(runs: dict) -> None:
    assert runs["killed"], "the rollouts finished before a node could be killed; the test proved nothing"
    assert runs["rc"] == 0, runs["stderr"][-4000:]
    assert runs["nodes_alive"][runs["killed"]["node_id"]] is False  # Ray saw the node die


def test_shards_ran_on_both_worker_nodes_and_never_on_the_head(runs: dict) -> None:
    root = runs["root"]
    for stage in ("tasks", "rollouts"):
        produced = Counter(r["record"]["node_id"] for r in _rows(root / "cl" / stage))
        assert set(produced) == runs["workers"], (stage, produced)  # both worker nodes, no head, no None


def test_same_ids_as_an_uninterrupted_run(runs: dict) -> None:
    # Each id once is checked where it can fail: no row computed twice shows as no call repeated beyond the
    # redone episodes' (below); the stored rows themselves are deduplicated by id on read.
    root = runs["root"]
    for stage in ORDER:
        ref = [r["id"] for r in _rows(root / "ref" / stage)]
        got = [r["id"] for r in _rows(root / "cl" / stage)]
        assert sorted(got) == sorted(ref), stage
        summary = json.loads((root / "cl" / stage / "summary.json").read_text())
        assert summary["planned"] == summary["ok"] + summary["failed"] == len(ref), stage
    assert (root / "cl" / "dataset" / "summary.json").exists()


def test_finished_rows_were_kept_not_redone(runs: dict) -> None:
    root, killed = runs["root"], runs["killed"]
    before = {json.loads(line)["id"]: line for part in killed["journals"].values() for line in part}
    final = {r["id"]: r for r in StageStore(root / "cl" / "rollouts").raw_rows()}
    for row_id, line in before.items():
        assert json.dumps(final[row_id]) + "\n" == line  # byte-identical: the row on disk at the kill was kept
    dead = killed["node_id"]
    by_dead = {i for i, r in final.items() if json.loads(r["record"])["node_id"] == dead}
    assert by_dead <= set(before)  # the dead node wrote nothing after the snapshot
    assert by_dead, "the dead node had finished rows before it was killed"


def test_only_calls_of_episodes_in_flight_were_repeated(runs: dict) -> None:
    root, killed = runs["root"], runs["killed"]
    counts = runs["stats"]["by_digest"]
    repeated = sum(c - 1 for c in counts.values() if c > 1)
    assert max(counts.values()) <= 2  # one node lost once: nothing was sent three times
    before = {json.loads(line)["id"] for part in killed["journals"].values() for line in part}
    rows = {r["id"]: r["record"] for r in _rows(root / "cl" / "rollouts")}
    survivor = (runs["workers"] - {killed["node_id"]}).pop()
    # Episodes redone after the kill: rows that were not on disk at the kill and came from the surviving node.
    redone_calls = sum(sum(u["calls"] for u in rec["usage"].values()) for i, rec in rows.items()
                       if i not in before and rec["node_id"] == survivor)
    assert repeated <= redone_calls
    # Every request the server saw is a call some final row paid for, plus at most the redone episodes' repeats.
    paid = sum(sum(u["calls"] for u in r["record"]["usage"].values()) for stage in ORDER
               for r in _rows(root / "cl" / stage))
    assert 0 <= runs["stats"]["requests"] - paid <= redone_calls
