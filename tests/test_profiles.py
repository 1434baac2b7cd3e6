"""Convention profiles: every rule of every library, checked by hand and by property.

Each hand-computed case cites the file it reproduces. Commits:
  torch       pytorch/pytorch@03459473c0ec8fea0afc2b32d0d5f45346c2a072 torch/nn/utils/prune.py
  tfmot       tensorflow/model-optimization@6fbc2cec3984877251aa6ce961aceb7049cf2b25
              tensorflow_model_optimization/python/core/sparsity/keras/{pruning_impl,pruning_schedule}.py
  open_lth    facebookresearch/open_lth@2ce732fe48abd5a80c10a153c45d397b048e980c pruning/sparse_global.py
  shrinkbench JJGO/shrinkbench@b24497451b6815a4dbdf2ded7b10c264805e772b strategies/utils.py, ...
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance.conventions import (
    PROFILES,
    Profile,
    equal_up_to_ties,
    get_profile,
    open_lth_prune_count,
    reference_profile,
    shrinkbench_fraction_to_keep,
    shrinkbench_threshold,
    tfmot_constant_sparsity,
    tfmot_keep_count,
    tfmot_polynomial_decay,
    tfmot_should_prune,
    tie_mismatch,
    torch_nparams_toprune,
)
from refprune.masks import select_masks

REF, TORCH, TFMOT, OLTH, SB = (
    PROFILES[n] for n in ("reference", "torch", "tfmot", "open-lth", "shrinkbench")
)
DISTINCT10 = np.array([0.3, -0.1, 0.5, 0.2, -0.4, 0.05, 0.6, 0.7, -0.8, 0.9])


# ----------------------------------------------------------------------------- strategies
# Scores drawn from a few values (many ties, zeros of both signs) or from wide floats.
TIE_VALUES = st.sampled_from([0.0, -0.0, 0.25, -0.25, 0.5, 1.0, 2.0])
WIDE = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def scores_and_alive(draw, min_size=1, max_size=24):
    n = draw(st.integers(min_size, max_size))
    elems = draw(st.sampled_from([TIE_VALUES, WIDE]))
    s = draw(hnp.arrays(np.float64, n, elements=elems))
    alive = draw(hnp.arrays(np.bool_, n))
    return s, alive


fractions = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 0.85, 1.0]), st.floats(0.0, 1.0, allow_nan=False)
)


def n_pruned(keep, alive):
    return int(alive.sum() - (keep & alive).sum())


# ----------------------------------------------------------------------------- registry
def test_registry_holds_the_five_profiles():
    assert set(PROFILES) == {"reference", "torch", "tfmot", "open-lth", "shrinkbench"}
    assert all(get_profile(n) is p and isinstance(p, Profile) for n, p in PROFILES.items())


def test_unknown_profile_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown profile 'keras'"):
        get_profile("keras")
    with pytest.raises(TypeError, match="profile name must be a string"):
        get_profile(3)


def test_library_rules_cite_a_commit_and_a_file():
    for name in ("torch", "tfmot", "open-lth", "shrinkbench"):
        cites = PROFILES[name].citations
        assert cites and any(re.fullmatch(r"[0-9a-f]{40}", c.commit) for c in cites)
        assert all(c.path and c.symbol and c.rule for c in cites)


def test_tie_determinism_flags():
    assert [
        PROFILES[n].deterministic_ties
        for n in ("reference", "torch", "tfmot", "open-lth", "shrinkbench")
    ] == [True, False, True, True, True]


def test_scope_not_offered_is_refused():
    with pytest.raises(ValueError, match="tfmot profile has no 'global' scope"):
        TFMOT.keep_masks({"a": DISTINCT10}, 0.5, scope="global")
    with pytest.raises(ValueError, match="open-lth profile has no 'layer' scope"):
        OLTH.keep_masks({"a": DISTINCT10}, 0.5, scope="layer")
    with pytest.raises(ValueError, match="unknown scope 'model'"):
        REF.keep_masks(DISTINCT10, 0.5, scope="model")


def test_bad_inputs_name_the_argument_and_leave_arrays_alone():
    s, a = DISTINCT10.copy(), np.ones(10, dtype=bool)
    with pytest.raises(ValueError, match="fraction must be in"):
        REF.keep_mask(s, 1.5, alive=a)
    with pytest.raises(TypeError, match="scores must be a floating-point array"):
        REF.keep_mask(np.arange(3), 0.5)
    with pytest.raises(ValueError, match="scores must be finite"):
        TORCH.keep_mask(np.array([1.0, np.nan]), 0.5)
    with pytest.raises(ValueError, match="alive must have shape"):
        TORCH.keep_mask(s, 0.5, alive=np.ones(3, dtype=bool))
    with pytest.raises(TypeError, match="alive must be a boolean array"):
        TORCH.keep_mask(s, 0.5, alive=np.ones(10))
    with pytest.raises(ValueError, match=r"ignore names unknown tensors \['c'\]"):
        TORCH.keep_masks({"a": s}, 0.5, ignore=["c"])
    with pytest.raises(ValueError, match="every tensor is in ignore"):
        TORCH.keep_masks({"a": s}, 0.5, ignore=["a"])
    with pytest.raises(ValueError, match="alive must have the same names"):
        TORCH.keep_masks({"a": s}, 0.5, alive={"b": a})
    assert np.array_equal(s, DISTINCT10) and a.all()


# ----------------------------------------------------------------------------- reference
def test_reference_delegates_to_select_masks():
    s = {"w": np.array([[0.3, 0.1], [0.1, 0.9]]), "v": np.array([0.2, 0.2, 0.7])}
    m = {"w": np.ones((2, 2), dtype=bool), "v": np.array([True, True, False])}
    for scope in ("layer", "global"):
        got = REF.keep_masks(s, 0.5, alive=m, scope=scope)
        want = select_masks(s, m, 0.5, scope=scope)
        assert all(np.array_equal(got[k], want[k]) for k in s)


def test_reference_rounding_variants():
    s = np.arange(1.0, 11.0)  # 0.25 * 10 = 2.5
    assert n_pruned(reference_profile("floor").keep_mask(s, 0.25), np.ones(10, bool)) == 2
    assert n_pruned(reference_profile("ceil").keep_mask(s, 0.25), np.ones(10, bool)) == 3
    assert n_pruned(REF.keep_mask(s, 0.25), np.ones(10, bool)) == 2  # half to even
    assert reference_profile("ceil").name == "reference-ceil"
    with pytest.raises(ValueError, match="unknown rounding"):
        reference_profile("nearest")


def test_reference_ranks_signed_scores_and_breaks_ties_by_index():
    # signed: -5 is the least important; the two 1.0 tie, the later one goes.
    keep = REF.keep_mask(np.array([-5.0, 1.0, 1.0, 3.0]), 0.5)
    assert keep.tolist() == [False, True, False, True]


@given(scores_and_alive(), fractions, st.sampled_from(["layer", "global"]))
def test_reference_equals_select_masks(sa, f, scope):
    s, alive = sa
    half = s.size // 2
    sm, am = {"a": s[:half], "b": s[half:]}, {"a": alive[:half], "b": alive[half:]}
    got, want = REF.keep_masks(sm, f, alive=am, scope=scope), select_masks(sm, am, f, scope=scope)
    assert all(np.array_equal(got[k], want[k]) for k in sm)


# ----------------------------------------------------------------------------- torch
# prune.py@03459473 _compute_nparams_toprune: round(amount * tensor_size), Python float64.
def test_torch_half_way_counts_round_to_even():
    assert torch_nparams_toprune(0.25, 10) == 2  # 2.5 -> 2
    assert torch_nparams_toprune(0.35, 10) == 4  # 0.35 * 10 == 3.5 -> 4
    assert torch_nparams_toprune(0.5, 5) == 2  # 2.5 -> 2
    assert torch_nparams_toprune(0.5, 7) == 4  # 3.5 -> 4
    assert torch_nparams_toprune(0.45, 10) == 4  # 4.5 -> 4
    assert n_pruned(TORCH.keep_mask(DISTINCT10, 0.25), np.ones(10, bool)) == 2


def test_torch_integer_amount_is_a_count_and_float_one_is_everything():
    # prune.py@03459473 _compute_nparams_toprune: isinstance(amount, numbers.Integral) -> count.
    assert n_pruned(TORCH.keep_mask(DISTINCT10, 1), np.ones(10, bool)) == 1
    assert n_pruned(TORCH.keep_mask(DISTINCT10, np.int64(3)), np.ones(10, bool)) == 3
    assert not TORCH.keep_mask(DISTINCT10, 1.0).any()


def test_torch_integer_amount_above_alive_is_refused():
    # prune.py@03459473 _validate_pruning_amount: int amount > tensor_size -> ValueError;
    # after a first pruning tensor_size is the alive slice (PruningContainer._combine_masks).
    alive = np.arange(10) < 4
    with pytest.raises(ValueError, match="larger than the number of alive weights 4"):
        TORCH.keep_mask(DISTINCT10, 5, alive=alive)


def test_torch_amount_validation():
    # prune.py@03459473 _validate_pruning_amount_init.
    for bad in (1.5, -0.1, -1):
        with pytest.raises(ValueError, match="amount must be a non-negative integer or a float"):
            TORCH.keep_mask(DISTINCT10, bad)
    for bad in ("0.5", None, True):
        with pytest.raises(TypeError, match="amount must be an int"):
            TORCH.keep_mask(DISTINCT10, bad)


def test_torch_fraction_is_of_the_alive_weights():
    # PruningContainer._combine_masks: slc = mask == 1, compute_mask(t[slc]).
    alive = np.array([True] * 6 + [False] * 4)
    keep = TORCH.keep_mask(DISTINCT10, 0.5, alive=alive)  # round(0.5 * 6) = 3 of the 6
    assert n_pruned(keep, alive) == 3 and not keep[~alive].any()
    # alive |w|: .3 .1 .5 .2 .4 .05 -> the three smallest (.05 .1 .2) go
    assert keep.tolist() == [True, False, True, False, True, False] + [False] * 4


def test_torch_ranks_absolute_values():
    # L1Unstructured.compute_mask: torch.topk(torch.abs(t), k, largest=False).
    keep = TORCH.keep_mask(np.array([-3.0, 1.0, 2.0, -0.5]), 2)
    assert keep.tolist() == [True, False, True, False]


def test_torch_global_pools_every_tensor():
    # global_unstructured: parameters_to_vector of scores and masks, then the container rule.
    s = {"a": np.array([0.1, 0.2, 0.3]), "b": np.array([5.0, 6.0, 7.0])}
    glob = TORCH.keep_masks(s, 0.5, scope="global")  # round(0.5 * 6) = 3: all of "a"
    lay = TORCH.keep_masks(s, 0.5, scope="layer")  # round(1.5) = 2 per tensor
    assert not glob["a"].any() and glob["b"].all()
    assert lay["a"].tolist() == [False, False, True] and lay["b"].tolist() == [False, False, True]


def test_torch_ties_are_compared_up_to_ties():
    s = np.array([1.0, 1.0, 1.0, 2.0, -1.0])  # |s|: four tie at 1
    ours = TORCH.keep_mask(s, 2)
    other = np.array([True, False, True, True, False])  # another valid topk answer
    assert n_pruned(ours, np.ones(5, bool)) == 2
    assert TORCH.masks_match(ours, other, s)
    assert not TORCH.masks_match(ours, np.array([True, True, True, False, False]), s)


@given(scores_and_alive(), fractions)
def test_torch_prunes_exactly_round_of_alive(sa, f):
    s, alive = sa
    keep = TORCH.keep_mask(s, f, alive=alive)
    assert n_pruned(keep, alive) == round(f * int(alive.sum()))
    assert not (keep & ~alive).any()
    kept, gone = np.abs(s)[keep], np.abs(s)[alive & ~keep]
    assert kept.size == 0 or gone.size == 0 or kept.min() >= gone.max()


@given(scores_and_alive(), fractions)
def test_torch_matches_reference_up_to_ties_on_magnitudes(sa, f):
    s, alive = sa
    mag = np.abs(s)
    assert equal_up_to_ties(
        REF.keep_mask(mag, f, alive=alive), TORCH.keep_mask(s, f, alive=alive), mag, alive
    )


# ----------------------------------------------------------------------------- tfmot
# pruning_impl.py@6fbc2cec _update_mask: k = max(round(f32(size) * (1 - sparsity)), 1), float32.
def test_tfmot_float32_count_differs_from_float64_at_n10_s085():
    assert np.float32(10) * (np.float32(1) - np.float32(0.85)) == np.float32(1.4999998)
    assert round(10 * (1 - 0.85)) == 2  # float64: 1.5000000000000002
    assert tfmot_keep_count(0.85, 10) == 1  # float32: 1.4999998 -> 1
    assert TFMOT.keep_mask(DISTINCT10, 0.85).sum() == 1
    assert TFMOT.count(0.85, 10) == 1


def test_tfmot_float32_count_can_also_be_larger():
    # n = 15, s = 0.9: float32 1.5000002 -> 2, float64 1.4999999999999996 -> 1.
    assert round(15 * (1 - 0.9)) == 1 and tfmot_keep_count(0.9, 15) == 2


def test_tfmot_half_way_in_float32_rounds_to_even():
    # tf.math.round: half to even. 4 * (1 - 0.375) = 2.5 exactly -> 2; 4 * (1 - 0.125) = 3.5 -> 4.
    assert tfmot_keep_count(0.375, 4) == 2 and tfmot_keep_count(0.125, 4) == 4


def test_tfmot_keeps_at_least_one():
    # tf.math.maximum(..., 1) (since model-optimization caee359e).
    assert tfmot_keep_count(0.99, 10) == 1 and TFMOT.keep_mask(DISTINCT10, 0.99).sum() == 1


def test_tfmot_ties_at_the_threshold_are_kept():
    # tf.math.greater_equal(abs_weights, threshold_value).
    keep = TFMOT.keep_mask(np.array([1.0, -1.0, 1.0, 2.0]), 0.5)  # k = 2, threshold 1
    assert keep.all()


def test_tfmot_threshold_zero_keeps_everything_pruned_entries_too():
    # Masked weights read 0; k = round(4 * 0.75) = 3, threshold = 3rd largest = 0.
    alive = np.array([True, True, False, False])
    keep = TFMOT.keep_mask(np.array([0.5, 0.3, 0.2, 0.1]), 0.25, alive=alive)
    assert keep.all()  # the pruned two come back


def test_tfmot_sparsity_is_of_the_whole_tensor():
    # tf.size(abs_weights) counts every entry; a pruned weight is a 0 among them.
    alive = np.array([True, True, False, False])
    keep = TFMOT.keep_mask(np.array([0.5, 0.3, 0.2, 0.1]), 0.5, alive=alive)
    assert keep.tolist() == [True, True, False, False]  # k = 2: nothing more goes
    assert n_pruned(TORCH.keep_mask(np.array([0.5, 0.3, 0.2, 0.1]), 0.5, alive=alive), alive) == 1


def test_tfmot_float32_scores_compare_in_float32():
    # 1 + 2**-30 and 1 are distinct in float64, equal in float32: a tie, so both are kept.
    s = np.array([1.0 + 2.0**-30, 1.0, 0.5, 0.25])
    assert TFMOT.keep_mask(s, 0.75).sum() == 1
    assert TFMOT.keep_mask(s.astype(np.float32), 0.75).sum() == 2


def test_tfmot_sparsity_validation():
    # pruning_schedule.py _validate_sparsity: 0 <= sparsity < 1.
    with pytest.raises(ValueError, match=r"sparsity must be in \[0.0, 1.0\)"):
        TFMOT.keep_mask(DISTINCT10, 1.0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        tfmot_keep_count(0.5, 0)


# pruning_schedule.py@6fbc2cec PolynomialDecay.__call__, ConstantSparsity.__call__, _should_prune_in_step.
def test_tfmot_polynomial_decay_start_is_not_always_float32_initial():
    s = tfmot_polynomial_decay(0, 0.1, 0.5, 0, 100)
    assert (
        s.dtype == np.float32
        and s != np.float32(0.1)
        and float(s) == float.fromhex("0x1.999998p-4")
    )
    assert tfmot_polynomial_decay(0, 0.5, 0.8, 0, 100) == np.float32(0.5)


def test_tfmot_polynomial_decay_middle_and_end():
    # step 50 of [0, 100]: p = 0.5, (1 - p)^3 = 0.125 exactly;
    # f32(0.5 - 0.8) * 0.125 + f32(0.8) = 0.76250001043... -> float32 0x1.866666p-1.
    assert float(tfmot_polynomial_decay(50, 0.5, 0.8, 0, 100)) == float.fromhex("0x1.866666p-1")
    for step in (100, 150):  # p clipped to 1: exactly f32(final)
        assert tfmot_polynomial_decay(step, 0.5, 0.8, 0, 100) == np.float32(0.8)
    assert tfmot_polynomial_decay(-5, 0.5, 0.8, 0, 100) == np.float32(0.5)  # p clipped to 0


def test_tfmot_float32_sparsity_is_used_without_rerounding():
    s = tfmot_polynomial_decay(37, 0.2, 0.9, 0, 100)
    assert TFMOT.count(s, 1000) == int(np.round(np.float32(1000) * (np.float32(1) - s)))


def test_tfmot_constant_sparsity_and_should_prune():
    assert tfmot_constant_sparsity(0.85) == np.float32(0.85)
    assert [tfmot_should_prune(t, 0, 1000, 100) for t in (0, 50, 100, 1000, 1100)] == [
        True,
        False,
        True,
        True,
        False,
    ]
    assert tfmot_should_prune(10**6, 200, -1, 100)  # end_step -1: prune forever
    assert not tfmot_should_prune(150, 200, -1, 50)  # before begin_step
    with pytest.raises(ValueError, match="frequency must be > 0"):
        tfmot_should_prune(0, 0, 10, 0)
    with pytest.raises(ValueError, match="end_step must be > begin_step"):
        tfmot_polynomial_decay(0, 0.1, 0.5, 10, 10)


@given(scores_and_alive(), st.floats(0.0, 0.999, allow_nan=False))
def test_tfmot_keeps_top_k_plus_ties(sa, s_):
    s, alive = sa
    keep = TFMOT.keep_mask(s, s_, alive=alive)
    mag = np.where(alive, np.abs(s), 0.0)
    k = tfmot_keep_count(s_, s.size)
    assert keep.sum() >= k
    assert mag[~keep].size == 0 or mag[keep].min() > mag[~keep].max()
    assert keep.sum() == k or np.sort(mag)[s.size - k] == np.sort(mag)[s.size - k - 1]


# ----------------------------------------------------------------------------- open_lth
# sparse_global.py@2ce732fe Strategy.prune: ceil(fraction * remaining), sorted[m], keep |w| > threshold.
def test_open_lth_prunes_one_weight_even_at_fraction_zero():
    keep = OLTH.keep_mask(DISTINCT10, 0.0)
    assert OLTH.count(0.0, 10) == 0 and n_pruned(keep, np.ones(10, bool)) == 1
    assert not keep[5]  # |0.05|, the smallest


def test_open_lth_strict_comparison_prunes_one_extra():
    keep = OLTH.keep_mask(DISTINCT10, 0.2)  # m = 2 -> threshold = 3rd smallest
    assert n_pruned(keep, np.ones(10, bool)) == 3


def test_open_lth_ties_at_the_threshold_all_go():
    keep = OLTH.keep_mask(np.array([1.0, 2.0, 2.0, -2.0, 3.0]), 0.2)  # m = 1, threshold 2
    assert keep.tolist() == [False, False, False, False, True]


def test_open_lth_ceil_of_a_float64_product():
    # 0.07 * 100 == 7.000000000000001 -> ceil 8 -> 9 weights go.
    s = np.arange(1.0, 101.0)
    assert open_lth_prune_count(0.07, 100) == 8
    assert n_pruned(OLTH.keep_mask(s, 0.07), np.ones(100, bool)) == 9


def test_open_lth_ignored_layers_count_as_alive():
    # number_of_remaining_weights sums every mask; prunable_tensors drops the ignored ones.
    s = {"a": np.arange(1.0, 11.0), "b": np.arange(1.0, 11.0)}
    new = OLTH.keep_masks(s, 0.2, scope="global", ignore=["b"])  # m = ceil(0.2 * 20) = 4
    assert n_pruned(new["a"], np.ones(10, bool)) == 5 and new["b"].all()


def test_open_lth_fraction_of_alive_and_pruned_stay_pruned():
    alive = np.array([True] * 5 + [False] * 5)
    keep = OLTH.keep_mask(DISTINCT10, 0.2, alive=alive)  # m = 1 of 5 alive -> 2 go
    assert n_pruned(keep, alive) == 2 and not keep[~alive].any()


def test_open_lth_index_past_the_end_is_refused():
    with pytest.raises(ValueError, match="raises IndexError"):
        OLTH.keep_mask(DISTINCT10, 1.0)
    with pytest.raises(ValueError, match="raises IndexError"):  # ignored layer inflates the count
        OLTH.keep_masks({"a": np.ones(2), "b": np.ones(10)}, 0.2, scope="global", ignore=["b"])


@given(scores_and_alive(), st.floats(0.0, 0.9, allow_nan=False))
def test_open_lth_prunes_at_least_m_plus_one(sa, f):
    s, alive = sa
    assume(math.ceil(f * int(alive.sum())) < int(alive.sum()))
    keep = OLTH.keep_mask(s, f, alive=alive)
    m = open_lth_prune_count(f, int(alive.sum()))
    mag = np.abs(s)
    assert n_pruned(keep, alive) >= m + 1 and not (keep & ~alive).any()
    assert mag[keep].size == 0 or mag[keep].min() > mag[alive & ~keep].max()
    if np.unique(mag[alive]).size == int(alive.sum()):
        assert n_pruned(keep, alive) == m + 1


# ----------------------------------------------------------------------------- shrinkbench
# strategies/utils.py@b2449745 fraction_threshold / threshold_mask; magnitude.py GlobalMagWeight.
def test_shrinkbench_fraction_is_the_fraction_kept():
    keep = SB.keep_mask(np.array([1.0, 2.0, 3.0, 4.0]), 0.25)  # q = 0.75, h = 2.25, thr 3.25
    assert keep.tolist() == [False, False, False, True]


def test_shrinkbench_threshold_is_interpolated():
    s = np.array([1.0, 2.0, 3.0, 4.0])
    assert shrinkbench_threshold(s, 0.6) == pytest.approx(2.2, abs=1e-15)  # h = 1.2
    assert SB.keep_mask(s, 0.6).sum() == 2  # keeps 2, the nominal count is 2.4


def test_shrinkbench_count_inexact_with_ties():
    # q = 0.6, h = 2.4: threshold = 1; nothing is strictly below it, all five stay.
    keep = SB.keep_mask(np.array([1.0, 1.0, 1.0, 1.0, 2.0]), 0.4)
    assert keep.all()
    assert SB.keep_mask(np.full(6, 0.3), 0.1).all()  # all-equal: nothing pruned
    assert SB.count(0.4, 5) is None


def test_shrinkbench_prunes_biases_but_not_the_classifier():
    # GlobalMagWeight: params() of the prunable modules, weight and bias; classifier not prunable.
    s = {
        "fc1.weight": np.array([0.9, 0.8, 0.7, 0.6]),
        "fc1.bias": np.array([0.01, 0.5]),
        "fc2.weight": np.array([0.001, 0.002]),
        "fc2.bias": np.array([0.0]),
    }
    new = SB.keep_masks(s, 0.5, scope="global", ignore=["fc2.weight", "fc2.bias"])
    # pool: .9 .8 .7 .6 .01 .5 -> q = 0.5, h = 2.5 -> threshold (.6 + .7) / 2 = .65
    assert new["fc1.weight"].tolist() == [True, True, True, False]
    assert new["fc1.bias"].tolist() == [False, False]
    assert new["fc2.weight"].all() and new["fc2.bias"].all()


def test_shrinkbench_layer_scope_thresholds_each_tensor():
    # LayerMagWeight: fraction_mask(importances[param], fraction) per parameter tensor.
    s = {"w": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([10.0, 20.0])}
    new = SB.keep_masks(s, 0.5, scope="layer")
    assert new["w"].tolist() == [False, False, True, True] and new["b"].tolist() == [False, True]


def test_shrinkbench_pruned_weights_read_zero():
    # MaskedModule.set_masks zeroes pruned weights in place: they are 0 in the next quantile.
    alive = np.array([False, False, True, True, True])
    s = np.array([9.0, 8.0, 1.0, 2.0, 3.0])
    assert SB.keep_mask(s, 0.4, alive=alive).tolist() == [False, False, False, True, True]
    # threshold 0 (3 of 5 read zero, keep 0.8 -> q = 0.2): nothing is below it, the dead come back
    alive0 = np.array([False, False, False, True, True])
    assert SB.keep_mask(s, 0.8, alive=alive0).all()


def test_shrinkbench_fraction_to_keep():
    # pruning/utils.py fraction_to_keep: 1 / 80 * (100 / 2 - 20) = 0.375.
    assert shrinkbench_fraction_to_keep(2.0, 100, 80) == 1 / 80 * (100 / 2 - 20) == 0.375
    with pytest.raises(ValueError, match="cannot compress 10.0x"):
        shrinkbench_fraction_to_keep(10.0, 100, 50)
    with pytest.raises(ValueError, match=r"fraction must be in \(0.0, 1.0\]"):
        SB.keep_mask(DISTINCT10, 0.0)


def _lerp_quantile(x: np.ndarray, q: float) -> float:
    """numpy/lib/_function_base_impl.py@4a71101d: 'linear' virtual index and _lerp, float64."""
    xs = np.sort(x)
    h = (xs.size - 1) * q
    if h >= xs.size - 1:
        return float(xs[-1])
    j = math.floor(h)
    g = h - j
    a, b = xs[j], xs[j + 1]
    return float(a + (b - a) * g) if g < 0.5 else float(b - (b - a) * (1 - g))


@given(
    hnp.arrays(np.float64, st.integers(1, 30), elements=st.one_of(TIE_VALUES, WIDE)),
    st.floats(0.0, 1.0, allow_nan=False, exclude_min=True),
)
def test_shrinkbench_threshold_is_the_documented_formula(x, f):
    assert shrinkbench_threshold(np.abs(x), f) == _lerp_quantile(np.abs(x), 1 - f)


@given(scores_and_alive(), st.floats(0.0, 1.0, allow_nan=False, exclude_min=True))
def test_shrinkbench_keeps_everything_at_or_above_the_threshold(sa, f):
    s, alive = sa
    keep = SB.keep_mask(s, f, alive=alive)
    mag = np.where(alive, np.abs(s), 0.0)
    assert np.array_equal(keep, ~(mag < shrinkbench_threshold(mag, f)))


# ----------------------------------------------------------------------------- up to ties
def test_equal_up_to_ties_allows_any_choice_at_the_threshold():
    s = np.array([3.0, 1.0, 1.0, 1.0, 0.5])
    expected = np.array([True, True, False, False, False])
    assert equal_up_to_ties(expected, np.array([True, False, False, True, False]), s)
    assert "score 1.0: expected 1 of 3 kept, got 2" in tie_mismatch(
        expected, np.array([True, True, True, False, False]), s
    )
    assert tie_mismatch(expected, np.array([False, True, True, False, False]), s) is not None
    assert not equal_up_to_ties(expected, np.array([True, True, False, False, True]), s)


def test_equal_up_to_ties_negative_zero_equals_zero_and_dead_entries_must_match():
    s = np.array([0.0, -0.0, 1.0])
    assert equal_up_to_ties(np.array([True, False, True]), np.array([False, True, True]), s)
    alive = np.array([True, True, False])
    assert not equal_up_to_ties(
        np.array([True, False, False]), np.array([True, False, True]), s, alive
    )


def test_equal_up_to_ties_pools_mappings_in_order():
    s = {"a": np.array([1.0, 2.0]), "b": np.array([1.0])}
    assert equal_up_to_ties(
        {"a": np.array([True, True]), "b": np.array([False])},
        {"a": np.array([False, True]), "b": np.array([True])},
        s,
    )


@given(scores_and_alive(), fractions, st.randoms(use_true_random=False))
def test_any_tie_order_is_equal_up_to_ties(sa, f, rnd):
    s, alive = sa
    expected = REF.keep_mask(s, f, alive=alive)
    order = list(range(s.size))
    rnd.shuffle(order)
    perm = np.array(order)
    # select on a permuted copy: a different, equally valid, tie order
    actual = np.empty_like(expected)
    actual[perm] = REF.keep_mask(s[perm], f, alive=alive[perm])
    assert equal_up_to_ties(expected, actual, s, alive)


# ----------------------------------------------------------------------------- across profiles
# The table "The cases that tell the profiles apart" in docs/profiles.md, row by row.
# Amounts are the pruned fraction, except shrinkbench's (kept): 1 - f.
TABLE = [
    # (scores, alive, f, pruned by reference, torch, tfmot, open-lth, shrinkbench)
    (DISTINCT10, None, 0.25, (2, 2, 2, 4, 3)),
    (DISTINCT10, None, 0.85, (8, 8, 9, 10, 8)),
    (DISTINCT10, None, 0.0, (0, 0, 0, 1, 0)),
    (np.array([1.0, 1.0, 1.0, 1.0, 2.0]), None, 0.6, (3, 3, 0, 4, 0)),
    (np.array([0.5, 0.3, 0.2, 0.1]), np.array([True, True, False, False]), 0.5, (1, 1, 0, 2, 0)),
]


@pytest.mark.parametrize("s, alive, f, counts", TABLE)
def test_the_distinguishing_cases_table(s, alive, f, counts):
    a = np.ones(s.shape, dtype=bool) if alive is None else alive
    names = ["reference", "torch", "tfmot", "open-lth", "shrinkbench"]
    for name, want in zip(names, counts):
        amount = 1 - f if name == "shrinkbench" else f
        keep = PROFILES[name].keep_mask(s, amount, alive=alive)
        assert n_pruned(keep, a) == want, name


@pytest.mark.parametrize("name", ["reference", "torch", "tfmot", "shrinkbench"])
def test_ignored_tensors_are_untouched_and_not_counted(name):
    p = PROFILES[name]
    s = {"a": DISTINCT10, "c": np.array([0.01, 0.02])}
    alive = {"a": np.ones(10, dtype=bool), "c": np.array([True, False])}
    amount = 0.3
    for scope in p.scopes:
        with_c = p.keep_masks(s, amount, alive=alive, scope=scope, ignore=["c"])
        without = p.keep_masks({"a": s["a"]}, amount, alive={"a": alive["a"]}, scope=scope)
        assert np.array_equal(with_c["c"], alive["c"]) and np.array_equal(with_c["a"], without["a"])
    assert not p.ignored_count_as_alive and OLTH.ignored_count_as_alive


def test_extras_expose_the_library_arithmetic():
    assert TFMOT.extras["keep_count"] is tfmot_keep_count
    assert TFMOT.extras["polynomial_decay"] is tfmot_polynomial_decay
    assert SB.extras["fraction_to_keep"] is shrinkbench_fraction_to_keep
    assert REF.count(0.25, 10) == 2 and TORCH.count(3, 10) == 3 and OLTH.count(0.25, 10) == 3


@given(
    scores_and_alive(), st.sampled_from(["reference", "torch", "tfmot", "open-lth", "shrinkbench"])
)
def test_profiles_never_modify_their_inputs(sa, name):
    s, alive = sa
    s0, a0 = s.copy(), alive.copy()
    amount = {"tfmot": 0.5, "shrinkbench": 0.5, "open-lth": 0.0}.get(name, 0.5)
    try:
        PROFILES[name].keep_mask(s, amount, alive=alive)
    except ValueError:
        pass  # open-lth with nothing alive
    assert np.array_equal(s, s0) and np.array_equal(np.signbit(s), np.signbit(s0))
    assert np.array_equal(alive, a0)


def test_tfmot_sparsity_just_below_one_rounds_to_one_in_float32():
    # _validate_sparsity accepts 0.99999999 (< 1); tf.constant(..., tf.float32) makes it 1.0f.
    assert np.float32(0.99999999) == np.float32(1.0)
    assert tfmot_keep_count(0.99999999, 1000) == 1
