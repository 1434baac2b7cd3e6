"""Per-class accuracy, excess class drop and the loss-threshold membership attack."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refprune.data import make_blobs
from refprune.lottery import evaluate
from refprune.metrics import (
    _best_threshold_fast,
    best_threshold,
    candidate_thresholds,
    class_excess_drop,
    membership_advantage,
    membership_split,
    per_class_accuracy,
    per_example_loss,
    threshold_advantage,
)
from refprune.mlp import MLP
from refprune.train import train

# Losses with many ties (a few distinct values) and the edges: zeros, one element, huge spreads.
few_values = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 1e-300, 7.5])
losses = st.one_of(
    st.lists(few_values, min_size=1, max_size=12),
    st.lists(st.floats(0.0, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=12),
)


@pytest.fixture(scope="module")
def trained():
    X, y = make_blobs(90, n_features=3, n_classes=3, seed=4)
    model = MLP([3, 8, 3], "relu", seed=1)
    train(model, X[:60], y[:60], epochs=5, lr=0.1, batch_size=16, seed=0)
    return model, X, y


# ---------------------------------------------------------------- fairness
def test_per_class_accuracy_is_what_the_lottery_trace_records(trained):
    model, X, y = trained
    assert per_class_accuracy(model.predict(X), y, 3) == evaluate(model, X, y)["per_class_accuracy"]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40))
def test_class_frequency_weighted_mean_is_the_accuracy(pairs):
    p, y = (np.array(v) for v in zip(*pairs))
    pc = per_class_accuracy(p, y, 4)
    counts = np.bincount(y, minlength=4)
    assert all((a is None) == (n == 0) for a, n in zip(pc, counts))
    weighted = sum(n * a for a, n in zip(pc, counts) if a is not None) / y.size
    assert weighted == pytest.approx(np.mean(p == y), abs=1e-12)


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=40
    )
)
def test_excess_drops_weighted_by_class_frequency_sum_to_zero(triples):
    dense_p, pruned_p, y = (np.array(v) for v in zip(*triples))
    e = class_excess_drop(
        per_class_accuracy(dense_p, y, 3),
        per_class_accuracy(pruned_p, y, 3),
        float(np.mean(dense_p == y)),
        float(np.mean(pruned_p == y)),
    )
    counts = np.bincount(y, minlength=3)
    total = sum(n * v for v, n in zip(e, counts) if v is not None) / y.size
    assert total == pytest.approx(0.0, abs=1e-12)


def test_excess_drop_named_example():
    # overall 0.9 -> 0.8; class 0 drops 0.3, class 1 gains 0.1: class 0 pays 0.2 more than average
    got = class_excess_drop([0.9, 0.9, None], [0.6, 1.0, None], 0.9, 0.8)
    assert got == pytest.approx([0.2, -0.2, None])


# ---------------------------------------------------------------- per-example loss
def test_per_example_losses_average_to_the_model_loss(trained):
    model, X, y = trained
    losses_ = per_example_loss(model, X, y)
    assert losses_.shape == (90,) and np.all(losses_ >= 0)
    assert np.mean(losses_) == pytest.approx(model.loss_value(X, y), rel=1e-13)


def test_per_example_loss_on_a_saturated_softmax_is_finite():
    model = MLP([1, 2], "relu", seed=0)
    model.params["layers.0.weight"][:] = [[1000.0], [-1000.0]]
    got = per_example_loss(model, np.array([[1.0], [1.0]]), np.array([0, 1]))
    assert got[0] == 0.0 and got[1] == 2000.0


# ---------------------------------------------------------------- membership
@given(losses, losses)
def test_fast_threshold_search_equals_the_definition(m, n):
    assert _best_threshold_fast(m, n) == best_threshold(m, n)


@given(losses, losses)
def test_best_advantage_is_the_maximum_over_every_threshold(m, n):
    t, adv = best_threshold(m, n)
    assert 0.0 <= adv <= 1.0
    assert threshold_advantage(m, n, t)[0] == adv
    probes = sorted(set(m) | set(n)) + [-1.0, 2e6]
    assert all(threshold_advantage(m, n, p)[0] <= adv for p in probes)


def test_adjacent_losses_still_get_a_threshold_between_them():
    # the midpoint of 0 and 5e-324 rounds to 0, which splits nothing; 5e-324 itself does
    t, adv = best_threshold([0.0], [5e-324])
    assert (t, adv) == (5e-324, 1.0) == _best_threshold_fast([0.0], [5e-324])
    # scaled by 2, the midpoint of 0 and 1e-323 is 5e-324 exactly: not 2 t
    assert best_threshold([0.0], [1e-323]) == (5e-324, 1.0) == _best_threshold_fast([0.0], [1e-323])
    huge = np.finfo(np.float64).max
    t, adv = best_threshold([huge / 2], [huge])  # the sum overflows
    assert (t, adv) == (huge, 1.0)
    assert list(candidate_thresholds([0.0, 1.0], [3.0])) == [-np.inf, 0.5, 2.0, np.inf]


@given(losses, losses, st.floats(-1e7, 1e7, allow_nan=False))
def test_swapping_members_and_non_members_negates_the_advantage(m, n, t):
    a, tpr, fpr = threshold_advantage(m, n, t)
    b, tpr2, fpr2 = threshold_advantage(n, m, t)
    assert b == -a and (tpr2, fpr2) == (fpr, tpr)


@given(losses, losses)
def test_scaling_the_losses_by_two_scales_the_threshold(m, n):
    t, adv = best_threshold(m, n)
    t2, adv2 = best_threshold([2 * v for v in m], [2 * v for v in n])
    assert adv2 == adv
    # the midpoint (a + b) / 2 commutes with scaling by 2 wherever halving is exact: no
    # nonzero loss below 4 * tiny (subnormal midpoints round; see the test below)
    if all(v == 0.0 or v >= 4 * np.finfo(np.float64).tiny for v in m + n):
        assert t2 == 2 * t


def test_separable_losses_give_advantage_one():
    assert best_threshold([0.1, 0.2, 0.3], [0.5, 0.9]) == (0.4, 1.0)
    assert candidate_thresholds([1.0, 1.0], [1.0]).tolist() == [-np.inf, np.inf]
    assert best_threshold([1.0], [1.0]) == (-np.inf, 0.0)  # ties: the smallest threshold


def test_membership_split_draws_in_the_documented_order():
    mc, me, nc, ne = membership_split(10, 7, calibration_fraction=0.5, seed=3)
    rng = np.random.Generator(np.random.PCG64(3))
    pm, pn = rng.permutation(10), rng.permutation(7)
    assert mc.tolist() == pm[:5].tolist() and me.tolist() == pm[5:].tolist()
    assert nc.tolist() == pn[:4].tolist() and ne.tolist() == pn[4:].tolist()  # 3.5 rounds to 4


def test_membership_advantage_is_measured_on_rows_not_used_to_choose_the_threshold():
    rng = np.random.default_rng(0)
    members, others = rng.exponential(0.5, 400), rng.exponential(1.0, 400)
    res = membership_advantage(members, others, seed=1)
    mc, me, nc, ne = membership_split(400, 400, seed=1)
    assert (res.threshold, res.calibration_advantage) == best_threshold(members[mc], others[nc])
    got = threshold_advantage(members[me], others[ne], res.threshold)
    assert (res.advantage, res.tpr, res.fpr) == got
    assert 0.1 < res.advantage < 0.4 and res.n_calibration == (200, 200)
    same = membership_advantage(others, others, seed=1)
    assert abs(same.advantage) < 0.15 and same.calibration_advantage >= 0


def test_infinite_threshold_is_null_in_json():
    assert membership_advantage([1.0, 1.0], [1.0, 1.0]).to_dict()["threshold"] is None


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: threshold_advantage([], [1.0], 0.5), "member_losses must"),
        (lambda: threshold_advantage([1.0], [np.nan], 0.5), "nonmember_losses must be finite"),
        (lambda: threshold_advantage([1.0], [1.0], float("nan")), "threshold must not be NaN"),
        (lambda: membership_split(1, 5), "n_members must be >= 2"),
        (
            lambda: membership_split(4, 4, calibration_fraction=1.0),
            "calibration_fraction must be in",
        ),
        (lambda: per_class_accuracy([0, 1], [0], 2), "same length"),
        (lambda: per_class_accuracy([0, 3], [0, 1], 2), r"predictions must hold class labels in"),
        (lambda: class_excess_drop([0.5], [0.5, 0.5], 0.5, 0.5), "same length"),
        (
            lambda: per_example_loss(MLP([2, 1], loss="mse"), np.ones((1, 2)), np.ones(1)),
            "cross_entropy",
        ),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
