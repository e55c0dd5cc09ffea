"""Quota mode against the real embedded vLLM server, through the real CLI: ``--accept 3`` runs to
completion with growth at most doubling a round, and a token budget stops new rows inside a round."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TINY = ["agents.count=1", "tasks.per_agent=1", "tools.evolve_leaves=1", "tools.evolve_generations=1",
        "tools.tools_per_leaf=2", "rollouts.max_turns=1", "rollouts.max_steps=2", "rollouts.samples=2",
        "agents.real_exec_share=0", "agents.coding_share=0", "ray.enabled=false"]


def _pipeline(runs: Path, run: str, url: str, *sets: str) -> tuple[subprocess.CompletedProcess, dict]:
    args = [a for s in [*TINY, *sets, f"runs_dir={runs}"] for a in ("--set", s)]
    cmd = [sys.executable, "-m", "synth", "pipeline", "--accept", "3", *args, "--run", run]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SYNTH_BASE_URL": url}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads((runs / run / "report.json").read_text())


def test_accept_3_runs_to_completion_with_bounded_growth(tmp_path: Path, embedded_server: str) -> None:
    _, report = _pipeline(tmp_path, "q3", embedded_server, "quota.max_rounds=2", "quota.max_wall_s=900")
    assert report["stop"].startswith(("quota met", "max rounds reached", "time budget", "token budget",
                                      "budget spent inside"))
    assert 1 <= report["rounds"] <= 2
    # One agent in round 1: round 2 may at most double it, whatever 0 accepted would predict.
    assert report["agents"] <= 2 ** (report["rounds"] - 1)
    agents = next(s for s in report["stages"] if s["stage"] == "agents")
    assert agents["planned"] == report["agents"]
    judge = next(s for s in report["stages"] if s["stage"] == "judge")
    accepted = judge["extra"]["train"]
    assert report["stop"].startswith("quota met") == (accepted >= 3)
    assert report["dataset"]["accepted"] == accepted
    # Every judged row has a recorded decision under the run's mode, and the calibration is in the card.
    decisions = json.loads((tmp_path / "q3" / "judge" / "acceptance.json").read_text())
    assert decisions["mode"] == "auto" and len(decisions["rows"]) == judge["ok"]
    assert all(d["accepted"] == (d["by"] is not None) for d in decisions["rows"].values())
    assert all(d["reasons"] for d in decisions["rows"].values() if not d["accepted"])
    assert "## Judge calibration" in (tmp_path / "q3" / "dataset" / "README.md").read_text()


def test_token_budget_stops_new_rows_inside_the_round(tmp_path: Path, embedded_server: str) -> None:
    # 300 tokens: the tools stage's one batch (a prompt of about 300 tokens alone) spends more than that, so the
    # stages after it may start no row.
    _, report = _pipeline(tmp_path, "qb", embedded_server, "quota.max_tokens=300", "quota.max_rounds=3")
    stages = {s["stage"]: s for s in report["stages"]}

    def spent(s: dict) -> int:
        return sum(u["prompt_tokens"] + u["completion_tokens"] for u in s["usage"].values())

    assert stages["tools"]["ok"] == stages["tools"]["planned"] == 1  # the row in flight finished and was kept
    assert spent(stages["tools"]) > 300
    assert stages["agents"]["ok"] == 0 and "rows not started" in stages["agents"]["extra"]["budget_stop"]
    assert report["rounds"] == 1 and report["stop"].startswith("token budget spent")
    assert all(spent(s) == 0 for name, s in stages.items() if name != "tools")  # nothing after the budget
