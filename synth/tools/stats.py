"""What the tool registry holds: counts by source, category, domain and server, how rich the schemas are, and
a picture of the domain tree (category -> domain -> tools) as a PNG and a self-contained HTML page.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from synth.schemas.tools import ToolSpec
from synth.tools.registry import MCP_DIR, RegistryMissing, ToolRegistry, category_of, domain_of
from synth.tools.servers import SERVERS_FILE

# Schema features worth knowing the coverage of: richer schemas make harder, more realistic tool calls.
FEATURES = (
    "no_params",
    "required",
    "enum",
    "nested_object",
    "array",
    "format",
    "default",
    "union",
    "ref",
    "param_descriptions",
)


class ToolStats(BaseModel):
    tools: int
    servers: int
    by_source: dict[str, int]
    by_category: dict[str, int]
    by_domain: dict[str, int]
    by_server: dict[str, int]
    tree: dict[str, dict[str, int]] = Field(description="category -> domain -> tool count")
    features: dict[str, int] = Field(description="Tools whose input schema uses each feature.")
    feature_share: dict[str, float] = Field(description="Share of tools using each feature.")
    params_mean: float
    params_max: int
    real_exec: int
    validation: dict[str, Any] = Field(
        default_factory=dict, description="Accepted/rejected counts and reasons."
    )


def schema_features(schema: dict[str, Any]) -> set[str]:
    """The FEATURES one input schema uses (walks nested properties, items and combinators)."""
    found: set[str] = set()
    props = schema.get("properties") or {}
    if not props:
        found.add("no_params")
    if props and all(isinstance(p, dict) and p.get("description") for p in props.values()):
        found.add("param_descriptions")

    def walk(node: Any, depth: int) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, depth)
            return
        if not isinstance(node, dict):
            return
        if node.get("required"):
            found.add("required")
        if "enum" in node or "const" in node:
            found.add("enum")
        if "format" in node:
            found.add("format")
        if "default" in node:
            found.add("default")
        if any(k in node for k in ("anyOf", "oneOf", "allOf")) or isinstance(node.get("type"), list):
            found.add("union")
        if "$ref" in node:
            found.add("ref")
        kind = node.get("type")
        if kind == "array" or "items" in node:
            found.add("array")
        if depth > 0 and (kind == "object" or "properties" in node):
            found.add("nested_object")
        for key in ("properties", "$defs", "definitions", "patternProperties"):
            if isinstance(node.get(key), dict):
                for child in node[key].values():
                    walk(child, depth + 1)
        for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "not"):
            if key in node:
                walk(node[key], depth + 1)

    walk(schema, 0)
    return found


def compute_stats(specs: Iterable[ToolSpec]) -> ToolStats:
    specs = list(specs)
    features: Counter[str] = Counter()
    params: list[int] = []
    tree: dict[str, Counter[str]] = defaultdict(Counter)
    for spec in specs:
        features.update(schema_features(spec.function.parameters))
        params.append(len(spec.function.parameters.get("properties") or {}))
        tree[category_of(spec)][domain_of(spec)] += 1
    n = max(1, len(specs))
    by_server = Counter(s.provenance.server for s in specs if s.provenance.server)
    return ToolStats(
        tools=len(specs),
        servers=len(by_server),
        by_source=dict(Counter(s.provenance.source for s in specs).most_common()),
        by_category=dict(Counter(category_of(s) for s in specs).most_common()),
        by_domain=dict(Counter(domain_of(s) for s in specs).most_common()),
        by_server=dict(by_server.most_common()),
        tree={c: dict(d.most_common()) for c, d in sorted(tree.items(), key=lambda kv: -sum(kv[1].values()))},
        features={f: features[f] for f in FEATURES},
        feature_share={f: round(features[f] / n, 3) for f in FEATURES},
        params_mean=round(sum(params) / n, 2),
        params_max=max(params, default=0),
        real_exec=sum(s.real_exec for s in specs),
    )


def stats(
    out_dir: Path,
    mcp_dir: Path = MCP_DIR,
    servers_file: Path = SERVERS_FILE,
    synthetic: Path | None = None,
    registry: ToolRegistry | None = None,
) -> ToolStats:
    """Load the registry (or use ``registry``), write stats.json, validation_report.json, domain_tree.png and
    domain_tree.html to ``out_dir``, and return the stats."""
    registry = registry or ToolRegistry.load(mcp_dir, servers_file, synthetic=synthetic)
    result = compute_stats(registry)
    result.validation = {
        "total": registry.report.total,
        "accepted": registry.report.accepted,
        "rejected": len(registry.report.rejected),
        "fixed": len(registry.report.fixed),
        "reasons": registry.report.reasons_count(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stats.json").write_text(result.model_dump_json(indent=1) + "\n")
    registry.report.write(out_dir / "validation_report.json")
    plot_tree(result, out_dir / "domain_tree.png")
    (out_dir / "domain_tree.html").write_text(render_html(result))
    return result


def write_stats(specs: Iterable[ToolSpec], out_dir: Path, registry: ToolRegistry | None = None) -> ToolStats:
    """Stats of ``specs`` written to ``out_dir`` (stats.json, domain_tree.png, domain_tree.html)."""
    return stats(out_dir, registry=registry or ToolRegistry(specs))


def plot_tree(result: ToolStats, path: Path, max_domains: int = 12) -> None:
    """Two-ring sunburst: categories inside, their domains (servers) outside, areas by tool count."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 12))
    if not result.tools:
        ax.text(0.5, 0.5, "no tools", ha="center")
        fig.savefig(path)
        plt.close(fig)
        return
    cmap = plt.get_cmap("tab20")
    inner_sizes, inner_labels, inner_colors, outer_sizes, outer_labels, outer_colors = [], [], [], [], [], []
    for i, (category, domains) in enumerate(result.tree.items()):
        color = cmap(i % 20)
        total = sum(domains.values())
        inner_sizes.append(total)
        inner_labels.append(f"{category}\n{total}" if total / result.tools > 0.03 else "")
        inner_colors.append(color)
        shown = list(domains.items())[:max_domains]
        rest = total - sum(n for _, n in shown)
        if rest:
            shown.append((f"{len(domains) - max_domains} more", rest))
        for j, (domain, count) in enumerate(shown):
            outer_sizes.append(count)
            outer_labels.append(f"{domain} ({count})" if count / result.tools > 0.008 else "")
            outer_colors.append((*color[:3], 0.45 + 0.5 * (j % 2)))
    ax.pie(
        inner_sizes,
        radius=0.62,
        labels=inner_labels,
        labeldistance=0.55,
        colors=inner_colors,
        wedgeprops={"width": 0.32, "edgecolor": "white"},
        textprops={"fontsize": 9, "ha": "center"},
    )
    ax.pie(
        outer_sizes,
        radius=1.0,
        labels=outer_labels,
        labeldistance=1.04,
        colors=outer_colors,
        wedgeprops={"width": 0.38, "edgecolor": "white"},
        textprops={"fontsize": 6},
        rotatelabels=True,
    )
    ax.set_title(
        f"Tool registry: {result.tools} tools, {len(result.tree)} categories, {result.servers} MCP servers",
        pad=40,
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def render_html(result: ToolStats) -> str:
    """A self-contained page: the domain tree as nested collapsible lists, then the feature coverage."""
    esc = html.escape
    rows = []
    for category, domains in result.tree.items():
        total = sum(domains.values())
        items = "".join(f"<li>{esc(d)} <b>{n}</b></li>" for d, n in domains.items())
        rows.append(
            f"<details><summary>{esc(category)} <b>{total}</b> tools, {len(domains)} domains</summary>"
            f"<ul>{items}</ul></details>"
        )
    features = "".join(
        f"<tr><td>{esc(f)}</td><td>{result.features[f]}</td><td>{result.feature_share[f]:.1%}</td></tr>"
        for f in FEATURES
    )
    summary = esc(
        json.dumps(
            {
                "tools": result.tools,
                "servers": result.servers,
                "by_source": result.by_source,
                "validation": result.validation,
            },
            indent=1,
        )
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>synth tool registry</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}details{{margin:.2em 0}}
summary{{cursor:pointer}}table{{border-collapse:collapse}}td{{border:1px solid #ccc;padding:2px 8px}}</style>
</head><body><h1>Tool registry</h1><pre>{summary}</pre><h2>Domain tree</h2>{"".join(rows)}
<h2>Schema features</h2><table><tr><td>feature</td><td>tools</td><td>share</td></tr>{features}</table>
</body></html>
"""


def harvest_markdown(report_path: Path, result: ToolStats) -> str:
    """A readable summary of a harvest report plus the registry stats, for tools_registry/mcp/."""
    from synth.tools.harvest import HarvestReport  # harvest pulls in the MCP client; only this needs it

    report = HarvestReport.read(report_path)
    if report is None:
        raise RegistryMissing(f"no harvest report at {report_path}", hint="run `synth tools harvest` first")
    s = report.summary()
    lines = [
        "# MCP harvest",
        "",
        f"Servers tried: {s['servers']}, ok: {s['ok']}, failed: {s['failed']} "
        f"(by stage: {', '.join(f'{k} {v}' for k, v in sorted(s['failed_by_stage'].items()))}).",
        f"Tools harvested: {s['tools']}; valid as OpenAI functions: {result.validation.get('accepted', '?')}, "
        f"rejected: {result.validation.get('rejected', '?')} ({result.validation.get('reasons', {})}).",
        "",
        "## Tools by category",
        "",
        "| category | tools | servers |",
        "| --- | --- | --- |",
        *(f"| {c} | {sum(d.values())} | {len(d)} |" for c, d in result.tree.items()),
        "",
        "## Schema features (share of tools)",
        "",
        "| feature | tools | share |",
        "| --- | --- | --- |",
        *(f"| {f} | {result.features[f]} | {result.feature_share[f]:.0%} |" for f in FEATURES),
        "",
        "## Servers",
        "",
        "| server | version | category | status | tools | stage | reason |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.servers:
        reason = (r.reason or "").replace("|", "/").replace("\n", " ")[:160]
        lines.append(
            f"| {r.server} | {r.version} | {r.category} | {r.status} | {r.tools} | {r.stage or ''} "
            f"| {reason} |"
        )
    return "\n".join(lines) + "\n"
