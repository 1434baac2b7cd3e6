"""Decision margins: how far a golden case's discrete answer is from flipping.

A discrete output (a mask, a count, a support) is decided by comparing floats:
a score against the others, a product against a rounding boundary, |w| against
a threshold. The *relative gap* at one decision between the compared values a
and b is

    gap(a, b) = |a - b| / max(|a|, |b|)        (0 when a == b, a tie)

and a case's margin is the least gap over all the decisions that made its
answer. The case records it as ``{"relative_gap": g, "quantity": q}``:

* ``"exact"``: the compared values are the inputs themselves or results of the
  IEEE-754 operations the specification prescribes (fraction * n in float64,
  w * w against 2 * lam, ...). Every conforming backend has the same bits, so
  even a tie is decided by the stated rule, never by rounding.
* ``"computed"``: the compared values are computed with rounding that the
  tolerances allow to differ (norms, saliencies, trained weights, iterates, a
  pow). A gap below ``accuracy.MARGIN_BOUND`` could flip under a different but
  equally accurate computation, so the lint refuses such a case unless it is an
  intended tie (flag ``ties``) that lists the acceptable answers.

When both kinds of decision occur, the computed ones are recorded (the exact ones
cannot flip). A case with no decision on floats records ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

Margin = dict[str, Any]


def gap(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|); 0.0 when a == b (zeros included)."""
    a, b = float(a), float(b)
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def selection_gap(
    scores: np.ndarray, kept: np.ndarray, alive: np.ndarray | None = None
) -> float | None:
    """The gap between the lowest kept and the highest pruned score among ``alive`` entries.

    None when nothing or everything alive was kept (no comparison decided it).
    Raises ValueError when a pruned entry outranks a kept one: the selection was
    not a threshold on these scores.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    kept = np.asarray(kept, dtype=bool).ravel()
    alive = np.ones_like(kept) if alive is None else np.asarray(alive, dtype=bool).ravel()
    k, p = scores[alive & kept], scores[alive & ~kept]
    if k.size == 0 or p.size == 0:
        return None
    low, high = float(k.min()), float(p.max())
    if low < high:
        raise ValueError(f"a pruned entry ({high!r}) outranks a kept one ({low!r})")
    return gap(low, high)


def pooled_selection_gap(
    scores: Sequence[np.ndarray],
    kept: Sequence[np.ndarray],
    alive: Sequence[np.ndarray | None] | None = None,
) -> float | None:
    """``selection_gap`` of several tensors taken as one pool (a global selection)."""
    alive = alive if alive is not None else [None] * len(scores)
    flat_alive = [
        np.ones(np.size(s), bool) if a is None else np.asarray(a, bool).ravel()
        for s, a in zip(scores, alive)
    ]
    return selection_gap(
        np.concatenate([np.ravel(s) for s in scores]),
        np.concatenate([np.ravel(k) for k in kept]),
        np.concatenate(flat_alive),
    )


def rounding_gap(product: float, rounding: str) -> float | None:
    """The gap between ``product`` (fraction * n) and the nearest boundary of ``rounding``.

    Boundaries: the integers for floor and ceil, k + 1/2 for round-half-even. None
    for a product of 0 (every mode gives 0).
    """
    p = float(product)
    if p == 0.0:
        return None
    boundary = math.floor(p) + 0.5 if rounding == "round-half-even" else float(round(p))
    return gap(p, boundary)


def threshold_gap(values: np.ndarray, threshold: float) -> float | None:
    """The least gap between any of ``values`` and ``threshold`` (None for no values)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return None
    return min(gap(v, threshold) for v in values)


def exactly_summed(terms: ArrayLike) -> bool:
    """True when every sum of ``terms``, in any order, is exact in float64.

    Sufficient condition checked: every term is a multiple of one power of two g
    and the sum of their magnitudes is below 2^53 g, so every partial sum is a
    multiple of g that float64 holds exactly.
    """
    terms = [float(t) for t in np.ravel(terms) if t != 0]
    if not all(math.isfinite(t) for t in terms):
        return False
    if not terms:
        return True
    parts = []
    for t in terms:
        m, e = math.frexp(abs(t))
        mantissa = int(m * 2**53)
        shift = (mantissa & -mantissa).bit_length() - 1  # trailing zero bits
        parts.append((mantissa >> shift, e - 53 + shift))
    g = min(e for _, e in parts)
    return sum(m << (e - g) for m, e in parts) < 2**53


