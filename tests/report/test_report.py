"""The report's numbers on hand-made rows: the funnel, acceptance, call modes, what followed a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import PipelineConfig
from synth.report.analysis import analyse
from synth.report.page import write_page
from synth.schemas import CallRecord, FunctionCall, Message, ToolCall
from tests.fixtures.dataset import judged_run, trajectory


@pytest.fixture
def cfg(tmp_path: Path) -> PipelineConfig:
    return judged_run(tmp_path)


def test_funnel_and_acceptance(cfg: PipelineConfig) -> None:
    a = analyse(cfg.run_dir)
    funnel = dict(a.funnel)
    assert funnel["agents"] == 1 and funnel["tasks"] == 1
    assert funnel["episodes run"] == 3 and funnel["episodes completed"] == 2
    assert funnel["judged"] == 2 and funnel["accepted"] == 1
    assert a.acceptance_by_difficulty == {"single_call": (1, 2)}
    assert a.call_modes == {"simulated": 2}


def test_recovery_after_injected_failure() -> None:
    from synth.report.analysis import _next_after_failure

    traj = trajectory(1)
    traj.calls = [CallRecord(tool_call_id="call_1", name="get_weather", mode="simulated", injected="timeout", ok=False)]
    assert _next_after_failure(traj, "call_1") == "told the user"
    retry = ToolCall(id="call_2", function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}'))
    traj.messages.insert(4, Message(role="assistant", tool_calls=[retry]))
    assert _next_after_failure(traj, "call_1") == "retried the tool"


def test_page_is_written(cfg: PipelineConfig) -> None:
    page = write_page(cfg)
    html = page.read_text()
    assert "<h1>synth run" in html and html.count("data:image/png;base64,") >= 3
    assert (cfg.run_dir / "analysis.json").exists()


def test_page_of_a_run_that_does_not_exist_names_it(tmp_path: Path) -> None:
    from synth.report.page import NoSuchRun

    with pytest.raises(NoSuchRun, match="no run 'nope'") as err:
        write_page(PipelineConfig(runs_dir=tmp_path, run="nope"))
    assert "--run" in err.value.hint and not (tmp_path / "nope").exists()


def test_page_shows_acceptance_and_calibration(cfg: PipelineConfig) -> None:
    a = analyse(cfg.run_dir, cfg)
    assert a.accept_mode == "auto" and a.accepted_by == {"verifiable": 1}
    # The fixture's verdicts carry no criterion scores: nothing to pair, nothing trusted.
    assert a.calibration["overall"]["pairs"] == 0 and a.calibration["trusted_criteria"] == []
    html = write_page(cfg).read_text()
    assert "judge calibration: LLM judge vs code checks" in html and "acceptance (judge.accept: auto)" in html
    assert "held out for evaluation (never in train): 0 tasks" in html
