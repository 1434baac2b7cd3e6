"""Pruning procedures that score and remove in turn: Optimal Brain Surgeon and SynFlow.

Both re-score as they go, so neither is "scores, then one selection":

* ``obs_prune``: Optimal Brain Surgeon removes one weight at a time, moves the
  others to compensate and updates the inverse Hessian (Hassibi and Stork 1993).
* ``synflow_prune``: SynFlow re-scores the network between rounds of global
  pruning (Tanaka et al. 2020).

Their formulas live in ``refprune.scores`` (``obs_saliency``, ``obs_update``,
``obs_downdate``, ``synflow_scores``); their selections use the rounding and tie
rules of ``refprune.masks``. Spec: ``docs/scores.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import boolean, choice, count_in, positive_int, real_number
from .curvature import full_hessian
from .masks import (
    ROUNDINGS,
    _collapse_message,
    collapsed_matrices,
    fraction_to_count,
    keep_top_k,
    select_masks_count,
)
from .mlp import MLP, check_model, flatten_params, unflatten_params
from .scores import (
    DEFAULT_OBS_DAMPING,
    damped_inverse,
    damped_inverse_hessian,
    obs_downdate,
    obs_saliency,
    obs_update,
    synflow_scores,
)

__all__ = ["ObsResult", "obs_prune", "SynflowResult", "synflow_prune"]


@dataclass(frozen=True)
class ObsResult:
    """Outcome of ``obs_prune``.

    Attributes
    ----------
    model : MLP
        A new model (a copy) holding ``params`` and ``masks``.
    params, masks : dict name -> array, for every parameter
        Weights after the compensating updates (pruned entries exactly 0.0) and masks.
    removed : list of (name, index)
        The removed entries in removal order (index is a tuple into the parameter).
    saliencies : list of float
        The OBS saliency of each removed entry at the time of its removal: the
        increase of the quadratic model it causes, so their sum is the predicted
        total loss increase.
    """

    model: MLP
    params: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    removed: list[tuple[str, tuple[int, ...]]]
    saliencies: list[float]


def obs_prune(
    model: MLP,
    X: Any,
    y: Any,
    n_remove: int,
    damping: float = DEFAULT_OBS_DAMPING,
    *,
    names: Sequence[str] | None = None,
    fast: bool = True,
) -> ObsResult:
    """Optimal Brain Surgeon: remove ``n_remove`` weights one at a time, compensating each removal.

    With H the Hessian at the starting weights (``curvature.full_hessian``,
    symmetrised), repeat ``n_remove`` times, with F the parameters still alive
    (weights and biases of every layer), w their values and
    Hinv = (H_FF + damping I)^-1:

    1. saliency L_q = w_q**2 / (2 Hinv_qq) of every alive candidate q (an alive
       entry of ``names``); remove the lowest (higher saliency = kept; among
       equal saliencies the later candidate goes, the tie rule of
       ``keep_top_k``, candidates ordered by ``names`` then C order);
    2. update every free parameter: w <- w - (w_q / Hinv_qq) Hinv e_q
       (``scores.obs_update``), then set w_q to exactly 0.0 and mask it.

    The Hessian is computed once, at the starting weights: later removals use
    the same quadratic model. For a quadratic loss at its minimum (damping 0)
    the result is the exact minimiser with those weights forced to 0 and the
    saliencies add up to the exact loss increase. Biases are never removed
    unless named, but they move to compensate. The input model is not changed.

    The loop below (``fast=False``) is the definition: it inverts H_FF + damping I
    afresh for every removal. The default, ``_obs_prune_fast``, inverts once and
    then downdates: Hinv <- Hinv - Hinv e_q e_q^T Hinv / Hinv_qq with row and
    column q deleted (``scores.obs_downdate``, block inversion), the same
    matrix without a new factorisation; ``tests/test_rescoring.py`` checks that
    both remove the same weights and agree within ``curvature.FAST_BOUND``.

    Hassibi and Stork, "Second order derivatives for network pruning: Optimal
    Brain Surgeon", NeurIPS 5, 1993.

    Parameters
    ----------
    model : MLP (tiny: P <= 2000 parameters; not mutated)
    X, y : the batch defining the loss
    n_remove : int in [0, number of alive candidates]
    damping : float >= 0 (default 1e-4)
    names : candidate parameters (default the weight matrices)
    fast : bool, default True
        False runs the definition.

    Returns
    -------
    ObsResult
    """
    names = check_model(model).check_names(names)
    if fast:
        return _obs_prune_fast(model, X, y, n_remove, damping, names)
    damping = real_number(damping, "damping", low=0.0)
    H = full_hessian(model, X, y)
    w = flatten_params(model.effective_params(), model)
    alive = flatten_params(model.masks, model)
    damped_inverse(H, np.flatnonzero(alive), damping)  # refused unless positive definite
    cand = _candidates(model, names)
    n_remove = count_in(n_remove, "n_remove", cand.size)
    removed, saliencies = [], []
    for _ in range(n_remove):
        free = np.flatnonzero(alive)
        hinv = damped_inverse(H, free, damping)  # (H_FF + damping I)^-1
        pos = np.searchsorted(free, cand)  # candidates' rows in hinv
        s = w[cand] ** 2 / (2.0 * np.diag(hinv)[pos])
        out = s.size - 1 - int(np.argmin(s[::-1]))  # lowest; on ties the later one
        j, q = int(pos[out]), int(cand[out])
        w[free] -= (w[q] / hinv[j, j]) * hinv[:, j]
        w[q], alive[q] = 0.0, False
        cand = np.delete(cand, out)
        removed.append(_entry(model, q))
        saliencies.append(float(s[out]))
    return _obs_result(model, w, alive, removed, saliencies)


def _obs_prune_fast(
    model: MLP, X: Any, y: Any, n_remove: Any, damping: Any, names: list[str]
) -> ObsResult:
    """``obs_prune`` with one factorisation and a downdate per removal."""
    hinv, free = damped_inverse_hessian(model, X, y, damping)
    cand = _candidates(model, names)
    n_remove = count_in(n_remove, "n_remove", cand.size)
    w = flatten_params(model.effective_params(), model)
    alive = np.zeros(w.size, dtype=bool)
    alive[free] = True
    removed, saliencies = [], []
    for _ in range(n_remove):
        pos = np.searchsorted(free, cand)  # positions of the candidates in free
        s = obs_saliency(w[cand], np.diag(hinv)[pos])
        out = int(np.flatnonzero(~keep_top_k(s, s.size - 1))[0])
        j, q = int(pos[out]), int(cand[out])
        w[free] += obs_update(w[free], hinv, j)
        w[q] = 0.0
        hinv = obs_downdate(hinv, j)
        free = np.delete(free, j)
        cand = np.delete(cand, out)
        alive[q] = False
        removed.append(_entry(model, q))
        saliencies.append(float(s[out]))
    return _obs_result(model, w, alive, removed, saliencies)


def _candidates(model: MLP, names: list[str]) -> np.ndarray:
    """Flat indices of the alive entries of ``names``, in names order, C order within each."""
    offsets = _offsets(model)
    return np.concatenate([offsets[n] + np.flatnonzero(model.masks[n].ravel()) for n in names])


def _offsets(model: MLP) -> dict[str, int]:
    return dict(zip(model.params, np.cumsum([0] + [p.size for p in model.params.values()])))


def _entry(model: MLP, q: int) -> tuple[str, tuple[int, ...]]:
    """(name, index into the parameter) of flat index q."""
    for name, start in reversed(_offsets(model).items()):
        if q >= start:
            shape = model.params[name].shape
            return name, tuple(int(i) for i in np.unravel_index(q - start, shape))
    raise AssertionError(q)


def _obs_result(
    model: MLP,
    w: np.ndarray,
    alive: np.ndarray,
    removed: list[tuple[str, tuple[int, ...]]],
    saliencies: list[float],
) -> ObsResult:
    params, masks = unflatten_params(w, model), unflatten_params(alive, model)
    masks = {n: masks[n] & model.masks[n] for n in model.params}
    new_model = model.copy()
    new_model.load_state_dict({"params": params, "masks": masks})
    return ObsResult(
        model=new_model,
        params=new_model.state_dict()["params"],
        masks=masks,
        removed=removed,
        saliencies=saliencies,
    )


@dataclass(frozen=True)
class SynflowResult:
    """Outcome of ``synflow_prune``.

    Attributes
    ----------
    masks : dict name -> bool array, the final masks of the pruned weight matrices
    scores : dict name -> float array, the SynFlow scores of the last round
        (computed on the masks before that round's pruning)
    alive : list of int, alive weights in the pool after each round k = 1 .. n
    collapsed : list of str, weight matrices left with no alive entry
    """

    masks: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    alive: list[int]
    collapsed: list[str]


def synflow_prune(
    model: MLP,
    density: float,
    *,
    iterations: int = 100,
    names: Sequence[str] | None = None,
    rounding: str = "round-half-even",
    allow_collapse: bool = False,
) -> SynflowResult:
    """Iterative SynFlow pruning to ``density`` (data-free); the model is not changed.

    With n0 the alive weights of ``names`` at the start and n = ``iterations``,
    round k = 1 .. n computes ``scores.synflow_scores`` on the current masks
    and prunes globally over ``names`` (``select_masks_count``, scope "global")
    down to the target of round k:

        pruned_k = fraction_to_count(1 - density ** (k / n), n0, rounding)

    so the density relative to n0 follows density**(k/n) up to rounding and
    ends at exactly n0 - fraction_to_count(1 - density, n0) alive weights, the
    count a one-shot prune to the same density keeps. Higher score = kept; ties
    by position in the pool. Re-scoring between rounds is what avoids layer
    collapse (the paper's point); a collapse is still reported: ``ValueError``
    unless ``allow_collapse``.

    Tanaka, Kunin, Yamins and Ganguli, "Pruning neural networks without any
    data by iteratively conserving synaptic flow", NeurIPS 2020 (n = 100).

    Parameters
    ----------
    model : MLP (not mutated)
    density : float in [0, 1], the final fraction of the n0 weights kept
    iterations : int >= 1
    names : weight matrices to prune (default all)
    rounding : see ``fraction_to_count``
    allow_collapse : bool

    Returns
    -------
    SynflowResult (apply with ``model.set_masks(result.masks)``)
    """
    names = check_model(model).check_names(names)
    bad = [n for n in names if n not in model.weight_names()]
    if bad:
        raise ValueError(f"synflow prunes weight matrices only; names has {bad}")
    density = real_number(density, "density", low=0.0, high=1.0)
    iterations = positive_int(iterations, "iterations")
    choice(rounding, "rounding", ROUNDINGS)
    boolean(allow_collapse, "allow_collapse")
    work = model.copy()
    n0 = sum(int(work.masks[n].sum()) for n in names)
    alive, scores = [], {}
    for k in range(1, iterations + 1):
        target = fraction_to_count(1.0 - density ** (k / iterations), n0, rounding)
        scores = synflow_scores(work, names=names)
        now = sum(int(work.masks[n].sum()) for n in names)
        new = select_masks_count(scores, work.masks, max(0, target - (n0 - now)), scope="global")
        work.set_masks(new)
        alive.append(sum(int(work.masks[n].sum()) for n in names))
    masks = {n: work.masks[n].copy() for n in names}
    collapsed = collapsed_matrices(model, masks)
    if collapsed and not allow_collapse:
        raise ValueError(_collapse_message(collapsed, "raise density"))
    return SynflowResult(masks=masks, scores=scores, alive=alive, collapsed=collapsed)
