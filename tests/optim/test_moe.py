"""MoE experts stored as 3-D tensors (experts, out, in) go to Muon, one matrix per expert: the batched update
equals a loop that applies K2's rule to each expert's matrix on its own, with each expert's own shape scale."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from synth.optim import MuonClip, split_params
from tests.fixtures.optim import fp64_newton_schulz

COEFFS = (3.4445, -4.7750, 2.0315)
LR, WD, MU = 0.01, 0.1, 0.95


class TinyExperts(nn.Module):
    """A router, experts as one 3-D tensor (as transformers 5 stores them) and a 3-D non-expert tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(8, 3, bias=False, dtype=torch.float64)
        self.experts = nn.Module()
        self.experts.up = nn.Parameter(torch.randn(3, 12, 8, dtype=torch.float64) * 0.1)
        self.experts.down = nn.Parameter(torch.randn(3, 8, 12, dtype=torch.float64) * 0.1)
        self.conv = nn.Conv1d(8, 8, 3, bias=False).double()  # 3-D but not experts: AdamW

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.router(x).softmax(-1)  # (B, E)
        h = torch.einsum("eoi,bi->beo", self.experts.up, x).relu()
        y = torch.einsum("eio,beo->bei", self.experts.down, h)
        return (gates.unsqueeze(-1) * y).sum(1) + self.conv(x.unsqueeze(-1).expand(-1, -1, 3)).squeeze(-1)


def _per_expert_reference(start: dict[str, torch.Tensor], grads: list[dict[str, torch.Tensor]]):
    """K2's Algorithm 1 written out, expert by expert, in fp64, from the weights ``start``."""
    weights = {n: w.clone() for n, w in start.items()}
    momenta = {n: torch.zeros_like(w) for n, w in weights.items()}
    for g_step in grads:
        for n, w in weights.items():
            mats = [(w, momenta[n], g_step[n])] if w.ndim == 2 else list(zip(w, momenta[n], g_step[n], strict=True))
            for w_e, m_e, g_e in mats:  # views: updating them updates the 3-D tensor
                m_e.mul_(MU).add_(g_e)
                o = fp64_newton_schulz(m_e, COEFFS, 5, 1e-7)
                scale = 0.2 * max(w_e.shape) ** 0.5  # the expert's own shape
                w_e.sub_(LR * (scale * o + WD * w_e))
    return weights


def _check_batched_equals_loop(model: nn.Module, loss_fn, expert_names: set[str]) -> None:
    split = split_params(model)
    muon = dict(split.muon)
    assert expert_names <= set(muon), expert_names - set(muon)
    assert all(p.ndim == 2 or n in expert_names for n, p in muon.items())
    start = {n: p.detach().clone() for n, p in muon.items()}
    opt = MuonClip(split.param_groups(), lr=LR, weight_decay=WD, ns_dtype=torch.float64)
    grads = []
    for _ in range(3):
        loss_fn(model).backward()
        grads.append({n: p.grad.detach().clone() for n, p in muon.items()})
        opt.step()
        opt.zero_grad()
    expected = _per_expert_reference(start, grads)
    for n, p in muon.items():
        torch.testing.assert_close(p.detach(), expected[n], rtol=1e-12, atol=1e-13, msg=n)
        if p.ndim == 3:  # each expert moved: the stack was not skipped
            assert all(not torch.equal(a, b) for a, b in zip(p.detach(), start[n], strict=True)), n


def test_expert_stack_is_a_batch_of_matrices_in_a_plain_module() -> None:
    torch.manual_seed(0)
    model = TinyExperts()
    split = split_params(model)
    assert "conv.weight" in {n for n, _ in split.adamw}
    x = torch.randn(5, 8, dtype=torch.float64)
    _check_batched_equals_loop(model, lambda m: m(x).pow(2).mean(), {"experts.up", "experts.down"})


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
@pytest.mark.parametrize("family", ["mixtral", "deepseek_v3"])
def test_hf_moe_experts_go_to_muon_per_expert(family: str) -> None:
    import transformers

    torch.manual_seed(0)
    if family == "mixtral":
        cfg = transformers.MixtralConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=24,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_local_experts=4,
            num_experts_per_tok=2,
            max_position_embeddings=64,
        )
        # The eager experts loop: the grouped-GEMM default takes no fp64.
        model = transformers.MixtralForCausalLM._from_config(cfg, experts_implementation="eager").double()
    else:
        if not hasattr(transformers, "DeepseekV3ForCausalLM"):
            pytest.skip("this transformers has no DeepSeek-V3")
        cfg = transformers.DeepseekV3Config(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            moe_intermediate_size=16,
            num_hidden_layers=2,
            first_k_dense_replace=1,
            num_attention_heads=4,
            num_key_value_heads=4,
            q_lora_rank=None,
            kv_lora_rank=16,
            qk_nope_head_dim=8,
            qk_rope_head_dim=4,
            v_head_dim=8,
            max_position_embeddings=64,
            n_routed_experts=4,
            num_experts_per_tok=2,
            n_group=1,
            topk_group=1,
        )
        model = transformers.DeepseekV3ForCausalLM._from_config(cfg, experts_implementation="eager").double()
    experts = {n for n, p in model.named_parameters() if p.ndim == 3}
    assert experts, "this transformers stores experts as 2-D modules; the 3-D path is not exercised"
    tokens = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(1))
    _check_batched_equals_loop(model, lambda m: m(tokens, labels=tokens).loss, experts)
