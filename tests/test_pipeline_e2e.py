"""The whole default pipeline at a small size, against the real embedded vLLM server, through the real CLI and
local Ray: killed with -9 in the middle of the rollouts, resumed, then its dataset checked as a user would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from synth.config import load_config
from synth.stages import dataset_build
from synth.stages.base import StageContext
from synth.stages.registry import ORDER, get_stage
from synth.stages.store import StageStore

pytestmark = pytest.mark.integration

SMALL = ["agents.count=5", "tasks.per_agent=1", "tools.evolve_leaves=1", "tools.evolve_generations=1",
         "tools.tools_per_leaf=2", "rollouts.max_turns=2", "rollouts.max_steps=2",
         # Two samples a task, not the default four: on a CPU without bf16 (fp32, ~4x slower) the test stays minutes.
         "rollouts.samples=2"]


def _synth(run_dir: Path, *extra: str) -> list[str]:
    sets = [a for s in [*SMALL, f"runs_dir={run_dir}"] for a in ("--set", s)]
    return [sys.executable, "-m", "synth", *extra, *sets, "--run", "e2e"]


def _journal_rows(stage_dir: Path) -> int:
    return sum(1 for p in (stage_dir / "journal").glob("*.jsonl") for line in p.open() if line.endswith("\n"))


_TOKEN = "SYNTH_E2E_TOKEN"


def _processes_with(token: str) -> list[int]:
    """Pids whose environment carries ``token``: the pipeline and everything it started (Ray's head and workers
    inherit the driver's environment), and nothing else on the host."""
    needle = f"{_TOKEN}={token}".encode()
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


def _kill_started(token: str) -> None:
    """Kill what this test's pipeline started (never `ray stop --force`, which ends every Ray on the host)."""
    deadline = time.monotonic() + 30
    while (pids := _processes_with(token)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
        time.sleep(0.2)
    assert not _processes_with(token), "processes of the killed pipeline outlived it"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, embedded_server: str) -> dict:
    runs = tmp_path_factory.mktemp("runs")
    token = uuid.uuid4().hex
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SYNTH_BASE_URL": embedded_server, _TOKEN: token}
    cmd = _synth(runs, "pipeline")
    # First run: killed with SIGKILL (whole process group, Ray workers included) once rollouts are under way.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rollouts = runs / "e2e" / "rollouts"
    deadline = time.monotonic() + 900
    killed_at = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if rollouts.exists() and _journal_rows(rollouts) >= 1:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = _journal_rows(rollouts)
                break
            time.sleep(0.2)
        proc.wait(timeout=60)
    finally:
        _kill_started(token)  # Ray's processes live in their own process groups
    # Second run: must finish from where the first stopped.
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    finally:
        _kill_started(token)
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
    # The first run must have been killed during the rollouts, or this test proved nothing about resuming.
    assert run["killed_at"] is not None, "the first run ended before rollouts had a finished row to kill at"
    assert summary["resumed"] >= run["killed_at"] >= 1  # what was finished at the kill was not redone


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
    assert set(splits) == {"train", "rejected", "heldout"}
    rows = [*splits["train"], *splits["rejected"], *splits["heldout"]]
    assert rows, "the judge saw no trajectory"
    files = {name: str(out / "data" / f"{name}-*.parquet") for name in splits if splits[name].num_rows}
    from_parquet = load_dataset("parquet", data_files=files)  # what the Hub serves: non-empty splits
    assert sum(split.num_rows for split in from_parquet.values()) == len(rows)
    for row in rows:
        assert row["verdict"] is not None and "passed" in row["verdict"] and "scores" in row["verdict"]
        # What accepted a row is judge.accept's decision (auto: the code checks may accept where the judge failed).
        assert row["accepted"] == row["acceptance"]["accepted"]
        if row["accepted"]:
            assert row["accepted_by"] in {"verifiable", "llm", "both"}
            assert row["verdict"]["code_passed"] is not False
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


def _check_sft(out: Path, accepted: int) -> None:
    from datasets import load_dataset

    files = sorted((out / "sft").glob("train-*.parquet"))
    if not accepted:
        assert not files  # an empty view offers nothing to train on
        return
    sft = load_dataset("parquet", data_files=[str(f) for f in files])["train"]
    assert sft.column_names == ["messages", "tools"] and sft.num_rows == accepted
    # Row for row the accepted trajectories: the same conversations, arguments as objects instead of strings.
    train = sorted(json.dumps([m["content"] for m in r["messages"]]) for r in load_from_disk_split(out, "train"))
    assert sorted(json.dumps([m["content"] for m in r["messages"]]) for r in sft) == train
    for row in sft:
        for m in row["messages"]:
            for call in m["tool_calls"] or []:
                assert isinstance(call["function"]["arguments"], dict)
        assert all(t["type"] == "function" for t in row["tools"])


def load_from_disk_split(out: Path, split: str) -> list[dict]:
    from datasets import load_from_disk

    return list(load_from_disk(str(out / "hf"))[split])


def test_training_view_and_card(run: dict) -> None:
    out = run["dir"] / "dataset"
    accepted = json.loads((out / "summary.json").read_text())["accepted"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "configs:" in card and "## Statistics" in card
    assert f"| accepted (train) | {accepted} |" in card
    assert ("config_name: sft" in card) == bool(accepted)
    _check_sft(out, accepted)


def test_training_view_of_accepted_rows(run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 135M judge may rightly accept nothing; the SFT view is then checked on the same run's trajectories
    with every verdict accepted (the dataset stage rebuilt in a copy of the run; no model call)."""

    real = dataset_build.run_acceptance

    def accept_all(*args, **kwargs):  # type: ignore[no-untyped-def]
        decisions, calibration = real(*args, **kwargs)
        return {k: d.model_copy(update={"accepted": True, "by": d.by or "llm"}) for k, d in decisions.items()}, \
            calibration

    monkeypatch.setattr(dataset_build, "run_acceptance", accept_all)
    copy = tmp_path / "e2e"
    shutil.copytree(run["dir"], copy, ignore=shutil.ignore_patterns("dataset"))
    cfg = run["cfg"].model_copy(update={"runs_dir": tmp_path})
    summary = dataset_build.build_dataset(cfg)
    assert summary.accepted >= 1, "the run has no trajectory outside the held-out tasks"
    # Every judged row outside the held-out tasks is accepted, except rows no split takes: tasks on neither side of
    # the split, rows kept out of train for holding a BFCL function name or question, and near-duplicates.
    kept_out = summary.contamination.kept_out if summary.contamination else 0
    assert summary.dedup is not None and summary.dedup.enabled  # on in the default pipeline
    kept_out += summary.dedup.dropped
    assert summary.rejected == 0
    assert summary.accepted + kept_out == summary.trajectories - summary.errored - summary.heldout - summary.excluded
    assert summary.dedup.checked == summary.accepted + summary.dedup.dropped
    assert (copy / "dataset" / "dedup" / "index.json").exists()
    _check_sft(copy / "dataset", summary.accepted)
