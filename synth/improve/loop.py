"""``synth improve``: expert iteration, composed of the pipeline's stages round after round.

Round ``k`` is a run of its own (``runs/<run>/improve/round-<k>/``, seed ``seed + k - 1``):

1. generate: ``tools`` to ``dataset``, with the agent being the model trained in the round before (served by vLLM
   with its tool template), the simulators and the judge on their own endpoints; acceptance is the run's
   ``judge.accept`` (synth/judge/accept.py);
2. ``train``: each of ``improve.optimizers`` from the base model on this round's dataset and, with
   ``improve.cumulative``, every earlier round's (``train.data_runs``), never a held-out task;
3. ``eval``: every trained model on the held-out tasks round 1's dataset recorded (``eval.tasks_from``), the same
   tasks in every round, so the curve compares like with like; round 1 scores the base model first.

Every stage resumes on its own (rows, checkpoints, episodes), so a killed ``synth improve`` goes on where it
stopped; ``improve/improve.json`` records each round's results and ``improve/curve.png`` plots them. Nothing is
read by path: each round's numbers come from its stages' summaries.
"""

from __future__ import annotations

import logging
from pathlib import Path

from synth.config import EndpointConfig, PipelineConfig, TrainConfig
from synth.errors import SynthError
from synth.evaluate.episode import BASE
from synth.improve.models import TRAIN_FACTS, ImproveReport, ModelScores, RoundResult, Steps
from synth.pipeline import PipelineReport
from synth.stages.base import StageWaiting
from synth.stages.eval import eval_summary
from synth.stages.summary import StageSummary
from synth.stages.train import TrainElsewhere, job_names, planned_jobs

log = logging.getLogger(__name__)
STATE = "improve.json"
CURVE = "curve.png"
WAITING = "waiting for training elsewhere: "
FIRST = "round-1"
GENERATION = ("grounded_calls_first", "grounded_answer_after_call", "max_calls_per_step")
"""The rollouts settings of a round that the data-value page shows beside it."""


class StaleRound(SynthError):
    """A round's generating model changed after it generated a later round: that round's data is the old model's."""

    hint = "start a new run (--run NEW_NAME), or put train.* (and improve.train_by_round) back as they were"


def improve_root(config: PipelineConfig) -> Path:
    return config.run_dir / "improve"


def round_config(config: PipelineConfig, k: int) -> PipelineConfig:
    """Round ``k``'s run: its own folder and seed, new agents, its training jobs (this round's dataset and, when
    cumulative, every earlier round's), round 1's held-out tasks to score; the same everything else."""
    count = config.improve.agents_per_round or config.agents.count
    train = config.train
    if k in config.improve.train_by_round:
        train = TrainConfig.model_validate(train.model_dump() | config.improve.train_by_round[k])
    train = train.model_copy(update={
        "optimizers": list(config.improve.optimizers), "name": None, "here": config.improve.train_here,
        "replicates": config.improve.replicates if k == config.improve.rounds else 0,
        "data_runs": [f"round-{j}" for j in range(1, k)] if config.improve.cumulative else []})
    return config.model_copy(update={
        "runs_dir": improve_root(config), "run": f"round-{k}", "seed": config.seed + k - 1, "accept": None,
        "agents": config.agents.model_copy(update={"count": count}), "train": train,
        "eval": config.eval.model_copy(update={"tasks_from": FIRST, "models": []}),
    })


def _scoring(config: PipelineConfig, models: list[str]) -> PipelineConfig:
    return config.model_copy(update={"eval": config.eval.model_copy(update={"models": models})})


