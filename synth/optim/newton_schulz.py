"""Newton-Schulz orthogonalisation, one matrix or a stack of same-shape matrices at once.

The quintic iteration (coefficients 3.4445, -4.7750, 2.0315) maps a matrix G = U S V^T to roughly U S' V^T
with S' spread around 1 (about 0.7 to 1.2 after five steps), which is all Muon needs. Running a whole stack of
same-shape matrices through ``torch.baddbmm`` is what makes this fast: torch.optim.Muon loops over matrices
one at a time, so small matrices leave the GPU idle between tiny kernels.
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
    fuse_diagonal: bool = False,
    overwrite_input: bool = False,
) -> Tensor:
    """Orthogonalise every matrix of the stack ``x`` (``(N, A, B)``), returning ``(N, A, B)`` in ``dtype``.

    Same maths as torch.optim.Muon's per-matrix loop: divide each matrix by its Frobenius norm (clamped at
    ``eps``), then ``steps`` times ``X <- a*X + (b*G + c*G^2) X`` with ``G = X X^T`` on the short side. The
    Gram matrix is taken on the short side without transposing anything (``X^T X`` and right multiplication
    for tall matrices), and each iteration is three batched GEMMs with the polynomial in their epilogues.

    ``fuse_diagonal=True`` computes ``a*X + B X`` as ``(a*I + B) X``: it saves a copy of X per iteration
    (about a tenth of a step on small matrices) but rounds ``a + B_ii`` to bf16, which roughly doubles the
    deviation from the exact iteration (about 2.5% instead of 1.2% relative); off by default.
    ``overwrite_input``: normalise ``x`` in place when it is already in ``dtype`` (the optimizer's own stack).
    """
    if x.ndim != 3:
        raise ValueError(f"newton_schulz_batched needs a stack (N, A, B); got shape {tuple(x.shape)}")
    # Norms in fp32 at least: a bf16 sum over millions of entries would lose digits we then divide by.
    norm_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    norms = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True, dtype=norm_dtype).clamp_(min=eps)
    # Divided in the working dtype, as torch.optim.Muon does: the same roundings, so the same accuracy.
    X = x.div_(norms.to(dtype)) if overwrite_input and x.dtype == dtype else x.to(dtype) / norms.to(dtype)
    return newton_schulz_iterate(X, steps, coefficients, fuse_diagonal)


def newton_schulz_iterate(
    X: Tensor,
    steps: int,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    fuse_diagonal: bool = False,
    first_out: Tensor | None = None,
) -> Tensor:
    """The ``steps`` iterations on an already normalised stack ``X``. ``first_out``, when given, holds a copy
    of ``X`` and becomes the first iteration's output in place (baddbmm would otherwise copy X itself)."""
    a, b, c = coefficients
    tall = X.size(1) > X.size(2)
    for i in range(steps):
        gram = torch.bmm(X.mT, X) if tall else torch.bmm(X, X.mT)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        if fuse_diagonal:
            poly.diagonal(dim1=1, dim2=2).add_(a)
            X = torch.bmm(X, poly) if tall else torch.bmm(poly, X)
        elif i == 0 and first_out is not None:
            X = first_out.baddbmm_(X, poly, beta=a) if tall else first_out.baddbmm_(poly, X, beta=a)
        else:
            X = torch.baddbmm(X, X, poly, beta=a) if tall else torch.baddbmm(X, poly, X, beta=a)
    return X


def newton_schulz(
    g: Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = NS_EPS,
    dtype: torch.dtype = torch.bfloat16,
    fuse_diagonal: bool = False,
) -> Tensor:
    """Orthogonalise one 2-D matrix of any orientation (the optimizer uses the batched function)."""
    if g.ndim != 2:
        raise ValueError(f"newton_schulz needs a 2-D matrix; got shape {tuple(g.shape)}")
    return newton_schulz_batched(g.unsqueeze(0), steps, coefficients, eps, dtype, fuse_diagonal)[0]
