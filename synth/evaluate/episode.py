"""One held-out episode with the model under test as the agent, judged and scored; and how that model is served.

Each model is served by vLLM on ``eval.port`` with the training template and the ``hermes`` tool parser, and
plays the agent in native tool-calling mode at ``eval.temperature`` (0: greedy). Unforced (every model), the
server's parser reads its ``<tool_call>`` blocks and nothing constrains its decoding. Forced (``eval.forced_models``,
the base by default), each step is constrained the way generation constrains the agent: the first step of a turn
that expects a call must call a tool (``tool_choice=required``, guided decoding), the step after must answer, a
coding task's first step calls the sandbox. The user simulator, the tool simulator and the judge stay on the run's
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
from typing import Any, Literal

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
Mode = Literal["unforced", "forced"]
MODES: tuple[Mode, ...] = ("unforced", "forced")


class NotACheckpoint(SynthError, FileNotFoundError):
    """A model to evaluate whose folder is not a Hugging Face checkpoint."""

    hint = "give 'base', a job of the run's train stage, or a checkpoint folder with config.json"


class EvalRecord(Row):
    """One held-out episode of one model, judged."""

    model_name: str = ""
    checkpoint: str = ""
    identity: str = Field(default="", description="What the model's weights are known by (its training "
                          "fingerprint, else its files): a retrained checkpoint's episodes are new rows.")
    mode: Mode = Field(default="unforced", description="forced: the agent's steps constrained as in generation.")
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


class ModeScores(BaseModel):
    """A model's scores in one mode: overall, per difficulty, and on held-out tasks whose tools training saw or
    did not."""

    overall: Scores
    by_difficulty: dict[str, Scores] = Field(default_factory=dict)
    by_tools: dict[str, Scores] = Field(default_factory=dict, description="'seen': tasks holding a tool a "
                                        "training task holds (none when the split is by tool group); 'unseen': "
                                        "the others. Empty when the dataset did not record which are which.")


class ModelEval(BaseModel):
    name: str
    checkpoint: str
    identity: str = ""
    served_name: str = ""
    overall: Scores = Field(description="Unforced, as every model is scored.")
    by_difficulty: dict[str, Scores] = Field(default_factory=dict)
    by_tools: dict[str, Scores] = Field(default_factory=dict, description="Unforced, by tools seen in training "
                                        "(ModeScores.by_tools).")
    forced: ModeScores | None = Field(default=None, description="The same tasks forced (eval.forced_models); "
                                      "None: not scored forced.")
    usage: UsageByRole = Field(default_factory=UsageByRole)
    errored_rows: int = Field(default=0, description="Episodes that failed outside the episode (counted as failed).")

    def mode(self, mode: Mode) -> ModeScores | None:
        """The model's scores in ``mode`` (None: not scored so)."""
        if mode == "forced":
            return self.forced
        return ModeScores(overall=self.overall, by_difficulty=self.by_difficulty, by_tools=self.by_tools)


class EvalSummary(BaseModel):
    run: str
    heldout_share: float
    task_ids: list[str]
    difficulties: dict[str, int] = Field(description="Held-out tasks per difficulty.")
    seen: list[str] | None = Field(default=None, description="Held-out tasks holding a tool a training task "
                                   "holds, as the dataset recorded them (none when the split is by tool group); "
                                   "None: not recorded.")
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
    """The pool the model under test answers through: its own server, eval's temperature (0 by default: what a
    model does, not what one draw of it did) and reply budget."""
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


def eval_rollouts_config(config: PipelineConfig, mode: Mode = "unforced") -> RolloutsStageConfig:
    """The run's episode settings with nothing cut, every call the model writes scored (``max_calls_per_step=1``
    would have the server drop a repeated call, which the call-budget check exists to catch). Unforced, the model
    under test decides alone whether to call and answer; forced, its steps are constrained as generation
    constrains the agent (``sim.episode.run_episode``): a coding task's first step calls the sandbox, the first
    step of a turn that expects a call calls a tool, the step after that answers. Forced is the same for every
    run, whatever its rollouts set, so forced scores compare across runs."""
    from synth.agents.turn import MAX_CALLS

    forced = mode == "forced"
    return config.rollouts.model_copy(update={"coding_runs_code": forced, "grounded_calls_first": forced,
                                              "grounded_answer_after_call": forced, "max_calls_per_step": MAX_CALLS})


def eval_judge_config(config: PipelineConfig) -> JudgeStageConfig:
    """The run's judge settings, but scoring every episode: the judge score is a metric of the evaluation, and
    leaving out the episodes a code check failed (``judge.llm_rows=needed``) would raise it."""
    return config.judge.model_copy(update={"llm_rows": "all"})


