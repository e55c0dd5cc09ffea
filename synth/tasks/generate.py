"""The tasks stage's unit of work: one agent, one difficulty -> one task with its rubric.

A reply that does not validate, or names something the agent does not have, becomes a task row with
``error`` set and the raw output kept: a bad row is counted, never raised. An endpoint that does not answer at
all (``EndpointUnavailable``) does propagate, since that is not the row's fault and the stage should stop and
resume later rather than write a stage's worth of error rows.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Literal

import openai

from synth.llm.client import LLMPool, ReplyInvalid
from synth.prompts import render
from synth.schemas import ids
from synth.schemas.ids import stable_id
from synth.schemas.records import AgentRecord, Difficulty, RowError, TaskRecord
from synth.schemas.rubric import Rubric
from synth.schemas.usage import UsageByRole
from synth.sim.tool_sim import RUN_PYTHON
from synth.tasks.build import DraftInvalid, build_rubric, tool_index
from synth.tasks.draft import ExpectedCall, TaskDraft, draft_json_schema
from synth.tasks.grounded import code_opening, ground_call, state_values
from synth.tasks.kinds import Built, Reworded, build, code_kind, reword_ok, tools_of
from synth.tasks.phrasing import Said
from synth.tasks.rubrics import RubricLibrary, default_library

log = logging.getLogger(__name__)

# Enough for every bounded field of TaskDraft and a modest initial_state; more only lets a small model ramble.
GENERATOR_MAX_TOKENS = 1024
DRAFT_ATTEMPTS = 2


def task_id(agent: AgentRecord, index: int, difficulty: str, seed: int) -> str:
    return ids.task_id(agent.id, index, difficulty, seed)


def sample_seed(agent_id: str, index: int, difficulty: str, seed: int) -> int:
    """A per-task sampling seed, so two tasks of one agent with the same prompt still differ."""
    return int(stable_id("seed", agent_id, index, difficulty, seed).split("-")[1][:8], 16)


def _tools_for_prompt(agent: AgentRecord) -> list[dict[str, Any]]:
    out = []
    for tool in agent.tools:
        fn = tool.get("function", tool)
        out.append(
            {
                "name": fn.get("name", ""),
                "description": fn.get("description", ""),
                "parameters": fn.get("parameters", {}),
            }
        )
    return out


async def generate_task(
    agent: AgentRecord,
    difficulty: Difficulty,
    pool: LLMPool,
    *,
    seed: int,
    index: int,
    usage: UsageByRole | None = None,
    library: RubricLibrary | None = None,
    grounded_opening: Literal["generated", "code"] = "generated",
    grounded_draft: Literal["generated", "code"] = "generated",
    reword: float = 0.0,
) -> TaskRecord:
    """Ask the generator for one task of ``difficulty`` for ``agent`` and attach its rubric; a kind code builds
    (synth.tasks.kinds) is built by ``kind_task`` instead, ``reword`` the share of them the generator rewords.

    ``grounded_opening``: for a grounded task, the user's opening is the generator's request with the values added
    (generated) or written by code from the tool's description (code; see synth.tasks.grounded.code_opening).
    ``grounded_draft="code"`` (with a code opening): a grounded task is built with no generator call at all
    (``_code_task``); a task code cannot ground still asks the generator."""
    library = library or default_library()
    if code_kind(difficulty) is not None:
        return await kind_task(agent, difficulty, pool, seed=seed, index=index, usage=usage, library=library,
                               reword=reword)
    template = library.template(difficulty)
    tools = _tools_for_prompt(agent)
    names = [t["name"] for t in tools if t["name"]]
    min_calls = template.calls.min if names else 0
    row_usage = UsageByRole()
    row = TaskRecord(
        id=task_id(agent, index, difficulty, seed),
        seed=seed,
        agent_id=agent.id,
        difficulty=difficulty,
    )
    # Coding tasks are written around a seed problem whose reference tests the judge runs (synth.tasks.coding).
    problem = (
        library.coding_problem(sample_seed(agent.id, index, difficulty, seed))
        if "python_tests" in template.checks
        else None
    )
    # A grounded task's call is chosen by code before the generator writes a word, so the request is written
    # around values the check will hold the agent to (synth.tasks.grounded). No tool code can fill: ungrounded.
    grounded: ExpectedCall | None = None
    task_seed = sample_seed(agent.id, index, difficulty, seed)
    if template.grounded and problem is None:
        rng = random.Random(task_seed)
        picked = ground_call(tool_index(agent.tools), rng, exclude=frozenset({RUN_PYTHON}))
        grounded = ExpectedCall(name=picked[0], arguments=picked[1]) if picked else None
    if grounded is not None and grounded_opening == "code" and grounded_draft == "code":
        return await _code_task(row, agent, grounded, tools, library, pool, task_seed)
    variables = {
        "agent": agent,
        "grounded": grounded,
        "tools": tools,
        "difficulty": difficulty,
        "template": template,
        "index": index,
        "problem": problem,
    }
    messages = [
        {"role": "system", "content": render("task_gen", part="system", **variables)},
        {"role": "user", "content": render("task_gen", part="user", **variables)},
    ]
    # A draft the model wrote in the right shape can still be unusable (an empty goal, an unknown
    # tool): one fresh sample, like the LLM layer's retry for replies that do not fit the schema.
    for attempt in range(DRAFT_ATTEMPTS):
        row.error = None
        try:
            draft = await pool.structured(
                messages,
                TaskDraft,
                role="generator",
                seed=sample_seed(agent.id, index, difficulty, seed) + 7919 * attempt,
                usage=row_usage,
                json_schema=draft_json_schema(
                    tool_index(agent.tools),
                    min_calls,
                    template.calls.max,
                    min_hidden=template.min_hidden_details,
                    world=problem is None,
                    grounded=grounded is not None,
                ),
                max_tokens=GENERATOR_MAX_TOKENS,
            )
            rubric, notes = build_rubric(draft, difficulty, agent.tools, library, problem, grounded)
        except ReplyInvalid as exc:
            row.error = RowError(kind=exc.kind, message=str(exc), raw=exc.raw)
            break  # the pool already re-sampled this one
        except openai.BadRequestError as exc:
            # e.g. a toolset whose prompt does not fit the context: this row's problem, not the stage's.
            row.error = RowError(kind="request", message=f"generator request rejected: {exc}")
            break
        except DraftInvalid as exc:
            row.error = RowError(kind="validation", message=f"TaskDraft: {exc}", raw=draft.model_dump_json())
        else:
            break
    if row.error is None:
        row.user_goal = draft.user_goal.strip()
        if problem is not None:
            # The user asks for exactly what the tests check: the problem's request word for word (the user
            # simulator opens with it). A generator's rewording drops details the tests hold to ("joined by
            # single spaces") or the function's name; the draft still gives the persona and the criteria.
            row.user_goal = problem.request
        if grounded is not None:
            # The user states every value the call check asks for, word for word: the opening is code's.
            if grounded_opening == "code":
                row.user_goal = _code_opening(grounded, tools, task_seed)
            else:
                row.user_goal = state_values(row.user_goal, grounded.arguments)
            row.opening = row.user_goal
        row.persona = draft.persona.strip()
        row.hidden_details = {d.key: d.value for d in draft.hidden_details if d.key.strip()}
        row.initial_state = draft.initial_state
        row.rubric = rubric
        for note in notes:
            log.info("task %s: %s", row.id, note)
    row.usage = row_usage
    if usage is not None:
        usage.merge(row_usage)
    row.model = await pool.model()
    return row


CODE_PERSONA = "A user who writes short, plain requests and gives every detail up front."
"""The persona of a task code wrote: its user states everything in the opening, so nothing else is needed."""


def _code_opening(grounded: ExpectedCall, tools: list[dict[str, Any]], seed: int) -> str:
    rng = random.Random(seed + 1)
    description = next((t["description"] or "" for t in tools if t["name"] == grounded.name), "")
    return code_opening(description, grounded.arguments, rng)


async def _code_task(row: TaskRecord, agent: AgentRecord, grounded: ExpectedCall, tools: list[dict[str, Any]],
                     library: RubricLibrary, pool: LLMPool, seed: int) -> TaskRecord:
    """A grounded task with no generator call (so no usage to record): code's opening, CODE_PERSONA, an empty
    world, the template's criteria and the exact-call checks (build_rubric, as for a generated draft)."""
    opening = _code_opening(grounded, tools, seed)
    row.rubric, notes = build_rubric(TaskDraft(user_goal=opening, persona=CODE_PERSONA), row.difficulty, agent.tools,
                                     library, None, grounded)
    row.user_goal = row.opening = opening
    row.persona = CODE_PERSONA
    for note in notes:
        log.info("task %s: %s", row.id, note)
    row.model = await pool.model()
    return row


