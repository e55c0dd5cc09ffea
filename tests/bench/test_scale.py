"""The scale benchmark's accounting: one tiny in-process run against the instant server, whose request count is the
ground truth for model calls; CPU is charged per trajectory consistently; profile rows are attributed to owners."""

from __future__ import annotations

from pathlib import Path

import psutil

from synth.bench import instant_server, scale
from tests.fixtures.cluster import free_port


def test_one_run_counts_calls_rows_and_cpu(tmp_path: Path) -> None:
    port = free_port()
    with instant_server.running(port) as server:
        cfg = scale._config(tmp_path, "tiny", port, agents=1, workers=1, ray=False,
                            extra=["rollouts.real_exec=false", "tools.evolve_leaves=1", "tools.tools_per_leaf=1"])
        before = instant_server.get_stats(port)["requests"]
        result = scale.run_once(cfg, port, server.pid)
        served = instant_server.get_stats(port)["requests"] - before
    stages = result["stages"]
    assert result["fixed"]["all_calls"] == served  # every request the server saw is counted, once
    assert result["model_calls"] == sum(stages[s]["calls"] for s in scale.PER_TRAJECTORY)
    assert result["trajectories"] == stages["rollouts"]["rows"] >= 1
    assert result["cpu_s"] > 0 and all(stages[s]["cpu_s"] >= 0 for s in stages)
    assert abs(result["trajectories_per_hour_per_core"] - 3600 * result["trajectories"] / result["cpu_s"]) \
        <= 0.01 * result["trajectories_per_hour_per_core"] + 1


def test_tree_cpu_leaves_out_the_excluded_process() -> None:
    port = free_port()
    with instant_server.running(port) as server:
        inside = scale.tree_cpu(set())
        outside = scale.tree_cpu({server.pid})
        own = psutil.Process(server.pid).cpu_times()
    assert inside - outside >= own.user + own.system - 0.05


def test_profile_rows_are_attributed_to_their_package() -> None:
    site = "/x/.venv/lib/python3.11/site-packages/openai/_base_client.py"
    assert scale._package(site, "request") == "openai"
    assert scale._package("/work/main/synth/llm/client.py", "chat") == "synth.llm"
    assert scale._package("~", "<method 'send' of '_socket.socket' objects>") == "builtin:_socket"
    assert scale._package("~", "<built-in method builtins.isinstance>") == "builtin:builtins"
    assert scale._package("/usr/lib/python3.11/json/encoder.py", "iterencode") == "stdlib:encoder"


def test_markdown_names_every_run_and_the_target() -> None:
    run = {"workers": 1, "trajectories": 10, "model_calls": 90, "cpu_ms_per_call": 5.0, "cpu_ms_per_trajectory": 45.0,
           "trajectories_per_hour_per_core": 80000, "worker_python": {"cpu_ms_per_trajectory": 30.0},
           "worker_children": {"cpu_ms_per_trajectory": 5.0}}
    result = {"machine": {"date": "d", "host": "h", "cpu": "c", "cores": 2, "mem_gib": 8}, "agents": 3,
              "load_avg_1m": [1.0, 2.0], "workers": [run, {**run, "workers": 2}],
              "variants": {"default": run, "simulated_tools": run}, "target_trajectories_per_hour_per_core": 36000,
              "scaling_2_over_1": 1.5, "profile_by_package": {"openai": 0.2}}
    text = scale.to_markdown(result)
    assert "default, 1 worker(s)" in text and "default, 2 worker(s)" in text and "simulated_tools, 1 worker" in text
    assert "36,000" in text and "80,000" in text and "x1.5" in text and "openai: 20.0%" in text
