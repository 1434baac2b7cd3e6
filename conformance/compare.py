"""Comparing a backend's answer with the expected one, and saying readably how they differ.

Tolerances (one per output; docs/golden_format.md, "Tolerances", is the specification):

* ``{"kind": "exact"}``: integers, strings and booleans equal; floats equal as
  IEEE-754 numbers (so -0.0 == 0.0); arrays of the same shape and equal entry
  by entry; bool arrays must be bool.
* ``{"kind": "close", "rel": R, "scale": S}``: ``S`` mirrors the expected value
  (the same dicts and lists; each float leaf replaced by its scale, a float or a
  float64 array of the same shape; every other leaf null). A float entry x
  passes against e with scale s when |x - e| <= R * s, in float64; NaN never
  passes. Integers, booleans and strings inside are compared exactly.
* ``"signed_zeros": true`` (either kind): where the expected float is +0.0 or
  -0.0 the answer must be that same zero, sign bit included.
* ``"up_to_ties": {"scores": input}`` on a mask output: when the claimed
  convention profile breaks ties in an unspecified order, the mask is compared
  up to ties of the named input's scores (``conformance.conventions.equal_up_to_ties``):
  every entry strictly above or below the threshold score must match, and the
  count at the threshold must match. Under a deterministic tie rule the mask is
  compared exactly.
* ``"alternatives": [v, ...]``: other acceptable answers; any one matching passes.
* ``"tie_alternatives": [v, ...]``: the answers other orders of equal scores give
  (for selections whose ties are not per entry, such as whole units); acceptable
  only when the claimed profile leaves ties unspecified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np

TieCheck = Callable[[Any, Any, Any, Any], bool]
MAX_SHOWN = 8


def _fmt(x: float) -> str:
    return f"{x!r} ({float(x).hex()})"


def _as_array(
    actual: Any, expected: np.ndarray, where: str
) -> tuple[np.ndarray | None, str | None]:
    try:
        arr = np.asarray(actual)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the backend's
        return None, f"{where}: cannot be read as an array ({exc})"
    if arr.shape != expected.shape:
        return None, f"{where}: shape {arr.shape}, expected {expected.shape}"
    if expected.dtype == np.bool_ and arr.dtype != np.bool_:
        return None, f"{where}: dtype {arr.dtype}, expected a bool mask"
    if expected.dtype.kind == "f" and arr.dtype.kind not in "fiu":
        return None, f"{where}: dtype {arr.dtype}, expected floating point"
    if expected.dtype.kind in "iu" and arr.dtype.kind not in "iu":
        return None, f"{where}: dtype {arr.dtype}, expected integers"
    return arr, None


def _mask_diff(exp: np.ndarray, act: np.ndarray, where: str) -> str:
    lost = np.argwhere(exp & ~act)
    extra = np.argwhere(act & ~exp)
    lines = [f"{where}: masks differ: expected {int(exp.sum())} kept, got {int(act.sum())}"]
    if lost.size:
        lines.append(f"  kept by the reference, pruned by the backend at {_indices(lost)}")
    if extra.size:
        lines.append(f"  pruned by the reference, kept by the backend at {_indices(extra)}")
    if exp.size <= 64:
        lines.append(f"  expected {exp.astype(int).tolist()}")
        lines.append(f"  actual   {act.astype(int).tolist()}")
    return "\n".join(lines)


def _indices(idx: np.ndarray) -> str:
    items = [
        tuple(int(v) for v in row) if len(row) != 1 else int(row[0]) for row in idx[:MAX_SHOWN]
    ]
    more = f" and {len(idx) - MAX_SHOWN} more" if len(idx) > MAX_SHOWN else ""
    return ", ".join(str(i) for i in items) + more


def _float_diff(
    exp: np.ndarray,
    act: np.ndarray,
    bad: np.ndarray,
    where: str,
    tol: dict,
    scale: np.ndarray | None,
) -> str:
    idx = np.argwhere(bad)
    err = np.abs(act.astype(np.float64) - exp)
    worst = np.nanmax(np.where(np.isnan(err), np.inf, err))
    lines = [
        (
            f"{where}: {len(idx)} of {exp.size} entries outside the tolerance "
            f"({_tol_text(tol)}); max |diff| {worst:.3g}"
        )
    ]
    for row in idx[:MAX_SHOWN]:
        key = tuple(int(v) for v in row)
        e, a = float(exp[key]), float(act[key])
        allowed = "" if scale is None else f" (allowed {tol['rel'] * float(scale[key]):.3g})"
        lines.append(
            f"  at {key if len(key) != 1 else key[0]}: expected {_fmt(e)}, got {_fmt(a)}, "
            f"|diff| {abs(a - e):.3g}{allowed}"
        )
    if len(idx) > MAX_SHOWN:
        lines.append(f"  ... and {len(idx) - MAX_SHOWN} more")
    return "\n".join(lines)


def _tol_text(tol: dict) -> str:
    sign = ", zeros signed" if tol.get("signed_zeros") else ""
    if tol.get("kind") == "close":
        return f"|diff| <= {tol['rel']:.3g} * scale of each entry{sign}"
    return f"exact{sign}"


def tie_alternatives(tol: dict[str, Any]) -> list[Any]:
    """The tolerance's ``tie_alternatives``: a list, or a function computing it when needed."""
    alts = tol.get("tie_alternatives") or []
    return list(alts() if callable(alts) else alts)


