"""The tool registry every later stage draws from: real MCP tools (committed harvest) plus synthetic ones.

Each spec has a category and a domain (``provenance.domain_path[:2]``; for MCP tools the server's category
and a short server name), so real and synthetic tools filter and sample the same way. Toolsets are drawn to be
coherent, the way an agent's tools would be: several tools of one server or synthetic domain, and now and then
a mix across categories (``mix_prob``).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from synth.errors import SynthError
from synth.paths import TOOLS_REGISTRY
from synth.schemas.tools import Source, ToolSpec
from synth.tools.servers import SERVERS_FILE, load_servers
from synth.tools.validate import (
    RegistryFileError,
    Rejection,
    ValidationReport,
    _harvest_row,
    check_spec,
    validate_harvest,
)

MCP_DIR = TOOLS_REGISTRY / "mcp"


def category_of(spec: ToolSpec) -> str:
    return spec.provenance.domain_path[0] if spec.provenance.domain_path else "general"


def domain_of(spec: ToolSpec) -> str:
    path = spec.provenance.domain_path
    return path[1] if len(path) > 1 else (spec.provenance.server or category_of(spec))


def group_of(spec: ToolSpec) -> str:
    """The unit a coherent toolset comes from: one MCP server, or one synthetic category/domain."""
    if spec.provenance.source == "mcp" and spec.provenance.server:
        return spec.provenance.server
    return f"{spec.provenance.source}:{category_of(spec)}/{domain_of(spec)}"


class RegistryMissing(SynthError, FileNotFoundError):
    """A file the tool registry is built from is not there (synthetic specs, a harvest report, domain seeds)."""


class RegistryEmpty(SynthError, ValueError):
    """The registry holds no tool to draw a toolset from."""

    hint = "harvest MCP servers (`synth tools harvest`) or run the tools stage (`synth tools`) first"


def read_specs(path: Path) -> list[ToolSpec]:
    """ToolSpecs from a JSONL file (one ToolSpec JSON a line) or a Parquet file of ToolSpec rows.

    Parquet rows may hold the spec as nested columns (``id``, ``function``, ``provenance``...) or as one JSON
    string column (``spec`` or ``json``); JSON Schemas stored as strings are decoded.
    """
    if not path.exists():
        raise RegistryMissing(f"no synthetic specs at {path}",
                              hint="run the evolve stage first (`synth tools evolve`), or drop the path")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # only this path needs pyarrow

        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return [_spec_from_row(row) for row in rows]
    specs = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            specs.append(ToolSpec.model_validate_json(line))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "the line"
            raise RegistryFileError(f"{path}:{lineno}: not a tool spec ({where}: {err['msg']}; "
                                    f"{len(exc.errors())} error(s))",
                                    hint=f"fix or delete line {lineno} of {path}, or make the file again") from exc
    return specs


def check_files(mcp_dir: Path | None = None, servers_file: Path | None = None, synthetic: Path | None = None) -> int:
    """Read every file the registry is built from and raise on the first that cannot be used, naming the file and
    its line or entry; returns the harvested rows read.

    What a run does before its first model request: the registry is built only after the tools stage's requests,
    and a broken line found then has cost them. No spec is converted here (``ToolRegistry.load`` does that, and
    leaves out a bad tool with its reasons): only what would stop the load. Defaults: the committed registry."""
    mcp_dir = MCP_DIR if mcp_dir is None else mcp_dir
    servers_file = SERVERS_FILE if servers_file is None else servers_file
    if servers_file.exists():
        load_servers(servers_file)
    rows = 0
    for path in sorted(mcp_dir.glob("*.jsonl")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                _harvest_row(path, lineno, line)
                rows += 1
    if synthetic is not None:
        read_specs(synthetic)
    return rows


def _spec_from_row(row: dict[str, Any]) -> ToolSpec:
    for key in ("spec", "json"):
        if isinstance(row.get(key), str):
            return ToolSpec.model_validate_json(row[key])
    function = dict(row.get("function") or {})
    if isinstance(function.get("parameters"), str):
        function["parameters"] = json.loads(function["parameters"])
    return ToolSpec.model_validate({**row, "function": function})


class ToolRegistry:
    """An immutable set of validated ToolSpecs with filters and seeded toolset sampling."""

    def __init__(self, specs: Iterable[ToolSpec], report: ValidationReport | None = None) -> None:
        self._specs = sorted(specs, key=lambda s: s.id)
        self.report = report or ValidationReport(total=len(self._specs), accepted=len(self._specs))
        self._by_id = {s.id: s for s in self._specs}
        groups: dict[str, list[ToolSpec]] = defaultdict(list)
        for spec in self._specs:
            groups[group_of(spec)].append(spec)
        self._groups = dict(sorted(groups.items()))
        # Per-registry facts sample_toolset needs on every call: computed once, so drawing a toolset never scans
        # every tool (the agents stage draws one per agent from registries of tens of thousands).
        self._categories = sorted({category_of(s) for s in self._specs})
        self._group_category = {g: category_of(specs[0]) for g, specs in self._groups.items()}
        self._category_groups: dict[str, list[str]] = defaultdict(list)
        for g, category in self._group_category.items():
            self._category_groups[category].append(g)
        self._fitting: dict[int, list[str]] = {}

    @classmethod
    def load(
        cls,
        mcp_dir: Path = MCP_DIR,
        servers_file: Path = SERVERS_FILE,
        synthetic: Path | None = None,
        extra: Sequence[ToolSpec] = (),
    ) -> ToolRegistry:
        """Validated MCP tools from ``mcp_dir`` plus synthetic specs (a file and/or ``extra``).

        Synthetic specs that fail :func:`check_spec` are left out and listed in ``report.rejected``.
        """
        servers = load_servers(servers_file) if servers_file.exists() else []
        specs, report = validate_harvest(mcp_dir, servers)
        more = [*(read_specs(synthetic) if synthetic else []), *extra]
        for spec in more:
            report.total += 1
            if problems := check_spec(spec):
                report.rejected.append(
                    Rejection(
                        server=spec.provenance.server or spec.provenance.source,
                        tool=spec.function.name,
                        reasons=problems,
                    )
                )
            else:
                specs.append(spec)
        report.accepted = len(specs)
        return cls(specs, report)

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self):
        return iter(self._specs)

    @property
    def specs(self) -> list[ToolSpec]:
        return list(self._specs)

    def get(self, spec_id: str) -> ToolSpec:
        try:
            return self._by_id[spec_id]
        except KeyError:
            raise KeyError(f"no tool {spec_id!r} in the registry ({len(self)} tools)") from None

    def categories(self) -> list[str]:
        return list(self._categories)

    def domains(self) -> list[str]:
        return sorted({domain_of(s) for s in self._specs})

    def servers(self) -> list[str]:
        return sorted({s.provenance.server for s in self._specs if s.provenance.server})

    def groups(self) -> dict[str, list[ToolSpec]]:
        return {k: list(v) for k, v in self._groups.items()}

    def filter(
        self,
        category: str | Sequence[str] | None = None,
        domain: str | Sequence[str] | None = None,
        server: str | Sequence[str] | None = None,
        source: Source | Sequence[Source] | None = None,
    ) -> ToolRegistry:
        """The tools matching every given criterion; an unknown value raises with the valid ones."""
        specs = self._specs
        for value, key, known in (
            (category, category_of, self.categories()),
            (domain, domain_of, self.domains()),
            (server, lambda s: s.provenance.server, self.servers()),
            (source, lambda s: s.provenance.source, sorted({s.provenance.source for s in self._specs})),
        ):
            if value is None:
                continue
            wanted = {value} if isinstance(value, str) else set(value)
            if unknown := wanted - set(known):
                raise KeyError(f"unknown {sorted(unknown)}; valid values: {known}")
            specs = [s for s in specs if key(s) in wanted]
        return ToolRegistry(specs, self.report)

    def sample_toolset(
        self,
        rng_or_seed: random.Random | int,
        size_range: tuple[int, int] | int = (2, 6),
        mix_prob: float = 0.2,
    ) -> list[ToolSpec]:
        """A coherent toolset with unique names, reproducible from the seed.

        Mostly the tools of one group (a server, or a synthetic domain), topped up from the same category when
        the group is small; with probability ``mix_prob``, tools from two or three groups of different
        categories, as an agent that spans domains would have.
        """
        if not self._specs:
            raise RegistryEmpty("the tool registry is empty")
        lo, hi = (size_range, size_range) if isinstance(size_range, int) else size_range
        if not 1 <= lo <= hi:
            raise ValueError(f"size_range must be (min, max) with 1 <= min <= max, got {size_range}")
        rng = rng_or_seed if isinstance(rng_or_seed, random.Random) else random.Random(rng_or_seed)
        size = rng.randint(lo, hi)
        names = list(self._groups)
        if rng.random() < mix_prob and len(self._categories) > 1:
            picked_groups = self._mixed_groups(rng, names)
            pools = [self._groups[g] for g in picked_groups]
            chosen: list[ToolSpec] = []
            # Round-robin so each group contributes; shuffled pools keep picks varied.
            shuffled = [rng.sample(pool, len(pool)) for pool in pools]
            while len(chosen) < size and any(shuffled):
                for pool in shuffled:
                    if pool and len(chosen) < size:
                        _add_unique(chosen, pool.pop())
            return chosen
        # Groups big enough for the wanted size first, so most toolsets come from a single server.
        if size not in self._fitting:
            self._fitting[size] = [g for g in names if len(self._groups[g]) >= size] or names
        fitting = self._fitting[size]
        group = rng.choice(fitting)
        chosen = []
        for spec in rng.sample(self._groups[group], len(self._groups[group])):
            if len(chosen) >= size:
                break
            _add_unique(chosen, spec)
        if len(chosen) < size:
            # The other groups of its category (a group's tools share its category), in the registry's order.
            same = [s for g in self._category_groups[self._group_category[group]] if g != group
                    for s in self._groups[g]]
            for spec in rng.sample(same, len(same)):
                if len(chosen) >= size:
                    break
                _add_unique(chosen, spec)
        return chosen

    def _mixed_groups(self, rng: random.Random, names: list[str]) -> list[str]:
        by_category = self._category_groups
        categories = rng.sample(sorted(by_category), min(len(by_category), rng.choice((2, 3))))
        return [rng.choice(by_category[c]) for c in categories]


def _add_unique(chosen: list[ToolSpec], spec: ToolSpec) -> None:
    if all(c.function.name != spec.function.name for c in chosen):
        chosen.append(spec)
