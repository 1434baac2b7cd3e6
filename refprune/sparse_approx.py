"""Pruning as sparse approximation: exact k-sparse solvers, proximal operators, ISTA and IHT.

Magnitude pruning is the exact answer to one optimisation problem: the best
approximation u of a weight vector w with at most k non-zeros, measured in the
Euclidean norm (``hard_threshold``). The same holds for every l_p norm,
because those norms are absolute (they depend on |u_i - w_i| only, and grow
with each) and symmetric (they ignore the order of the coordinates). Change
either property, or constrain the kept values, and magnitude selection stops
being optimal; the module gives an exact solver for each such case:

* ``best_k_sparse_nonnegative``: u >= 0 (select by the positive part of w);
* ``best_k_sparse_weighted``: sum_i d_i (u_i - w_i)^2 (select by d_i w_i^2,
  the Optimal Brain Damage saliency with d_i = h_ii / 2);
* ``best_k_sparse_quadratic``: (u - w)^T H (u - w) with the kept values
  re-optimised (exhaustive search over supports; the problem Optimal Brain
  Surgeon approximates one weight at a time).

The penalised forms are the proximal operators ``soft_threshold`` (of
lam ||.||_1) and ``hard_threshold_prox`` (of lam ||.||_0); iterating a gradient
step and a threshold gives ``ista`` and ``iht`` for the sparse linear problem
y = A x of compressed sensing, with ``sensing_problem`` drawing a seeded
instance.

Conventions, shared by every function here:

* A *support* is a boolean mask of w's shape with exactly k True entries
  (True = kept), chosen by ``refprune.masks.keep_top_k`` on the stated score
  (higher score = kept; equal scores: the lower flat C-order index is kept).
  A kept entry may be exactly 0.0 and is still in the support.
* Entries outside the support are exactly +0.0; kept entries that are not
  re-optimised are bit-for-bit the entries of w (a kept -0.0 stays -0.0).
* Arguments are checked at the boundary, copied to new float64 arrays, and
  never modified.

The spec, with the proofs and the counterexamples, is ``docs/sparse_approx.md``.
"""

from __future__ import annotations

import itertools
import math
import numbers
from fractions import Fraction
from typing import Any, NamedTuple, cast

import numpy as np

from ._checks import bool_array, float_array, positive_int, real_number
from .masks import keep_top_k
from .rng import make_rng

#: Largest n for which ``best_k_sparse_quadratic`` searches all supports unless told otherwise
#: (C(16, 8) = 12870 linear solves).
DEFAULT_MAX_N = 16

#: Normalised IHT constants: c in the step-acceptance test, and the factor kappa * (1 - c) = 2
#: by which a rejected step is divided.
NIHT_C = 0.01
NIHT_SHRINK = 2.0


class SparseApproximation(NamedTuple):
    """A k-sparse approximation: the vector, its support, and the value it minimises."""

    u: np.ndarray  #: the approximation, float64, the shape of w
    support: (
        np.ndarray
    )  #: bool mask, True = kept (exactly k from the k-sparse solvers); u is +0.0 off it
    cost: float  #: the solver's objective at u, evaluated in float64


class IterativeResult(NamedTuple):
    """Result of ``ista`` or ``iht``."""

    x: np.ndarray  #: the last iterate, float64 (n,)
    n_iter: int  #: iterations performed
    converged: bool  #: True when the last update moved no entry by more than tol


class SensingProblem(NamedTuple):
    """A compressed-sensing instance y = A x + noise * e (see ``sensing_problem``)."""

    A: np.ndarray  #: (m, n) measurement matrix
    x: np.ndarray  #: (n,) k-sparse signal
    y: np.ndarray  #: (m,) measurements
    support: np.ndarray  #: (n,) bool, the k positions where x may be non-zero


# ---------------------------------------------------------------- argument checks
def _check_k(k: Any, n: int, of: str = "the number of entries of w") -> int:
    k = positive_int(k, "k", minimum=0)
    if k > n:
        raise ValueError(f"k must be in [0, {n}] ({of}), got {k}")
    return cast(int, k)


