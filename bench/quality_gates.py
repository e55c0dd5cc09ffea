"""The quality gates (``synth.judge.gates``) on rows a run accepted: how many each gate rejects, how many pass them
all, and a sample of those that pass, rendered for a person to read.

    python -m bench.quality_gates ROWS.parquet [ROWS.parquet ...] [--seed 0] [--sample 20] [--out bench/results]

ROWS are dataset rows (``runs/<run>/dataset/data/train-*.parquet``: messages, tools, calls, difficulty). The models
of the data-value run's round 3 trained on the train splits of its three rounds, 259 rows, kept in the state
tarball that git history holds:

    git show d56b278:bench/state/data-value-improve.tar.gz > /tmp/dv.tgz
    mkdir -p /tmp/dv && tar xzf /tmp/dv.tgz -C /tmp/dv
    .venv/bin/python -m bench.quality_gates /tmp/dv/improve/round-{1,2,3}/dataset/data/train-00000-of-00001.parquet

Writes ``quality_gates.json`` and ``.md`` (rows in, rejected per gate, rejected by that gate alone, passing all)
and ``accepted_sample.md`` (up to ``--sample`` rows that pass every gate, drawn with ``--seed``).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from synth.config import QUALITY_GATES
from synth.judge.gates import failed, run_gates
from synth.schemas.messages import Message
from synth.schemas.records import CallRecord, TrajectoryRecord
from synth.schemas.verdict import CheckResult

RESULT_CHARS = 600  # a tool result is cut here in the sample: enough to see what the answer had to report


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def trajectory(row: dict[str, Any]) -> TrajectoryRecord:
    """A dataset row as the trajectory the judge saw."""
    return TrajectoryRecord(
        id=row["id"], task_id=row.get("task_id") or "", agent_id=row.get("agent_id") or "",
        messages=[Message(**{**m, "tool_calls": m.get("tool_calls") or None}) for m in row["messages"]],
        tools=[_json(t) for t in row.get("tools") or []],
        calls=[CallRecord(**c) for c in _json(row.get("calls")) or []],
    )


def read_rows(paths: list[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in paths:
        rows += pq.read_table(path).to_pylist()
    return rows


def _label(path: Path) -> str:
    """The path from the run folder on (``improve/round-3/...``), so the results do not name this machine's /tmp."""
    parts = path.parts
    return str(Path(*parts[parts.index("improve"):])) if "improve" in parts else path.name


def evaluate(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[CheckResult]]]:
    return [(row, run_gates(trajectory(row), coding=row.get("difficulty") == "coding")) for row in rows]


def summarize(judged: list[tuple[dict[str, Any], list[CheckResult]]], sources: list[str], seed: int,
              sample_ids: list[str]) -> dict[str, Any]:
    gates: dict[str, dict[str, Any]] = {name: {"rejected": 0, "rejected_alone": 0, "example": None}
                                        for name in QUALITY_GATES}
    for row, results in judged:
        names = failed(results)
        for r in results:
            if not r.passed:
                cell = gates[r.check_id]
                cell["rejected"] += 1
                cell["rejected_alone"] += names == [r.check_id]
                cell["example"] = cell["example"] or {"row": row["id"], "detail": r.detail}
    passing = [row["id"] for row, results in judged if not failed(results)]
    return {"sources": sources, "rows": len(judged), "gates": gates, "passing_all": len(passing),
            "rejected_any": len(judged) - len(passing), "passing_ids": passing, "seed": seed,
            "sample": sample_ids}


def markdown(summary: dict[str, Any]) -> str:
    n = summary["rows"]
    lines = [
        "# Quality gates on accepted rows",
        "",
        f"Rows in: {n} (from {', '.join(summary['sources'])}). Passing every gate: **{summary['passing_all']}** "
        f"({summary['passing_all'] / n:.0%}); rejected by at least one: {summary['rejected_any']}.",
        "Gates: `synth/judge/gates.py`; a row can fail several, so the column sums exceed the rows rejected. "
        "Made by `python -m bench.quality_gates` (its docstring says how to extract the rows from git history).",
        "",
        "| gate | rejects | share | rejects alone | example |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, cell in summary["gates"].items():
        example = (cell["example"] or {}).get("detail", "")
        example = example.replace("|", "/").replace("`", "'").replace("\n", " ")
        example = example if len(example) <= 110 else example[:107] + "..."
        example = f"`{example}`" if example else ""  # code span: the details quote tags that would render as HTML
        lines.append(f"| `{name}` | {cell['rejected']} | {cell['rejected'] / n:.0%} | {cell['rejected_alone']} | "
                     f"{example} |")
    lines += ["", f"A sample of {len(summary['sample'])} passing rows (seed {summary['seed']}) is rendered in "
                  "`accepted_sample.md`."]
    return "\n".join(lines) + "\n"


def _block(text: str, limit: int | None = None) -> list[str]:
    text = text if limit is None or len(text) <= limit else text[:limit] + " [...cut]"
    fence = "````" if "```" in text else "```"
    return [f"{fence}text", text, fence]


def render_row(row: dict[str, Any]) -> str:
    traj = trajectory(row)
    names = [t.get("function", t).get("name", "?") for t in traj.tools]
    lines = [f"## {row['id']}", "",
             f"task `{row.get('task_id')}` · {row.get('difficulty')} · domain {row.get('domain') or '-'} · "
             f"tools: {', '.join(f'`{n}`' for n in names) or 'none'}", ""]
    last = max((i for i, m in enumerate(traj.messages) if m.role == "assistant"), default=-1)
    for i, msg in enumerate(traj.messages):
        if msg.role == "system":
            continue
        if msg.role == "user":
            lines += ["**User**", "", *_block(msg.content or ""), ""]
        elif msg.role == "tool":
            lines += ["**Tool result**", "", *_block(msg.content or "", RESULT_CHARS), ""]
        else:
            for call in msg.tool_calls or []:
                lines += [f"**Call** `{call.function.name}`", "", *_block(call.function.arguments), ""]
            if (msg.content or "").strip():
                label = "**Final answer**" if i == last else "**Assistant**"
                lines += [label, "", *_block(msg.content or ""), ""]
    return "\n".join(lines)


def sample_markdown(rows: list[dict[str, Any]], wanted: int, seed: int, passing: int, total: int) -> str:
    head = [f"# {len(rows)} accepted rows that pass every quality gate", "",
            f"Drawn at random (seed {seed}) from the {passing} of {total} rows that pass every gate of "
            "`synth/judge/gates.py`; written by `bench/quality_gates.py`."]
    if passing < wanted:
        head.append(f"Fewer rows pass than the {wanted} asked for ({passing}): all of them are shown.")
    return "\n".join(head) + "\n\n" + "\n\n".join(render_row(r) for r in rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="+", type=Path, help="dataset Parquet files (train split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    rows = read_rows(args.rows)
    judged = evaluate(rows)
    passing = sorted((row for row, results in judged if not failed(results)), key=lambda r: r["id"])
    chosen = random.Random(args.seed).sample(passing, min(args.sample, len(passing)))
    summary = summarize(judged, [_label(p) for p in args.rows], args.seed, [r["id"] for r in chosen])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality_gates.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "quality_gates.md").write_text(markdown(summary))
    (args.out / "accepted_sample.md").write_text(sample_markdown(chosen, args.sample, args.seed, len(passing),
                                                                 len(rows)))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
