"""``synth improve``'s control flow with stand-in steps: rounds in order, held-out tasks never trained on in any
round, resume without redoing a finished step, the curve written. The real steps are the pipeline, ``synth
train`` and ``synth eval``, tested in their own tiers."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import EndpointConfig, PipelineConfig
from synth.data.heldout import is_heldout
from synth.improve.loop import load_report, round_config, run_improve
from synth.improve.models import ModelScores, Steps, optimizer_of
from synth.schemas import Criterion, Rubric, TaskRecord, Verdict, VerdictRecord
from synth.stages.dataset_build import build_dataset
from tests.data.test_dataset import TOOL, _trajectory, _write

SHARE = 0.2
# Task ids with known held-out status at share 0.2 (by id): 1, 2 and 6 are held out; 3, 4 and 5 are not.
HELD, TRAIN = ["task-1", "task-2"], ["task-3", "task-4"]


def _fake_round(cfg: PipelineConfig, task_ids: list[str]) -> int:
    """Every task gets one trajectory, and every trajectory passes: held-out ones must still stay out of train."""
    from synth.schemas import AgentRecord

    rubric = Rubric(criteria=[Criterion(id="grounding", kind="core", description="Uses tool results.")])
    _write(cfg.run_dir, "agents", [AgentRecord(id="agent-1", domain="weather", system_prompt="s", tools=[TOOL])])
    _write(cfg.run_dir, "tasks", [TaskRecord(id=t, agent_id="agent-1", user_goal="g", rubric=rubric)
                                  for t in task_ids])
    trajs = [_trajectory(i).model_copy(update={"id": f"{cfg.run}-traj-{i}", "task_id": t})
             for i, t in enumerate(task_ids)]
    _write(cfg.run_dir, "rollouts", trajs)
    _write(cfg.run_dir, "judge", [VerdictRecord(
        id=t.id, trajectory_id=t.id, task_id=t.task_id,
        verdict=Verdict(passed=True, score=1.0, code_passed=True, verifiable=True, llm_passed=True)) for t in trajs])
    return build_dataset(cfg).accepted


class Recorder:
    def __init__(self) -> None:
        self.generated: list[tuple[str, str | None]] = []
        self.trained_on: list[tuple[str, list[str]]] = []
        self.evaluated: list[tuple[str, list[str]]] = []
        self.rounds_evaluated: list[int] = []
        self.seeds: dict[str, int] = {}

    def steps(self) -> Steps:
        def generate(cfg: PipelineConfig, endpoints: list[EndpointConfig], agent: Path | None) -> int:
            self.generated.append((cfg.run, agent.name if agent else None))
            # Round 2 plans the same held-out tasks again (and new ones): they must stay out there as well.
            return _fake_round(cfg, HELD + TRAIN if cfg.run == "round-1" else [*HELD, "task-5", "task-6"])

        def train(cfg: PipelineConfig, files: list[Path]) -> dict:
            from datasets import load_dataset

            rows = load_dataset("parquet", data_files=[str(f) for f in files], split="train")
            name = cfg.train.name or cfg.train.optimizer
            self.trained_on.append((f"{cfg.run}/{name}", sorted(rows["task_id"])))
            self.seeds[name] = cfg.seed
            out = cfg.run_dir / "train" / name
            out.mkdir(parents=True, exist_ok=True)
            return {"checkpoint": str(out), "data": {"examples": rows.num_rows}, "steps": 1}

        def fingerprint(cfg: PipelineConfig, files: list[Path]) -> str:
            return f"{cfg.train.lr}-{[f.parent.parent.parent.name for f in files]}"

        def evaluate(cfg: PipelineConfig, endpoints: list[EndpointConfig], models: dict[str, Path | None],
                     task_ids: list[str], round_k: int) -> dict[str, ModelScores]:
            self.evaluated.append((",".join(sorted(models)), task_ids))
            self.rounds_evaluated.append(round_k)
            # A seed replicate scores 0.1 more than its optimizer's own model, so means over seeds show.
            lift = {n: {"base": 0.0, "muonclip": 0.3, "adamw": 0.2}[optimizer_of(n)] + 0.1 * ("-seed" in n)
                    for n in models}
            return {name: ModelScores(
                valid_call_rate=0.2 + lift[name], pass_rate=0.1 + lift[name], judge_score=0.3 + lift[name],
                episodes=len(task_ids), wall_s=10.0 * (round_k + 1), detail={"overall": {
                    "episodes": len(task_ids), "calls_attempted": 10, "calls_valid": round(10 * (0.2 + lift[name])),
                    "episodes_with_valid_call": 1, "checked_episodes": 10, "checks_passed": round(
                        10 * (0.1 + lift[name]))}}) for name in models}

        return Steps(generate=generate, train=train, evaluate=evaluate, fingerprint=fingerprint)


@pytest.fixture
def config(tmp_path: Path) -> PipelineConfig:
    for t in HELD:
        assert is_heldout(t, SHARE)
    for t in [*TRAIN, "task-5"]:
        assert not is_heldout(t, SHARE)
    return PipelineConfig.model_validate({
        "runs_dir": str(tmp_path), "run": "imp", "dataset": {"heldout_share": SHARE},
        "improve": {"rounds": 2, "optimizers": ["muonclip", "adamw"]}})


def test_rounds_heldout_and_curve(config: PipelineConfig) -> None:
    rec = Recorder()
    report = run_improve(config, [], steps=rec.steps())
    # Round 1 generates with the base model; round 2 with round 1's first optimizer's checkpoint.
    assert rec.generated == [("round-1", None), ("round-2", "muonclip")]
    # Held-out tasks are never trained on, in any round, though every one of their trajectories passed.
    for _, task_ids in rec.trained_on:
        assert task_ids and not any(is_heldout(t, SHARE) for t in task_ids)
    # Round 2 trains on both rounds' train splits (expert iteration keeps its data).
    assert dict(rec.trained_on)["round-2/muonclip"] == ["task-3", "task-4", "task-5"]
    # The same held-out tasks (round 1's) are evaluated in every round: base once, then the trained models.
    assert [e[0] for e in rec.evaluated] == ["base", "adamw,muonclip", "adamw,muonclip"]
    assert {tuple(e[1]) for e in rec.evaluated} == {tuple(sorted(HELD))}
    assert rec.rounds_evaluated == [0, 1, 2]
    assert report.heldout_tasks == 2 and [r.round for r in report.rounds] == [0, 1, 2]
    assert report.rounds[2].train_trajectories == 3
    assert report.rounds[2].models["muonclip"].pass_rate == pytest.approx(0.4)
    png = Path(report.plot)
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_max_tasks_caps_the_recorded_heldout_set(config: PipelineConfig) -> None:
    """The report counts the held-out tasks that were scored (eval.max_tasks of them), not every held-out one."""
    config = config.model_copy(update={"eval": config.eval.model_copy(update={"max_tasks": 1})})
    rec = Recorder()
    report = run_improve(config, [], steps=rec.steps())
    assert report.heldout_tasks == 1 and report.heldout_task_ids == sorted(HELD)[:1]
    assert {tuple(e[1]) for e in rec.evaluated} == {tuple(sorted(HELD)[:1])}
    # Both stay out of train all the same: the cap limits what is scored, not what is held out.
    for _, task_ids in rec.trained_on:
        assert not any(is_heldout(t, SHARE) for t in task_ids)


def test_resume_redoes_no_finished_step(config: PipelineConfig) -> None:
    first = Recorder()
    steps = first.steps()
    calls = {"n": 0}
    real_train = steps.train

    def train_then_die(cfg: PipelineConfig, files: list[Path]) -> dict:
        calls["n"] += 1
        if calls["n"] == 3:  # round 2's first training: the process is killed here
            raise KeyboardInterrupt
        return real_train(cfg, files)

    steps.train = train_then_die
    with pytest.raises(KeyboardInterrupt):
        run_improve(config, [], steps=steps)
    saved = load_report(config)
    assert saved.rounds[1].trained.keys() == {"muonclip", "adamw"} and saved.rounds[2].generated

    again = Recorder()
    report = run_improve(config, [], steps=again.steps())
    assert again.generated == []  # both rounds' data were finished: not generated again
    assert [t[0] for t in again.trained_on] == ["round-2/muonclip", "round-2/adamw"]
    assert [e[0] for e in again.evaluated] == ["adamw,muonclip"]  # only round 2's models were left
    assert set(report.rounds[2].models) == {"muonclip", "adamw"}


def test_round_configs_share_one_heldout_share(config: PipelineConfig) -> None:
    rc = round_config(config, 2)
    assert rc.run == "round-2" and rc.seed == config.seed + 1 and rc.accept is None
    assert rc.eval.heldout_share == rc.dataset.heldout_share == SHARE
    assert rc.run_dir == config.run_dir / "improve" / "round-2"


def test_eval_adapter_keeps_rounds_apart_and_maps_scores(config: PipelineConfig, monkeypatch) -> None:
    from synth.evaluate import EvalSummary, ModelEval, Scores
    from synth.improve.eval_adapter import evaluate_models

    seen: dict = {}

    def fake_eval(cfg, endpoints, models, task_ids, progress=True) -> EvalSummary:
        seen.update(models)
        scores = Scores(episodes=2, calls_attempted=4, calls_valid=3, valid_call_rate=0.75, checked_episodes=2,
                        checks_passed=1, pass_rate=0.5, judge_score=0.4)
        return EvalSummary(run=cfg.run, heldout_share=0.2, task_ids=task_ids, difficulties={},
                           models={n: ModelEval(name=n, checkpoint=str(p), served_name=n, overall=scores,
                                                wall_s=12.5)
                                   for n, p in models.items()})

    monkeypatch.setattr("synth.evaluate.evaluate_models", fake_eval)
    out = evaluate_models(config, [], {"base": None, "muonclip": Path("/ckpt")}, ["task-1"], tag="-round2")
    assert set(seen) == {"base", "muonclip-round2"}  # round 2's rows go to their own eval folder
    assert (out["muonclip"].valid_call_rate, out["muonclip"].pass_rate, out["muonclip"].judge_score) == \
        (0.75, 0.5, 0.4)
    assert out["muonclip"].wall_s == 12.5


def test_data_value_files(config: PipelineConfig, tmp_path: Path) -> None:
    import json

    from synth.improve.data_value import write_data_value

    report = run_improve(config, [], steps=Recorder().steps())
    # Each round's generation settings come from its own rollouts record (they may change between rounds).
    record = round_config(config, 2).run_dir / "rollouts" / "fingerprint.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"rollouts.grounded_calls_first": True, "rollouts.max_steps": 2,
                                  "rollouts.grounded_answer_after_call": True}))
    # Each round's agent count comes from its own pipeline report (agents_per_round may change between rounds).
    (round_config(config, 2).run_dir / "report.json").write_text(json.dumps(
        {"wall_s": 5.0, "stages": [{"stage": "agents", "planned": 7}, {"stage": "rollouts", "planned": 21}]}))
    page = write_data_value(report, config, tmp_path / "results")
    data = json.loads((tmp_path / "results" / "data_value.json").read_text())
    assert data["train_trajectories"] == 3 and data["heldout_tasks"] == 2
    assert (data["per_round"][2]["agents"], data["per_round"][2]["episodes"]) == (7, 21)
    assert "| 2 | " in page.read_text() and " | 7 | `grounded_calls_first=True`" in page.read_text()
    for name, lift in (("base", 0.0), ("muonclip", 0.3), ("adamw", 0.2)):
        assert data[name]["pass_rate"] == pytest.approx(0.1 + lift)
        assert set(data[name]) == {"valid_call_rate", "pass_rate", "judge_score", "valid_call_episode_rate"}
        assert data[name]["valid_call_episode_rate"] == pytest.approx(1 / 2)  # 1 of the 2 episodes
    assert "| muonclip | 50.0% | 40.0% | 60.0% | 50.0% |" in page.read_text()
    assert data["counts"]["muonclip"]["calls_valid"] == 5
    assert "| muonclip | 2 | 10 | 5 | 1 | 10 | 4 |" in page.read_text()
    assert data["machine"]["cores"] >= 1
    assert [r["generation"] for r in data["per_round"]][2] == {"grounded_calls_first": True,
                                                               "grounded_answer_after_call": True}
    assert "| `grounded_calls_first=True`, `grounded_answer_after_call=True` | " in page.read_text()
    # Each round's evaluation wall time is its own, not the last eval.json's.
    assert [r["eval_wall_s"] for r in data["per_round"]] == [
        {"base": 10.0}, {"muonclip": 20.0, "adamw": 20.0}, {"muonclip": 30.0, "adamw": 30.0}]


def test_train_elsewhere_stops_with_every_job_then_resumes(config: PipelineConfig) -> None:
    """improve.train_here=false: the loop writes the job of every pending optimizer, records why it stopped and
    raises; the run started again (checkpoints now in place) goes on without generating again."""
    from synth.improve.models import TrainElsewhere

    first = Recorder()
    steps = first.steps()
    real_train = steps.train

    def elsewhere(cfg: PipelineConfig, files: list[Path]) -> dict:
        job = cfg.run_dir / "train-jobs" / f"{cfg.train.optimizer}.yaml"
        raise TrainElsewhere(job, cfg.run_dir / "train" / cfg.train.optimizer)

    steps.train = elsewhere
    with pytest.raises(TrainElsewhere):
        run_improve(config, [], steps=steps)
    saved = load_report(config)
    assert saved.rounds[1].generated and saved.rounds[1].trained == {}
    assert "muonclip.yaml" in saved.rounds[1].note and "adamw.yaml" in saved.rounds[1].note
    assert "base" in saved.rounds[0].models  # the base was evaluated before the stop

    steps.train = real_train
    report = run_improve(config.model_copy(update={"improve": config.improve.model_copy(update={"rounds": 1})}),
                         [], steps=steps)
    assert first.generated == [("round-1", None)]  # not generated again
    assert set(report.rounds[1].models) == {"muonclip", "adamw"} and report.rounds[1].note is None


def test_changed_train_settings_train_and_score_again(config: PipelineConfig) -> None:
    """A resumed run whose train.* changed must not keep the old checkpoints' scores as the new settings'; and
    once the old model has generated a later round, that round's data is stale: the run says so and stops."""
    one = config.model_copy(update={"improve": config.improve.model_copy(update={"rounds": 1})})
    run_improve(one, [], steps=Recorder().steps())

    same = Recorder()
    run_improve(one, [], steps=same.steps())
    assert same.trained_on == [] and same.evaluated == []  # nothing changed: nothing redone

    changed = one.model_copy(update={"train": one.train.model_copy(update={"lr": 3e-4})})
    again = Recorder()
    report = run_improve(changed, [], steps=again.steps())
    assert again.generated == []  # the data is the same data
    assert [t[0] for t in again.trained_on] == ["round-1/muonclip", "round-1/adamw"]
    assert [e[0] for e in again.evaluated] == ["adamw,muonclip"]  # the base's score still holds
    assert set(report.rounds[1].models) == {"muonclip", "adamw"}
    assert report.rounds[1].fingerprints["muonclip"].startswith("0.0003-")

    two = changed.model_copy(update={"improve": changed.improve.model_copy(update={"rounds": 2})})
    run_improve(two, [], steps=Recorder().steps())  # round 2 generated by round 1's muonclip model
    back = two.model_copy(update={"train": two.train.model_copy(update={"lr": 1e-4})})
    with pytest.raises(ValueError, match="round 1's muonclip model changed"):
        run_improve(back, [], steps=Recorder().steps())


