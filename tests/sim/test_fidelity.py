"""The simulator-fidelity comparison: key values per server, agreement, state, the calls built from the schemas,
the calls read from real-execution episodes, and the summary and report."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synth.sim.fidelity import (
    CallComparison,
    agreement,
    compare,
    harvested_tools,
    render_markdown,
    replay_entries,
    schema_valid,
    summarize,
    world_view,
    worst,
)
from synth.sim.fidelity_calls import (
    CALCULATOR,
    EVERYTHING,
    FILESYSTEM,
    GIT,
    MEMORY,
    REPLAY_SERVERS,
    SKIP_TOOLS,
    THINKING,
    TIME,
    TIME_MCP,
    WORKSPACE,
    ReplayCall,
    build_arguments,
    generated_sequences,
    rollout_sequences,
)
from synth.sim.fidelity_keys import grounded_tokens, key_agreement, key_values, state_projection

TIME_RESULT = json.dumps({"timezone": "Europe/Paris", "datetime": "2026-12-08T00:19:47+01:00",
                          "day_of_week": "Tuesday", "is_dst": False}, indent=2)  # fmt: skip


def test_time_keys_are_the_zone_date_hour_weekday_and_dst() -> None:
    keys = key_values(TIME, "get_current_time", TIME_RESULT)
    assert keys == {"timezone": "Europe/Paris", "date": "2026-12-08", "hour": "00", "day_of_week": "Tuesday",
                    "is_dst": False}  # fmt: skip
    converted = json.dumps({"source": {"timezone": "Asia/Tokyo", "datetime": "2026-12-08T09:30:00+09:00"},
                            "target": {"timezone": "Etc/UTC", "datetime": "2026-12-08T00:30:00+00:00"},
                            "time_difference": "-9.0h"})  # fmt: skip
    keys = key_values(TIME, "convert_time", converted)
    assert keys["target.minute"] == "30" and keys["source.timezone"] == "Asia/Tokyo"
    assert keys["time_difference"] == "-9.0h"


def test_memory_keys_are_names_relations_and_observations() -> None:
    graph = json.dumps({"entities": [{"name": "Alice", "entityType": "person", "observations": ["likes tea"]}],
                        "relations": [{"from": "Alice", "to": "Acme", "relationType": "works_at"}]})  # fmt: skip
    keys = key_values(MEMORY, "read_graph", graph)
    assert keys["entities"] == frozenset({"Alice"})
    assert keys["relations"] == frozenset({("Alice", "works_at", "Acme")})
    assert keys["observations"] == frozenset({"likes tea"})
    assert key_values(MEMORY, "delete_entities", "Entities deleted successfully") == {}


def test_filesystem_keys_are_what_a_listing_shows_and_a_file_says() -> None:
    listing = "[DIR] .git\n[FILE] README.md\n[DIR] notes"
    assert key_values(FILESYSTEM, "list_directory", listing) == {
        "listed": frozenset({"dir:.git", "file:README.md", "dir:notes"})}
    sized = "[FILE] README.md                 81 B\n[DIR] notes"
    assert key_values(FILESYSTEM, "list_directory_with_sizes", sized)["listed"] == frozenset(
        {"file:README.md", "dir:notes"})
    assert key_values(FILESYSTEM, "read_text_file", "- buy milk\n") == {"text": "- buy milk"}
    found = f"{WORKSPACE}/notes/todo.md\n{WORKSPACE}/README.md"
    assert key_values(FILESYSTEM, "search_files", found) == {"found": frozenset({"notes/todo.md", "README.md"})}
    info = "size: 81\ncreated: Mon\nisDirectory: false\nisFile: true"
    assert key_values(FILESYSTEM, "get_file_info", info) == {"size": "81", "isDirectory": "false", "isFile": "true"}


def test_git_keys_are_files_branches_and_messages() -> None:
    status = ("Repository status:\nOn branch main\nUntracked files:\n  (use \"git add <file>...\")\n\tdraft.md\n\n"
              "nothing added to commit but untracked files present")  # fmt: skip
    assert key_values(GIT, "git_status", status) == {"clean": False, "files": frozenset({"draft.md"})}
    assert key_values(GIT, "git_status", "On branch main\nnothing to commit, working tree clean")["clean"] is True
    log = "Commit history:\nCommit: b66031\nAuthor: synth\nDate: 2026\nMessage: Initial commit\n"
    assert key_values(GIT, "git_log", log) == {"messages": frozenset({"Initial commit"})}
    show = "commit b66031\nAuthor: synth <s@l>\nDate:   2026-12-07\n\n    Initial commit\n\ndiff --git a/x.md b/x.md"
    assert key_values(GIT, "git_show", show) == {"message": "Initial commit", "files": frozenset({"x.md"})}
    assert key_values(GIT, "git_branch", "* main\n  fix-typo") == {"branches": frozenset({"main", "fix-typo"})}


def test_number_servers_keep_the_number() -> None:
    assert key_values(CALCULATOR, "calculate", "14") == {"value": 14.0}
    assert key_values(CALCULATOR, "calculate", json.dumps({"result": "4.0"})) == {"value": 4.0}
    assert key_values(EVERYTHING, "get-sum", "The sum of -3 and 10 is 7.") == {"sum": 7.0}
    assert key_values(EVERYTHING, "echo", "Echo: ping") == {"echo": "ping"}
    days = key_values(TIME_MCP, "days_in_month", "The number of days in month is 28.")
    assert days["numbers"] == frozenset({28.0})
    now = key_values(TIME_MCP, "current_time", "Current UTC time is 2026-12-07 23:19:45.")
    assert now == {"dates": frozenset({"2026-12-07"}), "clock": None, "numbers": None}
    thought = json.dumps({"thoughtNumber": 2, "totalThoughts": 5, "nextThoughtNeeded": False, "branches": []})
    assert key_values(THINKING, "sequentialthinking", thought) == {"thoughtNumber": 2, "totalThoughts": 5,
                                                                   "nextThoughtNeeded": False}  # fmt: skip


def test_other_results_are_held_to_the_words_the_call_gave() -> None:
    args = {"branch_name": "fix-typo"}
    assert grounded_tokens("Created branch 'fix-typo' from 'main'", args) == frozenset({"fix-typo"})
    assert key_values(GIT, "git_create_branch", "Created branch 'fix-typo' from 'main'", args) == {
        "grounded": frozenset({"fix-typo"})}
    assert key_values(GIT, "git_reset", "All staged changes reset", {}) == {}


def test_key_agreement_is_the_share_of_real_keys_matched() -> None:
    real = {"timezone": "Europe/Paris", "hour": "10", "is_dst": False, "n": 4.0, "names": frozenset({"a", "b"})}
    same = {"timezone": "europe/paris", "hour": "10", "is_dst": False, "n": 4.0000000001,
            "names": frozenset({"a", "b"})}  # fmt: skip
    assert key_agreement(real, same) == 1.0
    half = {"timezone": "Europe/Paris", "hour": "11", "is_dst": "false", "names": frozenset({"a"})}
    assert key_agreement(real, half) == pytest.approx(2 / 5)
    assert key_agreement({"value": 25.0}, {"value": "25"}) == 1.0  # a number written as text is that number
    assert key_agreement({"value": 25.0}, {"value": "twenty-five"}) == 0.0
    assert key_agreement({"x": None}, {"x": 1}) is None
    assert key_agreement({}, {"x": 1}) is None


def _call(server: str = TIME, tool: str = "get_current_time", **arguments: Any) -> ReplayCall:
    return ReplayCall(server=server, tool=tool, arguments=arguments or {"timezone": "Europe/Paris"})


def test_compare_outcomes_keys_and_agreement() -> None:
    call = _call()
    good = compare(call, "s", "baseline", real_ok=True, real=TIME_RESULT, sim_ok=True, sim=TIME_RESULT)
    assert good.outcome_agrees and good.key_score == 1.0 and good.agrees
    wrong_hour = TIME_RESULT.replace("T00:", "T09:")
    off = compare(call, "s", "baseline", real_ok=True, real=TIME_RESULT, sim_ok=True, sim=wrong_hour)
    assert off.outcome_agrees and off.key_score == pytest.approx(4 / 5) and not off.agrees
    failed = compare(call, "s", "baseline", real_ok=True, real=TIME_RESULT, sim_ok=False, sim="Error: no")
    assert not failed.outcome_agrees and failed.key_score is None and not failed.agrees
    both_failed = compare(call, "s", "baseline", real_ok=False, real="Error: bad zone", sim_ok=False, sim="Error: x")
    assert both_failed.agrees


def test_schema_validity_applies_where_the_real_text_follows_the_schema() -> None:
    schema = {"type": "object", "properties": {"timezone": {"type": "string"}, "is_dst": {"type": "boolean"}},
              "required": ["timezone", "is_dst"]}  # fmt: skip
    assert schema_valid(schema, TIME_RESULT, TIME_RESULT) is True
    assert schema_valid(schema, TIME_RESULT, json.dumps({"time": "10:00"})) is False
    assert schema_valid(schema, TIME_RESULT, "ten o'clock") is False
    assert schema_valid(schema, "[DIR] notes", "{}") is None  # the server's text is not its structured result
    assert schema_valid(None, TIME_RESULT, "x") is None


def test_state_agreement_compares_what_the_state_means() -> None:
    before = {"memory": {"entities": [], "relations": []}}
    real_after = {"memory": {"entities": [{"name": "Alice", "entityType": "person", "observations": ["x"]}],
                             "relations": []}}  # fmt: skip
    call = _call(MEMORY, "create_entities", entities=[{"name": "Alice", "entityType": "person",
                                                        "observations": ["x"]}])  # fmt: skip
    text = json.dumps(real_after["memory"]["entities"])
    kept = compare(call, "s", "baseline", real_ok=True, real=text, sim_ok=True, sim=text, state_before=before,
                   real_after=real_after, sim_after=before)  # fmt: skip
    assert kept.state_agrees is False and kept.real_changed and not kept.sim_changed and not kept.agrees
    same = compare(call, "s", "baseline", real_ok=True, real=text, sim_ok=True, sim=text, state_before=before,
                   real_after=real_after, sim_after=json.loads(json.dumps(real_after)))  # fmt: skip
    assert same.state_agrees and same.agrees
    # Files: the simulator may name a path from the workspace; it is the same file.
    files = {"files": {"a.md": {"size": 2, "content": "hi"}}}
    sim_files = {"files": {f"{WORKSPACE}/a.md": {"size": 2, "content": "hi"}}}
    assert state_projection(FILESYSTEM, files) == state_projection(FILESYSTEM, sim_files)
    git = {"files": {}, "git": {"log": ["abc123 Initial commit"], "status": ["?? draft.md"]}}
    git_sim = {"files": {}, "git": {"log": ["fff000 Initial commit"], "status": ["?? draft.md"]}}
    assert state_projection(GIT, git) == state_projection(GIT, git_sim)
    assert state_projection(TIME, {"clock": 1}) is None


def test_world_view_holds_the_parts_the_server_works_on() -> None:
    snap = {"files": {"a": {"size": 1, "content": "x"}}, "memory": None, "git": {"log": [], "status": []}}
    assert set(world_view(TIME, snap, "now")) == {"workspace", "clock"}
    assert world_view(MEMORY, snap, "now")["memory"] == {"entities": [], "relations": []}
    assert set(world_view(GIT, snap, "now")) == {"workspace", "clock", "files", "git"}
    assert "git" not in world_view(FILESYSTEM, snap, "now")


def test_generated_calls_are_valid_for_the_harvested_schemas_and_cover_every_tool() -> None:
    tools = {server: harvested_tools(server) for server in REPLAY_SERVERS}
    assert all(tools.values()), "every replayed server has a harvest in tools_registry/mcp"
    sequences = generated_sequences(tools, 30, seed=3)
    assert sequences == generated_sequences(tools, 30, seed=3)
    for server, listed in tools.items():
        calls = [c for s in sequences if s.server == server for c in s.calls]
        assert len(calls) == 30
        schemas = {t["name"]: t["inputSchema"] for t in listed}
        wanted = set(schemas) - SKIP_TOOLS.get(server, frozenset())
        assert {c.tool for c in calls} == wanted
        for call in calls:
            jsonschema.validate(call.arguments, schemas[call.tool])


def test_a_tool_specific_pool_wins_over_the_property_pool() -> None:
    schema = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    pool = {"path": ["/file"], "list_directory.path": ["/dir"]}
    assert build_arguments(schema, pool, random.Random(0), tool="list_directory") == {"path": "/dir"}
    assert build_arguments(schema, pool, random.Random(0), tool="read_file") == {"path": "/file"}


def _record(calls: list[tuple[str, str, dict[str, Any], str]]) -> str:
    tool_calls = [{"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                  for i, (name, _server, args, _mode) in enumerate(calls)]  # fmt: skip
    records = [{"tool_call_id": f"c{i}", "name": name, "mode": mode, "server": server if mode == "real" else None}
               for i, (name, server, _args, mode) in enumerate(calls)]  # fmt: skip
    return json.dumps({"messages": [{"role": "assistant", "tool_calls": tool_calls}], "calls": records})


def test_rollout_calls_are_the_real_ones_in_order_without_repeats(tmp_path: Path) -> None:
    rows = [
        _record([("get_current_time", TIME, {"timezone": "Asia/Tokyo"}, "real"),
                 ("lookup", "", {"q": 1}, "simulated"),
                 ("read_graph", MEMORY, {}, "real"),
                 ("get_current_time", TIME, {"timezone": "Europe/Paris"}, "real")]),
        _record([("get_current_time", TIME, {"timezone": "Asia/Tokyo"}, "real")]),
    ]  # fmt: skip
    folder = tmp_path / "some-run" / "rollouts"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"record": rows}), folder / "data.parquet")
    sequences = rollout_sequences(tmp_path, [TIME, MEMORY])
    by_server = {s.server: [(c.tool, c.arguments) for c in s.calls] for s in sequences}
    assert by_server[TIME] == [("get_current_time", {"timezone": "Asia/Tokyo"}),
                               ("get_current_time", {"timezone": "Europe/Paris"})]  # fmt: skip
    assert by_server[MEMORY] == [("read_graph", {})]
    assert all(c.source == "rollouts" for s in sequences for c in s.calls)
    assert len(sequences) == 2  # the second episode only repeats a call
    assert rollout_sequences(tmp_path, [TIME], limit_per_server=1)[0].calls[0].arguments == {"timezone": "Asia/Tokyo"}


def test_replay_entries_run_the_chosen_servers_and_refuse_unknown_ones() -> None:
    entries = replay_entries([TIME, CALCULATOR])
    assert entries[CALCULATOR].sandbox_safe and entries[TIME].package == "mcp-server-time"
    from synth.sim.fidelity import FidelityError

    with pytest.raises(FidelityError, match="no-such"):
        replay_entries(["npm/no-such"])


def _row(server: str, agrees: bool, outcome: bool = True, key: float | None = None) -> CallComparison:
    return CallComparison(sequence="s", server=server, tool="t", arguments={}, source="generated",
                          variant="baseline", real_ok=True, real="r", sim_ok=outcome, sim="s", outcome_agrees=outcome,
                          key_score=key, agrees=agrees)  # fmt: skip


def test_summary_per_server_and_the_worst_disagreements() -> None:
    rows = [_row(TIME, True, key=1.0), _row(TIME, False, key=0.5), _row(MEMORY, False, outcome=False),
            _row(MEMORY, False, outcome=False), _row(MEMORY, False, outcome=False), _row(GIT, True)]  # fmt: skip
    overall = agreement(rows)
    assert overall.calls == 6 and overall.agrees == pytest.approx(2 / 6, abs=1e-3)
    assert overall.outcome == 0.5 and overall.key_calls == 2 and overall.key_score == 0.75
    result = summarize(rows)
    assert result.servers[TIME].agrees == 0.5 and result.servers[MEMORY].outcome == 0.0
    picked = worst(rows, shown=5, per_server=2)
    assert [r.server for r in picked] == [MEMORY, MEMORY, TIME]  # outcome disagreements first, two a server


def test_markdown_names_the_model_machine_and_each_server() -> None:
    from synth.sim.fidelity import FidelityReport

    rows = [_row(TIME, True, key=1.0), _row(MEMORY, False, outcome=False)]
    report = FidelityReport(model="smollm2", endpoints=["http://x/v1"], machine={"cpu": "EPYC", "cores": 2,
                            "mem_gib": 24, "date": "2026-12-07 23:00 UTC"}, command="synth sim fidelity",
                            servers=[TIME, MEMORY], calls=2, sources={"generated": 2},
                            variants={"baseline": summarize(rows), "examples": summarize(rows)})  # fmt: skip
    text = render_markdown(report)
    assert "`smollm2`" in text and "EPYC" in text and "2026-12-07 23:00 UTC" in text
    assert f"| `{MEMORY}` | 1 | 0.0% | 0.0%" in text
    assert "## Worst disagreements (examples)" in text and "94%" in text


def test_calls_the_model_server_never_answered_are_left_out_of_the_rates() -> None:
    down = _row(TIME, False, outcome=False)
    down.unmeasured = True
    rows = [_row(TIME, True, key=1.0), down]
    overall = agreement(rows)
    assert overall.calls == 1 and overall.agrees == 1.0 and overall.unmeasured == 1
    assert worst(rows) == []


def test_a_report_is_made_again_from_the_calls_file(tmp_path: Path) -> None:
    from synth.sim.fidelity import FidelityError, build_report, read_calls

    rows = [_row(TIME, True, key=1.0), _row(MEMORY, False, outcome=False)]
    rows.append(rows[0].model_copy(update={"variant": "examples"}))
    path = tmp_path / "calls.jsonl"
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    report = build_report(read_calls(path), model="m", endpoints=[], command="c")
    assert report.calls == 2 and list(report.variants) == ["baseline", "examples"]
    assert report.variants["examples"].overall.calls == 1 and report.variants["baseline"].overall.agrees == 0.5
    with pytest.raises(FidelityError, match="no calls file"):
        read_calls(tmp_path / "missing.jsonl")
