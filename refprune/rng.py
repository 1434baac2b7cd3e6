"""The one place where a seed becomes a random generator.

Every random draw in refprune comes from ``numpy.random.Generator(PCG64(seed))``
made here, and each function that draws documents the order of its draws, so
another backend can reproduce the same numbers from the same seed.
"""

from __future__ import annotations

import numbers

import numpy as np


def make_rng(seed: int | np.random.Generator) -> np.random.Generator:
    """Return ``numpy.random.Generator(PCG64(seed))``.

    A Generator passed in is returned as is (its draws continue from its state).
    ``None`` is refused: every draw in a reference must be reproducible.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed must be a non-negative integer or a numpy Generator, got {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return np.random.Generator(np.random.PCG64(int(seed)))
