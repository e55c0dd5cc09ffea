"""Pure update rules: Muon (K2's form) for hidden matrices and AdamW for everything else.

Both functions take flat lists of tensors and mutate params and state in place; the Optimizer class only finds
tensors and calls them. Keeping them pure makes them testable against torch.optim one step at a time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import Tensor

from synth.optim import fused as _fused
from synth.optim.distributed import muon_update_sharded_
from synth.optim.newton_schulz import (
    NS_COEFFICIENTS,
    NS_EPS,
    check_method,
    gram_newton_schulz_iterate,
    newton_schulz_batched,
    newton_schulz_iterate,
    uses_gram,
)
from synth.optim.shapes import fill_ns_input, muon_lr_scale, shape_chunks

# Cap on the elements of one stacked Newton-Schulz batch (bf16: 2 bytes each, plus the Gram work space): a
# whole 7B model's MLP matrices in one stack would need several GiB of temporaries for no extra speed.
DEFAULT_MAX_STACK_NUMEL = 1 << 29


def as_matrices(params: list[Tensor], *others: list[Tensor]) -> tuple[list[Tensor], ...]:
    """Split every 3-D tensor (a stack of MoE expert matrices, ``(E, A, B)``) into its ``E`` 2-D views, the same
    way in each list. The views share storage, so in-place updates land in the 3-D parameter and its state, and
    each expert is its own matrix for Newton-Schulz and for the shape scaling."""
    for p in params:
        if p.ndim not in (2, 3):
            raise ValueError(
                f"Muon updates 2-D matrices (or 3-D stacks of expert matrices); got a parameter of shape "
                f"{tuple(p.shape)}: send it to AdamW (split_params does)"
            )
    if all(p.ndim == 2 for p in params):
        return (params, *others)
    lists: list[list[Tensor]] = [[] for _ in range(1 + len(others))]
    for i, p in enumerate(params):
        for out, src in zip(lists, (params, *others), strict=True):
            out.extend(src[i].unbind(0) if p.ndim == 3 else [src[i]])
    return tuple(lists)


def _stack_chunks(
    params: list[Tensor], max_stack_numel: int, dtype: torch.dtype
) -> Iterator[tuple[list[int], Tensor]]:
    """``shape_chunks`` with an empty ``(len(chunk), rows, cols)`` stack in ``dtype`` for each."""
    for chunk in shape_chunks(params, max_stack_numel):
        rows, cols = params[chunk[0]].shape
        yield chunk, torch.empty((len(chunk), rows, cols), dtype=dtype, device=params[chunk[0]].device)


@torch.no_grad()
def muon_update_(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_bufs: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool = False,
    ns_steps: int = 5,
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = NS_EPS,
    ns_dtype: torch.dtype = torch.bfloat16,
    rms_scale: float = 0.2,
    max_stack_numel: int = DEFAULT_MAX_STACK_NUMEL,
    fuse_diagonal: bool = False,
    fused: bool = True,
    ns_method: str = "standard",
    distributed: bool = False,
    process_group: dist.ProcessGroup | None = None,
) -> None:
    """One K2 Muon step for 2-D matrices (and 3-D stacks of expert matrices, one matrix per expert), in place.

    K2's Algorithm 1: ``M = mu*M + G``; ``O = NS5(M)``; ``W = W - lr*(rms_scale*sqrt(max(A,B))*O + wd*W)``.
    ``nesterov=True`` orthogonalises ``G + mu*M`` instead (torch.optim.Muon's default; not K2's).

    The buffer holds ``B = (1-mu)*M`` (torch.optim.Muon's convention, so state dicts carry over): then
    ``B = lerp(B, G, 1-mu)`` is one pass and ``lerp(G, B, mu) = (1-mu)*(G + mu*M)``. Newton-Schulz divides
    by the Frobenius norm first, so the constant factor ``1-mu`` drops out and the update is K2's.
    Same-shape matrices run through Newton-Schulz as one stack of batched GEMMs; ``ns_method`` picks the
    iteration (``synth.optim.newton_schulz``). ``distributed=True`` (under an initialised torch.distributed, or
    with a ``process_group``) shards Newton-Schulz over the ranks (``synth.optim.distributed``).

    ``fused=True`` (on CUDA with Triton, bf16 Newton-Schulz, contiguous fp32/bf16 tensors) does the
    elementwise work in three multi-tensor kernels per stack (``synth.optim.fused``): same formulas and
    roundings, a third of the memory traffic.
    """
    if not params:
        return
    check_method(ns_method)
    params, grads, momentum_bufs = as_matrices(params, grads, momentum_bufs)
    if distributed and dist.is_available() and dist.is_initialized():

        muon_update_sharded_(
            params,
            grads,
            momentum_bufs,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_dtype=ns_dtype,
            rms_scale=rms_scale,
            max_stack_numel=max_stack_numel,
            fuse_diagonal=fuse_diagonal,
            fused=fused,
            ns_method=ns_method,
            process_group=process_group,
        )
        return
    if fused and _fused.usable(params, grads, momentum_bufs, ns_dtype):
        _muon_update_fused(
            params,
            grads,
            momentum_bufs,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            ns_coefficients=ns_coefficients,
            eps=eps,
            rms_scale=rms_scale,
            max_stack_numel=max_stack_numel,
            fuse_diagonal=fuse_diagonal,
            ns_method=ns_method,
        )
        return
    # One multi-tensor kernel for all momentum buffers.
    torch._foreach_lerp_(momentum_bufs, grads, 1.0 - momentum)
    # Decoupled weight decay before the orthogonalised step, the order torch.optim.Muon uses too.
    if weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)

    for chunk, stack in _stack_chunks(params, max_stack_numel, ns_dtype):
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
        group_params = [params[i] for i in chunk]
        alpha = -lr * muon_lr_scale(group_params[0].shape, rms_scale)
        outs = list(ortho.unbind(0))
        if ortho.dtype == group_params[0].dtype:
            torch._foreach_add_(group_params, outs, alpha=alpha)
        else:
            # Mixed dtypes (fp32 weights, bf16 update): add_ promotes in place, no fp32 copy of the
            # update.
            for p, o in zip(group_params, outs, strict=True):
                p.add_(o, alpha=alpha)


def _muon_update_fused(
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
    rms_scale: float,
    max_stack_numel: int,
    fuse_diagonal: bool,
    ns_method: str,
) -> None:
    decay = 1.0 - lr * weight_decay
    for chunk, stack in _stack_chunks(params, max_stack_numel, torch.bfloat16):
        sumsq = _fused.pre([grads[i] for i in chunk], [momentum_bufs[i] for i in chunk], stack, momentum, nesterov)
        # As newton_schulz_batched: fp32 norm of the bf16 input, clamped, divided in bf16.
        norms = sumsq.sqrt_().clamp_(min=eps).to(torch.bfloat16)
        if uses_gram(stack.size(1), stack.size(2), ns_method):
            _fused.normalise(stack, norms, copy=False)
            ortho = gram_newton_schulz_iterate(stack, ns_steps, ns_coefficients)
        else:
            # With the diagonal fused no iteration copies X, so the first one needs no second buffer either.
            first_out = _fused.normalise(stack, norms, copy=not fuse_diagonal)
            ortho = newton_schulz_iterate(stack, ns_steps, ns_coefficients, fuse_diagonal, first_out=first_out)
        group_params = [params[i] for i in chunk]
        alpha = -lr * muon_lr_scale(group_params[0].shape, rms_scale)
        _fused.post(group_params, ortho, decay, alpha)


@torch.no_grad()
def adamw_update_(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    fused: bool | None = None,
) -> None:
    """One AdamW step, in place, with torch.optim.AdamW's formula (decoupled decay, bias correction).

    ``fused=None`` picks torch's fused kernel on CUDA and the foreach path elsewhere. ``state_steps`` are
    float32 scalar tensors, incremented here, as in torch.optim.AdamW's state.
    """
    if not params:
        return
    beta1, beta2 = betas
    use_fused = fused if fused is not None else all(p.is_cuda for p in params)
    if use_fused:
        buckets: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
        for i, p in enumerate(params):
            buckets[(p.device, p.dtype)].append(i)
        for idx in buckets.values():
            steps = [state_steps[i] for i in idx]
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_(
                [params[i] for i in idx],
                [grads[i] for i in idx],
                [exp_avgs[i] for i in idx],
                [exp_avg_sqs[i] for i in idx],
                [],
                steps,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=weight_decay,
                eps=eps,
                amsgrad=False,
                maximize=False,
            )
        return

    torch._foreach_add_(state_steps, 1)
    torch._foreach_mul_(params, 1.0 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
    steps = [float(s.item()) for s in state_steps]
    step_sizes = [lr / (1.0 - beta1**s) for s in steps]
    bias_c2_sqrt = [math.sqrt(1.0 - beta2**s) for s in steps]
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias_c2_sqrt)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, [-s for s in step_sizes])