def exactly_squared(values: np.ndarray) -> bool:
    """True when w * w is exact in float64 for every entry (at most 26 significant bits)."""
    from fractions import Fraction

    return all(Fraction(float(v)) ** 2 == Fraction(float(v) * float(v)) for v in np.ravel(values))


def record(
    exact: Iterable[float | None] = (), computed: Iterable[float | None] = ()
) -> Margin | None:
    """The margin of a case from the gaps of its decisions (None entries: no decision)."""
    comp = [g for g in computed if g is not None]
    if comp:
        return {"relative_gap": min(comp), "quantity": "computed"}
    ex = [g for g in exact if g is not None]
    if ex:
        return {"relative_gap": min(ex), "quantity": "exact"}
    return None


def groups(
    names: Sequence[str], scope: str, multipliers: dict[str, float] | None
) -> list[list[str]]:
    """The selection groups of ``select_masks``: one per tensor (layer scope), or the pool
    of multiplier-1 tensors plus one group per other tensor (global scope)."""
    mult = multipliers or {}
    if scope != "global":
        return [[n] for n in names]
    pool = [n for n in names if mult.get(n, 1.0) == 1.0]
    return ([pool] if pool else []) + [[n] for n in names if mult.get(n, 1.0) != 1.0]


def masks_gap(
    scores: dict[str, np.ndarray],
    kept: dict[str, np.ndarray],
    alive: dict[str, np.ndarray] | None,
    scope: str,
    multipliers: dict[str, float] | None,
) -> float | None:
    """The least selection gap over the groups of a layer-wise or global selection."""
    gaps = []
    for group in groups(list(scores), scope, multipliers):
        gaps.append(
            pooled_selection_gap(
                [scores[n] for n in group],
                [kept[n] for n in group],
                [None if alive is None else alive[n] for n in group],
            )
        )
    found = [g for g in gaps if g is not None]
    return min(found) if found else None


# ----------------------------------------------------------------------------- per operation
def _masks_of(result: dict[str, Any], names: Iterable[str]) -> dict[str, np.ndarray]:
    return {n: np.asarray(result[n], dtype=bool) for n in names}