def test_replicates_train_and_score_seeds_of_the_last_round(config: PipelineConfig, tmp_path: Path) -> None:
    """improve.replicates: the last round trains each optimizer again with the next seeds, scores every seed, and
    the data-value figures are each optimizer's mean over its seeds, with the seeds listed."""
    import json

    from synth.improve.data_value import write_data_value

    config = config.model_copy(update={"improve": config.improve.model_copy(update={"replicates": 2})})
    rec = Recorder()
    report = run_improve(config, [], steps=rec.steps())
    # Round 1 (not the last) trains each optimizer once; round 2 (seed 1) adds seeds 2 and 3 of each.
    assert [t[0] for t in rec.trained_on] == [
        "round-1/muonclip", "round-1/adamw", "round-2/muonclip", "round-2/adamw", "round-2/muonclip-seed2",
        "round-2/muonclip-seed3", "round-2/adamw-seed2", "round-2/adamw-seed3"]
    assert rec.seeds == {"muonclip": 1, "adamw": 1, "muonclip-seed2": 2, "muonclip-seed3": 3, "adamw-seed2": 2,
                         "adamw-seed3": 3}
    assert set(report.rounds[2].models) == {"muonclip", "adamw", "muonclip-seed2", "muonclip-seed3",
                                            "adamw-seed2", "adamw-seed3"}
    # The next round's agent is still the first optimizer's own model, never a replicate.
    assert rec.generated == [("round-1", None), ("round-2", "muonclip")]

    page = write_data_value(report, config, tmp_path / "results").read_text()
    data = json.loads((tmp_path / "results" / "data_value.json").read_text())
    # Own model 0.4 and two replicates 0.5: the mean weighs each seed the same.
    assert data["muonclip"]["pass_rate"] == pytest.approx((0.4 + 0.5 + 0.5) / 3)
    assert data["adamw"]["pass_rate"] == pytest.approx((0.3 + 0.4 + 0.4) / 3)
    assert data["counts"]["muonclip"]["checks_passed"] == 4 + 5 + 5
    seeds = data["seeds"]["muonclip"]
    assert {n: m["seed"] for n, m in seeds["models"].items()} == {"muonclip": 1, "muonclip-seed2": 2,
                                                                  "muonclip-seed3": 3}
    assert seeds["range"]["pass_rate"] == pytest.approx([0.4, 0.5])
    assert data["paired"] is None  # the stand-in evaluator writes no per-task rows to pair
    assert "| muonclip (mean of 3 seeds) | " in page and "| muonclip-seed3 | 3 | " in page
    assert data["config"]["improve.replicates"] == 2
    # Resumed with one replicate: seed 3's records stay in the report but not in the means.
    fewer = config.model_copy(update={"improve": config.improve.model_copy(update={"replicates": 1})})
    write_data_value(report, fewer, tmp_path / "fewer")
    less = json.loads((tmp_path / "fewer" / "data_value.json").read_text())
    assert set(less["seeds"]["muonclip"]["models"]) == {"muonclip", "muonclip-seed2"}
    assert less["muonclip"]["pass_rate"] == pytest.approx((0.4 + 0.5) / 2)