def compare(
    expected: Any,
    actual: Any,
    tol: dict[str, Any],
    *,
    where: str = "result",
    inputs: dict[str, Any] | None = None,
    tie_check: TieCheck | None = None,
) -> str | None:
    """None when ``actual`` matches ``expected`` under ``tol``; otherwise a readable diff."""
    scale = tol.get("scale") if tol.get("kind") == "close" else None
    first = _compare(expected, actual, tol, where, inputs, tie_check, None, scale)
    if first is None:
        return None
    alternatives = list(tol.get("alternatives") or [])
    if tie_check is not None:
        alternatives += list(tie_alternatives(tol))
    for alt in alternatives:
        if _compare(alt, actual, tol, where, inputs, tie_check, None, scale) is None:
            return None
    if alternatives:
        first += f"\n  (nor does it match any of the {len(alternatives)} other acceptable answers)"
    return first


def _tie_inputs(inputs: dict[str, Any] | None, tol: dict, key: str | None):
    """(scores, alive) named by the tolerance's ``up_to_ties`` for one mask, or None."""
    spec = tol.get("up_to_ties")
    if not spec or inputs is None:
        return None
    scores, alive = inputs.get(spec["scores"]), inputs.get(spec.get("alive", ""))
    if isinstance(scores, dict):
        if key is None or key not in scores:
            return None
        scores, alive = scores[key], (alive or {}).get(key)
    return (scores, alive) if isinstance(scores, np.ndarray) else None


def _part(scale: Any, key: Any) -> Any:
    """The part of a scale mirror under ``key`` (None when there is no mirror)."""
    if isinstance(scale, dict):
        return scale.get(key)
    if isinstance(scale, list) and isinstance(key, int) and key < len(scale):
        return scale[key]
    return None


