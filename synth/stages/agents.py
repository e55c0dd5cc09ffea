"""Stage ``agents``: draw a profile and a toolset per agent, have the model write its system prompt."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from synth.agents.generate import compose_system_prompt, write_agent
from synth.agents.profiles import Profile, draw_profile
from synth.config import AgentsStageConfig
from synth.errors import SynthError
from synth.schemas.ids import agent_id
from synth.schemas.records import AgentRecord, Row
from synth.schemas.tools import ToolSpec
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem
from synth.stages.tools import load_synthetic
from synth.tools.builtin import RUN_PYTHON

if TYPE_CHECKING:
    from synth.tools.registry import ToolRegistry


def _registry(ctx: StageContext) -> ToolRegistry:
    # Imported here and cached per worker: loading validates every committed tool (thousands).
    from synth.tools.registry import ToolRegistry

    if "registry" not in ctx.cache:
        registry = ToolRegistry.load(extra=load_synthetic(ctx))
        excluded: dict[str, Any] = {}
        if ctx.config.agents.exclude_bfcl_names:
            registry, excluded = without_bfcl_names(registry)
        ctx.cache["registry"], ctx.cache["bfcl_excluded"] = registry, excluded
    return ctx.cache["registry"]


def without_bfcl_names(registry: ToolRegistry) -> tuple[ToolRegistry, dict[str, Any]]:
    """``registry`` less the tools named as a BFCL function, and what was left out (or why nothing could be)."""
    from synth.tools.registry import ToolRegistry

    try:
        from synth.bfcl.contamination import function_names, normal_name

        names = function_names()
    except SynthError as exc:  # bfcl-eval not installed: nothing can be told apart, and the summary says so
        return registry, {"bfcl_names_excluded": None, "bfcl_names_note": str(exc)}
    left = {s.function.name for s in registry if normal_name(s.function.name) in names}
    if not left:
        return registry, {"bfcl_names_excluded": []}
    kept = [s for s in registry if s.function.name not in left]
    return ToolRegistry(kept, registry.report), {"bfcl_names_excluded": sorted(left)}


def _kind(index: int, cfg_agents: AgentsStageConfig) -> str:
    """Which kind of toolset agent ``index`` gets: a fixed share calls real sandboxed servers or writes code,
    so every run exercises real execution, not only simulation."""
    period = max(1, round(1 / cfg_agents.real_exec_share)) if cfg_agents.real_exec_share > 0 else 0
    if cfg_agents.coding_share > 0 and index % max(1, round(1 / cfg_agents.coding_share)) == 1:
        return "coding"
    if period and index % period == 0:
        return "real"
    return "any"


def _real_exec_toolset(specs: list[ToolSpec], rng: random.Random, size: tuple[int, int]) -> list[ToolSpec]:
    """Tools of one sandbox-safe real server (filesystem, memory, git, time), so the episode calls it for real."""
    by_server: dict[str, list[ToolSpec]] = {}
    for spec in specs:
        if spec.real_exec and spec.provenance.server:
            by_server.setdefault(spec.provenance.server, []).append(spec)
    if not by_server:
        return []
    server = rng.choice(sorted(by_server))
    tools = by_server[server]
    return rng.sample(tools, k=min(len(tools), rng.randint(*size)))


class AgentsStage(Stage):
    name = "agents"
    inputs = ("tools",)
    record = AgentRecord

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        cfg = ctx.config
        registry = _registry(ctx)
        real_exec = [s for s in registry if s.real_exec]  # once, not a scan of the registry per agent
        items = []
        for i in range(cfg.agents.count):
            seed = cfg.seed * 100_000 + i
            rng = random.Random(seed)
            kind = _kind(i, cfg.agents)
            tools = self._toolset(registry, kind, rng, cfg.agents.toolset_size, real_exec)
            profile = draw_profile(rng)
            domain = tools[0].provenance.domain_path[0] if tools[0].provenance.domain_path else \
                (tools[0].provenance.server or "general")
            payload = {"tool_ids": [t.id for t in tools], "profile": profile.model_dump(), "domain": domain,
                       "kind": kind}
            items.append(WorkItem(id=agent_id(payload, seed), seed=seed, payload=payload))
        return items

    @staticmethod
    def _toolset(registry: ToolRegistry, kind: str, rng: random.Random, size: tuple[int, int],
                 real_exec: list[ToolSpec]) -> list[ToolSpec]:
        if kind == "real":
            real = _real_exec_toolset(real_exec, rng, size)
            if real:
                return real
        tools = registry.sample_toolset(rng, size)
        if kind == "coding":
            tools = [RUN_PYTHON, *[t for t in tools if t.function.name != RUN_PYTHON.function.name][:2]]
        return tools

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        registry = _registry(ctx)
        # One lookup a tool, not a map of the whole registry an agent: registries hold tens of thousands.
        tools = [RUN_PYTHON if i == RUN_PYTHON.id else registry.get(i) for i in item.payload["tool_ids"]]
        profile = Profile.model_validate(item.payload["profile"])
        pool = ctx.llm("generator")
        draft = await write_agent(pool, profile, item.payload["domain"], tools, seed=item.seed, usage=usage)
        return AgentRecord(
            id=item.id, seed=item.seed, name=draft.name, domain=item.payload["domain"],
            system_prompt=compose_system_prompt(draft, profile), tool_ids=[t.id for t in tools],
            tools=[t.openai() for t in tools], profile={**profile.model_dump(), "kind": item.payload["kind"]},
            real_tools={t.function.name: (t.provenance.server or "builtin") for t in tools if t.real_exec},
            usage=usage, model=await pool.model(),
        )

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        from synth.agents.diversity import diversity_report

        report = diversity_report([r for r in rows if isinstance(r, AgentRecord) and r.error is None])
        summary.rejected = {"near_duplicate": len(report.duplicates)} if report.duplicates else {}
        summary.extra = report.model_dump(exclude={"duplicates"}) | {"duplicate_ids": report.duplicates}
        _registry(ctx)
        summary.extra |= ctx.cache.get("bfcl_excluded", {})


def kept_agents(ctx: StageContext) -> list[AgentRecord]:
    """Agents that succeeded and are not near-duplicates of an earlier one; the reading stage declares ``agents``."""
    summary = ctx.summary(AgentsStage.name)
    dropped = set(summary.extra.get("duplicate_ids", [])) if summary else set()
    return [a for a in ctx.rows(AgentsStage.name, AgentRecord) if a.error is None and a.id not in dropped]
