"""Sparse approximation: exact k-sparse solvers, proximal operators, ISTA and IHT.

Every property is one sentence of code; strategies aim at the edges: ties,
zeros, -0.0, single elements, all-equal entries. Exhaustive search over all
supports (n <= 10) is the independent oracle; costs are summed with
``math.fsum`` (correctly rounded) so that equal multisets of terms give equal
costs and "equals the optimum" can be asserted exactly.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refprune.masks import keep_top_k
from refprune.rng import make_rng
from refprune.scores import obd, obs_downdate, obs_saliency, obs_update
from refprune.sparse_approx import (
    DEFAULT_MAX_N,
    best_k_sparse_nonnegative,
    best_k_sparse_quadratic,
    best_k_sparse_weighted,
    best_k_term_error,
    hard_threshold,
    hard_threshold_prox,
    iht,
    ista,
    quadratic_fit_on_support,
    sensing_problem,
    soft_threshold,
)

# ---------------------------------------------------------------- strategies
# Few distinct values, so ties (in |w| too: 1.0 and -1.0) are common; -0.0 and 0.0 both present.
EDGE_VALUES = st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, 3.0, -3.0])
FREE_VALUES = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
P_NORMS = st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, math.inf])


def vectors(max_n: int = 10, elements=st.one_of(EDGE_VALUES, FREE_VALUES)):
    return hnp.arrays(np.float64, st.integers(1, max_n), elements=elements)


@st.composite
def vector_and_k(draw, max_n: int = 10, elements=st.one_of(EDGE_VALUES, FREE_VALUES)):
    w = draw(vectors(max_n, elements))
    return w, draw(st.integers(0, w.size))


@st.composite
def spd_problem(draw, max_n: int = 6):
    """w (n,), an exactly symmetric positive definite H = (M + M^T) / 2, M = B B^T + 0.1 I, and k."""
    n = draw(st.integers(1, max_n))
    B = draw(hnp.arrays(np.float64, (n, n), elements=st.floats(-2, 2, allow_nan=False)))
    M = B @ B.T + 0.1 * np.eye(n)
    w = draw(hnp.arrays(np.float64, n, elements=st.one_of(EDGE_VALUES, st.floats(-10, 10))))
    return w, (M + M.T) / 2, draw(st.integers(0, n))


def all_supports(n: int, k: int):
    """Every boolean mask of length n with exactly k True entries."""
    for kept in itertools.combinations(range(n), k):
        mask = np.zeros(n, dtype=bool)
        mask[list(kept)] = True
        yield mask


def lp_damage(pruned: np.ndarray, p: float) -> float:
    """||v||_p^p (or ||v||_inf): a monotone function of the l_p error of pruning v."""
    a = np.abs(pruned)
    if p == math.inf:
        return float(a.max()) if a.size else 0.0
    return math.fsum(a**p)


def bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.int64)


def unchanged(before: list, after: tuple) -> bool:
    """Every array argument has its old dtype, shape and bytes (NaN included)."""
    return all(
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for a, b in zip(before, after)
        if isinstance(a, np.ndarray)
    )


# ---------------------------------------------------------------- hard_threshold: optimality
@given(vector_and_k())
def test_hard_threshold_equals_exhaustive_optimum_euclidean(case):
    w, k = case
    cost = lambda mask: math.fsum(w[~mask] ** 2)
    assert cost(hard_threshold(w, k).support) == min(cost(m) for m in all_supports(w.size, k))


@given(vector_and_k(), P_NORMS)
def test_hard_threshold_equals_exhaustive_optimum_lp(case, p):
    w, k = case
    best = min(lp_damage(w[~m], p) for m in all_supports(w.size, k))
    assert lp_damage(w[~hard_threshold(w, k).support], p) <= best * (1 + 1e-12)


# Magnitudes >= 1e-50 or 0, so that the oracle's |v_i|**p (unscaled) does not underflow.
NO_UNDERFLOW = st.one_of(EDGE_VALUES, FREE_VALUES.filter(lambda v: v == 0 or abs(v) >= 1e-50))


@given(vector_and_k(elements=NO_UNDERFLOW), P_NORMS)
def test_best_k_term_error_is_the_exhaustive_lp_error(case, p):
    w, k = case
    best = min(lp_damage(w[~m], p) for m in all_supports(w.size, k))
    expected = best if p == math.inf else best ** (1 / p)
    assert math.isclose(best_k_term_error(w, k, p), expected, rel_tol=1e-12, abs_tol=1e-300)


# ---------------------------------------------------------------- hard_threshold: structure
@given(vector_and_k())
def test_hard_threshold_support_is_keep_top_k_of_magnitude(case):
    w, k = case
    assert np.array_equal(hard_threshold(w, k).support, keep_top_k(np.abs(w), k))


@given(vector_and_k())
def test_hard_threshold_keeps_exactly_k(case):
    w, k = case
    assert hard_threshold(w, k).support.sum() == k


@given(vector_and_k())
def test_hard_threshold_kept_entries_are_w_bit_for_bit(case):
    w, k = case
    r = hard_threshold(w, k)
    assert np.array_equal(bits(r.u)[r.support], bits(w)[r.support])


@given(vector_and_k())
def test_hard_threshold_pruned_entries_are_positive_zero(case):
    w, k = case
    r = hard_threshold(w, k)
    assert np.all(bits(r.u)[~r.support] == 0)


@given(vector_and_k())
def test_hard_threshold_cost_is_the_squared_error(case):
    w, k = case
    r = hard_threshold(w, k)
    assert math.isclose(r.cost, math.fsum((r.u - w) ** 2), rel_tol=1e-12, abs_tol=1e-300)


@given(st.integers(1, 10), st.data())
def test_hard_threshold_all_equal_magnitudes_keeps_the_first_k(n, data):
    k = data.draw(st.integers(0, n))
    signs = data.draw(hnp.arrays(np.float64, n, elements=st.sampled_from([-1.5, 1.5])))
    assert np.array_equal(np.flatnonzero(hard_threshold(signs, k).support), np.arange(k))


@given(vector_and_k(max_n=6), st.floats(1e-3, 1e3))
def test_hard_threshold_support_unchanged_by_positive_scaling_when_magnitudes_distinct(case, c):
    w, k = case
    assume(np.unique(np.abs(w)).size == w.size)
    assume(np.unique(np.abs(c * w)).size == w.size)
    assert np.array_equal(hard_threshold(c * w, k).support, hard_threshold(w, k).support)


def test_hard_threshold_hand_case():
    # |w| = [1, 3, 2, 0, 2]: keep 3 (index 1) and the first 2 (index 2; index 4 ties and goes).
    r = hard_threshold(np.array([1.0, -3.0, 2.0, -0.0, 2.0]), 2)
    assert np.array_equal(r.u, [0.0, -3.0, 2.0, 0.0, 0.0])
    assert np.array_equal(r.support, [False, True, True, False, False])
    assert r.cost == 1.0 + 4.0


def test_hard_threshold_keeps_negative_zero_when_zeros_tie():
    # Three equal magnitudes 0: the first (-0.0) is kept and stays -0.0.
    r = hard_threshold(np.array([-0.0, 0.0, 0.0]), 1)
    assert np.array_equal(r.support, [True, False, False]) and np.signbit(r.u[0])


def test_hard_threshold_keeps_any_shape():
    w = np.array([[1.0, -4.0], [3.0, 2.0]])
    assert np.array_equal(hard_threshold(w, 2).u, [[0.0, -4.0], [3.0, 0.0]])


def test_best_k_term_error_hand_case():
    w = np.array([3.0, -4.0, 1.0, 2.0])  # k = 2 prunes [1, 2]
    assert best_k_term_error(w, 2, 1.0) == 3.0
    assert best_k_term_error(w, 2) == math.sqrt(5.0)
    assert best_k_term_error(w, 2, math.inf) == 2.0
    assert math.isclose(best_k_term_error(w, 2, 0.5), (1.0 + math.sqrt(2.0)) ** 2, rel_tol=1e-15)
    assert best_k_term_error(w, 4) == 0.0


def test_best_k_term_error_does_not_overflow():
    assert math.isclose(
        best_k_term_error(np.array([5.0, 1e300, 1e300, 1e300]), 1),
        math.sqrt(2) * 1e300,
        rel_tol=1e-15,
    )


# ---------------------------------------------------------------- non-negative
def nonneg_cost(w: np.ndarray, keep: np.ndarray) -> float:
    """||u - w||^2 for the best u >= 0 supported on keep: kept entries become max(w_i, 0)."""
    return math.fsum(np.concatenate([w[~keep] ** 2, np.minimum(w[keep], 0.0) ** 2]))


@given(vector_and_k())
def test_nonnegative_equals_exhaustive_optimum(case):
    w, k = case
    r = best_k_sparse_nonnegative(w, k)
    assert nonneg_cost(w, r.support) == min(nonneg_cost(w, m) for m in all_supports(w.size, k))


@given(vector_and_k())
def test_nonnegative_is_feasible(case):
    w, k = case
    r = best_k_sparse_nonnegative(w, k)
    assert r.support.sum() == k and np.all(r.u >= 0) and not np.any(np.signbit(r.u))
    assert np.all(r.u[~r.support] == 0)


@given(vector_and_k())
def test_nonnegative_kept_values_are_the_positive_part(case):
    w, k = case
    r = best_k_sparse_nonnegative(w, k)
    assert np.array_equal(r.u[r.support], np.maximum(w[r.support], 0.0))


@given(vector_and_k(elements=st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.floats(0, 1e3))))
def test_nonnegative_equals_hard_threshold_for_nonnegative_w(case):
    w, k = case
    assert np.array_equal(best_k_sparse_nonnegative(w, k).support, hard_threshold(w, k).support)


# ---------------------------------------------------------------- weighted (diagonal)
WEIGHTS = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.floats(0, 1e3))


@st.composite
def weighted_problem(draw, max_n: int = 10):
    w, k = draw(vector_and_k(max_n))
    return w, draw(hnp.arrays(np.float64, w.size, elements=WEIGHTS)), k


def weighted_cost(w: np.ndarray, d: np.ndarray, keep: np.ndarray) -> float:
    return math.fsum((d * (w * w))[~keep])


@given(weighted_problem())
def test_weighted_equals_exhaustive_optimum(case):
    w, d, k = case
    r = best_k_sparse_weighted(w, d, k)
    assert weighted_cost(w, d, r.support) == min(
        weighted_cost(w, d, m) for m in all_supports(w.size, k)
    )


@given(weighted_problem())
def test_weighted_cost_matches_its_definition(case):
    w, d, k = case
    r = best_k_sparse_weighted(w, d, k)
    assert math.isclose(r.cost, math.fsum(d * (r.u - w) ** 2), rel_tol=1e-12, abs_tol=1e-300)


@given(vector_and_k(), st.sampled_from([0.0, 1e-3, 0.5, 1.0, 7.0]))
def test_weighted_with_equal_weights_is_magnitude(case, c):
    w, k = case
    r, m = best_k_sparse_weighted(w, np.full(w.shape, c), k), hard_threshold(w, k)
    assert np.array_equal(r.support, m.support) and np.array_equal(bits(r.u), bits(m.u))


# ---------------------------------------------------------------- full quadratic
def schur_cost(w: np.ndarray, H: np.ndarray, keep: np.ndarray) -> float:
    """w_P^T ([H^-1]_PP)^-1 w_P: the cost of support keep, by a formula the solver does not use."""
    P = ~keep
    if not P.any():
        return 0.0
    return float(w[P] @ np.linalg.solve(np.linalg.inv(H)[np.ix_(P, P)], w[P]))


def close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= 1e-9 * scale + 1e-12


@given(spd_problem())
def test_quadratic_is_no_worse_than_any_support(case):
    w, H, k = case
    r = best_k_sparse_quadratic(w, H, k)
    scale = float(w @ H @ w)
    assert all(
        r.cost <= schur_cost(w, H, m) + 1e-9 * scale + 1e-12 for m in all_supports(w.size, k)
    )


@given(spd_problem())
def test_quadratic_cost_is_the_schur_complement_of_its_support(case):
    w, H, k = case
    r = best_k_sparse_quadratic(w, H, k)
    assert close(r.cost, schur_cost(w, H, r.support), float(w @ H @ w))


@given(spd_problem())
def test_quadratic_kept_values_are_stationary(case):
    w, H, k = case
    r = best_k_sparse_quadratic(w, H, k)
    grad = H @ (r.u - w)
    assert np.all(np.abs(grad[r.support]) <= 1e-9 * (np.abs(H).sum() * np.abs(w).max() + 1))


@given(spd_problem())
def test_quadratic_support_has_k_entries_and_pruned_are_zero(case):
    w, H, k = case
    r = best_k_sparse_quadratic(w, H, k)
    assert r.support.sum() == k and np.all(bits(r.u)[~r.support] == 0)


@given(weighted_problem(max_n=6))
def test_quadratic_with_diagonal_H_is_the_weighted_problem(case):
    w, d, k = case
    d = d + 0.5  # H must be positive definite
    r, q = best_k_sparse_weighted(w, d, k), best_k_sparse_quadratic(w, np.diag(d), k)
    assert close(q.cost, r.cost, float(np.sum(d * w * w)))


@given(vector_and_k(max_n=6))
def test_quadratic_with_identity_is_magnitude(case):
    w, k = case
    assert close(
        best_k_sparse_quadratic(w, np.eye(w.size), k).cost, hard_threshold(w, k).cost, float(w @ w)
    )


@given(spd_problem())
def test_quadratic_removing_one_weight_is_the_obs_step(case):
    w, H, _ = case
    n = w.size
    hinv = np.linalg.inv(H)
    r = best_k_sparse_quadratic(w, H, n - 1)
    q = int(np.flatnonzero(~r.support)[0])
    expected = w + obs_update(w, hinv, q)
    expected[q] = 0.0
    scale = float(w @ H @ w)
    assert close(r.cost, 2 * float(obs_saliency(w, np.diag(hinv)).min()), scale)
    assert np.allclose(r.u, expected, rtol=1e-9, atol=1e-9 * (np.abs(w).max() + 1))


def test_quadratic_hand_case():
    # H = [[2, 1], [1, 2]], w = [1, 2], k = 1. Keep index 1: e_0 = -1, e_1 = H_11^-1 H_10 w_0 = 1/2,
    # u = [0, 2.5], cost = 2 - 1 + 0.5 = 1.5 = w_0^2 / [H^-1]_00 = 1 / (2/3). Keeping index 0 costs 6.
    r = best_k_sparse_quadratic(np.array([1.0, 2.0]), np.array([[2.0, 1.0], [1.0, 2.0]]), 1)
    assert np.array_equal(r.support, [False, True])
    assert np.allclose(r.u, [0.0, 2.5], rtol=0, atol=1e-15) and math.isclose(
        r.cost, 1.5, rel_tol=1e-15
    )


def test_quadratic_k_zero_and_k_n():
    w, H = np.array([1.0, -2.0]), np.array([[2.0, 1.0], [1.0, 2.0]])
    assert best_k_sparse_quadratic(w, H, 0).cost == float(w @ H @ w)
    r = best_k_sparse_quadratic(w, H, 2)
    assert r.cost == 0.0 and np.array_equal(r.u, w)


def test_quadratic_exact_ties_go_to_the_first_support_in_lexicographic_order():
    # H = I, all |w| equal: every support costs 2; the first combination, (0, 1), is returned.
    r = best_k_sparse_quadratic(np.array([1.0, 1.0, -1.0, 1.0]), np.eye(4), 2)
    assert np.array_equal(r.support, [True, True, False, False])


def test_quadratic_fit_on_support_hand_case():
    r = quadratic_fit_on_support(
        np.array([1.0, 2.0]), np.array([[2.0, 1.0], [1.0, 2.0]]), np.array([True, False])
    )
    assert np.allclose(r.u, [2.0, 0.0], rtol=0, atol=1e-15) and math.isclose(
        r.cost, 6.0, rel_tol=1e-15
    )


def test_quadratic_allows_larger_n_when_asked():
    w = np.arange(1.0, DEFAULT_MAX_N + 2.0)
    r = best_k_sparse_quadratic(w, np.eye(w.size), w.size, max_n=w.size)
    assert np.array_equal(r.u, w)


# ---------------------------------------------------------------- where magnitude is not optimal
def greedy_obs_support(w: np.ndarray, H: np.ndarray, k: int) -> np.ndarray:
    """Optimal Brain Surgeon one weight at a time (refprune.scores' OBS formulas), n - k removals."""
    free, x, hinv = list(range(w.size)), w.copy(), np.linalg.inv(H)
    for _ in range(w.size - k):
        xf = x[free]
        j = int(np.flatnonzero(~keep_top_k(obs_saliency(xf, np.diag(hinv)), xf.size - 1))[0])
        xf = xf + obs_update(xf, hinv, j)
        xf[j] = 0.0
        x[free] = xf
        hinv = obs_downdate(hinv, j)
        free.pop(j)
    keep = np.zeros(w.size, dtype=bool)
    keep[free] = True
    return keep


# Each case: a concrete input where the support magnitude picks (keep_top_k(|w|, k)), given the
# best values that support allows under the same problem, is strictly worse than the exact solver.
# Fields: problem, w, extra argument (d or H), k, cost of the magnitude support, exact cost,
# exact support.
COUNTEREXAMPLES = {
    # u >= 0: magnitude keeps -3, which the constraint sets to 0 (cost 9 + 1); the exact solver keeps 1.
    "nonneg_large_negative_entry": ("nonneg", [-3.0, 1.0], None, 1, 10.0, 9.0, [False, True]),
    # u >= 0, k = 2: the two largest magnitudes are negative; keeping the positive ones saves 0.25 + 1.
    "nonneg_negatives_outweigh": (
        "nonneg",
        [-2.0, 0.5, -1.5, 1.0],
        None,
        2,
        7.5,
        6.25,
        [False, True, False, True],
    ),
    # The article's example with d = h / 2: w1 = 0.01 in a sharp direction (h11 = 2000) and w2 = 0.08
    # in a flat one (h22 = 1). Magnitude prunes w1 (cost 1000 * 1e-4 = 0.1); exact prunes w2
    # (0.5 * 0.0064 = 0.0032), the choice of the OBD saliency 1/2 h w^2.
    "weighted_sharp_small_weight_flat_large_weight": (
        "weighted",
        [0.01, 0.08],
        [1000.0, 0.5],
        1,
        0.1,
        0.0032,
        [True, False],
    ),
    # Equal diagonal (so OBD agrees with magnitude), but w0 and w1 are correlated (h01 = 0.9): with
    # w0 pruned, w1 absorbs it (u1 = 1.1 + 0.9 = 2.0) at cost 1 - 0.81 = 0.19; magnitude prunes the
    # uncoupled w2 at cost 0.81.
    "quadratic_correlated_pair": (
        "quadratic",
        [1.0, 1.1, 0.9],
        [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]],
        2,
        0.81,
        0.19,
        [False, True, True],
    ),
    # Anti-correlated pair (h01 = -0.8), w0 = w1 = 1: removing both costs (1, 1) H (1, 1) = 0.4 (a flat
    # direction), removing one costs 0.36 plus the lone w2 (0.25): 0.61. Magnitude (and OBS one weight
    # at a time, which removes w2 first) keeps w0 at cost 0.61.
    "quadratic_pair_removed_together": (
        "quadratic",
        [1.0, 1.0, 0.5],
        [[1.0, -0.8, 0.0], [-0.8, 1.0, 0.0], [0.0, 0.0, 1.0]],
        1,
        0.61,
        0.4,
        [False, False, True],
    ),
}


