"""BFCL's verdicts on small fixed replies, in both modes, and the requests each mode sends."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema
import pytest

from synth.bfcl.data import CATEGORIES, BfclItem, load_items
from synth.bfcl.score import RawToolCall, Reply, fc_tools, request, score


@cache
def _items(category: str) -> dict[str, BfclItem]:
    return {i.id: i for i in load_items(category)}


def _item(category: str, item_id: str) -> BfclItem:
    return _items(category)[item_id].model_copy(deep=True)


def _fc(*calls: tuple[str, dict]) -> Reply:
    return Reply(tool_calls=[RawToolCall(name=n, arguments=json.dumps(a)) for n, a in calls])


TRIANGLE = "simple_python_0"  # calculate_triangle_area(base: integer, height: integer, unit: string = "units")


def test_a_right_call_is_correct_in_both_modes() -> None:
    item = _item("simple_python", TRIANGLE)
    assert score(item, "fc", _fc(("calculate_triangle_area", {"base": 10, "height": 5}))).valid
    verdict = score(item, "prompt", Reply(text="[calculate_triangle_area(base=10, height=5, unit='units')]"))
    assert verdict.valid
    assert verdict.decoded == [{"calculate_triangle_area": {"base": 10, "height": 5, "unit": "units"}}]


def test_a_wrong_type_is_wrong() -> None:
    verdict = score(_item("simple_python", TRIANGLE), "fc",
                    _fc(("calculate_triangle_area", {"base": "10", "height": 5})))
    assert not verdict.valid and verdict.error_type == "type_error:simple"
    assert "Expected type integer, got str" in verdict.error[0]


def test_a_wrong_value_is_wrong() -> None:
    reply = Reply(text="[calculate_triangle_area(base=5, height=5)]")
    verdict = score(_item("simple_python", TRIANGLE), "prompt", reply)
    assert not verdict.valid and verdict.error_type == "value_error:others"


def test_a_wrong_count_of_calls_is_wrong() -> None:
    twice = _fc(("calculate_triangle_area", {"base": 10, "height": 5}),
                ("calculate_triangle_area", {"base": 10, "height": 5}))
    verdict = score(_item("simple_python", TRIANGLE), "fc", twice)
    assert not verdict.valid and verdict.error_type == "simple_function_checker:wrong_count"
    # parallel_0 asks for two spotify.play calls (sent to FC as spotify_play); one is not enough, two in any order are.
    parallel = _item("parallel", "parallel_0")
    swift, maroon = ({"artist": "Taylor Swift", "duration": 20}, {"artist": "Maroon 5", "duration": 15})
    one = score(parallel, "fc", _fc(("spotify_play", swift)))
    assert not one.valid and one.error_type == "parallel_function_checker_no_order:wrong_count"
    assert score(parallel, "fc", _fc(("spotify_play", maroon), ("spotify_play", swift))).valid


def test_dotted_names_are_checked_as_each_mode_shows_them() -> None:
    item = _item("simple_python", "simple_python_1")  # math.factorial
    assert fc_tools(item)[0]["function"]["name"] == "math_factorial"
    assert score(item, "fc", _fc(("math_factorial", {"number": 5}))).valid
    assert score(item, "prompt", Reply(text="[math.factorial(number=5)]")).valid
    assert not score(item, "prompt", Reply(text="[math_factorial(number=5)]")).valid


def test_a_reply_without_calls_fails_the_ast_categories() -> None:
    item = _item("simple_python", TRIANGLE)
    fc = score(item, "fc", Reply(text="The area is 25 square units."))
    prompt = score(item, "prompt", Reply(text="The area is 25 square units."))
    assert not fc.valid and fc.error_type == "ast_decoder:decoder_failed"
    assert not prompt.valid and prompt.error_type == "ast_decoder:decoder_failed"
    empty = score(item, "fc", Reply(text=None, tool_calls=[]))
    assert not empty.valid and empty.error_type == "simple_function_checker:wrong_count"


def test_abstaining_is_correct_on_irrelevance_and_calling_is_not() -> None:
    item = _item("irrelevance", "irrelevance_0")  # a triangle's area, with only a BMI function offered
    assert score(item, "fc", Reply(text="None of the functions computes a triangle's area.")).valid
    assert score(item, "fc", Reply(text=None, tool_calls=[])).valid
    assert score(item, "prompt", Reply(text="I cannot help with that using these functions.")).valid
    called = score(item, "fc", _fc(("determine_body_mass_index", {"weight": 70.0, "height": 1.8})))
    assert not called.valid and called.error_type == "irrelevance_error:decoder_success"
    assert not score(item, "prompt", Reply(text="[determine_body_mass_index(weight=70.0, height=1.8)]")).valid


def test_a_prompt_mode_reply_is_decoded_by_bfcls_decoder() -> None:
    item = _item("simple_python", TRIANGLE)
    # BFCL's decoder strips code fences and adds the missing brackets.
    fenced = score(item, "prompt", Reply(text="```\ncalculate_triangle_area(base=10, height=5)\n```"))
    assert fenced.valid and fenced.decoded == [{"calculate_triangle_area": {"base": 10, "height": 5}}]
    # Several calls in one list, keyword arguments of every literal kind.
    parallel = _item("parallel", "parallel_0")
    text = "[spotify.play(artist='Taylor Swift', duration=20), spotify.play(artist=\"Maroon 5\", duration=15)]"
    assert score(parallel, "prompt", Reply(text=text)).valid


def test_arithmetic_with_a_call_inside_is_refused_not_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    item = _item("simple_python", TRIANGLE)
    reply = Reply(text=f"[calculate_triangle_area(base=1 + len(open({str(marker)!r}, 'w').name), height=5)]")
    verdict = score(item, "prompt", reply)
    assert not verdict.valid and "refused" in verdict.error[0]
    assert not marker.exists()
    # Plain arithmetic still decodes as BFCL decodes it (evaluated).
    assert score(item, "prompt", Reply(text="[calculate_triangle_area(base=2*5, height=5)]")).valid
    assert "too large" in score(item, "prompt", Reply(text="[calculate_triangle_area(base=9**9**9, height=5)]")
                                ).error[0]


def test_fc_sends_the_question_and_bfcls_tools_prompt_sends_bfcls_system_prompt() -> None:
    item = _item("simple_python", TRIANGLE)
    messages, params = request(item, "fc")
    assert messages == item.messages and set(params) == {"tools"}
    messages, params = request(item, "prompt")
    assert params == {} and messages[0]["role"] == "system" and messages[1:] == item.messages
    assert messages[0]["content"].startswith("You are an expert in composing functions.")
    assert "[func_name1(params_name1=params_value1" in messages[0]["content"]
    assert '"name": "calculate_triangle_area"' in messages[0]["content"]
    assert "Note that the provided function is in Python 3 syntax." in messages[0]["content"]
    assert item.messages[0]["role"] == "user"  # the item itself is left as it was


def test_bfcl_type_names_become_json_schema() -> None:
    item = BfclItem(id="simple_python_9999", category="simple_python",
                    messages=[{"role": "user", "content": "x"}], ground_truth=[], checker_functions=[],
                    functions=[{"name": "geo.route", "description": "d", "parameters": {
                        "type": "dict", "required": ["points"],
                        "properties": {
                            "points": {"type": "array", "items": {"type": "tuple"}, "description": "p"},
                            "speed": {"type": "float", "description": "s"},
                            "options": {"type": "dict", "description": "o",
                                        "properties": {"mode": {"type": "string", "description": "m"}}},
                            "pair": {"type": "tuple", "items": {"type": "integer"}, "description": "t"},
                            "extra": {"type": "any", "description": "e"},
                            "flag": {"type": "boolean", "description": "f"}}}}])
    tool = fc_tools(item)[0]
    assert tool["type"] == "function" and tool["function"]["name"] == "geo_route"
    params = tool["function"]["parameters"]
    props = params["properties"]
    assert params["type"] == "object"
    assert props["points"]["type"] == "array" and props["points"]["items"]["type"] == "array"
    assert props["speed"]["type"] == "number" and props["speed"]["format"] == "float"
    assert props["speed"]["description"].endswith("This is a float type value.")
    assert props["options"]["type"] == "object" and props["options"]["properties"]["mode"]["type"] == "string"
    assert props["pair"]["type"] == "array" and props["pair"]["items"]["type"] == "integer"
    assert props["extra"]["type"] == "string" and props["flag"]["type"] == "boolean"
    assert item.functions[0]["parameters"]["type"] == "dict"  # converted on a copy


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_bfcl_function_converts_to_a_valid_json_schema(category: str) -> None:
    for item in load_items(category):
        for tool in fc_tools(item):
            jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])
            assert "." not in tool["function"]["name"]
