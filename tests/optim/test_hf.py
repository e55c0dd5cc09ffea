"""Capture inside Hugging Face Llama/Qwen models through transformers' attention interface (skipped without
transformers)."""

from __future__ import annotations

import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

from synth.optim import MuonClip, QKClip  # noqa: E402
from synth.optim.hf import install_capture  # noqa: E402


def assert_clip_caps_first_layer(model, specs) -> None:
    """Clip at the first layer's median max logit, recompute on the same batch: every head reads min(S, tau)."""
    clip = QKClip(specs)
    x = torch.randint(0, 64, (2, 12))
    model(x)
    s = clip.gather()[0].clone()
    clip.tau = float(s.median())
    clip.step()
    model(x)
    torch.testing.assert_close(clip.gather()[0], s.clamp(max=clip.tau), rtol=1e-10, atol=1e-10)


def _llama(kv_heads: int = 2):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(cfg).double()


def _qwen(cls_name: str):
    torch.manual_seed(0)
    cfg_cls = getattr(transformers, cls_name.replace("ForCausalLM", "Config"))
    cfg = cfg_cls(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        head_dim=8,
    )
    return getattr(transformers, cls_name)(cfg).double()


def test_capture_keeps_outputs_and_records_every_layer() -> None:
    model = _llama()
    x = torch.randint(0, 64, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :3] = 0  # left padding: masked keys must not count and must not change outputs
    model.config._attn_implementation = "sdpa"
    ref = model(x, attention_mask=mask).logits
    specs = install_capture(model, "eager")
    out = model(x, attention_mask=mask).logits
    torch.testing.assert_close(out[0], ref[0])
    torch.testing.assert_close(out[1, 3:], ref[1, 3:])
    assert len(specs) == 2 and all(s.module.qk_max_logits.shape == (4,) for s in specs)


@pytest.mark.parametrize("family", ["llama", "Qwen2ForCausalLM"])
def test_clip_caps_first_layer_on_recompute(family: str) -> None:
    model = _llama() if family == "llama" else _qwen(family)
    specs = install_capture(model, "eager")
    if family != "llama":
        assert specs[0].q_bias is not None  # Qwen2's q/k biases are clipped with their rows
    assert_clip_caps_first_layer(model, specs)


def test_qk_norm_models_warn_that_the_clip_is_cancelled() -> None:
    if not hasattr(transformers, "Qwen3ForCausalLM"):
        pytest.skip("this transformers has no Qwen3")
    model = _qwen("Qwen3ForCausalLM")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MuonClip.for_model(model, tau=100.0) if install_capture(model, "eager") else None
    assert any("QK-norm" in str(w.message) for w in caught)


@pytest.mark.parametrize("q_lora_rank", [None, 16])
def test_deepseek_v3_mla_clip_caps_recomputed_logits(q_lora_rank: int | None) -> None:
    if not hasattr(transformers, "DeepseekV3ForCausalLM"):
        pytest.skip("this transformers has no DeepSeek-V3")
    torch.manual_seed(0)
    cfg = transformers.DeepseekV3Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        moe_intermediate_size=16,
        num_hidden_layers=1,
        first_k_dense_replace=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=q_lora_rank,
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
    model = transformers.DeepseekV3ForCausalLM(cfg).double()
    specs = install_capture(model, "eager")
    assert specs[0].kind == "mla"
    kv_a = (
        next(m for n, m in model.named_modules() if n.endswith("kv_a_proj_with_mqa")).weight.detach().clone()
    )
    assert_clip_caps_first_layer(model, specs)
    kv_a_after = next(m for n, m in model.named_modules() if n.endswith("kv_a_proj_with_mqa")).weight
    assert torch.equal(kv_a_after, kv_a)  # the shared rotary key's projection is untouched


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_moe_families_clip_caps_first_layer(family: str) -> None:
    torch.manual_seed(0)
    common = {
        "vocab_size": 64,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "intermediate_size": 24,
        "num_experts_per_tok": 2,
    }
    if family == "mixtral":
        cfg = transformers.MixtralConfig(num_local_experts=4, **common)
    else:
        cfg = transformers.Qwen2MoeConfig(
            moe_intermediate_size=16, shared_expert_intermediate_size=16, num_experts=4, **common
        )
    model = transformers.AutoModelForCausalLM.from_config(cfg, experts_implementation="eager").double()
    specs = install_capture(model, "eager")
    assert specs[0].kind == "gqa"
    assert_clip_caps_first_layer(model, specs)
