"""`synth tools grow` against the instant endpoint's varied tools: the target is reached through the domain tree,
a killed run resumes without redoing work or losing any, and grown tools that copy a real one are dropped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from synth.bench import instant_server
from synth.config import EndpointConfig, PipelineConfig
from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
from synth.stages import tools as tools_stage
from synth.stages.grow import GrowTargetMissing, grow_tools
from synth.stages.store import StageStore
from synth.tools.domains import load_categories, seed_leaves
from synth.tools.registry import ToolRegistry, read_specs
from synth.tools.validate import check_spec
from tests.fixtures.cluster import free_port

pytestmark = pytest.mark.timeout(300)

REAL = [ToolSpec(id="tool-mcp-echo", function=FunctionSpec(name="echo", description="Say it back.",
                                                            parameters={"type": "object", "properties": {}}),
                 provenance=ToolProvenance(source="mcp", server="everything", domain_path=["testing", "everything"]))]


class Crash(BaseException):
    """The process dies here (not an error a row could record)."""


@pytest.fixture
def port() -> Iterator[int]:
    port = free_port()
    with instant_server.running(port, varied=True):
        yield port


@pytest.fixture
def real_tools(monkeypatch: pytest.MonkeyPatch) -> list[ToolSpec]:
    """A few real tools instead of the committed harvest: the stage's finish checks grown tools against them."""
    real = list(REAL)
    monkeypatch.setattr(ToolRegistry, "load", classmethod(lambda cls, *a, **k: cls(real)))
    return real


def _cfg(tmp_path: Path, port: int, target: int, run: str = "g") -> PipelineConfig:
    return PipelineConfig(runs_dir=tmp_path, run=run, ray={"enabled": False},
                          llm={"endpoints": [{"base_url": instant_server.base_url(port), "max_concurrency": 4}]},
                          tools={"evolve_generations": 1, "tools_per_leaf": 2}, grow={"target": target})


def _endpoints(cfg: PipelineConfig) -> list[EndpointConfig]:
    return list(cfg.llm.endpoints)


def test_grow_reaches_the_target_through_the_domain_tree(tmp_path: Path, port: int,
                                                         real_tools: list[ToolSpec]) -> None:
    cfg = _cfg(tmp_path, port, target=80)
    report = grow_tools(cfg, _endpoints(cfg), out=tmp_path / "out" / "registry.jsonl", progress=False)
    assert report.reached and report.stop == "target reached" and report.synthetic_tools >= 80
    kept = read_specs(Path(report.registry))
    assert len(kept) == report.synthetic_tools and Path(report.registry) == tmp_path / "out" / "registry.jsonl"
    leaves = {tuple(leaf) for leaf in seed_leaves(load_categories())}
    for spec in kept:
        assert len(spec.provenance.domain_path) == 3 and tuple(spec.provenance.domain_path[:2]) in leaves
        assert spec.errors and all(e.strip() for e in spec.errors)
        assert check_spec(spec) == []
    assert len({s.function.name for s in kept}) == len(kept)  # deduplicated by name
    grow = report.summary.extra["grow"]
    assert grow["tools"] == len(kept) and grow["subdomains"] > 29  # more than one subdomain per seed leaf
    assert report.summary.usage.generator.calls > 0

    # A real tool with the name of a kept synthetic one: the next run drops the synthetic copy, and grows more
    # to make up for it.
    copied = kept[0]
    real_tools.append(copied.model_copy(update={"id": "tool-mcp-copy", "provenance": ToolProvenance(
        source="mcp", server="copier", domain_path=["testing", "copier"])}))
    again = grow_tools(cfg, _endpoints(cfg), progress=False)
    assert copied.id not in {s.id for s in read_specs(Path(again.registry))}
    dropped = [json.loads(line) for line in Path(again.dropped_file).read_text().splitlines()]
    assert {"id": copied.id, "kind": "name", "duplicate_of": "tool-mcp-copy"}.items() <= next(
        d for d in dropped if d.get("id") == copied.id).items()
    assert again.summary.extra["grow"]["duplicate_of_real"] >= 1 and again.reached


def test_killed_grow_resumes_without_redoing_or_losing_work(tmp_path: Path, port: int,
                                                           real_tools: list[ToolSpec],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path, port, target=80)
    evolve = tools_stage.evolve_leaf
    calls = [0]

    async def dies_on_the_tenth(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 10:
            raise Crash
        return await evolve(*args, **kwargs)

    monkeypatch.setattr(tools_stage, "evolve_leaf", dies_on_the_tenth)
    with pytest.raises(BaseExceptionGroup) as err:
        grow_tools(cfg, _endpoints(cfg), progress=False)
    assert err.value.subgroup(Crash) is not None
    store = StageStore(cfg.run_dir / "tools")
    done_before = store.done_ids()
    assert 0 < len(done_before) < 58 and not store.parquet.exists()
    asked_before = instant_server.get_stats(port)["requests"]

    monkeypatch.setattr(tools_stage, "evolve_leaf", evolve)
    report = grow_tools(cfg, _endpoints(cfg), progress=False)
    assert report.reached
    stats = instant_server.get_stats(port)
    # Only requests in flight when it died (at most the endpoint's concurrency) were sent again.
    assert sum(n - 1 for n in stats["by_digest"].values()) <= 4
    ids = [row["id"] for row in store.raw_rows()]
    assert len(ids) == len(set(ids)) and done_before <= set(ids)

    # The same registry as a run that was never killed: nothing lost, nothing made differently.
    whole = grow_tools(_cfg(tmp_path, port, target=80, run="whole"), _endpoints(cfg), progress=False)
    assert Path(whole.registry).read_text() == Path(report.registry).read_text()
    assert stats["requests"] > asked_before


def test_growing_needs_a_target(tmp_path: Path) -> None:
    with pytest.raises(GrowTargetMissing):
        grow_tools(PipelineConfig(runs_dir=tmp_path), [])
