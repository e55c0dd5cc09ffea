"""The overlap of training rows with BFCL's function names and questions."""

from __future__ import annotations

import json

from synth.bfcl.contamination import contamination
from synth.bfcl.data import load_items

CLEAN = {
    "messages": [{"role": "system", "content": "You help with the weather."},
                 {"role": "user", "content": "What's the temperature in Oslo right now?"},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": "c1", "type": "function", "function": {"name": "get_weather_now", "arguments": "{}"}}]}],
    "tools": [{"type": "function", "function": {"name": "get_weather_now", "parameters": {"type": "object"}}}],
}


def test_clean_rows_count_zero() -> None:
    report = contamination([CLEAN, CLEAN])
    assert report.rows == 2 and report.contaminated_rows == 0
    assert report.function_names == [] and report.question_ids == []


def test_a_bfcl_function_name_counts_however_it_is_written() -> None:
    # math.factorial is simple_python_1's function; FC conversion writes it math_factorial.
    as_tool = {**CLEAN, "tools": [json.dumps({"type": "function", "function": {"name": "math_factorial"}})]}
    as_call = {**CLEAN, "messages": [*CLEAN["messages"][:2], {"role": "assistant", "tool_calls": [
        {"function": {"name": "Math.Factorial", "arguments": "{}"}}]}]}
    bare = {**CLEAN, "tools": [{"name": "calculate_triangle_area", "parameters": {}}]}
    report = contamination([as_tool, as_call, bare, CLEAN])
    assert (report.contaminated_rows, report.function_rows, report.question_rows) == (3, 3, 0)
    assert report.function_names == ["calculate_triangle_area", "math_factorial"]


def test_a_bfcl_question_counts_whole_or_inside_a_longer_message() -> None:
    question = load_items("simple_python")[0].question()  # "Find the area of a triangle with a base of 10 ..."
    exact = {**CLEAN, "messages": [{"role": "user", "content": question.upper().replace(" ", "  ")}]}
    inside = {**CLEAN, "messages": [{"role": "user", "content": f"Hi! {question} Thanks a lot."}]}
    report = contamination([exact, inside, CLEAN])
    assert (report.contaminated_rows, report.question_rows) == (2, 2)
    assert report.question_ids == ["simple_python_0"]


def test_a_short_question_inside_a_longer_text_is_a_coincidence() -> None:
    short = min((i for c in ("irrelevance", "simple_python") for i in load_items(c)),
                key=lambda i: len(i.question()))
    assert len(short.question()) < 40
    inside = {**CLEAN, "messages": [{"role": "user", "content": f"Before that: {short.question()} and more."}]}
    whole = {**CLEAN, "messages": [{"role": "user", "content": short.question()}]}
    report = contamination([inside, whole])
    assert report.question_rows == 1 and report.question_ids == [short.id]
