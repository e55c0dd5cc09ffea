"""Stage ``tasks``: for each kept agent, tasks of the configured kinds (``tasks.kinds``), each with a rubric."""

from __future__ import annotations

from synth.config import ConfigError
from synth.schemas.ids import task_id
from synth.schemas.records import AgentRecord, Row, TaskRecord
from synth.schemas.usage import UsageByRole
from synth.stages.agents import kept_agents
from synth.stages.base import Stage, StageContext, WorkItem


def difficulties_for(agent: AgentRecord, configured: list[str]) -> list[str]:
    """A coding agent gets coding tasks only; other agents never get one (they cannot run code).

    Only coding tasks: their outcome is checked by reference tests in the sandbox, which a small agent can pass
    (it writes the function), where a coding agent's other tasks were checked on arguments the generator made up.
    """
    if agent.profile.get("kind") == "coding":
        return ["coding"]
    return [d for d in configured if d != "coding"] or ["single_call"]


def can_ground(agent: AgentRecord, difficulty: str) -> bool:
    """Whether a ``difficulty`` task for ``agent`` would be grounded: a kind code builds that it can build for the
    agent, or a grounded template for which code can fill some tool's required arguments (``ground_call`` finds a
    tool or not whatever its rng; the rng only picks one)."""
    import random

    from synth.sim.tool_sim import RUN_PYTHON
    from synth.tasks.build import tool_index
    from synth.tasks.grounded import ground_call
    from synth.tasks.kinds import can_build, code_kind
    from synth.tasks.rubrics import default_library

    if code_kind(difficulty) is not None:
        return can_build(agent, difficulty)
    if difficulty == "coding" or not default_library().template(difficulty).grounded:
        return False
    return ground_call(tool_index(agent.tools), random.Random(0), exclude=frozenset({RUN_PYTHON})) is not None


class KindDealer:
    """Deals task kinds out by weight (smooth weighted round robin) across a run's agents in order: every kind
    comes up within one round of the weights, so a small run gets each; a kind the current agent cannot do keeps
    its turn for the next agent that can."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = {k: w for k, w in weights.items() if w > 0}
        self.credit = dict.fromkeys(self.weights, 0.0)

    def deal(self, allowed: list[str]) -> str | None:
        options = [k for k in self.weights if k in allowed]
        if not options:
            return None
        for k, w in self.weights.items():
            self.credit[k] += w
        pick = max(options, key=lambda k: self.credit[k])  # ties: the mix's order
        self.credit[pick] -= sum(self.weights.values())
        return pick


class TasksStage(Stage):
    name = "tasks"
    inputs = ("agents",)
    record = TaskRecord

    async def setup(self, ctx: StageContext) -> None:
        ctx.cache["agents"] = {a.id: a for a in kept_agents(ctx)}

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        from synth.tasks.kinds import can_build

        cfg = ctx.config
        items = []
        agents = sorted(kept_agents(ctx), key=lambda a: a.id)
        dealer = KindDealer(cfg.tasks.kinds)
        for agent in agents:
            levels = difficulties_for(agent, list(cfg.tasks.difficulties))
            if levels != ["coding"]:
                levels = [k for k in levels if can_build(agent, k)]
            if cfg.tasks.grounded_only:
                levels = [d for d in levels if can_ground(agent, d)]
            if not levels:
                continue
            for index in range(cfg.tasks.per_agent):
                difficulty = "coding" if levels == ["coding"] else dealer.deal(levels)
                if difficulty is None:
                    break
                seed = agent.seed * 100 + index
                items.append(WorkItem(id=task_id(agent.id, index, difficulty, seed), seed=seed,
                                      payload={"agent_id": agent.id, "difficulty": difficulty, "index": index}))
        if cfg.tasks.grounded_only and agents and not items:
            raise ConfigError(
                f"tasks.grounded_only: none of the {len(agents)} agents has a tool code can ground for "
                f"{list(cfg.tasks.difficulties)} (a kind code builds, or a grounded difficulty such as single_call, "
                "and a tool whose required arguments are enums, numbers, dates or named values); add such tools or "
                "kinds, or set tasks.grounded_only=false")
        return items

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        from synth.tasks.generate import generate_task

        agent = ctx.cache["agents"][item.payload["agent_id"]]
        task = await generate_task(agent, item.payload["difficulty"], ctx.llm("generator"), seed=item.seed,
                                   index=item.payload["index"], usage=usage,
                                   grounded_opening=ctx.config.tasks.grounded_opening,
                                   grounded_draft=ctx.config.tasks.grounded_draft, reword=ctx.config.tasks.reword)
        # The stage owns row identity, so a resumed run agrees with the plan whatever the generator computes.
        return task.model_copy(update={"id": item.id, "usage": usage, "model": await ctx.llm("generator").model()})