def test_train_by_round_changes_only_that_round(config: PipelineConfig) -> None:
    """improve.train_by_round: one round's train.* differ; a finished run given an override for its last round
    trains and scores only that round's models again (the earlier rounds and their data stand)."""
    rec = Recorder()
    run_improve(config, [], steps=rec.steps())
    over = config.model_copy(update={"improve": config.improve.model_copy(
        update={"train_by_round": {2: {"lr": 3e-4}}})})
    assert round_config(over, 1).train.lr == config.train.lr and round_config(over, 2).train.lr == 3e-4
    again = Recorder()
    report = run_improve(over, [], steps=again.steps())
    assert again.generated == []
    assert [t[0] for t in again.trained_on] == ["round-2/muonclip", "round-2/adamw"]
    assert report.rounds[1].fingerprints["muonclip"].startswith("0.0001-")
    assert report.rounds[2].fingerprints["muonclip"].startswith("0.0003-")
    # Round 1's model generated round 2: overriding round 1 now would make round 2's data stale.
    stale = config.model_copy(update={"improve": config.improve.model_copy(
        update={"train_by_round": {1: {"lr": 3e-4}}})})
    with pytest.raises(ValueError, match="round 1's muonclip model changed"):
        run_improve(stale, [], steps=Recorder().steps())


