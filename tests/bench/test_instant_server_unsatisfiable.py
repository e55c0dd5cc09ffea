"""The instant endpoint answers requests whose schema has a branch nothing fits (a harvested tool with an empty
enum) with an instance of another branch, and refuses only a schema that nothing satisfies."""

from __future__ import annotations

import random

import jsonschema
import pytest

from synth.bench.instant_server import SchemaSampler, Unsatisfiable

EMPTY_ENUM_TOOL = {"type": "object", "properties": {
    "name": {"const": "get_component_docs"},
    "arguments": {"type": "object", "required": ["components"], "properties": {
        "components": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": []}}}}},
    "required": ["name", "arguments"]}  # fmt: skip
FINE_TOOL = {"type": "object", "properties": {"name": {"const": "list_components"}, "arguments": {"type": "object"}},
             "required": ["name", "arguments"]}  # fmt: skip


@pytest.mark.parametrize("seed", range(20))
def test_a_branch_nothing_fits_gives_way_to_one_that_does(seed: int) -> None:
    schema = {"type": "object", "required": ["calls"], "properties": {
        "calls": {"type": "array", "minItems": 1, "items": {"anyOf": [EMPTY_ENUM_TOOL, FINE_TOOL]}}}}  # fmt: skip
    value = SchemaSampler(schema, random.Random(seed)).sample()
    jsonschema.validate(value, schema)
    assert {c["name"] for c in value["calls"]} == {"list_components"}


def test_optional_parts_nothing_fits_are_left_out() -> None:
    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": []}},
                                               "kind": {"enum": []}}}  # fmt: skip
    for seed in range(10):
        value = SchemaSampler(schema, random.Random(seed)).sample()
        jsonschema.validate(value, schema)
        assert "kind" not in value and value.get("tags", []) == []


def test_a_schema_nothing_satisfies_is_refused() -> None:
    with pytest.raises(Unsatisfiable):
        SchemaSampler({"anyOf": [EMPTY_ENUM_TOOL]}, random.Random(0)).sample()
