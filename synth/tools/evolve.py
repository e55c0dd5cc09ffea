"""Synthetic tools by hierarchical domain evolution (K2 section 3.1.1), one leaf of the domain tree at a time.

For a seed leaf (category, domain) the model first proposes a subdomain, then, over several generations, tools
that complement the ones the leaf already has. The model fills a constrained draft (names, typed parameters,
enums, formats, nested objects, arrays, errors); code turns the draft into JSON Schema, so a synthetic tool's
schema is valid by construction instead of by luck.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from synth.llm.client import LLMPool
from synth.prompts import render
from synth.schemas.ids import stable_id
from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
from synth.schemas.usage import UsageByRole

ErrorMessage = Annotated[str, StringConstraints(min_length=3, max_length=120)]
ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]
Format = Literal["none", "date", "date-time", "email", "uri", "uuid"]


class FieldDraft(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,30}$", description="snake_case field name")
    type: Literal["string", "integer", "number", "boolean"]
    description: str = Field(max_length=120)


class ParamDraft(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,30}$", description="snake_case parameter name")
    type: ParamType
    description: str = Field(max_length=160, description="What the parameter means, with units if any.")
    required: bool
    enum: list[str] = Field(
        default_factory=list, max_length=6, description="Allowed values for a string, or []."
    )
    format: Format = Field(default="none", description="String format, or 'none'.")
    items: Literal["string", "integer", "number", "object"] = Field(
        default="string", description="Element type when type is 'array'."
    )
    fields: list[FieldDraft] = Field(
        default_factory=list,
        max_length=4,
        description="Fields of the object when type is 'object' (or array of objects).",
    )


class ToolDraft(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{2,40}$", description="snake_case verb_noun tool name")
    description: str = Field(
        max_length=300, description="What the tool does, when to use it, what it returns."
    )
    parameters: list[ParamDraft] = Field(min_length=1, max_length=5)
    # Each message bounded both ways: guided decoding otherwise lets a small model answer [""] (no error case at
    # all) or a string of digits until max_tokens.
    errors: list[ErrorMessage] = Field(
        min_length=1,
        max_length=3,
        description="Error messages the tool can return, e.g. 'order not found'.",
    )


class ToolDraftList(BaseModel):
    tools: list[ToolDraft] = Field(min_length=1, max_length=6)


class Subdomain(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{2,40}$", description="snake_case subdomain name")
    description: str = Field(max_length=200)


def _object_schema(fields: list[FieldDraft]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f.name: {"type": f.type, "description": f.description} for f in fields},
        "required": [f.name for f in fields[:1]],
    }


def param_schema(param: ParamDraft) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.type, "description": param.description}
    if param.type == "string":
        if param.enum:
            schema["enum"] = list(dict.fromkeys(param.enum))
        elif param.format != "none":
            schema["format"] = param.format
    elif param.type == "array":
        schema["items"] = (
            _object_schema(param.fields)
            if param.items == "object" and param.fields
            else {"type": "string" if param.items == "object" else param.items}
        )
    elif param.type == "object":
        schema.update(_object_schema(param.fields) if param.fields else {"properties": {}})
    return schema


def draft_to_spec(draft: ToolDraft, domain_path: list[str], generation: int) -> ToolSpec:
    params: dict[str, ParamDraft] = {}
    for p in draft.parameters:
        params.setdefault(p.name, p)  # the model sometimes repeats a parameter; keep the first
    parameters = {
        "type": "object",
        "properties": {name: param_schema(p) for name, p in params.items()},
        "required": [name for name, p in params.items() if p.required],
    }
    return ToolSpec(
        id=stable_id("tool", "synthetic", *domain_path, draft.name),
        function=FunctionSpec(name=draft.name, description=draft.description, parameters=parameters),
        provenance=ToolProvenance(source="synthetic", domain_path=domain_path, generation=generation),
        errors=draft.errors,
    )


async def grow_subdomain(
    pool: LLMPool, leaf: list[str], description: str, *, seed: int, usage: UsageByRole,
    existing: list[str] | None = None,
) -> Subdomain:
    """One new subdomain of ``leaf``; ``existing`` names the subdomains it already has (growing to a target)."""
    if existing:
        prompt = render("grow_subdomain", category=leaf[0], domain=leaf[1], description=description,
                        existing=existing)
    else:
        prompt = render("evolve_subdomain", category=leaf[0], domain=leaf[1], description=description)
    return await pool.structured(
        [{"role": "user", "content": prompt}],
        Subdomain,
        role="generator",
        seed=seed,
        usage=usage,
        max_tokens=256,  # a small model spells an odd name a character a token
    )


async def evolve_leaf(
    pool: LLMPool,
    path: list[str],
    description: str,
    *,
    generations: int,
    per_generation: int,
    seed: int,
    usage: UsageByRole,
) -> list[ToolSpec]:
    """Grow ``generations`` rounds of tools for one leaf; each round sees the tools made before it."""
    tools: list[ToolSpec] = []
    for generation in range(1, generations + 1):
        prompt = render(
            "evolve_tools",
            path=" > ".join(path),
            description=description,
            existing=[(t.function.name, t.function.description) for t in tools],
            count=per_generation,
        )
        drafts = await pool.structured(
            [{"role": "user", "content": prompt}],
            ToolDraftList,
            role="generator",
            seed=seed * 1000 + generation,
            usage=usage,
            max_tokens=min(1800, 350 * per_generation),
        )
        names = {t.function.name for t in tools}
        for draft in drafts.tools[:per_generation]:
            if draft.name not in names:
                names.add(draft.name)
                tools.append(draft_to_spec(draft, path, generation))
    return tools
