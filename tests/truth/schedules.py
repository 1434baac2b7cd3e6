"""Schedule targets as exact rationals, with the running error bound of their float64 formulas.

A schedule's values and densities are specified as a fixed sequence of float64
operations (docs/schedules.md), so that every language reproduces them bit for
bit. Their truth is the exact value of the same expression over the rationals:

    geometric   values alpha;  densities d_j = d_{j-1} (1 - alpha), d_0 = 1
    one_shot    values s;      densities 1 - s
    cubic       s_j = s_f + (s_i - s_f) u^3,  u = 1 - j / n;   densities 1 - s_j
    linear      s_j = s_i + (s_f - s_i) (j / n);               densities 1 - s_j
    constant    s at every step;                               densities 1 - s

and their scale S is the running error bound of that sequence (Wilkinson): with
every input exact (E = 0) and each operation adding the magnitude of its result,

    E(a + b) = E(a) + E(b) + |a + b|            E(a b) = |a| E(b) + |b| E(a) + |a b|
    E(a / b) = E(a) / |b| + |a| E(b) / b^2 + |a / b|

the float64 result is within u E (to first order) of the truth, u = 2**-53. S =
E is used instead of the inputs' sensitivity because the documented expression,
not only its value, is the specification: at j = 0 the cubic formula is exactly
s_i over the rationals, but float64 rounds s_i - s_f at the scale of s_f first
(s_i = 1e-300, s_f = 1 gives 0.0, as docs/schedules.md says), which the bound
covers and a sensitivity to s_i alone would not.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .cases import Array
from .ulps import exact, to_mpf


@dataclass(frozen=True)
class Run:
    """An exact value and the running error bound (in units of u) of its float64 evaluation."""

    v: Fraction
    e: Fraction = Fraction(0)

    def __add__(self, other: Run) -> Run:
        v = self.v + other.v
        return Run(v, self.e + other.e + abs(v))

    def __sub__(self, other: Run) -> Run:
        v = self.v - other.v
        return Run(v, self.e + other.e + abs(v))

    def __mul__(self, other: Run) -> Run:
        v = self.v * other.v
        return Run(v, abs(self.v) * other.e + abs(other.v) * self.e + abs(v))

    def __truediv__(self, other: Run) -> Run:
        v = self.v / other.v
        return Run(v, self.e / abs(other.v) + abs(self.v) * other.e / other.v**2 + abs(v))


def _in(x: Any) -> Run:
    return Run(exact(x))


def targets(name: str, options: dict[str, Any]) -> tuple[list[Run], list[Run]]:
    """(values, densities) of the schedule, as the documented float64 expressions."""
    one = Run(Fraction(1))
    if name == "geometric":
        alpha = _in(options["alpha"])
        values, densities, d = [], [], one
        for _ in range(int(options["rounds"])):
            d = d * (one - alpha)
            values.append(alpha)
            densities.append(d)
        return values, densities
    if name == "one_shot":
        s = _in(options["sparsity"])
        return [s], [one - s]
    n = int(options["n_steps"])
    if name == "constant":
        values = [_in(options["sparsity"])] * (n + 1)
    else:
        s_i, s_f = _in(options["initial_sparsity"]), _in(options["final_sparsity"])
        values = []
        for j in range(n + 1):
            ratio = Run(Fraction(j)) / Run(Fraction(n))
            if name == "cubic":
                u = one - ratio
                values.append(s_f + (s_i - s_f) * (u * u * u))
            else:  # linear
                values.append(s_i + (s_f - s_i) * ratio)
    return values, [one - s for s in values]


def _array(runs: list[Run], field: str) -> Array:
    return Array("float64", (len(runs),), [to_mpf(getattr(r, field)) for r in runs])


def truth(op: str, inputs: dict[str, Any]) -> dict[str, Any]:
    values, densities = targets(inputs["name"], inputs["options"])
    return {"schedule": {"values": _array(values, "v"), "densities": _array(densities, "v")}}


def running_scale(op: str, inputs: dict[str, Any]) -> dict[str, Any]:
    values, densities = targets(inputs["name"], inputs["options"])
    return {"schedule": {"values": _array(values, "e"), "densities": _array(densities, "e")}}


OPS = ("schedule",)
