"""Newton-Schulz orthogonalisation, one matrix or a stack of same-shape matrices at once.

The quintic iteration (coefficients 3.4445, -4.7750, 2.0315) maps a matrix G = U S V^T to roughly U S' V^T
with S' spread around 1 (about 0.7 to 1.2 after five steps), which is all Muon needs. Running a whole stack of
same-shape matrices through ``torch.baddbmm`` is what makes this fast: torch.optim.Muon loops over matrices
one at a time, so small matrices leave the GPU idle between tiny kernels.

Two methods compute the same iteration (``NS_METHODS``):

- ``"standard"``: every iteration works on the rectangular ``X`` (``G = X X^T``, then ``X <- a*X + (bG + cG^2)X``).
- ``"gram"``: Gram Newton-Schulz. Every iteration's polynomial ``P_k = a*I + b*R_k + c*R_k^2`` is a polynomial in
  the small symmetric Gram matrix ``R_0 = X_0 X_0^T`` (short side ``m``), so ``X_k = Q_k X_0`` with
  ``Q_k = P_{k-1} ... P_0`` and ``R_k = P_{k-1} R_{k-1} P_{k-1}``. Only ``m x m`` products are iterated; the long
  side ``n`` is touched by the first Gram matrix and the final ``Q X_0``. In bf16 the recurrence for ``R`` drifts
  from ``X_k X_k^T`` and ``Q`` grows ill-conditioned (its eigenvalues run from 1 to about ``a^k``), so the
  iteration restarts (``X <- Q X``, ``R <- X X^T``, ``Q <- I``) before iteration ``GRAM_RESTARTS``. Per matrix
  it costs ``4r + 14`` units of ``2m^3`` FLOPs against ``10r + 5`` for five standard iterations (``r = n/m``), so
  it runs only on matrices with ``n/m > GRAM_MIN_ASPECT`` (1.5, where the two cost the same); square and nearly
  square ones take the standard iteration.
"""

from __future__ import annotations

import torch
from torch import Tensor

NS_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
NS_EPS = 1e-7
NS_METHODS = ("standard", "gram")
# Restart before the 4th iteration (index 3): measured on the CPU in bf16 against the fp64 iteration, restarting
# before the 3rd left singular values up to 1.37 on spectra decaying to 1e-3 (the standard iteration: 1.20);
# before the 4th matched the standard iteration's band and deviation (tests/optim/test_gram.py).
GRAM_RESTARTS: tuple[int, ...] = (3,)
GRAM_MIN_ASPECT = 1.5


def check_method(method: str) -> None:
    if method not in NS_METHODS:
        raise ValueError(f"unknown Newton-Schulz method {method!r}; supported: {', '.join(NS_METHODS)}")


def uses_gram(rows: int, cols: int, method: str) -> bool:
    """Whether ``method`` runs the Gram iteration on an ``rows x cols`` matrix (only where it saves FLOPs)."""
    return method == "gram" and max(rows, cols) > GRAM_MIN_ASPECT * min(rows, cols)


def newton_schulz_batched(
    x: Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = NS_EPS,
    dtype: torch.dtype = torch.bfloat16,
    fuse_diagonal: bool = False,
    overwrite_input: bool = False,
    method: str = "standard",
    restarts: tuple[int, ...] = GRAM_RESTARTS,
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
    ``method="gram"``: Gram Newton-Schulz on rectangular stacks (module docstring), restarting before each
    iteration index in ``restarts``.
    """
    check_method(method)
    if x.ndim != 3:
        raise ValueError(f"newton_schulz_batched needs a stack (N, A, B); got shape {tuple(x.shape)}")
    # Norms in fp32 at least: a bf16 sum over millions of entries would lose digits we then divide by.
    norm_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    norms = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True, dtype=norm_dtype).clamp_(min=eps)
    # Divided in the working dtype, as torch.optim.Muon does: the same roundings, so the same accuracy.
    X = x.div_(norms.to(dtype)) if overwrite_input and x.dtype == dtype else x.to(dtype) / norms.to(dtype)
    if uses_gram(x.size(1), x.size(2), method):
        return gram_newton_schulz_iterate(X, steps, coefficients, restarts)
    return newton_schulz_iterate(X, steps, coefficients, fuse_diagonal)


def gram_newton_schulz_iterate(
    X: Tensor,
    steps: int,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    restarts: tuple[int, ...] = GRAM_RESTARTS,
) -> Tensor:
    """Gram Newton-Schulz on an already normalised stack ``X`` (module docstring); same result as
    ``newton_schulz_iterate`` in exact arithmetic. Wide matrices: ``X_k = Q X``, ``R = X X^T``; tall ones:
    ``X_k = X Q``, ``R = X^T X`` (no transposed copies)."""
    a, b, c = coefficients
    tall = X.size(1) > X.size(2)

    def gram_of(x: Tensor) -> Tensor:
        return torch.bmm(x.mT, x) if tall else torch.bmm(x, x.mT)

    def apply(q: Tensor, x: Tensor) -> Tensor:
        return torch.bmm(x, q) if tall else torch.bmm(q, x)

    R = gram_of(X)
    Q: Tensor | None = None  # None stands for the identity: the first iteration after a (re)start needs no GEMM
    for i in range(steps):
        if i in restarts and Q is not None:
            X = apply(Q, X)
            R = gram_of(X)
            Q = None
        Z = torch.baddbmm(R, R, R, beta=b, alpha=c)  # b*R + c*R^2; P = a*I + Z
        if i + 1 < steps and (i + 1) not in restarts:
            # R <- P R P as two products with the identity part in the epilogues: RP = a*R + R Z, then
            # P RP = a*RP + Z RP.
            RP = torch.baddbmm(R, R, Z, beta=a)
            R = torch.baddbmm(RP, Z, RP, beta=a)
        if Q is None:
            Q = Z  # Z is not needed after this: P = Z + a*I in place, no copy
            Q.diagonal(dim1=1, dim2=2).add_(a)
        else:
            # Q <- Q P (tall, right products) or P Q (wide); the P's commute in exact arithmetic, the order
            # keeps each one's rounding where the standard iteration has it.
            Q = torch.baddbmm(Q, Q, Z, beta=a) if tall else torch.baddbmm(Q, Z, Q, beta=a)
    assert Q is not None
    return apply(Q, X)


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
    method: str = "standard",
) -> Tensor:
    """Orthogonalise one 2-D matrix of any orientation (the optimizer uses the batched function)."""
    if g.ndim != 2:
        raise ValueError(f"newton_schulz needs a 2-D matrix; got shape {tuple(g.shape)}")
    return newton_schulz_batched(g.unsqueeze(0), steps, coefficients, eps, dtype, fuse_diagonal, method=method)[0]