def _check_step(step: Any) -> float | None:
    if step is None:
        return None
    return real_number(step, "step", low=0.0, low_open=True)


def _check_system(A: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    A = float_array(A, "A", ndim=2)
    y = float_array(y, "y", ndim=1)
    if y.size != A.shape[0]:
        raise ValueError(f"y must have A.shape[0] = {A.shape[0]} entries, got {y.size}")
    return A, y


def _default_step(A: np.ndarray) -> float:
    """1 / ||A||_2^2: the inverse Lipschitz constant of the gradient of 1/2 ||A x - y||^2."""
    lipschitz = float(np.linalg.norm(A, 2)) ** 2
    if lipschitz == 0.0:
        raise ValueError("A must not be all zeros (||A||_2 = 0 gives no default step)")
    return 1.0 / lipschitz


def _check_quadratic(w: Any, H: Any) -> tuple[np.ndarray, np.ndarray]:
    w = float_array(w, "w", ndim=1)
    H = float_array(H, "H", ndim=2)
    n = w.size
    if H.shape != (n, n):
        raise ValueError(f"H must have shape ({n}, {n}) to match w, got {H.shape}")
    if not np.array_equal(H, H.T):
        raise ValueError(
            "H must be symmetric (H == H.T exactly); if it is symmetric up to "
            "rounding, pass (H + H.T) / 2"
        )
    try:
        np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        raise ValueError(
            "H must be positive definite (its Cholesky factorisation failed); "
            "add damping, H + delta * I, as Optimal Brain Surgeon does"
        ) from None
    return w, H


# ---------------------------------------------------------------- best k-term approximation
def hard_threshold(w: Any, k: int) -> SparseApproximation:
    """Best k-term approximation of w in the Euclidean norm (magnitude pruning).

    u = argmin_{||u||_0 <= k} ||u - w||_2, given by

        support = keep_top_k(|w|, k),    u_i = w_i on the support, 0 elsewhere,

    cost = ||u - w||_2^2 = sum of w_i^2 over the pruned entries. Score |w_i|:
    higher = kept; equal magnitudes: the lower flat C-order index is kept
    (``refprune.masks.keep_top_k``), so among equally good answers the one
    returned is fixed. The same u is optimal for every l_p norm, p > 0
    (``best_k_term_error``), and for every norm that depends on |u_i - w_i|
    monotonically and symmetrically (proof in ``docs/sparse_approx.md``).

    DeVore, "Nonlinear approximation", Acta Numerica 7, 1998; Cohen, Dahmen and
    DeVore, "Compressed sensing and best k-term approximation", J. AMS 22, 2009.

    Parameters
    ----------
    w : float array, any shape, finite, non-empty (not modified)
    k : int in [0, w.size]

    Returns
    -------
    SparseApproximation
        ``u`` (kept entries bit-for-bit those of w, others +0.0), ``support``
        (exactly k True), ``cost`` (float64 sum of squares; inf if it overflows).
    """
    w = float_array(w, "w")
    k = _check_k(k, w.size)
    support = keep_top_k(np.abs(w), k)
    u = np.where(support, w, 0.0)
    with np.errstate(over="ignore"):
        cost = float(np.sum(np.square(w[~support])))
    return SparseApproximation(u, support, cost)


def best_k_term_error(w: Any, k: int, p: float = 2.0) -> float:
    """The l_p error of the best k-term approximation, sigma_k(w)_p.

    sigma_k(w)_p = min_{||u||_0 <= k} ||u - w||_p = ||w_P||_p, where P is the
    set pruned by ``hard_threshold(w, k)`` (the n - k smallest |w_i|), with
    ||v||_p = (sum |v_i|^p)^(1/p) for 0 < p < inf and max |v_i| for p = inf.
    For 0 < p < 1 this is a quasi-norm and the same support is still optimal.
    0.0 when nothing is pruned. Evaluated as m * (sum (|v_i| / m)^p)^(1/p) with
    m = max |v_i|, so it does not overflow for large entries.

    Cohen, Dahmen and DeVore, "Compressed sensing and best k-term
    approximation", J. AMS 22, 2009.

    Parameters
    ----------
    w : float array, any shape, finite, non-empty (not modified)
    k : int in [0, w.size]
    p : float in (0, inf], default 2 (``math.inf`` for the max norm)

    Returns
    -------
    float
    """
    if isinstance(p, numbers.Real) and not isinstance(p, bool) and p == math.inf:
        p = math.inf
    else:
        p = real_number(p, "p", low=0.0, low_open=True)
    w = float_array(w, "w")
    pruned = np.abs(w[~hard_threshold(w, k).support])
    if pruned.size == 0 or not np.any(pruned > 0):
        return 0.0
    top = float(pruned.max())
    if p == math.inf:
        return top
    return cast(float, top * float(np.sum((pruned / top) ** p)) ** (1.0 / p))


def best_k_sparse_nonnegative(w: Any, k: int) -> SparseApproximation:
    """Best k-sparse non-negative approximation of w in the Euclidean norm.

    u = argmin ||u - w||_2 subject to u >= 0 and ||u||_0 <= k. On a support S
    the best kept values are max(w_i, 0), so the cost is

        ||u - w||^2 = sum_i w_i^2 - sum_{i in S} max(w_i, 0)^2,

    minimised by keeping the k largest positive parts:

        support = keep_top_k(max(w, 0), k),   u_i = max(w_i, 0) on it, 0 elsewhere.

    Score max(w_i, 0): higher = kept; ties (in particular all the entries with
    w_i <= 0, whose score is 0) keep the lower flat C-order index. When fewer
    than k entries are positive the support is filled with non-positive entries
    whose u_i is 0.0. Magnitude selection is not optimal here: it may keep a
    large negative entry that the constraint then sets to 0 (w = [-3, 1],
    k = 1: cost 10 against the optimum 9). cost = sum (u_i - w_i)^2.

    Kyrillidis, Becker, Cevher and Koch, "Sparse projections onto the simplex",
    ICML 2013 (projection onto k-sparse non-negative vectors).

    Parameters
    ----------
    w : float array, any shape, finite, non-empty (not modified)
    k : int in [0, w.size]

    Returns
    -------
    SparseApproximation
        ``u`` >= 0 (kept positive entries bit-for-bit those of w, every other
        entry +0.0), ``support``, ``cost``.
    """
    w = float_array(w, "w")
    k = _check_k(k, w.size)
    positive_part = np.where(w > 0, w, 0.0)
    support = keep_top_k(positive_part, k)
    u = np.where(support, positive_part, 0.0)
    with np.errstate(over="ignore"):
        cost = float(np.sum(np.square(u - w)))
    return SparseApproximation(u, support, cost)


def best_k_sparse_weighted(w: Any, d: Any, k: int) -> SparseApproximation:
    """Best k-sparse approximation of w in the weighted norm sum_i d_i (u_i - w_i)^2.

    u = argmin_{||u||_0 <= k} sum_i d_i (u_i - w_i)^2 with d_i >= 0 (a norm when
    every d_i > 0). The coordinates do not interact, so kept values stay
    u_i = w_i and pruning i costs d_i w_i^2:

        support = keep_top_k(d * (w * w), k),   u_i = w_i on it, 0 elsewhere.

    Score d_i w_i^2, evaluated in float64 as ``d * (w * w)``: higher = kept;
    equal scores keep the lower flat C-order index. With d_i = h_ii / 2 the
    score is the Optimal Brain Damage saliency 1/2 h_ii w_i^2: OBD is exact for
    a loss that is a diagonal quadratic around its minimum.

    Reduces to magnitude: when all d_i are equal, the objective is a constant
    times ||u - w||^2, and the function returns the support and u of
    ``hard_threshold(w, k)`` exactly (same ties), whatever the rounding of
    d * w^2. When the d_i differ, magnitude can be strictly worse: w = [0.01,
    0.08], d = [1000, 0.5], k = 1 (the sharp small weight and the flat large
    one): magnitude costs 0.1, the optimum 0.0032. cost = sum d_i (u_i - w_i)^2,
    the sum of d_i w_i^2 over the pruned entries.

    LeCun, Denker and Solla, "Optimal Brain Damage", NIPS 1989.

    Parameters
    ----------
    w : float array, any shape, finite, non-empty (not modified)
    d : float array of w's shape, finite, >= 0 (not modified)
    k : int in [0, w.size]

    Returns
    -------
    SparseApproximation

    Raises
    ------
    ValueError
        also when d * w^2 overflows float64 (rescale w or d).
    """
    w = float_array(w, "w")
    d = float_array(d, "d")
    if d.shape != w.shape:
        raise ValueError(f"d must have the shape of w {w.shape}, got {d.shape}")
    if np.any(d < 0):
        raise ValueError(f"d must be >= 0 (a diagonal of non-negative weights), got min {d.min()}")
    k = _check_k(k, w.size)
    if np.all(d == d.flat[0]):
        approx = hard_threshold(w, k)
        support = approx.support
        cost = float(d.flat[0]) * approx.cost if d.flat[0] > 0 else 0.0
    else:
        with np.errstate(over="ignore"):
            scores = d * (w * w)
        if not np.all(np.isfinite(scores)):
            raise ValueError("d * w**2 overflows float64; rescale w or d")
        support = keep_top_k(scores, k)
        with np.errstate(over="ignore"):
            cost = float(np.sum(scores[~support]))
    u = np.where(support, w, 0.0)
    return SparseApproximation(u, support, cost)


def _fit_quadratic(w: np.ndarray, H: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, float]:
    """u and (u - w)^T H (u - w) for the best u supported on ``keep`` (inputs already checked)."""
    prune = ~keep
    e = np.zeros_like(w)
    e[prune] = -w[prune]
    if keep.any() and prune.any():
        e[keep] = np.linalg.solve(H[np.ix_(keep, keep)], H[np.ix_(keep, prune)] @ w[prune])
    u = np.where(keep, w + e, 0.0)
    return u, float(e @ (H @ e))


def quadratic_fit_on_support(w: Any, H: Any, support: Any) -> SparseApproximation:
    """Best approximation of w supported on a given set, in the norm (u - w)^T H (u - w).

    With S the support, P the pruned entries and e = u - w: e_P = -w_P is
    forced, and the kept values move to compensate,

        e_S = H_SS^{-1} H_SP w_P,     u_S = w_S + e_S,    u_P = 0,

    cost = e^T H e = w_P^T ([H^{-1}]_PP)^{-1} w_P (a Schur complement). For a
    single pruned weight q this is the Optimal Brain Surgeon update
    e = -(w_q / [H^{-1}]_qq) H^{-1} e_q with cost w_q^2 / [H^{-1}]_qq, twice the
    OBS saliency (OBS models the loss change as 1/2 e^T H e). e_S is computed by
    ``numpy.linalg.solve`` on H_SS and the cost as ``e @ (H @ e)``.

    Hassibi and Stork, "Second order derivatives for network pruning: Optimal
    Brain Surgeon", NIPS 5, 1993.

    Parameters
    ----------
    w : float array (n,), finite (not modified)
    H : float array (n, n), symmetric (exactly) and positive definite (not modified)
    support : bool array (n,), True = kept (any number of True entries)

    Returns
    -------
    SparseApproximation
    """
    w, H = _check_quadratic(w, H)
    keep = bool_array(support, "support", shape=w.shape)
    u, cost = _fit_quadratic(w, H, keep)
    return SparseApproximation(u, keep, cost)


def best_k_sparse_quadratic(
    w: Any, H: Any, k: int, *, max_n: int = DEFAULT_MAX_N
) -> SparseApproximation:
    """Best k-sparse approximation of w in the norm (u - w)^T H (u - w), kept values re-optimised.

    u = argmin_{||u||_0 <= k} (u - w)^T H (u - w), H symmetric positive definite.
    For each support S of size k the best u is ``quadratic_fit_on_support``
    (cost w_P^T ([H^{-1}]_PP)^{-1} w_P); the function tries every one of the
    C(n, k) supports in ``itertools.combinations(range(n), k)`` order (the
    lexicographic order of the kept index sets) and returns the first with the
    smallest float64 cost (a later support must be strictly cheaper to
    replace it). Choosing the support is NP-hard in general (Natarajan 1995),
    hence exhaustive search, for tiny n only.

    This is the exact problem behind second-order pruning: for a loss that is
    quadratic around a minimum w with Hessian H, the loss increase of any
    pruned-and-compensated u is 1/2 (u - w)^T H (u - w). Optimal Brain Surgeon
    removes one weight at a time, greedily; Optimal Brain Damage ignores the
    off-diagonal of H and does not compensate; magnitude ignores H. Each can
    be strictly worse than this solver; with a diagonal H it reduces to
    ``best_k_sparse_weighted(w, diag(H), k)``.

    Hassibi and Stork, "Second order derivatives for network pruning: Optimal
    Brain Surgeon", NIPS 5, 1993; LeCun, Denker and Solla, "Optimal Brain
    Damage", NIPS 1989; Natarajan, "Sparse approximate solutions to linear
    systems", SIAM J. Comput. 24, 1995.

    Parameters
    ----------
    w : float array (n,), finite (not modified)
    H : float array (n, n), symmetric (exactly) and positive definite (not modified)
    k : int in [0, n]
    max_n : int, default ``DEFAULT_MAX_N`` = 16
        Largest n searched; a larger n raises ValueError unless max_n is raised
        (the search costs C(n, k) solves of a k x k system).

    Returns
    -------
    SparseApproximation
    """
    w, H = _check_quadratic(w, H)
    n = w.size
    k = _check_k(k, n)
    max_n = positive_int(max_n, "max_n")
    if n > max_n:
        raise ValueError(
            f"exhaustive search over C({n}, {k}) = {math.comb(n, k)} supports: "
            f"n = {n} exceeds max_n = {max_n}; pass a larger max_n to allow it"
        )
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for kept in itertools.combinations(range(n), k):
        keep = np.zeros(n, dtype=bool)
        keep[list(kept)] = True
        u, cost = _fit_quadratic(w, H, keep)
        if best is None or cost < best[2]:
            best = (u, keep, cost)
    assert best is not None
    return SparseApproximation(*best)


# ---------------------------------------------------------------- proximal operators
def _soft(w: np.ndarray, lam: float) -> np.ndarray:
    return np.where(np.abs(w) > lam, w - np.copysign(lam, w), 0.0)


def soft_threshold(w: Any, lam: float) -> np.ndarray:
    """Soft thresholding: the proximal operator of lam * ||.||_1.

    u = argmin_u 1/2 ||u - w||^2 + lam ||u||_1, entrywise

        u_i = sign(w_i) * max(|w_i| - lam, 0),

    evaluated as ``w_i - copysign(lam, w_i)`` where |w_i| > lam and +0.0
    elsewhere (so entries with |w_i| <= lam, the tie |w_i| = lam included, are
    +0.0, and the survivors are shrunk by exactly lam in float64). lam = 0 is
    the identity except that -0.0 becomes +0.0.

    Donoho, "De-noising by soft-thresholding", IEEE Trans. Inf. Theory 41(3),
    1995; Parikh and Boyd, "Proximal algorithms", Found. Trends Optim. 1(3), 2014.

    Parameters
    ----------
    w : float array, any shape, finite, non-empty (not modified)
    lam : float >= 0

    Returns
    -------
    float64 array of w's shape
    """
    w = float_array(w, "w")
    lam = real_number(lam, "lam", low=0.0)
    return _soft(w, lam)


def _sqrt_floor(lam: float) -> float:
    """Largest float64 t with t^2 <= 2 lam in exact arithmetic (lam >= 0 finite)."""
    c = 2 * Fraction(lam)
    t = math.sqrt(lam) * math.sqrt(2.0)  # within a few ulps; corrected below
    while Fraction(t) ** 2 > c:
        t = math.nextafter(t, 0.0)
    while Fraction(math.nextafter(t, math.inf)) ** 2 <= c:
        t = math.nextafter(t, math.inf)
    return t


def hard_threshold_prox(w: Any, lam: float) -> np.ndarray:
    """Hard thresholding: a proximal operator of lam * ||.||_0.

    u = argmin_u 1/2 ||u - w||^2 + lam ||u||_0, entrywise: keeping w_i costs
    lam, zeroing it costs w_i^2 / 2, so

        u_i = w_i if w_i^2 > 2 lam,   u_i = +0.0 otherwise.

    Tie: at w_i^2 = 2 lam both 0 and w_i minimise; the reference returns 0.0
    (the sparser one). The comparison is decided exactly on the float64 values
    (not after rounding w_i^2 or sqrt(2 lam)): u_i = w_i iff |w_i| > t, with t
    the largest float64 whose exact square is <= 2 lam. This agrees with the
    float64 test |w_i| > sqrt(2 * lam) except when |w_i| equals the rounded
    square root and its exact square exceeds 2 lam. lam = 0 keeps every
    non-zero entry. Kept entries are bit-for-bit those of w.

    Blumensath and Davies, "Iterative thresholding for sparse approximations",
    J. Fourier Anal. Appl. 14, 2008.

    Parameters
    ----------
    w : float array, any shape, finite, non-empty (not modified)
    lam : float >= 0

    Returns
    -------
    float64 array of w's shape
    """
    w = float_array(w, "w")
    lam = real_number(lam, "lam", low=0.0)
    return np.where(np.abs(w) > _sqrt_floor(lam), w, 0.0)


# ---------------------------------------------------------------- iterative solvers
def _finite_or_raise(v: np.ndarray, solver: str, it: int, step: Any) -> None:
    if not np.all(np.isfinite(v)):
        raise ValueError(
            f"{solver} diverged at iteration {it} (non-finite iterate) with "
            f"step = {step}; use a step <= 1 / ||A||_2^2 (the default)"
        )


def ista(
    A: Any, y: Any, lam: float, *, step: float | None = None, n_iter: int = 1000, tol: float = 0.0
) -> IterativeResult:
    """ISTA (iterative soft thresholding) for the lasso 1/2 ||A x - y||^2 + lam ||x||_1.

    From x = 0, repeat

        x <- soft_threshold(x - step * A^T (A x - y), step * lam),

    evaluated in that order (r = A @ x - y, g = A.T @ r, x - step * g), for
    ``n_iter`` iterations or until an update moves no entry by more than
    ``tol`` (max |x_new - x| <= tol; with tol = 0, until an exact fixed point,
    after which further iterations would change nothing). Default step
    1 / ||A||_2^2 = 1 / L, L the Lipschitz constant of the gradient of the
    smooth part (||A||_2 the largest singular value); with step <= 1 / L the
    objective decreases at every iteration and converges at rate O(1 / t)
    (Beck and Teboulle 2009). A step so large that the iterates overflow
    raises ValueError.

    Daubechies, Defrise and De Mol, "An iterative thresholding algorithm for
    linear inverse problems with a sparsity constraint", Comm. Pure Appl.
    Math. 57(11), 2004; Beck and Teboulle, "A fast iterative
    shrinkage-thresholding algorithm for linear inverse problems", SIAM J.
    Imaging Sci. 2(1), 2009.

    Parameters
    ----------
    A : float array (m, n), finite (not modified)
    y : float array (m,), finite (not modified)
    lam : float >= 0
    step : float > 0 or None (default 1 / ||A||_2^2)
    n_iter : int >= 0, the most iterations performed (default 1000)
    tol : float >= 0 (default 0)

    Returns
    -------
    IterativeResult
        ``x``, ``n_iter`` (iterations performed), ``converged``.
    """
    A, y = _check_system(A, y)
    lam = real_number(lam, "lam", low=0.0)
    step = _check_step(step)
    n_iter = positive_int(n_iter, "n_iter", minimum=0)
    tol = real_number(tol, "tol", low=0.0)
    step = _default_step(A) if step is None else step
    x = np.zeros(A.shape[1])
    for it in range(1, n_iter + 1):
        with np.errstate(over="ignore", invalid="ignore"):
            x_new = _soft(x - step * (A.T @ (A @ x - y)), step * lam)
        _finite_or_raise(x_new, "ista", it, step)
        moved = float(np.max(np.abs(x_new - x)))
        x = x_new
        if moved <= tol:
            return IterativeResult(x, it, True)
    return IterativeResult(x, n_iter, False)


def _hard_k(v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    support = keep_top_k(np.abs(v), k)
    return np.where(support, v, 0.0), support


def iht(
    A: Any, y: Any, k: int, *, step: float | str | None = None, n_iter: int = 1000, tol: float = 0.0
) -> IterativeResult:
    """IHT (iterative hard thresholding) for min ||A x - y||^2 subject to ||x||_0 <= k.

    From x = 0, repeat

        x <- H_k(x - step * A^T (A x - y)),

    H_k = ``hard_threshold`` (keep the k largest |v_i|, ties to the lower
    index), evaluated in that order, for ``n_iter`` iterations or until an
    update moves no entry by more than ``tol`` (as in ``ista``).

    Step rules:

    * ``None`` (default): the fixed step 1 / ||A||_2^2. This is Blumensath and
      Davies' (2009) iteration x <- H_k(x + Phi^T (y - Phi x)) for the rescaled
      Phi = A / ||A||_2, whose norm-below-one condition makes every step
      decrease ||A x - y||^2. It converges to a fixed point but, for Gaussian A
      with m < n, often to a wrong one (measured in ``docs/sparse_approx.md``).
    * a float > 0: that fixed step.
    * ``"normalized"``: normalised IHT (Blumensath and Davies 2010). With
      g = A^T (A x - y) and S the current support (at the start, the support of
      H_k(A^T y)), step mu = ||g_S||^2 / ||A g_S||^2 (if g_S = 0 but g != 0:
      ||g||^2 / ||A g||^2); if the new support differs from S, the step is
      accepted only when mu <= (1 - c) ||x_new - x||^2 / ||A (x_new - x)||^2,
      and otherwise halved (kappa (1 - c) = 2, c = 0.01) and retried. S is the
      support mask returned by H_k (exactly k entries). No random draws.

    Blumensath and Davies, "Iterative hard thresholding for compressed
    sensing", Appl. Comput. Harmon. Anal. 27(3), 2009; Blumensath and Davies,
    "Normalized iterative hard thresholding: guaranteed stability and
    performance", IEEE J. Sel. Topics Signal Process. 4(2), 2010.

    Parameters
    ----------
    A : float array (m, n), finite (not modified)
    y : float array (m,), finite (not modified)
    k : int in [0, n]
    step : float > 0, "normalized", or None (default 1 / ||A||_2^2)
    n_iter : int >= 0, the most iterations performed (default 1000)
    tol : float >= 0 (default 0)

    Returns
    -------
    IterativeResult
    """
    A, y = _check_system(A, y)
    k = _check_k(k, A.shape[1], "the number of columns of A")
    normalized = isinstance(step, str)
    if normalized and step != "normalized":
        raise ValueError(f"step must be a float > 0, 'normalized' or None, got {step!r}")
    fixed = None if normalized else _check_step(step)
    n_iter = positive_int(n_iter, "n_iter", minimum=0)
    tol = real_number(tol, "tol", low=0.0)
    if not normalized and fixed is None:
        fixed = _default_step(A)
    x = np.zeros(A.shape[1])
    support = _hard_k(A.T @ y, k)[1] if normalized else None
    for it in range(1, n_iter + 1):
        with np.errstate(over="ignore", invalid="ignore"):
            g = A.T @ (A @ x - y)
        if normalized:
            if not np.any(g):
                return IterativeResult(x, it, True)
            mu = _niht_step(A, g, cast(np.ndarray, support))
            x_new, new_support = _hard_k(x - mu * g, k)
            while not np.array_equal(new_support, cast(np.ndarray, support)):
                diff = x_new - x
                a_diff = A @ diff
                denom = float(a_diff @ a_diff)
                if denom == 0.0 or mu <= (1.0 - NIHT_C) * float(diff @ diff) / denom:
                    break
                mu = mu / NIHT_SHRINK
                x_new, new_support = _hard_k(x - mu * g, k)
            _finite_or_raise(x_new, "iht", it, "normalized")
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                v = x - fixed * g
            _finite_or_raise(v, "iht", it, fixed)
            x_new, new_support = _hard_k(v, k)
        moved = float(np.max(np.abs(x_new - x)))
        x, support = x_new, new_support
        if moved <= tol:
            return IterativeResult(x, it, True)
    return IterativeResult(x, n_iter, False)


def _niht_step(A: np.ndarray, g: np.ndarray, support: np.ndarray) -> float:
    """mu = ||g_S||^2 / ||A g_S||^2, falling back to the full gradient when A g_S = 0."""
    g_s = np.where(support, g, 0.0)
    a_g = A @ g_s
    denom = float(a_g @ a_g)
    if denom == 0.0:
        g_s = g
        a_g = A @ g
        denom = float(a_g @ a_g)
    return float(g_s @ g_s) / denom


# ---------------------------------------------------------------- random instances
def sensing_problem(
    m: int, n: int, k: int, seed: int | np.random.Generator, noise: float = 0.0
) -> SensingProblem:
    """A random compressed-sensing instance y = A x + noise * e with a k-sparse x.

    Draw order, with rng = ``refprune.rng.make_rng(seed)``:

    1. G = rng.standard_normal((m, n)) (C order); A = G / sqrt(m), so each
       column has expected squared norm 1;
    2. r = rng.random(n); support = keep_top_k(r, k) (the k largest r_i; ties
       to the lower index);
    3. v = rng.standard_normal(k); x = 0 except x[support] = v, in increasing
       index order;
    4. e = rng.standard_normal(m), always drawn; y = A @ x + noise * e (with
       noise = 0, y equals A @ x bit for bit).

    Candes, Romberg and Tao, "Robust uncertainty principles", IEEE Trans. Inf.
    Theory 52(2), 2006; Donoho, "Compressed sensing", IEEE Trans. Inf. Theory
    52(4), 2006.

    Parameters
    ----------
    m : int >= 1, number of measurements
    n : int >= 1, signal length
    k : int in [0, n], number of non-zeros
    seed : int >= 0 or numpy Generator
    noise : float >= 0, standard deviation of the measurement noise (default 0)

    Returns
    -------
    SensingProblem
    """
    m = positive_int(m, "m")
    n = positive_int(n, "n")
    k = _check_k(k, n, "the signal length n")
    noise = real_number(noise, "noise", low=0.0)
    rng = make_rng(seed)
    A = rng.standard_normal((m, n)) / np.sqrt(m)
    support = keep_top_k(rng.random(n), k)
    x = np.zeros(n)
    x[support] = rng.standard_normal(k)
    e = rng.standard_normal(m)
    return SensingProblem(A, x, A @ x + noise * e, support)
