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
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np


class Activation(NamedTuple):
    name: str
    value: Callable[[np.ndarray], np.ndarray]
    first: Callable[[np.ndarray], np.ndarray]
    second: Callable[[np.ndarray], np.ndarray]
    piecewise_linear: bool


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only, so no overflow warning for large |z|
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_first(z: np.ndarray) -> np.ndarray:
    s = _sigmoid(z)
    return s * (1.0 - s)


def _sigmoid_second(z: np.ndarray) -> np.ndarray:
    s = _sigmoid(z)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _tanh_first(z: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(z) ** 2


def _tanh_second(z: np.ndarray) -> np.ndarray:
    t = np.tanh(z)
    return -2.0 * t * (1.0 - t * t)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", lambda z: np.maximum(z, 0.0),
                       lambda z: (z > 0).astype(z.dtype),
                       lambda z: np.zeros_like(z), True),
    "tanh": Activation("tanh", np.tanh, _tanh_first, _tanh_second, False),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_first, _sigmoid_second, False),
    "identity": Activation("identity", lambda z: z.copy(), lambda z: np.ones_like(z),
                           lambda z: np.zeros_like(z), True),
}


def get_activation(name: str) -> Activation:
    """Return the activation called ``name`` (one of ``ACTIVATIONS``)."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string, got {type(name).__name__}")
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
