"""``bench/results/data_value.{md,json}``: base vs trained on the held-out tasks, from one ``synth improve`` run.

The figures are the last round's (the model trained on every round's data); a model that was never trained (no
accepted trajectories) has null scores, and the Markdown says why instead of showing a number.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from synth.config import PipelineConfig
from synth.improve.models import TRAIN_FACTS, ImproveReport, ModelScores, RoundResult, optimizer_of
from synth.improve.stats import paired

KEYS = ("valid_call_rate", "pass_rate", "judge_score", "valid_call_episode_rate")
"""The issue's three rates, and the share of episodes with at least one valid call: a model that tries no call
has no valid-call rate (0 of 0), but its share of episodes with a valid call is 0, comparable with any other's."""
MODELS = ("base", "muonclip", "adamw")


def _rate(s: ModelScores, key: str) -> float | None:
    if key != "valid_call_episode_rate":
        return getattr(s, key)
    overall = (s.detail or {}).get("overall") or {}
    return overall["episodes_with_valid_call"] / overall["episodes"] if overall.get("episodes") else None


def _scores(s: ModelScores | None) -> dict[str, float | None]:
    return {k: (None if s is None else _rate(s, k)) for k in KEYS}


COUNTS = ("episodes", "calls_attempted", "calls_valid", "episodes_with_valid_call", "checked_episodes",
          "checks_passed")


def _counts(s: ModelScores | None) -> dict[str, int] | None:
    overall = (s.detail or {}).get("overall") if s is not None else None
    return {k: int(overall.get(k, 0)) for k in COUNTS} if overall else None


def _seed_models(config: PipelineConfig, last: RoundResult | None, optimizer: str) -> dict[str, ModelScores]:
    """The last round's scored models of ``optimizer``: its own and the seed replicates the config asks for
    (a run resumed with fewer ``improve.replicates`` keeps the others' records, not in its means)."""
    if last is None:
        return {}
    own = config.seed + last.round - 1
    return {n: s for n, s in sorted(last.models.items())
            if optimizer_of(n) == optimizer and _seed_of(config, last.round, n) - own <= config.improve.replicates}


def _mean_scores(models: list[ModelScores]) -> dict[str, float | None]:
    """Each rate's mean over the seeds that have it: every seed weighs the same, whatever number of calls its
    model tried. One model: its own rates."""
    out: dict[str, float | None] = {}
    for k in KEYS:
        vals = [v for s in models if (v := _rate(s, k)) is not None]
        out[k] = sum(vals) / len(vals) if vals else None
    return out


def _sum_counts(models: list[ModelScores]) -> dict[str, int] | None:
    counts = [c for c in map(_counts, models) if c is not None]
    return {k: sum(c[k] for c in counts) for k in COUNTS} if counts else None


def _seed_of(config: PipelineConfig, k: int, name: str) -> int:
    return int(name.rsplit("-seed", 1)[1]) if "-seed" in name else config.seed + k - 1


def _seed_table(config: PipelineConfig, k: int, models: dict[str, ModelScores]) -> dict[str, Any]:
    per = {n: {"seed": _seed_of(config, k, n), **_scores(s), "counts": _counts(s)} for n, s in models.items()}
    spread = {key: [min(v), max(v)] for key in KEYS
              if (v := [m[key] for m in per.values() if m[key] is not None])}
    return {"models": per, "range": spread}


def _paired(config: PipelineConfig, k: int, groups: dict[str, dict[str, ModelScores]]) -> dict[str, Any] | None:
    """Tasks passed by one optimizer's model and not the other's, seed by seed, from the evaluation rows."""
    from synth.evaluate.run import EvalRecord
    from synth.improve.loop import round_config
    from synth.stages.store import StageStore

    evals = round_config(config, 1).run_dir / "eval"
    passed: dict[int, dict[str, set[str]]] = {}
    for opt, models in groups.items():
        for name in models:
            rows_dir = evals / f"{name}-round{k}"
            if not rows_dir.exists():
                return None
            rows = StageStore(rows_dir).read(EvalRecord)
            passed.setdefault(_seed_of(config, k, name), {})[opt] = {
                r.task_id for r in rows if r.score and r.score.checks_passed}
    return paired(passed)


