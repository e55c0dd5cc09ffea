"""``data_value.{md,json}``: the base model against each optimizer's trained models on the held-out tasks, from
one ``synth improve`` run (``synth improve --results DIR``).

The held-out tasks are round 1's, chosen by tool group (``synth.data.heldout``): no training row of any round
holds one of their tools. The pass rates are given per model and mode (the base forced as generation forces it,
and unforced; trained models unforced), over all of them and split by tools seen in training, a column empty by
construction.

The figures are the last round's (the models trained on every round's data), for the base and for every optimizer
``improve.optimizers`` lists; with seed replicates (``improve.replicates``) an optimizer's figures are the means
over its seeds, with the seeds listed and, for each pair of optimizers, the tasks one passes and the other does
not, seed by seed, with a sign test. A model that was never trained (no accepted trajectories) has null scores,
and the Markdown says n/a instead of showing a number. Every number comes from the run's records and its stages'
rows; nothing here judges whether they are enough.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

from synth.config import PipelineConfig
from synth.evaluate.episode import BASE, EvalRecord
from synth.improve.models import ImproveReport, ModelScores, RoundResult, optimizer_of
from synth.improve.stats import paired

KEYS = ("valid_call_rate", "pass_rate", "judge_score", "valid_call_episode_rate")
"""The three rates of the curve, and the share of episodes with at least one valid call: a model that tries no
call has no valid-call rate (0 of 0), but its share of episodes with a valid call is 0, comparable with any
other's."""
COUNTS = ("episodes", "calls_attempted", "calls_valid", "episodes_with_valid_call", "checked_episodes",
          "checks_passed")


def _rate(s: ModelScores, key: str) -> float | None:
    if key != "valid_call_episode_rate":
        return getattr(s, key)
    overall = (s.detail or {}).get("overall") or {}
    return overall["episodes_with_valid_call"] / overall["episodes"] if overall.get("episodes") else None


def _scores(s: ModelScores | None) -> dict[str, float | None]:
    return {k: (None if s is None else _rate(s, k)) for k in KEYS}


def _counts(s: ModelScores | None) -> dict[str, int] | None:
    overall = (s.detail or {}).get("overall") if s is not None else None
    return {k: int(overall.get(k, 0)) for k in COUNTS} if overall else None


def _pass(scores: dict[str, Any] | None) -> dict[str, Any] | None:
    """A pass rate with what it is a share of (None: nothing scored)."""
    if not scores:
        return None
    checked, passed = int(scores.get("checked_episodes", 0)), int(scores.get("checks_passed", 0))
    return {"rate": passed / checked if checked else None, "passed": passed, "checked": checked}


