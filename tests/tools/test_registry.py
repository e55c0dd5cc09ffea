"""ToolRegistry: filters, seeded coherent toolsets, synthetic specs from files; dedup; stats."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from synth.schemas.ids import stable_id
from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
from synth.tools.dedup import dedup_specs
from synth.tools.registry import ToolRegistry, category_of, group_of, read_specs
from synth.tools.stats import compute_stats, schema_features, stats
from synth.tools.validate import check_toolset


def make_spec(
    name: str,
    description: str,
    category: str,
    domain: str,
    source: str = "synthetic",
    parameters: dict | None = None,
) -> ToolSpec:
    server = f"npm/{domain}-mcp" if source == "mcp" else None
    return ToolSpec(
        id=stable_id("tool", server or domain, name),
        function=FunctionSpec(
            name=name, description=description, parameters=parameters or {"type": "object", "properties": {}}
        ),
        provenance=ToolProvenance(source=source, server=server, domain_path=[category, domain]),
    )


def corpus() -> list[ToolSpec]:
    specs = []
    for category, domains in {
        "finance": ["banking", "stocks"],
        "travel": ["flights", "hotels"],
        "devtools": ["git"],
    }.items():
        for domain in domains:
            for i in range(5):
                # Every domain has a 'search' tool, so mixed toolsets must resolve name clashes.
                name = "search" if i == 0 else f"{domain}_op_{i}"
                specs.append(
                    make_spec(
                        name,
                        f"{domain} operation {i}",
                        category,
                        domain,
                        source="mcp" if domain == "git" else "synthetic",
                    )
                )
    return specs


def test_sampling_is_deterministic_coherent_and_unique() -> None:
    registry = ToolRegistry(corpus())
    for seed in range(50):
        first = registry.sample_toolset(seed)
        assert [s.id for s in first] == [s.id for s in registry.sample_toolset(seed)]
        assert [s.id for s in first] == [s.id for s in registry.sample_toolset(random.Random(seed))]
        assert 2 <= len(first) <= 6
        assert check_toolset(first) == []  # names unique, specs valid
    single = [registry.sample_toolset(seed, mix_prob=0.0) for seed in range(30)]
    # Without mixing, a toolset stays in one category (one group, topped up from its category).
    assert all(len({category_of(s) for s in ts}) == 1 for ts in single)
    assert sum(len({group_of(s) for s in ts}) == 1 for ts in single) >= 20
    mixed = [registry.sample_toolset(seed, mix_prob=1.0) for seed in range(30)]
    assert all(len({category_of(s) for s in ts}) >= 2 for ts in mixed)
    assert len({tuple(s.id for s in ts) for ts in single}) > 10  # seeds actually vary the draw


def test_sampling_takes_an_exact_size() -> None:
    registry = ToolRegistry(corpus())
    assert all(len(registry.sample_toolset(seed, 4)) == 4 for seed in range(20))


def test_sampling_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty"):
        ToolRegistry([]).sample_toolset(0)
    with pytest.raises(ValueError, match="size_range"):
        ToolRegistry(corpus()).sample_toolset(0, size_range=(3, 2))


def test_filters_and_unknown_values() -> None:
    registry = ToolRegistry(corpus())
    assert registry.categories() == ["devtools", "finance", "travel"]
    assert len(registry.filter(category="finance")) == 10
    assert len(registry.filter(domain=["flights", "git"])) == 10
    assert len(registry.filter(source="mcp")) == 5
    assert len(registry.filter(server="npm/git-mcp", category="devtools")) == 5
    with pytest.raises(KeyError, match="valid values"):
        registry.filter(category="cooking")


def test_load_merges_synthetic_files_and_rejects_bad_specs(tmp_path: Path) -> None:
    mcp_dir = tmp_path / "mcp"
    mcp_dir.mkdir()
    good = make_spec("book_flight", "Book a flight.", "travel", "flights")
    bad = good.model_copy(
        update={
            "id": "tool-bad",
            "function": good.function.model_copy(
                update={
                    "name": "bad_schema",
                    "parameters": {"type": "object", "properties": {"x": {"type": "nope"}}},
                }
            ),
        }
    )
    jsonl = tmp_path / "synthetic.jsonl"
    jsonl.write_text(f"{good.model_dump_json()}\n{bad.model_dump_json()}\n")
    extra = make_spec("get_quote", "Stock quote.", "finance", "stocks")
    registry = ToolRegistry.load(mcp_dir, tmp_path / "none.yaml", synthetic=jsonl, extra=[extra])
    assert sorted(s.function.name for s in registry) == ["book_flight", "get_quote"]
    assert [r.tool for r in registry.report.rejected] == ["bad_schema"]


def test_read_specs_from_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    spec = make_spec(
        "book_hotel",
        "Book a hotel.",
        "travel",
        "hotels",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    )
    as_json = tmp_path / "json.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": spec.id, "spec": spec.model_dump_json()}]), as_json)
    assert read_specs(as_json) == [spec]
    nested = tmp_path / "nested.parquet"
    row = spec.model_dump(mode="json")
    row["function"]["parameters"] = json.dumps(row["function"]["parameters"])  # how Parquet keeps free JSON
    pq.write_table(pa.Table.from_pylist([row]), nested)
    assert read_specs(nested) == [spec]
    with pytest.raises(FileNotFoundError, match=r"missing\.parquet") as err:
        read_specs(tmp_path / "missing.parquet")
    assert "evolve stage" in err.value.hint  # type: ignore[attr-defined]


def test_dedup_drops_near_duplicates_keeps_first() -> None:
    base = make_spec(
        "get_weather_forecast",
        "Get the weather forecast for a city for the next seven days, with temperature, rain and wind.",
        "weather",
        "forecast",
    )
    near = make_spec(
        "get_weather_forecast_v2",
        "Get the weather forecast for a city for the next seven days, with temperature, rain and wind.",
        "weather",
        "forecast",
    )
    other = make_spec(
        "transfer_funds", "Move money between two bank accounts of the same customer.", "finance", "banking"
    )
    kept, dropped = dedup_specs([base, near, other], threshold=0.8)
    assert [s.function.name for s in kept] == ["get_weather_forecast", "transfer_funds"]
    assert len(dropped) == 1 and dropped[0].duplicate_of == base.id
    assert dropped[0].similarity >= 0.8 and "near-duplicate" in dropped[0].reason
    # A stricter threshold than their similarity keeps both.
    assert len(dedup_specs([base, near], threshold=1.0)[0]) == 2
    assert len(dedup_specs([base, base.model_copy()], threshold=1.0)[0]) == 1
    assert dedup_specs([base, other], threshold=0.5)[1] == []
    with pytest.raises(ValueError):
        dedup_specs([base], threshold=0)


def test_dedup_keeps_different_tools_with_boilerplate_descriptions() -> None:
    boiler = (
        "Use this for a collection of resources; choose the corresponding get tool when you already know "
        "the single resource to inspect. It is read-only and does not mutate data; missing resources, "
        "invalid identifiers, insufficient permission and rate limits are returned as errors."
    )
    a = make_spec("list_draft_notes", f"List draft notes for a merge request. {boiler}", "devtools", "gitlab")
    b = make_spec("list_group_projects", f"List projects in a group. {boiler}", "devtools", "gitlab")
    kept, dropped = dedup_specs([a, b], threshold=0.8)
    assert len(kept) == 2 and dropped == []
    assert len(dedup_specs([a, b], threshold=0.8, min_name_similarity=0.0)[0]) == 1


def test_schema_features_and_stats_outputs(tmp_path: Path) -> None:
    rich = {
        "type": "object",
        "required": ["q"],
        "properties": {
            "q": {"type": "string", "description": "query", "format": "date"},
            "mode": {"enum": ["a", "b"], "description": "mode"},
            "filters": {
                "type": "array",
                "description": "f",
                "items": {
                    "type": "object",
                    "properties": {"k": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
                },
            },
        },
    }
    assert schema_features(rich) == {
        "required",
        "format",
        "enum",
        "array",
        "nested_object",
        "union",
        "param_descriptions",
    }
    assert schema_features({"type": "object", "properties": {}}) == {"no_params"}
    specs = [*corpus(), make_spec("rich_tool", "Rich.", "finance", "stocks", parameters=rich)]
    result = compute_stats(specs)
    assert result.tools == 26 and result.by_category["finance"] == 11
    assert result.tree["finance"]["stocks"] == 6 and result.features["enum"] == 1
    assert result.by_source == {"synthetic": 21, "mcp": 5}
    written = stats(tmp_path / "report", registry=ToolRegistry(specs))
    assert written.tools == 26
    for name in ("stats.json", "validation_report.json", "domain_tree.png", "domain_tree.html"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert (tmp_path / "report" / "domain_tree.png").read_bytes()[:4] == b"\x89PNG"
    assert "stocks" in (tmp_path / "report" / "domain_tree.html").read_text()
