"""``synth bfcl`` end to end on the real embedded model: the base SmolLM2 served by vLLM with the tool template and
the hermes parser (as the command serves it by default), three items of simple_python and irrelevance in both
modes, then a rerun that asks nothing.

Why not the session's ``live_url`` server (tests/conftest.py): it runs the pipeline's configuration, without the
tool template and parser, so every FC reply there would be text whatever the model does; this test serves what
``synth bfcl`` serves, on a port of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.bfcl.run import ITEMS, read_records
from synth.cli import app
from synth.config import EmbeddedConfig
from synth.serve import server

PORT = 8781


@pytest.mark.integration
def test_synth_bfcl_scores_the_embedded_model_in_both_modes_and_resumes(tmp_path: Path) -> None:
    args = ["bfcl", "--model", "base", "--category", "simple_python,irrelevance", "--limit", "3", "--seed", "0",
            "--max-tokens", "96", "--concurrency", "4", "--out", str(tmp_path), "--keep-server",
            "--set", f"eval.port={PORT}", "--set", "eval.kv_cache_gb=1"]
    try:
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 0, f"{first.output}\n{first.exception!r}"
        rows = list(read_records(tmp_path / ITEMS).values())
        assert len(rows) == 2 * 2 * 3 and not [r for r in rows if r.request_error]
        assert {(r.mode, r.category) for r in rows} == {(m, c) for m in ("fc", "prompt")
                                                        for c in ("simple_python", "irrelevance")}
        for r in rows:
            assert r.reply is not None and r.completion_tokens > 0
            assert r.valid == (r.error_type is None)
        # The tools reached the model through the tool template (SmolLM2's own template drops them), and prompt
        # mode carried BFCL's long system prompt with the functions in it.
        fc = [r for r in rows if r.mode == "fc"]
        bare = [r for r in rows if r.mode == "prompt"]
        assert min(r.prompt_tokens for r in fc) > 120
        assert min(r.prompt_tokens for r in bare) > 250
        summary = json.loads((tmp_path / "summary.json").read_text())
        (name, scores), = summary["models"].items()
        assert {c: v["n"] for c, v in scores["fc"].items()} == {"simple_python": 3, "irrelevance": 3}
        assert summary["runs"][name]["server"]["tool_call_parser"] == "hermes"
        assert "| fc |" in (tmp_path / "summary.md").read_text()

        again = CliRunner().invoke(app, args)
        assert again.exit_code == 0, f"{again.output}\n{again.exception!r}"
        assert len((tmp_path / ITEMS).read_text().splitlines()) == 12  # nothing asked twice
        assert json.loads((tmp_path / "summary.json").read_text())["runs"][name]["resumed"] == 12
    finally:
        server.stop(EmbeddedConfig(port=PORT))
