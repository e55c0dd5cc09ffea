"""Task kinds code builds: every value can be read back from the request, the checks pass a correct episode and
fail the usual wrong ones, the wording varies, and the same seed builds the same task."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from typing import Any

import pytest

from synth.config import ConfigError, load_config
from synth.judge.checks import run_checks, typed_match
from synth.judge.judge import verifies_outcome
from synth.schemas.records import AgentRecord, TaskRecord
from synth.schemas.rubric import Rubric, calls_expected_by_turn
from synth.stages.tasks import KindDealer
from synth.tasks import generate_task
from synth.tasks.kinds import KIND_NAMES, KINDS, UnknownTaskKind, build, can_build, check_kind
from synth.tasks.offdomain import REQUESTS, requests_for
from synth.tasks.phrasing import ask_phrase
from synth.text import mentions
from tests.fixtures.fakes import ScriptedPool
from tests.fixtures.kinds import COMPARE, ONE_TOOL, ROUTE, SHIP, TIMER, TRAVEL, WEATHER, episode, tool

UNITS = {"delay_minutes": "minutes"}
"""The unit of each fixture parameter whose value a request may say converted (60 minutes as "1 hour")."""


def _leaves(args: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in args.items():
        if isinstance(value, dict):
            out += _leaves(value)
        elif isinstance(value, list):
            for item in value:
                out += _leaves(item) if isinstance(item, dict) else [(key, item)]
        else:
            out.append((key, value))
    return out


def _read_back(text: str, key: str, value: Any) -> bool:
    """Whether ``text`` states ``value`` of parameter ``key``: word for word, or in a form that converts to
    exactly it (read independently of the code under test)."""
    if isinstance(value, bool):
        return mentions(text, key.replace("_", " "))  # said as "avoid hills: no", "with avoid hills on"
    if mentions(text, value):
        return True
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        day = dt.date.fromisoformat(value)
        return any(mentions(text, f) for f in (f"{day:%B} {day.day}, {day.year}", f"{day.day} {day:%B} {day.year}"))
    if UNITS.get(key) == "minutes" and isinstance(value, int) and value % 60 == 0:
        hours = value // 60
        return mentions(text, f"{hours} hour{'s' if hours > 1 else ''}")
    return False


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_value_of_every_expected_call_is_in_the_request(kind: str) -> None:
    built_any = 0
    for seed in range(60):
        built = build(TRAVEL, kind, seed)
        assert built is not None and built.kind == kind
        built_any += 1
        text = " ".join([built.opening.text, *(f.text for f in built.follow_ups)])
        assert all(mentions(text, s) for s in built.surfaces())
        for call in built.calls:
            assert call.name in {t["function"]["name"] for t in TRAVEL.tools}
            for key, value in _leaves(call.arguments):
                assert _read_back(text, key, value), (kind, seed, key, value, text)
        # No tool name is said: picking the tool is the agent's part.
        assert not any(mentions(text, t["function"]["name"]) for t in TRAVEL.tools)
    assert built_any == 60


def test_values_come_in_the_forms_users_write() -> None:
    texts = {k: [build(TRAVEL, k, s) for s in range(150)] for k in ("single", "parallel", "follow_up")}
    singles = [b for b in texts["single"] if b is not None]
    said = " || ".join(b.opening.text for b in singles)
    assert re.search(r"\d+(\.\d)? (km|mi)\b", said), "a distance with its unit (the unit argument said with it)"
    assert re.search(r"\b\d+ hours?\b", said), "a whole number of hours for a delay in minutes"
    assert re.search(r"[A-Z][a-z]+, [A-Z][a-z]+,? and [A-Z][a-z]+", said), "a list of three cities"
    assert re.search(r"city [A-Z][a-z]+.{0,20}zip", said), "an object's fields"
    assert re.search(r"(January|February|March|April|May|June|July|August|September|October|November|December)",
                     said), "a date written out"
    several = [b for b in singles if len(_leaves(b.calls[0].arguments)) >= 3]
    assert len(several) > 30, "several values in one sentence"
    units = [b for b in singles if b.calls[0].name == "plan_route"]
    assert units and all(isinstance(b.calls[0].arguments["distance"], int | float) for b in units)


def test_phrasings_vary_over_200_single_tasks() -> None:
    """With values masked, 200 requests for one tool take many sentence shapes, none of them common."""
    for fixed in (WEATHER, COMPARE, SHIP):
        agent = AgentRecord(id="a", tools=[fixed])
        shapes: Counter[str] = Counter()
        for seed in range(200):
            built = build(agent, "single", seed)
            assert built is not None
            text = built.opening.text
            for surface in sorted(set(built.opening.surfaces), key=len, reverse=True):
                text = re.sub(re.escape(surface), "<v>", text, flags=re.IGNORECASE)
            shapes[text] += 1
        assert len(shapes) >= 100, (fixed["function"]["name"], len(shapes))
        assert shapes.most_common(1)[0][1] <= 10, shapes.most_common(3)


def test_the_same_seed_builds_the_same_task() -> None:
    for kind in KINDS:
        a, b = build(TRAVEL, kind, 7), build(TRAVEL, kind, 7)
        assert a is not None and b is not None
        assert (a.opening, a.follow_ups, a.checks, a.calls) == (b.opening, b.follow_ups, b.checks, b.calls)
    openings = {build(TRAVEL, "single", s).opening.text for s in range(20)}  # type: ignore[union-attr]
    assert len(openings) == 20


def test_unknown_kinds_are_refused_with_the_valid_list() -> None:
    with pytest.raises(UnknownTaskKind, match="valid kinds: single, choose, parallel, no_tool, follow_up"):
        check_kind("sinlge")
    assert check_kind("single_call") == "single_call" and "coding" in KIND_NAMES
    with pytest.raises(ConfigError, match=r"unknown task kind\(s\) \['sinlge'\]; valid kinds: single"):
        load_config(overrides=["tasks.kinds={sinlge: 1}"])
    with pytest.raises(ConfigError, match="at least one above 0"):
        load_config(overrides=["tasks.kinds={single: 0}"])
    # The older list is read as equal weights.
    assert load_config(overrides=["tasks.difficulties=[single_call, no_tool]"]).tasks.kinds == {
        "single_call": 1.0, "no_tool": 1.0}


def test_default_mix_holds_every_kind_code_builds() -> None:
    for path in (None, "pipelines/data_value.yaml"):
        kinds = load_config(path).tasks.kinds
        assert {k for k, w in kinds.items() if w > 0} >= set(KINDS), path


# ---- checks on trajectories ------------------------------------------------------------------------------------

def _rubric(kind: str, seed: int = 3) -> tuple[Rubric, Any]:
    built = build(TRAVEL, kind, seed)
    assert built is not None
    return Rubric(criteria=[], checks=built.checks), built


def _passed(rubric: Rubric, traj: Any) -> dict[str, bool]:
    return {r.check_id: r.passed for r in run_checks(traj, rubric)}


def _flip_type(args: dict[str, Any]) -> dict[str, Any]:
    """The same values with one in the wrong JSON type (a number as a string, a string as a number)."""
    out = dict(args)
    for key, value in args.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
            return out
        if isinstance(value, int | float):
            out[key] = str(value)
            return out
    key = next(iter(args))
    out[key] = [args[key]]
    return out


def test_single_and_choose_checks() -> None:
    for kind in ("single", "choose"):
        rubric, built = _rubric(kind)
        call = built.calls[0]
        right = episode(("req", [[(call.name, call.arguments)]], "It will be 21 degrees."))
        assert all(_passed(rubric, right).values()), _passed(rubric, right)
        other = next(t["function"]["name"] for t in TRAVEL.tools if t["function"]["name"] != call.name)
        wrong_tool = episode(("req", [[(other, call.arguments)]], "It will be 21 degrees."))
        assert not _passed(rubric, wrong_tool)["call_1_" + call.name]
        wrong_type = episode(("req", [[(call.name, _flip_type(call.arguments))]], "It will be 21 degrees."))
        assert not _passed(rubric, wrong_type)["call_1_" + call.name]
        no_call = episode(("req", [], "It will be 21 degrees."))
        assert not all(_passed(rubric, no_call).values())
    # choose: the right call beside a call to another tool fails "no other tool".
    rubric, built = _rubric("choose")
    call = built.calls[0]
    other = next(t["function"]["name"] for t in TRAVEL.tools if t["function"]["name"] != call.name)
    extra = episode(("req", [[(call.name, call.arguments), (other, {})]], "It will be 21 degrees."))
    result = _passed(rubric, extra)
    assert result["call_1_" + call.name] and not result["only_needed_tools"]


def test_parallel_checks_want_every_call_in_one_reply() -> None:
    for seed in range(6):
        rubric, built = _rubric("parallel", seed)
        calls = [(c.name, c.arguments) for c in built.calls]
        assert len(calls) >= 2
        right = episode(("req", [calls], "Done: 21 and 21."))
        assert all(_passed(rubric, right).values()), _passed(rubric, right)
        one_at_a_time = episode(("req", [[c] for c in calls], "Done: 21 and 21."))
        assert not _passed(rubric, one_at_a_time)["calls_in_one_reply"]
        only_one = episode(("req", [calls[:1]], "Done: 21."))
        assert not _passed(rubric, only_one)["calls_in_one_reply"]
        typed = episode(("req", [[(calls[0][0], _flip_type(calls[0][1])), *calls[1:]]], "Done."))
        assert not _passed(rubric, typed)["calls_in_one_reply"]


def test_no_tool_checks_want_an_answer_and_no_call() -> None:
    rubric, built = _rubric("no_tool")
    assert built.calls == [] and not built.follow_ups
    topic = rubric.checks[0].value[0]
    answered = episode((built.opening.text, [], f"Good question: the {topic} part is what matters most here."))
    assert all(_passed(rubric, answered).values())
    declined = episode((built.opening.text, [], "Sorry, I can't help with that: my tools plan trips."))
    assert all(_passed(rubric, declined).values())
    called = episode((built.opening.text, [[("get_weather", {"city": "Lisbon", "date": "2026-03-05"})]],
                      f"The {topic} is 21 degrees."))
    assert not any(_passed(rubric, called).values())
    # No answer, digits, junk, a sentence about something else, the request said back: no answer to it.
    for junk in ("", "42.", None, "aecopcahc", "Their favourite toy is a red ball.", f"{topic}}}{{needle{{#1}}fuse",
                 built.opening.text):
        assert not any(_passed(rubric, episode((built.opening.text, [], junk))).values()), junk
    assert verifies_outcome(rubric)


def test_follow_up_checks_hold_each_call_to_its_turn() -> None:
    for seed in range(6):
        rubric, built = _rubric("follow_up", seed)
        (first, second), follow = built.calls, built.follow_ups[0].text
        right = episode(("req", [[(first.name, first.arguments)]], "21 there."),
                        (follow, [[(second.name, second.arguments)]], "And 21 there."))
        assert all(_passed(rubric, right).values()), _passed(rubric, right)
        # Both calls before the follow-up was said: the second answers nothing yet.
        early = episode(("req", [[(first.name, first.arguments), (second.name, second.arguments)]], "21."),
                        (follow, [], "Already done."))
        assert not _passed(rubric, early)["call_2_" + second.name]
        # The follow-up answered with the first call's values again.
        again = episode(("req", [[(first.name, first.arguments)]], "21 there."),
                        (follow, [[(first.name, first.arguments)]], "21 again."))
        assert not _passed(rubric, again)["call_2_" + second.name]
        assert calls_expected_by_turn(rubric) == {1: 1, 2: 1}


def test_typed_match_is_strict_on_types_and_loose_on_order_and_forms() -> None:
    assert typed_match({"n": 3}, {"n": 3.0, "extra": 1})
    assert not typed_match({"n": 3}, {"n": "3"})
    assert not typed_match({"on": True}, {"on": "true"}) and not typed_match({"n": 1}, {"n": True})
    assert typed_match(["Lisbon", "Osaka"], ["osaka", "Lisbon"]) and not typed_match(["Lisbon"], ["Lisbon", "Osaka"])
    assert typed_match({"a": {"city": "Porto"}}, {"a": {"city": "porto", "zip": "1"}})
    assert typed_match("2026-03-05T09:00", "2026-03-05T09:00:00")
    assert not typed_match("2026-03-05", "2026-03-05T00:00") and not typed_match("2026-03-05T09:00", "2026-03-05T10:00")


# ---- kinds an agent can do, and the mix ------------------------------------------------------------------------

def test_an_agent_gets_only_kinds_code_can_build_for_it() -> None:
    assert not can_build(ONE_TOOL, "choose") and can_build(TRAVEL, "choose")
    assert can_build(ONE_TOOL, "parallel") and can_build(ONE_TOOL, "follow_up")  # one tool, another value
    prose = AgentRecord(id="p", tools=[tool("send_note", "Send a note.", {"body": {"type": "object"}}, ["body"])])
    assert not any(can_build(prose, k) for k in ("single", "choose", "parallel", "follow_up"))
    assert can_build(prose, "no_tool") and can_build(prose, "multi_call")


def test_no_tool_requests_are_none_the_toolset_serves() -> None:
    recipes = [tool("find_recipe", "Search recipes by ingredient.", {"q": {"type": "string"}}, ["q"])]
    assert not any(r.topic == "cooking" for r in requests_for(recipes))
    search = [tool("web_search", "Search the web.", {"q": {"type": "string"}}, ["q"])]
    assert requests_for(search) and not any(r.knowledge for r in requests_for(search))
    chat = [tool("chat_completion", "Send a prompt to a language model.", {"prompt": {"type": "string"}},
                 ["prompt"])]
    assert requests_for(chat) == [] and not can_build(AgentRecord(id="c", tools=chat), "no_tool")
    assert len(requests_for(TRAVEL.tools, TRAVEL.domain)) < len(REQUESTS)  # nothing about camping trips


def test_kinds_are_dealt_by_weight_and_skip_what_an_agent_cannot_do() -> None:
    dealer = KindDealer({"single": 2, "choose": 1, "no_tool": 1})
    got = [dealer.deal(["single", "choose", "no_tool"]) for _ in range(8)]
    assert Counter(got) == {"single": 4, "choose": 2, "no_tool": 2} and set(got[:3]) == {"single", "choose",
                                                                                         "no_tool"}
    dealer = KindDealer({"single": 1, "choose": 1})
    assert [dealer.deal(["single"]) for _ in range(2)] == ["single", "single"]
    assert dealer.deal(["single", "choose"]) == "choose"  # its turn was kept for an agent that can
    assert dealer.deal([]) is None


def test_verb_phrases_from_descriptions() -> None:
    assert ask_phrase("Returns the weather for a city.", "w") == "return the weather for a city"
    assert ask_phrase("Performs a web search using DuckDuckGo.", "s") == "perform a web search using DuckDuckGo"
    assert ask_phrase("Use this tool to list open tickets.", "t") == "list open tickets"
    assert ask_phrase("Current weather for a city.", "w") == "get current weather for a city"
    assert ask_phrase("", "getStockPrice") == "get stock price"


# ---- the tasks stage's row -------------------------------------------------------------------------------------

async def test_a_kind_task_row_is_code_s_with_no_generator_call() -> None:
    pool = ScriptedPool([])
    row = await generate_task(TRAVEL, "follow_up", pool, seed=5, index=1)  # type: ignore[arg-type]
    assert row.error is None and pool.calls == [] and row.difficulty == "follow_up"
    assert row.opening == row.user_goal and row.follow_ups and len(row.follow_ups) == 1
    assert row.rubric is not None and verifies_outcome(row.rubric) and row.rubric.criteria
    assert {c.kind for c in row.rubric.checks} >= {"call_made_with", "calls_at_most"}
    again = await generate_task(TRAVEL, "follow_up", ScriptedPool([]), seed=5, index=1)  # type: ignore[arg-type]
    assert again.model_dump(exclude={"usage"}) == row.model_dump(exclude={"usage"})
    lone = await generate_task(ONE_TOOL, "choose", ScriptedPool([]), seed=5, index=1)  # type: ignore[arg-type]
    assert lone.error is not None and "cannot build" in lone.error.message


async def test_a_rewording_is_kept_only_when_every_value_survives() -> None:
    task = await generate_task(TRAVEL, "single", ScriptedPool([]), seed=1, index=0)  # type: ignore[arg-type]
    built = build(TRAVEL, "single", _task_seed(task))
    assert built is not None
    values = list(dict.fromkeys(built.opening.surfaces))
    keeps = "Hey there, " + " and ".join(values) + " - that is what I need, could you sort it out?"
    drops = "Hey there, could you sort this out for me today please?"
    named = "Please use " + built.calls[0].name + " with " + " and ".join(values) + " for me."
    rambles = built.opening.text + " The request includes 2 supports."  # a copy, a new number, an echo
    invents = "Hey there, " + " and ".join(values) + ", and make it 12345 times."
    for reply, kept in ((keeps, True), (drops, False), (named, False), (rambles, False), (invents, False)):
        pool = ScriptedPool([{"request": reply}])
        row = await generate_task(TRAVEL, "single", pool, seed=1, index=0, reword=1.0)  # type: ignore[arg-type]
        assert len(pool.calls) == 1 and pool.calls[0]["role"] == "generator"
        assert (row.opening == reply) is kept, (reply, row.opening)
        assert row.opening == reply or row.opening == task.opening


def _task_seed(task: TaskRecord) -> int:
    from synth.tasks.generate import sample_seed

    return sample_seed(task.agent_id, 0, "single", task.seed)


def test_fixture_tools_are_all_groundable() -> None:
    from synth.tasks.kinds import groundable

    assert {t.name for t in groundable(TRAVEL)} == {t["function"]["name"] for t in (WEATHER, ROUTE, TIMER, COMPARE,
                                                                                    SHIP)}
