"""``synth improve`` composes the stages round after round: a stand-in generation writes each round's judged rows,
and the real ``dataset``, ``train`` and ``eval`` stages run on them with the trainer, the served model and the
episodes stood in for (tests/fixtures/runs.py). Rounds in order, held-out tasks never trained on in any round,
round 1's held-out tasks scored in every round, resume without redoing a finished step, jobs trained elsewhere,
changed settings, seed replicates, and the data-value page for whatever optimizers the run lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth.config import EndpointConfig, PipelineConfig
from synth.data.heldout import is_heldout
from synth.improve.loop import StaleRound, improve_root, load_report, round_config, run_improve
from synth.improve.models import Steps
from synth.improve.steps import evaluate, train
from synth.pipeline import PipelineReport
from synth.stages.dataset import built_summary
from synth.stages.runner import run_stage
from synth.stages.summary import StageSummary
from synth.train.job import load_job
from tests.fixtures.runs import FakeEvaluation, FakeTrainer, fake_checkpoint, task_ids, write_judged

SHARE = 0.2
HELD = task_ids(2, SHARE, held=True)
TRAIN = task_ids(3, SHARE, held=False)
ENDPOINTS = [EndpointConfig(base_url="http://127.0.0.1:1/v1")]


class Generator:
    """Stands in for a round's pipeline run: round 1 plans the held-out tasks and two training tasks; round 2 plans
    the same held-out tasks again (they must stay out there as well) and a new training task."""

    def __init__(self) -> None:
        self.generated: list[tuple[str, str | None]] = []

    def __call__(self, cfg: PipelineConfig, endpoints: list[EndpointConfig], agent: Path | None) -> PipelineReport:
        self.generated.append((cfg.run, agent.name if agent else None))
        tasks = HELD + TRAIN[:2] if cfg.run == "round-1" else [*HELD, TRAIN[2]]
        write_judged(cfg, tasks)
        dataset = built_summary(run_stage("dataset", cfg, [], progress=False))
        stages = [StageSummary(stage="agents", planned=1, ok=1, failed=0),
                  StageSummary(stage="rollouts", planned=len(tasks), ok=len(tasks), failed=0)]
        return PipelineReport(run=cfg.run, stages=stages, dataset=dataset, wall_s=5.0)


@pytest.fixture
def config(tmp_path: Path) -> PipelineConfig:
    base = fake_checkpoint(tmp_path / "base-model", "base-weights")
    return PipelineConfig.model_validate({
        "runs_dir": str(tmp_path / "runs"), "run": "imp", "dataset": {"heldout_share": SHARE}, "llm": {"model": "m"},
        "ray": {"enabled": False}, "eval": {"base_model": str(base)},
        "improve": {"rounds": 2, "optimizers": ["muonclip", "adamw"]}})


@pytest.fixture
def trainer(monkeypatch: pytest.MonkeyPatch) -> FakeTrainer:
    return FakeTrainer().install(monkeypatch)


@pytest.fixture
def evaluation(monkeypatch: pytest.MonkeyPatch) -> FakeEvaluation:
    fake = FakeEvaluation().install(monkeypatch)
    # muonclip's models pass both held-out tasks, adamw's one, the base none; a seed replicate passes what its
    # optimizer's own model does.
    fake.passes = {"muonclip": set(HELD), "adamw": {HELD[0]}, "muonclip-seed2": set(HELD), "adamw-seed2": {HELD[0]},
                   "muonclip-seed3": {HELD[1]}, "adamw-seed3": set()}
    return fake


def _steps(gen: Generator) -> Steps:
    return Steps(generate=gen, train=train, evaluate=evaluate)


def _with(config: PipelineConfig, **improve: object) -> PipelineConfig:
    return config.model_copy(update={"improve": config.improve.model_copy(update=improve)})


def test_rounds_heldout_and_curve(config: PipelineConfig, trainer: FakeTrainer, evaluation: FakeEvaluation) -> None:
    gen = Generator()
    report = run_improve(config, ENDPOINTS, steps=_steps(gen))
    # Round 1 generates with the base model; round 2 with round 1's first optimizer's checkpoint.
    assert gen.generated == [("round-1", None), ("round-2", "muonclip")]
    # Held-out tasks are never trained on, in any round, though every one of their trajectories passed; round 2
    # trains on both rounds' train splits (expert iteration keeps its data).
    assert [t["name"] for t in trainer.trained] == ["muonclip", "adamw", "muonclip", "adamw"]
    assert [t["tasks"] for t in trainer.trained] == [sorted(TRAIN[:2])] * 2 + [sorted(TRAIN)] * 2
    # The same held-out tasks (round 1's) are scored in every round: the base once, then each round's models.
    assert {t for _, t in evaluation.played} == set(HELD)
    # The base unforced and forced (as generation forces it), the trained models unforced.
    assert [m for m, _ in evaluation.played][::2] == ["base", "base:forced", "muonclip", "adamw", "muonclip", "adamw"]
    assert report.heldout_task_ids == sorted(HELD) and report.heldout_tasks == 2
    assert [r.round for r in report.rounds] == [0, 1, 2] and report.rounds[2].train_trajectories == 3
    assert report.rounds[0].models["base"].pass_rate == 0.0
    assert report.rounds[2].models["muonclip"].pass_rate == 1.0 and report.rounds[2].models["adamw"].pass_rate == 0.5
    assert report.rounds[1].agents == 1 and report.rounds[2].episodes == 3
    png = Path(report.plot or "")
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(improve_root(config).glob("data_value*"))  # written only when asked (--results)


def test_round_configs_compose_the_stages(config: PipelineConfig) -> None:
    rc = round_config(_with(config, replicates=1), 2)
    assert rc.run == "round-2" and rc.seed == config.seed + 1 and rc.accept is None
    assert rc.run_dir == config.run_dir / "improve" / "round-2"
    assert rc.train.optimizers == ["muonclip", "adamw"] and rc.train.data_runs == ["round-1"]
    assert rc.train.replicates == 1 and round_config(_with(config, replicates=1), 1).train.replicates == 0
    assert rc.eval.tasks_from == "round-1" and rc.train.here
    assert round_config(_with(config, cumulative=False), 2).train.data_runs == []
    assert not round_config(_with(config, train_here=False), 1).train.here


def test_eval_max_tasks_caps_the_recorded_heldout_set(config: PipelineConfig, trainer: FakeTrainer,
                                                      evaluation: FakeEvaluation) -> None:
    """The report counts the held-out tasks that were scored (eval.max_tasks of them), not every held-out one."""
    config = config.model_copy(update={"eval": config.eval.model_copy(update={"max_tasks": 1})})
    report = run_improve(config, ENDPOINTS, steps=_steps(Generator()))
    assert report.heldout_tasks == 1 and report.heldout_task_ids == sorted(HELD)[:1]
    assert {t for _, t in evaluation.played} == set(sorted(HELD)[:1])
    for t in trainer.trained:  # both stay out of train all the same: the cap limits what is scored
        assert not any(is_heldout(x, SHARE) for x in t["tasks"])


def test_resume_redoes_no_finished_step(config: PipelineConfig, trainer: FakeTrainer,
                                        evaluation: FakeEvaluation) -> None:
    trainer.fail_on = lambda job: "round-2" in str(job.output_dir)  # killed in round 2's first training
    with pytest.raises(KeyboardInterrupt):
        run_improve(config, ENDPOINTS, steps=_steps(Generator()))
    saved = load_report(config)
    assert set(saved.rounds[1].models) == {"muonclip", "adamw"} and saved.rounds[2].generated
    trainer.fail_on, trainer.trained, evaluation.played = None, [], []
    gen = Generator()
    report = run_improve(config, ENDPOINTS, steps=_steps(gen))
    assert gen.generated == []  # both rounds' data were finished: not generated again
    assert [t["name"] for t in trainer.trained] == ["muonclip", "adamw"]  # round 2's only
    assert {m for m, _ in evaluation.played} == {"muonclip", "adamw"} and len(evaluation.played) == 4
    assert set(report.rounds[2].models) == {"muonclip", "adamw"}


def test_train_elsewhere_stops_with_every_job_then_resumes(config: PipelineConfig, trainer: FakeTrainer,
                                                           evaluation: FakeEvaluation) -> None:
    """improve.train_here=false: the round's train stage writes every pending job's spec and the run stops with
    them; trained elsewhere (``synth train --job``) and copied back, the run goes on without generating again."""
    away = _with(config, train_here=False, rounds=1)
    gen = Generator()
    stopped = run_improve(away, ENDPOINTS, steps=_steps(gen))
    assert sorted(Path(j).name for j in stopped.waiting) == ["adamw.yaml", "muonclip.yaml"]
    saved = load_report(away)
    assert saved.rounds[1].generated and saved.rounds[1].trained == {} and "muonclip.yaml" in saved.rounds[1].note
    assert "base" in saved.rounds[0].models and trainer.trained == []  # the base was scored before the stop
    for spec in stopped.waiting:
        trainer.train(load_job(Path(spec)))  # elsewhere, into the job's output folder
    report = run_improve(away, ENDPOINTS, steps=_steps(gen))
    assert gen.generated == [("round-1", None)] and report.waiting == []
    assert set(report.rounds[1].models) == {"muonclip", "adamw"} and report.rounds[1].note is None


def test_changed_train_settings_train_and_score_again(config: PipelineConfig, trainer: FakeTrainer,
                                                      evaluation: FakeEvaluation) -> None:
    """A resumed run whose train.* changed trains and scores its models again (the base's score stands); once the
    old model has generated a later round, that round's data is stale: the run says so before training."""
    one = _with(config, rounds=1)
    run_improve(one, ENDPOINTS, steps=_steps(Generator()))
    trainer.trained, evaluation.played = [], []
    run_improve(one, ENDPOINTS, steps=_steps(Generator()))
    assert trainer.trained == [] and evaluation.played == []  # nothing changed: nothing redone

    changed = one.model_copy(update={"train": one.train.model_copy(update={"lr": 3e-4})})
    gen = Generator()
    report = run_improve(changed, ENDPOINTS, steps=_steps(gen))
    assert gen.generated == [] and [t["lr"] for t in trainer.trained] == [3e-4, 3e-4]
    assert {m for m, _ in evaluation.played} == {"muonclip", "adamw"}
    assert set(report.rounds[1].models) == {"muonclip", "adamw"}

    two = _with(changed, rounds=2)
    run_improve(two, ENDPOINTS, steps=_steps(Generator()))  # round 2 generated by round 1's muonclip model
    back = two.model_copy(update={"train": two.train.model_copy(update={"lr": 1e-4})})
    trainer.trained = []
    with pytest.raises(StaleRound, match="round 1's muonclip model changed"):
        run_improve(back, ENDPOINTS, steps=_steps(Generator()))
    assert trainer.trained == []  # refused before anything was trained over it


def test_replicates_train_and_score_seeds_of_the_last_round(config: PipelineConfig, trainer: FakeTrainer,
                                                            evaluation: FakeEvaluation, tmp_path: Path) -> None:
    from synth.improve.data_value import write_data_value

    config = _with(config, replicates=2)
    gen = Generator()
    report = run_improve(config, ENDPOINTS, steps=_steps(gen))
    # Round 1 (not the last) trains each optimizer once; round 2 (seed 1) adds seeds 2 and 3 of each.
    assert [(t["name"], t["seed"]) for t in trainer.trained] == [
        ("muonclip", 0), ("adamw", 0), ("muonclip", 1), ("muonclip-seed2", 2), ("muonclip-seed3", 3), ("adamw", 1),
        ("adamw-seed2", 2), ("adamw-seed3", 3)]
    assert set(report.rounds[2].models) == {"muonclip", "adamw", "muonclip-seed2", "muonclip-seed3", "adamw-seed2",
                                            "adamw-seed3"}
    assert gen.generated == [("round-1", None), ("round-2", "muonclip")]  # never a replicate generates

    page = write_data_value(report, config, tmp_path / "results").read_text()
    data = json.loads((tmp_path / "results" / "data_value.json").read_text())
    # Own model 1.0, replicates 1.0 and 0.5: the mean weighs each seed the same.
    assert data["models"]["muonclip"]["pass_rate"] == pytest.approx((1.0 + 1.0 + 0.5) / 3)
    assert data["models"]["adamw"]["pass_rate"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert data["counts"]["muonclip"]["checks_passed"] == 2 + 2 + 1
    seeds = data["seeds"]["muonclip"]
    assert {n: m["seed"] for n, m in seeds["models"].items()} == {"muonclip": 1, "muonclip-seed2": 2,
                                                                  "muonclip-seed3": 3}
    assert seeds["range"]["pass_rate"] == pytest.approx([0.5, 1.0])
    # Paired by seed from the evaluation rows: seed 1 muonclip passes both, adamw one -> 1 vs 0; seed 3: 1 vs 0.
    paired = data["paired"]["muonclip vs adamw"]
    assert paired["seeds"] == {"1": {"muonclip_only": 1, "adamw_only": 0, "both": 1},
                               "2": {"muonclip_only": 1, "adamw_only": 0, "both": 1},
                               "3": {"muonclip_only": 1, "adamw_only": 0, "both": 0}}
    assert "| muonclip (mean of 3 seeds) | " in page and "| muonclip-seed3 | 3 | " in page
    assert "in all 3 vs 0, two-sided sign test p = 0.25" in page
    # Resumed with one replicate: seed 3's records stay in the report but not in the means.
    write_data_value(report, _with(config, replicates=1), tmp_path / "fewer")
    less = json.loads((tmp_path / "fewer" / "data_value.json").read_text())
    assert set(less["seeds"]["muonclip"]["models"]) == {"muonclip", "muonclip-seed2"}
    assert less["models"]["muonclip"]["pass_rate"] == pytest.approx(1.0)


def test_data_value_covers_the_optimizers_the_run_lists(config: PipelineConfig, trainer: FakeTrainer,
                                                        evaluation: FakeEvaluation, tmp_path: Path) -> None:
    from synth.improve.data_value import write_data_value

    config = _with(config, optimizers=["adamw"])
    evaluation.passes["base:forced"] = {HELD[1]}
    report = run_improve(config, ENDPOINTS, steps=_steps(Generator()))
    page = write_data_value(report, config, tmp_path / "results").read_text()
    data = json.loads((tmp_path / "results" / "data_value.json").read_text())
    assert list(data["models"]) == ["base", "adamw"] and "paired" not in data and "muonclip" not in page
    assert data["models"]["adamw"]["pass_rate"] == 0.5 and data["models"]["base"]["pass_rate"] == 0.0
    assert "| adamw | 50.0% | 50.0% | 50.0% | 50.0% |" in page
    # Pass rates per model and mode, by tools seen in training: none of the held-out tasks holds one.
    none = {"rate": None, "passed": 0, "checked": 0}
    assert [(r["model"], r["mode"], r["all"]["passed"], r["seen"], r["unseen"]["passed"])
            for r in data["pass_rates"]] == [("base", "forced", 1, none, 1), ("base", "unforced", 0, none, 0),
                                             ("adamw", "unforced", 1, none, 1)]
    assert "| base | forced | 50.0% (1 of 2) | none (0 tasks) | 50.0% (1 of 2) |" in page
    assert "| adamw | unforced | 50.0% (1 of 2) | none (0 tasks) | 50.0% (1 of 2) |" in page
    assert "empty by construction" in page
    assert data["counts"]["adamw"] == {"episodes": 2, "calls_attempted": 2, "calls_valid": 1,
                                       "episodes_with_valid_call": 1, "checked_episodes": 2, "checks_passed": 1}
    rounds = data["per_round"]
    assert (rounds[2]["agents"], rounds[2]["episodes"], rounds[2]["pipeline_wall_s"]) == (1, 3, 5.0)
    assert rounds[2]["generation"] == {"grounded_calls_first": False, "grounded_answer_after_call": False,
                                       "max_calls_per_step": 2}
    assert all(r["eval_wall_s"] is not None for r in rounds)
    assert data["trained"]["adamw"]["steps"] == 1 and "What limits it" not in page


def test_train_by_round_changes_only_that_round(config: PipelineConfig, trainer: FakeTrainer,
                                                evaluation: FakeEvaluation) -> None:
    """improve.train_by_round: one round's train.* differ; a finished run given an override for its last round
    trains and scores only that round's models again (the earlier rounds and their data stand)."""
    run_improve(config, ENDPOINTS, steps=_steps(Generator()))
    over = _with(config, train_by_round={2: {"lr": 3e-4}})
    assert round_config(over, 1).train.lr == config.train.lr and round_config(over, 2).train.lr == 3e-4
    trainer.trained = []
    gen = Generator()
    run_improve(over, ENDPOINTS, steps=_steps(gen))
    assert gen.generated == [] and [(t["name"], t["lr"]) for t in trainer.trained] == [("muonclip", 3e-4),
                                                                                        ("adamw", 3e-4)]
    stale = _with(config, train_by_round={1: {"lr": 3e-4}})  # round 1's model generated round 2
    with pytest.raises(StaleRound, match="round 1's muonclip model changed"):
        run_improve(stale, ENDPOINTS, steps=_steps(Generator()))


@pytest.mark.parametrize(("override", "message"), [
    ({0: {"lr": 1e-4}}, "numbered from 1"),
    ({2: {"learning_rate": 1e-4}}, "learning_rate"),
    ({2: {"optimizers": ["adamw"]}}, "cannot be set for one round"),
    ({2: {"muon_lr": -1}}, "greater than 0"),
])
def test_train_by_round_refuses_what_it_cannot_mean(override: dict, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        PipelineConfig.model_validate({"improve": {"train_by_round": override}})


class CopyingGenerator(Generator):
    """Round 2 plans a training task of round 1 again: its episode asks the same and calls the same, a copy."""

    def __call__(self, cfg: PipelineConfig, endpoints: list[EndpointConfig], agent: Path | None) -> PipelineReport:
        if cfg.run == "round-2":
            write_judged(cfg, [*HELD, TRAIN[0], TRAIN[2]])
            dataset = built_summary(run_stage("dataset", cfg, [], progress=False))
            return PipelineReport(run=cfg.run, stages=[], dataset=dataset, wall_s=5.0)
        return super().__call__(cfg, endpoints, agent)


def test_each_round_is_deduplicated_against_the_earlier_rounds(config: PipelineConfig, trainer: FakeTrainer,
                                                               evaluation: FakeEvaluation, tmp_path: Path) -> None:
    from synth.improve.data_value import write_data_value

    config = _with(config, optimizers=["adamw"])
    report = run_improve(config, ENDPOINTS, steps=_steps(CopyingGenerator()))
    # Round 2's copy of round 1's row is dropped from its train split (the held-out rows, copies as well, stay).
    second = built_summary(run_stage("dataset", round_config(config, 2), [], progress=False))
    assert second.dedup is not None and second.dedup.against == {"round-1": 1} and second.dedup.dropped == 1
    assert (second.accepted, second.heldout) == (1, 2) and report.rounds[2].accepted_new == 1
    assert [t["tasks"] for t in trainer.trained] == [sorted(TRAIN[:2]), sorted(TRAIN)]  # each task once
    page = write_data_value(report, config, tmp_path / "results").read_text()
    data = json.loads((tmp_path / "results" / "data_value.json").read_text())
    assert [r["dedup"]["dropped"] if r["dedup"] else None for r in data["per_round"]] == [None, 0, 1]
    assert "| 1 (0 within the run, 1 near round-1, 0 near held-out) |" in page
