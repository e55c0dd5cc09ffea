"""The whole default pipeline at a small size, against the real embedded vLLM server, through the real CLI and
local Ray: killed with -9 in the middle of the rollouts, resumed, then its dataset checked as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synth.config import load_config
from synth.stages.base import StageContext
from synth.stages.registry import ORDER, get_stage
from synth.stages.store import StageStore

pytestmark = pytest.mark.integration

SMALL = ["agents.count=5", "tasks.per_agent=1", "tools.evolve_leaves=1", "tools.evolve_generations=1",
         "tools.tools_per_leaf=2", "rollouts.max_turns=2", "rollouts.max_steps=2"]


def _synth(run_dir: Path, *extra: str) -> list[str]:
    sets = [a for s in [*SMALL, f"runs_dir={run_dir}"] for a in ("--set", s)]
    return [sys.executable, "-m", "synth", *extra, *sets, "--run", "e2e"]


def _journal_rows(stage_dir: Path) -> int:
    return sum(1 for p in (stage_dir / "journal").glob("*.jsonl") for line in p.open() if line.endswith("\n"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, embedded_server: str) -> dict:
    runs = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SYNTH_BASE_URL": embedded_server}
    cmd = _synth(runs, "pipeline")
    # First run: killed with SIGKILL (whole process group, Ray workers included) once rollouts are under way.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rollouts = runs / "e2e" / "rollouts"
    deadline = time.monotonic() + 900
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        if rollouts.exists() and _journal_rows(rollouts) >= 1:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = _journal_rows(rollouts)
            break
        time.sleep(0.2)
    proc.wait(timeout=60)
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)
    # Second run: must finish from where the first stopped.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    cfg = load_config(overrides=[*SMALL, f"runs_dir={runs}", "run=e2e"])
    return {"cfg": cfg, "killed_at": killed_at, "stdout": done.stdout, "stderr": done.stderr,
            "dir": runs / "e2e"}


def test_resume_after_kill_has_planned_ids_once_and_redoes_nothing(run: dict) -> None:
    cfg, root = run["cfg"], run["dir"]
    ctx = StageContext(config=cfg)
    for name in ORDER:
        stage = get_stage(name)
        planned = sorted(item.id for item in stage.plan(ctx))
        stored = [r["id"] for r in StageStore(root / name).raw_rows()]
        assert sorted(stored) == planned, name  # the same ids an uninterrupted run plans, each once
    summary = json.loads((root / "rollouts" / "summary.json").read_text())
    if run["killed_at"] is not None:  # killed during rollouts: what was finished then was not redone
        assert summary["resumed"] >= run["killed_at"] >= 1


def test_report_lists_every_stage(run: dict) -> None:
    report = json.loads((run["dir"] / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ORDER
    for s in report["stages"]:
        assert s["planned"] == s["ok"] + s["failed"]
    assert report["dataset"]["trajectories"] >= 1
    assert (run["dir"] / "report.html").stat().st_size > 1000
    for role in ("agent", "user_sim", "judge", "generator"):
        assert role in run["stdout"]  # tokens by role are printed


def test_dataset_loads_and_is_openai_form(run: dict) -> None:
    from datasets import load_dataset, load_from_disk

    out = run["dir"] / "dataset"
    splits = load_from_disk(str(out / "hf"))
    assert set(splits) == {"train", "rejected"}
    rows = [*splits["train"], *splits["rejected"]]
    assert rows, "the judge saw no trajectory"
    files = {name: str(out / "data" / f"{name}-*.parquet") for name in splits if splits[name].num_rows}
    from_parquet = load_dataset("parquet", data_files=files)  # what the Hub serves: non-empty splits
    assert sum(split.num_rows for split in from_parquet.values()) == len(rows)
    for row in rows:
        assert row["verdict"] is not None and "passed" in row["verdict"] and "scores" in row["verdict"]
        assert row["accepted"] == row["verdict"]["passed"]
        assert row["verdict"]["checks"] or row["verdict"]["scores"] or row["verdict"]["reasons"]
        names = {t["function"]["name"] for t in row["tools"]}
        assert all(t["type"] == "function" and "parameters" in t["function"] for t in row["tools"])
        msgs = row["messages"]
        assert msgs[0]["role"] == "system" and msgs[1]["role"] == "user"
        answered = {m["tool_call_id"] for m in msgs if m["role"] == "tool"}
        for m in msgs:
            assert m["role"] in {"system", "user", "assistant", "tool"}
            for call in m["tool_calls"] or []:
                assert m["role"] == "assistant" and call["type"] == "function"
                assert call["function"]["name"] in names
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
                assert call["id"] in answered  # every call is answered by a tool message with its id
        assert set(row["usage"]) >= {"agent", "user_sim", "tool_sim", "judge"}
        assert row["model"]


def test_training_view_and_card(run: dict) -> None:
    from datasets import load_dataset

    out = run["dir"] / "dataset"
    accepted = json.loads((out / "summary.json").read_text())["accepted"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "configs:" in card and "## Statistics" in card
    assert f"| accepted (train) | {accepted} |" in card
    if not accepted:  # the 135M judge may rightly accept nothing; then the card offers no sft config
        assert "config_name: sft" not in card
        return
    sft = load_dataset("parquet", data_files=str(out / "sft" / "train-*.parquet"))["train"]
    assert sft.column_names == ["messages", "tools"] and sft.num_rows == accepted
    for row in sft:
        for m in row["messages"]:
            for call in m["tool_calls"] or []:
                assert isinstance(call["function"]["arguments"], dict)
