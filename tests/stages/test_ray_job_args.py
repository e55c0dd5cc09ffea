"""pipelines/ray_job.py takes every stage `synth pipeline` runs, the dataset included."""

import contextlib
import importlib.util
from pathlib import Path

import pytest

from synth.paths import REPO_ROOT
from synth.stages.summary import StageSummary


def _job_module():
    spec = importlib.util.spec_from_file_location("ray_job", REPO_ROOT / "pipelines" / "ray_job.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dataset_stage_can_be_run_alone_in_a_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    job = _job_module()
    ran: list[list[str]] = []

    def run_stages(cfg, endpoints, stages, progress):
        ran.append(stages)
        return [StageSummary(stage=s, planned=0, ok=0, failed=0) for s in stages]

    monkeypatch.setattr(job, "endpoints_for", lambda cfg, keep_server: contextlib.nullcontext([]))
    monkeypatch.setattr(job, "run_stages", run_stages)
    assert job.main(["--set", f"runs_dir={tmp_path}", "--stages", "judge", "dataset"]) == 0
    assert ran == [["judge", "dataset"]]
    assert '"stage": "dataset"' in capsys.readouterr().out


def test_an_unknown_stage_is_refused_by_name() -> None:
    with pytest.raises(SystemExit):
        _job_module().main(["--set", "runs_dir=/tmp/x", "--stages", "publishing"])