def _fraction_to_count(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    return record(exact=[rounding_gap(inputs["fraction"] * inputs["n"], inputs["rounding"])])


def _keep_top_k(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    return record(exact=[selection_gap(inputs["scores"], expected)])


def _select_masks(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    scores, alive, mult = inputs["scores"], inputs["masks"], inputs["rate_multipliers"] or {}
    counts = []
    for group in groups(list(scores), inputs["scope"], mult):
        f = inputs["fraction"] * mult.get(group[0], 1.0) if len(group) == 1 else inputs["fraction"]
        n_alive = sum(int(np.sum(alive[n])) for n in group)
        counts.append(rounding_gap(f * n_alive, inputs["rounding"]))
    kept = _masks_of(expected, scores)
    return record(exact=[masks_gap(scores, kept, alive, inputs["scope"], mult), *counts])


def _n_m_mask(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    s = np.asarray(inputs["scores"], dtype=np.float64)
    m = inputs["m"]
    alive = np.ones(s.shape, bool) if inputs["alive"] is None else np.asarray(inputs["alive"], bool)
    gaps = [
        selection_gap(sg, kg, ag)
        for sg, kg, ag in zip(
            s.reshape(-1, m), np.asarray(expected).reshape(-1, m), alive.reshape(-1, m)
        )
    ]
    return record(exact=gaps)


def _prune_units(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    """Unit norms are computed (sums of |w| or of w^2, and a square root): a layer's decision
    is exact when every norm is computed without rounding whatever the order of the sum
    (``exactly_summed``; the square root is correctly rounded), computed otherwise."""
    from refprune.masks import alive_units, fraction_to_count, unit_scores

    from .backend import _model

    model = _model(inputs["params"], "relu", "mse")
    model.set_masks(inputs["masks"])
    after = _model(inputs["params"], "relu", "mse")
    after.set_masks(expected)
    gaps: list[float | None] = []
    exact: list[float | None] = []
    counts: list[float | None] = []
    for layer in range(model.n_layers - 1):
        alive = alive_units(model, layer)
        kept = alive_units(after, layer)
        name = f"layers.{layer}.weight"
        w = np.where(model.masks[name], model.params[name], 0.0)
        terms = np.abs(w) if inputs["norm"] == "l1" else w * w
        no_rounding = (inputs["norm"] == "l1" or exactly_squared(w)) and all(
            exactly_summed(row) for row in terms
        )
        g = selection_gap(unit_scores(model, layer, inputs["norm"]), kept, alive)
        (exact if no_rounding else gaps).append(g)
        n = int(alive.sum())
        counts.append(rounding_gap(inputs["fraction"] * n, inputs["rounding"]))
        assert int((alive & ~kept).sum()) == fraction_to_count(
            inputs["fraction"], n, inputs["rounding"]
        )
    return record(exact=counts + exact, computed=gaps)


def _profile_mask(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    """The ranked values (|score| for a library that ranks magnitudes) are inputs."""
    from .conventions import get_profile

    profile = get_profile(inputs["_profile"])
    scores = {
        n: np.abs(s) if profile.ranks_magnitude else s
        for n, s in inputs["scores"].items()
        if n in expected
    }
    alive = inputs["alive"]
    try:
        g = masks_gap(
            scores,
            _masks_of(expected, scores),
            alive and {n: alive[n] for n in scores},
            inputs["scope"],
            None,
        )
    except ValueError:
        g = None  # the library's rule is not a threshold over alive entries
    return record(exact=[g])


def _obs_prune(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    """Each removal compares the saliencies of the remaining candidates (computed)."""
    from refprune.curvature import flatten_params
    from refprune.masks import keep_top_k
    from refprune.scores import (
        damped_inverse_hessian,
        obs_downdate,
        obs_saliency,
        obs_update,
    )

    from .backend import _model

    model = _model(inputs["params"], inputs["activation"], inputs["loss"])
    if inputs["masks"] is not None:
        model.set_masks(inputs["masks"])
    hinv, free = damped_inverse_hessian(model, inputs["X"], inputs["y"], inputs["damping"])
    offsets = dict(zip(model.params, np.cumsum([0] + [p.size for p in model.params.values()])))
    cand = np.concatenate(
        [offsets[n] + np.flatnonzero(model.masks[n].ravel()) for n in model.weight_names()]
    )
    w = flatten_params(model.effective_params(), model)
    gaps = []
    alive = flatten_params(model.masks, model)
    for _ in range(inputs["n_remove"]):
        pos = np.searchsorted(free, cand)
        s = obs_saliency(w[cand], np.diag(hinv)[pos])
        out = int(np.flatnonzero(~keep_top_k(s, s.size - 1))[0])
        if s.size > 1:
            gaps.append(gap(np.min(np.delete(s, out)), s[out]))
        j, q = int(pos[out]), int(cand[out])
        w[free] += obs_update(w[free], hinv, j)
        w[q] = 0.0
        alive[q] = False
        hinv = obs_downdate(hinv, j)
        free = np.delete(free, j)
        cand = np.delete(cand, out)
    if not np.array_equal(alive, flatten_params(expected["masks"], model)):
        raise ValueError("obs_prune margin: the replayed removals differ from the expected masks")
    return record(computed=gaps)


def _synflow_prune(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    """Each round compares SynFlow scores (computed) and rounds 1 - density^(k/n) (a pow)."""
    from refprune.masks import fraction_to_count, select_masks_count
    from refprune.scores import synflow_scores

    from .backend import _model

    model = _model(inputs["params"], "relu", "mse")
    if inputs["masks"] is not None:
        model.set_masks(inputs["masks"])
    names = model.weight_names()
    density, iterations, rounding = inputs["density"], inputs["iterations"], inputs["rounding"]
    n0 = sum(int(model.masks[n].sum()) for n in names)
    gaps: list[float | None] = []
    counts: list[float | None] = []
    exact_counts: list[float | None] = []
    for k in range(1, iterations + 1):
        fraction = 1.0 - density ** (k / iterations)
        exact_pow = density in (0.0, 1.0) or k == iterations  # pow(d, 1), pow(0 or 1, y)
        (exact_counts if exact_pow else counts).append(rounding_gap(fraction * n0, rounding))
        target = fraction_to_count(fraction, n0, rounding)
        scores = synflow_scores(model, names=names)
        now = sum(int(model.masks[n].sum()) for n in names)
        new = select_masks_count(scores, model.masks, max(0, target - (n0 - now)), scope="global")
        alive = {n: model.masks[n] for n in names}
        gaps.append(masks_gap({n: scores[n] for n in names}, new, alive, "global", None))
        model.set_masks(new)
    if any(not np.array_equal(model.masks[n], expected[n]) for n in expected):
        raise ValueError("synflow_prune margin: the replayed rounds differ from the expected masks")
    return record(exact=exact_counts, computed=gaps + counts)


def _schedule(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    """Counts round f_j * k_{j-1} (relative) or s_j * n (absolute), the prescribed products."""
    values, counts, rounding = expected["values"], expected["alive_counts"], inputs["rounding"]
    n = inputs["n"]
    if expected["kind"] == "relative":
        prev = np.concatenate([[n], counts[:-1]])
        gaps = [rounding_gap(f * int(k), rounding) for f, k in zip(values, prev)]
    else:
        gaps = [rounding_gap(s * n, rounding) for s in values]
    return record(exact=gaps)


def _rounds_to_density(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    """The densities d_S (or counts k_S / n) against the target, S = 1 .. the answer."""
    from refprune.masks import fraction_to_count

    target, alpha, n, rounding = (
        inputs["target_density"],
        inputs["alpha"],
        inputs["n"],
        inputs["rounding"],
    )
    gaps: list[float | None] = []
    d, k = 1.0, n
    for _ in range(int(expected)):
        if n is None:
            d = d * (1.0 - alpha)
            gaps.append(gap(d, target))
        else:
            gaps.append(rounding_gap(alpha * k, rounding))
            k = k - fraction_to_count(alpha, k, rounding)
            gaps.append(gap(k / n, target))
    return record(exact=gaps)


def _hard_threshold(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    from refprune.sparse_approx import hard_threshold

    w = np.asarray(inputs["w"], dtype=np.float64)
    return record(exact=[selection_gap(np.abs(w), hard_threshold(w, inputs["k"]).support)])


def _soft_threshold(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    return record(exact=[threshold_gap(np.abs(inputs["w"]), inputs["lam"])])


def _hard_threshold_prox(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    w = np.asarray(inputs["w"], dtype=np.float64)
    return record(exact=[threshold_gap(w * w, 2.0 * inputs["lam"])])


def _sparse_approx_exact(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    import itertools

    from refprune import sparse_approx as sa

    w, k = np.asarray(inputs["w"], dtype=np.float64), inputs["k"]
    if inputs["problem"] == "nonnegative":
        support = sa.best_k_sparse_nonnegative(w, k).support
        return record(exact=[selection_gap(np.where(w > 0, w, 0.0), support)])
    if inputs["problem"] == "weighted":
        d = np.asarray(inputs["d"], dtype=np.float64)
        support = sa.best_k_sparse_weighted(w, d, k).support
        return record(exact=[selection_gap(d * (w * w), support)])
    costs = []
    for kept in itertools.combinations(range(w.size), k):
        keep = np.zeros(w.size, dtype=bool)
        keep[list(kept)] = True
        costs.append(sa.quadratic_fit_on_support(w, inputs["H"], keep).cost)
    if len(costs) < 2:
        return None
    best = min(costs)
    second = min(c for i, c in enumerate(costs) if i != costs.index(best))
    return record(computed=[gap(second, best)])


def _ista(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    """Every iteration compares |z_i| with step * lam, z = x - step A^T (A x - y) computed."""
    from refprune.sparse_approx import soft_threshold

    A, b, step = (np.asarray(inputs[k], dtype=np.float64) for k in ("A", "y", "step"))
    t = float(step) * inputs["lam"]
    x = np.zeros(A.shape[1])
    gaps = []
    for _ in range(inputs["n_iter"]):
        z = x - float(step) * (A.T @ (A @ x - b))
        gaps.append(threshold_gap(np.abs(z), t))
        x_new = soft_threshold(z, t)
        moved = float(np.max(np.abs(x_new - x)))
        x = x_new
        if moved <= 0.0:
            break
    if not np.array_equal(x != 0, np.asarray(expected) != 0):
        raise ValueError("ista margin: the replayed support differs from the expected one")
    return record(computed=gaps)


def _iht(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    """Every iteration keeps the k largest |z_i|, z = x - step A^T (A x - y) computed."""
    from refprune.masks import keep_top_k

    if isinstance(inputs["step"], str):
        raise NotImplementedError("the margin of normalized IHT is not implemented")
    A, b = (np.asarray(inputs[k], dtype=np.float64) for k in ("A", "y"))
    step, k = float(inputs["step"]), inputs["k"]
    x = np.zeros(A.shape[1])
    gaps = []
    for _ in range(inputs["n_iter"]):
        z = x - step * (A.T @ (A @ x - b))
        support = keep_top_k(np.abs(z), k)
        gaps.append(selection_gap(np.abs(z), support))
        x_new = np.where(support, z, 0.0)
        moved = float(np.max(np.abs(x_new - x)))
        x = x_new
        if moved <= 0.0:
            break
    if not np.array_equal(x != 0, np.asarray(expected) != 0):
        raise ValueError("iht margin: the replayed support differs from the expected one")
    return record(computed=gaps)


def _imp_round(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    """Magnitudes of the given trained weights (inputs), per group of the scope."""
    return record(
        exact=_magnitude_round(
            inputs["trained"],
            inputs["masks"],
            expected["masks"],
            inputs["scope"],
            inputs["rate_multipliers"],
        )
    )


def _magnitude_round(
    trained: dict[str, np.ndarray],
    before: dict[str, np.ndarray],
    after: dict[str, np.ndarray],
    scope: str,
    multipliers: dict[str, float] | None,
) -> list[float | None]:
    names = [n for n in trained if n.endswith("weight")]
    scores = {n: np.abs(trained[n]) for n in names}
    return [
        masks_gap(
            scores, _masks_of(after, names), {n: before[n] for n in names}, scope, multipliers
        )
    ]


def _imp(inputs: dict[str, Any], expected: Any, reference: Any) -> Margin | None:
    """Round r >= 1 ranks |w| of the weights trained in round r - 1 (computed by training),
    replayed by running the first r - 1 rounds alone (their masks must be the trace's)."""
    o = inputs["options"]
    gaps: list[float | None] = []
    masks = expected["masks"]
    for r in range(1, len(masks)):
        shorter = dict(o, rounds=r - 1)
        if o.get("sparsities") is not None:
            shorter["sparsities"] = list(o["sparsities"][: r - 1]) or None
        run = reference.imp(**dict(inputs, options=shorter))
        if any(not np.array_equal(run["masks"][-1][n], masks[r - 1][n]) for n in masks[r - 1]):
            raise ValueError("imp margin: the replayed rounds differ from the trace")
        gaps += _magnitude_round(
            run["final"], masks[r - 1], masks[r], o.get("scope", "layer"), o.get("rate_multipliers")
        )
    return record(computed=gaps)


MARGINS = {
    "fraction_to_count": _fraction_to_count,
    "keep_top_k": _keep_top_k,
    "select_masks": _select_masks,
    "prune_units": _prune_units,
    "n_m_mask": _n_m_mask,
    "profile_mask": _profile_mask,
    "obs_prune": _obs_prune,
    "synflow_prune": _synflow_prune,
    "schedule": _schedule,
    "rounds_to_density": _rounds_to_density,
    "hard_threshold": _hard_threshold,
    "soft_threshold": _soft_threshold,
    "hard_threshold_prox": _hard_threshold_prox,
    "sparse_approx_exact": _sparse_approx_exact,
    "ista": _ista,
    "iht": _iht,
    "imp_round": _imp_round,
    "imp": _imp,
}


def case_margin(
    op: str, inputs: dict[str, Any], expected: Any, reference: Any, flags: Sequence[str] = ()
) -> Margin | None:
    """The margin of a golden case of ``op`` (None for an operation with no discrete output).

    ``flags`` name the convention profile of a ``profile_mask`` case (``profile:NAME``).
    """
    if op not in MARGINS:
        return None
    if op == "profile_mask":
        names = [f.split(":", 1)[1] for f in flags if f.startswith("profile:")]
        inputs = dict(inputs, _profile=names[0] if names else "reference")
    return MARGINS[op](inputs, expected, reference)
