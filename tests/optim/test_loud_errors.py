"""Misuse that used to be a silent no-op fails with a message that says what to do."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from synth.optim import MuonClip, QKClip, attention_specs
from synth.optim.qk_clip import clip_mha_gqa_

from .helpers import tiny, tokens


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
def test_hf_model_without_capture_is_refused_by_for_model() -> None:
    import transformers

    from synth.optim.hf import install_capture

    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(cfg)
    with pytest.raises(ValueError, match=r"install_capture\(model\)"):
        MuonClip.for_model(model, tau=100.0)
    with pytest.raises(ValueError, match=r"install_capture\(model\)"):
        QKClip.for_model(model)
    MuonClip.for_model(model, tau=None)  # no clip asked for: nothing to capture
    install_capture(model, "eager")
    opt = MuonClip.for_model(model, tau=1e-3)
    x = torch.randint(0, 64, (2, 8))
    model(x, labels=x).loss.backward()
    opt.step()
    assert opt.last_clip_stats is not None and opt.last_clip_stats.total_clipped > 0


def test_step_without_any_captured_logit_raises() -> None:
    model = tiny("mha")
    opt = MuonClip.for_model(model, tau=100.0)
    with torch.no_grad():
        model.loss(tokens())  # not captured
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    with pytest.raises(RuntimeError, match="recorded a max logit"):
        opt.step()
    QKClip(attention_specs(model), require_capture=False).step()  # the opt-out for steps with no forward


@pytest.mark.parametrize("tau", [math.nan, 0.0, -1.0, math.inf, "100"])
def test_bad_tau_is_rejected(tau: object) -> None:
    model = tiny("gqa")
    with pytest.raises(ValueError, match="tau must be"):
        MuonClip.for_model(model, tau=tau)  # type: ignore[arg-type]
    clip = QKClip(attention_specs(model))
    with pytest.raises(ValueError, match="tau must be"):
        clip.tau = tau  # type: ignore[assignment]
    with pytest.raises(ValueError, match="tau must be"):
        clip_mha_gqa_(clip.specs[0], torch.full((4,), 500.0, dtype=torch.float64), tau)  # type: ignore[arg-type]


def test_group_without_use_muon_is_a_clear_error() -> None:
    p = torch.nn.Parameter(torch.randn(4, 4))
    q = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="use_muon=True"):
        MuonClip([{"params": [p], "use_muon": True}, {"params": [q]}])
    opt = MuonClip([{"params": [p], "use_muon": True}])
    with pytest.raises(ValueError, match=r"use_muon=True .*split_params"):
        opt.add_param_group({"params": [q], "lr": 1e-3})
    with pytest.raises(ValueError, match="True or False"):
        opt.add_param_group({"params": [q], "use_muon": "yes"})
    with pytest.raises(ValueError, match="3-D stacks of expert"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.randn(2, 2, 2, 2))], "use_muon": True})


def test_unknown_ns_method_and_gqa_rule_are_rejected() -> None:
    p = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="standard, gram"):
        MuonClip([{"params": [p], "use_muon": True}], ns_method="fast")
    with pytest.raises(ValueError, match="query, split"):
        QKClip(attention_specs(tiny("gqa")), gqa_rule="both")  # type: ignore[arg-type]
