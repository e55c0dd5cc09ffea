"""Which parameters go to Muon, state_dict round trips, and clear errors for unknown models."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from synth.optim import MuonClip, attention_specs, split_params
from tests.fixtures.optim import tiny, tokens


def test_split_sends_embeddings_head_norms_and_biases_to_adamw() -> None:
    model = tiny("mha", bias=True)
    split = split_params(model)
    muon = {n for n, _ in split.muon}
    adamw = {n for n, _ in split.adamw}
    assert "embed_tokens.weight" in adamw and "lm_head.weight" in adamw
    assert all(n in adamw for n in ("norm.weight", "layers.0.attn.q_proj.bias", "layers.0.attn_norm.weight"))
    assert muon == {
        f"layers.0.{m}.weight" for m in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj")
    } | {f"layers.0.{m}.weight" for m in ("gate_proj", "up_proj", "down_proj")}
    assert len(muon) + len(adamw) == len(list(model.parameters()))


def test_tied_head_counts_once_and_goes_to_adamw() -> None:
    model = tiny("mha")
    model.lm_head.weight = model.embed_tokens.weight
    split = split_params(model)
    ids = [id(p) for _, p in split.muon + split.adamw]
    assert len(ids) == len(set(ids)) and id(model.embed_tokens.weight) in {id(p) for _, p in split.adamw}


def test_state_dict_round_trip_continues_bitwise() -> None:
    model = tiny("gqa")
    opt = MuonClip.for_model(model, tau=0.5, lr=0.01)
    for seed in (1, 2):
        model.loss(tokens(seed=seed)).backward()
        opt.step()
        opt.zero_grad()
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = torch.load(_roundtrip(opt.state_dict()), weights_only=True)

    clone = tiny("gqa", seed=123)
    clone.load_state_dict(saved_model)
    opt2 = MuonClip.for_model(clone, tau=0.5, lr=0.01)
    opt2.load_state_dict(saved_opt)
    for m, o in ((model, opt), (clone, opt2)):
        m.loss(tokens(seed=3)).backward()
        o.step()
    for (name, a), b in zip(model.named_parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b), name


def _roundtrip(state: dict):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_unknown_model_family_raises_with_supported_list() -> None:
    model = nn.Linear(4, 4)
    model.config = types.SimpleNamespace(model_type="gpt2")  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"'gpt2' is not supported.*llama.*qwen2"):
        attention_specs(model)
    with pytest.raises(ValueError, match="Supported"):
        attention_specs(nn.Sequential(nn.Linear(4, 4)))


def test_state_dict_from_before_ns_method_still_steps() -> None:
    """Checkpoints saved before ns_method existed have param groups without the key."""
    model = tiny("gqa")
    opt = MuonClip.for_model(model, tau=0.5, lr=0.01)
    model.loss(tokens(seed=1)).backward()
    opt.step()
    state = opt.state_dict()
    for g in state["param_groups"]:
        g.pop("ns_method")
    opt2 = MuonClip.for_model(model, tau=0.5, lr=0.01)
    opt2.load_state_dict(state)
    model.loss(tokens(seed=2)).backward()
    opt2.step()
