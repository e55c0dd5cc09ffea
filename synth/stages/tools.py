"""Stage ``tools``: load the committed real MCP tools and grow synthetic ones by domain evolution (a few leaves
once, or to a target size in rounds: ``grow.target``, synth.tools.grow)."""

from __future__ import annotations

import json
import random
from typing import Any

from synth.schemas.ids import leaf_id
from synth.schemas.records import Row, ToolBatchRecord
from synth.schemas.tools import ToolSpec
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem
from synth.tools.domains import load_categories, seed_leaves
from synth.tools.evolve import evolve_leaf, grow_subdomain

SYNTHETIC = "synthetic.jsonl"
DROPPED = "dropped.jsonl"
"""Synthetic tools left out: duplicates (with the tool each duplicates) and invalid ones (with the reasons)."""


class ToolsStage(Stage):
    name = "tools"
    record = ToolBatchRecord

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        from synth.tools.registry import check_files

        cfg = ctx.config
        check_files()  # the registry is built in finish, after the requests: a broken file must stop us before
        categories = load_categories()
        descriptions = {(c.category, d.name): d.description for c in categories for d in c.domains}
        leaves = seed_leaves(categories)
        if cfg.grow.target:
            items = self._grow_plan(ctx, leaves, descriptions)
        else:
            rng = random.Random(cfg.seed)
            chosen = rng.sample(leaves, k=min(cfg.tools.evolve_leaves, len(leaves)))
            items = []
            for i, leaf in enumerate(chosen):
                payload = {"leaf": leaf, "description": descriptions.get(tuple(leaf), leaf[-1]),
                           "generations": cfg.tools.evolve_generations, "per_generation": cfg.tools.tools_per_leaf}
                seed = cfg.seed * 10_000 + i
                items.append(WorkItem(id=leaf_id(payload, seed), seed=seed, payload=payload))
        self._order = {item.id: i for i, item in enumerate(items)}  # finish() keeps tools in plan order
        return items

    def _grow_plan(self, ctx: StageContext, leaves: list[list[str]],
                   descriptions: dict[tuple[str, ...], str]) -> list[WorkItem]:
        """``slots`` subdomains per leaf (synth.tools.grow): slot-major, so earlier rounds' tools come first."""
        from synth.tools.grow import MAX_AVOID, STATE, GrowState, slots_for

        cfg = ctx.config
        state = GrowState.read(ctx.out_dir / STATE)
        sizes = {"generations": cfg.tools.evolve_generations, "per_generation": cfg.tools.tools_per_leaf}
        self._slots = slots_for(state, cfg.grow.target, len(leaves), sizes["generations"] * sizes["per_generation"])

        def key(index: int, slot: int) -> tuple[str, int, dict[str, Any]]:
            payload = {"leaf": leaves[index], "slot": slot, **sizes}  # the id: nothing a later round may change
            seed = cfg.seed * 10_000_000 + slot * 1_000 + index
            return leaf_id(payload, seed), seed, payload

        # The subdomains of earlier rounds, all finished before this round was planned, steer new slots away
        # from them; they are the same on a resumed round, so its prompts are too.
        earlier = {key(i, slot)[0]: (slot, i) for slot in range(state.slots) for i in range(len(leaves))}
        named: dict[int, list[tuple[int, str]]] = {}
        if earlier:
            for row in ctx.own_rows(ToolBatchRecord):
                if row.error is None and row.id in earlier and len(row.domain_path) > 2:
                    slot, index = earlier[row.id]
                    named.setdefault(index, []).append((slot, row.domain_path[2]))
        items = []
        for slot in range(self._slots):
            for index, leaf in enumerate(leaves):
                _, seed, payload = key(index, slot)
                avoid = list(dict.fromkeys(name for _, name in sorted(named.get(index, []))))[-MAX_AVOID:]
                items.append(WorkItem(id=leaf_id(payload, seed), seed=seed, payload={
                    **payload, "description": descriptions.get(tuple(leaf), leaf[-1]), "avoid": avoid}))
        return items

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        pool = ctx.llm("generator")
        leaf, description = item.payload["leaf"], item.payload["description"]
        sub = await grow_subdomain(pool, leaf, description, seed=item.seed, usage=usage,
                                   existing=item.payload.get("avoid"))
        path = [*leaf, sub.name]
        tools = await evolve_leaf(pool, path, sub.description, generations=item.payload["generations"],
                                  per_generation=item.payload["per_generation"], seed=item.seed, usage=usage)
        return ToolBatchRecord(id=item.id, seed=item.seed, domain_path=path, tools=tools, usage=usage,
                               model=await pool.model())

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        from synth.tools.grow import STATE, GrowState, RoundState, select, stats
        from synth.tools.registry import ToolRegistry

        order = getattr(self, "_order", {})
        made = sorted((r for r in rows if isinstance(r, ToolBatchRecord)), key=lambda r: order.get(r.id, len(order)))
        grown = [tool for row in made for tool in row.tools]
        real = ToolRegistry.load().specs
        # Against the real tools and the synthetic ones kept before each (synth.tools.grow.select).
        selection = select(real, grown, ctx.config.grow.dedup_threshold)
        (ctx.out_dir / SYNTHETIC).write_text("".join(spec.model_dump_json() + "\n" for spec in selection.kept))
        (ctx.out_dir / DROPPED).write_text("".join(
            json.dumps({"tool": d.spec.function.name, "id": d.spec.id, "domain_path": d.spec.provenance.domain_path,
                        "kind": d.kind, "duplicate_of": d.duplicate_of, "reason": d.reason}) + "\n"
            for d in selection.dropped) + "".join(r.model_dump_json() + "\n" for r in selection.rejected))
        grow = stats(selection, {s.id for s in real})
        summary.rejected = {("near_duplicate" if kind == "near_duplicate" else f"duplicate_{kind}"): n
                            for kind, n in sorted(grow.dropped.items())}
        if grow.schema_rejects:  # a bad schema, no error case or no domain path: grow.reject_reasons says which
            summary.rejected["invalid"] = grow.schema_rejects
        summary.extra = {"real_tools": len(real), "synthetic_tools": len(selection.kept),
                         "synthetic_generated": len(grown), "grow": grow.model_dump()}
        if ctx.config.grow.target:
            state = GrowState.read(ctx.out_dir / STATE)
            now = RoundState(slots=getattr(self, "_slots", state.slots), kept=len(selection.kept),
                             rows=sum(r.error is None for r in made))
            # A re-run that planned nothing new replaces its round instead of adding one.
            state.rounds = [*(state.rounds[:-1] if state.slots == now.slots else state.rounds), now]
            (ctx.out_dir / STATE).write_text(state.model_dump_json(indent=1))


def load_synthetic(ctx: StageContext) -> list[ToolSpec]:
    """The synthetic tools the tools stage kept (none before it ran); the reading stage declares ``tools``."""
    from synth.tools.registry import read_specs

    path = ctx.input_file(ToolsStage.name, SYNTHETIC)
    if not path.exists():
        return []
    return read_specs(path)  # a line that is no spec is named by file and line
