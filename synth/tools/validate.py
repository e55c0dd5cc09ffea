"""Turn harvested MCP tools into ToolSpecs (OpenAI function form) and keep out the ones that are not usable.

A usable spec has a name that OpenAI-style APIs accept, a description, and an input schema that is valid JSON
Schema of type object. Names with other characters are sanitized (and the fix is recorded); everything else that
fails is rejected with its reasons in a validation report, never silently dropped.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.validators import validator_for
from pydantic import BaseModel, Field, ValidationError

from synth.errors import SynthError
from synth.paths import cache_dir
from synth.schemas.ids import stable_id
from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
from synth.tools.servers import ServerEntry

NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")


class SpecError(SynthError, ValueError):
    """A tool spec that cannot be used; ``reasons`` lists every reason (a name, a broken JSON Schema)."""

    hint = ("fix the spec where it comes from (the server's tools/list, or the evolved spec); the validation "
            "report lists every rejected tool")

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class Rejection(BaseModel):
    server: str
    tool: str = Field(description="The tool name as the server sent it ('' if it sent none).")
    reasons: list[str]


class Fix(BaseModel):
    server: str
    tool: str
    fix: str


class ValidationReport(BaseModel):
    """Outcome of converting a harvest: how many specs passed, which were rejected and why, what was fixed."""

    total: int = 0
    accepted: int = 0
    rejected: list[Rejection] = Field(default_factory=list)
    fixed: list[Fix] = Field(default_factory=list)

    def reasons_count(self) -> dict[str, int]:
        # Reasons carry details after a colon; counting by their head groups them into kinds.
        return dict(
            Counter(
                r.split(":")[0].split(" at ")[0] for rej in self.rejected for r in rej.reasons
            ).most_common()
        )

    def write(self, path: Path) -> None:
        data = {
            "summary": {
                "total": self.total,
                "accepted": self.accepted,
                "rejected": len(self.rejected),
                "fixed": len(self.fixed),
                "reasons": self.reasons_count(),
            },
            **self.model_dump(mode="json"),
        }
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def sanitize_name(name: str) -> str:
    """Map a tool name onto ``^[a-zA-Z0-9_.-]{1,64}$``: other characters become '_', long names are cut."""
    return _BAD_CHARS.sub("_", name.strip()).strip("_")[:64]


def schema_problems(schema: Any) -> list[str]:
    """Why ``schema`` cannot be a function's parameters (empty list when it can)."""
    if not isinstance(schema, dict):
        return [f"inputSchema is not an object: {type(schema).__name__}"]
    problems: list[str] = []
    if schema.get("type", "object") != "object":
        problems.append(f"inputSchema type is {schema.get('type')!r}, must be 'object'")
    problems.extend(_empty_choices(schema))
    key = hashlib.sha256(json.dumps(schema, sort_keys=True, default=str).encode()).hexdigest()
    if key in _known_valid() or key in _KNOWN_VALID_NEW:
        return problems
    try:
        validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        problems.append(f"invalid JSON Schema at {where}: {exc.message[:200]}")
    except Exception as exc:
        problems.append(f"invalid JSON Schema: {type(exc).__name__}: {str(exc)[:200]}")
    else:
        _KNOWN_VALID_NEW.add(key)
    return problems


