"""``synth eval``: the run's held-out tasks as full episodes, with the model under test as the agent.

Each model is served by vLLM on ``eval.port`` with the training template and the ``hermes`` tool parser, and
plays the agent in native tool-calling mode: the server's parser reads its ``<tool_call>`` blocks, nothing
constrains its decoding (a coding task's first step is not forced to call the sandbox either, since a named
``tool_choice`` is guided decoding). The user simulator, the tool simulator and the judge stay on the run's
endpoints (``llm.roles`` applies to them as in the pipeline). Every model plays the same tasks with the same
seeds, so their simulators draw the same users and tool failures.

Rows go to ``runs/<run>/eval/<model>/`` as they finish (a stage store: a killed eval resumes, a retrained
checkpoint gets new rows); the table, plots and JSON summary go to ``runs/<run>/eval/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from synth.config import EmbeddedConfig, EndpointConfig, JudgeStageConfig, PipelineConfig, RolloutsStageConfig
from synth.evaluate.metrics import CallStats, EpisodeScore, Scores, aggregate, episode_score, reply_calls
from synth.llm.client import EndpointUnavailable, LLMPool
from synth.schemas.ids import eval_id
from synth.schemas.records import AgentRecord, Row, RowError, TaskRecord, TrajectoryRecord
from synth.schemas.usage import UsageByRole
from synth.schemas.verdict import Verdict
from synth.stages.outputs import RunOutputs
from synth.stages.store import JournalWriter, StageStore
from synth.train.template import TEMPLATE_PATH, TOOL_CALL_PARSER

log = logging.getLogger(__name__)
BASE = "base"


class EvalRecord(Row):
    """One held-out episode of one model, judged."""

    model_name: str = ""
    checkpoint: str = ""
    task_id: str = ""
    agent_id: str = ""
    difficulty: str = ""
    trajectory: TrajectoryRecord | None = None
    verdict: Verdict | None = None
    score: EpisodeScore | None = None


class ModelEval(BaseModel):
    name: str
    checkpoint: str
    served_name: str
    overall: Scores
    by_difficulty: dict[str, Scores] = Field(default_factory=dict)
    usage: UsageByRole = Field(default_factory=UsageByRole)
    wall_s: float = Field(default=0.0, description="Wall time of this model's episodes in this process.")
    resumed: int = Field(default=0, description="Episodes found on disk from an earlier eval and not redone.")


class EvalSummary(BaseModel):
    run: str
    heldout_share: float
    task_ids: list[str]
    difficulties: dict[str, int] = Field(description="Held-out tasks per difficulty.")
    models: dict[str, ModelEval]
    table: str | None = None
    plots: list[str] = Field(default_factory=list)


class _RecordingPool:
    """The agent's pool, keeping every reply it returns: the evaluator scores the calls as the server parsed
    them (an episode keeps only the calls that parse into arguments objects)."""

    def __init__(self, inner: LLMPool, shown_config: Any) -> None:
        self.inner = inner
        self.shown_config = shown_config
        self.replies: list[Any] = []

    @property
    def config(self) -> Any:
        # What the episode's other roles read through the routed pool (the simulators' reply budgets): the run's
        # settings, not the agent's eval overrides. The agent's own requests use ``inner.config``.
        return self.shown_config

    @property
    def usage(self) -> UsageByRole:
        return self.inner.usage

    async def model(self) -> str:
        return await self.inner.model()

    async def chat(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        result = await self.inner.chat(messages, **kwargs)
        self.replies.append(result.message)
        return result

    async def structured(self, messages: list[dict[str, Any]], schema: Any, **kwargs: Any) -> Any:
        return await self.inner.structured(messages, schema, **kwargs)


def heldout(config: PipelineConfig, task_ids: list[str] | None = None) -> list[TaskRecord]:
    """The tasks to evaluate on: ``task_ids`` when given (they must be tasks of this run), else the run's held-out
    tasks; at most ``eval.max_tasks``, in id order (ids are hashes, so any prefix mixes difficulties)."""
    from synth.stages.dataset_build import heldout_tasks

    share = config.eval.heldout_share if config.eval.heldout_share is not None else config.dataset.heldout_share
    cfg = config.model_copy(update={"dataset": config.dataset.model_copy(update={"heldout_share": share})})
    if task_ids is not None:
        every = {t.id: t for t in RunOutputs(config.run_dir).rows("tasks", TaskRecord)}
        missing = [t for t in task_ids if t not in every]
        if missing:
            raise ValueError(f"{len(missing)} task ids are not tasks of {config.run_dir} (e.g. {missing[0]})")
        tasks = [every[t] for t in sorted(task_ids)]
    else:
        tasks = heldout_tasks(cfg)
    if not tasks:
        raise ValueError(f"no held-out tasks in {config.run_dir}/tasks (share {share}): run `synth tasks` "
                         "first, or raise dataset.heldout_share")
    return tasks[: config.eval.max_tasks] if config.eval.max_tasks else tasks


def resolve_models(config: PipelineConfig, names: list[str] | None = None) -> dict[str, Path | None]:
    """Names to checkpoints: ``base`` (None: ``eval.base_model`` or the embedded SmolLM2), a trained name under
    ``runs/<run>/train/``, or a checkpoint folder. No names: ``eval.models``, else base and every finished
    training run of this run."""
    names = list(names or config.eval.models)
    train_root = config.run_dir / "train"
    if not names:
        names = [BASE, *sorted(p.name for p in train_root.glob("*") if (p / "train_summary.json").exists())]
    out: dict[str, Path | None] = {}
    for name in names:
        if name == BASE:
            out[name] = config.eval.base_model
        elif (train_root / name / "config.json").exists():
            out[name] = train_root / name
        elif (Path(name) / "config.json").exists():
            out[Path(name).name] = Path(name)
        else:
            trained = sorted(p.name for p in train_root.glob("*") if (p / "config.json").exists())
            raise FileNotFoundError(f"model {name!r} is neither 'base', a checkpoint under {train_root} "
                                    f"(found: {', '.join(trained) or 'none'}) nor a checkpoint folder; "
                                    "train it first with `synth train`")
    return out


def _identity(checkpoint: Path) -> str:
    """What makes a checkpoint's eval rows reusable: its training fingerprint, else its weights' size and time."""
    summary = checkpoint / "train_summary.json"
    if summary.exists():
        import json

        return json.loads(summary.read_text()).get("fingerprint") or summary.read_text()[:64]
    weights = sorted(checkpoint.glob("*.safetensors"))
    return "|".join(f"{w.name}:{w.stat().st_size}:{int(w.stat().st_mtime)}" for w in weights) or str(checkpoint)


def served_checkpoint(config: PipelineConfig, name: str, checkpoint: Path, port: int) -> EmbeddedConfig:
    """How ``checkpoint`` is served on ``port``: the tool template, the matching parser, and a served name that
    follows the weights."""
    # The tag hashes the weights' identity with the path: a checkpoint retrained in place (an improve round run
    # again after its fingerprint changed) gets a new served name, so a server left running with the old weights
    # is refused instead of being used as the new model.
    tag = hashlib.sha256(f"{checkpoint.resolve()}|{_identity(checkpoint)}".encode()).hexdigest()[:8]
    return EmbeddedConfig(**{**config.embedded.model_dump(), "port": port, "model_dir": checkpoint,
                             "served_name": f"{name}-{tag}", "chat_template": TEMPLATE_PATH,
                             "tool_call_parser": TOOL_CALL_PARSER, "kv_cache_gb": config.eval.kv_cache_gb})


def _served(config: PipelineConfig, name: str, checkpoint: Path) -> EmbeddedConfig:
    return served_checkpoint(config, f"eval-{name}", checkpoint, config.eval.port)


@contextlib.contextmanager
def serving(emb: EmbeddedConfig, concurrency: int) -> Iterator[EndpointConfig]:
    """Serve ``emb`` (or find exactly it served already: same served name and parser); stop it at the end if
    this call started it."""
    from synth.serve import server

    already = server.is_healthy(emb)
    if already:
        info = server.server_info(emb)
        if info is None or info.served_name != emb.served_name or info.tool_call_parser != emb.tool_call_parser:
            what = f"{info.served_name} from {info.model_dir}" if info else "a server this machine did not start"
            raise server.ServerError(f"port {emb.port} already serves {what}, not {emb.served_name} from "
                                     f"{emb.model_dir}; stop it (`synth serve --stop --set embedded.port="
                                     f"{emb.port}`) or pick another eval.port")
    else:
        server.start(emb)
    try:
        yield EndpointConfig(base_url=server.base_url(emb), max_concurrency=concurrency)
    finally:
        if not already:
            server.stop(emb)


@contextlib.contextmanager
def serve_under_test(config: PipelineConfig, name: str, checkpoint: Path) -> Iterator[tuple[EndpointConfig, str]]:
    """Serve ``checkpoint`` on ``eval.port`` with the tool template and parser (or find it served there); stop it
    at the end if this call started it. Yields the endpoint and the served model name."""
    emb = _served(config, name, checkpoint)
    with serving(emb, config.eval.concurrency) as ep:
        yield ep, emb.served_name or ""


def eval_rollouts_config(config: PipelineConfig) -> RolloutsStageConfig:
    """The run's episode settings with nothing forced or cut: the model under test decides alone whether to call
    and answer, and every call it writes is scored (``max_calls_per_step=1`` would have the server drop a
    repeated call, which the call-budget check exists to catch)."""
    from synth.agents.turn import MAX_CALLS

    return config.rollouts.model_copy(update={"coding_runs_code": False, "grounded_calls_first": False,
                                              "grounded_answer_after_call": False, "max_calls_per_step": MAX_CALLS})


def eval_judge_config(config: PipelineConfig) -> JudgeStageConfig:
    """The run's judge settings, but scoring every episode: the judge score is a metric of the evaluation, and
    leaving out the episodes a code check failed (``judge.llm_rows=needed``) would raise it."""
    return config.judge.model_copy(update={"llm_rows": "all"})


async def _episode(config: PipelineConfig, task: TaskRecord, agent: AgentRecord, default: LLMPool,
                   roles: dict[str, LLMPool], agent_pool: LLMPool, row_id: str, name: str,
                   checkpoint: str) -> EvalRecord:
    from synth.judge.judge import judge_trajectory
    from synth.llm.roles import RoutedPool
    from synth.sim.episode import run_episode
    from synth.stages.rollouts import agent_hub

    recorder = _RecordingPool(agent_pool, default.config)
    pool = RoutedPool(default, {**roles, "agent": recorder})  # type: ignore[dict-item]
    rollouts = eval_rollouts_config(config)
    servers = sorted({s for s in agent.real_tools.values() if s != "builtin"})
    hub = agent_hub(agent, servers) if rollouts.real_exec and servers else None
    async with hub if hub is not None else contextlib.nullcontext():
        traj = await run_episode(task, agent, pool, rollouts, seed=task.seed, hub=hub, tool_calling="native")
    traj = traj.model_copy(update={"task_id": task.id, "agent_id": agent.id})
    usage = traj.usage.model_copy(deep=True)
    verdict = await judge_trajectory(traj, task, RoutedPool(default, roles, primary="judge"),  # type: ignore[arg-type]
                                     eval_judge_config(config), seed=task.seed, usage=usage)
    calls = CallStats()
    for reply in recorder.replies:
        calls.merge(reply_calls(reply, agent.tools))
    return EvalRecord(id=row_id, seed=task.seed, model=await agent_pool.model(), usage=usage, model_name=name,
                      checkpoint=checkpoint, task_id=task.id, agent_id=agent.id, difficulty=task.difficulty,
                      trajectory=traj, verdict=verdict,
                      score=episode_score(calls, verdict, task.rubric, errored=traj.error is not None))


def _failed(row_id: str, task: TaskRecord, name: str, checkpoint: str, exc: BaseException) -> EvalRecord:
    # A row that failed outside the episode (a timeout the client gave up on) scores as a failed episode, so a
    # model that breaks the server cannot look better by leaving its hard tasks out.
    score = episode_score(CallStats(), None, task.rubric, errored=True)
    return EvalRecord(id=row_id, seed=task.seed, error=RowError(kind=type(exc).__name__, message=str(exc)[:2000]),
                      model_name=name, checkpoint=checkpoint, task_id=task.id, agent_id=task.agent_id,
                      difficulty=task.difficulty, score=score)


def _row_id(name: str, ident: str, task: TaskRecord) -> str:
    return eval_id(name, ident, task.id, task.seed)


def _pending(store: StageStore, name: str, ident: str, tasks: list[TaskRecord]) -> list[TaskRecord]:
    done = store.done_ids()
    return [t for t in tasks if _row_id(name, ident, t) not in done]


async def _run_model(config: PipelineConfig, endpoints: list[EndpointConfig], agent_ep: EndpointConfig,
                     served_name: str, name: str, checkpoint: str, ident: str, tasks: list[TaskRecord],
                     agents: dict[str, AgentRecord], store: StageStore, progress: bool) -> int:
    from synth.llm.roles import role_pools

    ids = {t.id: _row_id(name, ident, t) for t in tasks}
    pending = _pending(store, name, ident, tasks)
    if not pending:
        return 0
    temperature = config.eval.temperature if config.eval.temperature is not None else config.llm.temperature
    default = LLMPool(endpoints, config.llm)
    roles = {r: p for r, p in role_pools(config.llm, endpoints).items() if r != "agent"}
    max_tokens = config.eval.max_tokens or config.llm.max_tokens
    agent_pool = LLMPool([agent_ep], config.llm.model_copy(update={"model": served_name, "temperature": temperature,
                                                                   "max_tokens": max_tokens}))
    writer = JournalWriter(store.new_journal())
    gate = asyncio.Semaphore(config.eval.concurrency)
    bar = tqdm(total=len(pending), desc=f"eval {name}", disable=not progress, dynamic_ncols=True)

    async def one(task: TaskRecord) -> None:
        async with gate:
            try:
                row = await _episode(config, task, agents[task.agent_id], default, roles, agent_pool, ids[task.id],
                                     name, checkpoint)
            except EndpointUnavailable:
                raise
            except Exception as exc:  # one episode's failure is that episode's row, never the whole eval
                log.warning("eval %s task %s failed: %s", name, task.id, exc)
                row = _failed(ids[task.id], task, name, checkpoint, exc)
            writer.write(row)
            bar.update(1)

    try:
        await asyncio.gather(*(one(t) for t in pending))
    finally:
        bar.close()
        writer.close()
        for pool in {id(p): p for p in [default, agent_pool, *roles.values()]}.values():
            await pool.aclose()
    return len(pending)


def evaluate_model(config: PipelineConfig, endpoints: list[EndpointConfig], name: str, checkpoint: Path | None,
                   tasks: list[TaskRecord], *, progress: bool = True,
                   agent_endpoint: EndpointConfig | None = None, served_name: str | None = None) -> ModelEval:
    """Run and judge ``tasks`` with ``checkpoint`` (None: the base model) as the agent; resumable.

    ``agent_endpoint``/``served_name``: the model is already served there (with the tool template and a tool
    parser); nothing is started.
    """
    from synth.train.trainer import base_model_dir

    path = base_model_dir(checkpoint) if checkpoint is None or name == BASE else Path(checkpoint)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a Hugging Face checkpoint (no config.json)")
    ident = _identity(path)
    agents = {a.id: a for a in RunOutputs(config.run_dir).rows("agents", AgentRecord)}
    lost = sorted({t.agent_id for t in tasks} - set(agents))
    if lost:
        raise ValueError(f"tasks name agents missing from {config.run_dir}/agents (e.g. {lost[0]})")
    store = StageStore(config.run_dir / "eval" / name)
    started = time.monotonic()
    if not _pending(store, name, ident, tasks):
        ran = 0  # every episode is on disk: nothing to serve
    elif agent_endpoint is not None:
        ran = asyncio.run(_run_model(config, endpoints, agent_endpoint, served_name or "", name, str(path), ident,
                                     tasks, agents, store, progress))
    else:
        with serve_under_test(config, name, path) as (ep, served):
            ran = asyncio.run(_run_model(config, endpoints, ep, served, name, str(path), ident, tasks, agents,
                                         store, progress))
    keep = {_row_id(name, ident, t) for t in tasks}
    store.compact(keep=keep)
    rows = [r for r in store.read(EvalRecord) if r.id in keep]
    scores = [r.score for r in rows if r.score is not None]
    by_diff: dict[str, list[EpisodeScore]] = {}
    usage = UsageByRole()
    for r in rows:
        if r.score is not None:
            by_diff.setdefault(r.difficulty, []).append(r.score)
        usage.merge(r.usage)
    served = served_name or _served(config, name, path).served_name or ""
    return ModelEval(name=name, checkpoint=str(path), served_name=served, overall=aggregate(scores),
                     by_difficulty={d: aggregate(s) for d, s in sorted(by_diff.items())}, usage=usage,
                     wall_s=time.monotonic() - started, resumed=len(rows) - ran)


def evaluate_models(config: PipelineConfig, endpoints: list[EndpointConfig],
                    models: dict[str, Path | None] | None = None, task_ids: list[str] | None = None,
                    *, progress: bool = True) -> EvalSummary:
    """Evaluate each model (name -> checkpoint, None: the base) on the same held-out tasks, one served at a
    time; write ``eval.md``, ``eval.json`` and the plots to ``runs/<run>/eval/``."""
    from synth.evaluate.report import write_report

    tasks = heldout(config, task_ids)
    models = models if models is not None else resolve_models(config)
    results = {name: evaluate_model(config, endpoints, name, path, tasks, progress=progress)
               for name, path in models.items()}
    difficulties: dict[str, int] = {}
    for t in tasks:
        difficulties[t.difficulty] = difficulties.get(t.difficulty, 0) + 1
    share = config.eval.heldout_share if config.eval.heldout_share is not None else config.dataset.heldout_share
    summary = EvalSummary(run=config.run, heldout_share=share, task_ids=[t.id for t in tasks],
                          difficulties=dict(sorted(difficulties.items())), models=results)
    return write_report(summary, config.run_dir / "eval", card=config.run_dir / "dataset" / "README.md")
