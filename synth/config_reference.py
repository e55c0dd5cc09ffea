"""The config reference, ``docs/config.md``, generated from the pydantic models of ``synth.config``.

    python -m synth.config_reference > docs/config.md      # make docs

Every field of ``PipelineConfig`` by its dotted name (``rollouts.samples``), with its type, default and
description, one table per section. ``tests/test_config_reference.py`` fails when docs/config.md is not what
``render()`` writes now, so the page cannot drift from the code.
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from synth.config import PipelineConfig

TOP = "top level"


@dataclass(frozen=True)
class FieldDoc:
    """One leaf field of the config as the reference shows it."""

    name: str  # dotted: rollouts.samples, llm.roles.<role>.model, llm.endpoints[].base_url
    section: str  # the table it is listed in: "llm", "llm.roles.<role>", or TOP
    type: str
    default: str
    description: str


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def type_name(annotation: Any) -> str:
    """A field's type as a reader of YAML thinks of it: ``int``, ``"auto" | "native"``, ``list[str]``, ``path``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if annotation is Path:
        return "path"
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    if model := _model_of(annotation):
        return model.__name__
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: FieldInfo) -> str:
    words = []
    for meta in info.metadata:
        for cls, attr, sign in ((Ge, "ge", ">="), (Gt, "gt", ">"), (Le, "le", "<="), (Lt, "lt", "<")):
            if isinstance(meta, cls):
                words.append(f"{sign} {getattr(meta, attr)}")
        if pattern := getattr(meta, "pattern", None):
            words.append(f"matching `{pattern}`")
    return ", ".join(words)


def default_value(info: FieldInfo) -> Any:
    """The field's default as plain data (what ``model_dump(mode="json")`` gives), or PydanticUndefined."""
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return PydanticUndefined
    else:
        value = info.default
    return TypeAdapter(info.annotation).dump_python(value, mode="json")


def _default_text(info: FieldInfo) -> str:
    value = default_value(info)
    return "required" if value is PydanticUndefined else f"`{json.dumps(value)}`"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("``", "`").replace("|", "\\|")


def sections(model: type[BaseModel] = PipelineConfig, prefix: str = "",
             section: str = TOP) -> list[tuple[str, type[BaseModel], list[FieldDoc]]]:
    """``model``'s leaf fields as (section, model, fields), depth first: a nested section's fields under its dotted
    prefix, the fields of a list's or a mapping's models under ``name[].`` and ``name.<key>.``."""
    model.model_rebuild()  # resolves annotations that name a model defined later (pydantic does it at first use)
    own: list[FieldDoc] = []
    nested: list[tuple[type[BaseModel], str]] = []
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        annotation = info.annotation
        if sub := _model_of(annotation):
            nested.append((sub, f"{dotted}."))
            continue
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is list and args and (item := _model_of(args[0])):
            nested.append((item, f"{dotted}[]."))
        if origin is dict and len(args) == 2 and (value := _model_of(args[1])):
            nested.append((value, f"{dotted}.<{name.removesuffix('s')}>."))
        bounds = _bounds(info)
        own.append(FieldDoc(name=dotted, section=section,
                            type=type_name(annotation) + (f" ({bounds})" if bounds else ""),
                            default=_default_text(info), description=_one_line(info.description)))
    out = [(section, model, own)] if own else []
    for sub, sub_prefix in nested:
        out += sections(sub, sub_prefix, sub_prefix.removesuffix("."))
    return out


def fields() -> list[FieldDoc]:
    """Every leaf field of the pipeline config, in the reference's order."""
    return [f for _, _, rows in sections() for f in rows]


def render() -> str:
    """docs/config.md: one table per section, every field with its type, default and description."""
    lines = [
        "# Config reference",
        "",
        "Generated from `synth/config.py` by `python -m synth.config_reference` (`make docs`); edit the field "
        "descriptions there, not this page.",
        "",
        "A config is a YAML file (`pipelines/default.yaml` is the default run, and sets nothing the code does not), "
        "and every field can be set on the command line with `--set section.field=value` (repeatable, the value "
        "read as YAML). An unknown field or a bad value fails at once, naming the field and what is allowed. Names "
        "with `[]` are the fields of each item of a list, names with `<role>` those of each entry of a mapping.",
    ]
    for section, model, rows in sections():
        lines += ["", f"## {section if section == TOP else f'`{section}`'}", ""]
        if section != TOP and model.__doc__ and model.__doc__ != BaseModel.__doc__:
            lines += [_one_line(model.__doc__), ""]
        lines += ["| field | type | default | description |", "| --- | --- | --- | --- |"]
        lines += [f"| `{r.name}` | {r.type.replace('|', chr(92) + '|')} | {r.default} | {r.description} |"
                  for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
