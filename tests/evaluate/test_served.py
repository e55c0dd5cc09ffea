"""The model under test is served under a name that follows its weights, so a stale server is never scored."""

import json
from pathlib import Path

import pytest

from synth.config import PipelineConfig
from synth.evaluate.episode import checkpoint_model, served_under_test, serving
from synth.serve import server
from synth.train.template import TOOL_CALL_PARSER


def _checkpoint(root: Path, fingerprint: str) -> Path:
    ckpt = root / "train" / "muonclip"
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "config.json").write_text("{}")
    (ckpt / "train_summary.json").write_text(json.dumps({"fingerprint": fingerprint}))
    return ckpt


def test_served_name_changes_when_the_checkpoint_is_retrained_in_place(tmp_path: Path) -> None:
    config = PipelineConfig(runs_dir=tmp_path, run="r")
    ckpt = _checkpoint(tmp_path, "aaa")
    first = served_under_test(config, checkpoint_model("muonclip", ckpt)).served_name
    # stable: a running server is reused
    assert served_under_test(config, checkpoint_model("muonclip", ckpt)).served_name == first
    _checkpoint(tmp_path, "bbb")  # same folder, new weights
    assert served_under_test(config, checkpoint_model("muonclip", ckpt)).served_name != first


def test_a_server_left_running_with_the_old_weights_is_refused(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = PipelineConfig(runs_dir=tmp_path, run="r")
    ckpt = _checkpoint(tmp_path, "aaa")
    stale = served_under_test(config, checkpoint_model("muonclip", ckpt)).served_name
    _checkpoint(tmp_path, "bbb")
    info = server.ServerInfo(port=config.eval.port, model_dir=str(ckpt), served_name=stale, dtype="float32",
                             dtype_reason="", cpu="", cpu_flags=[], tool_call_parser=TOOL_CALL_PARSER)
    monkeypatch.setattr(server, "is_healthy", lambda cfg, timeout_s=2: True)
    monkeypatch.setattr(server, "server_info", lambda cfg: info)
    monkeypatch.setattr(server, "start", lambda cfg: pytest.fail("must not start over a running server"))
    with pytest.raises(server.ServerError, match=f"already serves {stale}"), \
            serving(served_under_test(config, checkpoint_model("muonclip", ckpt)), 4):
        pass


def test_the_improve_agent_refuses_another_model_on_its_port(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from synth.improve.steps import served_agent

    config = PipelineConfig(runs_dir=tmp_path, run="r")
    ckpt = _checkpoint(tmp_path, "aaa")
    info = server.ServerInfo(port=config.eval.port + 1, model_dir="/elsewhere", served_name="agent-other",
                             dtype="float32", dtype_reason="", cpu="", cpu_flags=[], tool_call_parser=TOOL_CALL_PARSER)
    monkeypatch.setattr(server, "is_healthy", lambda cfg, timeout_s=2: True)
    monkeypatch.setattr(server, "server_info", lambda cfg: info)
    with pytest.raises(server.ServerError, match="already serves agent-other from /elsewhere"), \
            served_agent(config, ckpt):
        pass
