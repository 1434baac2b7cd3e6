"""Compare every float a golden case expects with its high-precision truth.

For each float output entry y (the reference's answer, stored in the golden file)
and its truth t (computed here in mpmath from the case's inputs alone):

* ``ulps``: the number of float64 values between y and round(t), the correctly
  rounded truth (0: the reference is correctly rounded);
* ``scale`` S = sum_x |x * dt/dx| over every float input entry x of the case: how
  much t moves when every input moves by one relative unit. S / |t| is the
  componentwise relative condition number kappa (Higham, "Accuracy and
  Stability of Numerical Algorithms", 2nd ed., section 7.2, for linear systems;
  here for every output). ``scale_rule`` lists the operations whose S is
  defined otherwise (OBS, ISTA / IHT, schedules, copies);
* the bound (``conformance.accuracy``): |y - t| <= U * 2**-52 * max(|t|, S).

The truth is computed at 30 and then 50 significant digits (and at 80, 130, ...
until two successive precisions agree to 20 digits of |t| + S at every entry),
so cancellation inside the truth's own evaluation is caught rather than
trusted. S comes from one-sided differences x -> x (1 + h), h = 10**(-digits/3),
at 30 digits (at the settled precision where that is above 50).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import mpmath
from mpmath import mp, mpf

from . import curvature, lottery, schedules, scores, sparse_approx, sparse_execution
from .cases import Array, Case
from .network import KINKS
from .ulps import U, round_to_float, ulp, ulp_distance

#: op -> truth(op, inputs, expected); ``expected`` is read only for imp_round's masks
TRUTHS: dict[str, Callable[[str, dict[str, Any], Any], dict[str, Any]]] = {}
#: outputs that are copies of inputs or one IEEE operation on them: 0 ulps required
CORRECTLY_ROUNDED = ("hard_threshold", "soft_threshold", "hard_threshold_prox", "imp_round")
for _module in (curvature, scores, sparse_approx, schedules, sparse_execution):
    for _op in _module.OPS:
        TRUTHS[_op] = lambda op, inputs, expected, _m=_module: _m.truth(op, inputs)
TRUTHS["imp_round"] = lottery.truth
ALL = frozenset({"*"})


def scale_rule(op: str, inputs: dict[str, Any]) -> tuple[frozenset, Callable | None]:
    """Which inputs S leaves out of the differences, and the closed-form share it adds.

    * Hutchinson's probes: their share in closed form (``curvature.probe_scale``).
    * OBS (scores rule "obs", ``obs_prune``): the share of entrywise perturbations of
      the matrix H_FF + lambda I is added (``scores.obs_*_matrix_scale``).
    * ISTA / IHT: S is the drift bound B_n of the iteration alone
      (``sparse_approx.drift_scale``).
    * Schedules: S is the running error bound of the documented float64 expression
      (``schedules.running_scale``).
    * Outputs that are copies of inputs or one correctly rounded operation
      (thresholds, the non-quadratic exact problems, imp_round): no S; these must be
      correctly rounded (0 ulps), so none is needed.
    """
    if op == "hutchinson_diag":
        return frozenset({"probes"}), lambda i: curvature.probe_scale(i)
    if op == "scores":
        return frozenset(), scores.obs_scores_matrix_scale
    if op == "obs_prune":
        return frozenset(), scores.obs_prune_matrix_scale
    if op in sparse_approx.ITERATIONS:
        return ALL, lambda i: sparse_approx.drift_scale(op, i)
    if op == "schedule":
        return ALL, lambda i: schedules.running_scale(op, i)
    if op in CORRECTLY_ROUNDED or op == "sparse_approx_exact" and inputs["problem"] != "quadratic":
        return ALL, None
    return frozenset(), None


PRECISIONS = (30, 50, 80, 130, 210, 340)
AGREE = mpf(10) ** -20
#: A settled truth below NOISE * S is the rounding noise of the evaluation's own terms
#: (an exact zero reached through cancellation) and is taken as 0.
NOISE = mpf(10) ** -40


@dataclass
class Entry:
    path: str
    reference: float
    truth: mpf
    scale: mpf = field(default_factory=lambda: mpf(0))
    rounded: float = field(init=False)
    ulps: int = field(init=False)

    def __post_init__(self) -> None:
        self.rounded = round_to_float(self.truth)
        self.ulps = ulp_distance(self.reference, self.rounded)

    @property
    def error(self) -> mpf:
        return abs(mpf(self.reference) - self.truth)

    @property
    def kappa(self) -> float:
        """S / |t| (inf where the truth is 0 and S is not)."""
        if self.truth == 0:
            return 0.0 if self.scale == 0 else math.inf
        return float(self.scale / abs(self.truth))

    def allowed(self, ulps: float, cond_ulps: float) -> mpf:
        """The absolute error the bound allows: ulps * ulp(t) + cond_ulps * u * S."""
        return ulps * mpf(ulp(self.rounded)) + cond_ulps * mpf(U) * self.scale

    def in_units_of(self, ulps: float, cond_ulps: float) -> float:
        """|y - t| divided by the allowed error (<= 1 passes)."""
        allowed = self.allowed(ulps, cond_ulps)
        if allowed == 0:
            return 0.0 if self.error == 0 else math.inf
        return float(self.error / allowed)


# ------------------------------------------------------------------ structure walking
def leaves(expected: Any, truth: Any, path: str = "") -> Iterator[tuple[str, float, mpf]]:
    """(path, expected float, truth) for every float of ``expected``, in order."""
    if isinstance(expected, dict):
        for k in expected:
            if k not in truth:  # not compared (no floats in it)
                if any(True for _ in leaves(expected[k], expected[k])):
                    raise AssertionError(f"{path}/{k}: floats without a truth")
                continue
            yield from leaves(expected[k], truth[k], f"{path}/{k}" if path else k)
    elif isinstance(expected, list):
        for i, (e, t) in enumerate(zip(expected, truth, strict=True)):
            yield from leaves(e, t, f"{path}[{i}]")
    elif isinstance(expected, Array):
        if expected.dtype == "float64":
            if tuple(truth.shape) != tuple(expected.shape):
                raise AssertionError(f"{path}: truth shape {truth.shape} != {expected.shape}")
            for i, (e, t) in enumerate(zip(expected.data, truth.data, strict=True)):
                yield f"{path}[{i}]", e, t
    elif isinstance(expected, float):
        yield path, expected, truth


def discrete_mismatches(expected: Any, truth: Any, path: str = "") -> list[str]:
    """Paths where a discrete output (bool or int array, int, str) differs from the truth's."""
    if isinstance(expected, dict):
        out = []
        for k in expected:
            if k not in truth:
                continue
            out += discrete_mismatches(expected[k], truth[k], f"{path}/{k}" if path else k)
        return out
    if isinstance(expected, list):
        return [
            m
            for i, (e, t) in enumerate(zip(expected, truth, strict=True))
            for m in discrete_mismatches(e, t, f"{path}[{i}]")
        ]
    if isinstance(expected, Array):
        if expected.dtype == "float64":
            return []
        same = tuple(expected.shape) == tuple(truth.shape) and list(expected.data) == list(
            truth.data
        )
        return [] if same else [path]
    if isinstance(expected, (int, str, bool)) and not isinstance(expected, float):
        return [] if expected == truth else [path]
    return []


