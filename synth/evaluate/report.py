"""The eval's outputs in ``runs/<run>/eval/``: ``eval.md`` (one table per measure, models side by side, per
difficulty with counts; the pass rate of each model and mode on tasks whose tools training saw and did not), one
PNG per measure, and ``eval.json`` (the whole summary); and its section of the dataset card (which the ``card``
stage puts in)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from synth.evaluate.episode import MODES

if TYPE_CHECKING:
    from synth.evaluate.episode import EvalSummary
    from synth.evaluate.metrics import Scores

MEASURES = [
    ("valid_call_rate", "(a) valid tool-call rate",
     "calls that the server's parser read, that name a tool of the agent's toolset and whose arguments validate "
     "against its JSON Schema, of the calls tried"),
    ("pass_rate", "(b) code-check pass rate", "episodes where every code check of the rubric passed, of the "
     "episodes whose rubric has checks"),
    ("judge_score", "(c) judge score", "mean weighted rubric score in [0, 1] (0 for an episode that could not be "
     "judged)"),
]


def _cell(s: Scores, key: str) -> str:
    if key == "valid_call_rate":
        return f"{s.valid_call_rate:.0%} ({s.calls_valid}/{s.calls_attempted})" if s.calls_attempted else "- (0/0)"
    if key == "pass_rate":
        return f"{s.pass_rate:.0%} ({s.checks_passed}/{s.checked_episodes})" if s.checked_episodes else "- (0/0)"
    return f"{s.judge_score:.2f} (n={s.episodes})"


def seen_note(seen: list[str] | None) -> str:
    """What the seen-tools column holds."""
    if seen is None:
        return ("The dataset did not record which held-out tasks hold a tool training used: no seen/unseen "
                "columns.")
    if not seen:
        return ("Seen tools: held-out tasks holding a tool (by name) that a training task holds. None does: the "
                "split is by tool group (MCP server, synthetic domain leaf), so the column is empty by "
                "construction.")
    return (f"Seen tools: the {len(seen)} held-out tasks holding a tool (by name) that a training task holds; "
            "unseen: the others.")


def mode_rows(summary: EvalSummary) -> list[str]:
    """Pass rate (and valid calls) of each model and mode, over all held-out tasks and by tools seen in
    training."""
    split = summary.seen is not None
    lines = ["| model | mode | pass rate | valid tool-call rate | episodes with a valid call |"
             + (" seen tools: pass rate | unseen tools: pass rate |" if split else ""),
             "| --- | --- | --- | --- | --- |" + (" --- | --- |" if split else "")]
    for name, m in summary.models.items():
        for mode in MODES:
            scores = m.mode(mode)
            if scores is None:
                continue
            o = scores.overall
            cells = [_cell(o, "pass_rate"), _cell(o, "valid_call_rate"),
                     f"{o.episodes_with_valid_call} of {o.episodes}"]
            if split:
                cells += [_cell(scores.by_tools[k], "pass_rate") if k in scores.by_tools else "-"
                          for k in ("seen", "unseen")]
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    return lines


def markdown(summary: EvalSummary) -> str:
    names = list(summary.models)
    rows = ["all", *summary.difficulties]
    lines = [f"# Held-out evaluation: run `{summary.run}`", "",
             f"{len(summary.task_ids)} held-out tasks (share {summary.heldout_share} of the tool groups, as the "
             "dataset recorded them), one episode each per model and mode, the model under test as the agent in "
             "native tool-calling mode (vLLM, hermes parser); simulators and judge on the run's endpoints. "
             "Unforced: nothing constrains the model's decoding. Forced: each step constrained as generation "
             "constrains the agent (a call where the turn expects one, an answer after it). The tables by "
             "measure are unforced.", "",
             "## Pass rate by model and mode", "", seen_note(summary.seen), "", *mode_rows(summary), ""]
    for key, title, meaning in MEASURES:
        lines += [f"## {title}", "", meaning + ".", "", "| difficulty | tasks | " + " | ".join(names) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
        for row in rows:
            tasks = len(summary.task_ids) if row == "all" else summary.difficulties[row]
            cells = []
            for name in names:
                m = summary.models[name]
                s = m.overall if row == "all" else m.by_difficulty.get(row)
                cells.append(_cell(s, key) if s is not None else "-")
            lines.append(f"| {row} | {tasks} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Episodes", "", "| model | episodes | accepted | errored | episodes with a valid call | "
              "call outcomes |", "| --- | --- | --- | --- | --- | --- |"]
    for name, m in summary.models.items():
        o = m.overall
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(o.call_outcomes.items())) or "no calls"
        lines.append(f"| {name} | {o.episodes} | {o.accepted} | {o.errored} | {o.episodes_with_valid_call} | "
                     f"{outcomes} |")
    lines.append("")
    return "\n".join(lines)


def plot(summary: EvalSummary, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary.models)
    groups = ["all", *summary.difficulties]
    paths = []
    width = 0.8 / max(1, len(names))
    for key, title, _ in MEASURES:
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(groups), 3.6))
        for i, name in enumerate(names):
            m = summary.models[name]
            values = []
            for g in groups:
                s = m.overall if g == "all" else m.by_difficulty.get(g)
                values.append(getattr(s, key) if s is not None else 0.0)
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(groups))]
            ax.bar(xs, values, width=width, label=name)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{g}\n({len(summary.task_ids) if g == 'all' else summary.difficulties[g]})"
                            for g in groups], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{title}: held-out tasks of {summary.run}", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"eval_{key}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(str(path))
    return paths


CARD_BEGIN = "<!-- synth eval -->"
CARD_END = "<!-- /synth eval -->"


def card_section(summary: EvalSummary) -> str:
    """The eval in a few lines for the dataset card: overall (a), (b), (c) per model, with counts."""
    lines = [CARD_BEGIN, "## Held-out evaluation", "",
             f"{len(summary.task_ids)} held-out tasks (never in `train`; their tools' groups are held out), one "
             "episode each per model and mode, the model under test as the agent with native tool calls; details "
             "in `eval/eval.md` of the run.", "",
             "| model | mode | valid tool-call rate | code-check pass rate | judge score |",
             "| --- | --- | --- | --- | --- |"]
    for name, m in summary.models.items():
        for mode in MODES:
            scores = m.mode(mode)
            if scores is not None:
                o = scores.overall
                lines.append(f"| {name} | {mode} | {_cell(o, 'valid_call_rate')} | {_cell(o, 'pass_rate')} | "
                             f"{_cell(o, 'judge_score')} |")
    lines += ["", seen_note(summary.seen), "", *mode_rows(summary)]
    return "\n".join([*lines, "", CARD_END]) + "\n"


def with_section(card: str, summary: EvalSummary) -> str:
    """The dataset card ``card`` with the eval section at its end (in place of one it holds already)."""
    if CARD_BEGIN in card and CARD_END in card:
        card = card[: card.index(CARD_BEGIN)] + card[card.index(CARD_END) + len(CARD_END):].lstrip("\n")
    return card.rstrip("\n") + "\n\n" + card_section(summary)


def write_report(summary: EvalSummary, out_dir: Path) -> EvalSummary:
    """Write ``eval.md``, the plots and ``eval.json`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summary.model_copy(update={"table": str(out_dir / "eval.md"), "plots": plot(summary, out_dir)})
    (out_dir / "eval.md").write_text(markdown(summary))
    (out_dir / "eval.json").write_text(summary.model_dump_json(indent=2))
    return summary