def solve(problem: str, w: np.ndarray, extra, k: int):
    if problem == "nonneg":
        return best_k_sparse_nonnegative(w, k)
    if problem == "weighted":
        return best_k_sparse_weighted(w, np.array(extra), k)
    return best_k_sparse_quadratic(w, np.array(extra), k)


def magnitude_cost(problem: str, w: np.ndarray, extra, k: int) -> float:
    keep = keep_top_k(np.abs(w), k)
    if problem == "nonneg":
        return nonneg_cost(w, keep)
    if problem == "weighted":
        return weighted_cost(w, np.array(extra), keep)
    return quadratic_fit_on_support(w, np.array(extra), keep).cost


@pytest.mark.parametrize("name", sorted(COUNTEREXAMPLES))
def test_magnitude_is_strictly_worse_than_the_exact_solver(name):
    problem, w, extra, k, mag, exact, support = COUNTEREXAMPLES[name]
    w = np.array(w)
    r = solve(problem, w, extra, k)
    assert math.isclose(magnitude_cost(problem, w, extra, k), mag, rel_tol=1e-12)
    assert math.isclose(r.cost, exact, rel_tol=1e-12)
    assert np.array_equal(r.support, support) and r.cost < magnitude_cost(problem, w, extra, k)


def test_article_example_obd_keeps_the_sharp_weight():
    w, h = np.array([0.01, 0.08]), np.array([2000.0, 1.0])
    assert np.array_equal(keep_top_k(obd(w, h), 1), best_k_sparse_weighted(w, h / 2, 1).support)


