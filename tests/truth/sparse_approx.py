"""Sparse-approximation optima and the ISTA / IHT iterates, exactly or in mpmath.

Thresholds and supports are decided on the exact values (``fractions``):

    hard_threshold(w, k)        w on the k largest |w_i| (ties: lower index), 0 elsewhere
    soft_threshold(w, lam)      w_i - sign(w_i) lam where |w_i| > lam, else 0
    hard_threshold_prox(w, lam) w_i where w_i^2 > 2 lam, else 0
    nonnegative                 max(w, 0) on the k largest max(w_i, 0)
    weighted                    w on the k largest d_i w_i^2
    quadratic                   argmin over supports S, |S| = k, of e^T H e with e_P = -w_P,
                                e_S = H_SS^-1 H_SP w_P (P the pruned entries), u = w + e on S

ISTA and IHT are iterations, not optima: the golden value is the n-th iterate
from x = 0, so the truth is the same iteration run exactly (mpmath), from the
same inputs, with the same thresholds and supports. The float64 iterate drifts
from it by the rounding of each step, carried forward by the later steps. One
step x -> prox(x - step A^T (A x - y)) rounds, entrywise, within a small
multiple of u of

    v_t = |x_t| + step |A^T| (|A| |x_t| + |y|),

and the gradient step is Lipschitz with rho = ||I - step A^T A||_2 = max_i |1 -
step lambda_i(A^T A)| while both proximal maps are nonexpansive (IHT's on a
fixed support). So after n steps the drift is at most a small multiple of u times

    B_n = sum_{t < n} rho^(n-1-t) ||v_t||_2,

which is the scale S of every entry of an ISTA or IHT iterate (instead of the
inputs' sensitivity). For IHT that holds only if the float64 run chose the same
support at every step; ``iht`` checks that each step's k-th and (k+1)-th largest
|v| are further apart than the drift allowed so far (else no bound is claimed
and the check fails).
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import mpmath
from mpmath import mpf

from .cases import Array, rows
from .ulps import exact, to_mpf

DRIFT_ULPS = 64  # the multiple of u per step assumed when certifying IHT's supports


def _top(scores: list, k: int) -> list[int]:
    """Indices of the k highest scores; ties: the lower index kept."""
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


def _fractions(a: Array) -> list[Fraction]:
    return [exact(x) for x in a.data]


def _mp(a: Array) -> Array:
    """Exact rationals to mpf (exact: they are sums of two floats at most)."""
    return Array(a.dtype, a.shape, [to_mpf(x) if isinstance(x, Fraction) else x for x in a.data])


def hard_threshold(w: Array, k: int) -> Array:
    f = _fractions(w)
    keep = set(_top([abs(x) for x in f], k))
    return Array("float64", w.shape, [f[i] if i in keep else Fraction(0) for i in range(len(f))])


def soft_threshold(w: Array, lam: float) -> Array:
    lam_ = exact(lam)
    out = [x - lam_ if x > lam_ else x + lam_ if x < -lam_ else Fraction(0) for x in _fractions(w)]
    return Array("float64", w.shape, out)


def hard_threshold_prox(w: Array, lam: float) -> Array:
    out = [x if x * x > 2 * exact(lam) else Fraction(0) for x in _fractions(w)]
    return Array("float64", w.shape, out)


def exact_solution(problem: str, w: Array, k: int, d: Array | None, H: Array | None) -> Array:
    f = _fractions(w)
    n = len(f)
    if problem == "nonnegative":
        plus = [max(x, Fraction(0)) for x in f]
        keep = set(_top(plus, k))
        return Array("float64", w.shape, [plus[i] if i in keep else Fraction(0) for i in range(n)])
    if problem == "weighted":
        score = [exact(di) * x * x for di, x in zip(d.data, f)]
        keep = set(_top(score, k))
        return Array("float64", w.shape, [f[i] if i in keep else Fraction(0) for i in range(n)])
    Hm = mpmath.matrix([[mpf(x) for x in row] for row in rows(H)])
    wm = [mpf(x) for x in w.data]
    best, best_u = None, None
    for S in itertools.combinations(range(n), k):
        u, cost = _fit(Hm, wm, list(S))
        if best is None or cost < best and abs(cost - best) > mpf(10) ** -25 * abs(best):
            best, best_u = cost, u  # the first of equal costs stays
    return Array("float64", w.shape, best_u)


def _fit(H: Any, w: list[mpf], S: list[int]) -> tuple[list[mpf], mpf]:
    n = len(w)
    P = [i for i in range(n) if i not in S]
    e = [mpf(0)] * n
    for i in P:
        e[i] = -w[i]
    if S and P:
        HSS = mpmath.matrix([[H[i, j] for j in S] for i in S])
        rhs = mpmath.matrix([sum(H[i, j] * w[j] for j in P) for i in S])
        eS = mpmath.lu_solve(HSS, rhs)
        for a, i in enumerate(S):
            e[i] = eS[a]
    cost = sum(e[i] * H[i, j] * e[j] for i in range(n) for j in range(n))
    return [w[i] + e[i] if i in S else mpf(0) for i in range(n)], cost


# ------------------------------------------------------------------ iterations
def _system(inputs: dict[str, Any]) -> tuple[list[list[mpf]], list[mpf], mpf]:
    A = [[mpf(x) for x in row] for row in rows(inputs["A"])]
    return A, [mpf(x) for x in inputs["y"].data], mpf(inputs["step"])


def _gradient_step(A, y, step, x) -> tuple[list[mpf], list[mpf]]:
    """x - step A^T (A x - y) and the rounding scale v = |x| + step |A^T| (|A| |x| + |y|)."""
    m, n = len(A), len(x)
    r = [sum(A[i][j] * x[j] for j in range(n)) - y[i] for i in range(m)]
    r_abs = [sum(abs(A[i][j] * x[j]) for j in range(n)) + abs(y[i]) for i in range(m)]
    step_x = [x[j] - step * sum(A[i][j] * r[i] for i in range(m)) for j in range(n)]
    v = [abs(x[j]) + step * sum(abs(A[i][j]) * r_abs[i] for i in range(m)) for j in range(n)]
    return step_x, v


def _rho(A, step) -> mpf:
    """||I - step A^T A||_2 (symmetric: the largest |1 - step lambda|)."""
    n = len(A[0])
    AtA = mpmath.matrix(
        [[sum(A[i][a] * A[i][b] for i in range(len(A))) for b in range(n)] for a in range(n)]
    )
    eigenvalues = mpmath.eigsy(AtA)[0]
    return max(abs(1 - step * lam) for lam in eigenvalues)


def _norm2(v: list[mpf]) -> mpf:
    return mpmath.sqrt(sum(x * x for x in v))


def iterate(op: str, inputs: dict[str, Any]) -> tuple[list[mpf], mpf]:
    """The exact n-th iterate and its drift scale B_n (module docstring)."""
    A, y, step = _system(inputs)
    rho = _rho(A, step)
    x = [mpf(0)] * len(A[0])
    drift = mpf(0)
    for _ in range(int(inputs["n_iter"])):
        v_step, v = _gradient_step(A, y, step, x)
        if op == "ista":
            t = step * mpf(inputs["lam"])
            x = [z - t if z > t else z + t if z < -t else mpf(0) for z in v_step]
        else:
            k = int(inputs["k"])
            magnitudes = sorted((abs(z) for z in v_step), reverse=True)
            if k < len(magnitudes):
                gap = magnitudes[k - 1] - magnitudes[k]
                allowed = 2 * DRIFT_ULPS * mpf(2) ** -53 * (rho * drift + _norm2(v))
                if gap <= allowed:
                    raise AssertionError(f"iht: support not certified (gap {gap}, drift {allowed})")
            keep = set(_top([abs(z) for z in v_step], k))
            x = [z if i in keep else mpf(0) for i, z in enumerate(v_step)]
        drift = rho * drift + _norm2(v)
    return x, drift


def truth(op: str, inputs: dict[str, Any]) -> dict[str, Any]:
    if op == "hard_threshold":
        return {"u": _mp(hard_threshold(inputs["w"], int(inputs["k"])))}
    if op == "soft_threshold":
        return {"u": _mp(soft_threshold(inputs["w"], inputs["lam"]))}
    if op == "hard_threshold_prox":
        return {"u": _mp(hard_threshold_prox(inputs["w"], inputs["lam"]))}
    if op == "sparse_approx_exact":
        return {
            "u": _mp(
                exact_solution(
                    inputs["problem"],
                    inputs["w"],
                    int(inputs["k"]),
                    inputs.get("d"),
                    inputs.get("H"),
                )
            )
        }
    if op in ("ista", "iht"):
        x, _ = iterate(op, inputs)
        return {"x": Array("float64", (len(x),), x)}
    raise KeyError(op)


def drift_scale(op: str, inputs: dict[str, Any]) -> dict[str, Any]:
    x, drift = iterate(op, inputs)
    return {"x": Array("float64", (len(x),), [drift] * len(x))}


OPS = (
    "hard_threshold",
    "soft_threshold",
    "hard_threshold_prox",
    "sparse_approx_exact",
    "ista",
    "iht",
)
ITERATIONS = ("ista", "iht")

__all__ = ["ITERATIONS", "OPS", "drift_scale", "exact", "truth"]
