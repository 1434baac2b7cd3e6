"""The families of checks: one module per family, each with its golden cases and its properties.

A family module defines ``FAMILY``, a ``Family``: the algorithm it covers (the
text written into the golden file), the flags its cases use (each defined once),
a function that lists its golden cases, the tolerance of each operation's output,
and its Hypothesis properties. ``FAMILIES`` lists the families in run order.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..accuracy import mirror
from ..backend import OPERATIONS, NotProvided
from ..compare import compare

EXACT: dict[str, Any] = {"kind": "exact"}
SIGNED_EXACT: dict[str, Any] = {"kind": "exact", "signed_zeros": True}

# Flags the generator adds by itself, defined once for every family.
COMMON_NOTES: dict[str, str] = {
    "signed-zeros": "zeros are compared with their sign: the specification promises +0.0 at "
    "pruned and dropped entries (and a copied -0.0 stays -0.0)",
}


def close(expected: Any, rel: float = 1e-12, floor: float = 1.0) -> dict[str, Any]:
    """A uniform 'close' tolerance for properties: |x - e| <= rel * max(floor, max |expected|).

    Golden cases get per-entry scales instead (``conformance.accuracy.entry_scales``).
    """
    uniform = max(floor, _max_abs(expected))
    return {
        "kind": "close",
        "rel": rel,
        "scale": mirror(
            expected,
            lambda path, leaf: (
                np.full(np.shape(leaf), uniform) if isinstance(leaf, np.ndarray) else uniform
            ),
        ),
    }


def relative(expected: Any, rel: float) -> dict[str, Any]:
    """A 'close' tolerance relative to each entry: |x - e| <= rel * |e|."""
    return {
        "kind": "close",
        "rel": rel,
        "scale": mirror(
            expected, lambda path, leaf: np.abs(leaf) if isinstance(leaf, np.ndarray) else abs(leaf)
        ),
    }


def _max_abs(value: Any) -> float:
    if isinstance(value, dict):
        return max((_max_abs(v) for v in value.values()), default=0.0)
    if isinstance(value, (list, tuple)):
        return max((_max_abs(v) for v in value), default=0.0)
    if isinstance(value, np.ndarray):
        return float(np.max(np.abs(value))) if value.size and value.dtype.kind == "f" else 0.0
    if isinstance(value, float):
        return abs(value)
    return 0.0


@dataclass
class CaseSpec:
    """A golden case before it has an id: ``key`` is its stable name (unique in the family).

    ``expected`` is computed from the reference backend when omitted; ``tolerance``
    from the family's ``tolerance`` function.
    """

    key: str
    op: str
    comment: str
    flags: list[str]
    inputs: dict[str, Any]
    expected: dict[str, Any] | None = None
    tolerance: dict[str, dict[str, Any]] | None = None


class Checker:
    """What a property sees: the backend under test, the reference, and comparison helpers.

    Every call to the backend is recorded, so a failure can be reproduced by
    pasting the recorded calls.
    """

    def __init__(
        self, family: Family, backend: Any, reference: Any, tie_check=None, profile: Any = None
    ):
        self.family = family
        self.profile = profile
        self.backend = backend
        self.reference = reference
        self.tie_check = tie_check
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def begin(self) -> None:
        self.calls = []

    def call(self, op: str, **kwargs: Any) -> Any:
        """Call the backend (keyword arguments only); NotProvided propagates."""
        self.calls.append((op, kwargs))
        return getattr(self.backend, op)(**copy.deepcopy(kwargs))

    def ref(self, op: str, **kwargs: Any) -> Any:
        return getattr(self.reference, op)(**kwargs)

    def agree(self, op: str, **kwargs: Any) -> Any:
        """Differential check: the backend's answer equals the reference's within the tolerance.

        An example the reference refuses (ValueError) is discarded, not counted.
        """
        try:
            expected = self.ref(op, **kwargs)
        except ValueError:
            from hypothesis import reject

            reject()
        actual = self.call(op, **kwargs)
        self.same(op, expected, actual, kwargs)
        return actual

    def same(
        self, op: str, expected: Any, actual: Any, inputs: dict[str, Any], tol: Any = None
    ) -> None:
        """``actual`` equals ``expected`` within ``tol`` (default: the family's tolerance)."""
        name = OPERATIONS[op].output
        if tol is None:
            tol = self.family.tolerance(op, expected, inputs)
        if self.profile is not None:
            tol = self.profile.honour(tol)
        diff = compare(expected, actual, tol, where=name, inputs=inputs, tie_check=self.tie_check)
        if diff:
            raise AssertionError(f"{op} differs from the reference:\n{diff}")

    @staticmethod
    def require(condition: Any, message: str | Callable[[], str]) -> None:
        """Assert ``condition``; ``message`` may be a callable, evaluated only on failure."""
        if not condition:
            raise AssertionError(message() if callable(message) else message)


@dataclass
class Property:
    """A Hypothesis property of one family.

    ``name`` is unique across families (``family/short-name``) and is what an
    xfails file lists. ``ops`` are the backend operations it needs (all must be
    provided). ``strategy`` draws one example; ``check(checker, example)``
    asserts the property, calling the backend through the checker.
    """

    name: str
    ops: tuple[str, ...]
    summary: str
    strategy: Any
    check: Callable[[Checker, Any], None]


@dataclass
class Family:
    name: str
    algorithm: str
    notes: dict[str, str]
    cases: Callable[[], Iterable[CaseSpec]]
    tolerance: Callable[[str, Any, dict[str, Any]], dict[str, Any]]
    properties: list[Property] = field(default_factory=list)

    @property
    def operations(self) -> list[str]:
        return [op for op, spec in OPERATIONS.items() if spec.family == self.name]


def family_modules() -> list[str]:
    return [
        "curvature",
        "scores",
        "masks",
        "profiles",
        "schedules",
        "sparse_approx",
        "lottery",
        "sparse_execution",
        "training",
        "controls",
    ]


def load_families() -> dict[str, Family]:
    """Every family whose module is importable, in run order."""
    import importlib

    out = {}
    for name in family_modules():
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"{__name__}.{name}"):
                continue
            raise
        out[name] = module.FAMILY
    return out


def is_half_way(x: float) -> bool:
    return x - math.floor(x) == 0.5


__all__ = [
    "COMMON_NOTES",
    "CaseSpec",
    "Checker",
    "EXACT",
    "Family",
    "NotProvided",
    "Property",
    "SIGNED_EXACT",
    "close",
    "is_half_way",
    "load_families",
    "relative",
]
