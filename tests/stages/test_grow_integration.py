"""`synth tools grow` against the real embedded model, over one domain leaf: the rows are made, and what is kept
is placed in the tree, valid and deduplicated."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import EndpointConfig, PipelineConfig
from synth.stages import tools as tools_stage
from synth.stages.grow import grow_tools
from synth.tools.domains import Category, Domain
from synth.tools.grow import problems
from synth.tools.registry import read_specs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

LEAF = Category(category="travel", description="Trips and stays.",
                domains=[Domain(name="hotels", description="Hotel search, booking and reviews.")])


def test_grow_a_few_tools_with_the_embedded_model(tmp_path: Path, live_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools_stage, "load_categories", lambda: [LEAF])
    cfg = PipelineConfig(runs_dir=tmp_path, run="g", ray={"enabled": False}, grow={"target": 2, "max_rounds": 2},
                         tools={"evolve_generations": 1, "tools_per_leaf": 2})
    report = grow_tools(cfg, [EndpointConfig(base_url=live_url, max_concurrency=4)], progress=False)
    assert report.summary.ok >= 1, report.summary.errors
    assert report.summary.usage.generator.completion_tokens > 0
    kept = read_specs(Path(report.registry))
    assert report.synthetic_tools == len(kept) >= 1
    for spec in kept:
        assert spec.provenance.domain_path[:2] == ["travel", "hotels"] and len(spec.provenance.domain_path) == 3
        assert problems(spec) == []
    assert len({s.function.name for s in kept}) == len(kept)