def _empty_choices(node: Any, where: str = "") -> list[str]:
    """``enum`` / ``anyOf`` / ``oneOf`` lists with nothing in them: valid JSON Schema, but no value fits, and vLLM's
    guided decoding refuses the whole request ("enum array must not be empty", a 400), so every agent step of an
    agent holding the tool failed (two harvested HeroUI servers had such tools)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}/{key}"
            if key in ("enum", "anyOf", "oneOf") and isinstance(value, list) and not value:
                found.append(f"empty {key} at {path or '(root)'}: no value fits, and guided decoding refuses it")
            else:
                found.extend(_empty_choices(value, path))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_empty_choices(value, f"{where}/{i}"))
    return found


# Checking a schema against the 2020-12 metaschema costs milliseconds (its dynamic refs), and every stage loads
# thousands of tools; schemas once found valid are remembered in the cache, per jsonschema version.
_KNOWN_VALID: set[str] | None = None
_KNOWN_VALID_NEW: set[str] = set()


def _known_valid_path() -> Path:
    return cache_dir() / "tools" / f"valid-schemas-jsonschema-{importlib.metadata.version('jsonschema')}.txt"


def _known_valid() -> set[str]:
    global _KNOWN_VALID
    if _KNOWN_VALID is None:
        path = _known_valid_path()
        _KNOWN_VALID = set(path.read_text().split()) if path.exists() else set()
    return _KNOWN_VALID


def remember_valid_schemas() -> None:
    """Persist the schemas found valid in this process (appends; concurrent writers only add duplicates)."""
    if not _KNOWN_VALID_NEW:
        return
    path = _known_valid_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write("".join(f"{key}\n" for key in sorted(_KNOWN_VALID_NEW)))
    _known_valid().update(_KNOWN_VALID_NEW)
    _KNOWN_VALID_NEW.clear()


def to_spec(
    raw: dict[str, Any], entry: ServerEntry, harvested_at: str | None = None
) -> tuple[ToolSpec, list[str]]:
    """Convert one raw MCP tool into a ToolSpec; returns the spec and the fixes applied.

    Raises SpecError with every reason the tool is unusable.
    """
    reasons: list[str] = []
    fixes: list[str] = []
    raw_name = raw.get("name")
    if not isinstance(raw_name, str) or not raw_name.strip():
        raise SpecError(["missing name: the tool has no name"])
    name = raw_name
    if not NAME_RE.match(name):
        name = sanitize_name(raw_name)
        if not name:
            reasons.append(f"bad name: {raw_name!r} has no usable characters")
        else:
            fixes.append(f"name {raw_name!r} -> {name!r}")
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        # A title is the server's own short description; better than rejecting a tool that has one.
        title = raw.get("title") or (raw.get("annotations") or {}).get("title")
        if isinstance(title, str) and title.strip():
            description = title.strip()
            fixes.append("description taken from title")
        else:
            reasons.append("missing description: the model could not know when to call the tool")
    if "inputSchema" not in raw:
        reasons.append("missing inputSchema")
    else:
        reasons.extend(schema_problems(raw["inputSchema"]))
    if reasons:
        raise SpecError(reasons)
    parameters = raw["inputSchema"]
    if "type" not in parameters:
        # OpenAI-style APIs want an explicit object schema; MCP servers sometimes leave it implied.
        parameters = {"type": "object", **parameters}
        fixes.append("inputSchema type 'object' made explicit")
    try:
        function = FunctionSpec(name=name, description=description.strip(), parameters=parameters)
    except ValidationError as exc:
        raise SpecError([f"not a function spec: {err['loc']}: {err['msg']}" for err in exc.errors()]) from exc
    spec = ToolSpec(
        id=stable_id("tool", entry.id, raw_name),
        function=function,
        provenance=ToolProvenance(
            source="mcp",
            registry=entry.registry,
            package=entry.package,
            version=entry.version,
            server=entry.id,
            harvested_at=harvested_at,
            # MCP tools get the same category/domain path as synthetic ones, so one filter serves both.
            domain_path=[entry.category, server_domain(entry.id)],
        ),
        real_exec=entry.sandbox_safe,
    )
    return spec, fixes


def server_domain(server_id: str) -> str:
    """A short domain name for a server: its package name without registry, scope or 'mcp' noise.

    ``npm/@modelcontextprotocol/server-memory`` -> ``memory``; a package named just ``mcp`` takes its scope
    (``npm/@shortcut/mcp`` -> ``shortcut``).
    """
    parts = server_id.split("/")[1:]
    for part in (parts[-1], *reversed(parts[:-1])):
        name = re.sub(r"(^|[-_.])(mcp|server|mcp-server)(?=$|[-_.])", "-", part.lower().lstrip("@"))
        name = re.sub(r"[-_.]+", "-", name).strip("-")
        if name:
            return name
    return parts[-1].lstrip("@") if parts else server_id


def check_spec(spec: ToolSpec) -> list[str]:
    """Problems with one spec (for specs that did not come through :func:`to_spec`, e.g. synthetic ones)."""
    problems = []
    if not NAME_RE.match(spec.function.name):
        problems.append(f"bad name: {spec.function.name!r} does not match {NAME_RE.pattern}")
    if not spec.function.description.strip():
        problems.append(f"missing description: {spec.function.name}")
    problems.extend(f"{spec.function.name}: {p}" for p in schema_problems(spec.function.parameters))
    return problems


def check_toolset(specs: Iterable[ToolSpec]) -> list[str]:
    """Problems that make a set of tools unusable together: any bad spec, and names that collide."""
    specs = list(specs)
    problems = [p for spec in specs for p in check_spec(spec)]
    counts = Counter(spec.function.name for spec in specs)
    problems.extend(f"duplicate name: {name!r} appears {n} times" for name, n in counts.items() if n > 1)
    return problems


class RegistryFileError(SynthError, ValueError):
    """A harvested registry file that cannot be read; the message names the file and the line, the hint the fix."""


_ROW_KEYS = ("server", "registry", "package", "version")


def _harvest_row(path: Path, lineno: int, line: str) -> dict[str, Any]:
    fix = (f"re-harvest that server (`synth tools harvest --only SERVER_ID`) or delete line {lineno}; "
           "`git checkout tools_registry/` restores the shipped files")
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RegistryFileError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}), "
                                "probably a write cut short", hint=fix) from exc
    if not isinstance(row, dict):
        raise RegistryFileError(f"{path}:{lineno}: a harvested row must be a JSON object", hint=fix)
    if missing := [k for k in _ROW_KEYS if not isinstance(row.get(k), str)]:
        raise RegistryFileError(f"{path}:{lineno}: the row has no {', '.join(missing)} (each harvested tool "
                                "records the server, registry, package and version it came from)", hint=fix)
    return row


def validate_harvest(
    mcp_dir: Path, servers: Iterable[ServerEntry]
) -> tuple[list[ToolSpec], ValidationReport]:
    """Convert every JSONL under ``mcp_dir``; servers missing from ``servers`` get category 'general'."""
    by_id = {s.id: s for s in servers}
    report = ValidationReport()
    specs: list[ToolSpec] = []
    for path in sorted(mcp_dir.glob("*.jsonl")):
        seen: set[str] = set()
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            row = _harvest_row(path, lineno, line)
            entry = by_id.get(row["server"]) or ServerEntry(
                id=row["server"],
                registry=row["registry"],
                package=row["package"],
                version=row["version"],
                command="?",
            )
            raw = row.get("tool") or {}
            report.total += 1
            try:
                spec, fixes = to_spec(raw, entry, row.get("harvested_at"))
                if spec.function.name in seen:
                    raise SpecError([f"duplicate name: {spec.function.name!r} is listed twice by the server"])
            except SpecError as exc:
                report.rejected.append(
                    Rejection(server=entry.id, tool=str(raw.get("name", "")), reasons=exc.reasons)
                )
                continue
            seen.add(spec.function.name)
            report.fixed.extend(Fix(server=entry.id, tool=str(raw["name"]), fix=f) for f in fixes)
            specs.append(spec)
    report.accepted = len(specs)
    remember_valid_schemas()
    return specs, report
