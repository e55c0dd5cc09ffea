"""Seed replicates of an improve round's models, scored on the run's held-out tasks beside the round's own.

One training seed per optimizer cannot say whether a gap of a few tasks out of 44 is the optimizer's or the
seed's. This trains nothing: it scores checkpoints trained elsewhere with another ``seed`` (for example jobs copied
from ``improve/round-K/train-jobs`` with ``seed`` and ``train.name`` changed, trained by bench/device_train.sh) on
the same held-out tasks, with the same evaluator the loop uses, and reports per model, per optimizer (mean and
range over seeds) and per task (which tasks each optimizer's models pass, paired).

    python bench/data_value_seeds.py --config pipelines/data_value.yaml --round 3 \\
        --models muonclip-seed3 adamw-seed3 [--keep-server] [--out bench/results/data_value_seeds.json]

A model is ``<optimizer>`` (the round's own, already scored: its rows are reused) or ``<optimizer>-<tag>`` under
``improve/round-K/train/``; its optimizer is read from its ``train_summary.json``. Results accumulate: the models
already in ``--out`` (from earlier sessions, whose checkpoints may be gone) are kept unless scored again, and the
per-optimizer summary and the paired comparison cover them all.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import yaml

from synth.machine import machine_info
from synth.config import load_config
from synth.endpoints import endpoints_for
from synth.evaluate.run import EvalRecord, evaluate_model, heldout
from synth.improve.loop import improve_root, load_report, round_config
from synth.improve.stats import paired as paired_by_seed
from synth.stages.store import StageStore


def _optimizer(checkpoint: Path) -> str:
    summary = checkpoint / "train_summary.json"
    if not summary.exists():
        raise SystemExit(f"{checkpoint} has no train_summary.json: train it first (bench/device_train.sh)")
    return json.loads(summary.read_text())["optimizer"]


def _seed(round_dir: Path, name: str) -> int | None:
    """The training seed of ``name``, from the job file it was trained from (train_summary.json has none)."""
    for job in sorted(round_dir.glob("*/*.yaml")):
        cfg = yaml.safe_load(job.read_text()) or {}
        if (cfg.get("train") or {}).get("name") == name:
            return cfg.get("seed")
    return None


def _passed(store_dir: Path) -> dict[str, bool]:
    rows = StageStore(store_dir).read(EvalRecord)
    return {r.task_id: bool(r.score and r.score.checks_passed) for r in rows}


def _earlier(out: Path, run: str, round_: int, heldout_tasks: int) -> dict[str, dict]:
    """The models an earlier call scored into ``out`` for the same run, round and held-out tasks."""
    if not out.exists():
        return {}
    old = json.loads(out.read_text())
    if (old.get("run"), old.get("round"), old.get("heldout_tasks")) != (run, round_, heldout_tasks):
        raise SystemExit(f"{out} holds run {old.get('run')} round {old.get('round')} on {old.get('heldout_tasks')} "
                         f"tasks, not run {run} round {round_} on {heldout_tasks}: pass another --out")
    machine = old.get("machine")
    return {name: {"machine": machine} | m for name, m in old.get("models", {}).items()}


def paired(models: dict[str, dict], a: str = "muonclip", b: str = "adamw") -> dict:
    """The models' passed tasks by seed and optimizer, compared as synth.improve.stats.paired does."""
    by_seed: dict[int, dict[str, set[str]]] = {}
    for m in models.values():
        if m.get("seed") is not None and m["optimizer"] in (a, b):
            by_seed.setdefault(m["seed"], {})[m["optimizer"]] = set(m["tasks_passed"])
    return paired_by_seed(by_seed, a, b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("pipelines/data_value.yaml"))
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--models", nargs="+", required=True, help="names under improve/round-K/train/")
    ap.add_argument("--keep-server", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, as synth's own --set (embedded.port=8775: beside a test run's server)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/data_value_seeds.json"))
    args = ap.parse_args()

    config = load_config(args.config, args.set)
    report = load_report(config)
    if not report.heldout_task_ids:
        raise SystemExit(f"{improve_root(config)}/improve.json has no held-out tasks: run `synth improve` first")
    train_dir = round_config(config, args.round).run_dir / "train"
    eval_cfg = round_config(config, 1)  # where the loop keeps every round's evaluation rows
    tasks = heldout(eval_cfg, report.heldout_task_ids)
    names = list(dict.fromkeys(args.models))
    models: dict[str, dict] = _earlier(args.out, config.run, args.round, len(tasks))
    with endpoints_for(eval_cfg, keep_server=args.keep_server) as endpoints:
        for name in names:
            checkpoint = train_dir / name
            optimizer = _optimizer(checkpoint)  # before serving: a checkpoint not trained yet fails at once
            tag = f"{name}-round{args.round}"  # the loop's row folder for the round's own models
            result = evaluate_model(eval_cfg, endpoints, tag, checkpoint, tasks)
            o = result.overall
            models[name] = {
                "optimizer": optimizer,
                "seed": _seed(train_dir.parent, name),
                "valid_call_rate": o.valid_call_rate if o.calls_attempted else None,
                "pass_rate": o.pass_rate if o.checked_episodes else None,
                "judge_score": o.judge_score if o.episodes else None,
                "calls_attempted": o.calls_attempted, "valid_calls": o.calls_valid,
                "passed": o.checks_passed, "episodes": o.episodes,
                "wall_s": round(result.wall_s, 1), "resumed": result.resumed,
                "scored": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine_info(),  # per model: the sessions that scored them ran on different CPUs
                "tasks_passed": sorted(t for t, ok in _passed(eval_cfg.run_dir / "eval" / tag).items() if ok),
            }
    summary: dict[str, dict] = {}
    for opt in dict.fromkeys(m["optimizer"] for m in models.values()):
        ms = [m for m in models.values() if m["optimizer"] == opt]
        summary[opt] = {"models": len(ms)}
        for key in ("valid_call_rate", "pass_rate"):
            if vals := [m[key] for m in ms if m[key] is not None]:
                summary[opt] |= {f"{key}_mean": sum(vals) / len(vals), f"{key}_range": [min(vals), max(vals)]}
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "run": config.run, "round": args.round, "heldout_tasks": len(tasks),
        "models": models, "by_optimizer": summary, "paired": paired(models),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for name, m in models.items():
        print(f"{name} ({m['optimizer']}, seed {m['seed']}): valid {m['valid_calls']}/{m['calls_attempted']}, "
              f"passed {m['passed']}/{m['episodes']}")
    print(json.dumps(summary, indent=2))
    print("paired:", json.dumps(out["paired"]))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