def test_quadratic_correlated_pair_values():
    _, w, H, k, *_ = COUNTEREXAMPLES["quadratic_correlated_pair"]
    assert np.allclose(
        best_k_sparse_quadratic(np.array(w), np.array(H), k).u, [0.0, 2.0, 0.9], rtol=0, atol=1e-15
    )


def test_greedy_obs_is_strictly_worse_than_exhaustive_on_the_pair_case():
    _, w, H, k, greedy_cost, exact, _ = COUNTEREXAMPLES["quadratic_pair_removed_together"]
    w, H = np.array(w), np.array(H)
    keep = greedy_obs_support(w, H, k)
    assert math.isclose(quadratic_fit_on_support(w, H, keep).cost, greedy_cost, rel_tol=1e-12)
    assert best_k_sparse_quadratic(w, H, k).cost < quadratic_fit_on_support(w, H, keep).cost


# ---------------------------------------------------------------- proximal operators
GRID = np.linspace(-12.0, 12.0, 240_001)  # spacing 1e-4


@given(st.floats(-10, 10), st.floats(0, 5))
def test_soft_threshold_minimises_the_l1_prox_objective_on_a_fine_grid(w, lam):
    f = lambda u: 0.5 * (u - w) ** 2 + lam * np.abs(u)
    assert f(soft_threshold(np.array([w]), lam)[0]) <= f(GRID).min() + 1e-12


