"""One held-out episode with the model under test as the agent, judged and scored; and how that model is served.

Each model is served by vLLM on ``eval.port`` with the training template and the ``hermes`` tool parser, and
plays the agent in native tool-calling mode: the server's parser reads its ``<tool_call>`` blocks, nothing
constrains its decoding (a coding task's first step is not forced to call the sandbox either, since a named
``tool_choice`` is guided decoding). The user simulator, the tool simulator and the judge stay on the run's
endpoints (``llm.roles`` applies to them as in the pipeline). Every model plays the same tasks with the same
seeds, so their simulators draw the same users and tool failures.

This is the library; the ``eval`` stage (``synth.stages.eval``) plans the episodes, runs them, keeps their rows
and resumes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from synth.config import EmbeddedConfig, EndpointConfig, JudgeStageConfig, PipelineConfig, RolloutsStageConfig
from synth.errors import SynthError
from synth.evaluate.metrics import CallStats, EpisodeScore, Scores, aggregate, episode_score, reply_calls
from synth.llm.client import LLMPool
from synth.schemas.records import AgentRecord, Row, RowError, TaskRecord, TrajectoryRecord
from synth.schemas.usage import UsageByRole
from synth.schemas.verdict import Verdict
from synth.train.template import TEMPLATE_PATH, TOOL_CALL_PARSER

BASE = "base"


class NotACheckpoint(SynthError, FileNotFoundError):
    """A model to evaluate whose folder is not a Hugging Face checkpoint."""

    hint = "give 'base', a job of the run's train stage, or a checkpoint folder with config.json"


class EvalRecord(Row):
    """One held-out episode of one model, judged."""

    model_name: str = ""
    checkpoint: str = ""
    identity: str = Field(default="", description="What the model's weights are known by (its training "
                          "fingerprint, else its files): a retrained checkpoint's episodes are new rows.")
    task_id: str = ""
    agent_id: str = ""
    difficulty: str = ""
    trajectory: TrajectoryRecord | None = None
    verdict: Verdict | None = None
    score: EpisodeScore | None = None


class ModelUnderTest(BaseModel):
    name: str
    checkpoint: str
    identity: str


class ModelEval(BaseModel):
    name: str
    checkpoint: str
    identity: str = ""
    served_name: str = ""
    overall: Scores
    by_difficulty: dict[str, Scores] = Field(default_factory=dict)
    usage: UsageByRole = Field(default_factory=UsageByRole)
    errored_rows: int = Field(default=0, description="Episodes that failed outside the episode (counted as failed).")


class EvalSummary(BaseModel):
    run: str
    heldout_share: float
    task_ids: list[str]
    difficulties: dict[str, int] = Field(description="Held-out tasks per difficulty.")
    models: dict[str, ModelEval]
    table: str | None = None
    plots: list[str] = Field(default_factory=list)


def checkpoint_identity(checkpoint: Path) -> str:
    """What makes a checkpoint's eval rows reusable: its training fingerprint, else its weights' size and time."""
    summary = checkpoint / "train_summary.json"
    if summary.exists():
        return json.loads(summary.read_text()).get("fingerprint") or summary.read_text()[:64]
    weights = sorted(checkpoint.glob("*.safetensors"))
    return "|".join(f"{w.name}:{w.stat().st_size}:{int(w.stat().st_mtime)}" for w in weights) or str(checkpoint)


def checkpoint_model(name: str, checkpoint: Path) -> ModelUnderTest:
    """A checkpoint folder as a model to evaluate, known by ``checkpoint_identity``."""
    if not (checkpoint / "config.json").exists():
        raise NotACheckpoint(f"{checkpoint} is not a Hugging Face checkpoint (no config.json)")
    return ModelUnderTest(name=name, checkpoint=str(checkpoint), identity=checkpoint_identity(checkpoint))


def served_checkpoint(config: PipelineConfig, name: str, checkpoint: Path, port: int) -> EmbeddedConfig:
    """How ``checkpoint`` is served on ``port``: the tool template, the matching parser, and a served name that
    follows the weights."""
    # The tag hashes the weights' identity with the path: a checkpoint retrained in place (an improve round run
    # again after its fingerprint changed) gets a new served name, so a server left running with the old weights
    # is refused instead of being used as the new model.
    tag = hashlib.sha256(f"{checkpoint.resolve()}|{checkpoint_identity(checkpoint)}".encode()).hexdigest()[:8]
    return EmbeddedConfig(**{**config.embedded.model_dump(), "port": port, "model_dir": checkpoint,
                             "served_name": f"{name}-{tag}", "chat_template": TEMPLATE_PATH,
                             "tool_call_parser": TOOL_CALL_PARSER, "kv_cache_gb": config.eval.kv_cache_gb})


def served_under_test(config: PipelineConfig, model: ModelUnderTest) -> EmbeddedConfig:
    """How the model under test is served: on ``eval.port``."""
    return served_checkpoint(config, f"eval-{model.name}", Path(model.checkpoint), config.eval.port)


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
                                     f"{emb.model_dir}", hint=f"stop it (`synth serve --stop --set embedded.port="
                                     f"{emb.port}`) or pick another eval.port")
    else:
        server.start(emb)
    try:
        yield EndpointConfig(base_url=server.base_url(emb), max_concurrency=concurrency)
    finally:
        if not already:
            server.stop(emb)


def agent_pool(config: PipelineConfig, endpoint: EndpointConfig, served_name: str) -> LLMPool:
    """The pool the model under test answers through: its own server, eval's temperature and reply budget."""
    temperature = config.eval.temperature if config.eval.temperature is not None else config.llm.temperature
    return LLMPool([endpoint], config.llm.model_copy(update={
        "model": served_name, "temperature": temperature, "max_tokens": config.eval.max_tokens or config.llm.max_tokens,
        "roles": {}}))