def _compare(
    expected: Any,
    actual: Any,
    tol: dict,
    where: str,
    inputs,
    tie_check,
    key: str | None = None,
    scale: Any = None,
) -> str | None:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where}: expected a dict with keys {sorted(expected)}, got {type(actual).__name__}"
        if set(actual) != set(expected):
            return (
                f"{where}: keys differ: missing {sorted(set(expected) - set(actual))}, "
                f"unexpected {sorted(set(actual) - set(expected))}"
            )
        spec = tol.get("up_to_ties") or {}
        if tie_check is not None and spec.get("pooled") and inputs is not None:
            names = list(inputs[spec["scores"]])  # the pool's order
            pooled = [np.asarray(actual[n]) for n in names]
            if all(
                a.dtype == np.bool_ and a.shape == np.shape(expected[n])
                for n, a in zip(names, pooled)
            ):
                alive = inputs.get(spec.get("alive", ""))
                if tie_check(
                    {n: expected[n] for n in names},
                    dict(zip(names, pooled)),
                    {n: inputs[spec["scores"]][n] for n in names},
                    None if alive is None else {n: alive[n] for n in names},
                ):
                    return None
        diffs = [
            _compare(
                expected[k],
                actual[k],
                tol,
                f"{where}[{k!r}]",
                inputs,
                tie_check,
                k,
                _part(scale, k),
            )
            for k in expected
        ]
        found = [d for d in diffs if d]
        return "\n".join(found) if found else None
    if isinstance(expected, list):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            n = len(actual) if isinstance(actual, (list, tuple)) else type(actual).__name__
            return f"{where}: expected a list of {len(expected)}, got {n}"
        diffs = [
            _compare(e, a, tol, f"{where}[{i}]", inputs, tie_check, key, _part(scale, i))
            for i, (e, a) in enumerate(zip(expected, actual))
        ]
        found = [d for d in diffs if d]
        return "\n".join(found) if found else None
    if isinstance(expected, np.ndarray):
        arr, problem = _as_array(actual, expected, where)
        if problem:
            return problem
        act = cast(np.ndarray, arr)  # no problem: converted
        if expected.dtype == np.bool_:
            if np.array_equal(act, expected):
                return None
            ties = _tie_inputs(inputs, tol, key)
            if tie_check is not None and ties is not None and tie_check(expected, act, *ties):
                return None
            return _mask_diff(expected, act, where)
        if expected.dtype.kind in "iu":
            if np.array_equal(act, expected):
                return None
            bad = act != expected
            return (
                f"{where}: {int(bad.sum())} of {expected.size} integers differ; first at "
                f"{_indices(np.argwhere(bad))}: expected {expected[bad][:MAX_SHOWN].tolist()}, "
                f"got {act[bad][:MAX_SHOWN].tolist()}"
            )
        act = act.astype(np.float64)
        s = _leaf_scale(scale, expected.shape, where)
        bad = outside(expected, act, tol, s)
        return _float_diff(expected, act, bad, where, tol, s) if bad.any() else None
    if isinstance(expected, bool) or isinstance(expected, str) or expected is None:
        return (
            None
            if (actual == expected and type(actual) is type(expected))
            else f"{where}: expected {expected!r}, got {actual!r}"
        )
    if isinstance(expected, int):
        if isinstance(actual, (bool, np.bool_)) or not isinstance(actual, (int, np.integer)):
            return f"{where}: expected the integer {expected}, got {actual!r} ({type(actual).__name__})"
        return (
            None if int(actual) == expected else f"{where}: expected {expected}, got {int(actual)}"
        )
    if isinstance(expected, float):
        if isinstance(actual, np.ndarray) and actual.ndim == 0 and actual.dtype.kind in "fiu":
            actual = actual.item()
        if not isinstance(actual, (float, int, np.floating, np.integer)) or isinstance(
            actual, bool
        ):
            return f"{where}: expected a float, got {actual!r} ({type(actual).__name__})"
        e, a = np.asarray(expected), np.asarray(float(actual))
        if outside(e, a, tol, _leaf_scale(scale, (), where)).any():
            return (
                f"{where}: expected {_fmt(expected)}, got {_fmt(float(actual))} "
                f"(|diff| {abs(float(actual) - expected):.3g}; tolerance {_tol_text(tol)})"
            )
        return None
    raise TypeError(f"cannot compare an expected value of type {type(expected).__name__}")


def _leaf_scale(scale: Any, shape: tuple, where: str) -> np.ndarray | None:
    """The scale of one float leaf as an array of ``shape`` (None when not a 'close' tolerance)."""
    if scale is None:
        return None
    s = np.asarray(scale, dtype=np.float64)
    if s.shape != shape and s.ndim != 0:
        raise ValueError(
            f"{where}: the tolerance scale has shape {s.shape}, the expected value {shape}"
        )
    return np.broadcast_to(s, shape)


def outside(
    expected: np.ndarray, actual: np.ndarray, tol: dict, scale: np.ndarray | None
) -> np.ndarray:
    """Bool array: the float entries of ``actual`` outside the tolerance (NaN always outside).

    ``scale`` is the entries' scale (``tol['scale']``'s part for this array) for a
    'close' tolerance, None for an exact one.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        if tol.get("kind") == "close":
            if scale is None:
                raise ValueError("a 'close' tolerance needs a scale for every float")
            ok = np.abs(actual - expected) <= tol["rel"] * scale
        else:
            ok = actual == expected
        if tol.get("signed_zeros"):
            zero = expected == 0
            ok &= ~zero | ((actual == 0) & (np.signbit(actual) == np.signbit(expected)))
    return ~ok | np.isnan(actual)
