"""Nothing of BFCL reaches generation: the agents stage never draws a tool named as one of BFCL's functions (a real
server's tool can share one), and its summary lists the names it left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.bfcl.contamination import function_names
from synth.config import PipelineConfig
from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
from synth.stages import agents as agents_stage
from synth.stages.agents import AgentsStage, without_bfcl_names
from synth.stages.base import StageContext, StageSummary
from synth.tools.registry import ToolRegistry
from tests.fixtures.fakes import ScriptedPool

PARAMS = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


def _spec(i: int, name: str) -> ToolSpec:
    function = FunctionSpec(name=name, description=f"Tool {name}.", parameters=PARAMS)
    return ToolSpec(id=f"tool-{i:03d}", function=function,
                    provenance=ToolProvenance(source="synthetic", domain_path=["cat", "dom", "sub"]))


def _registry() -> tuple[ToolRegistry, list[str]]:
    bfcl = sorted(function_names())[:2]
    names = [bfcl[0], "lookup_recipe", bfcl[1].upper(), "convert_units"]  # case and separators do not hide a name
    return ToolRegistry([_spec(i, n) for i, n in enumerate(names)]), [names[0], names[2]]


def test_tools_named_as_bfcl_functions_are_left_out() -> None:
    registry, bfcl = _registry()
    kept, note = without_bfcl_names(registry)
    assert sorted(s.function.name for s in kept) == ["convert_units", "lookup_recipe"]
    assert note == {"bfcl_names_excluded": sorted(bfcl)}
    assert without_bfcl_names(kept)[1] == {"bfcl_names_excluded": []}


@pytest.mark.parametrize("exclude", [True, False])
def test_the_agents_stage_draws_no_bfcl_named_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    exclude: bool) -> None:
    registry, bfcl = _registry()
    monkeypatch.setattr(ToolRegistry, "load", classmethod(lambda cls, **_: registry))
    monkeypatch.setattr(agents_stage, "load_synthetic", lambda ctx: [])
    config = PipelineConfig(runs_dir=tmp_path, agents={"count": 40, "toolset_size": (1, 2), "real_exec_share": 0,
                                                       "coding_share": 0, "exclude_bfcl_names": exclude})
    stage = AgentsStage()
    ctx = StageContext(config=config, pool=ScriptedPool([]), stage=stage, cache={})  # type: ignore[arg-type]
    drawn = {registry.get(i).function.name for item in stage.plan(ctx) for i in item.payload["tool_ids"]}
    assert bool(drawn & set(bfcl)) is not exclude
    summary = StageSummary(stage="agents", planned=0, ok=0, failed=0)
    stage.finish(ctx, [], summary)
    assert summary.extra.get("bfcl_names_excluded") == (sorted(bfcl) if exclude else None)
