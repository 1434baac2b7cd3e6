"""Correct rounding to float64 and distances in units in the last place."""

from __future__ import annotations

import math
import struct
from fractions import Fraction

from mpmath import mpf

U = 2.0**-53  # unit roundoff of float64 (half an ulp of 1)


def exact(x: mpf | float | Fraction) -> Fraction:
    """The exact rational value of an mpf (or float, or Fraction)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, float):
        return Fraction(x)
    sign, man, exp, _ = x._mpf_
    if not man:
        if exp:  # inf or nan
            raise ValueError(f"not a finite number: {x}")
        return Fraction(0)
    value = Fraction(man * 2**exp) if exp >= 0 else Fraction(man, 2**-exp)
    return -value if sign else value


def to_mpf(x: mpf | float | Fraction) -> mpf:
    """x as an mpf at the working precision; mpmath 1.3 does not take a Fraction itself."""
    if isinstance(x, Fraction):
        return mpf(x.numerator) / x.denominator
    return mpf(x)


def round_to_float(x: mpf | Fraction) -> float:
    """The float64 nearest to x (ties to even), subnormals included: CPython's int / int."""
    q = exact(x)
    return q.numerator / q.denominator


def _ordinal(x: float) -> int:
    """Position of x on the line of float64 values (-0.0 and +0.0 share 0)."""
    i = struct.unpack("<q", struct.pack("<d", x))[0]
    return i if i >= 0 else -(i & 0x7FFFFFFFFFFFFFFF)


def ulp_distance(a: float, b: float) -> int:
    """How many float64 values lie between a and b, counting b (0 when equal)."""
    return abs(_ordinal(a) - _ordinal(b))


def ulp(x: float) -> float:
    """Spacing of float64 at x (the smallest subnormal at 0)."""
    return math.ulp(abs(x))
