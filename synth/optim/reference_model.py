"""A small decoder-only transformer whose attention reports its max logits: the model of the tests, the study
and the capture benchmark. Attention comes in three kinds (MHA, GQA, MLA) so QK-Clip can be checked on each.

Each attention module exposes ``qk_clip_spec(name)``; ``synth.optim.families.attention_specs`` finds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synth.optim.capture import Backend, attention_with_max_logits
from synth.optim.spec import AttentionKind, AttentionSpec


@dataclass(frozen=True)
class TinyDecoderConfig:
    vocab_size: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 4
    head_dim: int = 16
    d_mlp: int = 128
    attention: AttentionKind = "mha"
    # MLA only: per-head non-rotary / rotary / value dims and the compressed key-value rank.
    nope_dim: int = 16
    rope_dim: int = 8
    v_head_dim: int = 16
    kv_rank: int = 32
    qkv_bias: bool = False
    rope_theta: float = 10000.0
    backend: Backend = "auto"


def _rope(x: Tensor, theta: float) -> Tensor:
    """Rotary embedding over the last dim of ``(B, H, L, D)`` (half-split layout, as in Llama)."""
    seq, dim = x.size(-2), x.size(-1)
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float64) / dim))
    ang = torch.outer(torch.arange(seq, device=x.device, dtype=torch.float64), inv)
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(x.dtype)
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(x.dtype)
    x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class StandardAttention(nn.Module):
    """MHA (n_kv_heads == n_heads) or GQA (fewer key/value heads), RoPE on q and k."""

    def __init__(self, cfg: TinyDecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        c = self.cfg
        q = _rope(self.q_proj(x).view(b, t, c.n_heads, c.head_dim).transpose(1, 2), c.rope_theta)
        k = _rope(self.k_proj(x).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2), c.rope_theta)
        v = self.v_proj(x).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2)
        o = attention_with_max_logits(q, k, v, module=self, causal=True, backend=c.backend)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, -1))

    def qk_clip_spec(self, name: str) -> AttentionSpec:
        c = self.cfg
        return AttentionSpec(
            name=name,
            module=self,
            kind="mha" if c.n_kv_heads == c.n_heads else "gqa",
            num_heads=c.n_heads,
            num_kv_heads=c.n_kv_heads,
            head_dim=c.head_dim,
            q_weight=self.q_proj.weight,
            k_weight=self.k_proj.weight,
            q_bias=self.q_proj.bias,
            k_bias=self.k_proj.bias,
        )


class LatentAttention(nn.Module):
    """MLA as in DeepSeek-V3 / Kimi K2: per-head [nope | rope] queries, keys and values from a compressed
    latent, and one rotary key shared by all heads."""

    def __init__(self, cfg: TinyDecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.n_heads
        self.q_proj = nn.Linear(cfg.d_model, h * (cfg.nope_dim + cfg.rope_dim), bias=False)
        self.kv_a_proj = nn.Linear(cfg.d_model, cfg.kv_rank + cfg.rope_dim, bias=False)
        self.kv_norm = nn.RMSNorm(cfg.kv_rank)
        self.kv_b_proj = nn.Linear(cfg.kv_rank, h * (cfg.nope_dim + cfg.v_head_dim), bias=False)
        self.o_proj = nn.Linear(h * cfg.v_head_dim, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        c = self.cfg
        h = c.n_heads
        q = self.q_proj(x).view(b, t, h, c.nope_dim + c.rope_dim).transpose(1, 2)
        q_nope, q_rope = q.split([c.nope_dim, c.rope_dim], -1)
        latent, k_rope = self.kv_a_proj(x).split([c.kv_rank, c.rope_dim], -1)
        kv = self.kv_b_proj(self.kv_norm(latent)).view(b, t, h, c.nope_dim + c.v_head_dim).transpose(1, 2)
        k_nope, v = kv.split([c.nope_dim, c.v_head_dim], -1)
        k_rope = _rope(k_rope.unsqueeze(1), c.rope_theta).expand(b, h, t, c.rope_dim)
        q = torch.cat([q_nope, _rope(q_rope, c.rope_theta)], -1)
        k = torch.cat([k_nope, k_rope], -1)
        o = attention_with_max_logits(q, k, v, module=self, causal=True, backend=c.backend)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, -1))

    def qk_clip_spec(self, name: str) -> AttentionSpec:
        c = self.cfg
        return AttentionSpec(
            name=name,
            module=self,
            kind="mla",
            num_heads=c.n_heads,
            num_kv_heads=c.n_heads,
            head_dim=c.nope_dim + c.rope_dim,
            q_weight=self.q_proj.weight,
            k_weight=self.kv_b_proj.weight,
            nope_dim=c.nope_dim,
            rope_dim=c.rope_dim,
            v_head_dim=c.v_head_dim,
        )


class Block(nn.Module):
    def __init__(self, cfg: TinyDecoderConfig) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model)
        self.attn: nn.Module = LatentAttention(cfg) if cfg.attention == "mla" else StandardAttention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.d_model)
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)
        self.down_proj = nn.Linear(cfg.d_mlp, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attn_norm(x))
        h = self.mlp_norm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class TinyDecoder(nn.Module):
    def __init__(self, cfg: TinyDecoderConfig) -> None:
        super().__init__()
        if cfg.attention not in ("mha", "gqa", "mla"):
            raise ValueError(f"unknown attention kind {cfg.attention!r}; supported: 'mha', 'gqa', 'mla'")
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))

    def loss(self, tokens: Tensor) -> Tensor:
        logits = self(tokens[:, :-1])
        # Cross-entropy in fp32 at least (bf16 logits lose the small probabilities); fp64 stays fp64.
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1))
