"""OBS pruning: the downdating route removes what the definition removes, within its bound."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refprune.curvature import FAST_BOUND
from refprune.mlp import MLP
from refprune.rescoring import obs_prune
from refprune.rng import make_rng

MASKINGS = ("none", "random", "dead_unit")


def rel_err(a, b) -> float:
    diff = np.max(np.abs(a - b)) if a.size else 0.0
    scale = np.max(np.abs(b)) if b.size else 0.0
    return 0.0 if diff == 0.0 else (diff / scale if scale > 0 else np.inf)


@given(
    act=st.sampled_from(("relu", "tanh", "sigmoid", "identity")),
    loss=st.sampled_from(("cross_entropy", "mse")),
    masking=st.sampled_from(MASKINGS),
    hidden=st.integers(1, 4),
    n_remove=st.integers(0, 6),
    damping=st.sampled_from([0.1, 1.0, 10.0]),
    names=st.sampled_from([None, "all"]),
    seed=st.integers(0, 2**16),
)
def test_obs_fast_equals_the_definition(act, loss, masking, hidden, n_remove, damping, names, seed):
    """Same removals in the same order; params and saliencies within FAST_BOUND
    of each array's largest magnitude; identical masks. Where the damped Hessian is
    not positive definite, both refuse."""
    rng = make_rng(seed)
    model = MLP([3, hidden, 2], act, loss=loss, seed=seed)
    masks = {n: np.ones(p.shape, dtype=bool) for n, p in model.params.items()}
    if masking == "random":
        masks = {n: rng.random(m.shape) < 0.7 for n, m in masks.items()}
    elif masking == "dead_unit":
        masks["layers.0.weight"][0, :] = False
    model.set_masks(masks)
    X = rng.standard_normal((8, 3))
    y = rng.integers(0, 2, 8) if loss == "cross_entropy" else rng.standard_normal((8, 2))
    chosen = list(model.params) if names == "all" else None
    n_cand = sum(int(model.masks[n].sum()) for n in (chosen or model.weight_names()))
    n_remove = min(n_remove, n_cand)
    try:
        fast = obs_prune(model, X, y, n_remove, damping, names=chosen)
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            obs_prune(model, X, y, n_remove, damping, names=chosen, fast=False)
        return
    slow = obs_prune(model, X, y, n_remove, damping, names=chosen, fast=False)
    assert fast.removed == slow.removed
    assert all(np.array_equal(fast.masks[n], slow.masks[n]) for n in model.params)
    for n in model.params:
        assert rel_err(fast.params[n], slow.params[n]) <= FAST_BOUND, n
    assert rel_err(np.array(fast.saliencies), np.array(slow.saliencies)) <= FAST_BOUND
