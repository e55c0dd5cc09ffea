"""Planning a round of growth, and checking grown tools against the real ones and each other."""

from __future__ import annotations

import math

from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
from synth.tools.grow import GrowState, RoundState, select, slots_for, stats

ALERTS = ("Weather alerts in force for a city right now, each with its severity, the area it covers, the agency that "
          "issued it, when it started and when it is expected to end, newest first.")
PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def tool(name: str, description: str, *, path: list[str] | None = None, errors: list[str] | None = None,
         source: str = "synthetic", params: dict | None = None) -> ToolSpec:
    return ToolSpec(id=f"tool-{source}-{name}", function=FunctionSpec(name=name, description=description,
                                                                      parameters=params or PARAMS),
                    provenance=ToolProvenance(source=source, server="weather" if source == "mcp" else None,
                                              domain_path=["travel", "weather", "alerts"] if path is None else path),
                    errors=["city not found"] if errors is None else errors)


def test_select_keeps_valid_distinct_tools_and_says_why_it_left_the_others_out() -> None:
    real = [tool("get_forecast", "The forecast for a city, by day.", source="mcp", path=["weather", "wx"])]
    grown = [
        tool("getForecast", "Tomorrow's weather somewhere."),  # a real tool's name
        tool("list_alerts", ALERTS),
        tool("alerts_list", "Warnings for a city."),  # the same signature as the one kept before it
        tool("list_alerts_now", ALERTS,
             params={"type": "object", "properties": {"town": {"type": "string"}}}),
        tool("bad_schema", "A parameter of no JSON type.",
             params={"type": "object", "properties": {"city": {"type": "place"}}}),
        tool("no_errors", "Says nothing of how it fails.", errors=[" "]),
        tool("no_path", "Belongs nowhere.", path=["travel"]),
        tool("sunrise_time", "When the sun rises in a city on a date."),
    ]
    out = select(real, grown)
    assert [t.function.name for t in out.kept] == ["list_alerts", "sunrise_time"]
    assert [(d.spec.function.name, d.kind) for d in out.dropped] == [
        ("getForecast", "name"), ("alerts_list", "schema"), ("list_alerts_now", "near_duplicate")]
    reasons = {r.tool: r.reasons for r in out.rejected}
    assert list(reasons) == ["bad_schema", "no_errors", "no_path"]
    assert reasons["bad_schema"][0].startswith("bad_schema: ")  # the schema check's own words follow
    assert reasons["no_errors"] == ["no error cases"] and "not category > domain > subdomain" in reasons["no_path"][0]
    st = stats(out, {t.id for t in real})
    assert (st.tools, st.generated, st.schema_rejects, st.duplicate_of_real) == (2, 8, 3, 1)
    assert st.dropped == {"name": 1, "schema": 1, "near_duplicate": 1}
    assert st.reject_reasons == {"schema": 1, "no_error_cases": 1, "domain_path": 1}
    assert (st.categories, st.domains, st.subdomains) == (1, 1, 1)


def test_first_round_plans_for_the_target_at_the_expected_yield() -> None:
    slots = slots_for(GrowState(), target=1000, leaves=10, per_item=6)
    assert slots * 10 * 6 * 0.9 >= 1000 and (slots - 1) * 10 * 6 * 0.9 < 1000 * 1.05


def test_next_round_plans_for_what_is_missing_at_the_last_rounds_yield() -> None:
    state = GrowState(rounds=[RoundState(slots=2, rows=20, kept=100), RoundState(slots=4, rows=40, kept=140)])
    assert state.kept_yield(per_item=6) == 2.0  # the last round: 40 more tools from 20 more items
    missing_items = math.ceil(60 * 1.05 / 2.0)
    assert slots_for(state, target=200, leaves=10, per_item=6) == 4 + math.ceil(missing_items / 10)


def test_a_reached_target_plans_nothing_new_and_a_barren_round_still_plans_a_little() -> None:
    state = GrowState(rounds=[RoundState(slots=3, rows=30, kept=500)])
    assert slots_for(state, target=400, leaves=10, per_item=6) == 3
    barren = GrowState(rounds=[RoundState(slots=3, rows=30, kept=5), RoundState(slots=5, rows=50, kept=5)])
    assert barren.kept_yield(per_item=6) == 6 * 0.05  # floored, so the plan stays finite
