"""One stage contract: a stage declares the stages it reads and reads them only through its context; the runner
checks them, the fingerprint chains through them; no stage opens another stage's folder on its own."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import ClassVar

import pytest

from synth.config import PipelineConfig, load_config
from synth.paths import REPO_ROOT
from synth.schemas.records import AgentRecord, Row, TaskRecord
from synth.schemas.usage import UsageByRole
from synth.stages import fingerprint, registry
from synth.stages.base import Stage, StageContext, UndeclaredInput, WorkItem
from synth.stages.fingerprint import StageSettingsChanged
from synth.stages.runner import StageIncomplete, run_stage


class Source(Stage):
    """A stage with no inputs; registered under several names below."""

    name = "left"
    record = AgentRecord
    uses_llm = False

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"{self.name}-{i}", seed=i) for i in range(2)]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        return AgentRecord(id=item.id, seed=item.seed, name=item.id)


class Right(Source):
    name = "right"


class Both(Source):
    """Reads two inputs that do not depend on each other."""

    name = "both"
    inputs = ("left", "right")

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        rows = ctx.rows("left", AgentRecord) + ctx.rows("right", AgentRecord)
        return [WorkItem(id=f"both-{r.id}", seed=r.seed) for r in rows]


class PlansFromUndeclared(Source):
    name = "sneaky_plan"
    inputs = ("left",)

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        ctx.rows("right", AgentRecord)  # not declared
        return []


class ProcessesFromUndeclared(Source):
    name = "sneaky_process"
    inputs = ("left",)
    processed: ClassVar[int] = 0

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        ProcessesFromUndeclared.processed += 1
        ctx.summary("right")  # not declared: a bug in the stage, not a bad row
        return await super().process(item, ctx, usage)


class DeclaresNeeds(Source):
    name = "old_style"
    needs = "left"


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineConfig:
    for cls in (Source, Right, Both, PlansFromUndeclared, ProcessesFromUndeclared, DeclaresNeeds):
        monkeypatch.setitem(registry.STAGES, cls.name, f"{__name__}:{cls.__name__}")
    ProcessesFromUndeclared.processed = 0
    return load_config(overrides=[f"runs_dir={tmp_path}", "run=r", "ray.enabled=false"])


def test_reading_an_undeclared_input_in_plan_raises_naming_it(cfg: PipelineConfig) -> None:
    run_stage("left", cfg, [], progress=False)
    run_stage("right", cfg, [], progress=False)
    with pytest.raises(UndeclaredInput) as err:
        run_stage("sneaky_plan", cfg, [], progress=False)
    message = str(err.value)
    assert "'sneaky_plan'" in message and "'right'" in message and "inputs" in message and "'left'" in message


def test_reading_an_undeclared_input_in_process_stops_the_stage_instead_of_an_error_row(cfg: PipelineConfig) -> None:
    run_stage("left", cfg, [], progress=False)
    with pytest.raises(UndeclaredInput, match="'right'"):
        run_stage("sneaky_process", cfg, [], progress=False)
    assert ProcessesFromUndeclared.processed >= 1
    assert not (cfg.run_dir / "sneaky_process" / "data.parquet").exists()  # no stage that "finished" with errors


def test_every_declared_input_must_have_finished(cfg: PipelineConfig) -> None:
    run_stage("left", cfg, [], progress=False)
    with pytest.raises(StageIncomplete, match=r"'both' reads 'right', which has not finished") as err:
        run_stage("both", cfg, [], progress=False)
    assert "synth right" in err.value.hint
    run_stage("right", cfg, [], progress=False)
    assert run_stage("both", cfg, [], progress=False).ok == 4


def test_the_old_needs_attribute_is_refused_not_ignored(cfg: PipelineConfig) -> None:
    with pytest.raises(TypeError, match="inputs"):
        registry.get_stage("old_style")


def test_a_change_in_any_declared_input_reaches_the_fingerprint(cfg: PipelineConfig, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "right.txt"
    data.write_text("one")
    monkeypatch.setitem(fingerprint.STAGE_FILES, "left", [])
    monkeypatch.setitem(fingerprint.STAGE_FILES, "right", [data])
    monkeypatch.setitem(fingerprint.STAGE_FILES, "both", [])
    for name in ("left", "right", "both"):
        run_stage(name, cfg, [], progress=False)
    data.write_text("two")  # what shaped `right` (the second input) changed
    recompute = cfg.model_copy(update={"on_change": "recompute"})
    run_stage("right", recompute, [], progress=False)
    with pytest.raises(StageSettingsChanged, match="upstream"):
        run_stage("both", cfg, [], progress=False)


def test_registered_stages_declare_registered_inputs_that_come_before_them() -> None:
    names = list(registry.STAGES)
    for name in names:
        stage = registry.get_stage(name)
        assert stage.name == name
        for dep in stage.inputs:
            assert names.index(dep) < names.index(name), (name, dep)
    assert [*registry.ORDER, "dataset"] == registry.PIPELINE


def test_the_real_stages_declare_what_they_read() -> None:
    declared = {name: registry.get_stage(name).inputs for name in registry.STAGES}
    assert declared == {"tools": (), "agents": ("tools",), "tasks": ("agents",),
                        "rollouts": ("tasks", "agents", "tools"), "judge": ("rollouts", "tasks", "agents", "tools"),
                        "dataset": ("tools", "agents", "tasks", "rollouts", "judge"),
                        "train": ("dataset",), "eval": ("dataset", "train"), "card": ("dataset", "eval"),
                        "publish": ("dataset", "card")}
    # Inputs another input already depends on add nothing to the fingerprint chain (and keep old fingerprints);
    # optional inputs (the eval's trained models, the card's evaluation) are not in it at all.
    assert [registry.direct_inputs(n) for n in ("rollouts", "judge", "dataset", "train", "eval", "card", "publish")] \
        == [["tasks"], ["rollouts"], ["judge"], ["dataset"], ["dataset"], ["dataset"], ["card"]]


def test_rollouts_plan_reads_only_its_inputs(tmp_path: Path) -> None:
    from synth.stages.dataset import DatasetRecord
    from synth.stages.store import JournalWriter, StageStore

    cfg = PipelineConfig(runs_dir=tmp_path, run="r")
    store = StageStore(cfg.run_dir / "tasks")
    writer = JournalWriter(store.new_journal())
    writer.write(TaskRecord(id="task-a", agent_id="agent-a", seed=3))
    writer.close()
    store.compact()
    stage = registry.get_stage("rollouts")
    assert {i.payload["task_id"] for i in stage.plan(StageContext(config=cfg, stage=stage))} == {"task-a"}
    judge = registry.get_stage("judge")
    with pytest.raises(UndeclaredInput, match="'dataset'"):
        StageContext(config=cfg, stage=judge).rows("dataset", DatasetRecord)  # read after it, never by it


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def test_no_stage_opens_another_stages_folder_on_its_own() -> None:
    """Only the reading API (outputs.py), the runner and the store itself make a StageStore; nothing under
    synth/stages or synth/data reaches a stage through ``ctx.store`` or a path it builds."""
    allowed = {"outputs.py", "runner.py", "store.py"}
    offenders = []
    for path in sorted([*(REPO_ROOT / "synth" / "stages").glob("*.py"), *(REPO_ROOT / "synth" / "data").glob("*.py")]):
        tree = ast.parse(path.read_text())
        for call in _calls(tree):
            fn = call.func
            named = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if (named == "StageStore" and path.name not in allowed) or (
                    isinstance(fn, ast.Attribute) and fn.attr == "store" and path.name not in allowed):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{call.lineno}")
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                    and node.right.value in registry.STAGES and path.name not in allowed:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} (/ {node.right.value!r})")
    assert not offenders, offenders


def test_summary_json_is_read_through_the_api(cfg: PipelineConfig) -> None:
    run_stage("left", cfg, [], progress=False)
    stage = registry.get_stage("both")
    summary = StageContext(config=cfg, stage=stage).summary("left")
    assert summary is not None and summary.ok == 2
    assert json.loads((cfg.run_dir / "left" / "summary.json").read_text())["ok"] == 2


def test_rows_are_read_as_the_model_their_stage_declares(cfg: PipelineConfig) -> None:
    run_stage("left", cfg, [], progress=False)
    ctx = StageContext(config=cfg, stage=registry.get_stage("both"))
    assert [r.name for r in ctx.rows("left", AgentRecord)] == ["left-0", "left-1"]
    assert len(ctx.rows("left", Row)) == 2  # a base of the declared model reads the common fields
    with pytest.raises(TypeError, match="'left' holds AgentRecord rows"):
        ctx.rows("left", TaskRecord)  # pydantic alone would fill a TaskRecord with defaults