@pytest.mark.parametrize(("override", "message"), [
    ({0: {"lr": 1e-4}}, "numbered from 1"),
    ({2: {"learning_rate": 1e-4}}, "learning_rate"),
    ({2: {"optimizer": "adamw"}}, "cannot be set for one round"),
    ({2: {"muon_lr": -1}}, "greater than 0"),
])
def test_train_by_round_refuses_what_it_cannot_mean(override: dict, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        PipelineConfig.model_validate({"improve": {"train_by_round": override}})


def test_data_value_pairs_seeds_from_the_evaluation_rows(config: PipelineConfig, tmp_path: Path) -> None:
    """With replicates, the paired comparison reads which tasks each model passed from its evaluation rows
    (runs/<run>/improve/round-1/eval/<name>-round<k>/), seed by seed."""
    import json

    from synth.evaluate.metrics import CallStats, EpisodeScore
    from synth.evaluate.run import EvalRecord
    from synth.improve.data_value import write_data_value
    from synth.stages.store import JournalWriter, StageStore

    config = config.model_copy(update={"improve": config.improve.model_copy(update={"replicates": 1})})
    report = run_improve(config, [], steps=Recorder().steps())
    passes = {"muonclip": {"task-1", "task-2"}, "adamw": {"task-2"},           # seed 1: 1 vs 0
              "muonclip-seed2": {"task-1"}, "adamw-seed2": {"task-1", "task-2"}}  # seed 2: 0 vs 1
    for name, ok in passes.items():
        store = StageStore(round_config(config, 1).run_dir / "eval" / f"{name}-round2")
        writer = JournalWriter(store.new_journal())
        writer.write_many(EvalRecord(id=f"{name}-{t}", task_id=t, score=EpisodeScore(
            calls=CallStats(), has_checks=True, checks_passed=t in ok, judge_score=0.0, accepted=False,
            errored=False)) for t in HELD)
        writer.close()
    page = write_data_value(report, config, tmp_path / "results").read_text()
    paired = json.loads((tmp_path / "results" / "data_value.json").read_text())["paired"]
    assert paired["seeds"] == {"1": {"muonclip_only": 1, "adamw_only": 0, "both": 1},
                               "2": {"muonclip_only": 0, "adamw_only": 1, "both": 1}}
    assert (paired["muonclip_only"], paired["adamw_only"], paired["sign_test_p"]) == (1, 1, 1.0)
    assert "seed 1: 1 vs 0; seed 2: 0 vs 1; in all 1 vs 1, two-sided sign test p = 1.00" in page