@given(st.floats(-10, 10), st.floats(0, 5))
def test_hard_threshold_prox_minimises_the_l0_prox_objective_on_a_fine_grid(w, lam):
    f = lambda u: 0.5 * (u - w) ** 2 + lam * (u != 0)
    assert f(hard_threshold_prox(np.array([w]), lam)[0]) <= f(GRID).min() + 1e-12


@given(vectors(), st.floats(0, 10))
def test_soft_threshold_is_sign_times_shrunk_magnitude(w, lam):
    expected = np.sign(w) * np.maximum(np.abs(w) - lam, 0.0)
    assert np.array_equal(soft_threshold(w, lam), expected)


@given(vectors(), st.floats(0, 10))
def test_soft_threshold_zeros_are_positive_zero(w, lam):
    u = soft_threshold(w, lam)
    assert not np.any(np.signbit(u[u == 0]))


@st.composite
def prox_boundary(draw):
    """lam and w at, just below or just above the threshold sqrt(2 lam), or anywhere."""
    lam = draw(st.one_of(st.sampled_from([0.0, 0.5, 1.0, 4.5, 1e-300, 1e300]), st.floats(0, 1e6)))
    t = math.sqrt(2.0 * lam)
    near = [t, math.nextafter(t, 0.0), math.nextafter(t, math.inf)]
    w = draw(st.one_of(st.sampled_from(near), st.floats(-1e6, 1e6)))
    return w * draw(st.sampled_from([1.0, -1.0])), lam


