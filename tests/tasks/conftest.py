"""Fixtures for tasks tests."""

import pytest
from task_helpers import server_url


@pytest.fixture
def live_url() -> str:
    url = server_url()
    if url is None:
        pytest.skip("no OpenAI-compatible server at $SYNTH_BASE_URL or 127.0.0.1:8765 (start it: make serve)")
    return url
