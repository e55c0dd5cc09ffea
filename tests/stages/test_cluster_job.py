"""``ray job submit`` against a local cluster of one node (with the dashboard, which serves the job API): the
project travels as the job's ``working_dir``, the run's settings as entrypoint arguments and ``env_vars``, and the
pipeline runs to the end inside the job, with code imported from the job's copy of the project.

The endpoint is the instant server (what is under test is the job machinery, not the model).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synth.bench import instant_server
from synth.paths import REPO_ROOT
from synth.stages.registry import ORDER
from synth.stages.runner import RUNTIME_EXCLUDES
from synth.stages.store import StageStore
from tests.fixtures.cluster import SMALL, endpoint_set, env_for, free_port, local_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict:
    runs = tmp_path_factory.mktemp("job_runs")
    port = free_port()
    with instant_server.running(port), local_cluster(worker_nodes=0, head_cpus=1, dashboard=True) as cluster:
        runtime_env = {"excludes": RUNTIME_EXCLUDES, "env_vars": {"SYNTH_JOB_MARK": "from-runtime-env"}}
        sets = [*SMALL, f"runs_dir={runs}", endpoint_set(port, 16), "ray.workers=1"]
        # The README's command, with this venv's python (a cluster's nodes have synth's dependencies installed).
        cmd = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", f"http://{cluster.webui_url}",
               "--working-dir", str(REPO_ROOT), "--runtime-env-json", json.dumps(runtime_env), "--",
               sys.executable, "pipelines/ray_job.py", "--run", "job", *[a for s in sets for a in ("--set", s)]]
        done = subprocess.run(cmd, env=env_for(), capture_output=True, text=True, timeout=800)
        head_id = cluster.head_node.node_id
    result = next((json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
                   if line.startswith("SYNTH_JOB_RESULT ")), None)
    return {"done": done, "result": result, "runs": runs, "head": head_id}


def test_job_succeeds_and_runs_every_stage(job: dict) -> None:
    done = job["done"]
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "succeeded" in done.stdout + done.stderr
    result = job["result"]
    assert result is not None, done.stdout[-3000:]
    assert [s["stage"] for s in result["stages"]] == ORDER
    assert all(s["planned"] == s["ok"] + s["failed"] for s in result["stages"])
    assert result["dataset"]["trajectories"] >= 1


def test_code_came_from_the_jobs_working_dir(job: dict) -> None:
    synth_path = Path(job["result"]["synth_path"])
    assert synth_path != REPO_ROOT / "synth"  # not this checkout: Ray's unpacked copy of it
    assert "runtime_resources" in synth_path.parts and "working_dir_files" in synth_path.parts


def test_rows_were_written_on_the_cluster_to_the_shared_runs_dir(job: dict) -> None:
    rows = [json.loads(r["record"]) for r in StageStore(job["runs"] / "job" / "rollouts").raw_rows()]
    assert rows and {r["node_id"] for r in rows} == {job["head"]}