@given(prox_boundary())
def test_hard_threshold_prox_decides_w_squared_above_2_lam_exactly(case):
    w, lam = case
    kept = hard_threshold_prox(np.array([w]), lam)[0] != 0
    assert kept == (Fraction(w) ** 2 > 2 * Fraction(lam))


@given(vectors(), st.floats(0, 1e3))
def test_hard_threshold_prox_keeps_entries_bit_for_bit_or_zeroes_them(w, lam):
    u = hard_threshold_prox(w, lam)
    assert np.all((bits(u) == bits(w)) | (bits(u) == 0))


def test_soft_threshold_hand_case():
    u = soft_threshold(np.array([3.0, -3.0, 0.5, -0.5, 1.0, -1.0, -0.0]), 1.0)
    assert np.array_equal(u, [2.0, -2.0, 0, 0, 0, 0, 0]) and not np.any(np.signbit(u[2:]))


def test_soft_threshold_lam_zero_is_the_identity():
    w = np.array([1.5, -2.0, 0.0])
    assert np.array_equal(soft_threshold(w, 0.0), w)


def test_hard_threshold_prox_hand_case():
    # lam = 4.5: threshold sqrt(9) = 3. The tie |w| = 3 goes to 0; the next float above 3 is kept.
    above = math.nextafter(3.0, math.inf)
    u = hard_threshold_prox(np.array([3.0, -3.0, above, -4.0, 2.9, -0.0]), 4.5)
    assert np.array_equal(u, [0.0, 0.0, above, -4.0, 0.0, 0.0])


def test_hard_threshold_prox_rounded_square_root_is_kept():
    # w = fl(sqrt(2)) has w^2 = 2.0000000000000004... > 2 = 2 lam: kept, although the float test
    # |w| > sqrt(2 * lam) says no (both sides are the same float).
    w = math.sqrt(2.0)
    assert not abs(w) > math.sqrt(2 * 1.0)
    assert hard_threshold_prox(np.array([w]), 1.0)[0] == w


