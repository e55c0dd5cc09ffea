"""What QK-Clip needs to know about one attention layer; shared by the clip (qk_clip) and the model-family
readers (families), kept apart so neither imports the other's module to get it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

AttentionKind = Literal["mha", "gqa", "mla"]


@dataclass(eq=False)
class AttentionSpec:
    """Where one attention layer keeps its query/key weights and its captured max logits.

    ``q_weight`` rows: ``num_heads * q_head_rows`` (MHA/GQA: ``head_dim``; MLA: ``nope_dim + rope_dim``, nope
    first). ``k_weight`` rows: ``num_kv_heads * head_dim`` (MHA/GQA) or, for MLA, the key/value up-projection
    with ``num_heads * (nope_dim + v_head_dim)`` rows, key-nope first in each head.
    """

    name: str
    module: nn.Module
    kind: AttentionKind
    num_heads: int
    num_kv_heads: int
    head_dim: int
    q_weight: Tensor
    k_weight: Tensor
    q_bias: Tensor | None = None
    k_bias: Tensor | None = None
    nope_dim: int = 0
    rope_dim: int = 0
    v_head_dim: int = 0
    has_qk_norm: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("mha", "gqa", "mla"):
            raise ValueError(f"unknown attention kind {self.kind!r}; supported: 'mha', 'gqa', 'mla'")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"{self.name}: num_heads ({self.num_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.kind == "mla":
            want_q = self.num_heads * (self.nope_dim + self.rope_dim)
            want_k = self.num_heads * (self.nope_dim + self.v_head_dim)
        else:
            want_q = self.num_heads * self.head_dim
            want_k = self.num_kv_heads * self.head_dim
        if self.q_weight.shape[0] != want_q or self.k_weight.shape[0] != want_k:
            raise ValueError(
                f"{self.name}: {self.kind} expects {want_q} query rows and {want_k} key rows; got "
                f"{self.q_weight.shape[0]} and {self.k_weight.shape[0]} (check head counts and dims)"
            )
