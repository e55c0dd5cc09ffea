"""Newton-Schulz orthogonalisation, one matrix or a stack of same-shape matrices at once.

The quintic iteration (coefficients 3.4445, -4.7750, 2.0315) maps a matrix G = U S V^T to roughly U S' V^T with
S' spread around 1 (about 0.7 to 1.2 after five steps), which is all Muon needs. Running a whole stack of
same-shape matrices through ``torch.baddbmm`` is what makes this fast: torch.optim.Muon loops over matrices one at
a time, so small matrices leave the GPU idle between tiny kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor

NS_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
NS_EPS = 1e-7


def newton_schulz_batched(
    x: Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = NS_EPS,
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """Orthogonalise every matrix of ``x`` (shape ``(N, A, B)``, ``A <= B``) and return the result in ``dtype``.

    The caller puts the short side first: the Gram matrix ``X X^T`` is then ``A x A``, the cheap side.
    Each matrix is divided by its own Frobenius norm (clamped at ``eps``, as torch.optim.Muon does) so its
    spectral norm is at most 1, the region where the iteration converges.
    """
    if x.ndim != 3:
        raise ValueError(f"newton_schulz_batched needs a stack (N, A, B); got shape {tuple(x.shape)}")
    if x.size(1) > x.size(2):
        raise ValueError(f"put the short side first (A <= B); got A={x.size(1)}, B={x.size(2)}")
    a, b, c = coefficients
    # The norm is taken in fp32 at least: a bf16 sum over millions of entries would lose digits we then divide by.
    norm_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    norms = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True, dtype=norm_dtype).clamp_(min=eps)
    # Dividing in the working dtype, as torch.optim.Muon does, avoids an fp32 copy of the whole stack.
    X = x.to(dtype) / norms.to(dtype)
    for _ in range(steps):
        gram = torch.bmm(X, X.mT)
        # b*A + c*A@A and a*X + B@X as single GEMMs with epilogue: no separate elementwise kernels.
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        X = torch.baddbmm(X, poly, X, beta=a, alpha=1.0)
    return X


def newton_schulz(
    g: Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = NS_EPS,
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """Orthogonalise one 2-D matrix of any orientation (reference path; the optimizer uses the batched one)."""
    if g.ndim != 2:
        raise ValueError(f"newton_schulz needs a 2-D matrix; got shape {tuple(g.shape)}")
    tall = g.size(0) > g.size(1)
    x = g.mT if tall else g
    out = newton_schulz_batched(x.unsqueeze(0), steps, coefficients, eps, dtype)[0]
    return out.mT if tall else out
