"""Muon's update rule against torch.optim.Muon, Newton-Schulz's output band, AdamW against torch's."""

from __future__ import annotations

import pytest
import torch

from synth.optim import MuonClip, newton_schulz, newton_schulz_batched
from synth.optim.updates import adamw_update_
from tests.fixtures.optim import fp64_newton_schulz

SHAPES = [(8, 24), (24, 8), (8, 24), (16, 16), (5, 7)]


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("weight_decay", [0.1, 0.0])
def test_matches_torch_muon_with_fp64_newton_schulz(
    monkeypatch: pytest.MonkeyPatch, nesterov: bool, weight_decay: float
) -> None:
    monkeypatch.setattr(torch.optim._muon, "_zeropower_via_newtonschulz", fp64_newton_schulz)
    torch.manual_seed(0)
    ref = [torch.nn.Parameter(torch.randn(s, dtype=torch.float64)) for s in SHAPES]
    ours = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    opt_ref = torch.optim.Muon(
        ref,
        lr=0.02,
        weight_decay=weight_decay,
        momentum=0.95,
        nesterov=nesterov,
        adjust_lr_fn="match_rms_adamw",
    )
    opt = MuonClip(
        [{"params": ours, "use_muon": True}],
        lr=0.02,
        weight_decay=weight_decay,
        nesterov=nesterov,
        ns_dtype=torch.float64,
    )
    for _ in range(5):
        for p, q in zip(ref, ours, strict=True):
            g = torch.randn_like(p)
            p.grad, q.grad = g.clone(), g.clone()
        opt_ref.step()
        opt.step()
    for p, q in zip(ref, ours, strict=True):
        assert ((p - q).norm() / p.norm()).item() < 1e-13
        # Same momentum convention as torch, so even the state matches.
        torch.testing.assert_close(
            opt.state[q]["momentum_buffer"], opt_ref.state[p]["momentum_buffer"], rtol=1e-13, atol=0
        )


@pytest.mark.parametrize("nesterov", [None, False, True])
def test_k2_rule_written_out(nesterov: bool | None) -> None:
    """Three steps by hand. K2's Algorithm 1 (the default, nesterov None or False): M = mu*M + G; O = NS(M);
    W -= lr*(0.2*sqrt(max(A,B))*O + wd*W). The Nesterov option orthogonalises G + mu*M instead."""
    torch.manual_seed(0)
    w0 = torch.randn(6, 10, dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    kwargs = {} if nesterov is None else {"nesterov": nesterov}
    opt = MuonClip([{"params": [w], "use_muon": True}], lr=0.01, ns_dtype=torch.float64, **kwargs)
    m = torch.zeros_like(w0)
    for _ in range(3):
        g = torch.randn_like(w0)
        w.grad = g.clone()
        opt.step()
        m = 0.95 * m + g
        o = fp64_newton_schulz(g + 0.95 * m if nesterov else m, (3.4445, -4.7750, 2.0315), 5, 1e-7)
        w0 = w0 - 0.01 * (0.2 * 10**0.5 * o + 0.1 * w0)
    torch.testing.assert_close(w.detach(), w0, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (96, 200)])
def test_newton_schulz_singular_values_in_band(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    g = torch.randn(shape)
    for dtype in (torch.bfloat16, torch.float64):
        s = torch.linalg.svdvals(newton_schulz(g, dtype=dtype).double())
        # Keller Jordan's coefficients trade exactness for speed: S' lands in about [0.68, 1.14], not at 1.
        assert s.min() > 0.6 and s.max() < 1.25, (dtype, s.min(), s.max())


def test_batched_equals_one_at_a_time() -> None:
    torch.manual_seed(0)
    stack = torch.randn(3, 12, 40, dtype=torch.float64)
    batched = newton_schulz_batched(stack, dtype=torch.float64)
    for i in range(3):
        torch.testing.assert_close(batched[i], newton_schulz(stack[i], dtype=torch.float64), rtol=0, atol=0)


def test_bf16_deviation_from_exact_iteration_is_small() -> None:
    torch.manual_seed(0)
    g = torch.randn(64, 256)
    exact = newton_schulz(g, dtype=torch.float64)
    rel = (newton_schulz(g).double() - exact).norm() / exact.norm()
    assert rel < 0.03


def test_adamw_part_matches_torch_adamw() -> None:
    torch.manual_seed(0)
    ref = [torch.nn.Parameter(torch.randn(s, dtype=torch.float64)) for s in [(7,), (5, 3)]]
    ours = [p.detach().clone() for p in ref]
    opt_ref = torch.optim.AdamW(ref, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=False)
    m = [torch.zeros_like(p) for p in ours]
    v = [torch.zeros_like(p) for p in ours]
    steps = [torch.zeros((), dtype=torch.float32) for _ in ours]
    for _ in range(4):
        grads = [torch.randn_like(p) for p in ref]
        for p, g in zip(ref, grads, strict=True):
            p.grad = g.clone()
        opt_ref.step()
        adamw_update_(
            ours, grads, m, v, steps, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=False
        )
    for p, q in zip(ref, ours, strict=True):
        torch.testing.assert_close(q, p.detach(), rtol=1e-12, atol=1e-14)


def test_groups_must_say_which_rule() -> None:
    p = torch.nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="use_muon"):
        MuonClip([p])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="2-D"):
        MuonClip([{"params": [torch.nn.Parameter(torch.randn(4))], "use_muon": True}])


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (48, 48)])
def test_bf16_newton_schulz_is_bitwise_torchs_on_cpu(shape: tuple[int, int]) -> None:
    from torch.optim._muon import _zeropower_via_newtonschulz

    torch.manual_seed(0)
    g = torch.randn(shape) * 1e-3
    ref = _zeropower_via_newtonschulz(g, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    assert torch.equal(newton_schulz(g), ref)