REWORD_MAX_TOKENS = 160
"""A request of one or two sentences: more only lets a small model ramble."""


async def kind_task(agent: AgentRecord, kind: str, pool: LLMPool, *, seed: int, index: int,
                    usage: UsageByRole | None = None, library: RubricLibrary | None = None,
                    reword: float = 0.0) -> TaskRecord:
    """A task of a kind code builds (synth.tasks.kinds): code's request, scripted follow-ups (the user ends the
    episode after them), the template's criteria and the kind's checks; no generator call unless the request is
    reworded (a ``reword`` share of them), and a rewording code cannot read every value back from is dropped."""
    library = library or default_library()
    task_seed = sample_seed(agent.id, index, kind, seed)
    row = TaskRecord(id=task_id(agent, index, kind, seed), seed=seed, agent_id=agent.id, difficulty=kind)  # type: ignore[arg-type]
    built = build(agent, kind, task_seed)
    if built is None:
        row.error = RowError(kind="validation", message=f"{kind}: code cannot build this kind of task for agent "
                             f"{agent.id} (its tools: {[t.name for t in tools_of(agent)]})")
        row.model = await pool.model()
        return row
    row_usage = UsageByRole()
    opening = built.opening
    if built.calls and random.Random(task_seed + 2).random() < reword:
        opening = await _reworded(built, library.template(kind).description, [t.name for t in tools_of(agent)],
                                  pool, task_seed, row_usage) or opening
    row.user_goal = row.opening = opening.text
    row.follow_ups = [f.text for f in built.follow_ups]
    row.persona = CODE_PERSONA
    row.rubric = Rubric(criteria=library.base_criteria(kind), checks=built.checks)
    row.usage = row_usage
    if usage is not None:
        usage.merge(row_usage)
    row.model = await pool.model()
    return row


async def _reworded(built: Built, description: str, tool_names: list[str], pool: LLMPool, seed: int,
                    usage: UsageByRole) -> Said | None:
    said = built.opening
    messages = [
        {"role": "system", "content": render("task_gen", part="reword_system")},
        {"role": "user", "content": render("task_gen", part="reword_user", request=said.text,
                                           values=list(dict.fromkeys(said.surfaces)), kind=description)},
    ]
    try:
        reply = await pool.structured(messages, Reworded, role="generator", seed=seed + 3, usage=usage,
                                      max_tokens=REWORD_MAX_TOKENS)
    except (ReplyInvalid, openai.BadRequestError) as exc:
        log.info("rewording refused (%s): code's wording stays", exc)
        return None
    text = " ".join(reply.request.split())
    if not reword_ok(text, said, tool_names):
        log.info("rewording %r loses a value or names a tool: code's wording stays", text)
        return None
    return Said(text, said.surfaces)
