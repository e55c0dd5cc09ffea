"""Attention that reports its own per-head maximum logit, for QK-Clip.

QK-Clip needs ``S_max^h``, the largest pre-softmax logit ``q.k * scale`` of head h over every unmasked
position seen in a step's forward passes. It must come from the attention computation itself, not from a
second pass, so ``attention_with_max_logits`` returns it next to the output:

- on CUDA, ``flex_attention(..., return_aux=AuxRequest(max_scores=True))`` gives the row maxima from inside
  the fused kernel, at no extra pass over the scores;
- elsewhere (and as the reference), an eager path materialises the scores and takes the max before softmax.

``record_max_logits`` folds a per-head maximum into ``module.qk_max_logits`` (MAX over micro-batches); the
QKClip object reads, all-reduces and resets it after each optimizer step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CAPTURE_ATTR = "qk_max_logits"
_ENABLED_ATTR = "_qk_capture_enabled"

Backend = Literal["auto", "flex", "eager"]

# Names under which synth.optim.hf registers its capturing attention with transformers (here, torch-only, so
# the family readers can check a model's attention without importing transformers).
EAGER_NAME = "muonclip"
FLEX_NAME = "muonclip_flex"


def enable_capture(module: nn.Module, enabled: bool = True) -> None:
    """Mark an attention module whose forward passes should record per-head max logits."""
    setattr(module, _ENABLED_ATTR, enabled)
    if not hasattr(module, CAPTURE_ATTR):
        setattr(module, CAPTURE_ATTR, None)


def capture_enabled(module: nn.Module | None) -> bool:
    # Only forward passes that build a graph count: evaluation under no_grad between two steps must not feed
    # the clip of the next step.
    return module is not None and getattr(module, _ENABLED_ATTR, False) and torch.is_grad_enabled()


@torch.no_grad()
def record_max_logits(module: nn.Module, per_head_max: Tensor) -> None:
    """MAX-accumulate a ``(num_heads,)`` maximum into ``module.qk_max_logits`` (a plain attribute, not a
    buffer, so it never lands in a state_dict)."""
    # fp32 at least (bf16 maxima would round tau's neighbourhood to 0.4%), fp64 kept for exact tests.
    per_head_max = per_head_max.detach().to(torch.promote_types(per_head_max.dtype, torch.float32))
    current: Tensor | None = getattr(module, CAPTURE_ATTR, None)
    if current is None or current.shape != per_head_max.shape or current.device != per_head_max.device:
        setattr(module, CAPTURE_ATTR, per_head_max.clone())
    else:
        torch.maximum(current, per_head_max, out=current)


def reset_max_logits(module: nn.Module) -> None:
    setattr(module, CAPTURE_ATTR, None)


def eager_attention_with_max(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float,
    causal: bool,
    attn_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Exact reference: returns ``(out (B,H,L,Dv), per-head max logit (H,))``.

    ``k``/``v`` may have fewer heads than ``q`` (GQA: query head h reads key head ``h // (H/Hkv)``).
    ``attn_mask``: bool (True = attend) or additive float, broadcastable to ``(B, H, L, S)``.
    """
    bsz, n_heads, q_len, _ = q.shape
    n_kv, kv_len = k.size(1), k.size(2)
    if n_heads % n_kv:
        raise ValueError(f"query heads ({n_heads}) must be a multiple of key heads ({n_kv})")
    group = n_heads // n_kv
    scores = torch.matmul(q.view(bsz, n_kv, group, q_len, -1), k.unsqueeze(2).transpose(-1, -2)) * scale
    scores = scores.view(bsz, n_heads, q_len, kv_len)
    keep: Tensor | None = None
    if causal:
        # Queries are the last q_len positions of the kv_len keys (a KV cache puts them at the end).
        keep = torch.ones(q_len, kv_len, dtype=torch.bool, device=q.device).tril(kv_len - q_len)
    bias: Tensor | None = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            keep = attn_mask if keep is None else keep & attn_mask
        else:
            # Additive masks mark excluded positions with a huge negative number; anything else is a bias that
            # the softmax sees but S_max (q.k*scale by definition) does not.
            floor = torch.finfo(attn_mask.dtype).min / 2
            m_keep = attn_mask > floor
            keep = m_keep if keep is None else keep & m_keep
            bias = torch.where(
                m_keep, attn_mask, torch.zeros((), dtype=attn_mask.dtype, device=attn_mask.device)
            )
    masked = scores if keep is None else scores.masked_fill(~keep, float("-inf"))
    per_head_max = masked.detach().amax(dim=(0, 2, 3))
    logits = masked if bias is None else masked + bias
    probs = torch.softmax(logits.float(), dim=-1).to(q.dtype)
    # A row with every key masked gives NaN from softmax; such rows attend to nothing.
    probs = torch.nan_to_num(probs, nan=0.0)
    out = torch.matmul(probs.view(bsz, n_kv, group, q_len, kv_len), v.unsqueeze(2))
    return out.view(bsz, n_heads, q_len, -1), per_head_max


def flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import AuxRequest  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


# How flex_attention is compiled. A static compile specialises on every (batch, length) shape, and a fine-tune's
# micro-batches come in dozens of shapes: over 40 of them (a 135M model; docs/studies/device-training.md) a step
# takes about 6x longer static than dynamic, with the same max logits. Static recompiles each new shape
# and, past dynamo's recompile limit, leaves it uncompiled, which is the likely cause.
FLEX_DYNAMIC = True


@functools.cache
def _compiled_flex(dynamic: bool) -> Callable[..., Any]:
    from torch.nn.attention.flex_attention import flex_attention

    # Uncompiled flex_attention runs a slow reference; compiled, it is a fused Triton kernel.
    return torch.compile(flex_attention, dynamic=dynamic)


def _causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    return q_idx >= kv_idx


@functools.lru_cache(maxsize=32)
def causal_block_mask(q_len: int, kv_len: int, device: str) -> Any:
    from torch.nn.attention.flex_attention import create_block_mask

    if q_len != kv_len:
        offset = kv_len - q_len

        def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return q_idx + offset >= kv_idx

        return create_block_mask(mask_mod, None, None, q_len, kv_len, device=device)
    return create_block_mask(_causal, None, None, q_len, kv_len, device=device)


def flex_attention_with_max(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float,
    causal: bool,
    block_mask: Any = None,
    score_mod: Callable[..., Tensor] | None = None,
    want_max: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """flex_attention with ``AuxRequest(max_scores=True)``: per-row maxima from inside the fused kernel,
    reduced to ``(H,)``. Fully masked rows report -inf and so never win the max."""
    from torch.nn.attention.flex_attention import AuxRequest

    if block_mask is None and causal:
        block_mask = causal_block_mask(q.size(2), k.size(2), str(q.device))
    kwargs: dict[str, Any] = {"return_aux": AuxRequest(max_scores=True)} if want_max else {}
    result = _compiled_flex(FLEX_DYNAMIC)(
        q,
        k,
        v,
        score_mod=score_mod,
        block_mask=block_mask,
        scale=scale,
        enable_gqa=q.size(1) != k.size(1),
        **kwargs,
    )
    if not want_max:
        return result, None
    out, aux = result
    return out, aux.max_scores.detach().amax(dim=(0, 2))


def attention_with_max_logits(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    module: nn.Module | None = None,
    scale: float | None = None,
    causal: bool = True,
    attn_mask: Tensor | None = None,
    block_mask: Any = None,
    backend: Backend = "auto",
) -> Tensor:
    """Scaled dot-product attention over ``(B, H, L, D)`` tensors that records per-head max logits into
    ``module`` when capture is enabled there. Returns ``(B, H, L, Dv)``."""
    if scale is None:
        scale = q.size(-1) ** -0.5
    if backend not in ("auto", "flex", "eager"):
        raise ValueError(f"unknown attention backend {backend!r}; supported: 'auto', 'flex', 'eager'")
    use_flex = backend == "flex" or (
        backend == "auto" and q.is_cuda and attn_mask is None and flex_available()
    )
    capture = capture_enabled(module)
    if use_flex:
        if attn_mask is not None:
            raise ValueError("the flex backend takes a BlockMask (block_mask=...), not a dense attn_mask")
        out, per_head_max = flex_attention_with_max(
            q, k, v, scale=scale, causal=causal, block_mask=block_mask, want_max=capture
        )
    else:
        if block_mask is not None:
            raise ValueError(
                "a BlockMask needs the flex backend (CUDA); pass attn_mask for the eager backend"
            )
        if not capture and not (causal and attn_mask is not None):
            # Nothing to record (evaluation, or capture off): the plain fused kernel, no scores materialised.
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=causal, scale=scale, enable_gqa=q.size(1) != k.size(1)
            )
        out, per_head_max = eager_attention_with_max(q, k, v, scale=scale, causal=causal, attn_mask=attn_mask)
    if capture and per_head_max is not None:
        assert module is not None
        record_max_logits(module, per_head_max)
    return out
