"""Schedules: exact targets, integer counts that agree with mask selection, and the geometric bound."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refprune.masks import ROUNDINGS, fraction_to_count, select_masks
from refprune.schedules import (
    Schedule,
    constant,
    cubic,
    geometric,
    geometric_error_bound,
    linear,
    one_shot,
    rounds_to_density,
)

alphas = st.one_of(st.sampled_from([1.0, 0.5, 0.2, 0.1, 1e-3]), st.floats(1e-3, 1.0))
sizes = st.one_of(st.sampled_from([1, 2, 3, 7, 10, 100, 1024]), st.integers(1, 10**6))
roundings = st.sampled_from(ROUNDINGS)
fractions = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.25, 0.85]), st.floats(0.0, 1.0))


# ---------------------------------------------------------------- geometric
def test_geometric_densities_are_the_repeated_product():
    g = geometric(0.2, 3)
    assert g.densities() == (0.8, 0.8 * 0.8, 0.8 * 0.8 * 0.8)
    assert g.steps == (1, 2, 3)


def test_geometric_counts_named_case():
    # 1000 -> 800 -> 640 -> 512 -> 409.6 rounds to 410 alive (prune 102 of 512: 102.4 -> 102)
    assert geometric(0.2, 4).alive_counts(1000) == (800, 640, 512, 410)
    assert geometric(0.2, 4).prune_counts(1000) == (200, 160, 128, 102)


def test_geometric_counts_half_way_goes_to_even():
    # alpha * k = 0.5 * 5 = 2.5 -> 2 pruned under round-half-even, 2 (floor), 3 (ceil)
    assert geometric(0.5, 1).alive_counts(5) == (3,)
    assert geometric(0.5, 1).alive_counts(5, "floor") == (3,)
    assert geometric(0.5, 1).alive_counts(5, "ceil") == (2,)


@given(alpha=alphas, n=sizes, rounds=st.integers(0, 80), rounding=roundings)
def test_geometric_count_error_within_bound(alpha, n, rounds, rounding):
    k = geometric(alpha, rounds).alive_counts(n, rounding)
    exact = (1.0 - alpha) ** rounds
    got = (k[-1] if k else n) / n
    err = abs(got - exact)
    assert err <= geometric_error_bound(alpha, n, rounds, rounding) + 1e-12
    assert err <= geometric_error_bound(alpha, n, None, rounding) + 1e-12
    if rounding == "round-half-even":
        assert err <= 1.0 / (2.0 * alpha * n) + 1e-12


def test_geometric_bound_is_nearly_attained():
    # n = 3, alpha = 0.5: 1.5 rounds to 2 pruned, density 1/3 against 1/2; the bound is 1/6 for one round
    assert geometric(0.5, 1).alive_counts(3) == (1,)
    assert abs(1 / 3 - 0.5) == pytest.approx(geometric_error_bound(0.5, 3, 1))


@given(
    alpha=fractions,
    rounds=st.integers(0, 6),
    rounding=roundings,
    shape=st.sampled_from([(1,), (3,), (4, 5), (10, 10)]),
    seed=st.integers(0, 2**16),
    ties=st.booleans(),
)
def test_geometric_counts_agree_with_select_masks(alpha, rounds, rounding, shape, seed, ties):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, shape).astype(float) if ties else rng.standard_normal(shape)
    mask = np.ones(shape, dtype=bool)
    got = []
    for _ in range(rounds):
        mask = select_masks({"w": scores}, {"w": mask}, alpha, rounding=rounding)["w"]
        got.append(int(mask.sum()))
    assert tuple(got) == geometric(alpha, rounds).alive_counts(mask.size, rounding)


@given(alpha=alphas, n=sizes, rounding=roundings)
def test_geometric_counts_never_increase(alpha, n, rounding):
    k = (n,) + geometric(alpha, 20).alive_counts(n, rounding)
    assert all(b <= a for a, b in zip(k, k[1:]))


# ---------------------------------------------------------------- rounds to a density
@given(target=st.floats(1e-6, 1.0), alpha=st.floats(0.01, 1.0))
def test_rounds_to_density_is_the_fewest(target, alpha):
    s = rounds_to_density(target, alpha)
    d = geometric(alpha, s).densities()
    assert (d[-1] if d else 1.0) <= target
    assert s == 0 or (d[-2] if s > 1 else 1.0) > target


def test_rounds_to_density_named_cases():
    assert rounds_to_density(0.1, 0.2) == 11  # 0.8^10 = 0.107 > 0.1 >= 0.8^11
    assert rounds_to_density(0.8 * 0.8 * 0.8, 0.2) == 3  # exactly on a product: no extra round
    assert rounds_to_density(1.0, 0.5) == 0
    assert rounds_to_density(0.0, 1.0) == 1
    assert rounds_to_density(0.1, 0.2, n=1000) == 11


@given(
    target=st.floats(0.05, 1.0),
    alpha=st.floats(0.05, 1.0),
    n=st.integers(20, 5000),
    rounding=roundings,
)
def test_rounds_to_density_with_counts_is_the_fewest(target, alpha, n, rounding):
    try:
        s = rounds_to_density(target, alpha, n=n, rounding=rounding)
    except ValueError:  # the counts stalled above the target
        k = geometric(alpha, 10 * n).alive_counts(n, rounding)
        assert k[-1] / n > target
        return
    k = (n,) + geometric(alpha, s).alive_counts(n, rounding)
    assert k[-1] / n <= target and all(c / n > target for c in k[:-1])


def test_rounds_to_density_unreachable():
    with pytest.raises(ValueError, match="not reachable"):
        rounds_to_density(0.01, 0.2, n=10)  # 10 -> 8 -> 6 -> 5 -> 4 -> 3 -> 2 -> 2: round(0.4) = 0
    with pytest.raises(ValueError, match="never reached"):
        rounds_to_density(0.0, 0.5)


# ---------------------------------------------------------------- Zhu and Gupta, linear, constant, one-shot
def test_cubic_named_values():
    # s_i = 0, s_f = 0.9, n = 4: s_j = 0.9 - 0.9 (1 - j/4)^3
    c = cubic(0.0, 0.9, t0=10, dt=5, n_steps=4)
    assert c.steps == (10, 15, 20, 25, 30)
    assert c.values == (0.0, 0.9 - 0.9 * 0.421875, 0.9 - 0.9 * 0.125, 0.9 - 0.9 * 0.015625, 0.9)
    assert c.values[1] == 0.5203125  # an exponent of 2 would give 0.39375


def test_cubic_start_is_the_formula_as_written():
    # s_f + (s_i - s_f) * 1 loses s_i when it is tiny next to s_f: the formula, not a special case
    assert cubic(1e-300, 1.0, n_steps=2).values[0] == 0.0


@given(
    s_i=fractions,
    s_f=fractions,
    n=st.integers(1, 50),
    t0=st.integers(0, 100),
    dt=st.integers(1, 10),
)
def test_cubic_endpoints_and_monotone(s_i, s_f, n, t0, dt):
    s_i, s_f = min(s_i, s_f), max(s_i, s_f)
    c = cubic(s_i, s_f, t0=t0, dt=dt, n_steps=n)
    assert c.values[0] == s_f + (s_i - s_f) and abs(c.values[0] - s_i) <= 2.0**-53
    assert c.values[-1] == s_f
    assert all(b >= a for a, b in zip(c.values, c.values[1:]))
    assert c.steps == tuple(range(t0, t0 + n * dt + 1, dt))


@given(
    s_i=fractions,
    s_f=fractions,
    n=st.integers(1, 30),
    size=sizes,
    rounding=roundings,
    kind=st.sampled_from(["cubic", "linear"]),
)
def test_absolute_counts_follow_the_rounding_rule(s_i, s_f, n, size, rounding, kind):
    s_i, s_f = min(s_i, s_f), max(s_i, s_f)
    sched = (cubic if kind == "cubic" else linear)(s_i, s_f, n_steps=n)
    alive = sched.alive_counts(size, rounding)
    assert alive == tuple(size - fraction_to_count(s, size, rounding) for s in sched.values)
    assert sum(sched.prune_counts(size, rounding)) == size - alive[-1]
    assert all(p >= 0 for p in sched.prune_counts(size, rounding))


def test_linear_constant_one_shot_values():
    assert linear(0.0, 0.8, n_steps=4).values == (0.0, 0.2, 0.4, 0.6000000000000001, 0.8)
    assert constant(0.5, t0=3, dt=2, n_steps=2).steps == (3, 5, 7)
    assert constant(0.5, n_steps=2).alive_counts(10) == (5, 5, 5)
    assert one_shot(0.75).alive_counts(10) == (2,)  # 7.5 pruned -> 8 (even)
    assert one_shot(0.75).densities() == (0.25,)


def test_to_dict_is_json_ready():
    import json

    d = cubic(0.1, 0.9, n_steps=3).to_dict()
    assert json.loads(json.dumps(d)) == d


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: geometric(1.5, 3), "alpha must be in"),
        (lambda: geometric(0.2, -1), "rounds must be >= 0"),
        (lambda: geometric(0.2, 2.0), "rounds must be an integer"),
        (lambda: cubic(0.9, 0.1), "initial_sparsity must be <= final_sparsity"),
        (lambda: cubic(0.0, 0.5, dt=0), "dt must be >= 1"),
        (lambda: cubic(0.0, 0.5, n_steps=0), "n_steps must be >= 1"),
        (lambda: linear(0.0, float("nan")), "final_sparsity must be finite"),
        (lambda: one_shot(-0.1), "sparsity must be in"),
        (lambda: rounds_to_density(0.5, 0.0), "alpha must be in"),
        (lambda: geometric(0.2, 2).alive_counts(-1), "n must be >= 0"),
        (lambda: geometric(0.2, 2).alive_counts(10, "up"), "unknown rounding"),
        (lambda: Schedule("x", "relative", (1, 0), (0.1, 0.1)), "steps must be non-decreasing"),
        (lambda: Schedule("x", "absolute", (0, 1), (0.5, 0.1)), "non-decreasing"),
        (lambda: Schedule("x", "sideways", (0,), (0.5,)), "unknown kind"),
        (lambda: Schedule("x", "relative", (0,), ()), "same length"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_exact_arithmetic_check_of_the_bound_derivation():
    # e_{s+1} = (1 - alpha) e_s + delta_s with |delta_s| <= 1/2: check the recursion itself on a case
    alpha, n = 0.3, 37
    k, e = n, 0.0
    for s in range(12):
        drop = fraction_to_count(alpha, k)
        delta = (alpha * k) - drop  # k_{s+1} = (1 - alpha) k_s + delta_s
        assert abs(delta) <= 0.5 + 1e-12
        k -= drop
        e = (1 - alpha) * e + delta
        assert math.isclose(k - n * (1 - alpha) ** (s + 1), e, abs_tol=1e-9)


def test_counts_stall_once_alpha_times_k_is_at_most_one_half():
    # docs/schedules.md: round-half-even prunes nothing once alpha * k <= 1/2 (1/2 itself
    # rounds to the even 0), floor once alpha * k < 1, ceil never.
    from pathlib import Path

    assert fraction_to_count(0.25, 2) == 0 and fraction_to_count(0.25, 3) == 1  # 0.5, 0.75
    with pytest.raises(ValueError, match="stops at 2 alive"):
        rounds_to_density(0.5, 0.25, n=2)
    for alpha, k in ((0.25, 2), (0.1, 5), (0.5, 1), (0.125, 4)):
        assert alpha * k == 0.5 and fraction_to_count(alpha, k) == 0
        assert geometric(alpha, 3).alive_counts(k) == (k, k, k)
    doc = (Path(__file__).parent.parent / "docs" / "schedules.md").read_text()
    assert "once alpha * k <= 1/2, round-half-even prunes nothing" in doc
    assert "alpha * k < 1/2" not in doc
