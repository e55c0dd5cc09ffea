"""Stage ``rollouts``: ``rollouts.samples`` multi-turn episodes per task (agent model, persona user, stateful
tools), best-of-N as in K2's rejection sampling; a task that never trains (its tools are held out, or mix held-out
and training groups: ``synth.data.heldout``) gets one."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from synth.config import RolloutsStageConfig
from synth.data.heldout import side_of
from synth.schemas.ids import stable_id, trajectory_id
from synth.schemas.records import AgentRecord, Row, TaskRecord, TrajectoryRecord
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem

if TYPE_CHECKING:
    from synth.sim.real_exec import RealToolHub
    from synth.sim.server_pool import ServerPool


class RolloutsStage(Stage):
    name = "rollouts"
    # tools (optional, upstream of agents: nothing in the fingerprint) for the synthetic tools' held-out groups.
    inputs = ("tasks", "agents", "tools")
    optional = ("tools",)
    record = TrajectoryRecord

    async def setup(self, ctx: StageContext) -> None:
        ctx.cache["tasks"] = {t.id: t for t in ctx.rows("tasks", TaskRecord) if t.error is None}
        ctx.cache["agents"] = {a.id: a for a in ctx.rows("agents", AgentRecord)}
        if ctx.config.rollouts.real_exec:
            # Once per worker, before any row: where servers can't be confined and unconfined isn't allowed, the
            # stage stops with one message instead of every real-exec row failing with it.
            from synth.runtime.sandbox import isolation
            from synth.sim.server_pool import ServerPool

            isolation(ctx.config.rollouts.allow_unconfined)
            # The shard's MCP server processes, kept across its episodes (synth.sim.server_pool).
            ctx.cache["mcp_pool"] = ServerPool(allow_unconfined=ctx.config.rollouts.allow_unconfined)

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        if ctx.config.rollouts.real_exec:
            from synth.runtime.sandbox import isolation

            summary.extra["mcp_servers"] = isolation(ctx.config.rollouts.allow_unconfined)

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        from synth.stages.split import task_split

        tasks = sorted((t for t in ctx.rows("tasks", TaskRecord) if t.error is None), key=lambda t: t.id)
        share = ctx.config.dataset.heldout_share
        split = task_split(ctx.config, ctx.inputs)
        items = []
        for t in tasks:
            # A task that never enters train needs one episode (it still feeds the calibration). By its own tools
            # only: whether another task holds a held-out tool of the same name can change as tasks are added.
            samples = ctx.config.rollouts.samples if side_of(split.keys[t.id], share) == "train" else 1
            items += [WorkItem(id=sample_id(t.id, t.seed, k), seed=sample_seed(t.seed, k),
                               payload={"task_id": t.id, "sample": k,
                                        "free_text": free_text_sample(t, k, samples, ctx.config.rollouts)})
                      for k in range(samples)]
        return items

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        from synth.sim.episode import run_episode

        task: TaskRecord = ctx.cache["tasks"][item.payload["task_id"]]
        agent: AgentRecord = ctx.cache["agents"][task.agent_id]
        cfg = ctx.config
        free_text = bool(item.payload.get("free_text", False))
        hub = None
        servers = sorted({s for s in agent.real_tools.values() if s != "builtin"})
        if cfg.rollouts.real_exec and servers:
            hub = agent_hub(agent, servers, allow_unconfined=cfg.rollouts.allow_unconfined,
                            pool=ctx.cache.get("mcp_pool"))
        if hub is None:
            traj = await run_episode(task, agent, ctx.llm(), cfg.rollouts, seed=item.seed,
                                     tool_calling=_mode(cfg.llm.tool_calling), free_text=free_text)
        else:
            async with hub:
                traj = await run_episode(task, agent, ctx.llm(), cfg.rollouts, seed=item.seed, hub=hub,
                                         tool_calling=_mode(cfg.llm.tool_calling), free_text=free_text)
        return traj.model_copy(update={"id": item.id, "task_id": task.id, "agent_id": agent.id,
                                       "sample": item.payload.get("sample", 0)})


    def failed_row(self, item: WorkItem, exc: BaseException, usage: UsageByRole | None = None) -> Row:
        # A failed episode still names its task, so the judge and the dataset can place it.
        row = super().failed_row(item, exc, usage)
        task = item.payload.get("task_id", "")
        return row.model_copy(update={"task_id": task, "sample": item.payload.get("sample", 0)})


def free_text_sample(task: TaskRecord, sample: int, samples: int, cfg: RolloutsStageConfig) -> bool:
    """Whether a task's ``sample``-th of ``samples`` episodes answers in free text: the first
    ceil(``coding_free_text`` x samples) episodes of a coding task, none of any other task."""
    return task.difficulty == "coding" and sample < math.ceil(cfg.coding_free_text * samples - 1e-9)


def sample_id(task_id: str, task_seed: int, sample: int) -> str:
    """Row id of a task's ``sample``-th episode (``synth.schemas.ids.trajectory_id``)."""
    return trajectory_id(task_id, task_seed, sample)


def sample_seed(task_seed: int, sample: int) -> int:
    """Each episode of a task draws its own numbers (agent, user, tools); sample 0 keeps the task's seed."""
    from synth.sim.world import sub_seed

    return task_seed if sample == 0 else sub_seed(task_seed, "sample", sample)


def agent_hub(agent: AgentRecord, servers: list[str], *, allow_unconfined: bool = False,
         pool: ServerPool | None = None) -> RealToolHub:
    """A hub over the agent's real servers that knows their tools already, so no server starts before a call."""
    from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
    from synth.sim.real_exec import RealToolHub, sandbox_servers

    entries = [e for e in sandbox_servers() if e.id in servers]
    specs = [
        ToolSpec(id=stable_id("tool", agent.real_tools[t["function"]["name"]], t["function"]["name"]),
                 function=FunctionSpec.model_validate(t["function"]),
                 provenance=ToolProvenance(source="mcp", server=agent.real_tools[t["function"]["name"]]),
                 real_exec=True)
        for t in agent.tools if agent.real_tools.get(t["function"]["name"], "builtin") != "builtin"
    ]
    return RealToolHub(entries, specs=specs, allow_unconfined=allow_unconfined, pool=pool)


def _mode(setting: str) -> str:
    # "auto" is schema mode: SmolLM2's chat template has no tool support, and schema mode works on any server.
    return "native" if setting == "native" else "schema"
