"""Family "sparse_approx": pruning as sparse approximation. Hard and soft thresholding, the
cases where magnitude selection is not optimal with their exact solvers, ISTA and IHT."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .. import strategies as cst
from . import SIGNED_EXACT, CaseSpec, Family, Property, close
from .networks import quantize

ALGORITHM = """\
refprune.sparse_approx. A support is keep_top_k of a score (ties: the lower flat index kept);
entries off the support are +0.0; kept entries not re-optimised are bit for bit those of w.
hard_threshold(w, k): score |w|: the best k-term approximation in every l_p norm.
soft_threshold(w, lam): w_i - copysign(lam, w_i) where |w_i| > lam, else +0.0.
hard_threshold_prox(w, lam): w_i where w_i^2 > 2 lam exactly (ties to 0), else +0.0.
sparse_approx_exact: "nonnegative" min ||u - w|| with u >= 0 (score max(w, 0), u = max(w, 0) kept);
"weighted" min sum d_i (u_i - w_i)^2 (score d * (w * w); all d equal: hard_threshold's support);
"quadratic" min (u - w)^T H (u - w) with the kept values re-optimised, u_S = w_S + H_SS^-1 H_SP w_P,
over all supports in itertools.combinations order, the first of least float64 cost.
ista(A, y, lam, step, n_iter): x = 0; repeat x <- soft_threshold(x - step * A^T (A x - y), step lam).
iht(A, y, k, step, n_iter): x = 0; repeat x <- hard_threshold(x - step * A^T (A x - y), k)."""

NOTES = {
    "magnitude-not-optimal": "magnitude selection is strictly worse than the exact solver here "
    "(the comment gives both costs)",
    "magnitude-optimal": "the exact solver agrees with magnitude selection",
    "ties": "equal scores at the threshold: the lower flat index is kept",
    "negative-zero": "-0.0 in the input: a kept -0.0 stays -0.0, dropped entries are +0.0",
    "threshold-tie": "an entry exactly at the threshold (|w| = lam, or w^2 = 2 lam)",
    "zero-count": "k = 0 or a threshold above every entry",
    "full-count": "k = n or lam = 0",
    "article-example": "w1 = 0.01 sharp (curvature 2000), w2 = 0.08 flat: the article's example",
    "multi-dim": "a 2-D array: ties ordered by flat C-order index",
    "compressed-sensing": "a seeded sensing instance y = A x with a sparse x",
    "baseline": "an ordinary input",
}


def _sq(u, w, weights=None, H=None):
    e = u - w
    if H is not None:
        return float(e @ (H @ e))
    return float(np.sum((weights if weights is not None else 1.0) * e * e))


def _cases() -> list[CaseSpec]:
    out = []
    w1 = np.array([0.3, -1.2, 2.5, -0.0, 1.1, -2.5, 0.05])
    for k in (0, 1, 3, 6, 7):
        flags = ["ties", "negative-zero"] if k in (1, 3) else ["negative-zero"]
        flags += ["zero-count"] if k == 0 else ["full-count"] if k == 7 else []
        out.append(
            CaseSpec(
                f"hard_threshold/k={k}",
                "hard_threshold",
                f"best {k}-term approximation; |2.5| = |-2.5| tie",
                sorted(set(flags)),
                {"w": w1, "k": k},
            )
        )
    m = np.array([[1.0, -3.0, 0.5], [3.0, 0.5, -0.5]])
    out.append(
        CaseSpec(
            "hard_threshold/matrix",
            "hard_threshold",
            "2-D, ties at 3 and at 0.5",
            ["ties", "multi-dim"],
            {"w": m, "k": 3},
        )
    )
    for lam, flags in [
        (0.0, ["full-count"]),
        (0.5, ["baseline"]),
        (1.1, ["threshold-tie"]),
        (3.0, ["zero-count"]),
    ]:
        out.append(
            CaseSpec(
                f"soft_threshold/{lam}",
                "soft_threshold",
                f"soft thresholding at lam = {lam}",
                flags + ["negative-zero"],
                {"w": w1, "lam": lam},
            )
        )
    for lam, flags in [
        (0.0, ["full-count"]),
        (0.6, ["baseline"]),
        (0.5 * 1.1**2, ["threshold-tie"]),
        (0.125, ["threshold-tie"]),
        (4.0, ["zero-count"]),
    ]:
        out.append(
            CaseSpec(
                f"hard_threshold_prox/{lam!r}",
                "hard_threshold_prox",
                f"hard thresholding at lam = {lam!r} (keep w_i^2 > 2 lam = {2 * lam!r})",
                flags + ["negative-zero"],
                {"w": np.append(w1, 0.5), "lam": lam},
            )
        )

    # where magnitude selection is not optimal
    def exact_case(key, problem, w, k, d, H, comment):
        mag = (
            np.where(np.abs(w) >= np.sort(np.abs(w))[::-1][k - 1], w, 0.0)
            if k
            else np.zeros_like(w)
        )
        if problem == "nonnegative":
            mag = np.maximum(mag, 0.0)
            from refprune.sparse_approx import best_k_sparse_nonnegative as f

            exact = f(w, k).u
            c_mag, c_ex = _sq(mag, w), _sq(exact, w)
        elif problem == "weighted":
            from refprune.sparse_approx import best_k_sparse_weighted

            exact = best_k_sparse_weighted(w, d, k).u
            c_mag, c_ex = _sq(mag, w, d), _sq(exact, w, d)
        else:
            from refprune.sparse_approx import best_k_sparse_quadratic, quadratic_fit_on_support

            exact = best_k_sparse_quadratic(w, H, k).u
            mag = quadratic_fit_on_support(w, H, mag != 0).u
            c_mag, c_ex = _sq(mag, w, H=H), _sq(exact, w, H=H)
        flag = "magnitude-not-optimal" if c_ex < c_mag else "magnitude-optimal"
        out.append(
            CaseSpec(
                f"exact/{key}",
                "sparse_approx_exact",
                f"{comment}: magnitude costs {c_mag:.6g}, the optimum {c_ex:.6g}",
                [flag] + (["article-example"] if "article" in key else []),
                {"problem": problem, "w": w, "k": k, "d": d, "H": H},
            )
        )

    exact_case(
        "nonnegative/-3,1",
        "nonnegative",
        np.array([-3.0, 1.0]),
        1,
        None,
        None,
        "u >= 0: magnitude keeps -3, which the constraint zeroes",
    )
    exact_case(
        "nonnegative/mixed",
        "nonnegative",
        np.array([0.5, -2.0, 1.5, -0.25, 0.75]),
        2,
        None,
        None,
        "u >= 0, k = 2",
    )
    exact_case(
        "nonnegative/few-positive",
        "nonnegative",
        np.array([-1.0, 0.5, -2.0, -0.5]),
        3,
        None,
        None,
        "only one positive entry: the support is filled with zeros",
    )
    exact_case(
        "weighted/article",
        "weighted",
        np.array([0.01, 0.08]),
        1,
        np.array([1000.0, 0.5]),
        None,
        "weighted norm d = h/2 = (1000, 0.5)",
    )
    exact_case(
        "weighted/equal-d",
        "weighted",
        np.array([0.5, -0.25, 0.75, 0.125]),
        2,
        np.full(4, 3.0),
        None,
        "equal weights reduce to magnitude",
    )
    exact_case(
        "weighted/mixed",
        "weighted",
        np.array([1.0, -2.0, 0.5, 3.0, -0.75]),
        2,
        np.array([4.0, 0.25, 16.0, 0.125, 1.0]),
        None,
        "weighted norm, k = 2",
    )
    exact_case(
        "quadratic/sharp-small",
        "quadratic",
        np.array([0.5, 1.0]),
        1,
        None,
        np.array([[10.0, 0.5], [0.5, 0.125]]),
        "the small weight sits in a sharp direction, the large one in a flat one",
    )
    exact_case(
        "quadratic/correlated",
        "quadratic",
        np.array([1.75, 1.125]),
        1,
        None,
        np.array([[0.8125, 1.15625], [1.15625, 6.890625]]),
        "correlated pair, keep 1",
    )
    exact_case(
        "quadratic/3",
        "quadratic",
        np.array([-0.625, 0.5, 0.375]),
        2,
        None,
        np.array(
            [[0.625, 0.125, 0.46875], [0.125, 2.515625, -0.1875], [0.46875, -0.1875, 2.640625]]
        ),
        "3 weights, keep 2",
    )
    exact_case(
        "quadratic/4",
        "quadratic",
        np.array([0.5, -0.625, 0.125, -0.875]),
        2,
        None,
        np.array(
            [
                [7.203125, -1.859375, 0.5625, 0.40625],
                [-1.859375, 5.53125, -0.6875, -1.78125],
                [0.5625, -0.6875, 1.875, 0.8125],
                [0.40625, -1.78125, 0.8125, 1.46875],
            ]
        ),
        "4 weights, keep 2",
    )
    exact_case(
        "quadratic/identity",
        "quadratic",
        np.array([0.5, -0.625, 0.125, -0.875]),
        2,
        None,
        np.eye(4),
        "H = I is the Euclidean norm: magnitude is optimal",
    )

    # ISTA and IHT on a small seeded sensing instance (A, y stored; step given explicitly)
    rng = np.random.Generator(np.random.PCG64(501))
    A = quantize(rng.standard_normal((6, 10)) / np.sqrt(6))
    x = np.zeros(10)
    x[[1, 4, 8]] = [1.0, -0.75, 0.5]
    y = A @ x
    step = 1.0 / 8.0
    assert step <= 1.0 / np.linalg.norm(A, 2) ** 2
    for n_iter in (1, 5, 60):
        out.append(
            CaseSpec(
                f"ista/{n_iter}",
                "ista",
                f"ISTA, lam 0.05, step 1/8, {n_iter} iterations on a "
                "6 x 10 instance with 3 non-zeros",
                ["compressed-sensing"],
                {"A": A, "y": y, "lam": 0.05, "step": step, "n_iter": n_iter},
            )
        )
        out.append(
            CaseSpec(
                f"iht/{n_iter}",
                "iht",
                f"IHT, k 3, step 1/8, {n_iter} iterations on the same instance",
                ["compressed-sensing"],
                {"A": A, "y": y, "k": 3, "step": step, "n_iter": n_iter},
            )
        )
    return out


def tolerance(op: str, expected: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Thresholding is exact (bits of w are copied); solvers and iterations close (golden
    cases: per-entry scales). Zeros are signed everywhere: entries off the support are +0.0."""
    if op in ("hard_threshold", "soft_threshold", "hard_threshold_prox") or (
        op == "sparse_approx_exact" and inputs.get("problem") != "quadratic"
    ):
        return dict(SIGNED_EXACT)
    return dict(close(expected, rel=1e-10), signed_zeros=True)


# ----------------------------------------------------------------------------- properties
def _vectors(max_size=8):
    return cst.scores(hnp.array_shapes(min_dims=1, max_dims=1, max_side=max_size), bound=1e6)


@st.composite
def _w_k(draw, max_size=8):
    w = draw(_vectors(max_size))
    return w, draw(cst.counts(w.size))


def _ht_differential(c, ex):
    w, k = ex
    c.agree("hard_threshold", w=w, k=k)


def _ht_optimal(c, ex):
    """||u - w||^2 equals the minimum over all supports of size k, and u keeps w's entries."""
    w, k = ex
    u = np.asarray(c.call("hard_threshold", w=w, k=k), dtype=np.float64)
    c.require(
        np.count_nonzero(u) <= k,
        lambda: f"{np.count_nonzero(u)} non-zeros, at most k = {k} allowed",
    )
    c.require(np.all((u == w) | (u == 0)), lambda: "a kept entry differs from w")
    w2 = np.square(w)
    best = min(
        float(np.sum(np.delete(w2, list(S)))) for S in itertools.combinations(range(w.size), k)
    )
    got = float(np.sum(np.square(u - w)))
    c.require(
        got <= best * (1 + 1e-12),
        lambda: f"||u - w||^2 = {got!r} but the best {k}-term error is {best!r}",
    )


@st.composite
def _w_lam(draw):
    w = draw(_vectors())
    lam = draw(
        st.one_of(st.sampled_from([0.0] + [abs(float(v)) for v in w.ravel()]), st.floats(0.0, 1e6))
    )
    return w, lam


def _soft_differential(c, ex):
    w, lam = ex
    c.agree("soft_threshold", w=w, lam=lam)


def _soft_minimises(c, ex):
    """Each u_i minimises 1/2 (u - w_i)^2 + lam |u| (the subgradient condition, within an ulp)."""
    w, lam = ex
    u = np.asarray(c.call("soft_threshold", w=w, lam=lam), dtype=np.float64)
    big = np.abs(w) > lam
    want = np.where(big, w - np.copysign(lam, w), 0.0)
    ok = np.abs(u - want) <= 2 * np.spacing(np.maximum(np.abs(w), lam))
    c.require(
        np.all(ok), lambda: f"soft_threshold(w, {lam!r}) = {u.tolist()}, expected {want.tolist()}"
    )


def _prox_differential(c, ex):
    w, lam = ex
    c.agree("hard_threshold_prox", w=w, lam=lam)


@st.composite
def _exact_example(draw):
    problem = draw(st.sampled_from(["nonnegative", "weighted", "quadratic"]))
    n = draw(st.integers(1, 6))
    w = draw(hnp.arrays(np.float64, n, elements=st.floats(-4, 4).map(lambda v: float(quantize(v)))))
    k = draw(st.integers(0, n))
    d = H = None
    if problem == "weighted":
        d = draw(
            hnp.arrays(np.float64, n, elements=st.floats(0, 8).map(lambda v: float(quantize(v))))
        )
    if problem == "quadratic":
        B = draw(
            hnp.arrays(
                np.float64, (n, n), elements=st.floats(-2, 2).map(lambda v: float(quantize(v)))
            )
        )
        H = B @ B.T + np.eye(n)
        H = (H + H.T) / 2
    return {"problem": problem, "w": w, "k": k, "d": d, "H": H}


def _exact_differential(c, ex):
    c.agree("sparse_approx_exact", **ex)


def _exact_is_optimal(c, ex):
    """The backend's u is feasible and no support of size k does better (exhaustive check)."""
    w, k, d, H, problem = ex["w"], ex["k"], ex["d"], ex["H"], ex["problem"]
    u = np.asarray(c.call("sparse_approx_exact", **ex), dtype=np.float64)
    c.require(
        np.count_nonzero(u) <= k, lambda: f"{np.count_nonzero(u)} non-zeros, at most {k} allowed"
    )
    if problem == "nonnegative":
        c.require(np.all(u >= 0), lambda: "a negative entry in a non-negative approximation")

    def cost(v):
        return _sq(v, w, d, H)

    best = np.inf
    for S in itertools.combinations(range(w.size), k):
        keep = np.zeros(w.size, dtype=bool)
        keep[list(S)] = True
        if problem == "nonnegative":
            v = np.where(keep, np.maximum(w, 0.0), 0.0)
        elif problem == "weighted":
            v = np.where(keep, w, 0.0)
        else:
            v = np.zeros_like(w)
            if keep.any():
                P = ~keep
                v[keep] = w[keep] + np.linalg.solve(
                    H[np.ix_(keep, keep)], H[np.ix_(keep, P)] @ w[P]
                )
        best = min(best, cost(v))
    got = cost(u)
    c.require(
        got <= best + 1e-9 * max(1.0, abs(best)),
        lambda: f"{problem}: cost {got!r} exceeds the optimum {best!r} over all supports",
    )


@st.composite
def _sensing(draw):
    m, n = draw(st.integers(2, 6)), draw(st.integers(2, 8))
    A = draw(
        hnp.arrays(np.float64, (m, n), elements=st.floats(-1, 1).map(lambda v: float(quantize(v))))
    )
    y = draw(hnp.arrays(np.float64, m, elements=st.floats(-2, 2)))
    norm = float(np.linalg.norm(A, 2))
    step = 1.0 / (norm * norm) if norm > 0 else 1.0
    return (
        {"A": A, "y": y, "step": step, "n_iter": draw(st.integers(0, 20))},
        draw(st.integers(0, n)),
        draw(st.floats(0.0, 1.0)),
    )


def _ista_differential(c, ex):
    kw, _, lam = ex
    c.agree("ista", **kw, lam=lam)


def _iht_sparse(c, ex):
    """Every IHT iterate has at most k non-zeros."""
    kw, k, _ = ex
    x = np.asarray(c.call("iht", **kw, k=k))
    c.require(x.shape == (kw["A"].shape[1],), lambda: f"x has shape {x.shape}")
    c.require(
        np.count_nonzero(x) <= k,
        lambda: f"IHT iterate has {np.count_nonzero(x)} non-zeros, k = {k}",
    )


PROPERTIES = [
    Property(
        "sparse_approx/hard-threshold-differential",
        ("hard_threshold",),
        "hard_threshold equals the reference",
        _w_k(),
        _ht_differential,
    ),
    Property(
        "sparse_approx/hard-threshold-optimal",
        ("hard_threshold",),
        "hard_threshold attains the best k-term error over all supports",
        _w_k(),
        _ht_optimal,
    ),
    Property(
        "sparse_approx/soft-threshold-differential",
        ("soft_threshold",),
        "soft_threshold equals the reference",
        _w_lam(),
        _soft_differential,
    ),
    Property(
        "sparse_approx/soft-threshold-minimises",
        ("soft_threshold",),
        "soft_threshold minimises 1/2 (u - w)^2 + lam |u| entrywise",
        _w_lam(),
        _soft_minimises,
    ),
    Property(
        "sparse_approx/hard-threshold-prox-differential",
        ("hard_threshold_prox",),
        "hard_threshold_prox equals the reference",
        _w_lam(),
        _prox_differential,
    ),
    Property(
        "sparse_approx/exact-differential",
        ("sparse_approx_exact",),
        "the exact solvers equal the reference",
        _exact_example(),
        _exact_differential,
    ),
    Property(
        "sparse_approx/exact-optimal",
        ("sparse_approx_exact",),
        "the exact solvers beat every support of size k",
        _exact_example(),
        _exact_is_optimal,
    ),
    Property(
        "sparse_approx/ista-differential",
        ("ista",),
        "ISTA iterates equal the reference's",
        _sensing(),
        _ista_differential,
    ),
    Property(
        "sparse_approx/iht-sparse",
        ("iht",),
        "IHT iterates have at most k non-zeros",
        _sensing(),
        _iht_sparse,
    ),
]

FAMILY = Family(
    name="sparse_approx",
    algorithm=ALGORITHM,
    notes=NOTES,
    cases=_cases,
    tolerance=tolerance,
    properties=PROPERTIES,
)
