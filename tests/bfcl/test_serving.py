"""What --model names: an endpoint URL, a checkpoint served here with the tool template and parser, or a served
name on the configured endpoints. Nothing is started here (the integration test serves the base for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.bfcl.data import BfclError
from synth.bfcl.serving import resolve, serving
from synth.config import EndpointConfig, PipelineConfig
from synth.serve import server
from synth.tool_format import TOOL_CALL_PARSER

TEMPLATE = Path("tool_chat.jinja")


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineConfig:
    monkeypatch.delenv("SYNTH_BASE_URL", raising=False)
    return PipelineConfig(runs_dir=tmp_path / "runs", run="r", eval={"port": 8790})


def _checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"w")
    return folder


def test_an_endpoint_url_is_scored_as_it_serves(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_API_KEY", "k")
    target = resolve(cfg, "http://gpu:8000/v1", TEMPLATE, concurrency=4)
    assert target.local is None and target.served_name is None
    assert target.endpoints == [EndpointConfig(base_url="http://gpu:8000/v1", api_key="k", max_concurrency=4)]


def test_the_base_is_served_here_with_the_tool_template_and_parser(cfg: PipelineConfig) -> None:
    for model in (None, "base"):
        target = resolve(cfg, model, TEMPLATE, concurrency=4)
        assert target.local is not None and target.local.model_dir is None
        assert target.local.port == 8790 and target.local.chat_template == TEMPLATE
        assert target.local.tool_call_parser == TOOL_CALL_PARSER
        assert target.endpoints[0].base_url == "http://127.0.0.1:8790/v1"
        assert target.served_name == server.served_name(target.local)


def test_a_trained_model_or_a_checkpoint_folder_is_served_under_a_name_that_follows_its_weights(
        cfg: PipelineConfig, tmp_path: Path) -> None:
    trained = _checkpoint(cfg.run_dir / "train" / "muonclip")
    target = resolve(cfg, "muonclip", TEMPLATE, concurrency=4)
    assert target.local is not None and target.local.model_dir == trained
    name = target.served_name
    assert name is not None and name.startswith("muonclip-")
    folder = _checkpoint(tmp_path / "elsewhere" / "ckpt")
    assert resolve(cfg, str(folder), TEMPLATE, concurrency=4).local.model_dir == folder  # type: ignore[union-attr]
    (trained / "model.safetensors").write_bytes(b"retrained")
    assert resolve(cfg, "muonclip", TEMPLATE, concurrency=4).served_name != name


def test_a_name_on_the_configured_endpoints(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_BASE_URL", "http://a:1/v1,http://b:2/v1")
    target = resolve(cfg, "qwen3-0.6b", TEMPLATE, concurrency=4)
    assert target.local is None and target.served_name == "qwen3-0.6b"
    assert [e.base_url for e in target.endpoints] == ["http://a:1/v1", "http://b:2/v1"]
    assert resolve(cfg, None, TEMPLATE, concurrency=4).served_name is None  # their first model
    assert resolve(cfg, "base", TEMPLATE, concurrency=4).local is not None  # 'base' is always the local base


def test_an_unknown_name_without_endpoints_says_what_it_could_be(cfg: PipelineConfig) -> None:
    with pytest.raises(BfclError) as err:
        resolve(cfg, "qwen3-0.6b", TEMPLATE, concurrency=4)
    assert "no endpoint is configured" in str(err.value) and "SYNTH_BASE_URL" in err.value.hint


def test_a_port_serving_another_model_is_refused_not_used(cfg: PipelineConfig,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    target = resolve(cfg, "base", TEMPLATE, concurrency=4)
    monkeypatch.setattr(server, "is_healthy", lambda emb, timeout_s=2: True)
    monkeypatch.setattr(server, "server_info", lambda emb: server.ServerInfo(
        port=8790, model_dir="x", served_name=server.served_name(emb), dtype="float32", dtype_reason="",
        cpu="", cpu_flags=[], tool_call_parser=None))
    with pytest.raises(BfclError, match="tool parser None") as err, serving(target):
        pass
    assert "synth serve --stop" in err.value.hint
