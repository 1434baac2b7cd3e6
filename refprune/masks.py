"""Mask selection: turning scores into boolean keep-masks.

The two conventions every pruning rule in refprune depends on live here and
nowhere else:

* **Rounding** (``fraction_to_count``): a fraction f of n items is the count
  ``rounding(f * n)``, where ``f * n`` is the IEEE-754 float64 product and
  ``rounding`` is round-half-even (the default), floor or ceil.
* **Ties** (``keep_top_k``): the k highest scores are kept; among equal scores
  the one with the lower flat C-order index is kept. -0.0 and 0.0 are equal.

Higher score = more important = kept, throughout the project.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._checks import choice, float_array, real_number

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
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an integer, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
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
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    n = s.size
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}] (the number of scores), got {k}")
    flat = s.ravel()
    keep = np.zeros(n, dtype=bool)
    if k == n:
        keep[:] = True
    elif k > 0:
        threshold = np.partition(flat, n - k)[n - k]          # the k-th largest score
        keep = flat > threshold
        n_equal_kept = k - int(keep.sum())                     # room left for ties at the threshold
        keep[np.flatnonzero(flat == threshold)[:n_equal_kept]] = True
    return keep.reshape(s.shape)
