"""`synth pipeline` runs the dataset as a stage: against a real HTTP endpoint (the instant server, replies that fit
each request's schema), the report and the dataset folder are what they were, and a re-run of a finished run
sends no request and does not rebuild the dataset."""

from __future__ import annotations

import json
from pathlib import Path

from synth.bench import instant_server
from synth.config import EndpointConfig, load_config
from synth.pipeline import run_pipeline
from synth.stages.registry import ORDER
from tests.fixtures.cluster import free_port

SMALL = ["agents.count=2", "tasks.per_agent=1", "rollouts.samples=1", "tools.evolve_leaves=1",
         "rollouts.real_exec=false", "ray.enabled=false", "llm.probe_rate=false"]


def test_pipeline_builds_the_dataset_as_a_stage_and_resumes_it(tmp_path: Path) -> None:
    port = free_port()
    cfg = load_config(overrides=[*SMALL, f"runs_dir={tmp_path}", "run=p"])
    with instant_server.running(port):
        endpoints = [EndpointConfig(base_url=instant_server.base_url(port))]
        first = run_pipeline(cfg, endpoints, progress=False)
        sent = instant_server.get_stats(port)["requests"]
        card = cfg.run_dir / "dataset" / "README.md"
        built_at = card.stat().st_mtime_ns
        second = run_pipeline(cfg, endpoints, progress=False)
        assert instant_server.get_stats(port)["requests"] == sent  # every row resumed: no call paid twice

    assert [s.stage for s in first.stages] == ORDER  # the report lists the model stages, as before
    assert first.dataset is not None and first.dataset.trajectories == 2
    on_disk = json.loads((cfg.run_dir / "dataset" / "summary.json").read_text())
    assert on_disk == first.dataset.model_dump(mode="json")  # the dataset's own summary, in the report too
    assert json.loads((cfg.run_dir / "report.json").read_text())["dataset"] == on_disk
    assert {p.name for p in (cfg.run_dir / "dataset").iterdir()} >= {"hf", "data", "sft", "README.md", "summary.json"}

    stage = json.loads((cfg.run_dir / "dataset.stage" / "summary.json").read_text())
    assert (stage["planned"], stage["ok"], stage["resumed"]) == (1, 1, 1)  # the second run found it built
    assert card.stat().st_mtime_ns == built_at
    assert second.dataset == first.dataset
