"""One rollout episode: agent, persona user and tools talk until the user stops or a limit is hit.

Shape of the loop (Kimi K2 section 3.1): the user opens; each user turn the agent takes up to ``max_steps``
steps, every tool call answered by a tool message carrying its id, until it answers in text; then the user
replies or stops; at most ``max_turns`` user turns. An unusable model reply ends the episode as an error row
that keeps the messages so far (a bad row never kills a stage); an endpoint that is down propagates.

Tools raise plain exceptions; ``answer_call`` is the one boundary that turns whatever a tool raised into the
tool message the transcript records (``synth.tools.errors``).
"""

from __future__ import annotations

import logging
from typing import Any

import openai

from synth.agents.turn import ANY_TOOL, MAX_CALLS, Mode, agent_step
from synth.config import RolloutsStageConfig
from synth.llm.client import EndpointUnavailable, ReplyInvalid, RequestTimedOut
from synth.schemas.ids import episode_id
from synth.schemas.messages import Message, ToolCall
from synth.schemas.records import AgentRecord, RowError, TaskRecord, TrajectoryRecord
from synth.schemas.rubric import calls_expected_by_turn
from synth.schemas.usage import UsageByRole
from synth.sim.tool_sim import RUN_PYTHON, ToolHub, ToolOutcome, ToolSimulator
from synth.sim.user import UserSimulator
from synth.sim.world import WorldState, sub_seed
from synth.tools.errors import ToolError

log = logging.getLogger(__name__)

REAL_STATE_KEY = "real"
"""Key of ``final_state`` holding the real tools' state (``RealToolHub.snapshot()``) once any was called."""


def unanswered_calls(messages: list[Message]) -> list[str]:
    """Tool call ids in ``messages`` that no tool message answers (must be empty in every trajectory)."""
    answered = {m.tool_call_id for m in messages if m.role == "tool"}
    calls = [tc.id for m in messages if m.role == "assistant" for tc in m.tool_calls or []]
    return [i for i in calls if i not in answered]


def _cut_unanswered(messages: list[Message]) -> list[Message]:
    """Drop a trailing tool-call turn whose calls were not all answered (the error came mid-round)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.role == "assistant":
            if m.tool_calls and unanswered_calls(messages[i:]):
                return messages[:i]
            return messages
    return messages


MODEL_ERRORS: tuple[type[BaseException], ...] = (ReplyInvalid, RequestTimedOut, EndpointUnavailable, openai.OpenAIError)
"""What the tool simulator's model calls raise: the model failed, not the tool, so they end the row (or the stage)
as they do for the agent's and the user's calls, instead of becoming a tool message."""

TOOL_ERROR_CHARS = 1000
"""An unexpected exception's text in a tool message is cut here (a traceback-sized message helps no agent)."""


def tool_error_content(name: str, exc: BaseException) -> str:
    """The tool message for a call whose tool raised ``exc``: a ``ToolError``'s own wording (what a real server
    says), else ``Error: tool <name> failed: <Type>: <message>``."""
    if isinstance(exc, ToolError):
        return str(exc)
    return f"Error: tool {name} failed: {type(exc).__name__}: {exc}"[:TOOL_ERROR_CHARS]


async def answer_call(sim: ToolSimulator, tc: ToolCall) -> ToolOutcome:
    """The one boundary between tools and the transcript: every call gets exactly one outcome, and any exception
    its tool raised (a ``ToolError`` or anything else) becomes a well-formed tool message, recorded in
    ``sim.calls``. Only the simulator's model failures (``MODEL_ERRORS``) and cancellation pass through."""
    try:
        return await sim.call(tc)
    except MODEL_ERRORS:
        raise
    except Exception as exc:
        if not isinstance(exc, ToolError):
            # A real server that crashes or a tool with a bug is a failed call for the agent, not a failed episode.
            log.warning("tool %s raised %s: %s", tc.function.name, type(exc).__name__, exc)
        return sim.failed_call(tc, exc, tool_error_content(tc.function.name, exc))


async def _model_name(pool: Any) -> str | None:
    try:
        return await pool.model()
    except Exception:  # the name is metadata; a missing one must not fail the row
        return None


