"""Replay a run's read calls through the tool simulator on the real server: patch allowed vs read-only
(bench/results/tool_sim_read_only.json). Usage: python bench/tool_sim_read_only.py [ROUND_DIR] (server on :8765)."""

import asyncio
import collections
import glob
import json
import sys
from pathlib import Path

from synth.config import EndpointConfig, LLMConfig, RolloutsStageConfig
from synth.llm.client import LLMPool
from synth.schemas import AgentRecord, TaskRecord, TrajectoryRecord
from synth.sim import tool_sim
from synth.sim.episode import answer_call
from synth.sim.world import WorldState
from synth.stages.outputs import RunOutputs
from synth.tools.effects import reads_only

rd = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/data-value/improve/round-2")
tasks = {t.id: t for t in RunOutputs(rd).rows("tasks", TaskRecord)}
agents = {a.id: a for a in RunOutputs(rd).rows("agents", AgentRecord)}
calls = []
for f in glob.glob(f"{rd}/rollouts/journal/*.jsonl"):
    with open(f) as fh:
        for line in fh:
            r = json.loads(line)
            if not r.get("record"):
                continue
            tr = TrajectoryRecord.model_validate_json(r["record"])
            steps = [m for m in tr.messages if m.role == "assistant" and m.tool_calls] if not tr.error else []
            if steps and reads_only(steps[0].tool_calls[0].function.name):
                calls.append((tasks[tr.task_id], agents[tr.agent_id], steps[0].tool_calls[0], tr.seed))
print("read calls", len(calls), file=sys.stderr)
cfg = RolloutsStageConfig(error_rate=0, timeout_rate=0, empty_rate=0, partial_rate=0)
pool = LLMPool([EndpointConfig(base_url="http://127.0.0.1:8765/v1", max_concurrency=16)], LLMConfig())
real = tool_sim.reads_only


async def one(task, agent, tc, seed, arm):
    tool_sim.reads_only = real if arm == "read_only" else (lambda n: False)
    sim = tool_sim.ToolSimulator(list(agent.tools), WorldState(task.initial_state), pool, cfg, seed=seed)
    try:
        out = await answer_call(sim, tc)
    except Exception as exc:
        return arm, "invalid:" + type(exc).__name__
    rejected = "could not apply the change" in out.content
    return arm, "ok" if out.record.ok else ("rejected_change" if rejected else "error_result")


async def main():
    res = collections.Counter()
    for arm in ("patch_allowed", "read_only"):  # arms in turn: the lookup is module-global
        for got in await asyncio.gather(*[one(*c, arm) for c in calls]):
            res[got] += 1
    print(json.dumps({f"{a}:{k}": v for (a, k), v in sorted(res.items())}, indent=1))


asyncio.run(main())