def _train_facts(checkpoint: Path, recorded: dict[str, Any]) -> dict[str, Any]:
    """A trained model's facts from its checkpoint's own summary (where and how it trained), else the loop's."""
    path = checkpoint / "train_summary.json"
    source = json.loads(path.read_text()) if path.exists() else recorded
    return {k: source.get(k) for k in TRAIN_FACTS}


def data_value(report: ImproveReport, config: PipelineConfig) -> dict[str, Any]:
    from synth.machine import machine_info

    last = max((r for r in report.rounds if r.round > 0), key=lambda r: r.round, default=None)
    base = report.rounds[0].models.get("base") if report.rounds and report.rounds[0].round == 0 else None
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "run": report.run,
        "rounds": config.improve.rounds,
        "train_trajectories": last.train_trajectories if last else 0,
        "heldout_tasks": report.heldout_tasks,
        "base": _scores(base),
    }
    groups = {opt: _seed_models(config, last, opt) for opt in MODELS[1:]}
    for opt, models in groups.items():
        out[opt] = _mean_scores(list(models.values()))
    # What the rates are shares of: a rate of 0 calls tried is n/a, and the count says so.
    out["counts"] = {"base": _counts(base), **{opt: _sum_counts(list(ms.values())) for opt, ms in groups.items()}}
    if any(len(ms) > 1 for ms in groups.values()):
        out["seeds"] = {opt: _seed_table(config, last.round, ms) for opt, ms in groups.items() if ms}
        out["paired"] = _paired(config, last.round, groups)
    out["per_round"] = [{"round": r.round, "agent": r.agent, "accepted_new": r.accepted_new,
                         "train_trajectories": r.train_trajectories, "note": r.note,
                         "generation": _generation(config, r), **_walls(config, r),
                         **{name: _scores(s) for name, s in r.models.items()}} for r in report.rounds]
    out["trained"] = {name: _train_facts(Path(ckpt), (last.train_summaries or {}).get(name, {}))
                      for name, ckpt in (last.trained if last else {}).items()}
    out["config"] = {"agents.count": config.agents.count, "improve.agents_per_round": config.improve.agents_per_round,
                     "tasks.per_agent": config.tasks.per_agent,
                     "agents.toolset_size": list(config.agents.toolset_size),
                     "agents.coding_share": config.agents.coding_share,
                     "tasks.difficulties": list(config.tasks.difficulties),
                     "tasks.grounded_opening": config.tasks.grounded_opening,
                     "tasks.grounded_draft": config.tasks.grounded_draft,
                     "tasks.grounded_only": config.tasks.grounded_only,
                     "rollouts.grounded_calls_first": config.rollouts.grounded_calls_first,
                     "rollouts.grounded_answer_after_call": config.rollouts.grounded_answer_after_call,
                     "rollouts.max_turns": config.rollouts.max_turns,
                     "rollouts.error_rate": config.rollouts.error_rate,
                     "rollouts.samples": config.rollouts.samples, "judge.accept": config.judge.accept,
                     "dataset.heldout_share": config.dataset.heldout_share,
                     "improve.optimizers": list(config.improve.optimizers), "train.epochs": config.train.epochs,
                     "train.lr": config.train.lr, "train.muon_lr": config.train.muon_lr,
                     "improve.train_here": config.improve.train_here,
                     "improve.replicates": config.improve.replicates,
                     "improve.train_by_round": config.improve.train_by_round,
                     "llm.model": config.llm.model or "embedded"}
    return out


