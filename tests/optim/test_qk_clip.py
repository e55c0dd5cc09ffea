"""QK-Clip: after a clip the same batch tops out at min(S_max, tau) per head, and nothing else moves."""

from __future__ import annotations

import logging

import pytest
import torch

from synth.optim import MuonClip, QKClip, attention_specs, split_params
from synth.optim.qk_clip import AttentionSpec, clip_mha_gqa_
from tests.fixtures.optim import tiny, tokens


def _tau_between(s: torch.Tensor) -> float:
    # A tau that some heads exceed and some don't, so both branches are exercised.
    v = s.sort().values
    return float((v[len(v) // 2 - 1] + v[len(v) // 2]) / 2)


@pytest.mark.parametrize(
    ("attention", "bias"), [("mha", False), ("mha", True), ("gqa", False), ("mla", False)]
)
def test_recompute_gives_min_of_smax_and_tau(attention: str, bias: bool) -> None:
    model = tiny(attention, bias=bias)
    clip = QKClip(attention_specs(model))
    batch = tokens()
    model.loss(batch)
    s_before = clip.gather()[0].clone()
    clip.tau = _tau_between(s_before)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = clip.step()
    assert 0 < stats.total_clipped < s_before.numel()
    model.loss(batch)
    s_after = clip.gather()[0]
    torch.testing.assert_close(s_after, s_before.clamp(max=clip.tau), rtol=1e-12, atol=1e-12)

    spec = clip.specs[0]
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    names = {id(t): k for k, t in model.state_dict(keep_vars=True).items()}
    allowed = {names[id(spec.q_weight)], names[id(spec.k_weight)]}
    allowed |= {names[id(t)] for t in (spec.q_bias, spec.k_bias) if t is not None}
    assert changed and changed <= allowed, (
        changed - allowed
    )  # values, o_proj, MLP, norms, rotary key: untouched
    _check_untouched_rows(spec, before, names, s_before, clip.tau)


def _check_untouched_rows(
    spec: AttentionSpec, before: dict, names: dict, s: torch.Tensor, tau: float
) -> None:
    q_old = before[names[id(spec.q_weight)]].view(spec.num_heads, -1, spec.q_weight.shape[1])
    q_new = spec.q_weight.detach().view_as(q_old)
    k_rows = spec.nope_dim + spec.v_head_dim if spec.kind == "mla" else spec.head_dim
    k_old = before[names[id(spec.k_weight)]].view(-1, k_rows, spec.k_weight.shape[1])
    k_new = spec.k_weight.detach().view_as(k_old)
    over = s > tau
    for h in range(spec.num_heads):
        # Every kind (GQA's default rule included): a head at or under tau keeps its rows bitwise.
        if not over[h]:
            assert torch.equal(q_new[h], q_old[h]), h
            if spec.kind != "gqa":
                assert torch.equal(k_new[h], k_old[h]), h
    if spec.kind == "mla":
        assert torch.equal(k_new[:, spec.nope_dim :], k_old[:, spec.nope_dim :])  # value rows
    if spec.kind == "gqa":
        assert torch.equal(k_new, k_old)  # a shared key is left alone, as MLA's shared rotary key is


def test_mla_scales_rotary_query_by_gamma_and_nope_by_root() -> None:
    model = tiny("mla")
    spec = attention_specs(model)[0]
    q_old = spec.q_weight.detach().clone()
    kv_a_old = model.layers[0].attn.kv_a_proj.weight.detach().clone()
    s_max = torch.tensor([200.0, 50.0, 400.0, 100.0], dtype=torch.float64)
    QKClip([spec], tau=100.0)  # enable capture
    from synth.optim.qk_clip import clip_mla_

    clip_mla_(spec, s_max, 100.0)
    gamma = torch.tensor([0.5, 1.0, 0.25, 1.0], dtype=torch.float64)
    q = spec.q_weight.detach().view(4, 12, -1)
    q0 = q_old.view(4, 12, -1)
    torch.testing.assert_close(q[:, :8], q0[:, :8] * gamma.sqrt().view(4, 1, 1))
    torch.testing.assert_close(q[:, 8:], q0[:, 8:] * gamma.view(4, 1, 1))
    assert torch.equal(model.layers[0].attn.kv_a_proj.weight, kv_a_old)  # shared rotary key untouched


def test_gqa_clipped_head_takes_its_whole_gamma_on_its_query_rows() -> None:
    """GQA's default rule: the shared key rows are untouched, the clipped query head's rows take gamma, and
    heads at or under tau (here head 1, which shares head 0's key) are bitwise unchanged."""
    model = tiny("gqa")
    spec = attention_specs(model)[0]
    k_old = spec.k_weight.detach().clone()
    q_old = spec.q_weight.detach().clone().view(4, 8, -1)
    s_max = torch.tensor([400.0, 50.0, 80.0, 100.0], dtype=torch.float64)  # group 0 = heads 0, 1; 100 = tau
    n = clip_mha_gqa_(spec, s_max, 100.0)
    assert int(n) == 1
    q = spec.q_weight.detach().view(4, 8, -1)
    assert torch.equal(spec.k_weight, k_old)
    torch.testing.assert_close(q[0], q_old[0] * 0.25, rtol=0, atol=0)  # gamma = 100/400, exact in binary
    assert torch.equal(q[1:], q_old[1:])


def test_gqa_split_rule_shares_the_clip_with_the_key() -> None:
    """The optional "split" rule: shared key takes sqrt(gamma of the group's worst head), each query head
    gamma_h / sqrt(gamma_g), so the unclipped head 1 has its query rows scaled UP (its logits are unchanged)."""
    model = tiny("gqa")
    spec = attention_specs(model)[0]
    k_old = spec.k_weight.detach().clone().view(2, 8, -1)
    q_old = spec.q_weight.detach().clone().view(4, 8, -1)
    s_max = torch.tensor([400.0, 50.0, 80.0, 90.0], dtype=torch.float64)
    n = clip_mha_gqa_(spec, s_max, 100.0, gqa_rule="split")
    assert int(n) == 1
    k = spec.k_weight.detach().view(2, 8, -1)
    q = spec.q_weight.detach().view(4, 8, -1)
    torch.testing.assert_close(k[0], k_old[0] * 0.5)  # sqrt(100/400)
    assert torch.equal(k[1], k_old[1]) and torch.equal(q[2:], q_old[2:])  # group 1 untouched
    torch.testing.assert_close(q[0], q_old[0] * 0.5)  # gamma/sqrt(gamma_g) = 0.25/0.5
    torch.testing.assert_close(q[1], q_old[1] * 2.0)  # head under tau keeps its logits: 1/0.5


@pytest.mark.parametrize("gqa_rule", ["query", "split"])
def test_gqa_rules_both_cap_recomputed_logits(gqa_rule: str) -> None:
    model = tiny("gqa")
    clip = QKClip(attention_specs(model), gqa_rule=gqa_rule)  # type: ignore[arg-type]
    batch = tokens()
    model.loss(batch)
    s_before = clip.gather()[0].clone()
    clip.tau = _tau_between(s_before)
    clip.step()
    model.loss(batch)
    torch.testing.assert_close(clip.gather()[0], s_before.clamp(max=clip.tau), rtol=1e-12, atol=1e-12)


def test_optimizer_state_and_other_weights_match_an_unclipped_run() -> None:
    with_clip, without = tiny("gqa"), tiny("gqa")
    opt_a = MuonClip.for_model(with_clip, tau=0.5, lr=0.01)
    # Same attention path (capture on) in both, so the gradients are bitwise equal; only the clip differs.
    off = QKClip(attention_specs(without), tau=0.5, enabled=False)
    opt_b = MuonClip(split_params(without).param_groups(), lr=0.01, qk_clip=off)
    batch = tokens()
    with_clip.loss(batch).backward()
    without.loss(batch).backward()
    opt_a.step()
    opt_b.step()
    assert opt_a.last_clip_stats is not None and opt_a.last_clip_stats.total_clipped > 0
    spec = opt_a.qk_clip.specs[0]  # type: ignore[union-attr]
    clipped_ids = {id(spec.q_weight), id(spec.k_weight)}
    for (name, pa), pb in zip(with_clip.named_parameters(), without.parameters(), strict=True):
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        for key in sa:
            assert torch.equal(sa[key], sb[key]), (name, key)
        if id(pa) not in clipped_ids:
            assert torch.equal(pa, pb), name


def test_max_is_taken_over_micro_batches() -> None:
    model = tiny("mha")
    clip = QKClip(attention_specs(model))
    a, b = tokens(seed=1), tokens(seed=2)
    model.loss(a)
    s_a = clip.gather()[0].clone()
    clip.reset()
    model.loss(b)
    s_b = clip.gather()[0].clone()
    clip.reset()
    model.loss(a)
    model.loss(b)
    torch.testing.assert_close(clip.gather()[0], torch.maximum(s_a, s_b), rtol=0, atol=0)


def test_no_grad_forward_passes_are_not_captured() -> None:
    model = tiny("mha")
    clip = QKClip(attention_specs(model))
    with torch.no_grad():
        model.loss(tokens())
    assert torch.isinf(clip.gather()[0]).all()


def test_logs_max_logit_per_layer_and_heads_clipped(caplog: pytest.LogCaptureFixture) -> None:
    model = tiny("mha", layers=2)
    opt = MuonClip.for_model(model, tau=0.01)
    model.loss(tokens()).backward()
    with caplog.at_level(logging.INFO, logger="synth.optim.qk_clip"):
        opt.step()
    assert "heads_clipped=8" in caplog.text and "layers.1.attn" in caplog.text
    stats = opt.last_clip_stats.as_dict()  # type: ignore[union-attr]
    assert set(stats) == {"layers.0.attn", "layers.1.attn"} and stats["layers.0.attn"]["heads_clipped"] == 4


def test_disabled_clip_logs_but_does_not_touch_weights() -> None:
    model = tiny("mha")
    clip = QKClip(attention_specs(model), tau=1e-3, enabled=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.loss(tokens())
    stats = clip.step()
    assert stats.max_logit > 1e-3 and stats.total_clipped == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
