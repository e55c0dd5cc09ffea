"""Stage ``tools``: load the committed real MCP tools and grow synthetic ones by domain evolution."""

from __future__ import annotations

import json
import random

from synth.schemas.ids import leaf_id
from synth.schemas.records import Row, ToolBatchRecord
from synth.schemas.tools import ToolSpec
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem
from synth.tools.domains import load_categories, seed_leaves
from synth.tools.evolve import evolve_leaf, grow_subdomain

SYNTHETIC = "synthetic.jsonl"


class ToolsStage(Stage):
    name = "tools"
    record = ToolBatchRecord

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        cfg = ctx.config
        categories = load_categories()
        descriptions = {(c.category, d.name): d.description for c in categories for d in c.domains}
        leaves = seed_leaves(categories)
        rng = random.Random(cfg.seed)
        chosen = rng.sample(leaves, k=min(cfg.tools.evolve_leaves, len(leaves)))
        items = []
        for i, leaf in enumerate(chosen):
            payload = {"leaf": leaf, "description": descriptions.get(tuple(leaf), leaf[-1]),
                       "generations": cfg.tools.evolve_generations, "per_generation": cfg.tools.tools_per_leaf}
            seed = cfg.seed * 10_000 + i
            items.append(WorkItem(id=leaf_id(payload, seed), seed=seed, payload=payload))
        return items

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        pool = ctx.llm("generator")
        leaf, description = item.payload["leaf"], item.payload["description"]
        sub = await grow_subdomain(pool, leaf, description, seed=item.seed, usage=usage)
        path = [*leaf, sub.name]
        tools = await evolve_leaf(pool, path, sub.description, generations=item.payload["generations"],
                                  per_generation=item.payload["per_generation"], seed=item.seed, usage=usage)
        return ToolBatchRecord(id=item.id, seed=item.seed, domain_path=path, tools=tools, usage=usage,
                               model=await pool.model())

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        from synth.tools.dedup import dedup_specs
        from synth.tools.registry import ToolRegistry

        grown = [tool for row in rows if isinstance(row, ToolBatchRecord) for tool in row.tools]
        kept, dropped = dedup_specs(grown)
        path = ctx.out_dir / SYNTHETIC
        path.write_text("".join(spec.model_dump_json() + "\n" for spec in kept))
        registry = ToolRegistry.load()
        summary.rejected = {"near_duplicate": len(dropped)} if dropped else {}
        summary.extra = {"real_tools": len(registry.specs), "synthetic_tools": len(kept),
                         "synthetic_generated": len(grown)}


def load_synthetic(ctx: StageContext) -> list[ToolSpec]:
    """The synthetic tools the tools stage kept (none before it ran); the reading stage declares ``tools``."""
    path = ctx.input_file(ToolsStage.name, SYNTHETIC)
    if not path.exists():
        return []
    return [ToolSpec.model_validate(json.loads(line)) for line in path.read_text().splitlines() if line]
