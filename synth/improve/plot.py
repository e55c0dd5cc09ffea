"""The improvement curve: valid-call rate, pass rate and judge score on the held-out tasks, per round and model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt

from synth.improve.models import optimizer_of

if TYPE_CHECKING:
    from synth.improve.models import ImproveReport

METRICS = (("valid_call_rate", "valid tool-call rate"), ("pass_rate", "code-check pass rate"),
           ("judge_score", "judge score"))


def plot_curve(report: ImproveReport, path: Path) -> Path:
    """One panel per metric; x = round (0 = the base model), one line per optimizer, the base as a dashed line."""
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.4), sharex=True)
    base = report.rounds[0].models.get("base") if report.rounds else None
    names = sorted({m for r in report.rounds for m in r.models if m != "base"})
    # Seed replicates (improve.replicates) are points beside their optimizer's line, in its colour: a line through
    # round 0's base to one last-round point would read as a curve that was never measured.
    own = [n for n in names if optimizer_of(n) == n]
    for ax, (key, title) in zip(axes, METRICS, strict=True):
        if base is not None and getattr(base, key) is not None:
            ax.axhline(getattr(base, key), color="grey", linestyle="--", label="base")
        for name in own:
            xs, ys = [0] if base is not None and getattr(base, key) is not None else [], []
            if xs:
                ys.append(getattr(base, key))
            for r in report.rounds:
                scores = r.models.get(name)
                if scores is not None and getattr(scores, key) is not None:
                    xs.append(r.round)
                    ys.append(getattr(scores, key))
            (line,) = ax.plot(xs, ys, marker="o", label=name)
            seeds = [(r.round, getattr(s, key)) for r in report.rounds for n, s in r.models.items()
                     if n != name and optimizer_of(n) == name and getattr(s, key) is not None]
            if seeds:
                ax.scatter(*zip(*seeds, strict=True), marker="x", color=line.get_color(), label=f"{name}, other seeds")
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.set_ylim(-0.03, 1.03)  # a rate of exactly 0 stays visible
        if not ax.lines:
            ax.text(0.5, 0.5, "not measured\n(no tool calls / no model)", ha="center", va="center",
                    transform=ax.transAxes, color="grey")
        ax.set_xticks([r.round for r in report.rounds])
        ax.grid(alpha=0.3)
    for ax in axes:  # the legend on the first panel that has lines (a metric may be unmeasured everywhere)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
            break
    heldout = report.heldout_tasks
    fig.suptitle(f"synth improve '{report.run}': held-out tasks = {heldout}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
