"""Coding episodes on the embedded model end to end: the request verbatim, a free-text answer, the real judge and
``judge.accept: auto``. Whatever the 135M model writes, nothing is accepted that does not pass: every accepted
row's program passes the problem's reference tests again when re-run in the sandbox, outside the judge, and every
rejected row's program fails them (or there is none)."""

from __future__ import annotations

import asyncio
import os

import pytest

from synth.config import EndpointConfig, JudgeStageConfig, LLMConfig, RolloutsStageConfig
from synth.judge.accept import accept
from synth.judge.code_tests import extract_code
from synth.judge.judge import judge_trajectory
from synth.llm.client import LLMPool
from synth.runtime.sandbox import check_python
from synth.schemas.records import AgentRecord, TaskRecord
from synth.sim.episode import run_episode
from synth.sim.tool_sim import RUN_PYTHON_TOOL
from synth.tasks.build import build_rubric
from synth.tasks.coding import forbidden_uses
from synth.tasks.draft import TaskDraft
from synth.tasks.rubrics import default_library

# Problems the 135M model has solved at least once in 3 tries, so that the test often also sees an acceptance; it
# asserts none. to_binary "without using bin()": the model mostly uses bin(), which passes the asserts and must
# still be rejected.
PROBLEMS = ("is_prime", "leap_year", "median", "binary")
SEEDS = (0, 1)


@pytest.mark.integration
@pytest.mark.sandbox
@pytest.mark.timeout(900)
async def test_accepted_coding_rows_really_pass_their_reference_tests(live_url: str) -> None:
    library = default_library()
    agent = AgentRecord(id="agent-code", name="coder", system_prompt="You help the team with Python.",
                        tools=[RUN_PYTHON_TOOL])
    tasks = []
    for pid in PROBLEMS:
        problem = next(p for p in library.coding_problems if p.id == pid)
        rubric, _ = build_rubric(TaskDraft(user_goal=problem.request, persona="a student"), "coding",
                                 agent.tools, library, problem)
        tasks.append(TaskRecord(id=f"task-{pid}", agent_id=agent.id, difficulty="coding", user_goal=problem.request,
                                persona="A student who writes short messages.", rubric=rubric))
    pool = LLMPool([EndpointConfig(base_url=live_url, api_key=os.environ.get("SYNTH_API_KEY", "EMPTY"))],
                   LLMConfig(max_tokens=384, temperature=0.7, timeout_s=600))
    cfg = RolloutsStageConfig(max_turns=1, max_steps=1)
    judge_cfg = JudgeStageConfig()
    try:
        pairs = [(t, s) for t in tasks for s in SEEDS]
        trajs = await asyncio.gather(*(run_episode(t, agent, pool, cfg, seed=s, free_text=True) for t, s in pairs))
        verdicts = await asyncio.gather(*(judge_trajectory(traj, t, pool, judge_cfg, seed=0)
                                          for traj, (t, _) in zip(trajs, pairs, strict=True)))
    finally:
        await pool.aclose()
    ran = accepted = errored = 0
    for traj, verdict, (task, _) in zip(trajs, verdicts, pairs, strict=True):
        if traj.error is not None:  # e.g. an empty reply: a bad row, never accepted
            errored += 1
            assert not accept(verdict, task.rubric.criteria, judge_cfg).accepted
            continue
        # The opening is the request itself, the answer plain text with no tool call.
        assert traj.messages[1].content == task.user_goal and traj.calls == []
        assert traj.messages[2].role == "assistant" and not traj.messages[2].tool_calls
        decision = accept(verdict, task.rubric.criteria, judge_cfg)
        code = extract_code(traj)
        tests = [c for c in verdict.checks if c.check_id == "python_tests"]
        assert len(tests) == 1 and verdict.verifiable, verdict.checks
        run = check_python(code, task.rubric.python_tests, timeout_s=60) if code else None
        ran += run is not None
        # Passing, re-checked by hand: every reference test held, and nothing the request rules out is used.
        problem = next(p for p in library.coding_problems if p.tests == task.rubric.python_tests)
        rerun_ok = run is not None and run.ok and not forbidden_uses(code or "", problem.forbidden)
        if decision.accepted:
            accepted += 1
            assert decision.by == "verifiable" and tests[0].passed
            assert rerun_ok, (code, run)
        elif not decision.gates:  # a quality gate (synth.judge.gates) refuses an answer whatever its code does
            assert not tests[0].passed, (code, tests[0].detail)
            assert not rerun_ok, (code, tests[0].detail)
    # The model writes code at all in most replies (docs/studies/embedded-acceptance.md: 65 of 72 hold a fenced block).
    assert errored <= len(pairs) // 4 and ran >= len(pairs) // 2, f"{errored} errored, {ran} of {len(pairs)} held code"
    print(f"{accepted} of {len(pairs)} coding episodes accepted on their reference tests; {ran} held code")
