"""The held-out split by tool group: a tool's group from its provenance, a task's side from its agent's tools'
groups, tasks on neither side, a tool name shared across groups, and on a run whose agents drew their toolsets from
the real registry (plus synthetic tools of the tools stage): no train row holds a held-out tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import PipelineConfig
from synth.data.heldout import (
    SANDBOX,
    TaskSplit,
    ToolGroups,
    is_heldout,
    row_side,
    tool_group,
)
from synth.schemas import AgentRecord, Criterion, Rubric, TaskRecord, Verdict, VerdictRecord
from synth.schemas.ids import stable_id
from synth.schemas.records import ToolBatchRecord
from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec
from synth.tools.builtin import RUN_PYTHON
from tests.fixtures.dataset import trajectory, write_stage

SHARE = 0.2


def synthetic(name: str, *path: str) -> ToolSpec:
    return ToolSpec(id=stable_id("tool", "synthetic", *path, name),
                    function=FunctionSpec(name=name, description=f"{name} in {'/'.join(path)}."),
                    provenance=ToolProvenance(source="synthetic", domain_path=list(path)))


def mcp(name: str, server: str) -> ToolSpec:
    return ToolSpec(id=stable_id("tool", server, name), function=FunctionSpec(name=name, description=f"{name}."),
                    provenance=ToolProvenance(source="mcp", server=server))


def agent(agent_id: str, *specs: ToolSpec) -> AgentRecord:
    return AgentRecord(id=agent_id, system_prompt="s", tool_ids=[s.id for s in specs],
                       tools=[s.openai() for s in specs])


def leaf(held: bool, n: int = 0) -> list[str]:
    """A synthetic domain leaf held out (or not) at SHARE, the ``n``-th such."""
    found = [p for p in (["travel", "booking", f"leaf{i}"] for i in range(500))
             if is_heldout("synthetic:" + "/".join(p), SHARE) == held]
    return found[n]


def server(held: bool) -> str:
    return next(s for s in (f"npm/srv-{i}" for i in range(500)) if is_heldout(f"mcp:{s}", SHARE) == held)


def test_a_tools_group_is_its_server_its_domain_leaf_or_its_own_name() -> None:
    assert tool_group(mcp("get_time", "pypi/mcp-server-time")) == "mcp:pypi/mcp-server-time"
    assert tool_group(synthetic("book", "travel", "booking", "trains")) == "synthetic:travel/booking/trains"
    assert tool_group(RUN_PYTHON) == f"builtin:{SANDBOX}"
    index = ToolGroups([synthetic("book", "travel", "booking", "trains")])
    assert index.group(stable_id("tool", "synthetic", "travel", "booking", "trains", "book"), "book") == \
        "synthetic:travel/booking/trains"
    # A real-exec tool's server is on the agent; a committed MCP tool is found in the registry by its id; a tool
    # known by nothing is a group of its own, by name.
    assert index.group("tool-x", "read_file", "npm/@modelcontextprotocol/server-filesystem") == \
        "mcp:npm/@modelcontextprotocol/server-filesystem"
    from synth.tools.registry import ToolRegistry

    real = ToolRegistry.load().specs[0]
    assert index.group(real.id, real.function.name) == f"mcp:{real.provenance.server}"
    assert index.group("tool-unknown", "frobnicate") == "tool:frobnicate"
    # Same share, same groups, in every run: the key and the salt decide, nothing else.
    assert is_heldout("mcp:" + server(True), SHARE) and not is_heldout(f"builtin:{SANDBOX}", 0.99)


def test_sides_excluded_tasks_and_a_name_shared_across_groups() -> None:
    held_a, held_b = synthetic("find_train", *leaf(True)), mcp("get_alerts", server(True))
    kept = synthetic("book_hotel", *leaf(False))
    # Named as a held-out tool, in a training leaf: the task that holds it may not train.
    twin = synthetic("find_train", *leaf(False, 1))
    agents = [agent("a-held", held_a, held_b), agent("a-kept", kept), agent("a-mixed", held_a, kept),
              agent("a-twin", twin), agent("a-none")]
    tasks = [TaskRecord(id=f"t-{a.id}", agent_id=a.id) for a in agents]
    split = TaskSplit.of(SHARE, tasks, agents, ToolGroups([held_a, held_b, kept, twin]))
    assert split.sides == {"t-a-held": "heldout", "t-a-kept": "train", "t-a-mixed": "excluded",
                           "t-a-twin": "excluded", "t-a-none": "heldout" if is_heldout("t-a-none", SHARE) else "train"}
    assert split.tools == ["find_train", "get_alerts"]
    assert split.groups == sorted([tool_group(held_a), tool_group(held_b)])
    assert split.excluded_by() == {"mixed groups": 1, "shared tool name": 1}
    assert "named as a held-out tool" in split.reasons["t-a-twin"]
    # The rows the dataset writes carry their keys; training decides by them alone.
    assert row_side({"task_id": "t-a-kept", "split_keys": split.keys["t-a-held"]}, SHARE) == "heldout"
    assert row_side({"task_id": "t-a-held", "split_keys": split.keys["t-a-mixed"]}, SHARE) == "excluded"


def test_a_coding_task_is_split_by_its_problem_and_its_other_tools() -> None:
    from synth.tasks.rubrics import default_library

    problems = default_library().coding_problems
    held = next(p for p in problems if is_heldout(f"problem:{p.id}", SHARE))
    kept = next(p for p in problems if not is_heldout(f"problem:{p.id}", SHARE))
    away, home = synthetic("find_train", *leaf(True)), synthetic("book_hotel", *leaf(False))
    coder, plain = agent("a-code", RUN_PYTHON, away), agent("a-plain", RUN_PYTHON, home)

    def coding(task_id: str, agent_id: str, tests: str) -> TaskRecord:
        return TaskRecord(id=task_id, agent_id=agent_id, difficulty="coding",
                          rubric=Rubric(criteria=[Criterion(id="c", description="works")], python_tests=tests))

    tasks = [coding("t1", "a-code", held.tests), coding("t2", "a-code", kept.tests),
             coding("t3", "a-plain", kept.tests), TaskRecord(id="t4", agent_id="a-code")]
    split = TaskSplit.of(SHARE, tasks, [coder, plain], ToolGroups([away, home]))
    # The sandbox is held out by nobody: a held-out coding task holds it as training ones do, and the tools it
    # holds out are its others. A task that is not coding is on the training side with the sandbox.
    assert split.sides == {"t1": "heldout", "t2": "excluded", "t3": "train", "t4": "excluded"}
    assert split.tools == ["find_train"] and split.problems == [f"problem:{held.id}"]


@pytest.mark.timeout(300)
def test_no_train_row_holds_a_heldout_tool_on_a_generated_run(tmp_path: Path) -> None:
    """Agents drawn by the agents stage from the committed registry and the tools stage's synthetic tools (as in
    any run), two tasks each (a coding agent's first is coding), every episode accepted: the dataset's train rows
    hold no tool its held-out tasks hold, and every held-out task's tools are in held-out groups."""
    from datasets import load_from_disk

    from synth.stages.agents import AgentsStage, _registry
    from synth.stages.base import StageContext
    from synth.stages.dataset import recorded_heldout
    from synth.stages.outputs import RunOutputs
    from synth.stages.runner import run_stage
    from synth.stages.tools import SYNTHETIC
    from synth.tasks.rubrics import default_library

    cfg = PipelineConfig.model_validate({"runs_dir": str(tmp_path), "run": "g", "ray": {"enabled": False},
                                         "agents": {"count": 80}, "dataset": {"heldout_share": SHARE}})
    leaves = [[*leaf(held, n)] for held in (True, False) for n in range(3)]
    batches = [ToolBatchRecord(id=f"leaf-{i}", domain_path=p, tools=[synthetic(f"{verb}_{p[-1]}", *p)
                                                                     for verb in ("find", "book", "cancel")])
               for i, p in enumerate(leaves)]
    write_stage(cfg.run_dir, "tools", batches)
    (cfg.run_dir / "tools" / SYNTHETIC).write_text("".join(t.model_dump_json() + "\n" for b in batches
                                                           for t in b.tools))
    stage = AgentsStage()
    ctx = StageContext(config=cfg, stage=stage)
    by_id = {s.id: s for s in [*_registry(ctx).specs, RUN_PYTHON]}
    problems = default_library().coding_problems
    agents, tasks = [], []
    for i, item in enumerate(stage.plan(ctx)):
        specs = [by_id[t] for t in item.payload["tool_ids"]]
        a = AgentRecord(id=item.id, system_prompt="s", tool_ids=[s.id for s in specs],
                        tools=[s.openai() for s in specs],
                        real_tools={s.function.name: s.provenance.server or "builtin" for s in specs if s.real_exec})
        agents.append(a)
        for k in range(2):
            coding = k == 0 and item.payload["kind"] == "coding"
            rubric = Rubric(criteria=[Criterion(id="c", description="d")],
                            python_tests=problems[(i + k) % len(problems)].tests if coding else None)
            tasks.append(TaskRecord(id=f"task-{i}-{k}", agent_id=a.id, difficulty="coding" if coding else "single",
                                    rubric=rubric))
    trajs = [trajectory(j).model_copy(update={"id": f"traj-{t.id}", "task_id": t.id, "agent_id": t.agent_id,
                                              "tools": next(a.tools for a in agents if a.id == t.agent_id)})
             for j, t in enumerate(tasks)]
    write_stage(cfg.run_dir, "agents", agents)
    write_stage(cfg.run_dir, "tasks", tasks)
    write_stage(cfg.run_dir, "rollouts", trajs)
    write_stage(cfg.run_dir, "judge", [VerdictRecord(
        id=t.id, trajectory_id=t.id, task_id=t.task_id,
        verdict=Verdict(passed=True, score=1.0, code_passed=True, verifiable=True, llm_passed=True)) for t in trajs])

    summary = run_stage("dataset", cfg, [], progress=False)
    held = recorded_heldout(RunOutputs(cfg.run_dir))
    assert held is not None and held.rule == "tool-group" and held.seen == []
    ds = load_from_disk(str(cfg.run_dir / "dataset" / "hf"))
    train_tools = {t["function"]["name"] for row in ds["train"] for t in row["tools"]}
    held_tools = {t["function"]["name"] for a in held.agents for t in a.tools} - {SANDBOX}
    assert ds["train"].num_rows > 40 and len(held.task_ids) >= 5, (ds["train"].num_rows, held.task_ids)
    assert set(held.tools) == held_tools and not train_tools & held_tools
    # Every held-out task's tools (the sandbox of a coding task aside) are in held-out groups: MCP servers or
    # synthetic leaves no training row draws from.
    index = ToolGroups.of_batches(batches)
    for a in held.agents:
        for name, group in index.of_agent(a).items():
            assert name == SANDBOX or is_heldout(group, SHARE), (a.id, name, group)
    assert set(ds["heldout"]["task_id"]) == set(held.task_ids)
    built = summary.extra["dataset"]
    assert built["heldout_tasks"] == len(held.task_ids) and built["excluded"] == sum(built["excluded_tasks"].values())
