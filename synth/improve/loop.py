"""``synth improve``: expert iteration. Round 0 evaluates the base model on the held-out tasks; each round after it

1. generates: a full pipeline run (``runs/<run>/improve/round-<k>/``, seed ``seed + k - 1``), with the agent
   being the model trained in the round before (served by vLLM with its tool template), the simulators and the
   judge on their own endpoints; acceptance is the run's ``judge.accept`` (synth/judge/accept.py);
2. trains each of ``improve.optimizers`` from the base model on the train splits of every round so far
   (``improve.cumulative``), never a held-out task (by task id, the same in every round);
3. evaluates every trained model on the held-out tasks of round 1, the same tasks in every round, so the curve
   compares like with like.

Each step records its result in ``improve/improve.json`` when it finishes, and each step is resumable on its own
(stages resume their rows, training its checkpoints), so a killed ``synth improve`` goes on where it stopped.
The curve of valid-call rate, pass rate and judge score per round is ``improve/curve.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from synth.config import EndpointConfig, PipelineConfig, TrainConfig
from synth.improve.models import TRAIN_FACTS, ImproveReport, Steps, TrainElsewhere, replicate_name

log = logging.getLogger(__name__)
STATE = "improve.json"
CURVE = "curve.png"
WAITING = "waiting for training elsewhere: "


def improve_root(config: PipelineConfig) -> Path:
    return config.run_dir / "improve"


def round_config(config: PipelineConfig, k: int) -> PipelineConfig:
    """Round ``k``'s pipeline config: its own run folder and seed, new agents, the same everything else."""
    count = config.improve.agents_per_round or config.agents.count
    # The trainer and the evaluator read the held-out share from their own sections: one value for all.
    share = config.dataset.heldout_share
    train = config.train
    if k in config.improve.train_by_round:
        train = TrainConfig.model_validate(train.model_dump() | config.improve.train_by_round[k])
    return config.model_copy(update={
        "runs_dir": improve_root(config), "run": f"round-{k}", "seed": config.seed + k - 1, "accept": None,
        "agents": config.agents.model_copy(update={"count": count}),
        "eval": config.eval.model_copy(update={"heldout_share": share}), "train": train,
    })


def train_files(config: PipelineConfig, k: int) -> list[Path]:
    """The train splits round ``k`` trains on: every round's up to ``k`` (cumulative), or round ``k``'s alone."""
    first = 1 if config.improve.cumulative else k
    files: list[Path] = []
    for j in range(first, k + 1):
        files += sorted((round_config(config, j).run_dir / "dataset" / "data").glob("train-*.parquet"))
    return files


def _save(report: ImproveReport, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{STATE}.tmp"
    tmp.write_text(report.model_dump_json(indent=2))
    tmp.replace(root / STATE)


def _forget(report: ImproveReport, k: int, opt: str, generator: str) -> None:
    """Round ``k``'s ``opt`` model is other weights now: its scores go; a later round it generated is stale."""
    r = report.round(k)
    later = [x.round for x in report.rounds if x.round > k and x.generated]
    if later and opt == generator:
        raise ValueError(f"round {k}'s {opt} model changed (other train settings or data) after it generated "
                         f"round(s) {later}; that data came from the old model. Start a new run (--set run=...) "
                         "or put train.* back as it was")
    del r.trained[opt]
    r.models.pop(opt, None)
    r.train_summaries.pop(opt, None)
    r.fingerprints.pop(opt, None)


def load_report(config: PipelineConfig) -> ImproveReport:
    path = improve_root(config) / STATE
    if path.exists():
        return ImproveReport.model_validate_json(path.read_text())
    return ImproveReport(run=config.run)


def run_improve(config: PipelineConfig, endpoints: list[EndpointConfig], steps: Steps | None = None) -> ImproveReport:
    """Run (or resume) ``improve.rounds`` rounds after the base model's evaluation; returns the report."""
    from synth.improve.plot import plot_curve
    from synth.stages.dataset_build import heldout_task_ids

    if steps is None:
        from synth.improve.steps import real_steps

        steps = real_steps()
    root = improve_root(config)
    report = load_report(config)
    optimizers = list(config.improve.optimizers)
    agent: Path | None = None
    for k in range(1, config.improve.rounds + 1):
        rc = round_config(config, k)
        r = report.round(k)
        r.run = rc.run
        if not r.generated:
            r.agent = str(agent) if agent else "base"
            r.accepted_new = steps.generate(rc, endpoints, agent)
            r.generated = True
            _save(report, root)
        if k == 1 and not report.heldout_task_ids:
            # The evaluation set: round 1's held-out tasks, fixed for every round so the curve is comparable.
            # Capped at eval.max_tasks here (the prefix the evaluator takes), so the report counts what was scored.
            report.heldout_task_ids = sorted(heldout_task_ids(rc))[: config.eval.max_tasks or None]
            report.heldout_tasks = len(report.heldout_task_ids)
            _save(report, root)
        eval_cfg = round_config(config, 1)
        if k == 1 and "base" not in report.round(0).models:
            report.round(0).models = steps.evaluate(eval_cfg, endpoints, {"base": None}, report.heldout_task_ids, 0)
            _save(report, root)
        files = train_files(config, k)
        waiting: list[TrainElsewhere] = []
        # The round's own model of each optimizer (the first one's generates the next round), then in the last
        # round the seed replicates of each: (name, optimizer, seed).
        runs = [(opt, opt, rc.seed) for opt in optimizers]
        if k == config.improve.rounds:
            runs += [(replicate_name(opt, rc.seed + i), opt, rc.seed + i)
                     for opt in optimizers for i in range(1, config.improve.replicates + 1)]
        for name, opt, seed in runs:
            if not files:
                r.note = "no accepted trajectories in train yet: nothing to train on this round"
                break
            tc = rc.model_copy(update={"seed": seed,
                                       "train": rc.train.model_copy(update={"optimizer": opt, "name": name})})
            fingerprint = steps.fingerprint(tc, files)
            if name in r.trained and fingerprint != r.fingerprints.get(name):
                # A resumed run whose train.* changed: the recorded model is not these settings' (checked before
                # anything is trained over it).
                _forget(report, k, name, optimizers[0])
                _save(report, root)
            if name in r.trained:
                continue
            try:
                summary = steps.train(tc, files)
            except TrainElsewhere as exc:  # improve.train_here=false: every pending job is written, then we stop
                waiting.append(exc)
                continue
            r.trained[name] = summary["checkpoint"]
            if fingerprint:
                r.fingerprints[name] = fingerprint
            r.train_summaries[name] = {k2: summary.get(k2) for k2 in TRAIN_FACTS}
            r.train_trajectories = int(summary.get("data", {}).get("examples", 0))
            _save(report, root)
        if waiting:
            r.note = WAITING + "; ".join(str(w.job) for w in waiting)
            _save(report, root)
            raise waiting[0]
        if r.note and r.note.startswith(WAITING):
            r.note = None  # the checkpoints came back
        todo = {opt: Path(ckpt) for opt, ckpt in r.trained.items() if opt not in r.models}
        if todo:
            r.models.update(steps.evaluate(eval_cfg, endpoints, dict(todo), report.heldout_task_ids, k))
            for opt, ckpt in todo.items():
                if opt in r.models:
                    r.models[opt].checkpoint = str(ckpt)
            _save(report, root)
        if optimizers and optimizers[0] in r.trained:
            agent = Path(r.trained[optimizers[0]])  # the policy that generates the next round's data
    report.plot = str(plot_curve(report, root / CURVE))
    _save(report, root)
    return report
