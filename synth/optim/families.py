"""Which model families QK-Clip knows, and how to find their attention layers.

A module that defines ``qk_clip_spec(name) -> AttentionSpec`` (as ``reference_model`` does) is found anywhere
in any model. Hugging Face models are recognised by ``config.model_type``; their capture runs through
``synth.optim.hf.install_capture``. Anything else raises with the list of supported families.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from synth.optim.capture import EAGER_NAME, FLEX_NAME
from synth.optim.spec import AttentionSpec

SpecBuilder = Callable[[nn.Module], list[AttentionSpec]]


def _hf_config(model: nn.Module) -> object | None:
    return getattr(model, "config", None)


def _llama_like(model: nn.Module) -> list[AttentionSpec]:
    cfg = _hf_config(model)
    n_heads: int = cfg.num_attention_heads  # type: ignore[union-attr]
    n_kv: int = getattr(cfg, "num_key_value_heads", None) or n_heads
    head_dim: int = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads  # type: ignore[union-attr]
    specs = []
    for name, m in model.named_modules():
        if hasattr(m, "q_proj") and hasattr(m, "k_proj") and hasattr(m, "o_proj"):
            specs.append(
                AttentionSpec(
                    name=name,
                    module=m,
                    kind="mha" if n_kv == n_heads else "gqa",
                    num_heads=n_heads,
                    num_kv_heads=n_kv,
                    head_dim=head_dim,
                    q_weight=m.q_proj.weight,
                    k_weight=m.k_proj.weight,
                    q_bias=m.q_proj.bias,
                    k_bias=m.k_proj.bias,
                    # Qwen3 normalises q and k per head after the projections.
                    has_qk_norm=hasattr(m, "q_norm") or hasattr(m, "k_norm"),
                )
            )
    return specs


def _deepseek_v3(model: nn.Module) -> list[AttentionSpec]:
    cfg = _hf_config(model)
    n_heads: int = cfg.num_attention_heads  # type: ignore[union-attr]
    nope: int = cfg.qk_nope_head_dim  # type: ignore[union-attr]
    rope: int = cfg.qk_rope_head_dim  # type: ignore[union-attr]
    v_dim: int = cfg.v_head_dim  # type: ignore[union-attr]
    specs = []
    for name, m in model.named_modules():
        if getattr(m, "kv_b_proj", None) is not None and (
            getattr(m, "q_proj", None) is not None or getattr(m, "q_b_proj", None) is not None
        ):
            # With a low-rank query (q_lora_rank set) the per-head rows live in the up-projection q_b_proj.
            # transformers sets the unused one of q_proj / q_b_proj to None rather than leaving it out.
            q = getattr(m, "q_b_proj", None) or m.q_proj
            specs.append(
                AttentionSpec(
                    name=name,
                    module=m,
                    kind="mla",
                    num_heads=n_heads,
                    num_kv_heads=n_heads,
                    head_dim=nope + rope,
                    q_weight=q.weight,
                    k_weight=m.kv_b_proj.weight,
                    q_bias=q.bias,
                    k_bias=m.kv_b_proj.bias,
                    nope_dim=nope,
                    rope_dim=rope,
                    v_head_dim=v_dim,
                )
            )
    return specs


HF_FAMILIES: dict[str, SpecBuilder] = {
    "llama": _llama_like,
    "mistral": _llama_like,
    "mixtral": _llama_like,
    "qwen2": _llama_like,
    "qwen2_moe": _llama_like,
    "qwen3": _llama_like,
    "qwen3_moe": _llama_like,
    "deepseek_v3": _deepseek_v3,
    "kimi_k2": _deepseek_v3,
}


def supported_families() -> list[str]:
    return ["modules with qk_clip_spec() (synth.optim.reference_model)", *sorted(HF_FAMILIES)]


def attention_specs(model: nn.Module, family: str | None = None) -> list[AttentionSpec]:
    """Attention layers of ``model`` for QK-Clip.

    ``family`` overrides the detected Hugging Face ``model_type`` (say a fine-tune with a custom type that is
    Llama underneath).
    """
    own = [m.qk_clip_spec(name) for name, m in model.named_modules() if hasattr(m, "qk_clip_spec")]
    if own and family is None:
        return own
    cfg = _hf_config(model)
    model_type = family or getattr(cfg, "model_type", None)
    if model_type is None:
        raise ValueError(
            f"cannot find the attention layers of {type(model).__name__}: it has no qk_clip_spec() modules "
            f"and no Hugging Face config. Supported: {', '.join(supported_families())}. Pass family=... for "
            "a model that is one of these underneath, or build AttentionSpec objects and pass them to QKClip."
        )
    if model_type not in HF_FAMILIES:
        raise ValueError(
            f"model family {model_type!r} is not supported by QK-Clip; "
            f"supported: {', '.join(supported_families())}"
        )
    specs = HF_FAMILIES[model_type](model)
    if not specs:
        raise ValueError(f"found no attention layers in a {model_type!r} model ({type(model).__name__})")
    return specs


def require_capture(model: nn.Module, specs: list[AttentionSpec]) -> None:
    """Raise unless ``model``'s attention records max logits. A Hugging Face model runs its own attention
    (``config._attn_implementation``, e.g. ``sdpa``) until ``synth.optim.hf.install_capture`` switches it: with
    it, QK-Clip would see no max logit and never clip."""

    if any(hasattr(s.module, "qk_clip_spec") for s in specs):
        return  # modules with their own capture (synth.optim.reference_model)
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if impl is not None and impl not in (EAGER_NAME, FLEX_NAME):
        raise ValueError(
            f"{type(model).__name__} runs attention implementation {impl!r}, which records no max logits, so "
            "QK-Clip would never clip. Call synth.optim.hf.install_capture(model) before MuonClip.for_model "
            "(or pass tau=None for Muon without the clip)."
        )
