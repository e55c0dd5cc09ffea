"""The agents stage draws one toolset per agent from registries of tens of thousands of tools: drawing one and
writing the agent must not look at every tool in the registry (that made the stage's time grow with agents times
tools)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from synth.agents.generate import AgentDraft
from synth.config import PipelineConfig
from synth.schemas.records import AgentRecord
from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
from synth.schemas.usage import UsageByRole
from synth.stages.agents import AgentsStage
from synth.stages.base import StageContext
from synth.tools import registry as registry_module
from synth.tools.registry import ToolRegistry
from tests.fixtures.fakes import ScriptedPool

PARAMS = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def _registry(n: int) -> ToolRegistry:
    """``n`` synthetic tools over 3 categories: big domains, and small ones a toolset must be topped up from."""
    specs = []
    for i in range(n):
        category, domain = f"cat{i % 3}", (f"big{i % 6}" if i % 10 else f"small{i % 40}")
        specs.append(ToolSpec(id=f"tool-{i:06d}", function=FunctionSpec(name=f"tool_{i}", description=f"Tool {i}.",
                                                                        parameters=PARAMS),
                              provenance=ToolProvenance(source="synthetic", domain_path=[category, domain, "sub"])))
    return ToolRegistry(specs)


def test_drawing_a_toolset_never_scans_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = _registry(3000)
    looked = [0]
    category_of = registry_module.category_of

    def counting(spec: ToolSpec) -> str:
        looked[0] += 1
        return category_of(spec)

    monkeypatch.setattr(registry_module, "category_of", counting)
    toolsets = [registry.sample_toolset(seed, (2, 8), mix_prob=0.5) for seed in range(200)]
    assert looked[0] < 200  # per toolset a constant, not the 3000 tools (which cost 600,000 looks)
    assert all(2 <= len(t) <= 8 for t in toolsets)
    assert any(len({s.provenance.domain_path[1] for s in t}) > 1 for t in toolsets)  # mixed and topped-up ones


def test_agents_stage_looks_at_the_whole_registry_once_not_per_agent(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    registry = _registry(3000)
    scans = [0]
    iterate, specs = ToolRegistry.__iter__, ToolRegistry.specs

    def counting_iter(self: ToolRegistry):  # type: ignore[no-untyped-def]
        scans[0] += 1
        return iterate(self)

    def counting_specs(self: ToolRegistry) -> list[ToolSpec]:
        scans[0] += 1
        return specs.fget(self)  # type: ignore[attr-defined]

    monkeypatch.setattr(ToolRegistry, "__iter__", counting_iter)
    monkeypatch.setattr(ToolRegistry, "specs", property(counting_specs))
    stage = AgentsStage()
    drafts = [AgentDraft(name=f"Agent {i}", system_prompt="You help people with their requests, carefully.")
              for i in range(50)]
    pool = ScriptedPool(list(drafts))
    ctx = StageContext(config=PipelineConfig(runs_dir=tmp_path, agents={"count": 50}), pool=pool,  # type: ignore[arg-type]
                       stage=stage, cache={"registry": registry})
    items = stage.plan(ctx)
    rows = [asyncio.run(stage.process(item, ctx, UsageByRole())) for item in items]
    assert len(items) == 50 and all(isinstance(r, AgentRecord) and r.error is None for r in rows)
    assert scans[0] <= 1  # the plan's one pass for the real-execution tools
