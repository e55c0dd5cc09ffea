"""A re-run with other settings never reuses rows those settings would not have made."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from synth.config import PipelineConfig, load_config
from synth.schemas.records import AgentRecord, Row
from synth.schemas.usage import UsageByRole
from synth.stages import fingerprint, registry
from synth.stages.base import Stage, StageContext, WorkItem
from synth.stages.fingerprint import StageSettingsChanged
from synth.stages.runner import run_stage
from synth.stages.store import StageStore


class RolloutsLike(Stage):
    """Fingerprinted under the name of a real stage, so its config section counts: ``rollouts``."""

    name = "rollouts"
    record = AgentRecord
    uses_llm = False
    calls: ClassVar[list[str]] = []

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"traj-{i}", seed=i) for i in range(3)]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        RolloutsLike.calls.append(item.id)
        return AgentRecord(id=item.id, seed=item.seed, name=f"turns={ctx.config.rollouts.max_turns}")


class JudgeLike(RolloutsLike):
    name = "judge"
    inputs = ("rollouts",)


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.STAGES, "rollouts", f"{__name__}:RolloutsLike")
    monkeypatch.setitem(registry.STAGES, "judge", f"{__name__}:JudgeLike")
    RolloutsLike.calls = []


def _cfg(tmp_path: Path, *sets: str) -> PipelineConfig:
    return load_config(overrides=[f"runs_dir={tmp_path}", "run=r", "ray.enabled=false", *sets])


def _names(cfg: PipelineConfig, stage: str) -> set[str]:
    return {r.name for r in StageStore(cfg.run_dir / stage).read(AgentRecord)}


def test_changed_stage_setting_is_refused_naming_the_difference(tmp_path: Path, stages: None) -> None:
    run_stage("rollouts", _cfg(tmp_path), [], progress=False)
    with pytest.raises(StageSettingsChanged) as err:
        run_stage("rollouts", _cfg(tmp_path, "rollouts.max_turns=7"), [], progress=False)
    assert "rollouts.max_turns: 3 -> 7" in str(err.value)
    assert "--run" in err.value.hint and "on_change=recompute" in err.value.hint
    assert _names(_cfg(tmp_path), "rollouts") == {"turns=3"}  # nothing was overwritten


def test_recompute_redoes_the_stage_and_the_ones_after_it(tmp_path: Path, stages: None) -> None:
    run_stage("rollouts", _cfg(tmp_path), [], progress=False)
    run_stage("judge", _cfg(tmp_path), [], progress=False)
    new = _cfg(tmp_path, "rollouts.max_turns=7", "on_change=recompute")
    run_stage("rollouts", new, [], progress=False)
    assert _names(new, "rollouts") == {"turns=7"}
    # judge's own settings did not change, but what it read did: without recompute it refuses too.
    with pytest.raises(StageSettingsChanged, match="upstream"):
        run_stage("judge", _cfg(tmp_path, "rollouts.max_turns=7"), [], progress=False)
    run_stage("judge", new, [], progress=False)
    assert _names(new, "judge") == {"turns=7"}


def test_unchanged_settings_resume_and_llm_fields_count(tmp_path: Path, stages: None) -> None:
    run_stage("rollouts", _cfg(tmp_path), [], progress=False)
    n = len(RolloutsLike.calls)
    run_stage("rollouts", _cfg(tmp_path, "ray.workers=3"), [], progress=False)  # how it runs is not what it makes
    assert len(RolloutsLike.calls) == n
    parts = fingerprint.compute("rollouts", _cfg(tmp_path, "llm.temperature=0.2"), "m", None)
    base = fingerprint.compute("rollouts", _cfg(tmp_path), "m", None)
    assert fingerprint.differences(base, parts) == ["llm.temperature: 0.7 -> 0.2"]
    other_model = fingerprint.compute("rollouts", _cfg(tmp_path), "another-model", None)
    assert fingerprint.differences(base, other_model) == ["served model: 'm' -> 'another-model'"]


def test_a_changed_prompt_template_changes_the_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = tmp_path / "agent_turn.j2"
    template.write_text("v1")
    monkeypatch.setitem(fingerprint.STAGE_FILES, "rollouts", [template])
    monkeypatch.setattr(fingerprint, "REPO_ROOT", tmp_path)
    before = fingerprint.compute("rollouts", _cfg(tmp_path), "m", None)
    template.write_text("v2")
    after = fingerprint.compute("rollouts", _cfg(tmp_path), "m", None)
    assert [d.split(":")[0] for d in fingerprint.differences(before, after)] == ["file agent_turn.j2"]
