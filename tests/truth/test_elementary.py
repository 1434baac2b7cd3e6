"""The reference's elementary functions against mpmath: activations, their derivatives, softmax.

Every derivative and every softmax quantity must be within a few ulps of its
exact value at the float64 argument, over the whole range, saturation and the
neighbourhood of 0 included (where 1 - tanh^2, s (1 - s), 1 - 2 s and 1 - p
lose their digits when written as in the formulas).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mpmath import mp, mpf

from refprune.activations import get_activation, softmax_parts

from .ulps import round_to_float, ulp_distance

ULPS = 4
ARGUMENTS = [
    0.0,
    5e-324,
    1e-300,
    1e-17,
    1e-9,
    1e-3,
    0.1,
    0.5,
    1.0,
    2.5,
    7.0,
    18.0,
    19.5,
    20.0,
    25.0,
    37.0,
    40.0,
    100.0,
    300.0,
    700.0,
    750.0,
]


def _exact(name: str, z: float) -> tuple[mpf, mpf]:
    x = mpf(z)
    if name == "tanh":
        t, sech2 = mpmath.tanh(x), 1 / mpmath.cosh(x) ** 2
        return sech2, -2 * t * sech2
    s, s_minus = 1 / (1 + mpmath.exp(-x)), 1 / (1 + mpmath.exp(x))
    return s * s_minus, s * s_minus * -mpmath.tanh(x / 2)  # 1 - 2 s = -tanh(z / 2)


def _check(name: str, zs: list[float]) -> None:
    act = get_activation(name)
    z = np.array(zs, dtype=np.float64)
    first, second = act.first(z), act.second(z)
    with mp.workdps(60):
        for zi, f1, f2 in zip(zs, first, second):
            e1, e2 = _exact(name, zi)
            assert ulp_distance(float(f1), round_to_float(e1)) <= ULPS, (name, zi, "first")
            assert ulp_distance(float(f2), round_to_float(e2)) <= ULPS, (name, zi, "second")


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_activation_derivatives_within_a_few_ulps(name: str) -> None:
    _check(name, ARGUMENTS + [-z for z in ARGUMENTS])


@given(st.floats(min_value=-745.0, max_value=745.0, allow_nan=False))
def test_activation_derivatives_within_a_few_ulps_anywhere(z: float) -> None:
    _check("tanh", [z])
    _check("sigmoid", [z])


def _softmax_exact(f: list[float]) -> tuple[list[mpf], list[mpf], list[mpf]]:
    e = [mpmath.exp(mpf(x)) for x in f]
    total = mpmath.fsum(e)
    p = [x / total for x in e]
    q = [mpmath.fsum(e[:k] + e[k + 1 :]) / total for k in range(len(f))]
    return [mpmath.log(x) for x in p], p, q


def _softmax_check(f: list[float]) -> None:
    logp, p, q = softmax_parts(np.array([f]))
    with mp.workdps(80):
        e_logp, e_p, e_q = _softmax_exact(f)
        for got, want, what in [(logp[0], e_logp, "log p"), (p[0], e_p, "p"), (q[0], e_q, "1 - p")]:
            for k, (g, w) in enumerate(zip(got, want)):
                # p_k = exp(f_k - f_max - log1p(r)) carries the conditioning of its argument:
                # kappa = |f_k| + max |f| (rounding f_k - f_max moves p_k by that many u)
                kappa = 1 + abs(f[k]) + max(abs(x) for x in f)
                tol = ULPS * (2.0**-52 * abs(w) * kappa + 5e-324)  # subnormals: absolute
                if what == "log p":
                    tol = ULPS * 2.0**-52 * (abs(w) + max(abs(x) for x in f))
                assert abs(mpf(float(g)) - w) <= tol, (f, what, k, float(g), float(w))


@pytest.mark.parametrize(
    "f",
    [
        [0.0, 0.0],
        [100.0, 0.0, -3.0],
        [40.0, 0.0],
        [0.0, 40.0, 39.0],
        [1e-20, 0.0],
        [745.0, 0.0],
        [-700.0, 20.0, 20.0],
    ],
)
def test_softmax_parts_keeps_the_complement(f: list[float]) -> None:
    _softmax_check(f)


@given(
    st.lists(st.floats(min_value=-200.0, max_value=200.0, allow_nan=False), min_size=2, max_size=5)
)
def test_softmax_parts_anywhere(f: list[float]) -> None:
    _softmax_check(f)