def truth_values(truth: Any, expected: Any) -> list[mpf]:
    return [t for _, _, t in leaves(expected, truth)]


def float_inputs(inputs: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths to every float64 input entry (scalars and ndarray entries)."""
    if isinstance(inputs, dict):
        for k, v in inputs.items():
            yield from float_inputs(v, path + (k,))
    elif isinstance(inputs, list):
        for i, v in enumerate(inputs):
            yield from float_inputs(v, path + (i,))
    elif isinstance(inputs, Array):
        if inputs.dtype == "float64":
            for i in range(inputs.size):
                yield path + (("data", i),)
    elif isinstance(inputs, float):
        yield path


def _get(tree: Any, path: tuple) -> Any:
    for p in path:
        tree = tree.data[p[1]] if isinstance(p, tuple) else tree[p]
    return tree


def _scaled(inputs: dict[str, Any], path: tuple, factor: mpf) -> dict[str, Any]:
    """A copy of ``inputs`` with one float entry multiplied by ``factor``."""
    out = copy.copy(inputs)
    node, parent = out, None
    for depth, p in enumerate(path):
        if isinstance(p, tuple):  # an ndarray entry
            arr = copy.copy(node)
            arr.data = list(arr.data)
            arr.data[p[1]] = mpf(arr.data[p[1]]) * factor
            _set(parent, path[depth - 1], arr)
            return out
        child = node[p]
        if isinstance(child, (float, mpf)):
            node[p] = mpf(child) * factor
            return out
        child = copy.copy(child)
        node[p] = child
        parent, node = node, child
    return out


def _set(parent: Any, key: Any, value: Any) -> None:
    parent[key] = value


# ------------------------------------------------------------------ evaluation
def _run(op: str, inputs: dict[str, Any], expected: Any, digits: int) -> tuple[Any, list[mpf]]:
    with mp.workdps(digits):
        result = TRUTHS[op](op, inputs, expected)
        return result, truth_values(result, expected)


def sensitivity(op: str, inputs: dict[str, Any], expected: Any, digits: int) -> list[mpf]:
    """S_i = sum_x |x dt_i/dx| by one-sided differences x -> x (1 + h), h = 10**(-digits/3).

    Where the evaluation met a kink (a ReLU input of exactly 0: ``network.KINKS``)
    each term is the smaller of the differences towards x (1 + h) and x (1 - h), so
    the case stays on the branch it sits on (the other side sees the jump).
    Inputs a family treats in closed form (``scale_rule``) are skipped here.
    """
    skip, extra = scale_rule(op, inputs)
    with mp.workdps(digits):
        h = mpf(10) ** (-(digits // 3))
        KINKS.clear()
        _, base = _run(op, inputs, expected, digits)
        both_sides = bool(KINKS)
        scale = [mpf(0)] * len(base)
        for path in float_inputs(inputs):
            if skip is ALL or path[0] in skip or _get(inputs, path) == 0:
                continue  # a relative change of 0 is 0
            _, up = _run(op, _scaled(inputs, path, 1 + h), expected, digits)
            if both_sides:
                _, down = _run(op, _scaled(inputs, path, 1 - h), expected, digits)
                terms = [min(abs(u - b), abs(b - d)) for u, b, d in zip(up, base, down)]
            else:
                terms = [abs(u - b) for u, b in zip(up, base)]
            scale = [s + t / h for s, t in zip(scale, terms)]
        if extra is not None:
            scale = [s + e for s, e in zip(scale, truth_values(extra(inputs), expected))]
    return scale


def settled(op: str, inputs: dict[str, Any], expected: Any) -> tuple[Any, int, list[mpf]]:
    """The truth, the digits it was computed with, and the scales S.

    Settled: two successive precisions agree to 20 digits of |t| + S at every entry;
    the truth is the result at the higher one. Where that took more than 50 digits
    (a tiny truth made of large terms), S is recomputed at those digits, so the
    differences' own rounding does not inflate it.
    """
    digits = PRECISIONS[0]
    _, previous = _run(op, inputs, expected, digits)
    scale = sensitivity(op, inputs, expected, digits)
    for higher in PRECISIONS[1:]:
        result, current = _run(op, inputs, expected, higher)
        if all(abs(c - p) <= AGREE * (abs(c) + s) for c, p, s in zip(current, previous, scale)):
            break
        previous = current
    else:
        raise AssertionError(f"{op}: the truth does not settle up to {higher} digits")
    if higher > PRECISIONS[1]:
        scale = sensitivity(op, inputs, expected, higher)
    return result, higher, scale


@dataclass
class CaseResult:
    case: Case
    digits: int
    entries: list[Entry]
    mismatches: list[str]  # discrete outputs that differ from the exact decisions


def check_case(case: Case) -> CaseResult:
    truth, digits, scale = settled(case.op, case.inputs, case.expected)
    entries = [
        Entry(p, e, t if abs(t) > NOISE * s else mpf(0), s)
        for (p, e, t), s in zip(leaves(case.expected, truth), scale)
    ]
    return CaseResult(case, digits, entries, discrete_mismatches(case.expected, truth))


def supported(case: Case) -> bool:
    """Whether the case's outputs have a truth here (``scores`` with rule "random" has none)."""
    return case.op in TRUTHS and (case.op != "scores" or scores.has_truth(case.op, case.inputs))


__all__ = ["CaseResult", "Entry", "check_case", "leaves", "mpmath", "supported"]
