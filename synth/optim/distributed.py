"""Newton-Schulz sharded over the ranks of a process group (data parallel, replicated optimizer state).

Under DDP every rank holds the same parameters, averaged gradients and momentum, so every rank would run the
same Newton-Schulz on every matrix. Here each rank orthogonalises only its share of the matrices, balanced by
FLOPs (largest first onto the least loaded rank, the same assignment on every rank because it depends only on
the shapes), and one ``all_gather`` gives every rank all the results; then every rank applies the whole update.
This is Moonlight's distributed Muon without its ZeRO-1 sharding of the state: the elementwise work (momentum,
weight decay, the update) stays replicated, it is a small part of the step.

The ranks must hold the same Muon matrices in the same order; that is checked once per layout (a mismatch, as
with pipeline stages sharing a group, would otherwise deadlock or mix up updates). A layout that changes on every
rank alike (say, parameters unfrozen everywhere) is checked again; ranks whose layouts diverge after they had
matched would wait in that check for each other, which is why such setups should pass ``distributed=False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from synth.optim import fused as _fused
from synth.optim.newton_schulz import newton_schulz_batched, uses_gram
from synth.optim.shapes import fill_ns_input, muon_lr_scale, shape_chunks

_CHECKED_LAYOUTS: set[tuple[int, str]] = set()


def ns_flops(rows: int, cols: int, steps: int = 5, method: str = "standard") -> float:
    """FLOPs of Newton-Schulz on one ``rows x cols`` matrix (the GEMMs; elementwise work is negligible)."""
    m, n = min(rows, cols), max(rows, cols)
    if uses_gram(rows, cols, method):
        # First Gram, one restart (apply Q + Gram), final Q X: 4 rectangular GEMMs; 14 m x m GEMMs for 5 steps.
        return 4 * 2 * m * m * n + (3 * steps - 1) * 2 * m**3
    return steps * (2 * 2 * m * m * n + 2 * m**3)


def assign_owners(shapes: Sequence[tuple[int, int]], world: int, steps: int = 5, method: str = "standard") -> list[int]:
    """The rank that orthogonalises each matrix: longest-processing-time-first by FLOPs, ties broken by index,
    so every rank computes the same assignment."""
    cost = [ns_flops(a, b, steps, method) for a, b in shapes]
    load = [0.0] * world
    owner = [0] * len(shapes)
    for i in sorted(range(len(shapes)), key=lambda i: (-cost[i], i)):
        r = min(range(world), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += cost[i]
    return owner


def _check_same_layout(shapes: list[tuple[int, int]], group: dist.ProcessGroup | None) -> None:
    digest = hashlib.sha1(repr(shapes).encode()).hexdigest()
    key = (id(group), digest)
    if key in _CHECKED_LAYOUTS:
        return
    seen: list[str | None] = [None] * dist.get_world_size(group)
    dist.all_gather_object(seen, digest, group=group)
    if len(set(seen)) != 1:
        raise RuntimeError(
            "sharded Newton-Schulz needs the same Muon matrices (shapes, order) on every rank of the group; "
            f"the ranks differ ({len(set(seen))} layouts). Under pipeline or tensor parallelism pass "
            "MuonClip(..., distributed=False) or a process group of replicas (process_group=...)."
        )
    _CHECKED_LAYOUTS.add(key)


@torch.no_grad()
def muon_update_sharded_(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_bufs: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    ns_steps: int,
    ns_coefficients: tuple[float, float, float],
    eps: float,
    ns_dtype: torch.dtype,
    rms_scale: float,
    max_stack_numel: int,
    fuse_diagonal: bool,
    fused: bool,
    ns_method: str,
    process_group: dist.ProcessGroup | None = None,
) -> None:
    """``muon_update_`` with Newton-Schulz sharded over ``process_group`` (2-D matrices; the caller has split
    expert stacks). Same formulas: only where each matrix is orthogonalised changes."""

    world = dist.get_world_size(process_group)
    rank = dist.get_rank(process_group)
    shapes = [(int(p.shape[0]), int(p.shape[1])) for p in params]
    _check_same_layout(shapes, process_group)
    owner = assign_owners(shapes, world, ns_steps, ns_method)

    torch._foreach_lerp_(momentum_bufs, grads, 1.0 - momentum)
    # Each rank's matrices, chunked by shape as on one process; each chunk is one contiguous block of that rank's
    # part of the gathered buffer, so it is produced and consumed as one (N, A, B) stack.
    chunks: list[list[list[int]]] = []
    for r in range(world):
        mine = [i for i, o in enumerate(owner) if o == r]
        chunks.append([[mine[j] for j in c] for c in shape_chunks([params[i] for i in mine], max_stack_numel)])
    sizes = [sum(params[i].numel() for c in cs for i in c) for cs in chunks]
    width = max(sizes)
    device = params[0].device
    gathered = torch.empty(world * width, dtype=ns_dtype, device=device)
    send = gathered[rank * width : (rank + 1) * width]
    offset = 0
    for chunk in chunks[rank]:
        rows, cols = shapes[chunk[0]]
        stack = torch.empty((len(chunk), rows, cols), dtype=ns_dtype, device=device)
        fill_ns_input(stack, chunk, grads, momentum_bufs, momentum, nesterov)
        ortho = newton_schulz_batched(
            stack,
            ns_steps,
            ns_coefficients,
            eps,
            ns_dtype,
            fuse_diagonal=fuse_diagonal,
            overwrite_input=True,
            method=ns_method,
        )
        send[offset : offset + ortho.numel()].view_as(ortho).copy_(ortho)
        offset += ortho.numel()
    _all_gather(gathered, send, process_group)

    decay = 1.0 - lr * weight_decay
    use_fused = fused and _fused.usable(params, grads, momentum_bufs, ns_dtype)
    for r in range(world):
        offset = r * width
        for chunk in chunks[r]:
            rows, cols = shapes[chunk[0]]
            ortho = gathered[offset : offset + len(chunk) * rows * cols].view(len(chunk), rows, cols)
            offset += ortho.numel()
            group_params = [params[i] for i in chunk]
            alpha = -lr * muon_lr_scale((rows, cols), rms_scale)
            if use_fused:
                _fused.post(group_params, ortho, decay, alpha)
                continue
            if decay != 1.0:
                torch._foreach_mul_(group_params, decay)
            outs = list(ortho.unbind(0))
            if ortho.dtype == group_params[0].dtype:
                torch._foreach_add_(group_params, outs, alpha=alpha)
            else:
                for p, o in zip(group_params, outs, strict=True):
                    p.add_(o, alpha=alpha)


def _all_gather(gathered: Tensor, send: Tensor, group: dist.ProcessGroup | None) -> None:
    """``gathered`` (world * width) from every rank's ``send`` (its own slice of ``gathered``)."""
    world = dist.get_world_size(group)
    if dist.get_backend(group) == "nccl":
        # One collective into the flat buffer; NCCL reads the send slice before it writes that region.
        dist.all_gather_into_tensor(gathered, send.clone(), group=group)
        return
    parts = list(gathered.chunk(world))
    mine = parts[dist.get_rank(group)].clone()
    dist.all_gather(parts, mine, group=group)