def _generation(config: PipelineConfig, r: RoundResult) -> dict[str, Any] | None:
    """The grounded-generation settings a round's rollouts ran with, from that stage's own record (a resumed run
    may have changed them between rounds; an option that did not exist then is absent)."""
    from synth.improve.loop import round_config

    if r.round == 0:
        return None
    path = round_config(config, r.round).run_dir / "rollouts" / "fingerprint.json"
    if not path.exists():
        return None
    recorded = json.loads(path.read_text())
    return {k.removeprefix("rollouts."): v for k, v in recorded.items()
            if k.startswith("rollouts.grounded") or k == "rollouts.max_calls_per_step"}


def _walls(config: PipelineConfig, r: RoundResult) -> dict[str, Any]:
    """Measured wall times of a round, its pipeline's (report.json, with the agents and episodes it planned: a
    resumed run may have changed improve.agents_per_round between rounds) and its evaluations'."""
    from synth.improve.loop import round_config

    k = r.round
    out: dict[str, Any] = {}
    if k > 0:
        path = round_config(config, k).run_dir / "report.json"
        if path.exists():
            report = json.loads(path.read_text())
            out["pipeline_wall_s"] = report.get("wall_s")
            planned = {s["stage"]: s.get("planned") for s in report.get("stages", [])}
            out["agents"], out["episodes"] = planned.get("agents"), planned.get("rollouts")
    # Recorded with each score; eval.json (which holds only its latest call's models) for older reports.
    walls = {name: round(s.wall_s, 1) for name, s in r.models.items() if s.wall_s is not None}
    evals = round_config(config, 1).run_dir / "eval" / "eval.json"
    if evals.exists():
        models = json.loads(evals.read_text()).get("models", {})
        tag = f"-round{k}" if k else ""
        for n, m in models.items():
            if (n == "base") == (k == 0) and n.endswith(tag):
                walls.setdefault(n.removesuffix(tag), round(m["wall_s"], 1))
    out["eval_wall_s"] = walls or None
    return out


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _label(data: dict[str, Any], name: str) -> str:
    n = len(data.get("seeds", {}).get(name, {}).get("models", {}))
    return f"{name} (mean of {n} seeds)" if n > 1 else name


def _seed_lines(data: dict[str, Any]) -> list[str]:
    """The seeds behind each optimizer's means, and the paired comparison (improve.replicates)."""
    if "seeds" not in data:
        return []
    lines = ["Each optimizer's models, one a training seed, on the same data and held-out tasks (the rates above "
             "are their means, each seed weighing the same):", "",
             "| model | seed | valid tool-call rate | code-check pass rate | judge score | episodes with a valid call "
             "| calls tried, valid | passed |", "|---|---|---|---|---|---|---|---|"]
    for group in data["seeds"].values():
        for name, m in group["models"].items():
            c = m["counts"] or {}
            lines.append(f"| {name} | {m['seed']} | " + " | ".join(_fmt(m[k]) for k in KEYS)
                         + f" | {c.get('calls_attempted', 'n/a')}, {c.get('calls_valid', 'n/a')} | "
                         f"{c.get('checks_passed', 'n/a')} of {c.get('checked_episodes', 'n/a')} |")
    lines.append("")
    if p := data.get("paired"):
        per = "; ".join(f"seed {s}: {v['muonclip_only']} vs {v['adamw_only']}" for s, v in p["seeds"].items())
        lines += [f"Paired by seed, tasks passed by MuonClip's model only vs AdamW's only: {per}; in all "
                  f"{p['muonclip_only']} vs {p['adamw_only']}, two-sided sign test p = {p['sign_test_p']:.2f}.", ""]
    return lines


