"""A slow server is not a dead one: against the real embedded vLLM server, made "slow" relative to a tiny request
deadline, timeouts become retries with longer deadlines or row errors, and the stage finishes."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import EndpointConfig, load_config
from synth.stages.runner import run_stage

pytestmark = pytest.mark.integration

BASE = ["ray.enabled=false", "tools.evolve_generations=1", "tools.tools_per_leaf=1", "tools.max_real_tools=2",
        "llm.max_tokens=96"]


def _run(tmp_path: Path, live_url: str, *sets: str):
    cfg = load_config(overrides=[*BASE, f"runs_dir={tmp_path}", "run=slow", *sets])
    return run_stage("tools", cfg, [EndpointConfig(base_url=live_url, max_concurrency=4)], progress=False)


def test_request_timeouts_on_a_healthy_server_become_row_errors_not_a_failed_stage(tmp_path: Path,
                                                                                    live_url: str) -> None:
    # 50 ms, doubled once: no reply of up to 96 tokens finishes on this server, which answers /health all along.
    summary = _run(tmp_path, live_url, "tools.evolve_leaves=2", "llm.timeout_s=0.05", "llm.slow_retries=1")
    assert summary.planned >= 2
    assert summary.errors.get("RequestTimedOut", 0) >= 1, summary.errors
    assert "EndpointUnavailable" not in summary.errors


def test_longer_deadlines_let_a_slow_server_finish(tmp_path: Path, live_url: str) -> None:
    # The first deadline (0.5 s) is too short for most replies; doubling (1, 2, 4 ... 256 s) lets them finish.
    summary = _run(tmp_path, live_url, "tools.evolve_leaves=1", "llm.timeout_s=0.5", "llm.slow_retries=9")
    assert "RequestTimedOut" not in summary.errors, summary.errors
    # Answered in time is the point: whether the 135M's drafted tool then passes validation is another question.
    answered = summary.ok + summary.errors.get("validation", 0)
    assert answered >= 1, summary.errors