async def play(config: PipelineConfig, task: TaskRecord, agent: AgentRecord, model: ModelUnderTest, row_id: str, *,
               default: LLMPool, roles: dict[str, LLMPool], under_test: LLMPool, hub: Any = None,
               mode: Mode = "unforced") -> EvalRecord:
    """Run ``task`` with the model under test as ``agent`` (its requests to ``under_test``, the other roles to
    ``roles`` or ``default``), forced or not (``mode``), judge it and score it. ``hub``: the agent's real tools,
    already entered."""
    from synth.judge.judge import judge_trajectory
    from synth.llm.roles import RoutedPool
    from synth.sim.episode import run_episode

    recorder = RecordingPool(under_test, default.config)
    pool = RoutedPool(default, {**roles, "agent": recorder})  # type: ignore[dict-item]
    traj = await run_episode(task, agent, pool, eval_rollouts_config(config, mode), seed=task.seed, hub=hub,
                             tool_calling="native")
    traj = traj.model_copy(update={"task_id": task.id, "agent_id": agent.id})
    usage = traj.usage.model_copy(deep=True)
    verdict = await judge_trajectory(traj, task, RoutedPool(default, roles, primary="judge"),  # type: ignore[arg-type]
                                     eval_judge_config(config), seed=task.seed, usage=usage)
    calls = CallStats()
    for reply in recorder.replies:
        calls.merge(reply_calls(reply, agent.tools))
    return EvalRecord(id=row_id, seed=task.seed, model=await under_test.model(), usage=usage, model_name=model.name,
                      checkpoint=model.checkpoint, identity=model.identity, mode=mode, task_id=task.id,
                      agent_id=agent.id,
                      difficulty=task.difficulty, trajectory=traj, verdict=verdict,
                      score=episode_score(calls, verdict, task.rubric, errored=traj.error is not None))


def failed_record(row_id: str, seed: int, model: ModelUnderTest, task_id: str, agent_id: str, difficulty: str,
                  has_checks: bool, error: RowError, usage: UsageByRole, mode: Mode = "unforced") -> EvalRecord:
    """A row that failed outside the episode (a timeout the client gave up on) scores as a failed episode, so a
    model that breaks the server cannot look better by leaving its hard tasks out."""
    score = EpisodeScore(calls=CallStats(), has_checks=has_checks, checks_passed=False, judge_score=0.0,
                         accepted=False, errored=True)
    return EvalRecord(id=row_id, seed=seed, error=error, usage=usage, model_name=model.name,
                      checkpoint=model.checkpoint, identity=model.identity, mode=mode, task_id=task_id,
                      agent_id=agent_id, difficulty=difficulty, score=score)


def _mode_scores(rows: list[EvalRecord], seen: set[str] | None) -> ModeScores:
    by_diff: dict[str, list[EpisodeScore]] = {}
    by_tools: dict[str, list[EpisodeScore]] = {"seen": [], "unseen": []}
    for r in rows:
        if r.score is not None:
            by_diff.setdefault(r.difficulty, []).append(r.score)
            if seen is not None:
                by_tools["seen" if r.task_id in seen else "unseen"].append(r.score)
    return ModeScores(overall=aggregate([r.score for r in rows if r.score is not None]),
                      by_difficulty={d: aggregate(s) for d, s in sorted(by_diff.items())},
                      by_tools={k: aggregate(s) for k, s in by_tools.items()} if seen is not None else {})


def summarize(run: str, share: float, tasks: list[TaskRecord], models: list[ModelUnderTest],
              rows: list[EvalRecord], served_names: dict[str, str] | None = None,
              seen: list[str] | None = None) -> EvalSummary:
    """Each model's scores over its rows of ``tasks``, overall, per difficulty and by tools seen in training
    (``seen``: the held-out tasks that hold one, as the dataset recorded them; None: not recorded), unforced and,
    where it was scored so, forced; side by side."""
    difficulties: dict[str, int] = {}
    for t in tasks:
        difficulties[t.difficulty] = difficulties.get(t.difficulty, 0) + 1
    wanted = {t.id for t in tasks}
    seen_set = None if seen is None else set(seen)
    results = {}
    for m in models:
        mine = [r for r in rows if r.model_name == m.name and r.identity == m.identity and r.task_id in wanted]
        usage = UsageByRole()
        for r in mine:
            usage.merge(r.usage)
        unforced = _mode_scores([r for r in mine if r.mode == "unforced"], seen_set)
        forced = [r for r in mine if r.mode == "forced"]
        results[m.name] = ModelEval(name=m.name, checkpoint=m.checkpoint, identity=m.identity,
                                    served_name=(served_names or {}).get(m.name, ""), overall=unforced.overall,
                                    by_difficulty=unforced.by_difficulty, by_tools=unforced.by_tools,
                                    forced=_mode_scores(forced, seen_set) if forced else None,
                                    usage=usage, errored_rows=sum(r.error is not None for r in mine))
    return EvalSummary(run=run, heldout_share=share, task_ids=[t.id for t in tasks],
                       difficulties=dict(sorted(difficulties.items())), seen=seen, models=results)
