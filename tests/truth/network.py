"""The small MLPs of the golden cases, written once over any numbers (mpf or ``Jet``).

Layer l maps a_l to z_{l+1} = W_l a_l + b_l; hidden layers apply sigma, the last
layer is linear (f = z_L). Losses, per batch of N samples with K outputs:

    cross_entropy  L = 1/N sum_n ( log sum_k exp(f_nk) - f_n,y_n )
    mse            L = 1/(N K) sum_{n,k} (f_nk - t_nk)^2

Nothing here is shifted, clipped or rearranged for float safety: mpmath has no
overflow, and the precision is raised until the result is settled (``precision``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mpmath
from mpmath import mpf

from .jets import Jet, Space, apply, value

# ------------------------------------------------------------------ activations
KINKS: set[str] = set()  # names of the kinks an evaluation met (cleared by its caller)


def _relu(z: mpf) -> tuple[mpf, mpf, mpf]:
    if z == 0:
        KINKS.add("relu")
    return (z if z > 0 else mpf(0)), mpf(1 if z > 0 else 0), mpf(0)  # ReLU'(0) = 0


def _tanh(z: mpf) -> tuple[mpf, mpf, mpf]:
    t, sech2 = mpmath.tanh(z), 1 / mpmath.cosh(z) ** 2
    return t, sech2, -2 * t * sech2


def _sigmoid(z: mpf) -> tuple[mpf, mpf, mpf]:
    s, s_minus = 1 / (1 + mpmath.exp(-z)), 1 / (1 + mpmath.exp(z))  # sigma(z), sigma(-z)
    return s, s * s_minus, s * s_minus * (s_minus - s)  # s(1-s), s(1-s)(1-2s)


def _identity(z: mpf) -> tuple[mpf, mpf, mpf]:
    return z, mpf(1), mpf(0)


ACTIVATIONS: dict[str, Callable[[mpf], tuple[mpf, mpf, mpf]]] = {
    "relu": _relu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "identity": _identity,
}


def _exp(z: mpf) -> tuple[mpf, mpf, mpf]:
    e = mpmath.exp(z)
    return e, e, e


def _log(z: mpf) -> tuple[mpf, mpf, mpf]:
    return mpmath.log(z), 1 / z, -1 / z**2


# ------------------------------------------------------------------ parameters
def layer_count(params: dict[str, Any]) -> int:
    return sum(1 for name in params if name.endswith(".weight"))


def param_names(params: dict[str, Any]) -> list[str]:
    """Model order: layers.0.weight, layers.0.bias, layers.1.weight, ..."""
    return [f"layers.{l}.{kind}" for l in range(layer_count(params)) for kind in ("weight", "bias")]


class Net:
    """An MLP given by exact parameter values, masks applied (pruned entries are 0).

    ``flat`` lists (name, index in the flattened array) in flat parameter order;
    ``theta`` holds the effective values theta * M in that order and ``alive`` the mask.
    """

    def __init__(
        self, params: dict[str, Any], masks: dict[str, Any] | None, activation: str
    ) -> None:
        self.names = param_names(params)
        self.L = layer_count(params)
        self.shapes = {n: params[n].shape for n in self.names}
        self.sigma = ACTIVATIONS[activation]
        self.flat: list[tuple[str, int]] = []
        self.theta: list[mpf] = []
        self.alive: list[bool] = []
        for n in self.names:
            values = params[n].data
            mask = masks[n].data if masks is not None and n in masks else [True] * len(values)
            for i, (x, m) in enumerate(zip(values, mask)):
                self.flat.append((n, i))
                self.alive.append(bool(m))
                self.theta.append(mpf(x) if m else mpf(0))
        self.P = len(self.theta)

    def offset(self, name: str) -> int:
        return next(k for k, (n, _) in enumerate(self.flat) if n == name)

    def layers(self, theta: list) -> list[tuple[list[list], list]]:
        """(W_l as rows, b_l) for every layer, from a flat list of numbers."""
        out = []
        for l in range(self.L):
            start = self.offset(f"layers.{l}.weight")
            n_out, n_in = self.shapes[f"layers.{l}.weight"]
            W = [theta[start + i * n_in : start + (i + 1) * n_in] for i in range(n_out)]
            b = theta[start + n_out * n_in : start + n_out * n_in + n_out]
            out.append((W, b))
        return out

    def jets(self, space: Space, directions: list[dict[int, mpf]]) -> list:
        """theta as jets: entry p moves along directions[p]; pruned entries stay constant 0."""
        return [
            space.variable(t, directions[p]) if self.alive[p] else mpf(0)
            for p, t in enumerate(self.theta)
        ]


# ------------------------------------------------------------------ forward pass
def dot(row: list, a: list) -> Any:
    total = mpf(0)
    for w, x in zip(row, a):
        total = total + w * x
    return total


def forward(layers: list, x: list, sigma) -> tuple[list, list, list]:
    """Pre-activations z_1..z_L and activations a_0..a_{L-1} of one sample; f = z_L."""
    a, zs, acts = x, [], [x]
    for l, (W, b) in enumerate(layers):
        z = [dot(row, a) + bi for row, bi in zip(W, b)]  # z_{l+1} = W_l a_l + b_l
        zs.append(z)
        if l < len(layers) - 1:
            a = [apply(zi, sigma) for zi in z]  # a_{l+1} = sigma(z_{l+1})
            acts.append(a)
    return zs, acts, zs[-1]


def sample_loss(f: list, target: Any, loss: str, N: int) -> Any:
    """This sample's share of the mean loss."""
    if loss == "cross_entropy":
        total = mpf(0)
        for fk in f:
            total = total + apply(fk, _exp)
        return (apply(total, _log) - f[int(target)]) * (mpf(1) / N)
    K = len(f)
    total = mpf(0)
    for fk, tk in zip(f, target):
        r = fk - mpf(tk)
        total = total + r * r
    return total * (mpf(1) / (N * K))


def loss(net: Net, theta: list, X: list[list[float]], y: list, loss_name: str) -> Any:
    layers = net.layers(theta)
    N = len(X)
    total = mpf(0)
    for x, t in zip(X, y):
        _, _, f = forward(layers, [mpf(v) for v in x], net.sigma)
        total = total + sample_loss(f, t, loss_name, N)
    return total


def softmax(f: list[mpf]) -> list[mpf]:
    e = [mpmath.exp(fk) for fk in f]
    s = mpmath.fsum(e)
    return [ek / s for ek in e]


__all__ = ["ACTIVATIONS", "Jet", "Net", "forward", "loss", "sample_loss", "softmax", "value"]
