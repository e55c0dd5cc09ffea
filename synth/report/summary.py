"""The end-of-run summary: rows in and out per stage, rejections with reasons, tokens per role, wall time."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from synth.pipeline import PipelineReport
from synth.schemas.usage import ROLES, Usage
from synth.stages.base import StageSummary


def stage_table(summaries: list[StageSummary]) -> Table:
    table = Table(title="stages", show_lines=False)
    for col in ("stage", "planned", "ok", "failed", "resumed", "kept out / rejected", "tokens", "wall s"):
        table.add_column(col, justify="right" if col not in ("stage", "kept out / rejected") else "left")
    for s in summaries:
        usage = s.usage.total()
        why = ", ".join(f"{k}: {v}" for k, v in sorted(s.rejected.items(), key=lambda kv: -kv[1])[:4])
        errs = ", ".join(f"{k}: {v}" for k, v in s.errors.items())
        table.add_row(s.stage, str(s.planned), str(s.ok), f"{s.failed}" + (f" ({errs})" if errs else ""),
                      str(s.resumed), why, str(usage.prompt_tokens + usage.completion_tokens), f"{s.wall_s:.1f}")
    return table


def usage_table(summaries: list[StageSummary]) -> Table:
    """Tokens by role: paid (requests a server answered) and, apart, answered from the run's call cache (calls an
    interrupted run had paid for already), so a resumed run's extra spend, or the lack of it, shows."""
    table = Table(title="tokens by role (paid; from the call cache)")
    for col in ("role", "calls", "prompt", "completion", "cached calls", "cached prompt", "cached completion"):
        table.add_column(col, justify="right" if col != "role" else "left")
    for role in ROLES:
        u = Usage()
        for s in summaries:
            u.add(getattr(s.usage, role))
        if u.calls or u.cached_calls:
            table.add_row(role, str(u.calls), str(u.prompt_tokens), str(u.completion_tokens), str(u.cached_calls),
                          str(u.cached_prompt_tokens), str(u.cached_completion_tokens))
    return table


def print_report(report: PipelineReport, console: Console | None = None) -> None:
    console = console or Console()
    console.print(stage_table(report.stages))
    console.print(usage_table(report.stages))
    if report.dataset:
        d = report.dataset
        console.print(f"[bold]dataset[/bold] {d.path}: {d.trajectories} trajectories, "
                      f"{d.accepted} accepted, {d.rejected} rejected, {d.errored} failed before judging")
        if d.dedup is not None and d.dedup.enabled:
            earlier = "".join(f", {n} near {name}" for name, n in sorted(d.dedup.against.items()))
            console.print(f"[bold]near-duplicates[/bold] dropped from train: {d.dedup.dropped} of {d.dedup.checked} "
                          f"({d.dedup.within_run} within the run{earlier}, {d.dedup.near_heldout} near a held-out "
                          f"row; threshold {d.dedup.threshold})")
    for stage in report.stages:
        if stage.extra.get("mcp_servers") == "unconfined":
            console.print(f"[bold red]{stage.stage}: third-party MCP servers ran UNCONFINED[/bold red] "
                          "(rollouts.allow_unconfined=true)")
    if report.preflight is not None:
        from synth.preflight import describe

        for line in describe(report.preflight):
            console.print(line)
    console.print(f"run {report.run!r}: {report.stop} after {report.rounds} round(s), {report.wall_s:.1f}s")