def _sum_pass(cells: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Pass counts summed over models (an optimizer's seeds), and their rate."""
    got = [c for c in cells if c is not None]
    if not got:
        return None
    passed, checked = sum(c["passed"] for c in got), sum(c["checked"] for c in got)
    return {"rate": passed / checked if checked else None, "passed": passed, "checked": checked}


def _mode_detail(s: ModelScores, mode: str) -> dict[str, Any] | None:
    detail = s.detail or {}
    if mode == "forced":
        return detail.get("forced")
    return {"overall": detail.get("overall"), "by_tools": detail.get("by_tools") or {}}


def _mode_row(name: str, mode: str, models: list[ModelScores]) -> dict[str, Any] | None:
    """Pass rates of ``models`` (one, or an optimizer's seeds) in ``mode``: over every held-out task, and over
    those whose tools training saw and did not (None: not recorded)."""
    details = [d for s in models if (d := _mode_detail(s, mode)) is not None and d.get("overall")]
    if not details:
        return None
    recorded = all(d.get("by_tools") for d in details)
    return {"model": name, "mode": mode, "all": _sum_pass([_pass(d["overall"]) for d in details]),
            "seen": _sum_pass([_pass(d["by_tools"].get("seen")) for d in details]) if recorded else None,
            "unseen": _sum_pass([_pass(d["by_tools"].get("unseen")) for d in details]) if recorded else None,
            "seen_recorded": recorded}


def _seed_of(config: PipelineConfig, k: int, name: str) -> int:
    return int(name.rsplit("-seed", 1)[1]) if "-seed" in name else config.seed + k - 1


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


def _seed_table(config: PipelineConfig, k: int, models: dict[str, ModelScores]) -> dict[str, Any]:
    per = {n: {"seed": _seed_of(config, k, n), **_scores(s), "counts": _counts(s)} for n, s in models.items()}
    spread = {key: [min(v), max(v)] for key in KEYS
              if (v := [m[key] for m in per.values() if m[key] is not None])}
    return {"models": per, "range": spread}


def _passed(config: PipelineConfig, k: int, groups: dict[str, dict[str, ModelScores]]) -> dict[int, dict[str, set]]:
    """Seed -> optimizer -> the held-out tasks its model passed, from round ``k``'s evaluation rows (those of the
    weights that were scored)."""
    from synth.improve.loop import round_config
    from synth.stages.outputs import RunOutputs

    outputs = RunOutputs(round_config(config, k).run_dir)
    rows = outputs.rows("eval", EvalRecord) if outputs.finished("eval") else []
    passed: dict[int, dict[str, set]] = {}
    for opt, models in groups.items():
        for name, scores in models.items():
            mine = [r for r in rows if r.model_name == name and r.identity == scores.identity
                    and r.mode == "unforced"]
            if mine:
                passed.setdefault(_seed_of(config, k, name), {})[opt] = {
                    r.task_id for r in mine if r.score and r.score.checks_passed}
    return passed


def _dedup(config: PipelineConfig, r: RoundResult) -> dict[str, Any] | None:
    """The near-duplicates the round's dataset dropped from train (``synth.data.trajectory_dedup``); None: no
    dataset, or one built before they were counted."""
    from synth.improve.loop import improve_root
    from synth.stages.dataset import built_dataset
    from synth.stages.outputs import RunOutputs

    built = built_dataset(RunOutputs(improve_root(config) / r.run)) if r.run else None
    # As JSON: a summary model from before the count has no such field.
    return (built.summary.model_dump(mode="json").get("dedup") if built is not None and built.summary is not None
            else None)


def data_value(report: ImproveReport, config: PipelineConfig) -> dict[str, Any]:
    from synth.machine import machine_info

    optimizers = list(config.improve.optimizers)
    last = max((r for r in report.rounds if r.round > 0), key=lambda r: r.round, default=None)
    base = report.rounds[0].models.get(BASE) if report.rounds and report.rounds[0].round == 0 else None
    groups = {opt: _seed_models(config, last, opt) for opt in optimizers}
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "run": report.run,
        "rounds": config.improve.rounds,
        "optimizers": optimizers,
        "train_trajectories": last.train_trajectories if last else 0,
        "heldout_tasks": report.heldout_tasks,
        "models": {BASE: _scores(base), **{opt: _mean_scores(list(ms.values())) for opt, ms in groups.items()}},
        # What the rates are shares of: a rate of 0 calls tried is n/a, and the count says so.
        "counts": {BASE: _counts(base), **{opt: _sum_counts(list(ms.values())) for opt, ms in groups.items()}},
        # The base forced (as generation forces it) and unforced, each optimizer's models as trained; by tools
        # seen in training, which no held-out task holds when the split is by tool group.
        "pass_rates": [row for name, mode, ms in [(BASE, "forced", [base] if base else []),
                                                  (BASE, "unforced", [base] if base else []),
                                                  *((opt, "unforced", list(ms.values())) for opt, ms in groups.items())]
                       if (row := _mode_row(name, mode, ms)) is not None],
    }
    if any(len(ms) > 1 for ms in groups.values()) and last is not None:
        out["seeds"] = {opt: _seed_table(config, last.round, ms) for opt, ms in groups.items() if ms}
    if len(optimizers) > 1 and last is not None:
        passed = _passed(config, last.round, groups)
        out["paired"] = {f"{a} vs {b}": paired(passed, a, b) for a, b in itertools.combinations(optimizers, 2)
                         if any(a in p and b in p for p in passed.values())}
    out["per_round"] = [{"round": r.round, "agent": r.agent, "agents": r.agents, "episodes": r.episodes,
                         "accepted_new": r.accepted_new, "dedup": _dedup(config, r),
                         "train_trajectories": r.train_trajectories, "note": r.note,
                         "generation": r.generation, "pipeline_wall_s": r.pipeline_wall_s,
                         "train_wall_s": r.train_wall_s, "eval_wall_s": r.eval_wall_s,
                         **{name: _scores(s) for name, s in r.models.items()}} for r in report.rounds]
    out["trained"] = dict(last.train_summaries) if last else {}
    out["config"] = {"agents.count": config.agents.count, "improve.agents_per_round": config.improve.agents_per_round,
                     "tasks.per_agent": config.tasks.per_agent,
                     "agents.toolset_size": list(config.agents.toolset_size),
                     "agents.coding_share": config.agents.coding_share,
                     "tasks.difficulties": list(config.tasks.difficulties),
                     "rollouts.max_turns": config.rollouts.max_turns,
                     "rollouts.samples": config.rollouts.samples, "judge.accept": config.judge.accept,
                     "dataset.heldout_share": config.dataset.heldout_share, "eval.max_tasks": config.eval.max_tasks,
                     "eval.temperature": config.eval.temperature, "eval.forced_models": list(config.eval.forced_models),
                     "improve.optimizers": optimizers, "train.epochs": config.train.epochs,
                     "train.lr": config.train.lr, "train.muon_lr": config.train.muon_lr,
                     "improve.train_here": config.improve.train_here,
                     "improve.replicates": config.improve.replicates,
                     "improve.train_by_round": config.improve.train_by_round,
                     "llm.model": config.llm.model or "embedded"}
    return out


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _label(data: dict[str, Any], name: str) -> str:
    n = len(data.get("seeds", {}).get(name, {}).get("models", {}))
    return f"{name} (mean of {n} seeds)" if n > 1 else name


def _seed_lines(data: dict[str, Any]) -> list[str]:
    """The seeds behind each optimizer's means (improve.replicates)."""
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
    return [*lines, ""]


def _paired_lines(data: dict[str, Any]) -> list[str]:
    """Each pair of optimizers, task by task on the same seeds."""
    lines = []
    for pair, p in (data.get("paired") or {}).items():
        a, b = pair.split(" vs ")
        per = "; ".join(f"seed {s}: {v[f'{a}_only']} vs {v[f'{b}_only']}" for s, v in p["seeds"].items())
        lines += [f"Paired by seed, tasks passed by {a}'s model only vs {b}'s only: {per}; in all "
                  f"{p[f'{a}_only']} vs {p[f'{b}_only']}, two-sided sign test p = {p['sign_test_p']:.2f}.", ""]
    return lines


def _rate_cell(cell: dict[str, Any] | None, recorded: bool = True) -> str:
    if not recorded:
        return "not recorded"
    if cell is None or not cell["checked"]:
        return "none (0 tasks)"
    return f"{_fmt(cell['rate'])} ({cell['passed']} of {cell['checked']})"


def _mode_lines(data: dict[str, Any]) -> list[str]:
    """Pass rate per model and mode, over every held-out task and by tools seen in training."""
    rows = data.get("pass_rates") or []
    if not rows:
        return []
    return ["## Pass rate by model and mode", "",
            "Code-check pass rate on the held-out tasks. Forced: the base with each step constrained as generation "
            "constrains the agent (a call where the turn expects one, an answer after it); unforced: nothing "
            "constrains it. Seen tools: held-out tasks holding a tool (by name) that a training task holds; the "
            "split is by tool group (MCP server, synthetic domain leaf), so none does and the column is empty by "
            "construction" + ("; an optimizer's counts are summed over its seeds" if "seeds" in data else "") + ".",
            "", "| model | mode | all held-out tasks | seen tools | unseen tools |", "|---|---|---|---|---|",
            *[f"| {_label(data, r['model'])} | {r['mode']} | {_rate_cell(r['all'])} | "
              f"{_rate_cell(r['seen'], r['seen_recorded'])} | {_rate_cell(r['unseen'], r['seen_recorded'])} |"
              for r in rows], ""]


def _dedup_cell(d: dict[str, Any] | None) -> str:
    if d is None:
        return "n/a"
    if not d["enabled"]:
        return "off"
    parts = [f"{d['within_run']} within the run", *(f"{n} near {name}" for name, n in sorted(d["against"].items())),
             f"{d['near_heldout']} near held-out"]
    return f"{d['dropped']} ({', '.join(parts)})"


def _secs(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} s"


def write_data_value(report: ImproveReport, config: PipelineConfig, out_dir: Path) -> Path:
    data = data_value(report, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "data_value.json").write_text(json.dumps(data, indent=2) + "\n")
    if report.plot and Path(report.plot).exists():
        shutil.copy(report.plot, out_dir / "data_value_curve.png")
    m = data["machine"]
    names = list(data["models"])
    lines = [
        "# Data value: base vs trained on held-out tasks", "",
        f"One `synth improve` run ({data['date']}), machine: {m.get('cpu', m)} ({m.get('cores', '?')} cores).",
        f"Run `{data['run']}`, {data['rounds']} round(s); config: "
        + ", ".join(f"`{k}={v}`" for k, v in data["config"].items()) + ".", "",
        f"- training trajectories (last round): {data['train_trajectories']}",
        f"- held-out tasks: {data['heldout_tasks']}", "",
        "| model | valid tool-call rate | code-check pass rate | judge score | episodes with a valid call |",
        "|---|---|---|---|---|",
        *[f"| {_label(data, name)} | " + " | ".join(_fmt(data["models"][name][k]) for k in KEYS) + " |"
          for name in names],
        "", "Valid tool-call rate: of the calls a model tried, those that parse, name a tool of the agent's toolset "
        "and validate against its schema (n/a when it tried none). Episodes with a valid call: of the held-out "
        "episodes, those with at least one valid call (0 for a model that tries none).", "",
        "Counts behind the rates (episodes; calls tried, valid; episodes with a valid call; episodes with code "
        "checks, all passed" + ("; summed over each optimizer's seeds" if "seeds" in data else "") + "):", "",
        "| model | episodes | calls tried | valid calls | episodes with a valid call | checked | passed |",
        "|---|---|---|---|---|---|---|",
        *[f"| {name} | " + " | ".join(str(c[k]) for k in COUNTS) + " |"
          for name, c in data["counts"].items() if c is not None], "",
        *_mode_lines(data),
        *_seed_lines(data),
        *_paired_lines(data),
        "Training (last round):", "",
        "| model | steps | loss first -> last | max logit | heads clipped | update RMS / lr | device | tokens/s "
        "| wall s |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {name} | {t.get('steps')} | {_num(t.get('first_loss'))} -> {_num(t.get('last_loss'))} | "
          f"{_num(t.get('max_logit'))} | {t.get('heads_clipped')} | {_num(t.get('update_rms'))} | "
          f"{t.get('device', 'n/a')} | "
          f"{_num(t.get('tokens_per_s'), 0)} | {_num(t.get('wall_s'), 1)} |" for name, t in data["trained"].items()],
        "",
        "## Per round", "",
        "| round | agent | agents | generation settings | accepted into train | near-duplicates dropped | trained on "
        "| note |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {r['round']} | {r['agent']} | {r.get('agents') or 'n/a'} | "
          + (", ".join(f"`{k}={v}`" for k, v in (r["generation"] or {}).items()) or "n/a")
          + f" | {r['accepted_new']} | {_dedup_cell(r.get('dedup'))} | {r['train_trajectories']} | {r['note'] or ''} |"
          for r in data["per_round"]],
        "",
        "![curve](data_value_curve.png)" if (out_dir / "data_value_curve.png").exists() else "", "",
        "## Measured cost", "",
        "Wall seconds of each stage in the process that ran it (a resumed stage counts only its own part; 0.0: "
        "nothing was left to run).", "",
        *[f"- round {r['round']}: " + (f"pipeline {_secs(r['pipeline_wall_s'])} for {r.get('episodes') or 'n/a'} "
                                       f"episodes, training {_secs(r['train_wall_s'])}, " if r["round"] else "")
          + f"evaluation {_secs(r['eval_wall_s'])}" for r in data["per_round"]], "",
    ]
    (out_dir / "data_value.md").write_text("\n".join(lines))
    return out_dir / "data_value.md"
