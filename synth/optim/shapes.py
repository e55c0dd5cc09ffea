"""Per-matrix facts both the local and the sharded Muon updates use: K2's shape scaling and the same-shape
chunking every rank derives alike (here, so neither update module imports the other for them)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor


def muon_lr_scale(shape: torch.Size | Sequence[int], rms_scale: float = 0.2) -> float:
    """K2's per-matrix factor ``0.2 * sqrt(max(A, B))``: it gives Muon's update the RMS of an AdamW update. For a
    3-D stack of expert matrices ``(E, A, B)`` it is each expert's own factor (the last two dims)."""
    a, b = shape[-2], shape[-1]
    return rms_scale * math.sqrt(max(a, b))


def shape_chunks(params: list[Tensor], max_stack_numel: int) -> list[list[int]]:
    """Indices of same-shape matrices, at most ``max_stack_numel`` elements per chunk, in a deterministic order
    (first appearance of each shape), so every rank of a process group derives the same layout."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        # Stacked as they are: transposing tall matrices into the wide stacks would cost strided copies that take
        # longer than the extra batch would save; Newton-Schulz takes the Gram on the short side either way.
        groups[(p.shape[0], p.shape[1], p.dtype, p.device)].append(i)
    chunks = []
    for (rows, cols, _dtype, _device), idx in groups.items():
        per_chunk = max(1, max_stack_numel // (rows * cols))
        chunks.extend(idx[start : start + per_chunk] for start in range(0, len(idx), per_chunk))
    return chunks


def fill_ns_input(stack: Tensor, chunk: list[int], grads: list[Tensor], momentum_bufs: list[Tensor],
                  momentum: float, nesterov: bool) -> None:
    """Write each matrix's Newton-Schulz input into its slot of ``stack``: the momentum itself (K2), or the
    Nesterov blend ``lerp(G, M, mu)``, cast straight into the slot (no fp32 temporary of the whole model)."""
    for i, slot in zip(chunk, stack.unbind(0), strict=True):
        if nesterov:
            torch.lerp(grads[i], momentum_bufs[i], momentum, out=slot)
        else:
            slot.copy_(momentum_bufs[i])
