"""The public strategies produce what they promise, and the reference accepts what they produce."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from conformance import strategies as cst
from conformance.backend import ReferenceBackend

REF = ReferenceBackend()


@given(cst.scores())
def test_scores_are_finite_float64(s):
    assert s.dtype == np.float64 and s.size >= 1 and np.all(np.isfinite(s))


@given(cst.distinct_scores())
def test_distinct_scores_have_no_ties(s):
    assert np.unique(s).size == s.size


@given(cst.shapes().flatmap(lambda shape: st.tuples(st.just(shape), cst.masks(shape, min_alive=2))))
def test_masks_have_the_shape_and_the_alive_minimum(ex):
    shape, m = ex
    assert m.shape == shape and m.dtype == bool and m.sum() >= min(2, m.size)


@given(cst.fractions())
def test_fractions_are_in_unit_interval(f):
    assert 0.0 <= f <= 1.0


@given(cst.networks())
def test_networks_are_accepted_by_the_reference(net):
    loss = REF.loss_value(**net)
    assert np.isfinite(loss)
    g = REF.gradient(**net)
    assert set(g) == set(net["params"]) and all(
        g[n].shape == p.shape for n, p in net["params"].items()
    )


@given(cst.param_scores(), st.data())
def test_param_scores_work_with_select_masks(s, data):
    masks = {n: data.draw(cst.masks(v.shape)) for n, v in s.items()}
    out = REF.select_masks(
        scores=s,
        masks=masks,
        fraction=data.draw(cst.fractions()),
        scope="global",
        rate_multipliers=None,
        rounding="round-half-even",
    )
    assert all(not np.any(out[n] & ~masks[n]) for n in s)
