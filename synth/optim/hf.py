"""Max-logit capture inside Hugging Face transformers models (Llama, Mistral, Qwen2/3, DeepSeek-V3 families).

transformers routes every attention layer through ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]`` and
builds the mask through ``ALL_MASK_ATTENTION_FUNCTIONS`` under the same name. ``install_capture`` registers
two implementations and switches the model to one:

- ``"muonclip"``: exact eager attention (any device), fed the boolean mask that the ``sdpa`` implementation
  gets;
- ``"muonclip_flex"``: flex_attention with ``AuxRequest(max_scores=True)`` (CUDA), fed the ``flex_attention``
  BlockMask.

Both write each layer's per-head max logit to ``module.qk_max_logits``. transformers is imported only here, so
the rest of ``synth.optim`` works without it. Sliding-window and soft-capped attention are not handled.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from synth.optim.capture import (
    EAGER_NAME,
    FLEX_NAME,
    capture_enabled,
    eager_attention_with_max,
    enable_capture,
    flex_attention_with_max,
    flex_available,
    record_max_logits,
)
from synth.optim.families import attention_specs


def _is_causal(module: nn.Module, query: Tensor, kwargs: dict[str, Any]) -> bool:
    causal = kwargs.get("is_causal")
    if causal is None:
        causal = getattr(module, "is_causal", True)
    # One query token (decoding) attends to the whole cache.
    return bool(causal) and query.size(2) > 1


def muonclip_eager_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers attention function: ``(B, H, L, D)`` in, ``(B, L, H, Dv)`` out, max logits captured."""
    if dropout and module.training:
        raise ValueError("muonclip attention does not implement attention dropout; set attention_dropout=0")
    scale = scaling if scaling is not None else query.size(-1) ** -0.5
    mask = attention_mask
    if mask is not None and mask.dim() == 4:
        mask = mask[:, :, :, : key.size(2)]
    causal = mask is None and _is_causal(module, query, kwargs)
    out, per_head_max = eager_attention_with_max(
        query, key, value, scale=scale, causal=causal, attn_mask=mask
    )
    if capture_enabled(module):
        record_max_logits(module, per_head_max)
    return out.transpose(1, 2).contiguous(), None


def muonclip_flex_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers attention function on flex_attention; per-head maxima from the kernel's max_scores."""
    if isinstance(attention_mask, Tensor):
        # A dense mask (some callers build one regardless of the implementation) takes the exact eager path.
        return muonclip_eager_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    if dropout and module.training:
        raise ValueError("muonclip attention does not implement attention dropout; set attention_dropout=0")
    scale = scaling if scaling is not None else query.size(-1) ** -0.5
    causal = attention_mask is None and _is_causal(module, query, kwargs)
    capture = capture_enabled(module)
    out, per_head_max = flex_attention_with_max(
        query, key, value, scale=scale, causal=causal, block_mask=attention_mask, want_max=capture
    )
    if capture and per_head_max is not None:
        record_max_logits(module, per_head_max)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Register both implementations (attention and mask) with transformers; idempotent."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    except ImportError as exc:
        raise ImportError(
            "synth.optim.hf needs transformers with AttentionInterface and masking_utils (>= 4.53); "
            "install transformers or use synth.optim.reference_model"
        ) from exc
    AttentionInterface.register(EAGER_NAME, muonclip_eager_attention)
    AttentionInterface.register(FLEX_NAME, muonclip_flex_attention)
    # Without a mask function under the same name transformers would build no causal mask at all.
    ALL_MASK_ATTENTION_FUNCTIONS.register(EAGER_NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    ALL_MASK_ATTENTION_FUNCTIONS.register(FLEX_NAME, ALL_MASK_ATTENTION_FUNCTIONS["flex_attention"])


def install_capture(
    model: nn.Module, backend: Literal["auto", "eager", "flex"] = "auto", family: str | None = None
):
    """Switch a Hugging Face model to max-logit-capturing attention and enable capture on its attention
    layers.

    Returns the attention specs (for ``QKClip``). ``auto`` is flex on CUDA, eager elsewhere.
    """
    if backend not in ("auto", "eager", "flex"):
        raise ValueError(f"unknown backend {backend!r}; supported: 'auto', 'eager', 'flex'")
    register()
    on_cuda = next(model.parameters()).is_cuda
    use_flex = backend == "flex" or (backend == "auto" and on_cuda and flex_available())
    name = FLEX_NAME if use_flex else EAGER_NAME
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        try:
            setter(name)
        except (ValueError, TypeError, KeyError):
            setter = None
    if not callable(setter):
        for m in model.modules():
            cfg = getattr(m, "config", None)
            if cfg is not None and hasattr(cfg, "_attn_implementation"):
                cfg._attn_implementation = name
    specs = attention_specs(model, family)
    for s in specs:
        enable_capture(s.module)
    return specs


@torch.no_grad()
def attn_implementation(model: nn.Module) -> str | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "_attn_implementation", None)
