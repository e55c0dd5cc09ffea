"""A harvested tool whose schema has an empty enum (or anyOf/oneOf) is rejected at validation: no value fits it,
and vLLM's guided decoding refuses any request that carries it (a 400 for every step of an agent holding it)."""

from __future__ import annotations

from synth.tools.registry import ToolRegistry
from synth.tools.validate import schema_problems

HEROUI_LIKE = {"type": "object", "required": ["components"], "properties": {
    "components": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": []}}}}  # fmt: skip


def test_an_empty_enum_is_a_schema_problem_naming_where() -> None:
    [problem] = schema_problems(HEROUI_LIKE)
    assert "empty enum at /properties/components/items/enum" in problem
    assert schema_problems({"type": "object", "properties": {"x": {"anyOf": []}}})
    # A property that is merely *named* enum, or a non-empty enum, is fine.
    assert schema_problems({"type": "object", "properties": {"enum": {"type": "string", "enum": ["a"]}}}) == []


def test_the_registry_holds_no_tool_with_an_empty_enum() -> None:
    registry = ToolRegistry.load()
    assert all(schema_problems(spec.function.parameters) == [] for spec in registry.specs)
    rejected = [r for r in registry.report.rejected if any("empty enum" in reason for reason in r.reasons)]
    assert {r.server for r in rejected} >= {"npm/@heroui/react-mcp"}