class RecordingPool:
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


async def play(config: PipelineConfig, task: TaskRecord, agent: AgentRecord, model: ModelUnderTest, row_id: str, *,
               default: LLMPool, roles: dict[str, LLMPool], under_test: LLMPool, hub: Any = None) -> EvalRecord:
    """Run ``task`` with the model under test as ``agent`` (its requests to ``under_test``, the other roles to
    ``roles`` or ``default``), judge it and score it. ``hub``: the agent's real tools, already entered."""
    from synth.judge.judge import judge_trajectory
    from synth.llm.roles import RoutedPool
    from synth.sim.episode import run_episode

    recorder = RecordingPool(under_test, default.config)
    pool = RoutedPool(default, {**roles, "agent": recorder})  # type: ignore[dict-item]
    traj = await run_episode(task, agent, pool, eval_rollouts_config(config), seed=task.seed, hub=hub,
                             tool_calling="native")
    traj = traj.model_copy(update={"task_id": task.id, "agent_id": agent.id})
    usage = traj.usage.model_copy(deep=True)
    verdict = await judge_trajectory(traj, task, RoutedPool(default, roles, primary="judge"),  # type: ignore[arg-type]
                                     eval_judge_config(config), seed=task.seed, usage=usage)
    calls = CallStats()
    for reply in recorder.replies:
        calls.merge(reply_calls(reply, agent.tools))
    return EvalRecord(id=row_id, seed=task.seed, model=await under_test.model(), usage=usage, model_name=model.name,
                      checkpoint=model.checkpoint, identity=model.identity, task_id=task.id, agent_id=agent.id,
                      difficulty=task.difficulty, trajectory=traj, verdict=verdict,
                      score=episode_score(calls, verdict, task.rubric, errored=traj.error is not None))


def failed_record(row_id: str, seed: int, model: ModelUnderTest, task_id: str, agent_id: str, difficulty: str,
                  has_checks: bool, error: RowError, usage: UsageByRole) -> EvalRecord:
    """A row that failed outside the episode (a timeout the client gave up on) scores as a failed episode, so a
    model that breaks the server cannot look better by leaving its hard tasks out."""
    score = EpisodeScore(calls=CallStats(), has_checks=has_checks, checks_passed=False, judge_score=0.0,
                         accepted=False, errored=True)
    return EvalRecord(id=row_id, seed=seed, error=error, usage=usage, model_name=model.name,
                      checkpoint=model.checkpoint, identity=model.identity, task_id=task_id, agent_id=agent_id,
                      difficulty=difficulty, score=score)


def summarize(run: str, share: float, tasks: list[TaskRecord], models: list[ModelUnderTest],
              rows: list[EvalRecord], served_names: dict[str, str] | None = None) -> EvalSummary:
    """Each model's scores over its rows of ``tasks``, overall and per difficulty, side by side."""
    difficulties: dict[str, int] = {}
    for t in tasks:
        difficulties[t.difficulty] = difficulties.get(t.difficulty, 0) + 1
    results = {}
    for m in models:
        mine = [r for r in rows if r.model_name == m.name and r.identity == m.identity]
        scores = [r.score for r in mine if r.score is not None]
        by_diff: dict[str, list[EpisodeScore]] = {}
        usage = UsageByRole()
        for r in mine:
            if r.score is not None:
                by_diff.setdefault(r.difficulty, []).append(r.score)
            usage.merge(r.usage)
        results[m.name] = ModelEval(name=m.name, checkpoint=m.checkpoint, identity=m.identity,
                                    served_name=(served_names or {}).get(m.name, ""), overall=aggregate(scores),
                                    by_difficulty={d: aggregate(s) for d, s in sorted(by_diff.items())},
                                    usage=usage, errored_rows=sum(r.error is not None for r in mine))
    return EvalSummary(run=run, heldout_share=share, task_ids=[t.id for t in tasks],
                       difficulties=dict(sorted(difficulties.items())), models=results)
