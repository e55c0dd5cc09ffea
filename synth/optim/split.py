"""Deciding which parameters Muon may update.

Muon is for the 2-D weight matrices of hidden layers (attention and MLP projections). These must NOT go to
Muon, even when they are 2-D: token embeddings (a lookup table: each row sees only its token's gradient), the
output head (its rows are per-token logits, and tied heads are the embedding), norms' gains and all biases
(1-D), and other tensors of more than two dimensions (convolutions). They go to AdamW.

MoE experts stored as one 3-D tensor ``(experts, out, in)`` (Hugging Face Mixtral, Qwen-MoE and DeepSeek-V3 in
transformers 5) go to Muon: each expert's matrix is its own 2-D matrix (K2 is an MoE trained with Muon). A 3-D
tensor counts as experts when its name or its module's name says "expert"; other 3-D tensors go to AdamW. A
fused ``gate_up_proj`` is orthogonalised as the one ``(2I, H)`` matrix it is stored as, as a fused 2-D
projection would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

# Last name component of modules that are output heads in common model code.
HEAD_NAMES = frozenset({"lm_head", "output", "head", "classifier", "score", "embed_out", "output_layer"})


@dataclass
class ParamSplit:
    """Named parameters for each optimizer, every trainable parameter exactly once."""

    muon: list[tuple[str, nn.Parameter]] = field(default_factory=list)  # 2-D matrices and 3-D expert stacks
    adamw: list[tuple[str, nn.Parameter]] = field(default_factory=list)

    def param_groups(self, **adamw_overrides: Any) -> list[dict[str, Any]]:
        """Groups for ``MuonClip``: ``use_muon`` marks each. ``adamw_overrides`` (say ``lr=3e-4``) apply to
        the AdamW group only."""
        groups: list[dict[str, Any]] = []
        if self.muon:
            groups.append({"params": [p for _, p in self.muon], "use_muon": True})
        if self.adamw:
            groups.append({"params": [p for _, p in self.adamw], "use_muon": False, **adamw_overrides})
        return groups


def _output_head_params(model: nn.Module) -> set[int]:
    ids: set[int] = set()
    get_out = getattr(model, "get_output_embeddings", None)
    if callable(get_out):
        head = get_out()
        if isinstance(head, nn.Module):
            ids.update(id(p) for p in head.parameters())
    vocab_sizes = {m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)}
    for name, m in model.named_modules():
        last = name.rsplit(".", 1)[-1]
        if last in HEAD_NAMES or (
            isinstance(m, nn.Linear) and m.out_features in vocab_sizes and m.out_features > m.in_features * 4
        ):
            ids.update(id(p) for p in m.parameters())
    return ids


def is_expert_stack(name: str, p: nn.Parameter) -> bool:
    """A 3-D parameter that stores one matrix per MoE expert (by its name, e.g. ``mlp.experts.down_proj``)."""
    return p.ndim == 3 and "expert" in name.lower()


def split_params(model: nn.Module, adamw_names: tuple[str, ...] = ()) -> ParamSplit:
    """Split ``model``'s trainable parameters: 2-D hidden matrices and 3-D expert stacks to Muon, the rest to
    AdamW.

    ``adamw_names``: extra substrings of parameter names to force onto AdamW.
    """
    embed_ids = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.Embedding | nn.EmbeddingBag)
        for p in m.parameters()
    }
    head_ids = _output_head_params(model)
    split = ParamSplit()
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue  # tied weights appear once
        seen.add(id(p))
        to_adamw = (
            (p.ndim != 2 and not is_expert_stack(name, p))
            or id(p) in embed_ids
            or id(p) in head_ids
            or "embed" in name
            or any(s in name for s in adamw_names)
        )
        (split.adamw if to_adamw else split.muon).append((name, p))
    return split
