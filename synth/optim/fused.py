"""Fused CUDA (Triton) passes around Newton-Schulz for the Muon step.

Three multi-tensor kernels replace six elementwise passes (momentum lerp, weight decay, Nesterov lerp + bf16
cast, Frobenius norm, normalisation, scaled update), each over all same-shape matrices of a stack at once:

* ``pre``: ``B = lerp(B, G, 1-mu)`` stored, ``lerp(G, B, mu)`` cast to bf16 into the stack slot, and the
  fp32 sum of squares of the bf16 values (the Frobenius norm) accumulated per matrix;
* ``normalise``: ``X0 = X / norm`` (bf16, correctly rounded division), written to the stack and to the
  output buffer of the first Newton-Schulz iteration (which saves baddbmm's copy of X0);
* ``post``: ``W = W*(1 - lr*wd) + alpha*O``.

Same formulas and roundings as the torch ops they replace (torch's lerp branches included); only the order of
the fp32 norm summation differs. Parameters, gradients and buffers are addressed through tables of pointers.
Used only on CUDA when Triton imports; everything else takes the torch path in ``updates.py``.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:  # Triton ships with CUDA builds of torch; the CPU environment goes without.
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except Exception:  # pragma: no cover - depends on the install
    HAVE_TRITON = False

BLOCK = 2048
# Pointer-alignment hint (lets Triton vectorise loads from the pointer tables); switched off for good if the
# installed Triton rejects it.
_ALIGN_OK = [os.environ.get("SYNTH_FUSED_ALIGN", "1") != "0"]

_PTR_CACHE: dict[tuple, Tensor] = {}


def ptr_table(tensors: list[Tensor]) -> Tensor:
    """int64 device tensor of the tensors' data pointers (cached: gradients usually stay put)."""
    key = (tensors[0].device, *(t.data_ptr() for t in tensors))
    tab = _PTR_CACHE.get(key)
    if tab is None:
        if len(_PTR_CACHE) > 256:
            _PTR_CACHE.clear()
        tab = torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64).to(tensors[0].device)
        _PTR_CACHE[key] = tab
    return tab


def aligned(tensors: list[Tensor]) -> bool:
    return all(t.data_ptr() % 16 == 0 for t in tensors)


def usable(params: list[Tensor], grads: list[Tensor], bufs: list[Tensor], ns_dtype: torch.dtype) -> bool:
    if not HAVE_TRITON or ns_dtype != torch.bfloat16:
        return False
    dt = params[0].dtype
    if dt not in (torch.float32, torch.bfloat16):
        return False
    for ts in (params, grads, bufs):
        for t in ts:
            if not t.is_cuda or t.dtype != dt or not t.is_contiguous():
                return False
    return True


