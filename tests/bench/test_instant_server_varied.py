"""The instant endpoint's varied mode: evolved tools that are schema-valid, the same for the same request, and
distinct from one request to the next (a few stock ones repeat, so the duplicate checks have work)."""

from __future__ import annotations

import json

import jsonschema

from synth.bench.instant_server import reply
from synth.llm.client import closed_schema
from synth.tools.evolve import Subdomain, ToolDraftList, draft_to_spec
from synth.tools.grow import select

SCHEMA = closed_schema(ToolDraftList.model_json_schema())


def _drafts(seed: int, varied: bool) -> ToolDraftList:
    body = {"model": "m", "seed": seed, "messages": [{"role": "user", "content": "tools for travel > hotels"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "ToolDraftList", "schema": SCHEMA}}}
    content = reply(body, varied=varied)["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(content), SCHEMA)
    assert reply(body, varied=varied)["choices"][0]["message"]["content"] == content  # deterministic
    return ToolDraftList.model_validate_json(content)


def test_varied_tools_are_valid_distinct_and_mostly_kept() -> None:
    specs = [draft_to_spec(d, ["travel", "hotels", f"sub{seed}"], 1)
             for seed in range(200) for d in _drafts(seed, varied=True).tools]
    names = {s.function.name for s in specs}
    assert len(names) > 0.9 * len(specs)
    out = select([], specs)
    assert not out.rejected  # valid schema, domain path and error cases, every one
    assert 0.9 * len(specs) < len(out.kept) < len(specs)  # stock tools repeat: some duplicates to drop


def test_plain_mode_is_unchanged_and_would_collapse_under_dedup() -> None:
    names = {d.name for seed in range(50) for d in _drafts(seed, varied=False).tools}
    assert len(names) <= 3


def test_varied_subdomains_fit_their_schema() -> None:
    schema = closed_schema(Subdomain.model_json_schema())
    for seed in range(50):
        fmt = {"type": "json_schema", "json_schema": {"name": "Subdomain", "schema": schema}}
        body = {"seed": seed, "messages": [], "response_format": fmt}
        Subdomain.model_validate_json(reply(body, varied=True)["choices"][0]["message"]["content"])
