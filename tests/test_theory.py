"""The winning-ticket probabilities and the no-free-lunch expectation, checked."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refprune.data import make_blobs
from refprune.theory import (
    binomial_acceptance_interval,
    clopper_pearson,
    expected_accuracy_random_labels,
    random_label_experiment,
    survival_probability,
    threshold_ticket_probability,
    ticket_monte_carlo,
    ticket_probability,
    top_s_ticket_probability,
)

CONFIDENCE = 0.999  # the Monte-Carlo checks below fail by chance with probability <= 0.1 % each


# ---------------------------------------------------------------- closed forms
def test_survival_probability_named_values():
    assert survival_probability(0.0) == 1.0
    assert survival_probability(1.0) == pytest.approx(0.31731050786291415, rel=1e-15)  # P(|z| > 1)
    assert survival_probability(2.0, sigma=2.0) == survival_probability(1.0)


def test_threshold_probability_named_value():
    p = math.erfc(1 / math.sqrt(2))
    assert threshold_ticket_probability(6, 2, 1.0) == pytest.approx(p**2 * (1 - p) ** 4, rel=1e-14)


def test_top_s_probability_named_values():
    assert top_s_ticket_probability(6, 2) == 1 / 15
    assert top_s_ticket_probability(5, 0) == 1.0 and top_s_ticket_probability(5, 5) == 1.0
    assert top_s_ticket_probability(60, 30) == 1 / math.comb(60, 30)


@given(n=st.integers(1, 40), tau=st.floats(0.0, 4.0), sigma=st.floats(0.1, 3.0))
def test_threshold_probabilities_over_all_supports_sum_to_one(n, tau, sigma):
    total = sum(
        math.comb(n, s) * threshold_ticket_probability(n, s, tau, sigma) for s in range(n + 1)
    )
    assert total == pytest.approx(1.0, rel=1e-12)


@given(n=st.integers(1, 30))
def test_top_s_probabilities_are_uniform_over_subsets(n):
    assert all(
        math.comb(n, s) * top_s_ticket_probability(n, s) == pytest.approx(1.0, rel=1e-15)
        for s in range(n + 1)
    )


def test_threshold_zero_keeps_everything():
    assert threshold_ticket_probability(4, 4, 0.0) == 1.0
    assert threshold_ticket_probability(4, 3, 0.0) == 0.0


# ---------------------------------------------------------------- Monte Carlo against the closed forms
@pytest.mark.parametrize(
    "rule, n, s, tau, sigma",
    [
        ("threshold", 6, 2, 1.0, 1.0),
        ("threshold", 10, 3, 0.5, 0.7),
        ("top_s", 6, 2, None, 1.0),
        ("top_s", 8, 4, None, 2.0),
    ],
)
def test_monte_carlo_matches_closed_form(rule, n, s, tau, sigma):
    trials = 40_000
    p = ticket_probability(n, s, rule=rule, tau=tau, sigma=sigma)
    mc = ticket_monte_carlo(n, s, trials, rule=rule, tau=tau, sigma=sigma, seed=12345)
    lo, hi = binomial_acceptance_interval(p, trials, CONFIDENCE)
    assert lo <= mc.successes <= hi
    ci_lo, ci_hi = clopper_pearson(mc.successes, trials, CONFIDENCE)
    assert ci_lo <= p <= ci_hi


def test_monte_carlo_edges():
    assert ticket_monte_carlo(5, 0, 100, rule="top_s").successes == 100
    assert ticket_monte_carlo(5, 5, 100, rule="top_s").successes == 100
    assert ticket_monte_carlo(5, 5, 100, tau=0.0).successes == 100  # |w| > 0 with probability 1


def test_monte_carlo_is_seeded_and_chunk_free():
    a = ticket_monte_carlo(7, 3, 5000, tau=0.8, seed=3)
    assert a == ticket_monte_carlo(7, 3, 5000, tau=0.8, seed=3, chunk_size=17)
    assert a != ticket_monte_carlo(7, 3, 5000, tau=0.8, seed=4)


# ---------------------------------------------------------------- binomial intervals
@given(m=st.integers(1, 300), x=st.integers(0, 300), conf=st.sampled_from([0.9, 0.95, 0.99]))
def test_clopper_pearson_equals_scipy_exact(m, x, conf):
    from scipy.stats import binomtest

    x = min(x, m)
    ref = binomtest(x, m).proportion_ci(conf, method="exact")
    lo, hi = clopper_pearson(x, m, conf)
    assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)


def test_clopper_pearson_zero_successes_closed_form():
    # x = 0: upper = 1 - (a/2)^(1/m)
    assert clopper_pearson(0, 20, 0.95)[1] == pytest.approx(1 - 0.025 ** (1 / 20), rel=1e-12)


def test_acceptance_interval_tails():
    from scipy.stats import binom

    lo, hi = binomial_acceptance_interval(0.3, 200, 0.99)
    assert binom.cdf(lo - 1, 200, 0.3) < 0.005 and binom.sf(hi, 200, 0.3) <= 0.005


# ---------------------------------------------------------------- no free lunch
@given(m=st.integers(1, 5), k=st.integers(2, 3), data=st.data())
def test_expected_accuracy_is_one_over_k_by_enumeration(m, k, data):
    pred = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=m, max_size=m)))
    hits = [
        Fraction(int(np.sum(pred == np.array(labels))), m)
        for labels in itertools.product(range(k), repeat=m)
    ]
    brute = sum(hits) / len(hits)  # every labelling is equally likely
    assert expected_accuracy_random_labels(pred, k) == Fraction(1, k) == brute


def test_expected_accuracy_soft_and_non_uniform():
    soft = np.array([[0.25, 0.75], [1.0, 0.0]])
    assert expected_accuracy_random_labels(soft, 2) == Fraction(1, 2)
    q = [0.25, 0.75]
    assert expected_accuracy_random_labels(np.array([1, 1, 0]), 2, q) == Fraction(
        7, 12
    )  # (3/4 + 3/4 + 1/4) / 3


def test_probability_sums_are_checked_within_the_stated_tolerance():
    from refprune.theory import PROBABILITY_SUM_TOL

    q = [0.1, 0.2, 0.7]  # not exactly 1 as rationals; fsum is 1.0
    assert expected_accuracy_random_labels(np.array([2, 2]), 3, q) == Fraction(0.7)
    with pytest.raises(ValueError, match="soft predictions: row 0 must sum to 1"):
        expected_accuracy_random_labels(np.array([[0.5, 0.5, 0.5]]), 3)
    with pytest.raises(ValueError, match="soft predictions: row 1 must sum to 1"):
        expected_accuracy_random_labels(np.array([[0.5, 0.5], [0.5, 0.4]]), 2)
    with pytest.raises(ValueError, match="label_probabilities must sum to 1"):
        expected_accuracy_random_labels(np.array([0, 1]), 2, [0.5, 0.5 + 4 * PROBABILITY_SUM_TOL])
    near = np.array([[0.5, 0.5 + PROBABILITY_SUM_TOL / 2]])  # within: accepted, exact result
    assert expected_accuracy_random_labels(near, 2) == (1 + Fraction(PROBABILITY_SUM_TOL / 2)) / 2
    f32 = np.array([[0.2, 0.3, 0.5]], dtype=np.float32)  # float32 rows: float32 tolerance
    assert abs(float(expected_accuracy_random_labels(f32, 3)) - 1 / 3) < 1e-7


def test_random_label_experiment_contains_chance():
    X, _ = make_blobs(400, n_features=6, n_classes=4, seed=0)
    out = random_label_experiment(X, 4, hidden=(16,), rounds=2, alpha=0.5, epochs=5, seed=0)
    for key in ("dense", "pruned"):
        lo, hi = out[key]["ci"]
        assert lo <= 0.25 <= hi and out[key]["contains_chance"]
        assert out[key]["expected_accuracy"] == "1/4"
    assert out["pruned"]["density"] < out["dense"]["density"]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: threshold_ticket_probability(5, 6, 1.0), r"s must be in \[0, n\]"),
        (lambda: threshold_ticket_probability(0, 0, 1.0), "n must be >= 1"),
        (lambda: threshold_ticket_probability(5, 2, -1.0), "tau must be in"),
        (lambda: threshold_ticket_probability(5, 2, 1.0, 0.0), "sigma must be in"),
        (lambda: ticket_probability(5, 2), "tau must be given"),
        (lambda: ticket_probability(5, 2, rule="best"), "unknown rule"),
        (lambda: ticket_monte_carlo(5, 2, 0, tau=1.0), "trials must be >= 1"),
        (lambda: clopper_pearson(5, 4), r"successes must be in \[0, trials\]"),
        (lambda: clopper_pearson(1, 4, 1.0), "confidence must be in"),
        (lambda: expected_accuracy_random_labels(np.array([0, 3]), 3), "class indices"),
        (lambda: expected_accuracy_random_labels(np.array([0]), 2, [0.5, 0.6]), "sum to 1"),
        (lambda: expected_accuracy_random_labels(np.zeros((2, 3)), 2), "soft predictions"),
        (lambda: random_label_experiment(np.zeros((10, 2)), 1), "n_classes must be >= 2"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
