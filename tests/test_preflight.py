"""The start-up rate probe: it never ends a run, and a recent measurement of the same server is used instead of
probing again."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from synth import preflight as pf
from synth.config import EndpointConfig, PipelineConfig
from tests.fixtures.fake_openai import completion


class _Server:
    def __init__(self, chat_reply: str) -> None:
        self.chat_reply = chat_reply
        self.chats = 0


@contextmanager
def _serving(chat_reply: str, models_reply: str | None = None) -> Iterator[tuple[_Server, str]]:
    """A threaded HTTP server (the probe runs its own event loops): a model list (or ``models_reply``), and
    ``chat_reply`` to chats."""
    state = _Server(chat_reply)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, text: str) -> None:
            data = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            listed = {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0,
                                                  "owned_by": "t"}]}
            self._send(models_reply if models_reply is not None else json.dumps(listed))

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.chats += 1
            self._send(state.chat_reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _config(tmp_path: Path, url: str) -> tuple[PipelineConfig, list[EndpointConfig]]:
    endpoints = [EndpointConfig(base_url=url)]
    return PipelineConfig(runs_dir=tmp_path, run="r", llm={"endpoints": endpoints, "probe_rate": True}), endpoints


@pytest.mark.parametrize("reply", ["garbage{", "", "<html>502</html>", json.dumps({"id": "x"})])
def test_a_garbage_reply_during_the_probe_leaves_the_rate_unknown_and_the_run_going(tmp_path: Path,
                                                                                    reply: str) -> None:
    with _serving(reply) as (server, url):
        config, endpoints = _config(tmp_path, url)
        _, pre = pf.preflight(config, endpoints)
    assert server.chats >= 1
    assert pre.probe is None and pre.probe_note is not None and pre.probe_note.startswith("rate unknown")
    assert pre.timeout_source == "default (no rate measured)"
    assert any("rate unknown" in line for line in pf.describe(pre))
    assert not (tmp_path / pf.RATES_DIR).exists()  # nothing measured, nothing kept


def test_a_recent_measurement_of_the_same_server_is_used_instead_of_probing(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with _serving(json.dumps(completion("x " * 48, completion_tokens=48))) as (server, url):
        config, endpoints = _config(tmp_path, url)
        _, first = pf.preflight(config, endpoints)
        probed = server.chats
        assert first.probe is not None and first.probe_note is None and probed == 18  # warm-up, one, 16
        _, again = pf.preflight(config, endpoints)
        assert server.chats == probed  # not one request more
        assert again.probe == first.probe and again.probe_note and "not probed again" in again.probe_note
        other = tmp_path / "elsewhere"
        pf.preflight(_config(other, url)[0], endpoints)  # another runs folder keeps its own measurements
        assert server.chats == 2 * probed
        monkeypatch.setattr(pf, "PROBE_MAX_AGE_S", 0.0)
        monkeypatch.setattr(pf.recent_rate, "__defaults__", (0.0,))
        pf.preflight(config, endpoints)  # too old now: measured again
        assert server.chats == 3 * probed


def test_a_page_instead_of_a_model_list_leaves_the_rate_unknown_naming_the_url(tmp_path: Path) -> None:
    with _serving(json.dumps(completion("hi")), models_reply="<html>Sign in</html>") as (server, url):
        config, endpoints = _config(tmp_path, url)
        _, pre = pf.preflight(config, endpoints)
    assert pre.probe is None and pre.probe_note is not None
    assert f"{url}/models" in pre.probe_note and "Sign in" in pre.probe_note
    assert server.chats == 0  # no model, no probe


def test_a_broken_registry_file_stops_the_run_before_the_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synth.tools import registry
    from synth.tools.validate import RegistryFileError

    mcp = tmp_path / "mcp"
    mcp.mkdir()
    (mcp / "npm__x.jsonl").write_text('{"server": "npm/x", "regis\n')
    monkeypatch.setattr(registry, "MCP_DIR", mcp)
    with _serving(json.dumps(completion("hi"))) as (server, url):
        config, endpoints = _config(tmp_path, url)
        with pytest.raises(RegistryFileError, match=r"npm__x\.jsonl:1"):
            pf.preflight(config, endpoints)
    assert server.chats == 0  # nothing was sent, nothing paid
