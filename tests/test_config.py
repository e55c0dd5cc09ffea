"""A bad config fails at once with one message naming the field and the allowed values."""

from pathlib import Path

import pytest

from synth.config import ConfigError, PipelineConfig, load_config


def test_default_config_loads() -> None:
    cfg = load_config()
    assert isinstance(cfg, PipelineConfig)
    assert cfg.run == "default"
    assert cfg.agents.count >= 1


def test_overrides_apply_with_yaml_types() -> None:
    cfg = load_config(overrides=["agents.count=11", "rollouts.error_rate=0.5", "llm.tool_calling=native"])
    assert cfg.agents.count == 11
    assert cfg.rollouts.error_rate == 0.5
    assert cfg.llm.tool_calling == "native"


def test_unknown_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("agents:\n  cuont: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "agents.cuont" in str(err.value)
    assert "unknown field" in str(err.value)


def test_bad_literal_names_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["llm.tool_calling=magic"])
    message = str(err.value)
    assert "llm.tool_calling" in message
    assert "'native'" in message and "'schema'" in message and "'magic'" in message


def test_out_of_range_value() -> None:
    with pytest.raises(ConfigError, match=r"rollouts\.error_rate"):
        load_config(overrides=["rollouts.error_rate=3"])


def test_malformed_override_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"section\.field=value"):
        load_config(overrides=["agents.count"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_BASE_URL", "http://a:1/v1, http://b:2/v1")
    urls = [e.base_url for e in load_config().endpoint_urls()]
    assert urls == ["http://a:1/v1", "http://b:2/v1"]
    monkeypatch.delenv("SYNTH_BASE_URL")
    assert load_config().endpoint_urls() == []


def test_set_errors_name_the_flag_not_the_file() -> None:
    """A bad --set is the flag's fault: the message quotes it as typed and does not send the user to a YAML file
    that is fine."""
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["agents.count=abc"])
    assert "--set agents.count=abc" in str(err.value) and "default.yaml" not in str(err.value)
    assert "--set" in err.value.hint
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["nope.x=1"])
    assert "--set nope.x=1" in str(err.value) and "default.yaml" not in str(err.value)
    with pytest.raises(ConfigError, match=r"--set run\.x=1: 'run' is not a section") as err:
        load_config(overrides=["run.x=1"])
    assert "--set" in err.value.hint


def test_unknown_field_lists_the_fields_of_its_section() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["agents.cuont=3"])
    assert "fields there: " in str(err.value) and "count" in str(err.value)


def test_file_and_flag_errors_are_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("agents:\n  cuont: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["llm.max_tokens=-5"])
    file_part, flag_part = str(err.value).split("invalid --set")
    assert str(path) in file_part and "agents.cuont" in file_part and "max_tokens" not in file_part
    assert "--set llm.max_tokens=-5" in flag_part
