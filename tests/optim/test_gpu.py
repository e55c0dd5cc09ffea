"""GPU checks: flex_attention's max_scores equal the eager maxima, batched bf16 Newton-Schulz matches torch's,
QK-Clip holds on CUDA, and the Hugging Face flex path captures what the eager path captures."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from synth.optim import MuonClip, QKClip, attention_specs, newton_schulz_batched
from synth.optim.capture import eager_attention_with_max, flex_attention_with_max
from synth.optim.reference_model import TinyDecoder, TinyDecoderConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_kv", [8, 2])
def test_flex_max_scores_equal_eager_max(dtype: torch.dtype, n_kv: int) -> None:
    torch.manual_seed(0)
    q = torch.randn(2, 8, 256, 64, device="cuda", dtype=dtype) * 3
    k = torch.randn(2, n_kv, 256, 64, device="cuda", dtype=dtype) * 3
    v = torch.randn(2, n_kv, 256, 64, device="cuda", dtype=dtype)
    out_f, max_f = flex_attention_with_max(q, k, v, scale=0.125, causal=True)
    out_e, max_e = eager_attention_with_max(q.float(), k.float(), v.float(), scale=0.125, causal=True)
    assert max_f is not None
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(max_f.float(), max_e, rtol=tol, atol=tol)
    torch.testing.assert_close(out_f.float(), out_e, rtol=5e-2, atol=5e-2)


def test_batched_bf16_newton_schulz_matches_torch() -> None:
    from torch.optim._muon import _zeropower_via_newtonschulz

    torch.manual_seed(0)
    g = torch.randn(6, 512, 1536, device="cuda")
    ours = newton_schulz_batched(g, 5).float()
    # torch's private signature gained/lost a use_addmm argument across versions; pass the four common ones.
    ref = torch.stack([_zeropower_via_newtonschulz(x, (3.4445, -4.7750, 2.0315), 5, 1e-7) for x in g]).float()
    rel = (ours - ref).norm() / ref.norm()
    assert rel < 2e-2, rel


@pytest.mark.parametrize("attention", ["mha", "gqa", "mla"])
def test_clip_on_cuda_caps_recomputed_logits(attention: str) -> None:
    torch.manual_seed(0)
    # One layer: clipping layer 0 would change the inputs of later layers, and the check is per layer.
    cfg = TinyDecoderConfig(attention=attention, n_layers=1, n_kv_heads=2 if attention == "gqa" else 4)  # type: ignore[arg-type]
    model = TinyDecoder(cfg).cuda()
    clip = QKClip(attention_specs(model), tau=1.0)
    tokens = torch.randint(0, 256, (4, 128), device="cuda")
    model.loss(tokens)
    before = clip.step()
    assert before.total_clipped > 0
    model.loss(tokens)
    after = clip.gather()
    for s_before, s_after in zip(before.per_head, after, strict=True):
        torch.testing.assert_close(s_after, s_before.clamp(max=1.0), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
def test_hf_llama_flex_capture_matches_eager() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from synth.optim.hf import install_capture

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    model = LlamaForCausalLM(cfg).cuda()
    tokens = torch.randint(0, 256, (2, 128), device="cuda")
    specs = install_capture(model, "eager")
    model(tokens)
    eager = [s.module.qk_max_logits.clone() for s in specs]
    QKClip(specs).reset()
    specs = install_capture(model, "flex")
    model(tokens)
    flex = [s.module.qk_max_logits.clone() for s in specs]
    for e, f in zip(eager, flex, strict=True):
        torch.testing.assert_close(f, e, rtol=1e-4, atol=1e-4)
    opt = MuonClip.for_model(model, tau=0.05)
    model(tokens).logits.float().mean().backward()
    opt.step()
    assert opt.last_clip_stats is not None and opt.last_clip_stats.total_clipped > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("fuse_diagonal", [False, True])
def test_fused_muon_step_matches_torch_ops(dtype: torch.dtype, nesterov: bool, fuse_diagonal: bool) -> None:
    """The Triton passes give the torch-op path's update: buffers bitwise, weights to bf16 NS noise."""
    from synth.optim import fused

    if not fused.HAVE_TRITON:
        pytest.skip("needs Triton")
    torch.manual_seed(0)
    shapes = [(256, 256), (64, 256), (1024, 256), (256, 1024), (256, 256), (1024, 256), (100, 37)]
    ps = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=dtype) * 0.02) for s in shapes]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opts = [
        MuonClip(
            [{"params": ps, "use_muon": True, "nesterov": nesterov}], lr=1e-2, fused=True, fuse_diagonal=fuse_diagonal
        ),
        MuonClip(
            [{"params": qs, "use_muon": True, "nesterov": nesterov}], lr=1e-2, fused=False, fuse_diagonal=fuse_diagonal
        ),
    ]
    for _ in range(3):
        for p, q in zip(ps, qs, strict=True):
            p.grad = torch.randn_like(p) * 1e-3
            q.grad = p.grad.clone()
        for opt in opts:
            opt.step()
        for p, q in zip(ps, qs, strict=True):
            buf_f, buf_t = opts[0].state[p]["momentum_buffer"], opts[1].state[q]["momentum_buffer"]
            torch.testing.assert_close(buf_f, buf_t, rtol=0, atol=0)
            # A last-bit difference of a norm may flip bf16 roundings in NS, and fp32 weights may differ in the
            # last bit (FMA contraction); the update itself is 1e-2 * O(1).
            atol = 2e-4 if dtype == torch.float32 else 1e-3
            torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=atol)


