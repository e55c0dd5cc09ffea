"""flex_attention is compiled for dynamic shapes: a fine-tune's micro-batches come in dozens of shapes, and a
static compile falls back to the slow reference past dynamo's recompile limit (several times slower a step:
docs/studies/device-training.md)."""

from __future__ import annotations

import torch

from synth.optim import capture


def test_flex_compiles_once_for_all_shapes(monkeypatch) -> None:
    seen: dict[str, object] = {}

    def fake_compile(fn, **kwargs):
        seen.update(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    capture._compiled_flex.cache_clear()
    try:
        capture._compiled_flex(capture.FLEX_DYNAMIC)
    finally:
        capture._compiled_flex.cache_clear()
    assert seen.get("dynamic") is True
