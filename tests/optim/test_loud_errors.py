"""Misuse that used to be a silent no-op fails with a message that says what to do."""

from __future__ import annotations

import importlib.util
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from synth.errors import SynthError
from synth.optim import MuonClip, QKClip, attention_specs, enable_capture
from synth.optim.qk_clip import clip_mha_gqa_, clip_mla_
from synth.optim.reference_model import StandardAttention
from tests.fixtures.optim import tiny, tokens


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


class _PlainSdpaAttention(StandardAttention):
    """The reference attention with its capture left out: plain SDPA, as a layer a user forgot to switch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        c = self.cfg
        q = self.q_proj(x).view(b, t, c.n_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=c.n_kv_heads != c.n_heads)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, -1))


def _snapshot(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {f"param.{k}": v.detach().clone() for k, v in model.named_parameters()}
    names = {id(p): k for k, p in model.named_parameters()}
    for p, state in opt.state.items():
        out |= {f"state.{names[id(p)]}.{k}": v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    return out


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("attention", ["mha", "gqa"])
def test_one_layer_without_capture_raises_naming_it(attention: str) -> None:
    model = tiny(attention, layers=2)
    opt = MuonClip.for_model(model, tau=100.0, lr=0.01)
    model.loss(tokens()).backward()
    opt.step()  # a first, captured step, so the raising one has optimizer state to keep
    opt.zero_grad()
    model.layers[1].attn.__class__ = _PlainSdpaAttention  # layer 2 of 2 now skips the capture
    model.loss(tokens(seed=2)).backward()
    before = _snapshot(model, opt)
    with pytest.raises(SynthError, match=r"layers\.1\.attn") as info:
        opt.step()
    assert "layers.0.attn" not in str(info.value)  # the layer that did capture is not blamed
    assert "attention_with_max_logits" in info.value.hint and "install_capture" in info.value.hint
    assert isinstance(info.value, RuntimeError)  # what the all-layers check raised before
    _assert_same(_snapshot(model, opt), before)  # the raising step changed nothing


def test_first_step_with_one_layer_without_capture_raises() -> None:
    model = tiny("mha", layers=2)
    model.layers[1].attn.__class__ = _PlainSdpaAttention
    clip = QKClip(attention_specs(model))
    model.loss(tokens())
    with pytest.raises(SynthError, match=r"recorded no max logit.*: layers\.1\.attn$"):
        clip.step()
    QKClip(attention_specs(model), require_capture=False).step()  # the opt-out still lets it through


def _poisoned_step(value: float, **kwargs: object) -> tuple[torch.nn.Module, MuonClip]:
    """A 2-layer model after backward, with head 2 of layer 1's recorded max logit replaced by ``value``."""
    model = tiny("gqa", layers=2)
    opt = MuonClip.for_model(model, tau=0.5, lr=0.01, **kwargs)  # type: ignore[arg-type]
    model.loss(tokens()).backward()
    model.layers[1].attn.qk_max_logits[2] = value
    return model, opt


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_max_logit_raises_naming_layer_and_head(value: float) -> None:
    model, opt = _poisoned_step(value)
    before = _snapshot(model, opt)
    with pytest.raises(SynthError, match=rf"layers\.1\.attn.*{value}.*head 2") as info:
        opt.step()
    assert "layers.0.attn" not in str(info.value)
    assert "on_nonfinite" in info.value.hint
    _assert_same(_snapshot(model, opt), before)
    # The capture was reset: a caller that catches the error and skips the batch goes on cleanly.
    opt.zero_grad()
    model.loss(tokens(seed=5)).backward()
    opt.step()
    assert opt.last_clip_stats is not None and opt.last_clip_stats.total_clipped > 0


def test_diverged_forward_raises() -> None:
    model = tiny("mha", layers=2)
    opt = MuonClip.for_model(model, tau=100.0, lr=0.01)
    with torch.no_grad():
        model.layers[0].attn.q_proj.weight[0, 0] = math.nan  # head 0 of layer 0 diverged
    model.loss(tokens()).backward()
    with pytest.raises(SynthError, match=r"non-finite max logit.*layers\.0\.attn: nan in head 0"):
        opt.step()