@pytest.mark.parametrize("shape", [(1024, 4096), (4096, 1024), (128, 896)])
def test_gram_bf16_on_cuda_is_as_close_to_fp64_as_standard(shape: tuple[int, int]) -> None:
    from synth.optim.newton_schulz import newton_schulz_iterate

    torch.manual_seed(0)
    x = torch.randn(4, *shape, device="cuda", dtype=torch.float64)
    x = x / x.norm(dim=(1, 2), keepdim=True)
    exact = newton_schulz_iterate(x, 5)
    dev = {}
    for method in ("standard", "gram"):
        out = newton_schulz_batched(x.float(), 5, method=method).double()
        dev[method] = float((out - exact).norm() / exact.norm())
    assert dev["gram"] < max(1.6 * dev["standard"], 0.025), dev


@pytest.mark.parametrize("ns_method", ["standard", "gram"])
def test_fused_step_with_expert_stacks_and_gram_matches_torch_ops(ns_method: str) -> None:
    """3-D expert stacks reach the Triton kernels as per-expert views (pointer tables with offsets)."""
    from synth.optim import fused

    if not fused.HAVE_TRITON:
        pytest.skip("needs Triton")
    torch.manual_seed(0)
    shapes = [(8, 256, 1024), (8, 1024, 256), (256, 1024), (37, 100)]
    ps = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=torch.bfloat16) * 0.02) for s in shapes]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opts = [
        MuonClip([{"params": ps, "use_muon": True}], lr=1e-2, fused=True, ns_method=ns_method),
        MuonClip([{"params": qs, "use_muon": True}], lr=1e-2, fused=False, ns_method=ns_method),
    ]
    for _ in range(3):
        for p, q in zip(ps, qs, strict=True):
            p.grad = torch.randn_like(p) * 1e-3
            q.grad = p.grad.clone()
        for opt in opts:
            opt.step()
    for p, q in zip(ps, qs, strict=True):
        buf_f, buf_t = opts[0].state[p]["momentum_buffer"], opts[1].state[q]["momentum_buffer"]
        torch.testing.assert_close(buf_f, buf_t, rtol=0, atol=0)
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-3)


def test_sharded_newton_schulz_over_nccl_equals_unsharded(tmp_path) -> None:
    """One-rank NCCL group (the lent machine has one GPU): the sharded path's all_gather_into_tensor and
    unpacking give the unsharded torch-op step."""
    import torch.distributed as dist

    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        shapes = [(256, 1024), (1024, 256), (512, 512), (256, 1024), (4, 128, 384)]
        ps = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=torch.bfloat16) * 0.02) for s in shapes]
        qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
        sharded = MuonClip([{"params": ps, "use_muon": True}], lr=1e-2, distributed=True)
        assert sharded.shards_newton_schulz()
        plain = MuonClip([{"params": qs, "use_muon": True}], lr=1e-2, distributed=False, fused=False)
        for _ in range(3):
            for p, q in zip(ps, qs, strict=True):
                p.grad = torch.randn_like(p) * 1e-3
                q.grad = p.grad.clone()
            sharded.step()
            plain.step()
        for p, q in zip(ps, qs, strict=True):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-3)
    finally:
        dist.destroy_process_group()
