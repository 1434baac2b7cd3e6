"""What every adapter's ``scores`` does around its library's calls: one copy for all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from refprune.scores import RULES

from ..backend import NotProvided, flat_names

#: Rules that are not a derivative computation: "random" draws NumPy's PCG64 stream and
#: "obs" inverts a damped Hessian, so no library adapter provides them.
NOT_A_LIBRARY_COMPUTATION = ("random", "obs")


def masked_score_inputs(
    rule: str, params: Mapping[str, Any], masks: Any, options: Any, library: str
) -> tuple[dict[str, Any], list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(options, scored names, masks M, masked weights theta * M) for ``scores``.

    Refuses a rule outside ``refprune.scores.RULES`` (ValueError) and the rules no
    library computes (NotProvided). Scored names default to every weight matrix; a
    missing mask means all alive; pruned entries read +0.0.
    """
    options = dict(options or {})
    if rule in NOT_A_LIBRARY_COMPUTATION:
        raise NotProvided(f"rule {rule!r} has no {library} counterpart")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {list(RULES)}, got {rule!r}")
    names = list(options.get("names") or [n for n in flat_names(params) if n.endswith(".weight")])
    m = {
        n: (
            np.ones(np.shape(params[n]), dtype=bool)
            if masks is None or n not in masks
            else np.asarray(masks[n], dtype=bool)
        )
        for n in params
    }
    w = {n: np.where(m[n], np.asarray(params[n], dtype=np.float64), 0.0) for n in params}
    return options, names, m, w


def derivative_scores(
    rule: str,
    names: list[str],
    w: Mapping[str, np.ndarray],
    g: Mapping[str, np.ndarray],
    hvp: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    diagonal: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """The rules computed from derivatives, given the library's derivatives of L(theta * M).

    ``w``: the masked weights; ``g``: the gradient; ``hvp(v)``: H v; ``diagonal()``: the
    Hessian diagonal (the one the options ask for). Each is a dict keyed like the params,
    and ``hvp`` and ``diagonal`` are called only by the rules that need them.
    """
    if rule == "gradient":
        return {n: np.abs(g[n]) for n in names}
    if rule == "taylor1":
        return {n: np.abs(g[n] * w[n]) for n in names}
    if rule == "grasp":
        hg = hvp({n: (g[n] if n in names else np.zeros_like(g[n])) for n in g})
        return {n: w[n] * hg[n] for n in names}
    h = diagonal()
    obd = {n: 0.5 * h[n] * w[n] ** 2 for n in names}
    return {
        "obd": obd,
        "taylor2": {n: -g[n] * w[n] + obd[n] for n in names},
        "taylor2_abs": {n: np.abs(-g[n] * w[n] + obd[n]) for n in names},
    }[rule]
