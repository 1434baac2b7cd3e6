"""Activation functions with their first and second derivatives.

The one definition of each activation, shared by the autograd engine
(``refprune.autograd``) and the explicit curvature code (``refprune.curvature``),
so the two independent derivative paths agree on what they differentiate.

========  ===================  ======================  ===========================
name      sigma(z)             sigma'(z)               sigma''(z)
========  ===================  ======================  ===========================
relu      max(z, 0)            1 if z > 0 else 0       0
tanh      tanh(z)              1 - tanh(z)**2          -2 tanh(z) (1 - tanh(z)**2)
sigmoid   1 / (1 + exp(-z))    s (1 - s)               s (1 - s) (1 - 2 s)
identity  z                    1                       0
========  ===================  ======================  ===========================

ReLU's derivative at exactly 0 is taken as 0 (as PyTorch and JAX do).
ReLU and identity are piecewise linear: sigma'' = 0 almost everywhere, which the
Hessian-diagonal code uses to pick its cheaper exact route.

The derivatives are evaluated in forms equal to the table's that lose no digits
in float64. Written as in the table, 1 - tanh(z)**2 and 1 - s subtract two
nearly equal numbers once |z| grows (at |z| = 20 tanh(z) rounds to 1.0 and the
derivative to 0.0, whose true value is 1.7e-17); 1 - 2 s does the same near
z = 0. With e = exp(-2|z|) for tanh and e = exp(-|z|) for the sigmoid, both in
(0, 1]:

    1 - tanh(z)**2 = 4 e / (1 + e)**2         s (1 - s) = e / (1 + e)**2
    1 - 2 s = -tanh(z / 2)

so every entry is within a few ulps of the exact derivative at the float64 z.

``softmax_parts`` does the same for the softmax of the cross-entropy loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray


class Activation(NamedTuple):
    name: str
    value: Callable[[np.ndarray], np.ndarray]
    first: Callable[[np.ndarray], np.ndarray]
    second: Callable[[np.ndarray], np.ndarray]
    piecewise_linear: bool


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    # exp of a non-positive number only, so no overflow warning for large |z|
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_first(z: NDArray[np.float64]) -> NDArray[np.float64]:
    e = np.exp(-np.abs(z))
    return e / ((1.0 + e) * (1.0 + e))  # s (1 - s)


def _sigmoid_second(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return _sigmoid_first(z) * -np.tanh(0.5 * z)  # s (1 - s) (1 - 2 s)


def _tanh_first(z: NDArray[np.float64]) -> NDArray[np.float64]:
    e = np.exp(-2.0 * np.abs(z))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))  # 1 - tanh(z)**2


def _tanh_second(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return -2.0 * np.tanh(z) * _tanh_first(z)  # -2 tanh(z) (1 - tanh(z)**2)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(
        "relu",
        lambda z: np.maximum(z, 0.0),
        lambda z: (z > 0).astype(z.dtype),
        lambda z: np.zeros_like(z),
        True,
    ),
    "tanh": Activation("tanh", np.tanh, _tanh_first, _tanh_second, False),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_first, _sigmoid_second, False),
    "identity": Activation(
        "identity", lambda z: z.copy(), lambda z: np.ones_like(z), lambda z: np.zeros_like(z), True
    ),
}


def softmax_parts(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log softmax, softmax and its complement along the last axis: (log p, p, 1 - p).

    With m the (first) largest entry of a row and r = sum_{k != m} exp(f_k - f_m),
    the normaliser is log sum_k exp(f_k) = f_m + log1p(r), so

        log p_k = (f_k - f_m) - log1p(r),    p_k = exp(log p_k),
        1 - p_m = r / (1 + r),               1 - p_k = 1 - p_k (k != m).

    Only p_m can exceed 1/2, so only 1 - p_m is at risk of cancellation, and it
    is formed from the other classes: a saturated softmax (1 - p_m < 1e-8, or
    even below 1e-16 where p_m rounds to 1.0) keeps all its digits. log1p keeps
    log p_m = -log1p(r) accurate for the same rows.
    """
    m = np.argmax(f, axis=-1)[..., None]
    shifted = f - np.take_along_axis(f, m, axis=-1)
    e = np.exp(shifted)
    np.put_along_axis(e, m, 0.0, axis=-1)
    r = e.sum(axis=-1, keepdims=True)
    logp = shifted - np.log1p(r)
    p = np.exp(logp)
    q = 1.0 - p
    np.put_along_axis(q, m, r / (1.0 + r), axis=-1)
    return logp, p, q


def get_activation(name: str) -> Activation:
    """Return the activation called ``name`` (one of ``ACTIVATIONS``)."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string, got {type(name).__name__}")
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
