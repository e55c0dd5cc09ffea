"""The dataset card: README.md with the Hub's YAML metadata and this run's statistics. The dataset stage writes it
into the dataset's folder; the ``card`` stage adds the held-out evaluation to it (``synth.stages.card``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from synth.config import PipelineConfig
from synth.data.summary import DatasetSummary


def _configs(summary: DatasetSummary) -> list[dict[str, Any]]:
    """Configs naming only splits that have rows (an empty split has no Parquet file to point at)."""
    files = [{"split": name, "path": f"data/{name}-*.parquet"}
             for name, n in (("train", summary.accepted), ("rejected", summary.rejected),
                             ("heldout", summary.heldout)) if n]
    configs = [{"config_name": "default", "data_files": files}] if files else []
    if summary.accepted:
        configs.append({"config_name": "sft", "data_files": [{"split": "train", "path": "sft/train-*.parquet"}]})
    return configs


def write_card(path: Path, config: PipelineConfig, summary: DatasetSummary, rows: list[dict[str, Any]]) -> None:
    from synth.tools.provenance import licence_section, run_provenance

    models = sorted({r["model"] for r in rows if r["model"]})
    servers = {c["server"] for r in rows for c in (r["calls"] or []) if c.get("server")}
    # Derived from the model's and the real tools' licences, never assumed (unknown when any is unknown).
    licence = licence_section(models[0] if len(models) == 1 else ", ".join(models) or "n/a", servers)
    run = run_provenance()
    meta = {
        "license": licence.license,
        "language": ["en"],
        "pretty_name": f"synth agentic tool-use trajectories ({config.run})",
        "tags": ["synthetic", "tool-use", "agents", "function-calling", "synth"],
        "task_categories": ["text-generation"],
        "size_categories": ["n<1K" if summary.accepted < 1000 else "1K<n<10K"],
        "configs": _configs(summary),
    }
    calls = Counter(c["mode"] for r in rows for c in (r["calls"] or []))
    tokens = Counter()
    for r in rows:
        for role, usage in r["usage"].items():
            tokens[role] += usage["prompt_tokens"] + usage["completion_tokens"]
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
        f"# {meta['pretty_name']}", "",
        "Multi-turn tool-use trajectories made by synth the way the Kimi K2 report "
        "describes: agents with toolsets from real MCP servers and synthetic tools, tasks with rubrics, a persona "
        "user simulator, a stateful tool simulator with injected failures, real sandboxed execution, and an LLM "
        f"judge. Only accepted trajectories (`judge.accept: {summary.accept_mode}`) are in `train`; the rest are in "
        "`rejected` with their verdicts. Tasks in `heldout` never enter `train`, nor does any tool they hold: "
        "a share of the tool groups (MCP servers, synthetic domain leaves; coding problems) is held out, a task "
        "whose tools are all held out is in `heldout`, one whose tools mix both sides is in no split. Evaluate on "
        "them.", "",
        "## Statistics", "",
        "| | count |", "|---|---|",
        f"| trajectories | {summary.trajectories} |",
        f"| accepted (train) | {summary.accepted} |",
        f"| rejected | {summary.rejected} |",
        f"| held out ({summary.heldout_tasks} tasks) | {summary.heldout} |",
        f"| in no split ({sum(summary.excluded_tasks.values())} tasks on neither side; training episodes that "
        f"call a held-out tool) | {summary.excluded} |",
        f"| failed before judging | {summary.errored} |",
        *([f"| near-duplicates dropped from train | {summary.dedup.dropped} |"] if summary.dedup else []), "",
        *heldout_lines(summary),
        *dedup_lines(summary),
        *contamination_lines(summary),
        "| accepted by | count |", "|---|---|",
        *[f"| {k} | {n} |" for k, n in sorted(summary.accepted_by.items())], "",
        "| difficulty | accepted | rejected | held out |", "|---|---|---|---|",
        *[f"| {d} | {c['accepted']} | {c['rejected']} | {c.get('heldout', 0)} |"
          for d, c in sorted(summary.by_difficulty.items())], "",
        *calibration_lines(summary.calibration),
        "| tool calls by mode | count |", "|---|---|",
        *[f"| {m} | {n} |" for m, n in sorted(calls.items())], "",
        "| tokens by role | count |", "|---|---|",
        *[f"| {role} | {n} |" for role, n in sorted(tokens.items())], "",
        "## Columns", "",
        "- `messages`: OpenAI chat form; assistant turns carry `tool_calls` with `function.arguments` as a JSON "
        "string, tool results are `role: tool` messages with `tool_call_id`.",
        "- `tools`: the agent's tools in OpenAI function form.",
        "- `rubric`, `verdict`: the task's criteria and code checks; per-criterion scores with evidence.",
        "- `calls`: for each tool call, whether it ran for real, was simulated, or was refused by schema; "
        "injected failures.",
        "- `usage`: tokens per role (agent, user simulator, tool simulator, judge).",
        "- `accepted_by`: what accepted the row (`verifiable`: code checks; `llm`: the LLM judge; `both`), "
        "`acceptance`: the decision with the trusted criteria or the reasons; `heldout`: the task is held out; "
        "`sample`: which of the task's best-of-N episodes it is.",
        "- config `sft`: only `messages` and `tools`, arguments as objects, for TRL's `SFTTrainer`.", "",
        licence.markdown,
        "## Provenance", "",
        f"- models: {', '.join(models) or 'n/a'}",
        f"- run: `{config.run}`, seed {config.seed}",
        f"- commit: `{run['commit'] or 'unknown'}`{' (with uncommitted changes)' if run['dirty'] else ''}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in sorted(run["packages"].items())),
    ]
    path.write_text("\n".join(lines) + "\n")


def heldout_lines(summary: DatasetSummary) -> list[str]:
    """The held-out split: what it holds out and what it left on neither side."""
    why = ", ".join(f"{n} {k}" for k, n in sorted(summary.excluded_tasks.items())) or "none"
    return ["## Held-out split", "",
            f"Held out: {summary.heldout_tasks} tasks, holding {summary.heldout_tools} tools of "
            f"{summary.heldout_groups} tool groups that no `train` row holds. Tasks on neither side: {why}.", ""]


def dedup_lines(summary: DatasetSummary) -> list[str]:
    """How many train rows were dropped as near-copies, and of what."""
    d = summary.dedup
    if d is None:
        return []
    lines = ["## Deduplication", ""]
    how = ("Near-duplicate trajectories are found with MinHash LSH over word 3-shingles of a normalised transcript "
           "(user turns, tool names and argument values; not the system prompt, ids, timings or tool results): a "
           f"train row whose estimated Jaccard similarity to another is at least {d.threshold} is a copy "
           "(`dataset.dedup.threshold`). Held-out rows are never dropped; a train row near one is, and no row moves "
           "to another split.")
    if not d.enabled:
        return [*lines, f"Off (`dataset.dedup.enabled: false`): all {d.checked} train rows kept. {how}", ""]
    return [*lines, how, "", "| train rows | count |", "|---|---|", f"| checked | {d.checked} |",
            f"| near a train row of this run (the first, by judge score then id, is kept) | {d.within_run} |",
            *[f"| near a train row of `{name}` | {n} |" for name, n in sorted(d.against.items())],
            f"| near a held-out row | {d.near_heldout} |",
            f"| dropped in all | {d.dropped} |", "",
            "The index of the kept train rows and the held-out rows (`dedup/`), which later runs check against, "
            "and the dropped rows with the row each copies (`dedup/dropped.jsonl`) are beside the data.", ""]


def contamination_lines(summary: DatasetSummary) -> list[str]:
    """How much of BFCL (function names, questions) the train split holds."""
    c = summary.contamination
    if c is None:
        return []
    lines = ["## BFCL contamination", ""]
    if c.count is None:
        return [*lines, f"Rows of `train` holding a BFCL function name or question: unknown ({c.note}).", ""]
    lines.append(f"Rows of `train` holding a BFCL function name or question: {c.count}.")
    if c.kept_out:
        n = len(c.questions)
        held = "; ".join([*([", ".join(c.names)] if c.names else []),
                          *([f"{n} BFCL question{'s' if n > 1 else ''}"] if n else [])])
        lines.append(f"Accepted rows kept out of `train` for holding one: {c.kept_out} ({held}).")
    return [*lines, ""]


def calibration_lines(cal: dict[str, Any]) -> list[str]:
    """The judge-calibration section: LLM judge vs code checks, overall and per criterion."""
    if not cal:
        return []
    overall = cal.get("overall", {})
    lines = ["## Judge calibration", "",
             "Agreement between the LLM judge and the code checks on trajectories where both apply (the code's "
             "decision is the reference; a criterion counts as met when scored above 0). Kappa is agreement beyond "
             f"chance. `auto` trusts a criterion at agreement >= {cal.get('trust_agreement')}, kappa above 0, over "
             f"at least {cal.get('min_pairs')} pairs.{_sample_note(cal.get('sample_share', 1.0))}", "",
             "| | pairs | agreement | kappa | both pass | code only | judge only | both fail | trusted |",
             "|---|---|---|---|---|---|---|---|---|",
             _cal_row("overall (judge's decision)", overall, None)]
    for cid, a in cal.get("criteria", {}).items():
        lines.append(_cal_row(cid, a, a.get("trusted")))
    return [*lines, ""]


def _sample_note(share: float) -> str:
    if share >= 1:
        return ""
    return (f" Measured on a uniform sample of about {share:.0%} of the trajectories, fixed by row id "
            "(`judge.calibration_share`); outside it the judge scored only rows a code check had not rejected.")


def _cal_row(name: str, a: dict[str, Any], trusted: bool | None) -> str:
    def fmt(x: Any) -> str:
        return "n/a" if x is None else f"{x:.2f}" if isinstance(x, float) else str(x)

    mark = "" if trusted is None else ("yes" if trusted else "no")
    return (f"| {name} | {a.get('pairs', 0)} | {fmt(a.get('agreement'))} | {fmt(a.get('kappa'))} | "
            f"{a.get('both_pass', 0)} | {a.get('code_only', 0)} | {a.get('llm_only', 0)} | {a.get('both_fail', 0)} "
            f"| {mark} |")