def _save(report: ImproveReport, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{STATE}.tmp"
    tmp.write_text(report.model_dump_json(indent=2))
    tmp.replace(root / STATE)


def load_report(config: PipelineConfig) -> ImproveReport:
    path = improve_root(config) / STATE
    if path.exists():
        return ImproveReport.model_validate_json(path.read_text())
    return ImproveReport(run=config.run)


def _generated(r: RoundResult, report: PipelineReport, config: PipelineConfig) -> None:
    planned = {s.stage: s.planned for s in report.stages}
    r.accepted_new = report.dataset.accepted if report.dataset else 0
    r.agents, r.episodes = planned.get("agents"), planned.get("rollouts")
    r.pipeline_wall_s = report.wall_s
    r.generation = {k: getattr(config.rollouts, k) for k in GENERATION}
    r.generated = True


def _scores(summary: StageSummary) -> dict[str, ModelScores]:
    return {name: ModelScores.of(m) for name, m in eval_summary(summary).models.items()}


def _check_not_stale(report: ImproveReport, k: int, planned: dict[str, str], generator: str) -> None:
    """Refuse to train over round ``k``'s generating model once it generated round ``k + 1`` as other weights."""
    later = next((r for r in report.rounds if r.round == k + 1 and r.generated), None)
    if later is not None and later.agent_job is not None and planned.get(generator) != later.agent_job:
        raise StaleRound(f"round {k}'s {generator} model changed (other train settings or data) after it generated "
                         f"round {k + 1}; that data came from the old model")


def run_improve(config: PipelineConfig, endpoints: list[EndpointConfig], steps: Steps | None = None) -> ImproveReport:
    """Run (or resume) ``improve.rounds`` rounds after the base model's evaluation; returns the report. A round
    whose jobs are to be trained elsewhere (``improve.train_here=false``) stops the run with their job files in
    ``report.waiting``."""
    from synth.improve.plot import plot_curve

    if steps is None:
        from synth.improve.steps import real_steps

        steps = real_steps()
    root = improve_root(config)
    report = load_report(config)
    report.waiting = []
    agent: tuple[Path, str] | None = None  # the checkpoint that generates the next round, and its train row
    for k in range(1, config.improve.rounds + 1):
        rc = round_config(config, k)
        r = report.round(k)
        r.run = rc.run
        if not r.generated:
            r.agent, r.agent_job = (str(agent[0]), agent[1]) if agent else (BASE, None)
            _generated(r, steps.generate(rc, endpoints, agent[0] if agent else None), rc)
            _save(report, root)
        if k == 1 and BASE not in report.round(0).models:
            # The base model is scored before anything trains, so its score stands while jobs train elsewhere.
            scored = steps.evaluate(_scoring(rc, [BASE]), endpoints)
            report.round(0).models[BASE] = _scores(scored)[BASE]
            report.round(0).eval_wall_s = scored.wall_s
            report.heldout_task_ids = eval_summary(scored).task_ids
            report.heldout_tasks = len(report.heldout_task_ids)
            _save(report, root)
        names = [name for name, _, _ in job_names(rc)]
        planned = planned_jobs(rc)
        _check_not_stale(report, k, planned, names[0])
        try:
            trained = steps.train(rc)
        except StageWaiting as exc:  # improve.train_here=false: every unfinished job's spec is written
            report.waiting = [str(w.job) for w in exc.waiting if isinstance(w, TrainElsewhere)]
            r.note = WAITING + "; ".join(report.waiting)
            _save(report, root)
            return report
        if r.note and r.note.startswith(WAITING):
            r.note = None  # the checkpoints came back
        jobs = trained.extra.get("jobs", {})
        r.trained = {name: job["checkpoint"] for name, job in jobs.items()}
        r.train_summaries = {name: {f: job.get(f) for f in TRAIN_FACTS} for name, job in jobs.items()}
        r.train_trajectories = max((int(job.get("examples", 0)) for job in jobs.values()), default=0)
        r.train_wall_s = trained.wall_s
        if not jobs:
            r.note = "no model trained this round: " + (", ".join(f"{e}: {n}" for e, n in trained.errors.items())
                                                         or "no job")
            _save(report, root)
            continue
        scored = steps.evaluate(_scoring(rc, [*([BASE] if k == 1 else []), *(n for n in names if n in jobs)]),
                                endpoints)
        r.models = {name: s for name, s in _scores(scored).items() if name != BASE}
        r.eval_wall_s = scored.wall_s
        _save(report, root)
        if names[0] in jobs:
            agent = (Path(jobs[names[0]]["checkpoint"]), planned[names[0]])
    report.plot = str(plot_curve(report, root / CURVE))
    _save(report, root)
    return report