def write_data_value(report: ImproveReport, config: PipelineConfig, out_dir: Path) -> Path:
    data = data_value(report, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "data_value.json").write_text(json.dumps(data, indent=2) + "\n")
    if report.plot and Path(report.plot).exists():
        shutil.copy(report.plot, out_dir / "data_value_curve.png")
    m = data["machine"]
    lines = [
        "# Data value: base vs trained on held-out tasks", "",
        f"One `synth improve` run ({data['date']}), machine: {m.get('cpu', m)} ({m.get('cores', '?')} cores).",
        f"Run `{data['run']}`, {data['rounds']} round(s); config: "
        + ", ".join(f"`{k}={v}`" for k, v in data["config"].items()) + ".", "",
        f"- training trajectories (last round): {data['train_trajectories']}",
        f"- held-out tasks: {data['heldout_tasks']}", "",
        "| model | valid tool-call rate | code-check pass rate | judge score | episodes with a valid call |",
        "|---|---|---|---|---|",
        *[f"| {_label(data, name)} | " + " | ".join(_fmt(data[name][k]) for k in KEYS) + " |" for name in MODELS],
        "", "Valid tool-call rate: of the calls a model tried, those that parse, name a tool of the agent's toolset "
        "and validate against its schema (n/a when it tried none). Episodes with a valid call: of the held-out "
        "episodes, those with at least one valid call (0 for a model that tries none).", "",
        "Counts behind the rates (episodes; calls tried, valid; episodes with a valid call; episodes with code "
        "checks, all passed" + ("; summed over each optimizer's seeds" if "seeds" in data else "") + "):", "",
        "| model | episodes | calls tried | valid calls | episodes with a valid call | checked | passed |",
        "|---|---|---|---|---|---|---|",
        *[f"| {name} | " + " | ".join(str(c[k]) for k in COUNTS) + " |"
          for name, c in data["counts"].items() if c is not None], "",
        *_seed_lines(data),
        "Training (last round):", "",
        "| optimizer | steps | loss first -> last | max logit | heads clipped | update RMS / lr | device | tokens/s "
        "| wall s |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {name} | {t.get('steps')} | {_num(t.get('first_loss'))} -> {_num(t.get('last_loss'))} | "
          f"{_num(t.get('max_logit'))} | {t.get('heads_clipped')} | {_num(t.get('update_rms'))} | "
          f"{t.get('device', 'n/a')} | "
          f"{_num(t.get('tokens_per_s'), 0)} | {_num(t.get('wall_s'), 1)} |" for name, t in data["trained"].items()],
        "",
        "## Per round", "",
        "| round | agent | agents | generation settings (the round's own record) | accepted into train | trained on "
        "| note |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['round']} | {r['agent']} | {r.get('agents') or 'n/a'} | "
          + (", ".join(f"`{k}={v}`" for k, v in (r["generation"] or {}).items()) or "n/a")
          + f" | {r['accepted_new']} | {r['train_trajectories']} | {r['note'] or ''} |" for r in data["per_round"]],
        "",
        "![curve](data_value_curve.png)" if (out_dir / "data_value_curve.png").exists() else "", "",
        "## Measured cost", "",
        "Evaluation wall seconds are those of the process that ran the episodes (a resumed evaluation counts only "
        "its own part; 0.0: nothing was left to run).", "",
        *[(f"- round {r['round']}: pipeline {r.get('pipeline_wall_s', 'n/a')} s for {r.get('episodes', 'n/a')} "
           "episodes; " if r["round"] else "- round 0 (the base model only): ")
          + "evaluation " + (", ".join(f"{n} {w} s" for n, w in r["eval_wall_s"].items())
                             if r.get("eval_wall_s") else "n/a") for r in data["per_round"]], "",
    ]
    if data["train_trajectories"] < 100 or data["heldout_tasks"] < 40:
        lines += ["## What limits it", "",
                  f"Issue 10 asks for at least 100 training trajectories and 40 held-out tasks; this run had "
                  f"{data['train_trajectories']} and {data['heldout_tasks']}. A model with no training data is "
                  "shown as n/a, not as a number.", ""]
    (out_dir / "data_value.md").write_text("\n".join(lines))
    return out_dir / "data_value.md"
