"""Comparison rules: exact, per-entry scales, signed zeros, ties, alternatives; readable diffs."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conformance.compare import compare
from conformance.conventions import equal_up_to_ties

EXACT = {"kind": "exact"}


def _close(scale, rel=2.0**-40):
    return {"kind": "close", "rel": rel, "scale": scale}


def test_close_is_relative_to_each_entry_scale():
    e = np.array([1.0, 1e-54, 1e6])
    tol = _close(np.array([1.0, 1e-54, 2e6]))
    a = e + np.array([2.0**-41, 2.0**-41 * 1e-54, 1e-6])
    assert compare(e, a, tol) is None
    bad = compare(e, e + np.array([0.0, 0.0, 1e-5]), tol)
    assert "1 of 3 entries outside the tolerance" in bad and "at 2:" in bad and "allowed" in bad


def test_a_tiny_output_cannot_be_answered_with_zeros():
    e = np.array([3e-54, -1e-54])
    assert "2 of 2 entries" in compare(e, np.zeros(2), _close(np.abs(e)))


def test_the_scale_mirrors_nested_outputs():
    e = {"masks": [np.array([True, False])], "loss": np.array([0.5, 0.25]), "n": 3}
    tol = _close({"masks": [None], "loss": np.array([0.5, 1e-3]), "n": None})
    ok = {"masks": [np.array([True, False])], "loss": np.array([0.5 + 1e-13, 0.25]), "n": 3}
    assert compare(e, ok, tol) is None
    bad = dict(ok, loss=np.array([0.5, 0.25 + 1e-13]))
    assert "'loss'" in compare(e, bad, tol)


def test_a_scalar_float_has_a_scalar_scale():
    assert compare(2.0, 2.0 + 1e-14, _close(2.0)) is None
    assert "expected 2.0" in compare(2.0, 2.0 + 1e-11, _close(2.0))


@given(st.floats(-1e6, 1e6), st.floats(1e-300, 1e6), st.floats(0.0, 0.5))
def test_within_the_tolerance_passes(e, s, k):
    tol = _close(np.array([s]))
    assert compare(np.array([e]), np.array([e + k * tol["rel"] * s]), tol) is None


@given(st.floats(-1e6, 1e6), st.floats(1e-300, 1e6), st.floats(2.0, 1e3), st.booleans())
def test_beyond_the_tolerance_fails(e, s, k, down):
    tol = _close(np.array([s]))
    step = k * tol["rel"] * s
    assume(step > 4 * math.ulp(e))  # the move survives rounding
    x = e - step if down else e + step
    assert compare(np.array([e]), np.array([x]), tol) is not None


def test_nan_never_passes():
    assert compare(np.array([1.0]), np.array([np.nan]), _close(np.array([1e300]), rel=1.0))


def test_signed_zeros_when_promised():
    e = np.array([0.0, -0.0, 1.0])
    swapped = np.array([-0.0, 0.0, 1.0])
    assert compare(e, swapped, EXACT) is None
    assert "2 of 3 entries" in compare(e, swapped, dict(EXACT, signed_zeros=True))
    assert compare(e, e.copy(), dict(EXACT, signed_zeros=True)) is None
    tol = dict(_close(np.array([0.0, 0.0, 1.0])), signed_zeros=True)
    assert "1 of 3 entries" in compare(e, np.array([-0.0, -0.0, 1.0]), tol)
    assert compare(e, np.array([0.0, -0.0, 1.0 + 1e-15]), tol) is None


def test_exact_treats_signed_zeros_as_equal_and_checks_shape_and_dtype():
    assert compare(np.array([0.0]), np.array([-0.0]), EXACT) is None
    assert "shape" in compare(np.zeros(3), np.zeros(4), EXACT)
    assert "bool mask" in compare(np.array([True]), np.array([1]), EXACT)
    assert "integer" in compare(3, 3.0, EXACT)
    assert compare(3, np.int64(3), EXACT) is None
    assert "keys differ" in compare({"a": 1}, {"b": 1}, EXACT)


def test_masks_up_to_ties_only_when_asked():
    scores = np.array([1.0, 0.5, 0.5, 0.2])
    exp, act = np.array([True, True, False, False]), np.array([True, False, True, False])
    tol = dict(EXACT, up_to_ties={"scores": "scores"})
    tie = lambda e, a, s, al=None: equal_up_to_ties(e, a, s, al)
    assert "masks differ" in compare(exp, act, tol, inputs={"scores": scores})
    assert compare(exp, act, tol, inputs={"scores": scores}, tie_check=tie) is None
    wrong = np.array([False, True, True, False])  # the strict winner dropped
    assert compare(exp, wrong, tol, inputs={"scores": scores}, tie_check=tie)


def test_pooled_masks_up_to_ties_across_tensors():
    scores = {"a": np.array([0.5, 1.0]), "b": np.array([0.5])}
    exp = {"a": np.array([True, True]), "b": np.array([False])}
    act = {"b": np.array([True]), "a": np.array([False, True])}  # another order of keys
    tol = dict(EXACT, up_to_ties={"scores": "s", "pooled": True})
    tie = lambda e, a, s, al=None: equal_up_to_ties(e, a, s, al)
    assert compare(exp, act, tol, inputs={"s": scores}, tie_check=tie) is None


def test_alternatives():
    assert compare(1, 2, dict(EXACT, alternatives=[2])) is None
    assert "other acceptable" in compare(1, 3, dict(EXACT, alternatives=[2]))


@pytest.mark.parametrize("actual", [None, "x", [1.0]])
def test_wrong_types_are_reported_not_raised(actual):
    assert compare(np.zeros(2), actual, EXACT)
