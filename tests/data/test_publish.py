"""``synth publish`` against a Hub that cannot be reached or refuses: one message naming the Hub's URL and the repo,
and what to do for that case (no traceback of the HTTP client)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from synth.data.publish import PublishError, publish


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "README.md").write_text("card")
    (tmp_path / "data" / "train.parquet").write_bytes(b"PAR1")
    return tmp_path


@contextmanager
def _hub(status: int, error: str) -> Iterator[str]:
    """A Hub that answers every request with ``status`` and ``error`` as the Hub words its errors."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            data = json.dumps({"error": error}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Error-Message", error)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_HEAD = _answer  # the names http.server calls

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_hub_is_named_with_its_url(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed when the block ends: nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", dead)
    with pytest.raises(PublishError) as err:
        publish(built, "me/data", token="hf_test")
    message = str(err.value)
    assert f"cannot reach the Hub at {dead}" in message and "me/data" in message
    assert "HF_ENDPOINT" in err.value.hint and "hf_test" not in err.value.describe()


@pytest.mark.parametrize(("status", "says"), [(401, "not valid"), (403, "write access")])
def test_a_refusing_hub_says_its_status_and_what_to_do(built: Path, monkeypatch: pytest.MonkeyPatch, status: int,
                                                       says: str) -> None:
    with _hub(status, "Invalid credentials in Authorization header") as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(PublishError) as err:
            publish(built, "me/data", token="hf_test")
    message = str(err.value)
    assert f"the Hub at {url} refused" in message and f"HTTP {status}" in message and "me/data" in message
    assert "Invalid credentials" in message and says in err.value.hint
    assert "hf_test" not in err.value.describe()  # the token never appears in a message