def test_hard_threshold_prox_lam_zero_keeps_every_nonzero():
    assert np.array_equal(
        hard_threshold_prox(np.array([1e-320, -2.0, -0.0]), 0.0), [1e-320, -2.0, 0.0]
    )


# ---------------------------------------------------------------- ISTA and IHT: hand cases
def test_ista_hand_case():
    # A = diag(2, 1), y = [4, 0.5], lam = 1, step = 1/4 (default). First step:
    # soft([0.25 * 2 * 4, 0.25 * 0.5], 0.25) = [1.75, 0], the lasso solution
    # (2 (2 x1 - 4) + 1 = 0; |0.5| <= 1 so x2 = 0); the second step does not move.
    r = ista(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([4.0, 0.5]), 1.0)
    assert np.array_equal(r.x, [1.75, 0.0]) and r.n_iter == 2 and r.converged


def test_ista_with_identity_is_one_soft_threshold():
    y = np.array([3.0, -0.5, 1.5])
    r = ista(np.eye(3), y, 1.0, n_iter=1)
    assert np.array_equal(r.x, soft_threshold(y, 1.0)) and not r.converged


def test_iht_with_identity_is_one_hard_threshold():
    y = np.array([3.0, -1.0, 2.0])
    r = iht(np.eye(3), y, 2)
    assert np.array_equal(r.x, hard_threshold(y, 2).u) and r.n_iter == 2 and r.converged


def test_normalized_iht_hand_case():
    # A = diag(2, 1), y = [4, 0.5], k = 1. Start support = H_1(A^T y = [8, 0.5]) = {0}.
    # Iteration 1: g = -A^T y = [-8, -0.5], g_S = [-8, 0], A g_S = [-16, 0], mu = 64 / 256 = 1/4,
    # x = H_1([2, 0.125]) = [2, 0]. Iteration 2: g = A^T (A x - y) = [0, -0.5], g_S = 0, so the full
    # gradient gives mu = 0.25 / 0.25 = 1, H_1([2, 0.5]) = [2, 0]: no move, converged.
    r = iht(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([4.0, 0.5]), 1, step="normalized")
    assert np.array_equal(r.x, [2.0, 0.0]) and r.n_iter == 2 and r.converged


def test_tol_stops_early_and_reports_convergence():
    p = sensing_problem(48, 64, 4, seed=0)
    loose = ista(p.A, p.y, 0.01, tol=1e-3)
    capped = ista(p.A, p.y, 0.01, n_iter=loose.n_iter - 1, tol=1e-3)
    assert loose.n_iter > 1 and loose.converged and not capped.converged


def test_ista_and_iht_with_zero_iterations_return_zero():
    A, y = np.eye(2), np.array([1.0, 2.0])
    assert not ista(A, y, 0.1, n_iter=0).x.any() and not iht(A, y, 1, n_iter=0).x.any()


def test_ista_runs_exactly_n_iter_times_without_early_stop():
    p = sensing_problem(20, 40, 3, seed=0)
    r = ista(p.A, p.y, 0.01, n_iter=7)
    x = np.zeros(40)
    step = 1.0 / np.linalg.norm(p.A, 2) ** 2
    for _ in range(7):
        x = soft_threshold(x - step * (p.A.T @ (p.A @ x - p.y)), step * 0.01)
    assert np.array_equal(r.x, x) and r.n_iter == 7


def test_iht_runs_exactly_n_iter_times_without_early_stop():
    p = sensing_problem(20, 40, 3, seed=0)
    r = iht(p.A, p.y, 3, step=0.1, n_iter=7)
    x = np.zeros(40)
    for _ in range(7):
        x = hard_threshold(x - 0.1 * (p.A.T @ (p.A @ x - p.y)), 3).u
    assert np.array_equal(r.x, x) and r.n_iter == 7


# ---------------------------------------------------------------- ISTA and IHT: properties
@given(st.integers(0, 2**32 - 1))
def test_ista_objective_never_increases_with_the_default_step(seed):
    p = sensing_problem(12, 24, 3, seed)
    f = lambda x: 0.5 * np.sum((p.A @ x - p.y) ** 2) + 0.05 * np.abs(x).sum()
    values = [f(ista(p.A, p.y, 0.05, n_iter=t).x) for t in range(0, 15)]
    assert all(b <= a + 1e-12 * (1 + abs(a)) for a, b in zip(values, values[1:]))


@given(st.integers(0, 2**32 - 1), st.sampled_from([None, "normalized"]))
def test_iht_residual_never_increases(seed, step):
    p = sensing_problem(12, 24, 3, seed)
    values = [
        np.sum((p.A @ iht(p.A, p.y, 3, step=step, n_iter=t).x - p.y) ** 2) for t in range(0, 15)
    ]
    assert all(b <= a + 1e-12 * (1 + a) for a, b in zip(values, values[1:]))


@given(st.integers(0, 2**32 - 1), st.sampled_from([None, "normalized", 0.05]))
def test_iht_iterates_are_k_sparse(seed, step):
    p = sensing_problem(12, 24, 3, seed)
    assert np.count_nonzero(iht(p.A, p.y, 3, step=step, n_iter=10).x) <= 3


