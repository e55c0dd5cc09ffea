"""Conversion of raw MCP tools to ToolSpecs: what passes, what is fixed, what is rejected and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth.schemas.ids import stable_id
from synth.tools.servers import ServerEntry
from synth.tools.validate import (
    SpecError,
    check_toolset,
    sanitize_name,
    schema_problems,
    server_domain,
    to_spec,
    validate_harvest,
)

ENTRY = ServerEntry(
    id="npm/@acme/weather-mcp",
    registry="npm",
    package="@acme/weather-mcp",
    version="1.2.3",
    command="weather-mcp",
    category="weather",
    sandbox_safe=False,
)
SAFE = ENTRY.model_copy(update={"id": "pypi/mcp-server-time", "sandbox_safe": True})
GOOD = {
    "name": "get_forecast",
    "description": "Forecast for a city.",
    "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_good_tool_becomes_openai_function_with_provenance() -> None:
    spec, fixes = to_spec(GOOD, ENTRY, "2026-11-25T00:00:00+00:00")
    assert fixes == []
    assert spec.id == stable_id("tool", ENTRY.id, "get_forecast")
    assert spec.openai() == {
        "type": "function",
        "function": {
            "name": "get_forecast",
            "description": "Forecast for a city.",
            "parameters": GOOD["inputSchema"],
        },
    }
    p = spec.provenance
    assert (p.source, p.registry, p.package, p.version, p.server) == (
        "mcp",
        "npm",
        "@acme/weather-mcp",
        "1.2.3",
        ENTRY.id,
    )
    assert p.domain_path == ["weather", "weather"]
    assert spec.real_exec is False
    assert to_spec(GOOD, SAFE)[0].real_exec is True


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({**GOOD, "description": ""}, "missing description"),
        ({k: v for k, v in GOOD.items() if k != "description"}, "missing description"),
        ({k: v for k, v in GOOD.items() if k != "inputSchema"}, "missing inputSchema"),
        (
            {**GOOD, "inputSchema": {"type": "object", "properties": {"city": {"type": "strin"}}}},
            "invalid JSON Schema at properties/city/type",
        ),
        ({**GOOD, "inputSchema": {"type": "object", "required": "city"}}, "invalid JSON Schema"),
        ({**GOOD, "inputSchema": {"type": "string"}}, "must be 'object'"),
        ({**GOOD, "inputSchema": []}, "inputSchema is not an object"),
        ({**GOOD, "name": ""}, "missing name"),
        ({**GOOD, "name": "???"}, "bad name"),
    ],
)
def test_bad_specs_are_rejected_with_a_reason(raw: dict, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        to_spec(raw, ENTRY)
    assert any(reason in r for r in info.value.reasons), info.value.reasons


def test_names_are_sanitized_and_the_fix_recorded() -> None:
    spec, fixes = to_spec({**GOOD, "name": "weather/get forecast"}, ENTRY)
    assert spec.function.name == "weather_get_forecast"
    assert fixes == ["name 'weather/get forecast' -> 'weather_get_forecast'"]
    assert len(sanitize_name("x" * 100)) == 64
    # The id follows the server's own name, so it is stable however sanitizing changes.
    assert spec.id == stable_id("tool", ENTRY.id, "weather/get forecast")


def test_implied_object_type_is_made_explicit() -> None:
    spec, fixes = to_spec({**GOOD, "inputSchema": {"properties": {"city": {"type": "string"}}}}, ENTRY)
    assert spec.function.parameters == {"type": "object", "properties": {"city": {"type": "string"}}}
    assert fixes == ["inputSchema type 'object' made explicit"]


def test_title_stands_in_for_a_missing_description() -> None:
    spec, fixes = to_spec({**GOOD, "description": None, "title": "Get the forecast"}, ENTRY)
    assert spec.function.description == "Get the forecast"
    assert fixes == ["description taken from title"]


def test_schema_problems_accepts_drafts_and_refs() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"a": {"$ref": "#/definitions/A"}},
        "definitions": {"A": {"type": "string"}},
    }
    assert schema_problems(schema) == []


def test_check_toolset_flags_duplicates_and_bad_specs() -> None:
    a, _ = to_spec(GOOD, ENTRY)
    b, _ = to_spec(GOOD, SAFE)
    assert check_toolset([a]) == []
    assert check_toolset([a, b]) == ["duplicate name: 'get_forecast' appears 2 times"]
    broken = a.model_copy(
        update={
            "function": a.function.model_copy(
                update={"parameters": {"type": "object", "properties": {"x": {"type": 5}}}}
            )
        }
    )
    assert any("invalid JSON Schema" in p for p in check_toolset([broken]))


def test_validate_harvest_reports_rejections(tmp_path: Path) -> None:
    rows = [GOOD, {**GOOD, "name": "no_desc", "description": ""}, GOOD]
    lines = [
        json.dumps(
            {
                "server": ENTRY.id,
                "registry": "npm",
                "package": ENTRY.package,
                "version": "1.2.3",
                "harvested_at": "2026-11-25T00:00:00+00:00",
                "tool": t,
            }
        )
        for t in rows
    ]
    (tmp_path / "npm__acme__weather-mcp.jsonl").write_text("\n".join(lines) + "\n")
    specs, report = validate_harvest(tmp_path, [ENTRY])
    assert [s.function.name for s in specs] == ["get_forecast"]
    assert (report.total, report.accepted, len(report.rejected)) == (3, 1, 2)
    reasons = {r.tool: r.reasons[0] for r in report.rejected}
    assert reasons["no_desc"].startswith("missing description")
    assert reasons["get_forecast"].startswith("duplicate name")
    assert report.reasons_count() == {"missing description": 1, "duplicate name": 1}


def test_server_domain_strips_registry_noise() -> None:
    assert server_domain("npm/@modelcontextprotocol/server-memory") == "memory"
    assert server_domain("pypi/mcp-server-time") == "time"
    assert server_domain("npm/firecrawl-mcp") == "firecrawl"
    assert server_domain("npm/@shortcut/mcp") == "shortcut"
    assert server_domain("pypi/awslabs.aws-pricing-mcp-server") == "awslabs-aws-pricing"