if HAVE_TRITON:

    @triton.jit
    def _load_ptr(tab, m, IS_BF16: tl.constexpr, ALIGN: tl.constexpr):
        if IS_BF16:
            p = tl.load(tab + m).to(tl.pointer_type(tl.bfloat16))
        else:
            p = tl.load(tab + m).to(tl.pointer_type(tl.float32))
        if ALIGN:
            p = tl.multiple_of(p, 16)
        return p

    @triton.jit
    def _block(numel, BLOCK: tl.constexpr):
        # Grid (blocks of one matrix, matrices): this program's matrix, its element offsets and their mask.
        m = tl.program_id(1)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        offs = tl.max_contiguous(tl.multiple_of(offs, BLOCK), BLOCK)
        return m, offs, offs < numel

    @triton.jit
    def _lerp(a, b, w, SMALL: tl.constexpr):
        # torch's lerp: a + w*(b-a) for w < 0.5, b - (b-a)*(1-w) otherwise (opmath fp32).
        r = a + w * (b - a) if SMALL else b - (b - a) * (1.0 - w)
        return r

    @triton.jit
    def _pre_kernel(
        g_tab,
        b_tab,
        stack_ptr,
        sumsq_ptr,
        numel,
        w_buf,
        w_nest,
        SMALL_BUF: tl.constexpr,
        SMALL_NEST: tl.constexpr,
        NESTEROV: tl.constexpr,
        IS_BF16: tl.constexpr,
        ALIGN: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        m, offs, mask = _block(numel, BLOCK)
        g_ptr = _load_ptr(g_tab, m, IS_BF16, ALIGN)
        b_ptr = _load_ptr(b_tab, m, IS_BF16, ALIGN)
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        bn = _lerp(b, g, w_buf, SMALL_BUF)
        if IS_BF16:
            bs = bn.to(tl.bfloat16)
            tl.store(b_ptr + offs, bs, mask=mask)
            bn = bs.to(tl.float32)
        else:
            tl.store(b_ptr + offs, bn, mask=mask)
        x = _lerp(g, bn, w_nest, SMALL_NEST) if NESTEROV else bn
        xb = x.to(tl.bfloat16)
        tl.store(stack_ptr + m.to(tl.int64) * numel + offs, xb, mask=mask)
        xf = xb.to(tl.float32)
        tl.atomic_add(sumsq_ptr + m, tl.sum(xf * xf, axis=0))

    @triton.jit
    def _normalise_kernel(x_ptr, y_ptr, norm_ptr, numel, COPY: tl.constexpr, BLOCK: tl.constexpr):
        m, offs, mask = _block(numel, BLOCK)
        base = m.to(tl.int64) * numel
        x = tl.load(x_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
        n = tl.load(norm_ptr + m).to(tl.float32)
        y = tl.div_rn(x, tl.zeros_like(x) + n).to(tl.bfloat16)
        tl.store(x_ptr + base + offs, y, mask=mask)
        if COPY:
            tl.store(y_ptr + base + offs, y, mask=mask)

    @triton.jit
    def _post_kernel(
        p_tab,
        o_ptr,
        numel,
        decay,
        alpha,
        DECAY: tl.constexpr,
        IS_BF16: tl.constexpr,
        ALIGN: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        m, offs, mask = _block(numel, BLOCK)
        p_ptr = _load_ptr(p_tab, m, IS_BF16, ALIGN)
        p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        o = tl.load(o_ptr + m.to(tl.int64) * numel + offs, mask=mask, other=0.0).to(tl.float32)
        if DECAY:
            p = p * decay
            if IS_BF16:
                p = p.to(tl.bfloat16).to(tl.float32)
        r = p + alpha * o
        if IS_BF16:
            tl.store(p_ptr + offs, r.to(tl.bfloat16), mask=mask)
        else:
            tl.store(p_ptr + offs, r, mask=mask)


def _launch(kernel, grid, *args, align: bool, **meta) -> None:
    if align and _ALIGN_OK[0]:
        try:
            kernel[grid](*args, **meta, ALIGN=True, BLOCK=BLOCK, num_warps=8)
            return
        except Exception:  # an older Triton may refuse the hint on a pointer: go without it
            _ALIGN_OK[0] = False
    kernel[grid](*args, **meta, ALIGN=False, BLOCK=BLOCK, num_warps=8)


def pre(grads: list[Tensor], bufs: list[Tensor], stack: Tensor, momentum: float, nesterov: bool) -> Tensor:
    """Momentum + Nesterov into the bf16 ``stack`` (N, A, B); returns the (N,) fp32 sums of squares."""
    n = stack.size(0)
    numel = stack[0].numel()
    sumsq = torch.zeros(n, dtype=torch.float32, device=stack.device)
    w_buf = 1.0 - momentum
    grid = (triton.cdiv(numel, BLOCK), n)
    _launch(
        _pre_kernel,
        grid,
        ptr_table(grads),
        ptr_table(bufs),
        stack,
        sumsq,
        numel,
        w_buf,
        momentum,
        SMALL_BUF=abs(w_buf) < 0.5,
        SMALL_NEST=abs(momentum) < 0.5,
        NESTEROV=nesterov,
        IS_BF16=grads[0].dtype == torch.bfloat16,
        align=aligned(grads) and aligned(bufs),
    )
    return sumsq


def normalise(stack: Tensor, norms: Tensor, copy: bool = True) -> Tensor | None:
    """``stack /= norms`` in place (bf16 norms, one per matrix); returns a second copy of the result when
    ``copy`` (the first Newton-Schulz iteration's output buffer), else None."""
    out = torch.empty_like(stack) if copy else stack
    numel = stack[0].numel()
    grid = (triton.cdiv(numel, BLOCK), stack.size(0))
    _normalise_kernel[grid](stack, out, norms, numel, COPY=copy, BLOCK=BLOCK, num_warps=8)
    return out if copy else None


def post(params: list[Tensor], ortho: Tensor, decay: float, alpha: float) -> None:
    """``W = W*decay + alpha*O`` for every matrix of the stack ``ortho``."""
    numel = ortho[0].numel()
    grid = (triton.cdiv(numel, BLOCK), ortho.size(0))
    _launch(
        _post_kernel,
        grid,
        ptr_table(params),
        ortho,
        numel,
        decay,
        alpha,
        DECAY=decay != 1.0,
        IS_BF16=params[0].dtype == torch.bfloat16,
        align=aligned(params),
    )
