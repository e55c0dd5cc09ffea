"""The tasks stage deals task kinds out over agents and gives coding tasks only to agents that can run code."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from synth.config import PipelineConfig
from synth.schemas.records import AgentRecord
from synth.stages.base import StageContext
from synth.stages.registry import get_stage
from synth.stages.store import JournalWriter, StageStore
from tests.fixtures.kinds import TRAVEL


def test_every_level_is_covered_with_two_tasks_per_agent(tmp_path: Path) -> None:
    cfg = PipelineConfig(runs_dir=tmp_path, run="p")
    # Tools code can fill a call of, so the kinds code builds (which need such tools) can be planned too.
    agents = [AgentRecord(id=f"agent-{i}", seed=i, profile={"kind": "coding" if i == 1 else "any"},
                          tools=TRAVEL.tools) for i in range(6)]
    store = StageStore(cfg.run_dir / "agents")
    writer = JournalWriter(store.new_journal())
    writer.write_many(agents)
    writer.close()
    store.compact()
    items = get_stage("tasks").plan(StageContext(config=cfg))
    levels = Counter(item.payload["difficulty"] for item in items)
    assert set(levels) == {*cfg.tasks.difficulties, "coding"}
    # A coding agent gets coding tasks only (checked by reference tests); no other agent gets one.
    coding = [i for i in items if i.payload["difficulty"] == "coding"]
    assert [i.payload["agent_id"] for i in coding] == ["agent-1"] * cfg.tasks.per_agent
    assert {i.payload["difficulty"] for i in items if i.payload["agent_id"] == "agent-1"} == {"coding"}
