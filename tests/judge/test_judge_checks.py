"""Code checks on hand-made trajectories: each kind must pass where it should and fail, with a reason, where not."""

from synth.judge.checks import final_answer, run_check, run_checks, values_match
from synth.schemas.messages import Message
from synth.schemas.records import CallRecord
from synth.schemas.rubric import CodeCheck, Criterion, Rubric
from tests.fixtures.judge import call, weather_trajectory


def check(**fields) -> CodeCheck:
    return CodeCheck(id="c", **fields)


def test_tool_called_passes_and_fails_with_what_was_called() -> None:
    traj = weather_trajectory()
    assert run_check(check(kind="tool_called", tool="get_weather"), traj).passed
    result = run_check(check(kind="tool_called", tool="set_alert"), traj)
    assert not result.passed
    assert "set_alert was never called" in result.detail and "get_weather" in result.detail


def test_tool_called_with_matches_a_subset_leniently() -> None:
    traj = weather_trajectory(
        messages=[
            Message(role="user", content="Weather in Paris in F?"),
            Message(
                role="assistant",
                tool_calls=[call("c1", "get_weather", {"city": " paris ", "units": "F", "days": 3})],
            ),
            Message(role="tool", tool_call_id="c1", content="{}"),
            Message(role="assistant", content="Done."),
        ],
        calls=[CallRecord(tool_call_id="c1", name="get_weather", mode="simulated")],
    )
    assert run_check(
        check(kind="tool_called_with", tool="get_weather", arguments={"city": "Paris"}), traj
    ).passed
    assert run_check(check(kind="tool_called_with", tool="get_weather", arguments={"days": 3.0}), traj).passed
    assert run_check(check(kind="tool_called_with", tool="get_weather", arguments={"days": "3"}), traj).passed


def test_tool_called_with_fails_on_other_values_and_says_what_the_calls_had() -> None:
    traj = weather_trajectory()
    result = run_check(check(kind="tool_called_with", tool="get_weather", arguments={"city": "Berlin"}), traj)
    assert not result.passed
    assert "Berlin" in result.detail and "Paris" in result.detail
    missing_key = run_check(
        check(kind="tool_called_with", tool="get_weather", arguments={"units": "C"}), traj
    )
    assert not missing_key.passed


def test_tool_called_with_fails_on_arguments_that_are_not_json() -> None:
    traj = weather_trajectory(
        messages=[
            Message(role="user", content="Paris?"),
            Message(role="assistant", tool_calls=[call("c1", "get_weather", "{city: Paris")]),
            Message(role="assistant", content="Sunny."),
        ],
        calls=[CallRecord(tool_call_id="c1", name="get_weather", mode="schema_error", ok=False)],
    )
    result = run_check(check(kind="tool_called_with", tool="get_weather", arguments={"city": "Paris"}), traj)
    assert not result.passed and "not a JSON object" in result.detail


def test_require_ok_counts_only_calls_that_succeeded() -> None:
    failed_once = weather_trajectory(
        messages=[
            Message(role="user", content="Paris?"),
            Message(role="assistant", tool_calls=[call("c1", "get_weather", {"city": "Paris"})]),
            Message(role="tool", tool_call_id="c1", content="error: timeout"),
            Message(role="assistant", content="The weather service timed out."),
        ],
        calls=[
            CallRecord(tool_call_id="c1", name="get_weather", mode="simulated", injected="timeout", ok=False)
        ],
    )
    strict = check(kind="tool_called_with", tool="get_weather", arguments={"city": "Paris"}, require_ok=True)
    result = run_check(strict, failed_once)
    assert not result.passed and "1 call(s) to it failed" in result.detail
    assert run_check(strict.model_copy(update={"require_ok": False}), failed_once).passed

    recovered = failed_once.model_copy(deep=True)
    recovered.messages[-1:] = [
        Message(role="assistant", tool_calls=[call("c2", "get_weather", {"city": "Paris"})]),
        Message(role="tool", tool_call_id="c2", content='{"temp_c": 18}'),
        Message(role="assistant", content="After a retry: 18°C in Paris."),
    ]
    recovered.calls.append(CallRecord(tool_call_id="c2", name="get_weather", mode="simulated"))
    assert run_check(strict, recovered).passed
    assert run_check(check(kind="tool_called", tool="get_weather", require_ok=True), recovered).passed


def test_no_tool_called() -> None:
    refused = weather_trajectory(
        messages=[
            Message(role="user", content="Hack my neighbour's wifi."),
            Message(role="assistant", content="I can't help with that."),
        ],
        calls=[],
    )
    assert run_check(check(kind="no_tool_called"), refused).passed
    result = run_check(check(kind="no_tool_called"), weather_trajectory())
    assert not result.passed and "get_weather" in result.detail
    # With a tool named, only that tool is forbidden.
    assert run_check(check(kind="no_tool_called", tool="delete_city"), weather_trajectory()).passed