def test_skip_option_goes_on_counts_and_leaves_those_heads_alone(caplog: pytest.LogCaptureFixture) -> None:
    ref = tiny("gqa", layers=2)
    ref_opt = MuonClip.for_model(ref, tau=None, lr=0.01)  # the same update, no clip
    model, opt = _poisoned_step(math.nan, on_nonfinite="skip")
    ref.loss(tokens()).backward()
    with caplog.at_level(logging.WARNING, logger="synth.optim.qk_clip"):
        opt.step()
    ref_opt.step()
    stats = opt.last_clip_stats
    assert stats is not None and stats.skipped_total == 1
    assert stats.as_dict()["layers.1.attn"]["heads_skipped"] == 1
    assert stats.as_dict()["layers.0.attn"]["heads_skipped"] == 0
    assert "layers.1.attn" in caplog.text and "1 head" in caplog.text
    spec = opt.qk_clip.specs[1]  # type: ignore[union-attr]
    hd = spec.head_dim
    q, q_ref = spec.q_weight.detach(), ref.layers[1].attn.q_proj.weight.detach()
    assert torch.equal(q[2 * hd : 3 * hd], q_ref[2 * hd : 3 * hd])  # the NaN head: not clipped
    assert not torch.equal(q[: 2 * hd], q_ref[: 2 * hd])  # the finite heads over tau 0.5: clipped
    assert torch.isfinite(q).all()
    # A second poisoned step adds to the count.
    opt.zero_grad()
    model.loss(tokens(seed=3)).backward()
    model.layers[0].attn.qk_max_logits[:2] = math.inf
    opt.step()
    assert opt.last_clip_stats is not None and opt.last_clip_stats.skipped_total == 3
    assert opt.qk_clip is not None and opt.qk_clip.steps_skipped == 2


def test_on_nonfinite_must_be_raise_or_skip() -> None:
    with pytest.raises(ValueError, match="raise, skip"):
        QKClip(attention_specs(tiny("mha")), on_nonfinite="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize("on_nonfinite", ["raise", "skip"])
@pytest.mark.parametrize("attention", ["mha", "gqa", "mla"])
def test_finite_model_is_bitwise_the_clip_applied_layer_by_layer(attention: str, on_nonfinite: str) -> None:
    # The reference is the step before the loud checks: the update, then each layer's own pure clip.
    model, ref = tiny(attention, layers=2), tiny(attention, layers=2)
    opt = MuonClip.for_model(model, tau=0.5, lr=0.01, on_nonfinite=on_nonfinite)
    ref_opt = MuonClip.for_model(ref, tau=None, lr=0.01)
    ref_specs = attention_specs(ref)
    for s in ref_specs:
        enable_capture(s.module)
    for step in range(3):
        model.loss(tokens(seed=step)).backward()
        ref.loss(tokens(seed=step)).backward()
        opt.step()
        ref_opt.step()
        for s in ref_specs:
            clip_fn = clip_mla_ if s.kind == "mla" else clip_mha_gqa_
            clip_fn(s, s.module.qk_max_logits, 0.5)
            s.module.qk_max_logits = None
        opt.zero_grad()
        ref_opt.zero_grad()
    assert opt.last_clip_stats is not None and opt.last_clip_stats.total_clipped > 0
    assert opt.last_clip_stats.skipped_total == 0
    _assert_same(_snapshot(model, opt), _snapshot(ref, ref_opt))


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
def test_hf_layer_switched_to_sdpa_after_install_raises() -> None:
    import copy

    import transformers

    from synth.optim.hf import install_capture

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(cfg)
    install_capture(model, "eager")
    opt = MuonClip.for_model(model, tau=100.0)  # the model's config says muonclip: accepted
    attn = model.model.layers[1].self_attn
    attn.config = copy.copy(attn.config)
    attn.config._attn_implementation = "sdpa"  # one layer back on its own attention
    x = torch.randint(0, 64, (2, 8))
    model(x, labels=x).loss.backward()
    with pytest.raises(SynthError, match=r"model\.layers\.1\.self_attn.*'sdpa'"):
        opt.step()