# ---------------------------------------------------------------- recovery from random measurements
@pytest.mark.parametrize("seed", range(5))
def test_ista_recovers_a_sparse_vector(seed):
    p = sensing_problem(48, 64, 4, seed)
    x = ista(p.A, p.y, 0.01, n_iter=2000).x
    assert np.linalg.norm(x - p.x) <= 0.05 * np.linalg.norm(p.x)  # lasso bias ~ lam
    assert np.array_equal(keep_top_k(np.abs(x), 4), p.support)


@pytest.mark.parametrize("seed", range(5))
def test_normalized_iht_recovers_a_sparse_vector_exactly(seed):
    p = sensing_problem(32, 64, 4, seed)
    x = iht(p.A, p.y, 4, step="normalized").x
    assert np.linalg.norm(x - p.x) <= 1e-10 * np.linalg.norm(p.x)


@pytest.mark.parametrize("seed", range(5))
def test_iht_default_step_recovers_a_very_sparse_vector(seed):
    p = sensing_problem(32, 64, 1, seed)
    x = iht(p.A, p.y, 1).x
    assert np.linalg.norm(x - p.x) <= 1e-10 * np.linalg.norm(p.x)


# ---------------------------------------------------------------- random instances
def test_sensing_problem_is_reproducible_bit_for_bit():
    a, b = (
        sensing_problem(8, 16, 3, seed=42, noise=0.1),
        sensing_problem(8, 16, 3, seed=42, noise=0.1),
    )
    assert all(np.array_equal(bits(x), bits(y)) for x, y in zip(a[:3], b[:3]))
    assert np.array_equal(a.support, b.support)


def test_sensing_problem_follows_the_documented_draw_order():
    rng = make_rng(7)
    A = rng.standard_normal((8, 16)) / np.sqrt(8)
    support = keep_top_k(rng.random(16), 3)
    x = np.zeros(16)
    x[support] = rng.standard_normal(3)
    y = A @ x + 0.25 * rng.standard_normal(8)
    p = sensing_problem(8, 16, 3, seed=7, noise=0.25)
    assert np.array_equal(p.A, A) and np.array_equal(p.x, x) and np.array_equal(p.y, y)
    assert np.array_equal(p.support, support)


@given(st.integers(1, 8), st.integers(1, 12), st.data())
def test_sensing_problem_shapes_and_sparsity(m, n, data):
    k = data.draw(st.integers(0, n))
    p = sensing_problem(m, n, k, seed=data.draw(st.integers(0, 1000)))
    assert p.A.shape == (m, n) and p.support.sum() == k and not p.x[~p.support].any()
    assert np.array_equal(p.y, p.A @ p.x)


def test_sensing_problem_noise_changes_only_y():
    a, b = sensing_problem(6, 10, 2, seed=3), sensing_problem(6, 10, 2, seed=3, noise=0.5)
    assert np.array_equal(a.A, b.A) and np.array_equal(a.x, b.x) and not np.array_equal(a.y, b.y)


# ---------------------------------------------------------------- bad input
W3 = np.array([1.0, -2.0, 3.0])
H2 = np.array([[2.0, 1.0], [1.0, 2.0]])
A2, Y2 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.array([1.0, 2.0, 3.0])

