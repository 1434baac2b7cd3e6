"""Argument checks used at the public boundary of every refprune function.

Each helper raises ``TypeError`` (wrong kind of thing) or ``ValueError``
(right kind, wrong value) with a message that names the argument and says
what was expected. Checks never modify their input; helpers that return an
array return a new float64 (or bool/int) array, so callers can work on it
without touching the caller's data.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection
from typing import Any

import numpy as np
from numpy.typing import DTypeLike


def float_array(
    x: Any,
    name: str,
    *,
    ndim: int | None = None,
    allow_empty: bool = False,
    dtype: DTypeLike = np.float64,
    copy: bool = True,
) -> np.ndarray:
    """Return ``x`` as a finite floating array (a new one unless ``copy=False``), or raise
    naming ``name``.

    Booleans, integers, strings and objects are rejected: a reference must not
    silently reinterpret labels or masks as weights. ``copy=False`` returns
    ``x`` itself where it already has the dtype (for callers that only read it).
    """
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be a float array, got {type(x).__name__}")
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not all_finite(arr):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    dtype = dtype if dtype is not None else arr.dtype
    return np.array(arr, dtype=dtype, copy=True) if copy else np.asarray(arr, dtype=dtype)


def all_finite(arr: np.ndarray) -> bool:
    """Whether every entry of a floating array is finite (no NaN, no inf)."""
    return bool(np.isfinite(arr).all())


def bool_array(x: Any, name: str, *, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``x`` as a new boolean array of ``shape``, or raise naming ``name``."""
    arr = np.asarray(x)
    if arr.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean array, got dtype {arr.dtype}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    return arr.copy()


def int_labels(y: Any, name: str, *, n_classes: int | None = None) -> np.ndarray:
    """Return class labels as a new 1-D int64 array with values in [0, n_classes)."""
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array of class labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if arr.min() < 0 or (n_classes is not None and arr.max() >= n_classes):
        hi = "" if n_classes is None else f", {n_classes})"
        raise ValueError(
            f"{name} must hold class labels in [0{hi or ', inf)'}, "
            f"got values in [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.int64, copy=True)


def positive_int(x: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(x).__name__}")
    if x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    return int(x)


def count_in(k: Any, name: str, n: int, what: str = "the number of alive entries") -> int:
    """Return ``k`` as an int in [0, n] (``what`` says what n counts), or raise naming ``name``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(k).__name__}")
    if not 0 <= k <= n:  # type: ignore[operator]
        raise ValueError(f"{name} must be in [0, {n}] ({what}), got {k}")
    return int(k)


def boolean(x: Any, name: str) -> bool:
    """Return ``x`` if it is a Python bool, else TypeError naming ``name``."""
    if not isinstance(x, bool):
        raise TypeError(f"{name} must be a bool, got {type(x).__name__}")
    return bool(x)


def real_number(
    x: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``x`` as a finite float within the given bounds, or raise naming ``name``."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    v = float(x)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    bad_low = low is not None and (v <= low if low_open else v < low)
    bad_high = high is not None and (v >= high if high_open else v > high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        raise ValueError(
            f"{name} must be in {'(' if low_open else '['}{lo}, {hi}"
            f"{')' if high_open else ']'}, got {x}"
        )
    return v


def choice(x: Any, name: str, options: Collection[str]) -> str:
    if not isinstance(x, str):
        raise TypeError(
            f"{name} must be a string, one of {sorted(options)}, got {type(x).__name__}"
        )
    if x not in options:
        raise ValueError(f"unknown {name} {x!r}; expected one of {sorted(options)}")
    return x