def test_state_equals_reads_a_json_pointer() -> None:
    traj = weather_trajectory(final_state={"alerts": [{"city": "Paris", "on": True}], "count": 1})
    assert run_check(check(kind="state_equals", path="/alerts/0/city", value="paris"), traj).passed
    assert run_check(check(kind="state_equals", path="/alerts/0/on", value=True), traj).passed
    assert run_check(check(kind="state_equals", path="/count", value=1.0), traj).passed
    assert run_check(
        check(kind="state_equals", path="/alerts/0", value={"city": "Paris", "on": True}), traj
    ).passed


def test_state_equals_fails_on_other_value_and_missing_path() -> None:
    traj = weather_trajectory(final_state={"alerts": [{"city": "Paris", "on": True}]})
    wrong = run_check(check(kind="state_equals", path="/alerts/0/on", value=False), traj)
    assert not wrong.passed and "expected false" in wrong.detail
    missing = run_check(check(kind="state_equals", path="/alerts/3/city", value="Paris"), traj)
    assert not missing.passed and "not in the final state" in missing.detail
    # Objects compare whole: an extra key is a difference.
    assert not run_check(check(kind="state_equals", path="/alerts/0", value={"city": "Paris"}), traj).passed


def test_final_mentions_numbers_in_their_written_forms_only_as_whole_numbers() -> None:
    traj = weather_trajectory(final="Your balance is $1,500 and it is 18°C.")
    assert run_check(check(kind="final_mentions", value=1500), traj).passed
    assert run_check(check(kind="final_mentions", value="18"), traj).passed
    assert not run_check(check(kind="final_mentions", value="15"), traj).passed
    assert not run_check(check(kind="final_mentions", value="8"), traj).passed
    assert not run_check(
        check(kind="final_mentions", value="2"), weather_trajectory(final="Built in 2018.")
    ).passed


def test_a_value_is_mentioned_without_its_edge_punctuation_but_not_in_part() -> None:
    """A trained agent quotes a search result whole but for its trailing comma: the answer 'The Right Thing is the
    Right Thing' reports the result 'The Right Thing is the Right Thing,' and must pass. Edge punctuation goes;
    the words must all be there."""
    said = weather_trajectory(final="Top result: The Right Thing is the Right Thing")
    assert run_check(check(kind="final_mentions", value="The Right Thing is the Right Thing,"), said).passed
    assert run_check(check(kind="final_mentions", value='"Sunny."'), weather_trajectory(final="It is sunny")).passed
    assert not run_check(check(kind="final_mentions", value="The Right Thing is right,"), said).passed
    # A value too short once stripped keeps its own form only: "ok," is not reported by "ok".
    assert not run_check(check(kind="final_mentions", value="ok,"), weather_trajectory(final="It is ok")).passed


def test_final_mentions_fails_without_final_answer() -> None:
    result = run_check(check(kind="final_mentions", value="18"), weather_trajectory(final=None))
    assert not result.passed and "no final assistant answer" in result.detail


def test_misconfigured_checks_fail_with_a_reason() -> None:
    traj = weather_trajectory()
    for bad in (check(kind="tool_called"), check(kind="state_equals"), check(kind="final_mentions")):
        result = run_check(bad, traj)
        assert not result.passed and "misconfigured" in result.detail


def test_final_answer_is_the_last_assistant_turn_only_when_it_answers() -> None:
    assert final_answer(weather_trajectory()) == "It is 18°C and sunny in Paris right now."
    assert final_answer(weather_trajectory(final=None)) is None
    trailing_user = weather_trajectory()
    trailing_user.messages.append(Message(role="user", content="thanks"))
    assert final_answer(trailing_user) is not None


def test_run_checks_keeps_rubric_order() -> None:
    rubric = Rubric(
        criteria=[Criterion(id="x", description="x")],
        checks=[
            check(kind="no_tool_called").model_copy(update={"id": "a"}),
            check(kind="tool_called", tool="get_weather").model_copy(update={"id": "b"}),
        ],
    )
    results = run_checks(weather_trajectory(), rubric)
    assert [(r.check_id, r.passed) for r in results] == [("a", False), ("b", True)]


def test_values_match_rules() -> None:
    assert values_match({"a": 1}, {"a": 1, "b": 2}, subset=True)
    assert not values_match({"a": 1}, {"a": 1, "b": 2}, subset=False)
    assert values_match([1, "X"], [1.0, "x"], subset=False)
    assert not values_match([1], [1, 2], subset=True)
    assert values_match(True, "true", subset=False)
    assert not values_match(True, 1, subset=False)
