"""MuonClip: Muon with per-head QK-Clip, as in the Kimi K2 report (arXiv 2507.20534, section 2.1).

Entry points: ``MuonClip`` (the optimizer), ``split_params`` (what goes to Muon and what to AdamW), ``QKClip``
and ``attention_specs`` (the clip and the attention layers it acts on), ``attention_with_max_logits``
(attention that captures per-head max logits), ``synth.optim.hf.install_capture`` (the same for Hugging Face
Llama/Qwen models).
"""

from synth.optim.capture import attention_with_max_logits, enable_capture
from synth.optim.families import attention_specs, supported_families
from synth.optim.muonclip import K2_LR, K2_MOMENTUM, K2_TAU, K2_WEIGHT_DECAY, MuonClip
from synth.optim.newton_schulz import NS_METHODS, newton_schulz, newton_schulz_batched
from synth.optim.qk_clip import (
    AttentionSpec,
    ClipStats,
    MissingMaxLogitError,
    NonFiniteMaxLogitError,
    QKClip,
    QKClipError,
    clip_mha_gqa_,
    clip_mla_,
)
from synth.optim.split import ParamSplit, split_params
from synth.optim.updates import adamw_update_, muon_update_

__all__ = [
    "K2_LR",
    "K2_MOMENTUM",
    "K2_TAU",
    "K2_WEIGHT_DECAY",
    "NS_METHODS",
    "AttentionSpec",
    "ClipStats",
    "MissingMaxLogitError",
    "MuonClip",
    "NonFiniteMaxLogitError",
    "ParamSplit",
    "QKClip",
    "QKClipError",
    "adamw_update_",
    "attention_specs",
    "attention_with_max_logits",
    "clip_mha_gqa_",
    "clip_mla_",
    "enable_capture",
    "muon_update_",
    "newton_schulz",
    "newton_schulz_batched",
    "split_params",
    "supported_families",
]
