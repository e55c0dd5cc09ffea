"""The pydantic config is the only source of defaults: pipelines/default.yaml says the same as synth/config.py
(the README's defaults and docs/config.md are checked in tests/test_readme.py and tests/test_config_reference.py),
so a user never reads one default and runs with another."""

from __future__ import annotations

from synth.config import PipelineConfig, load_config


def test_default_yaml_sets_nothing_the_code_does_not() -> None:
    assert load_config() == PipelineConfig()


def test_every_pipeline_yaml_is_a_valid_config() -> None:
    """A config a Makefile target runs (make data-value) fails here, not an hour into a run."""
    from pathlib import Path

    from synth.config import load_config

    files = sorted(Path("pipelines").glob("*.yaml"))
    assert {f.name for f in files} >= {"default.yaml", "data_value.yaml"}
    for f in files:
        load_config(f)
