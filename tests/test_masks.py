"""Mask selection: rounding, ties, scope, nesting, structured and N:M pruning, OBS and SynFlow procedures.

Every property is one sentence of code; strategies aim at the edges: ties,
zeros, -0.0, single elements, all-equal scores, fully pruned parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refprune.masks import (
    PruneResult,
    alive_counts,
    alive_units,
    fraction_to_count,
    keep_top_k,
    n_m_mask,
    prune,
    prune_count,
    prune_n_m,
    prune_units,
    select_masks,
    select_masks_count,
    unit_scores,
)
from refprune.mlp import MLP
from refprune.rescoring import obs_prune, synflow_prune
from refprune.scores import compute_scores, synflow_scores
from refprune.train import train

# ---------------------------------------------------------------- strategies
# Few distinct values, so ties are common; -0.0 and 0.0 both present.
TIE_VALUES = st.sampled_from([-1.5, -0.0, 0.0, 0.25, 0.25, 1.0, 3.0])
FRACTIONS = st.one_of(
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.85, 1.0]), st.floats(0.0, 1.0, allow_nan=False)
)


@st.composite
def scored_masks(draw, max_params=3, ties=True):
    """Dict of scores and a dict of masks (some entries already pruned) with matching shapes."""
    n_params = draw(st.integers(1, max_params))
    scores, masks = {}, {}
    for i in range(n_params):
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6))
        elements = (
            TIE_VALUES if ties else st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
        )
        scores[f"p{i}"] = draw(hnp.arrays(np.float64, shape, elements=elements))
        masks[f"p{i}"] = draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
    return scores, masks


def distinct_scores(n):
    return hnp.arrays(
        np.float64,
        n,
        elements=st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
        unique=True,
    )


def total_alive(masks, names=None):
    return sum(int(masks[n].sum()) for n in (names or masks))


def small_model(seed=0, sizes=(6, 5, 4, 3), activation="relu", loss="cross_entropy"):
    return MLP(list(sizes), activation, loss=loss, seed=seed)


def same_state(a, b):
    return all(
        np.array_equal(a["params"][n], b["params"][n])
        and np.array_equal(a["masks"][n], b["masks"][n])
        for n in a["params"]
    )


# ---------------------------------------------------------------- the two conventions
def test_fraction_to_count_rounding_modes():
    assert fraction_to_count(0.25, 10) == 2  # 2.5 -> 2 (half to even)
    assert fraction_to_count(0.375, 4) == 2  # 1.5 -> 2 (half to even)
    assert fraction_to_count(0.625, 4) == 2  # 2.5 -> 2
    assert fraction_to_count(0.25, 10, "floor") == 2
    assert fraction_to_count(0.25, 10, "ceil") == 3
    assert fraction_to_count(0.07, 100, "ceil") == 8  # 0.07 * 100 == 7.000000000000001 in float64
    assert fraction_to_count(0.0, 0) == 0 and fraction_to_count(1.0, 7) == 7


def test_keep_top_k_ties_lower_index_kept_and_negative_zero_equals_zero():
    s = np.array([0.0, -0.0, 0.0, 1.0])
    assert keep_top_k(s, 2).tolist() == [True, False, False, True]
    assert keep_top_k(np.array([-0.0, 0.0]), 1).tolist() == [True, False]


@given(
    hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=5), elements=TIE_VALUES), st.data()
)
def test_keep_top_k_keeps_exactly_k_and_the_highest(s, data):
    k = data.draw(st.integers(0, s.size))
    keep = keep_top_k(s, k)
    assert keep.sum() == k
    assert k in (0, s.size) or s[keep].min() >= s[~keep].max()


# ---------------------------------------------------------------- select_masks: counts
@given(scored_masks(), FRACTIONS, st.sampled_from(["round-half-even", "floor", "ceil"]))
def test_layer_scope_prunes_the_rounded_count_of_alive_entries(sm, f, rounding):
    scores, masks = sm
    new = select_masks(scores, masks, f, rounding=rounding)
    for n in scores:
        alive = int(masks[n].sum())
        assert new[n].sum() == alive - fraction_to_count(f, alive, rounding)


@given(scored_masks(), FRACTIONS)
def test_global_scope_prunes_the_rounded_count_of_the_pool(sm, f):
    scores, masks = sm
    new = select_masks(scores, masks, f, scope="global")
    n = total_alive(masks)
    assert total_alive(new) == n - fraction_to_count(f, n)


@given(scored_masks(), FRACTIONS, st.sampled_from(["layer", "global"]))
def test_new_masks_are_nested_in_the_old_ones(sm, f, scope):
    scores, masks = sm
    new = select_masks(scores, masks, f, scope=scope)
    assert all(not np.any(new[n] & ~masks[n]) for n in scores)


@given(scored_masks(), FRACTIONS, st.sampled_from(["layer", "global"]))
def test_every_kept_score_is_at_least_every_pruned_alive_score(sm, f, scope):
    scores, masks = sm
    new = select_masks(scores, masks, f, scope=scope)
    groups = [[n] for n in scores] if scope == "layer" else [list(scores)]
    for g in groups:
        kept = np.concatenate([scores[n][new[n]] for n in g])
        gone = np.concatenate([scores[n][masks[n] & ~new[n]] for n in g])
        assert kept.size == 0 or gone.size == 0 or kept.min() >= gone.max()


@given(
    scored_masks(ties=False), FRACTIONS, st.integers(-30, 30), st.sampled_from(["layer", "global"])
)
def test_masks_unchanged_by_scaling_scores_by_a_positive_constant(sm, f, e, scope):
    # powers of two scale exactly, so the order (ties included) is the same
    scores, masks = sm
    scaled = {n: s * 2.0**e for n, s in scores.items()}
    a, b = select_masks(scores, masks, f, scope=scope), select_masks(scaled, masks, f, scope=scope)
    assert all(np.array_equal(a[n], b[n]) for n in scores)


@given(
    st.integers(1, 30).flatmap(
        lambda n: st.tuples(st.permutations(range(n)), hnp.arrays(np.bool_, n))
    ),
    st.floats(1e-3, 1e3),
    FRACTIONS,
    st.sampled_from(["layer", "global"]),
)
def test_masks_unchanged_by_any_positive_scale_when_scores_are_well_separated(data, c, f, scope):
    # distinct integers scaled by c stay strictly ordered (gaps of c, far above one ulp)
    order, alive = data
    s = {"w": np.array(order, dtype=float)}
    a = select_masks(s, {"w": alive}, f, scope=scope)["w"]
    assert np.array_equal(a, select_masks({"w": s["w"] * c}, {"w": alive}, f, scope=scope)["w"])


@given(
    st.integers(1, 30).flatmap(
        lambda n: st.tuples(distinct_scores(n), st.permutations(range(n)), hnp.arrays(np.bool_, n))
    ),
    FRACTIONS,
)
def test_masks_permute_with_their_inputs_when_scores_are_distinct(data, f):
    s, perm, alive = data
    perm = np.array(perm)
    a = select_masks({"w": s}, {"w": alive}, f)["w"]
    b = select_masks({"w": s[perm]}, {"w": alive[perm]}, f)["w"]
    assert np.array_equal(a[perm], b)


@given(st.integers(1, 40), st.integers(0, 40), FRACTIONS)
def test_all_equal_scores_keep_the_first_alive_entries_in_c_order(n, n_dead, f):
    alive = np.ones(n, dtype=bool)
    alive[: min(n_dead, n)] = False
    new = select_masks({"w": np.full(n, 0.5)}, {"w": alive}, f)["w"]
    k = int(new.sum())
    assert np.array_equal(np.flatnonzero(new), np.flatnonzero(alive)[:k])


def test_ties_in_global_scope_go_by_position_in_the_concatenation():
    scores = {"b": np.array([1.0, 1.0]), "a": np.array([[1.0, 1.0], [1.0, 1.0]])}
    masks = {n: np.ones(s.shape, dtype=bool) for n, s in scores.items()}
    new = select_masks(scores, masks, 0.5, scope="global")  # 3 of 6 kept: "b" comes first
    assert new["b"].tolist() == [True, True] and new["a"].tolist() == [
        [True, False],
        [False, False],
    ]


def test_a_pruned_entry_is_never_revived_even_with_the_highest_score():
    s = {"w": np.array([100.0, 1.0, 2.0, 3.0])}
    new = select_masks(s, {"w": np.array([False, True, True, True])}, 0.0)
    assert new["w"].tolist() == [False, True, True, True]


def test_fraction_counts_alive_entries_not_all_entries():
    s = {"w": np.arange(10.0)}
    m = {"w": np.arange(10) >= 6}  # 4 alive of 10
    assert select_masks(s, m, 0.5)["w"].sum() == 2  # half of 4, not half of 10


def test_alive_is_the_mask_not_the_value():
    s = {"w": np.array([0.0, 0.0, 5.0])}  # alive weights may score exactly 0
    assert select_masks(s, {"w": np.ones(3, dtype=bool)}, 0.0)["w"].all()


@given(scored_masks(max_params=1), FRACTIONS)
def test_layer_and_global_scope_agree_on_a_single_parameter(sm, f):
    scores, masks = sm
    a, b = select_masks(scores, masks, f), select_masks(scores, masks, f, scope="global")
    assert all(np.array_equal(a[n], b[n]) for n in scores)


def test_select_masks_returns_the_names_of_scores_and_ignores_other_masks():
    s = {"b": np.ones(2), "a": np.ones(3)}
    m = {"a": np.ones(3, dtype=bool), "b": np.ones(2, dtype=bool), "c": np.ones(4, dtype=bool)}
    assert list(select_masks(s, m, 0.5)) == ["b", "a"]


# ---------------------------------------------------------------- rate multipliers
def test_layer_rate_multiplier_prunes_the_output_layer_at_half_rate():
    s = {"hidden": np.arange(100.0), "out": np.arange(20.0)}
    m = {n: np.ones(v.shape, dtype=bool) for n, v in s.items()}
    new = select_masks(s, m, 0.2, rate_multipliers={"out": 0.5})
    assert alive_counts(new) == {"hidden": 80, "out": 18}  # 20% of 100, 10% of 20


def test_global_scope_multiplier_takes_a_parameter_out_of_the_pool():
    s = {"a": np.arange(10.0), "b": np.arange(10.0) + 100, "out": np.arange(10.0) - 100}
    m = {n: np.ones(10, dtype=bool) for n in s}
    new = select_masks(s, m, 0.5, scope="global", rate_multipliers={"out": 0.5})
    # pool a+b loses 10 (all of a: lowest scores); out loses round(0.25 * 10) = 2 on its own
    assert alive_counts(new) == {"a": 0, "b": 10, "out": 8}
    assert new["out"].tolist() == [False, False] + [True] * 8


def test_multiplier_zero_leaves_a_parameter_untouched_in_both_scopes():
    s = {"a": np.arange(4.0), "out": np.arange(4.0)}
    m = {n: np.ones(4, dtype=bool) for n in s}
    for scope in ("layer", "global"):
        assert select_masks(s, m, 0.5, scope=scope, rate_multipliers={"out": 0.0})["out"].all()


@given(scored_masks(), FRACTIONS)
def test_multipliers_of_one_change_nothing(sm, f):
    scores, masks = sm
    ones = {n: 1.0 for n in scores}
    for scope in ("layer", "global"):
        a = select_masks(scores, masks, f, scope=scope)
        b = select_masks(scores, masks, f, scope=scope, rate_multipliers=ones)
        assert all(np.array_equal(a[n], b[n]) for n in scores)


# ---------------------------------------------------------------- count form
@given(scored_masks(), st.data())
def test_select_masks_count_prunes_exactly_the_count(sm, data):
    scores, masks = sm
    k = data.draw(st.integers(0, total_alive(masks)))
    assert (
        total_alive(select_masks_count(scores, masks, k, scope="global")) == total_alive(masks) - k
    )
    per = {n: data.draw(st.integers(0, int(masks[n].sum()))) for n in scores}
    new = select_masks_count(scores, masks, per)
    assert all(new[n].sum() == masks[n].sum() - per[n] for n in scores)


@given(scored_masks(), FRACTIONS)
def test_fraction_and_count_forms_agree(sm, f):
    scores, masks = sm
    counts = {n: fraction_to_count(f, int(masks[n].sum())) for n in scores}
    a, b = select_masks(scores, masks, f), select_masks_count(scores, masks, counts)
    assert all(np.array_equal(a[n], b[n]) for n in scores)


# ---------------------------------------------------------------- bad input
GOOD_S = {"w": np.array([1.0, 2.0])}
GOOD_M = {"w": np.array([True, True])}


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(fraction=1.5), ValueError, r"fraction must be in \[0.0, 1.0\], got 1.5"),
        (dict(fraction=-0.1), ValueError, "fraction must be in"),
        (dict(fraction=float("nan")), ValueError, "fraction must be finite"),
        (dict(scores={"w": np.array([1.0, np.nan])}), ValueError, r"scores\['w'\] must be finite"),
        (dict(scores={"w": np.array([1.0, np.inf])}), ValueError, r"scores\['w'\] must be finite"),
        (dict(scores={"w": np.array([1, 2])}), TypeError, "floating-point"),
        (dict(scores={"w": np.ones(3)}), ValueError, "must have the same shape"),
        (dict(scores={}), ValueError, "at least one parameter"),
        (dict(scores={"v": np.ones(2)}), ValueError, "missing 'v'"),
        (dict(masks={"w": np.array([1.0, 1.0])}), TypeError, "boolean"),
        (dict(scope="local"), ValueError, "unknown scope"),
        (dict(rounding="nearest"), ValueError, "unknown rounding"),
        (dict(rate_multipliers={"x": 0.5}), ValueError, "not a name of scores"),
        (dict(rate_multipliers={"w": -1.0}), ValueError, "rate_multipliers"),
        (dict(fraction=0.6, rate_multipliers={"w": 2.0}), ValueError, "must be <= 1"),
    ],
)
def test_select_masks_bad_input_raises_a_clear_error(kwargs, exc, match):
    args = dict(scores=GOOD_S, masks=GOOD_M, fraction=0.5) | kwargs
    with pytest.raises(exc, match=match):
        select_masks(args.pop("scores"), args.pop("masks"), args.pop("fraction"), **args)


@pytest.mark.parametrize(
    "n_prune, scope, match",
    [
        (3, "global", r"n_prune must be in \[0, 2\]"),
        (-1, "global", "n_prune must be in"),
        (1.0, "global", "n_prune must be an integer"),
        ({"w": 3}, "layer", r"n_prune\['w'\] must be in \[0, 2\]"),
        (1, "layer", "mapping"),
        ({"v": 1}, "layer", "exactly the names"),
    ],
)
def test_select_masks_count_bad_input(n_prune, scope, match):
    with pytest.raises((ValueError, TypeError), match=match):
        select_masks_count(GOOD_S, GOOD_M, n_prune, scope=scope)


def test_inputs_are_not_modified():
    s, m = {"w": np.array([3.0, 1.0, 2.0])}, {"w": np.array([True, True, False])}
    s0, m0 = s["w"].copy(), m["w"].copy()
    select_masks(s, m, 0.5)
    assert np.array_equal(s["w"], s0) and np.array_equal(m["w"], m0)


# ---------------------------------------------------------------- prune on a model
def test_prune_applies_masks_and_zeroes_pruned_weights():
    net = small_model()
    r = prune(net, compute_scores("magnitude", net), 0.5)
    assert isinstance(r, PruneResult)
    assert all(np.array_equal(net.masks[n], r.masks[n]) for n in net.weight_names())
    assert all(np.all(net.params[n][~net.masks[n]] == 0.0) for n in net.weight_names())
    assert r.alive == {n: int(net.masks[n].sum()) for n in net.weight_names()}
    assert r.pruned == {"layers.0.weight": 15, "layers.1.weight": 10, "layers.2.weight": 6}
    assert net.masks["layers.0.bias"].all()  # biases only when named


def test_pruned_weights_stay_zero_through_training_and_later_steps():
    net = small_model(seed=3)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 6)), rng.integers(0, 3, 32)
    masks = []
    for step in range(4):
        prune(net, compute_scores("random", net, seed=step), 0.3)
        masks.append({n: net.masks[n].copy() for n in net.weight_names()})
        train(net, X, y, epochs=2, lr=0.1, momentum=0.9, seed=step)
        assert all(np.all(net.params[n][~net.masks[n]] == 0.0) for n in net.params)
    assert all(not np.any(b[n] & ~a[n]) for a, b in zip(masks, masks[1:]) for n in a)


def test_prune_with_biases_named():
    net = small_model()
    names = ["layers.0.weight", "layers.0.bias"]
    r = prune(
        net,
        compute_scores("magnitude", net, names=names),
        1.0,
        names=names,
        scope="global",
        allow_collapse=True,
    )
    assert r.collapsed == ["layers.0.weight"] and not net.masks["layers.0.bias"].any()


def test_layer_collapse_raises_and_leaves_the_model_untouched():
    net = small_model()
    before = net.state_dict()
    s = compute_scores("magnitude", net)
    s["layers.2.weight"] = s["layers.2.weight"] * 0.0 - 1.0  # output layer lowest everywhere
    with pytest.raises(ValueError, match=r"layer collapse: \['layers.2.weight'\]"):
        prune(net, s, 0.4, scope="global")
    assert same_state(before, net.state_dict())


def test_layer_collapse_is_reported_when_allowed():
    net = small_model()
    r = prune(net, compute_scores("magnitude", net), 1.0, allow_collapse=True)
    assert r.collapsed == net.weight_names() and net.density() == 0.0


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda net, s: prune(net, s, 1.5), ValueError, "fraction must be in"),
        (lambda net, s: prune(net, {}, 0.5), ValueError, "missing"),
        (lambda net, s: prune(net, s, 0.5, names=[]), ValueError, "at least one parameter"),
        (
            lambda net, s: prune(net, s, 0.5, names=["layers.9.weight"]),
            ValueError,
            "parameters of the model",
        ),
        (
            lambda net, s: prune(net, s | {"layers.0.weight": np.full((5, 6), np.nan)}, 0.5),
            ValueError,
            "finite",
        ),
        (
            lambda net, s: prune(net, s | {"layers.0.weight": np.ones((6, 5))}, 0.5),
            ValueError,
            "same shape",
        ),
        (lambda net, s: prune("net", s, 0.5), TypeError, "MLP"),
        (
            lambda net, s: prune_count(net, s, 10**6, scope="global"),
            ValueError,
            "n_prune must be in",
        ),
    ],
)
def test_prune_bad_input_leaves_the_model_untouched(call, exc, match):
    net = small_model()
    s = compute_scores("magnitude", net)
    before = net.state_dict()
    with pytest.raises(exc, match=match):
        call(net, s)
    assert same_state(before, net.state_dict())


def test_prune_count_prunes_exactly_the_count():
    net = small_model()
    prune_count(net, compute_scores("magnitude", net), 7, scope="global")
    assert sum(int(net.masks[n].sum()) for n in net.weight_names()) == 30 + 20 + 12 - 7


# ---------------------------------------------------------------- structured: units
def test_unit_scores_hand_computed():
    net = MLP([2, 2, 1], "relu", seed=0)
    net.load_state_dict(
        {
            "params": {
                "layers.0.weight": np.array([[3.0, -4.0], [1.0, 0.5]]),
                "layers.0.bias": np.array([9.0, 9.0]),
                "layers.1.weight": np.array([[1.0, 1.0]]),
                "layers.1.bias": np.zeros(1),
            }
        }
    )
    assert unit_scores(net, 0, "l1").tolist() == [7.0, 1.5]  # |3| + |-4|, |1| + |0.5|
    assert unit_scores(net, 0, "l2").tolist() == [
        5.0,
        np.sqrt(1.25),
    ]  # sqrt(9 + 16), sqrt(1 + 0.25)


def test_prune_units_masks_row_bias_and_outgoing_column():
    net = small_model(sizes=(4, 6, 3))
    s = unit_scores(net, 0)
    r = prune_units(net, 0.5)
    gone = np.argsort(s, kind="stable")[:3]
    assert (
        not net.masks["layers.0.weight"][gone].any() and not net.masks["layers.0.bias"][gone].any()
    )
    assert not net.masks["layers.1.weight"][:, gone].any()
    assert r.alive_units == {0: 3} and alive_units(net, 0).sum() == 3
    assert net.masks["layers.1.bias"].all()  # the output layer keeps its biases


@given(st.integers(0, 10_000), FRACTIONS, st.sampled_from(["l1", "l2"]))
def test_prune_units_removes_the_rounded_count_of_lowest_norm_units(seed, f, norm):
    net = small_model(seed=seed, sizes=(5, 7, 6, 2))
    before = {l: (unit_scores(net, l, norm), alive_units(net, l)) for l in (0, 1)}
    r = prune_units(net, f, norm=norm, allow_collapse=True)
    for l, (s, alive) in before.items():
        now = alive_units(net, l)
        assert now.sum() == alive.sum() - fraction_to_count(f, int(alive.sum()))
        assert now.sum() in (0, alive.sum()) or s[now].min() >= s[alive & ~now].max()
    assert bool(r.collapsed) == any(alive_units(net, l).sum() == 0 for l in (0, 1))


def test_prune_units_repeated_steps_are_nested_and_count_alive_units():
    net = small_model(sizes=(4, 10, 3))
    prune_units(net, 0.5)
    first = net.masks["layers.0.weight"].copy()
    r = prune_units(net, 0.5)
    assert r.alive_units == {0: 3} and not np.any(
        net.masks["layers.0.weight"] & ~first
    )  # 10 -> 5 -> 3 (2.5 rounds to 2)


def test_prune_units_collapse_raises_and_leaves_the_model_untouched():
    net = small_model(sizes=(4, 3, 2))
    before = net.state_dict()
    with pytest.raises(
        ValueError, match=r"layer collapse: \['layers.0.weight', 'layers.1.weight'\]"
    ):
        prune_units(net, 1.0)
    assert same_state(before, net.state_dict())
    r = prune_units(net, 1.0, allow_collapse=True)
    assert r.collapsed == ["layers.0.weight", "layers.1.weight"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layers=[2]), r"hidden layer in \[0, 1\]"),
        (dict(layers=[0, 0]), "repeat"),
        (dict(layers=[]), "at least one"),
        (dict(norm="linf"), "unknown norm"),
        (dict(fraction=2.0), "fraction must be in"),
    ],
)
def test_prune_units_bad_input(kwargs, match):
    net = small_model()
    before = net.state_dict()
    with pytest.raises((ValueError, TypeError), match=match):
        prune_units(net, **({"fraction": 0.5} | kwargs))
    assert same_state(before, net.state_dict())


def test_units_need_a_hidden_layer():
    with pytest.raises(ValueError, match="no hidden layer"):
        prune_units(MLP([3, 2]), 0.5)


# ---------------------------------------------------------------- N:M
def test_n_m_hand_computed_with_ties_and_negative_zero():
    s = np.array([[1.0, 2.0, 2.0, 0.0, -0.0, 0.0, 5.0, 5.0]])
    assert n_m_mask(s, 2, 4).tolist() == [[False, True, True, False, False, False, True, True]]
    assert n_m_mask(np.array([-0.0, 0.0, 0.0, -0.0]), 1, 2).tolist() == [True, False, True, False]


@given(
    st.sampled_from([(1, 2), (2, 4), (0, 3), (3, 3), (1, 1), (4, 8)]).flatmap(
        lambda nm: st.tuples(
            st.just(nm),
            hnp.arrays(
                np.float64,
                st.tuples(st.integers(1, 4), st.integers(1, 3).map(lambda g: g * nm[1])),
                elements=TIE_VALUES,
            ),
        )
    )
)
def test_n_m_keeps_n_per_group_by_the_keep_top_k_rule(args):
    (n, m), s = args
    keep = n_m_mask(s, n, m)
    groups = s.reshape(-1, m)
    assert np.array_equal(keep.reshape(-1, m), np.array([keep_top_k(g, n) for g in groups]))


@given(hnp.arrays(np.float64, (3, 8), elements=TIE_VALUES), hnp.arrays(np.bool_, (3, 8)))
def test_n_m_with_alive_is_nested_and_keeps_the_best_alive(s, alive):
    keep = n_m_mask(s, 2, 4, alive=alive)
    assert not np.any(keep & ~alive)
    for g_keep, g_alive, g_s in zip(keep.reshape(-1, 4), alive.reshape(-1, 4), s.reshape(-1, 4)):
        assert g_keep.sum() == min(2, g_alive.sum())
        assert np.array_equal(g_keep[g_alive], keep_top_k(g_s[g_alive], int(g_keep.sum())))


@pytest.mark.parametrize(
    "args, exc, match",
    [
        (
            (np.ones((2, 6)), 2, 4),
            ValueError,
            r"m must divide the length of the last axis of scores \(6\), got m=4",
        ),
        ((np.ones((2, 4)), 5, 4), ValueError, r"n must be in \[0, m\]"),
        ((np.ones((2, 4)), 1, 0), ValueError, "m must be >= 1"),
        ((np.ones(4), 1.0, 2), TypeError, "n must be an integer"),
        ((np.array([1.0, np.nan]), 1, 2), ValueError, "finite"),
        ((np.array(1.0), 1, 1), ValueError, "at least one dimension"),
    ],
)
def test_n_m_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        n_m_mask(*args)


def test_prune_n_m_on_a_model():
    net = small_model(sizes=(8, 4, 2))
    r = prune_n_m(net, compute_scores("magnitude", net), 2, 4)
    w = net.masks["layers.0.weight"].reshape(4, 2, 4)
    assert (w.sum(axis=-1) == 2).all() and r.alive["layers.1.weight"] == 4
    before = net.state_dict()
    with pytest.raises(
        ValueError, match=r"m must divide the input dimension of 'layers.0.weight' \(8\)"
    ):
        prune_n_m(net, compute_scores("magnitude", net), 1, 3)
    assert same_state(before, net.state_dict())


# ---------------------------------------------------------------- Optimal Brain Surgeon
def _least_squares_model(seed=0, n=20, d=4, k=2):
    """A linear model with mse (an exactly quadratic loss) at its exact minimum."""
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((n, d)), rng.standard_normal((n, k))
    net = MLP([d, k], "identity", loss="mse", seed=seed)
    B = np.linalg.lstsq(np.hstack([X, np.ones((n, 1))]), Y, rcond=None)[0]
    net.load_state_dict(
        {"params": {"layers.0.weight": B[:d].T.copy(), "layers.0.bias": B[d].copy()}}
    )
    return net, X, Y


def _constrained_least_squares(X, Y, W_mask, b_mask):
    """Exact minimiser of the mse with the masked-out entries fixed at 0, row by row."""
    Xa = np.hstack([X, np.ones((X.shape[0], 1))])
    W, b = np.zeros(W_mask.shape), np.zeros(b_mask.shape)
    for i in range(W_mask.shape[0]):
        cols = np.append(W_mask[i], b_mask[i])
        sol = np.linalg.lstsq(Xa[:, cols], Y[:, i], rcond=None)[0]
        full = np.zeros(cols.size)
        full[cols] = sol
        W[i], b[i] = full[:-1], full[-1]
    return W, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_obs_on_a_quadratic_loss_reaches_the_constrained_minimum_and_predicts_its_loss(seed):
    net, X, Y = _least_squares_model(seed)
    L0 = net.loss_value(X, Y)
    r = obs_prune(net, X, Y, 5, damping=0.0)
    W, b = _constrained_least_squares(X, Y, r.masks["layers.0.weight"], r.masks["layers.0.bias"])
    assert np.allclose(r.params["layers.0.weight"], W, rtol=1e-8, atol=1e-10)
    assert np.allclose(r.params["layers.0.bias"], b, rtol=1e-8, atol=1e-10)
    assert np.isclose(r.model.loss_value(X, Y) - L0, sum(r.saliencies), rtol=1e-8, atol=1e-14)
    assert all(r.params[n][i] == 0.0 for n, i in r.removed) and len(set(r.removed)) == 5


def test_obs_first_removal_is_the_lowest_saliency_and_input_model_is_untouched():
    net, X, Y = _least_squares_model(4)
    before = net.state_dict()
    s = compute_scores("obs", net, X, Y, damping=0.0)["layers.0.weight"]
    r = obs_prune(net, X, Y, 1, damping=0.0)
    assert r.removed == [("layers.0.weight", np.unravel_index(np.argmin(s), s.shape))]
    assert r.saliencies[0] == s.min()
    assert same_state(before, net.state_dict())


def test_obs_with_damping_reaches_the_constrained_optimum_of_the_damped_quadratic():
    # the block-inverse downdates after each removal equal solving the KKT system once at the end
    net, X, Y = _least_squares_model(5, d=3, k=2)
    r = obs_prune(net, X, Y, 4, damping=1e-3)
    W, b = _constrained_least_squares_damped(net, X, Y, r.masks, 1e-3)
    assert np.allclose(r.params["layers.0.weight"], W, rtol=1e-8, atol=1e-11)
    assert np.allclose(r.params["layers.0.bias"], b, rtol=1e-8, atol=1e-11)


def _constrained_least_squares_damped(net, X, Y, masks, damping):
    """argmin of 1/2 d^T (H + damping I) d over d with the removed entries of w + d at 0 (KKT system)."""
    from refprune.curvature import flatten_params, full_hessian, unflatten_params

    H = full_hessian(net, X, Y) + damping * np.eye(sum(p.size for p in net.params.values()))
    w = flatten_params(net.effective_params(), net)
    removed = np.flatnonzero(~flatten_params(masks, net))
    E = np.eye(w.size)[removed]
    K = np.block([[H, E.T], [E, np.zeros((removed.size, removed.size))]])
    d = np.linalg.solve(K, np.concatenate([np.zeros(w.size), -w[removed]]))[: w.size]
    out = unflatten_params(w + d, net)
    return out["layers.0.weight"], out["layers.0.bias"]


def test_obs_prune_bad_input():
    net, X, Y = _least_squares_model(0)
    with pytest.raises(ValueError, match=r"n_remove must be in \[0, 8\]"):
        obs_prune(net, X, Y, 9)
    with pytest.raises(ValueError, match="damping must be in"):
        obs_prune(net, X, Y, 1, damping=-1.0)


def test_obs_refuses_an_indefinite_hessian():
    rng = np.random.default_rng(0)
    net = MLP([4, 5, 3], "tanh", seed=2)
    with pytest.raises(ValueError, match="not positive definite"):
        obs_prune(net, rng.standard_normal((7, 4)), rng.integers(0, 3, 7), 1, damping=0.0)


# ---------------------------------------------------------------- SynFlow procedure
@given(st.integers(0, 1000), st.sampled_from([0.05, 0.1, 0.3, 0.5, 1.0]), st.integers(1, 12))
def test_synflow_prune_reaches_the_one_shot_count_through_monotone_rounds(seed, density, n):
    net = small_model(seed=seed)
    before = net.state_dict()
    r = synflow_prune(net, density, iterations=n, allow_collapse=True)
    n0 = 30 + 20 + 12
    assert r.alive[-1] == n0 - fraction_to_count(1 - density, n0)
    assert all(a >= b for a, b in zip(r.alive, r.alive[1:])) and len(r.alive) == n
    assert same_state(before, net.state_dict())


def test_synflow_prune_with_one_round_is_global_selection_on_synflow_scores():
    net = small_model(seed=7)
    r = synflow_prune(net, 0.3, iterations=1)
    expected = select_masks(synflow_scores(net), net.masks, 0.7, scope="global")
    assert all(np.array_equal(r.masks[n], expected[n]) for n in net.weight_names())


def test_synflow_iterating_avoids_the_collapse_one_shot_suffers():
    # A wide first layer with large weights and a narrow, small last layer: one-shot global
    # scoring by magnitude empties the last layer; SynFlow's conserved scores do not.
    net = MLP([20, 20, 2], "relu", seed=0)
    net.params["layers.1.weight"] *= 1e-3
    with pytest.raises(ValueError, match="layer collapse"):
        prune(net.copy(), compute_scores("magnitude", net), 0.9, scope="global")
    r = synflow_prune(net, 0.1, iterations=20)
    assert r.collapsed == [] and all(r.masks[n].any() for n in net.weight_names())


# ---------------------------------------------------------------- one definition of layer collapse
def _two_two_two():
    """2-2-2 relu net: unit row norms 2 and 0.2; only layers.1.weight[0, 1] alive after it."""
    net = MLP([2, 2, 2], "relu", seed=0)
    net.params["layers.0.weight"][:] = [[1.0, 1.0], [0.1, 0.1]]
    m = np.zeros((2, 2), dtype=bool)
    m[0, 1] = True
    net.set_mask("layers.1.weight", m)
    return net


def test_prune_units_collapse_is_an_emptied_weight_matrix_even_when_units_remain():
    from refprune.masks import collapsed_matrices

    net = _two_two_two()
    before = net.state_dict()
    with pytest.raises(ValueError, match=r"layer collapse: \['layers.1.weight'\]"):
        prune_units(net, 0.5)
    assert same_state(before, net.state_dict())
    r = prune_units(net, 0.5, allow_collapse=True)
    assert r.collapsed == ["layers.1.weight"] == collapsed_matrices(net, net.masks)
    assert r.alive_units == {0: 1}  # the hidden layer keeps a unit


def test_collapse_has_one_definition_in_code_and_docs():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "masks.md").read_text()
    assert "A hidden layer left with no unit raises (collapse)" not in doc
    assert "**Layer collapse** (the one definition" in doc
    assert "hidden layer left with no alive unit collapses" not in prune_units.__doc__
