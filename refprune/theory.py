"""Two quantitative claims about pruning, as code that can be checked.

1. **Winning tickets are a game of chance.** Suppose the true network is
   sparse: a support S of s out of n weights. Draw initial weights
   w_i ~ N(0, sigma^2) i.i.d. and prune at initialisation. The probability
   that pruning keeps exactly S has a closed form for two rules:

   * threshold |w_i| > tau: each weight survives independently with
     p = P(|w| > tau) = erfc(tau / (sigma sqrt 2)), so
     P(kept set = S) = p^s (1 - p)^(n - s);
   * keep the s largest |w_i|: the magnitudes are i.i.d. and continuous, so
     every s-subset is equally likely to be the top s, and
     P(kept set = S) = 1 / C(n, s).

   ``ticket_monte_carlo`` estimates both from seeded draws, and
   ``clopper_pearson`` / ``binomial_acceptance_interval`` say how far an
   estimate may honestly fall from the closed form.

2. **No free lunch.** When labels are uniform over K classes and independent
   of the inputs, every predictor, dense or pruned, has expected test
   accuracy exactly 1/K: E[acc] = (1/m) sum_i P(Y_i = f(x_i)) = (1/m) sum_i 1/K.
   ``expected_accuracy_random_labels`` computes the expectation exactly (as a
   fraction) for given predictions, and ``random_label_experiment`` trains a
   dense and an IMP-pruned network on random labels and reports each test
   accuracy with a binomial confidence interval.

Derivations: ``docs/theory.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

import numpy as np

from ._checks import choice, float_array, positive_int, real_number
from .data import random_labels, train_test_split
from .lottery import TrainConfig, run_imp
from .mlp import MLP
from .rng import make_rng

TICKET_RULES = ("threshold", "top_s")


# ---------------------------------------------------------------- closed forms
def _n_s(n: Any, s: Any) -> tuple[int, int]:
    n = positive_int(n, "n")
    s = positive_int(s, "s", minimum=0)
    if s > n:
        raise ValueError(f"s must be in [0, n] = [0, {n}], got {s}")
    return n, s


def survival_probability(tau: float, sigma: float = 1.0) -> float:
    """p = P(|w| > tau) for w ~ N(0, sigma^2): p = erfc(tau / (sigma sqrt 2)).

    Parameters
    ----------
    tau : float >= 0
        Magnitude threshold; a weight with |w| > tau is kept.
    sigma : float > 0
        Standard deviation of the initial weights.
    """
    tau = real_number(tau, "tau", low=0.0)
    sigma = real_number(sigma, "sigma", low=0.0, low_open=True)
    return math.erfc(tau / (sigma * math.sqrt(2.0)))


def threshold_ticket_probability(n: int, s: int, tau: float, sigma: float = 1.0) -> float:
    """Probability that the rule |w_i| > tau keeps exactly a given support S of size s.

    P = p^s (1 - p)^(n - s), p = erfc(tau / (sigma sqrt 2)), 1 - p = erf(tau / (sigma sqrt 2))
    (computed with erf, not 1 - erfc, so small 1 - p keeps its digits).
    Weights w_i ~ N(0, sigma^2) i.i.d.; survivals are independent Bernoulli(p).

    Parameters
    ----------
    n : int >= 1
        Number of weights.
    s : int in [0, n]
        Size of the true support S.
    tau : float >= 0
    sigma : float > 0

    Returns
    -------
    float in [0, 1]
    """
    n, s = _n_s(n, s)
    p = survival_probability(tau, sigma)
    q = math.erf(tau / (sigma * math.sqrt(2.0)))
    return p**s * q ** (n - s)


def top_s_ticket_probability(n: int, s: int) -> float:
    """Probability that keeping the s largest |w_i| keeps exactly a given support S.

    P = 1 / C(n, s): for i.i.d. continuous weights the ranking of the |w_i| is
    a uniformly random permutation, so the top-s set is uniform over the
    C(n, s) subsets (ties have probability 0). C(n, s) is exact (integer);
    the result is its correctly rounded reciprocal.

    Parameters
    ----------
    n : int >= 1
    s : int in [0, n]
    """
    n, s = _n_s(n, s)
    return float(Fraction(1, math.comb(n, s)))


def ticket_probability(
    n: int, s: int, *, rule: str = "threshold", tau: float | None = None, sigma: float = 1.0
) -> float:
    """Closed form for ``rule`` ("threshold": needs ``tau``; "top_s"); see the two functions above."""
    choice(rule, "rule", TICKET_RULES)
    if rule == "threshold":
        if tau is None:
            raise ValueError("tau must be given when rule='threshold'")
        return threshold_ticket_probability(n, s, tau, sigma)
    return top_s_ticket_probability(n, s)


# ---------------------------------------------------------------- Monte Carlo
@dataclass(frozen=True)
class MonteCarloResult:
    """Outcome of a seeded Monte-Carlo run: ``successes`` out of ``trials``."""

    successes: int
    trials: int

    @property
    def estimate(self) -> float:
        return self.successes / self.trials


def ticket_monte_carlo(
    n: int,
    s: int,
    trials: int,
    *,
    rule: str = "threshold",
    tau: float | None = None,
    sigma: float = 1.0,
    seed: int | np.random.Generator = 0,
    chunk_size: int = 4096,
) -> MonteCarloResult:
    """Seeded Monte-Carlo estimate of the winning-ticket probability.

    The true support is S = {0, ..., s - 1} (any fixed S gives the same
    probability by symmetry). Trial t draws w = sigma * z with z the t-th row
    of ``rng.standard_normal((trials, n))``, rng = ``make_rng(seed)``; rows are
    drawn ``chunk_size`` at a time, which yields the same numbers as one draw.
    A trial succeeds when the rule keeps exactly S:

    * "threshold": |w_i| > tau for every i < s, and |w_i| <= tau for every i >= s;
    * "top_s": the s entries kept by ``keep_top_k(|w|, s)`` are S, i.e.
      min_{i<s} |w_i| >= max_{i>=s} |w_i| (equal magnitudes go to the lower
      index, ``refprune.masks``' tie rule, which favours S).

    Parameters
    ----------
    n : int >= 1
    s : int in [0, n]
    trials : int >= 1
    rule : {"threshold", "top_s"}
    tau : float >= 0, required for "threshold"
    sigma : float > 0
    seed : int or Generator
    chunk_size : int >= 1
        Rows per draw (memory only; results do not depend on it).

    Returns
    -------
    MonteCarloResult
    """
    n, s = _n_s(n, s)
    trials = positive_int(trials, "trials")
    choice(rule, "rule", TICKET_RULES)
    sigma = real_number(sigma, "sigma", low=0.0, low_open=True)
    if rule == "threshold":
        if tau is None:
            raise ValueError("tau must be given when rule='threshold'")
        tau = real_number(tau, "tau", low=0.0)
    chunk_size = positive_int(chunk_size, "chunk_size")
    rng = make_rng(seed)
    successes, done = 0, 0
    while done < trials:
        rows = min(chunk_size, trials - done)
        a = np.abs(sigma * rng.standard_normal((rows, n)))
        inside, outside = a[:, :s], a[:, s:]
        if rule == "threshold":
            ok = np.all(inside > tau, axis=1) & np.all(outside <= tau, axis=1)
        else:
            lo = inside.min(axis=1) if s > 0 else np.full(rows, np.inf)
            hi = outside.max(axis=1) if s < n else np.full(rows, -np.inf)
            ok = lo >= hi
        successes += int(np.count_nonzero(ok))
        done += rows
    return MonteCarloResult(successes, trials)


# ---------------------------------------------------------------- binomial intervals
def _confidence(confidence: Any) -> float:
    return real_number(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)


def clopper_pearson(successes: int, trials: int, confidence: float = 0.99) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided confidence interval for a binomial proportion.

    With x successes in m trials and a = 1 - confidence:
    lower = Beta^-1(a/2; x, m - x + 1) (0 when x = 0),
    upper = Beta^-1(1 - a/2; x + 1, m - x) (1 when x = m).
    Coverage is at least ``confidence`` for every true p.

    Clopper and Pearson, "The use of confidence or fiducial limits illustrated
    in the case of the binomial", Biometrika 26 (1934).

    Parameters
    ----------
    successes : int in [0, trials]
    trials : int >= 1
    confidence : float in (0, 1)
    """
    from scipy.stats import beta

    m = positive_int(trials, "trials")
    x = positive_int(successes, "successes", minimum=0)
    if x > m:
        raise ValueError(f"successes must be in [0, trials] = [0, {m}], got {x}")
    a = 1.0 - _confidence(confidence)
    lower = 0.0 if x == 0 else float(beta.ppf(a / 2, x, m - x + 1))
    upper = 1.0 if x == m else float(beta.ppf(1 - a / 2, x + 1, m - x))
    return lower, upper


def binomial_acceptance_interval(
    p: float, trials: int, confidence: float = 0.99
) -> tuple[int, int]:
    """Counts [lo, hi] that X ~ Binomial(trials, p) falls in with probability >= ``confidence``.

    With a = 1 - confidence, lo is the smallest k with P(X <= k) >= a/2 and hi the
    smallest k with P(X <= k) >= 1 - a/2 (scipy's ``binom.ppf``), so
    P(X < lo) < a/2 and P(X > hi) <= a/2.

    Parameters
    ----------
    p : float in [0, 1]
    trials : int >= 1
    confidence : float in (0, 1)
    """
    from scipy.stats import binom

    p = real_number(p, "p", low=0.0, high=1.0)
    m = positive_int(trials, "trials")
    a = 1.0 - _confidence(confidence)
    return int(binom.ppf(a / 2, m, p)), int(binom.ppf(1 - a / 2, m, p))


# ---------------------------------------------------------------- no free lunch
PROBABILITY_SUM_TOL = float(np.sqrt(np.finfo(np.float64).eps))


def _sum_tolerance(x: Any) -> float:
    """How far from 1 a probability vector's sum may be: sqrt(eps) of its float type, at least
    sqrt(eps of float64) = 2^-26 ~ 1.5e-8 (NumPy's ``Generator.choice`` check)."""
    dtype = np.asarray(x).dtype
    own = float(np.sqrt(np.finfo(dtype).eps)) if dtype.kind == "f" else 0.0
    return max(PROBABILITY_SUM_TOL, own)


def _check_sums_to_one(P: np.ndarray, tol: float, what: str) -> None:
    """Each row's exact sum (``math.fsum``) must be within ``tol`` of 1."""
    for i, row in enumerate(P):
        total = math.fsum(row.tolist())
        if abs(total - 1.0) > tol:
            where = f" {i}" if what.endswith("row") else ""
            raise ValueError(f"{what}{where} must sum to 1 within {tol:.3g}, got {total!r}")


def expected_accuracy_random_labels(
    predictions: Any, n_classes: int, label_probabilities: Sequence[float] | None = None
) -> Fraction:
    """Exact expected accuracy of fixed predictions against labels drawn independently of the inputs.

    Labels Y_1..Y_m are i.i.d. with P(Y = k) = q_k (uniform q_k = 1/K by
    default), independent of the inputs and hence of the predictions. For hard
    predictions c_i (class indices) E[acc] = (1/m) sum_i q_{c_i}; for soft
    predictions (rows P_i of class probabilities, a randomised predictor)
    E[acc] = (1/m) sum_i sum_k P_ik q_k. With uniform q and valid predictions
    both equal 1/K exactly, whatever the predictor: no algorithm beats chance
    on labels that carry no information.

    Wolpert, "The lack of a priori distinctions between learning algorithms",
    Neural Computation 8 (1996).

    The sum is done in exact rational arithmetic (float inputs are converted
    exactly with ``Fraction``), so the result is the true expectation for the
    given numbers, not a rounded one.

    Parameters
    ----------
    predictions : int array (m,) with values in [0, K), or float array (m, K)
    n_classes : int K >= 1
    label_probabilities : sequence of K non-negative floats summing to 1, optional
        Each probability vector (this one, and every row of soft predictions)
        must sum to 1 within sqrt(eps) of its float type, at least 2^-26 ~ 1.5e-8
        (``math.fsum``; the check of NumPy's ``Generator.choice``): float inputs
        such as [0.1, 0.2, 0.7] pass, rows such as [0.5, 0.5, 0.5] do not. The
        expectation is then computed exactly for the numbers given.

    Returns
    -------
    fractions.Fraction
    """
    k = positive_int(n_classes, "n_classes")
    if label_probabilities is None:
        q = [Fraction(1, k)] * k
    else:
        qa = float_array(label_probabilities, "label_probabilities", ndim=1)
        if qa.shape != (k,) or np.any(qa < 0):
            raise ValueError(
                f"label_probabilities must be {k} non-negative numbers, got {qa.tolist()}"
            )
        _check_sums_to_one(qa[None, :], _sum_tolerance(label_probabilities), "label_probabilities")
        q = [Fraction(float(v)) for v in qa]
    pred = np.asarray(predictions)
    if pred.dtype.kind in "iu":
        if pred.ndim != 1 or pred.size == 0:
            raise ValueError(
                f"predictions must be a non-empty 1-D array of class indices, got shape {pred.shape}"
            )
        if pred.min() < 0 or pred.max() >= k:
            raise ValueError(
                f"predictions must be class indices in [0, {k}), got values in "
                f"[{pred.min()}, {pred.max()}]"
            )
        counts = np.bincount(pred, minlength=k)
        total = sum(int(c) * q[j] for j, c in enumerate(counts))
        return cast(Fraction, total / pred.size)
    P = float_array(predictions, "predictions", ndim=2)
    if P.shape[1] != k or np.any(P < 0):
        raise ValueError(
            f"soft predictions must be an (m, {k}) array of non-negative probabilities, "
            f"got shape {P.shape}"
        )
    _check_sums_to_one(P, _sum_tolerance(predictions), "soft predictions: row")
    total = sum(Fraction(float(P[i, j])) * q[j] for i in range(P.shape[0]) for j in range(k))
    return cast(Fraction, total / P.shape[0])


def random_label_experiment(
    X: Any,
    n_classes: int,
    *,
    hidden: Sequence[int] = (64, 32),
    rounds: int = 3,
    alpha: float = 0.5,
    test_fraction: float = 0.5,
    epochs: int = 20,
    lr: float = 0.05,
    batch_size: int | None = 32,
    momentum: float = 0.9,
    confidence: float = 0.99,
    seed: int = 0,
) -> dict[str, Any]:
    """Train a dense and an IMP-pruned network on random labels; report test accuracy with a binomial CI.

    Labels are ``refprune.data.random_labels`` (uniform over K, independent of
    X). Given the trained predictor, each test label is an independent
    uniform draw, so the number of correct test predictions is exactly
    Binomial(m, 1/K): the Clopper-Pearson interval of the observed accuracy
    contains 1/K with probability >= ``confidence``, for the dense network and
    for the pruned one alike, and the exact expected accuracy
    (``expected_accuracy_random_labels`` of the predictions) is 1/K.

    Seeds (each a ``make_rng`` stream): labels ``seed``, split ``seed + 1``,
    initial weights ``seed + 2``, mini-batch order ``seed + 3``. The network is
    MLP([d, *hidden, K], "relu"), trained with SGD (``TrainConfig(epochs, lr,
    batch_size, momentum)``); IMP prunes a fraction ``alpha`` of the alive
    weights per round for ``rounds`` rounds, rewinding to w0
    (``refprune.lottery.run_imp``).

    Parameters
    ----------
    X : float array (N, d)
    n_classes : int K >= 2
    hidden : widths of the hidden layers
    rounds : int >= 1; alpha : float in (0, 1]
    test_fraction : float in (0, 1)
    epochs, lr, batch_size, momentum : training
    confidence : float in (0, 1)
    seed : int >= 0

    Returns
    -------
    dict with ``n_classes``, ``chance`` (1/K), ``n_test``, ``confidence`` and, for
    "dense" and "pruned": ``density``, ``train_accuracy``, ``test_accuracy``,
    ``correct``, ``ci`` (Clopper-Pearson), ``contains_chance`` and
    ``expected_accuracy`` (exact, as a "p/q" string).
    """
    X = float_array(X, "X", ndim=2)
    k = positive_int(n_classes, "n_classes", minimum=2)
    rounds = positive_int(rounds, "rounds")
    seed = positive_int(seed, "seed", minimum=0)
    real_number(test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True, high_open=True)
    y = random_labels(np.zeros(X.shape[0]), k, seed=seed)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_fraction=test_fraction, seed=seed + 1)
    if X_tr.shape[0] == 0 or X_te.shape[0] == 0:
        raise ValueError(
            f"test_fraction {test_fraction} leaves an empty train or test set for {X.shape[0]} rows"
        )
    model = MLP([X.shape[1], *hidden, k], "relu", seed=seed + 2)
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, seed=seed + 3)
    res = run_imp(
        model,
        X_tr,
        y_tr,
        X_test=X_te,
        y_test=y_te,
        rounds=rounds,
        alpha=alpha,
        train_config=cfg,
        weights_format="none",
    )
    m = X_te.shape[0]
    out = {"n_classes": k, "chance": 1.0 / k, "n_test": m, "confidence": confidence}
    dense = model.copy()
    dense.load_state_dict({"params": res.dense_params})
    for key, net, rec in (
        ("dense", dense, res.trace["rounds"][0]),
        ("pruned", res.model, res.trace["rounds"][-1]),
    ):
        pred = net.predict(X_te)
        correct = int(np.count_nonzero(pred == y_te))
        lo, hi = clopper_pearson(correct, m, confidence)
        out[key] = {
            "density": rec["density"],
            "train_accuracy": rec["train_accuracy"],
            "test_accuracy": correct / m,
            "correct": correct,
            "ci": [lo, hi],
            "contains_chance": lo <= 1.0 / k <= hi,
            "expected_accuracy": str(expected_accuracy_random_labels(pred, k)),
        }
    return out


__all__ = [
    "survival_probability",
    "threshold_ticket_probability",
    "top_s_ticket_probability",
    "ticket_probability",
    "MonteCarloResult",
    "ticket_monte_carlo",
    "clopper_pearson",
    "binomial_acceptance_interval",
    "expected_accuracy_random_labels",
    "random_label_experiment",
]
