"""Mask selection: turning scores into boolean keep-masks.

The two conventions every pruning rule in refprune depends on live here and
nowhere else:

* **Rounding** (``fraction_to_count``): a fraction f of n items is the count
  ``rounding(f * n)``, where ``f * n`` is the IEEE-754 float64 product and
  ``rounding`` is round-half-even (the default), floor or ceil.
* **Ties** (``keep_top_k``): the k highest scores are kept; among equal scores
  the one with the lower flat C-order index is kept. -0.0 and 0.0 are equal.

Higher score = more important = kept, throughout the project.

On top of those two, everything that turns scores into masks:

* ``select_masks`` / ``select_masks_count``: prune a fraction (or a count) of
  the entries *still alive*, layer-wise or globally, with per-layer rate
  multipliers; new masks are always nested in the old ones.
* ``prune`` / ``prune_count``: the same, applied to an ``MLP`` after every check has passed,
  with layer collapse reported (an error unless explicitly allowed).
* ``unit_scores`` / ``prune_units``: structured pruning of whole hidden units.
* ``n_m_mask`` / ``prune_n_m``: N:M semi-structured sparsity.

The two rules whose selection and scoring alternate, ``obs_prune`` and
``synflow_prune``, build on this module in ``refprune.rescoring``.

"Alive" is the mask, never the weight's value. The spec is ``docs/masks.md``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ._checks import bool_array, boolean, choice, count_in, float_array, positive_int, real_number
from .mlp import MLP, check_model

ROUNDINGS = ("round-half-even", "floor", "ceil")


def fraction_to_count(fraction: float, n: int, rounding: str = "round-half-even") -> int:
    """Number of items that a fraction of ``n`` items stands for.

    count = rounding(fraction * n), with fraction * n the float64 product.

    ``"round-half-even"`` (the default) is what Python's ``round`` and
    ``torch.nn.utils.prune`` do: x.5 goes to the even neighbour, so rounding
    has no upward bias over many rounds. ``"floor"`` never exceeds the
    requested fraction; ``"ceil"`` never falls short of it. Because the product
    is a float64 product, ``fraction_to_count(0.07, 100, "ceil")`` is 8
    (0.07 * 100 == 7.000000000000001), exactly as a float64 library computes it.

    Parameters
    ----------
    fraction : float in [0, 1]
    n : int >= 0
    rounding : {"round-half-even", "floor", "ceil"}

    Returns
    -------
    int in [0, n]
    """
    fraction = real_number(fraction, "fraction", low=0.0, high=1.0)
    n = positive_int(n, "n", minimum=0)
    choice(rounding, "rounding", ROUNDINGS)
    x = fraction * float(n)
    if rounding == "floor":
        return int(math.floor(x))
    if rounding == "ceil":
        return int(math.ceil(x))
    return int(round(x))


def keep_top_k(scores: Any, k: int) -> np.ndarray:
    """Boolean mask keeping the ``k`` highest scores.

    mask_i = True for the k entries with the largest s_i; ties broken by the
    lower flat C-order index (entry i beats entry j with s_i == s_j when i < j).
    Exactly k entries are True.

    Parameters
    ----------
    scores : float array, any shape, finite
    k : int in [0, scores.size]

    Returns
    -------
    bool array of ``scores.shape``
    """
    s = float_array(scores, "scores", allow_empty=True)
    n = s.size
    k = count_in(k, "k", n, "the number of scores")
    flat = s.ravel()
    keep = np.zeros(n, dtype=bool)
    if k == n:
        keep[:] = True
    elif k > 0:
        threshold = np.partition(flat, n - k)[n - k]  # the k-th largest score
        keep = flat > threshold
        n_equal_kept = k - int(keep.sum())  # room left for ties at the threshold
        keep[np.flatnonzero(flat == threshold)[:n_equal_kept]] = True
    return keep.reshape(s.shape)


# ---------------------------------------------------------------- selection
SCOPES = ("layer", "global")


def select_masks(
    scores: Mapping[str, Any],
    masks: Mapping[str, Any],
    fraction: float,
    *,
    scope: str = "layer",
    rate_multipliers: Mapping[str, float] | None = None,
    rounding: str = "round-half-even",
) -> dict[str, np.ndarray]:
    """New masks that prune ``fraction`` of the entries still alive.

    For a group of alive entries (one parameter, or the global pool), with
    n_alive alive entries:

        n_prune = fraction_to_count(f, n_alive, rounding)
        kept    = keep_top_k(alive scores, n_alive - n_prune)

    Higher score = more important = kept. Only alive entries (mask True) take
    part; their scores are taken in C order, so ties are broken by the lower
    flat C-order index (``keep_top_k``). A pruned entry's score is never read
    and it is never revived: every returned mask is nested in the old one
    (``new <= old``). "Alive" is the mask, never the weight's value.

    Scope
    -----
    ``"layer"``: every named parameter is its own group, pruned at
    f_l = fraction * rate_multipliers.get(name, 1.0) (float64 product).
    ``"global"``: the parameters with multiplier 1 (all of them when
    ``rate_multipliers`` is None) form one pool, the concatenation of their
    alive entries in the order of ``scores``' keys and C order within each, so
    ties go to the earlier position in that concatenation; the pool loses
    fraction_to_count(fraction, pool size) entries. A parameter whose multiplier
    is not 1 leaves the pool and is pruned on its own at fraction * multiplier
    (0 leaves it untouched). This is how the lottery-ticket experiments prune
    the output layer at half the rate (Frankle and Carbin, ICLR 2019). (A
    multiplier of 0 leaves a layer out of pruning; open_lth's ignored layers
    differ: they still count as alive in its count, see docs/profiles.md.)

    Parameters
    ----------
    scores : mapping name -> finite float array
        The parameters to prune, in this order. Higher score = kept.
    masks : mapping name -> bool array
        Current masks (True = alive); must hold every name of ``scores`` with
        the same shape (other names are ignored).
    fraction : float in [0, 1]
        Fraction of the *alive* entries to prune (not of all entries).
    scope : {"layer", "global"}
    rate_multipliers : mapping name -> float >= 0, optional
        Per-parameter factor on ``fraction``; names must be in ``scores`` and
        fraction * multiplier must be <= 1.
    rounding : {"round-half-even", "floor", "ceil"}
        How the count of pruned entries is rounded (``fraction_to_count``).

    Returns
    -------
    dict name -> new bool array, for the names of ``scores``, in that order.

    Examples
    --------
    >>> s = {"w": np.array([[0.3, 0.1], [0.1, 0.9]])}
    >>> m = {"w": np.ones((2, 2), dtype=bool)}
    >>> select_masks(s, m, 0.25)["w"]    # the two 0.1 tie: the later one is pruned
    array([[ True,  True],
           [False,  True]])
    """
    s, m = _check_scores_masks(scores, masks)
    fraction = real_number(fraction, "fraction", low=0.0, high=1.0)
    choice(scope, "scope", SCOPES)
    choice(rounding, "rounding", ROUNDINGS)
    mult = _check_multipliers(rate_multipliers, s, fraction)
    groups: list[tuple[list[str], float]] = []
    if scope == "layer":
        groups = [([n], fraction * mult.get(n, 1.0)) for n in s]
    else:
        pool = [n for n in s if mult.get(n, 1.0) == 1.0]
        if pool:
            groups.append((pool, fraction))
        groups += [([n], fraction * mult[n]) for n in s if n not in pool]
    counts = []
    for names, f in groups:
        n_alive = sum(int(m[n].sum()) for n in names)
        counts.append((names, fraction_to_count(f, n_alive, rounding)))
    return _prune_groups(s, m, counts)


def select_masks_count(
    scores: Mapping[str, Any],
    masks: Mapping[str, Any],
    n_prune: int | Mapping[str, int],
    *,
    scope: str = "layer",
) -> dict[str, np.ndarray]:
    """New masks that prune exactly ``n_prune`` alive entries (the count form of ``select_masks``).

    ``scope="layer"``: ``n_prune`` maps each name of ``scores`` to the number of
    its alive entries to prune. ``scope="global"``: ``n_prune`` is one integer,
    pruned from the pool of all alive entries of ``scores`` (concatenated in
    key order, C order within each). The pruned entries are the lowest scores
    among the alive ones (higher score = kept), ties by ``keep_top_k``; returned
    masks are nested in ``masks``. Used by schedules whose targets are counts.

    Parameters
    ----------
    scores, masks : as in ``select_masks``
    n_prune : int (global) or mapping name -> int (layer), each in [0, alive entries]
    scope : {"layer", "global"}

    Returns
    -------
    dict name -> new bool array
    """
    s, m = _check_scores_masks(scores, masks)
    choice(scope, "scope", SCOPES)
    if scope == "global":
        counts = [(list(s), count_in(n_prune, "n_prune", sum(int(m[n].sum()) for n in s)))]
    else:
        if not isinstance(n_prune, Mapping):
            raise TypeError(
                "n_prune must be a mapping name -> int when scope='layer', "
                f"got {type(n_prune).__name__}"
            )
        extra = [n for n in n_prune if n not in s]
        if extra or len(n_prune) != len(s):
            raise ValueError(
                f"n_prune must have exactly the names of scores {list(s)}, got {list(n_prune)}"
            )
        counts = [([n], count_in(n_prune[n], f"n_prune[{n!r}]", int(m[n].sum()))) for n in s]
    return _prune_groups(s, m, counts)


def alive_counts(masks: Mapping[str, Any]) -> dict[str, int]:
    """Number of alive (True) entries of each mask."""
    return {n: int(np.count_nonzero(v)) for n, v in masks.items()}


def _check_scores_masks(
    scores: Any, masks: Any
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    if not isinstance(scores, Mapping):
        raise TypeError(f"scores must be a mapping name -> array, got {type(scores).__name__}")
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks must be a mapping name -> bool array, got {type(masks).__name__}")
    if len(scores) == 0:
        raise ValueError("scores must name at least one parameter, got an empty mapping")
    s, m = {}, {}
    for name, v in scores.items():
        s[name] = float_array(v, f"scores[{name!r}]", allow_empty=True)
        if name not in masks:
            raise ValueError(f"masks must have an entry for every name of scores; missing {name!r}")
        m[name] = bool_array(masks[name], f"masks[{name!r}]")
        if m[name].shape != s[name].shape:
            raise ValueError(
                f"scores[{name!r}] and masks[{name!r}] must have the same shape, "
                f"got {s[name].shape} and {m[name].shape}"
            )
    return s, m


def _check_multipliers(
    rate_multipliers: Any, s: Mapping[str, np.ndarray], fraction: float
) -> dict[str, float]:
    if rate_multipliers is None:
        return {}
    if not isinstance(rate_multipliers, Mapping):
        raise TypeError(
            f"rate_multipliers must be a mapping name -> float, got {type(rate_multipliers).__name__}"
        )
    mult = {}
    for name, v in rate_multipliers.items():
        if name not in s:
            raise ValueError(
                f"rate_multipliers has {name!r}, which is not a name of scores {list(s)}"
            )
        mult[name] = real_number(v, f"rate_multipliers[{name!r}]", low=0.0)
        if fraction * mult[name] > 1.0:
            raise ValueError(
                f"fraction * rate_multipliers[{name!r}] must be <= 1, "
                f"got {fraction} * {mult[name]} = {fraction * mult[name]}"
            )
    return mult


def _prune_groups(
    s: Mapping[str, np.ndarray], m: Mapping[str, np.ndarray], counts: list[tuple[list[str], int]]
) -> dict[str, np.ndarray]:
    """Prune n_prune alive entries from each group of names; alive scores concatenated in order."""
    out: dict[str, np.ndarray] = {}
    for names, n_prune in counts:
        alive_scores = np.concatenate([s[n][m[n]] for n in names])  # boolean indexing: C order
        keep = keep_top_k(alive_scores, alive_scores.size - n_prune)
        start = 0
        for n in names:
            new = m[n].copy()
            n_alive = int(new.sum())
            new[m[n]] = keep[start : start + n_alive]
            start += n_alive
            out[n] = new
    return {n: out[n] for n in s}


# ---------------------------------------------------------------- applying to a model
@dataclass(frozen=True)
class PruneResult:
    """What one pruning step did.

    Attributes
    ----------
    masks : dict name -> bool array
        The new masks of the parameters the step touched (nested in the old ones).
    alive : dict name -> int
        Alive entries of each of those parameters after the step.
    pruned : dict name -> int
        Entries the step removed from each of them.
    collapsed : list of str
        Weight matrices left with no alive entry (layer collapse,
        ``collapsed_matrices``): the network's output no longer depends on its input.
    alive_units : dict int -> int
        For unit pruning: alive hidden units of each pruned hidden layer after the step.
    """

    masks: dict[str, np.ndarray]
    alive: dict[str, int]
    pruned: dict[str, int]
    collapsed: list[str]
    alive_units: dict[int, int] = field(default_factory=dict)


def prune(
    model: MLP,
    scores: Mapping[str, Any],
    fraction: float,
    *,
    names: Sequence[str] | None = None,
    scope: str = "layer",
    rate_multipliers: Mapping[str, float] | None = None,
    rounding: str = "round-half-even",
    allow_collapse: bool = False,
) -> PruneResult:
    """Prune ``fraction`` of the alive entries of ``names`` by ``scores``, in place on ``model``.

    The new masks are ``select_masks({n: scores[n] for n in names}, model.masks,
    fraction, scope=..., rate_multipliers=..., rounding=...)`` (higher score =
    kept; the pruned count is fraction_to_count(fraction, alive); ties by the
    lower flat C-order index, over the concatenation of ``names`` in global
    scope). They are applied with ``model.set_masks`` (pruned entries set to
    0.0) only after every check has passed; on any error the model is untouched.

    Layer collapse, a weight matrix left with no alive entry, raises a
    ``ValueError`` naming the matrices, unless ``allow_collapse`` is True, in
    which case the masks are applied and the matrices are listed in
    ``PruneResult.collapsed``. Never silent.

    Parameters
    ----------
    model : MLP
        Mutated: its masks (and the values of newly pruned entries).
    scores : mapping name -> float array
        Scores for at least the parameters in ``names``; other entries are ignored.
    fraction : float in [0, 1]
        Fraction of the alive entries to prune.
    names : sequence of str, optional
        Parameters to prune, in the order of the global ranking; default
        ``model.weight_names()`` (biases are pruned only when named).
    scope, rate_multipliers, rounding : see ``select_masks``.
    allow_collapse : bool

    Returns
    -------
    PruneResult
    """
    new = select_masks(
        _named_scores(model, scores, names),
        model.masks,
        fraction,
        scope=scope,
        rate_multipliers=rate_multipliers,
        rounding=rounding,
    )
    return _apply(model, new, allow_collapse)


def prune_count(
    model: MLP,
    scores: Mapping[str, Any],
    n_prune: int | Mapping[str, int],
    *,
    names: Sequence[str] | None = None,
    scope: str = "layer",
    allow_collapse: bool = False,
) -> PruneResult:
    """Prune exactly ``n_prune`` alive entries, in place on ``model`` (the count form of ``prune``).

    New masks = ``select_masks_count({n: scores[n] for n in names},
    model.masks, n_prune, scope=scope)``: the lowest-scoring alive entries go
    (higher score = kept, ties by the lower flat C-order index, over the
    concatenation of ``names`` in global scope). ``n_prune`` is one int for
    scope "global", a mapping name -> int for scope "layer". Checks, collapse
    handling and the in-place update are those of ``prune``.

    Returns
    -------
    PruneResult
    """
    new = select_masks_count(_named_scores(model, scores, names), model.masks, n_prune, scope=scope)
    return _apply(model, new, allow_collapse)


def _named_scores(model: Any, scores: Any, names: Sequence[str] | None) -> dict[str, Any]:
    """The scores of the parameters to prune, in pruning order (checks model, names, scores)."""
    names = check_model(model).check_names(names)
    if not isinstance(scores, Mapping):
        raise TypeError(f"scores must be a mapping name -> array, got {type(scores).__name__}")
    missing = [n for n in names if n not in scores]
    if missing:
        raise ValueError(f"scores must have an entry for every pruned parameter; missing {missing}")
    return {n: scores[n] for n in names}


def apply_masks(
    model: MLP, masks: Mapping[str, Any], *, allow_collapse: bool = False
) -> PruneResult:
    """Apply new masks to ``model`` in place: the one exit of every in-place pruning step.

    Everything is checked before anything changes: each name is a parameter,
    each mask a boolean array of its shape and nested in the current mask
    (pruning never revives an entry), the parameters are writeable, and no
    weight matrix is left with no alive entry (layer collapse, the one
    definition used throughout: ``docs/masks.md``). Collapse raises a
    ``ValueError`` naming the matrices unless ``allow_collapse`` is True, in
    which case the masks are applied and the matrices listed in
    ``PruneResult.collapsed``. Then the masks are stored and the newly pruned
    entries set to 0.0 (``MLP.set_masks``). On any error the model is unchanged.

    Parameters
    ----------
    model : MLP (mutated)
    masks : mapping name -> bool array
        New masks of some of the model's parameters.
    allow_collapse : bool

    Returns
    -------
    PruneResult
    """
    return _apply(model, masks, allow_collapse)


def _apply(
    model: MLP,
    new: Mapping[str, Any],
    allow_collapse: bool,
    alive_units: dict[int, int] | None = None,
) -> PruneResult:
    check_model(model)
    boolean(allow_collapse, "allow_collapse")
    checked = model.checked_masks(new)
    for name in checked:
        if np.any(checked[name] & ~model.masks[name]):
            raise ValueError(
                f"masks[{name!r}] revives pruned entries; new masks must be nested "
                "in the current ones"
            )
    model.check_writeable(checked)
    alive = alive_counts(checked)
    collapsed = collapsed_matrices(model, checked)
    if collapsed and not allow_collapse:
        raise ValueError(_collapse_message(collapsed, "prune less"))
    pruned = {n: int(model.masks[n].sum()) - alive[n] for n in checked}
    model.set_masks(checked)
    return PruneResult(
        masks={n: m.copy() for n, m in checked.items()},
        alive=alive,
        pruned=pruned,
        collapsed=collapsed,
        alive_units=dict(alive_units or {}),
    )


def collapsed_matrices(model: MLP, masks: Mapping[str, np.ndarray]) -> list[str]:
    """Layer collapse: the weight matrices among ``masks`` with no alive entry, in layer order.

    A weight matrix with no alive entry cuts every path from the network's
    input to its output: the output no longer depends on the input (Tanaka et
    al., NeurIPS 2020, call this layer collapse). This is the only definition
    of collapse in refprune; a hidden layer that loses all its units empties
    the matrix that feeds it, so it is covered.
    """
    return [n for n in model.weight_names() if n in masks and not np.any(masks[n])]


def _collapse_message(collapsed: list[str], remedy: str) -> str:
    return (
        f"layer collapse: {collapsed} would have no alive weight left; "
        f"{remedy}, or pass allow_collapse=True to accept a dead network"
    )


# ---------------------------------------------------------------- structured: whole hidden units
NORMS = ("l1", "l2")


def unit_scores(model: MLP, layer: int, norm: str = "l1") -> np.ndarray:
    """Importance of each unit of hidden layer ``layer``: the norm of its incoming weights.

    s_i = sum_j |W_l[i, j] M_l[i, j]|             (``norm="l1"``)
    s_i = sqrt(sum_j (W_l[i, j] M_l[i, j])**2)     (``norm="l2"``)

    where W_l = ``layers.{layer}.weight`` (shape (units, inputs)) and M_l its
    mask; the bias is not part of the norm. Higher score = kept. Structured
    magnitude pruning as in Li et al., "Pruning Filters for Efficient ConvNets",
    ICLR 2017 (l1 norm of a unit's incoming weights).

    Parameters
    ----------
    model : MLP
    layer : int in [0, model.n_layers - 2]
        A hidden layer: the units are the outputs of ``layers.{layer}.weight``
        (the output layer's units cannot be removed).
    norm : {"l1", "l2"}

    Returns
    -------
    float array of shape (units,)
    """
    layer = _check_hidden_layer(model, layer)
    choice(norm, "norm", NORMS)
    w = model.effective_params()[f"layers.{layer}.weight"]
    return cast(np.ndarray, np.abs(w).sum(axis=1) if norm == "l1" else np.sqrt((w * w).sum(axis=1)))


def alive_units(model: MLP, layer: int) -> np.ndarray:
    """Bool array over the units of hidden layer ``layer``: True unless the unit is removed.

    A unit is removed when its incoming row, its bias and its outgoing column
    are all pruned (what ``prune_units`` does); otherwise it is alive.
    """
    layer = _check_hidden_layer(model, layer)
    m = model.masks
    return (
        m[f"layers.{layer}.weight"].any(axis=1)
        | m[f"layers.{layer}.bias"]
        | m[f"layers.{layer + 1}.weight"].any(axis=0)
    )


def prune_units(
    model: MLP,
    fraction: float,
    *,
    norm: str = "l1",
    layers: Sequence[int] | None = None,
    rounding: str = "round-half-even",
    allow_collapse: bool = False,
) -> PruneResult:
    """Remove ``fraction`` of the alive units of each hidden layer, in place on ``model``.

    For each hidden layer l in ``layers``, the unit scores are
    ``unit_scores(model, l, norm)`` (all computed before anything is removed),
    and the units kept are ``select_masks`` on those scores over the alive
    units (``alive_units``), layer-wise: fraction_to_count(fraction, alive
    units, rounding) units go, the lowest norms first, ties by the lower unit
    index kept. Removing unit i of layer l masks row i of ``layers.{l}.weight``,
    entry i of ``layers.{l}.bias`` and column i of ``layers.{l+1}.weight``.
    Higher score = kept. Li et al., ICLR 2017.

    Layer collapse is what it is everywhere (``collapsed_matrices``): a weight
    matrix left with no alive entry. Removing every unit of a hidden layer
    empties ``layers.{l}.weight``; removing units can also empty
    ``layers.{l+1}.weight`` while the layer keeps units (its remaining alive
    entries were all in removed columns), and then the output no longer depends
    on the input either. Either raises ``ValueError`` naming the matrices unless
    ``allow_collapse`` (then listed in ``PruneResult.collapsed``). The model is
    changed only after all checks pass (``apply_masks``).

    Parameters
    ----------
    model : MLP (mutated)
    fraction : float in [0, 1]
        Fraction of the alive units of each layer to remove.
    norm : {"l1", "l2"}
    layers : sequence of int, optional
        Hidden layers to prune; default all, 0 .. n_layers - 2.
    rounding : see ``fraction_to_count``
    allow_collapse : bool

    Returns
    -------
    PruneResult (``alive_units`` holds the alive units per pruned layer)
    """
    check_model(model)
    if layers is None:
        layers = list(range(model.n_layers - 1))
        if not layers:
            raise ValueError("model has no hidden layer, so there are no units to prune")
    else:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError(
                f"layers must be a sequence of hidden-layer indices, got {type(layers).__name__}"
            )
        layers = [_check_hidden_layer(model, l) for l in layers]
        if not layers:
            raise ValueError("layers must name at least one hidden layer, got an empty sequence")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers must not repeat a layer, got {layers}")
    fraction = real_number(fraction, "fraction", low=0.0, high=1.0)
    choice(norm, "norm", NORMS)
    choice(rounding, "rounding", ROUNDINGS)
    unit_s = {l: unit_scores(model, l, norm) for l in layers}
    unit_alive = {l: alive_units(model, l) for l in layers}
    new: dict[str, np.ndarray] = {}
    for l in layers:
        kept = select_masks(
            {"units": unit_s[l]}, {"units": unit_alive[l]}, fraction, rounding=rounding
        )["units"]
        removed = unit_alive[l] & ~kept
        for name in (f"layers.{l}.weight", f"layers.{l}.bias", f"layers.{l + 1}.weight"):
            new.setdefault(name, model.masks[name].copy())
        new[f"layers.{l}.weight"][removed, :] = False
        new[f"layers.{l}.bias"][removed] = False
        new[f"layers.{l + 1}.weight"][:, removed] = False
        unit_alive[l] = kept
    n_units = {l: int(unit_alive[l].sum()) for l in layers}
    return _apply(model, new, allow_collapse, n_units)


def _check_hidden_layer(model: Any, layer: Any) -> int:
    check_model(model)
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise TypeError(f"layer must be an integer, got {type(layer).__name__}")
    if not 0 <= layer <= model.n_layers - 2:  # type: ignore[operator]
        raise ValueError(
            f"layer must be a hidden layer in [0, {model.n_layers - 2}], got {layer}"
            if model.n_layers > 1
            else "model has no hidden layer, so there are no units to prune"
        )
    return int(layer)


# ---------------------------------------------------------------- semi-structured: N of every M
def n_m_mask(scores: Any, n: int, m: int, *, alive: Any = None) -> np.ndarray:
    """Keep the ``n`` highest of every ``m`` consecutive scores along the last axis.

    The last axis (the input dimension of a weight matrix of shape (out, in))
    is cut into groups of m consecutive entries; in each group the n highest
    alive scores are kept, equal scores ordered by the lower index (the tie rule
    of ``keep_top_k``, applied group by group). With ``alive`` given, pruned
    entries are never kept and a group with fewer than n alive entries keeps
    all of them; the result is nested in ``alive``. Higher score = kept.
    2:4 sparsity (n=2, m=4) is the pattern of NVIDIA's sparse tensor cores
    (Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021).

    Parameters
    ----------
    scores : finite float array, ndim >= 1
    n : int in [0, m]
    m : int >= 1, dividing ``scores.shape[-1]``
    alive : bool array of ``scores.shape``, optional (default all alive)

    Returns
    -------
    bool array of ``scores.shape``
    """
    s = float_array(scores, "scores")
    if s.ndim == 0:
        raise ValueError("scores must have at least one dimension, got a scalar")
    m = positive_int(m, "m")
    n = positive_int(n, "n", minimum=0)
    if n > m:
        raise ValueError(f"n must be in [0, m] = [0, {m}], got {n}")
    if s.shape[-1] % m:
        raise ValueError(
            f"m must divide the length of the last axis of scores ({s.shape[-1]}), got m={m}"
        )
    a = np.ones(s.shape, dtype=bool) if alive is None else bool_array(alive, "alive", shape=s.shape)
    groups, alive_groups = s.reshape(-1, m), a.reshape(-1, m)
    # Within a group: alive first, then higher score, then lower index (lexsort is stable).
    order = np.lexsort((-groups, ~alive_groups), axis=-1)
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :n], True, axis=-1)
    return cast(np.ndarray, (keep & alive_groups).reshape(s.shape))


def prune_n_m(
    model: MLP,
    scores: Mapping[str, Any],
    n: int,
    m: int,
    *,
    names: Sequence[str] | None = None,
    allow_collapse: bool = False,
) -> PruneResult:
    """N:M semi-structured pruning of the weight matrices ``names``, in place on ``model``.

    New mask of each parameter = ``n_m_mask(scores[name], n, m,
    alive=model.masks[name])``: n of every m consecutive entries along the
    input dimension are kept, the highest scores first (higher score = kept,
    ties by the lower index). Collapse (n = 0, or groups with nothing alive)
    raises unless ``allow_collapse``. The model changes only after all checks.

    Parameters
    ----------
    model : MLP (mutated)
    scores : mapping name -> float array
    n, m : ints, 0 <= n <= m, m dividing each matrix's input dimension
    names : sequence of str, optional (default ``model.weight_names()``)
    allow_collapse : bool

    Returns
    -------
    PruneResult
    """
    names = check_model(model).check_names(names)
    if not isinstance(scores, Mapping):
        raise TypeError(f"scores must be a mapping name -> array, got {type(scores).__name__}")
    new = {}
    for name in names:
        if name not in scores:
            raise ValueError(
                f"scores must have an entry for every pruned parameter; missing {name!r}"
            )
        s = float_array(scores[name], f"scores[{name!r}]")
        if s.shape != model.params[name].shape:
            raise ValueError(
                f"scores[{name!r}] must have the parameter's shape {model.params[name].shape}, "
                f"got {s.shape}"
            )
        if s.shape[-1] % positive_int(m, "m"):
            raise ValueError(
                f"m must divide the input dimension of {name!r} ({s.shape[-1]}), got m={m}"
            )
        new[name] = n_m_mask(s, n, m, alive=model.masks[name])
    return _apply(model, new, allow_collapse)