BAD = {
    # name: (function, args, kwargs, exception, message fragment)
    "w_integers": (hard_threshold, (np.array([1, 2]), 1), {}, TypeError, "w must be a floating"),
    "w_nan": (hard_threshold, (np.array([1.0, np.nan]), 1), {}, ValueError, "w must be finite"),
    "w_empty": (
        best_k_sparse_nonnegative,
        (np.array([]), 0),
        {},
        ValueError,
        "w must not be empty",
    ),
    "k_too_large": (hard_threshold, (W3, 4), {}, ValueError, "k must be in [0, 3]"),
    "k_negative": (best_k_sparse_nonnegative, (W3, -1), {}, ValueError, "k must be >= 0"),
    "k_float": (hard_threshold, (W3, 1.0), {}, TypeError, "k must be an integer"),
    "k_bool": (hard_threshold, (W3, True), {}, TypeError, "k must be an integer"),
    "p_zero": (best_k_term_error, (W3, 1, 0.0), {}, ValueError, "p must be in (0.0, inf]"),
    "p_nan": (best_k_term_error, (W3, 1, math.nan), {}, ValueError, "p must be finite"),
    "p_string": (best_k_term_error, (W3, 1, "2"), {}, TypeError, "p must be a real number"),
    "d_wrong_shape": (
        best_k_sparse_weighted,
        (W3, np.ones(2), 1),
        {},
        ValueError,
        "d must have the shape",
    ),
    "d_negative": (
        best_k_sparse_weighted,
        (W3, np.array([1.0, -1.0, 1.0]), 1),
        {},
        ValueError,
        "d must be >= 0",
    ),
    "d_overflow": (
        best_k_sparse_weighted,
        (np.array([1e200, 1.0]), np.array([1.0, 2.0]), 1),
        {},
        ValueError,
        "overflows",
    ),
    "H_not_symmetric": (
        best_k_sparse_quadratic,
        (np.ones(2), np.array([[2.0, 1.0], [0.5, 2.0]]), 1),
        {},
        ValueError,
        "H must be symmetric",
    ),
    "H_indefinite": (
        best_k_sparse_quadratic,
        (np.ones(2), np.array([[1.0, 2.0], [2.0, 1.0]]), 1),
        {},
        ValueError,
        "H must be positive definite",
    ),
    "H_wrong_shape": (
        best_k_sparse_quadratic,
        (W3, H2, 1),
        {},
        ValueError,
        "H must have shape (3, 3)",
    ),
    "w_not_1d_for_H": (
        best_k_sparse_quadratic,
        (np.ones((2, 1)), H2, 1),
        {},
        ValueError,
        "w must be 1-dimensional",
    ),
    "n_above_max_n": (
        best_k_sparse_quadratic,
        (np.ones(17), np.eye(17), 8),
        {},
        ValueError,
        "exceeds max_n = 16",
    ),
    "max_n_zero": (
        best_k_sparse_quadratic,
        (np.ones(2), H2, 1),
        {"max_n": 0},
        ValueError,
        "max_n must be >= 1",
    ),
    "support_not_bool": (
        quadratic_fit_on_support,
        (np.ones(2), H2, np.array([1, 0])),
        {},
        TypeError,
        "support must be a boolean",
    ),
    "support_wrong_shape": (
        quadratic_fit_on_support,
        (np.ones(2), H2, np.array([True])),
        {},
        ValueError,
        "support must have shape (2,)",
    ),
    "lam_negative": (soft_threshold, (W3, -0.1), {}, ValueError, "lam must be in [0.0, inf]"),
    "lam_inf": (hard_threshold_prox, (W3, math.inf), {}, ValueError, "lam must be finite"),
    "lam_string": (soft_threshold, (W3, "1"), {}, TypeError, "lam must be a real number"),
    "A_one_dimensional": (ista, (np.ones(3), Y2, 0.1), {}, ValueError, "A must be 2-dimensional"),
    "y_wrong_length": (ista, (A2, np.ones(2), 0.1), {}, ValueError, "y must have A.shape[0] = 3"),
    "ista_lam_negative": (ista, (A2, Y2, -1.0), {}, ValueError, "lam must be in"),
    "step_zero": (ista, (A2, Y2, 0.1), {"step": 0.0}, ValueError, "step must be in (0.0, inf]"),
    "n_iter_negative": (ista, (A2, Y2, 0.1), {"n_iter": -1}, ValueError, "n_iter must be >= 0"),
    "tol_negative": (iht, (A2, Y2, 1), {"tol": -1e-3}, ValueError, "tol must be in"),
    "A_zero_default_step": (
        ista,
        (np.zeros((3, 2)), Y2, 0.1),
        {},
        ValueError,
        "A must not be all zeros",
    ),
    "ista_diverges": (
        ista,
        (A2, Y2, 0.1),
        {"step": 10.0, "n_iter": 5000},
        ValueError,
        "ista diverged",
    ),
    "iht_diverges": (iht, (A2, Y2, 1), {"step": 10.0, "n_iter": 5000}, ValueError, "iht diverged"),
    "iht_k_too_large": (iht, (A2, Y2, 3), {}, ValueError, "k must be in [0, 2]"),
    "iht_unknown_step_rule": (
        iht,
        (A2, Y2, 1),
        {"step": "fast"},
        ValueError,
        "step must be a float > 0",
    ),
    "m_zero": (sensing_problem, (0, 4, 1, 0), {}, ValueError, "m must be >= 1"),
    "sensing_k_too_large": (sensing_problem, (3, 4, 5, 0), {}, ValueError, "k must be in [0, 4]"),
    "noise_negative": (
        sensing_problem,
        (3, 4, 1, 0),
        {"noise": -1.0},
        ValueError,
        "noise must be in",
    ),
    "seed_negative": (
        sensing_problem,
        (3, 4, 1, -1),
        {},
        ValueError,
        "seed must be a non-negative",
    ),
    "seed_float": (sensing_problem, (3, 4, 1, 1.5), {}, TypeError, "seed must be a non-negative"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_raises_and_leaves_inputs_untouched(name):
    fn, args, kwargs, exc, fragment = BAD[name]
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    with pytest.raises(
        exc,
        match=fragment.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        fn(*args, **kwargs)
    assert unchanged(copies, args)


GOOD_CALLS = {
    "hard_threshold": (hard_threshold, (W3, 2)),
    "best_k_term_error": (best_k_term_error, (W3, 1, 1.0)),
    "nonnegative": (best_k_sparse_nonnegative, (W3, 2)),
    "weighted": (best_k_sparse_weighted, (W3, np.array([1.0, 2.0, 0.5]), 1)),
    "quadratic": (best_k_sparse_quadratic, (np.array([1.0, 2.0]), H2, 1)),
    "fit_on_support": (
        quadratic_fit_on_support,
        (np.array([1.0, 2.0]), H2, np.array([True, False])),
    ),
    "soft_threshold": (soft_threshold, (W3, 1.5)),
    "hard_threshold_prox": (hard_threshold_prox, (W3, 1.5)),
    "ista": (ista, (A2, Y2, 0.1)),
    "iht": (iht, (A2, Y2, 1)),
}


@pytest.mark.parametrize("name", sorted(GOOD_CALLS))
def test_functions_never_modify_or_alias_their_inputs(name):
    fn, args = GOOD_CALLS[name]
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    out = fn(*args)
    for field in out if isinstance(out, tuple) else (out,):
        if isinstance(field, np.ndarray):
            field[...] = 0  # writing the result must not reach the inputs
    assert unchanged(copies, args)