async def run_episode(
    task: TaskRecord,
    agent: AgentRecord,
    pool: Any,
    cfg: RolloutsStageConfig,
    *,
    seed: int,
    hub: ToolHub | None = None,
    tool_calling: Mode = "schema",
    free_text: bool = False,
) -> TrajectoryRecord:
    """Run one episode of ``agent`` on ``task`` and return its trajectory (``error`` set when it failed).

    ``pool`` is an ``LLMPool`` (or anything with its ``structured``/``chat``/``model``). ``hub`` serves tools
    for real (a ``RealToolHub``); calls to its tools skip simulation when ``cfg.real_exec`` is on.
    ``free_text`` (coding tasks): every agent step is a plain text answer, the program in a fenced code block
    (``agent_step(free_text=True)``), with no tool calls and no forced first call.
    Raises ``EndpointUnavailable`` when no endpoint answers.
    """
    usage = UsageByRole()
    world = WorldState(task.initial_state)
    tools = list(agent.tools)
    sim = ToolSimulator(tools, world, pool, cfg, seed=sub_seed(seed, "tools"), usage=usage, hub=hub)
    user = UserSimulator(pool, task, seed=sub_seed(seed, "user"), usage=usage)
    messages: list[Message] = [Message(role="system", content=agent.system_prompt)]
    # A coding task is about running code: its first step calls the sandbox (as a named tool_choice would),
    # so the episode always holds a real run for the judge's tests, whatever the model would have done.
    text = free_text and task.difficulty == "coding"
    first_call = (
        RUN_PYTHON
        if not text and cfg.coding_runs_code and task.difficulty == "coding"
        and RUN_PYTHON in [t["function"]["name"] for t in tools]
        else None
    )
    # A grounded task is answered by one exact call: with grounded_calls_first its first step must call a tool
    # (which one, with which arguments, stays the model's choice, and the checks hold it to the exact call).
    # A task code built (synth.tasks.kinds) says how many calls each user turn expects: the first step of a turn
    # that expects calls must call (a parallel task's step may make them all), one that expects none (no tool
    # serves the request) is never made to.
    expected = calls_expected_by_turn(task.rubric)
    if not expected and task.grounded:
        expected = {1: 1}
    forced_turns = ({t for t, n in expected.items() if n > 0}
                    if not text and tools and cfg.grounded_calls_first and first_call is None else set())
    if 1 in forced_turns:
        first_call = ANY_TOOL
    # ...and with grounded_answer_after_call the step after that call's results must answer: a grounded task
    # needs no second call, and a small model repeats its call instead of reporting the result.
    answer_step = 1 if first_call == ANY_TOOL and cfg.grounded_answer_after_call else None
    forced_answer: int | None = None
    # A conversation code scripted (follow_ups) is said to its end, whatever max_turns: the task's checks expect
    # the calls of every turn, and the script's end is the user's stop.
    scripted = task.follow_ups is not None
    turns = 0
    step = 0
    stop_reason = ""
    error: RowError | None = None
    stage = "user_sim"
    before_round = world.snapshot()
    try:
        opening = await user.reply(messages, 0)
        messages.append(Message(role="user", content=opening.message))
        turns = 1
        while True:
            answered = False
            turn_start = step
            # A turn that expects several calls in one reply may make them all, whatever max_calls_per_step.
            max_calls = min(MAX_CALLS, max(cfg.max_calls_per_step, expected.get(turns, 0)))
            for _ in range(cfg.max_steps):
                stage = "agent"
                must_answer = step == answer_step
                require = first_call if step == 0 else (ANY_TOOL if step == turn_start and turns in forced_turns
                                                        else None)
                msg, _raw = await agent_step(pool, messages, tools, seed=sub_seed(seed, "agent", step),
                                             usage=usage, mode=tool_calling, require_tool=require, free_text=text,
                                             max_calls=max_calls, answer_only=must_answer,
                                             bad_words=cfg.answer_bad_words)
                if require == ANY_TOOL and step > 0 and cfg.grounded_answer_after_call:
                    answer_step = step + 1
                if must_answer and forced_answer is None:
                    forced_answer = step
                step += 1
                messages.append(msg)
                if not msg.tool_calls:
                    answered = True
                    break
                stage = "tool_sim"
                before_round = world.snapshot()
                for tc in msg.tool_calls:
                    outcome = await answer_call(sim, tc)
                    messages.append(Message(role="tool", tool_call_id=tc.id, content=outcome.content))
            if not answered:
                stop_reason = "max_steps"
                if cfg.final_answer:
                    # A small agent calls the same tool until the step limit and never answers; one more step
                    # that may only answer gets the answer, and the loop it made stays for the checks to judge.
                    # (Free text was tried first: the 135M wrote its answer as a JSON call, copying the transcript.)
                    stage = "agent"
                    # (A free-text episode never gets here: its steps call no tool.)
                    msg, _raw = await agent_step(pool, messages, tools, seed=sub_seed(seed, "agent", step),
                                                 usage=usage, mode=tool_calling, answer_only=True,
                                                 bad_words=cfg.answer_bad_words)
                    step += 1
                    messages.append(msg)
                break
            if turns >= cfg.max_turns and not scripted:
                stop_reason = "max_turns"
                break
            stage = "user_sim"
            reply = await user.reply(messages, turns)
            if reply.stop:
                stop_reason = "user_stop"
                break
            messages.append(Message(role="user", content=reply.message))
            turns += 1
    except ReplyInvalid as exc:
        error = RowError(kind=exc.kind, message=f"{stage}: {exc}", raw=exc.raw)
    except openai.BadRequestError as exc:
        # Usually the conversation outgrew the context window: this row is lost, the stage goes on.
        error = RowError(kind="request", message=f"{stage}: {exc}"[:2000])
    if error is not None:
        stop_reason = "error"
        if stage == "tool_sim":
            # The round that failed is cut from the messages below, so its effects go too.
            world.restore(before_round)
    messages = _cut_unanswered(messages)
    final_state = world.snapshot()
    if hub is not None and cfg.real_exec and any(c.mode == "real" for c in sim.calls):
        # The judge's state checks see the real servers' world (files, memory graph, git) next to the
        # simulated one; asnapshot asks a running memory server instead of reading its file.
        asnapshot = getattr(hub, "asnapshot", None)
        try:
            real = await asnapshot() if asnapshot is not None else hub.snapshot()
        except Exception as exc:  # a broken real world is recorded, not fatal to the row
            log.warning("real tools' snapshot failed: %s", exc)
            real = {"error": f"{type(exc).__name__}: {exc}"}
        final_state = {**final_state, REAL_STATE_KEY: real}
    return TrajectoryRecord(
        id=episode_id(task.id, agent.id, seed, tool_calling),
        seed=seed,
        error=error,
        usage=usage,
        model=await _model_name(pool),
        task_id=task.id,
        agent_id=agent.id,
        messages=messages,
        tools=tools,
        calls=[c for c in sim.calls if any(m.tool_call_id == c.tool_call_id for m in messages)],
        final_state=final_state,
        turns=turns,
        stop_reason=stop_reason,
        required_first_call=first_call,
        forced_answer_step=forced_answer,
    )
