"""The run's report page: one self-contained HTML file (plots inline as PNG) a person reads at a glance."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt

from synth.config import PipelineConfig
from synth.errors import SynthError
from synth.report.analysis import RunAnalysis, analyse


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _bar(title: str, labels: list[str], values: list[float], xlabel: str = "", xmax: float | None = None) -> str:
    fig, ax = plt.subplots(figsize=(6, 0.4 * max(3, len(labels)) + 0.8))
    ax.barh(labels[::-1], values[::-1], color="#4C72B0")
    ax.set_xlim(0, xmax if xmax is not None else max([*values, 1]) * 1.15)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    for i, v in enumerate(values[::-1]):
        ax.text(v, i, f" {v:g}", va="center")
    return _png(fig)


def _rate_bar(title: str, table: dict[str, tuple[int, int]]) -> str:
    labels = [f"{k} (n={n})" for k, (_, n) in table.items()]
    return _bar(title, labels, [round(100 * a / n, 1) if n else 0 for a, n in table.values()], "% accepted", 100)


def _scores_plot(scores: dict[str, dict[int, int]]) -> str:
    names = list(scores)
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(3, len(names)) + 1))
    left = [0] * len(names)
    for score, color in ((0, "#C44E52"), (1, "#DD8452"), (2, "#55A868")):
        vals = [scores[n].get(score, 0) for n in names]
        ax.barh(names, vals, left=left, color=color, label=f"score {score}")
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    ax.set_title("judge scores per criterion")
    return _png(fig)


def _table(rows: dict, head: tuple[str, str]) -> str:
    rows = rows or {"(none)": 0}
    body = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table><tr><th>{head[0]}</th><th>{head[1]}</th></tr>{body}</table>"


def _calibration(cal: dict) -> list[str]:
    """LLM judge vs code checks: agreement and kappa per criterion, with whether ``auto`` trusts it."""
    if not cal:
        return []
    head = ("<tr><th>criterion</th><th>pairs</th><th>agreement</th><th>kappa</th><th>both pass</th>"
            "<th>code only</th><th>judge only</th><th>both fail</th><th>trusted</th></tr>")

    def row(name: str, c: dict, trusted: bool | None) -> str:
        cells = [name, c.get("pairs"), c.get("agreement"), c.get("kappa"), c.get("both_pass"), c.get("code_only"),
                 c.get("llm_only"), c.get("both_fail"), "" if trusted is None else ("yes" if trusted else "no")]
        return "<tr>" + "".join(f"<td>{html.escape('n/a' if x is None else str(x))}</td>" for x in cells) + "</tr>"

    body = row("overall (judge's decision)", cal.get("overall", {}), None) + "".join(
        row(cid, c, c.get("trusted")) for cid, c in cal.get("criteria", {}).items())
    return [f"<h2>judge calibration: LLM judge vs code checks (auto trusts agreement &ge; "
            f"{cal.get('trust_agreement')} and kappa &gt; 0 over &ge; {cal.get('min_pairs')} pairs; sample: "
            f"{cal.get('sample_share', 1.0):.0%} of rows)</h2>",
            f"<table>{head}{body}</table>"]


def render(a: RunAnalysis, title: str) -> str:
    parts = [f"<h1>{html.escape(title)}</h1>",
             _bar("funnel", [k for k, _ in a.funnel], [v for _, v in a.funnel], "rows")]
    if a.acceptance_by_difficulty:
        parts.append(_rate_bar("acceptance by difficulty", a.acceptance_by_difficulty))
    if a.acceptance_by_domain:
        parts.append(_rate_bar("acceptance by domain", a.acceptance_by_domain))
    if a.criterion_scores:
        parts.append(_scores_plot(a.criterion_scores))
    if a.call_modes:
        parts.append(_bar("tool calls by mode (real MCP / simulated / sandboxed Python / refused by schema)",
                          list(a.call_modes), list(a.call_modes.values())))
    if a.turns:
        parts.append(_bar("user turns per episode", [str(k) for k in a.turns], list(a.turns.values())))
    parts += [
        "<h2>code checks (passed / total)</h2>", _table({k: f"{p}/{n}" for k, (p, n) in a.check_pass.items()},
                                                        ("check", "passed")),
        "<h2>injected tool failures</h2>", _table(a.injected, ("kind", "count")),
        "<h2>what the agent did next</h2>", _table(a.recovery, ("after a failure", "count")),
        "<h2>why trajectories were rejected</h2>", _table(a.rejection_reasons, ("reason", "count")),
        f"<h2>acceptance (judge.accept: {html.escape(a.accept_mode)})</h2>",
        _table(a.accepted_by, ("accepted by", "count")),
        f"<p>held out for evaluation (never in train): {a.heldout[0]} tasks, {a.heldout[1]} judged "
        f"trajectories; on neither side (their tools mix held-out and training groups): {a.excluded[0]} tasks, "
        f"{a.excluded[1]} judged trajectories</p>",
        *_calibration(a.calibration),
    ]
    style = ("body{font-family:sans-serif;max-width:900px;margin:auto}img{display:block;margin:12px 0}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"


class NoSuchRun(SynthError, FileNotFoundError):
    """The run to report on has no folder: it was never run under this runs_dir and name."""

    hint = "pass --run with the name of a run under runs_dir (or --set runs_dir=DIR), or run `synth pipeline` first"


def write_page(config: PipelineConfig) -> Path:
    if not config.run_dir.is_dir():
        raise NoSuchRun(f"no run {config.run!r} in {config.runs_dir}: {config.run_dir} does not exist")
    analysis = analyse(config.run_dir, config)
    out = config.run_dir / "report.html"
    out.write_text(render(analysis, f"synth run '{config.run}'"))
    (config.run_dir / "analysis.json").write_text(analysis.model_dump_json(indent=2))
    return out
