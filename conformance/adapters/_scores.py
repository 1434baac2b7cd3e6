"""What every adapter's ``scores`` does before it calls its library: one copy for all."""

from __future__ import annotations

from collections.abc import Mapping
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
