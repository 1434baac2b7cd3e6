"""A small reverse-mode automatic differentiation engine over NumPy arrays.

The shape of karpathy/micrograd, vectorised: a ``Tensor`` holds an array
(``data``), its gradient (``grad``, filled by ``backward``), and how it was made
(its parents and a closure that pushes its gradient to them). Each operation
below is one small function whose backward rule sits right under its forward
line. ``Tensor.backward`` is a topological sort followed by the closures in
reverse order; gradients accumulate (``+=``) into every tensor that
``requires_grad``.

Broadcasting: ``add`` and ``mul`` broadcast like NumPy; their backward sums the
gradient over the broadcast axes (``_unbroadcast``) so each parent receives a
gradient of its own shape.

Losses are means over the batch:
    cross_entropy(z, y) = -1/N sum_n log softmax(z_n)[y_n]
    mse(p, t)           = 1/(N K) sum_{n,k} (p_nk - t_nk)**2   (PyTorch's MSELoss 'mean')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from .activations import get_activation, softmax_parts


class Tensor:
    """An array node in the computation graph."""

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "op")

    def __init__(
        self,
        data: ArrayLike,
        requires_grad: bool = False,
        _parents: Sequence[Tensor] = (),
        op: str = "",
    ):
        self.data = np.asarray(data, dtype=np.float64) if not isinstance(data, np.ndarray) else data
        self.grad: np.ndarray | None = None
        self.requires_grad: bool = requires_grad or any(p.requires_grad for p in _parents)
        self._parents = tuple(_parents)
        self._backward: Callable[[np.ndarray], None] = lambda g: None
        self.op = op

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def _accumulate(self, g: np.ndarray) -> None:
        # Backward rules hand over fresh arrays and ``+`` makes a new one, so no
        # gradient array is ever written in place and none needs copying.
        if self.requires_grad:
            self.grad = g if self.grad is None else self.grad + g

    def backward(self, grad: np.ndarray | None = None) -> None:
        """Fill ``.grad`` of every tensor this one depends on.

        ``grad`` defaults to 1 for a scalar output. Gradients accumulate: call
        ``zero_grad`` on the leaves between independent backward passes.
        """
        order: list[Tensor] = []
        seen: set[int] = set()

        def visit(t: Tensor) -> None:  # iterative would also do; depth is a few dozen ops
            if id(t) in seen or not t.requires_grad:
                return
            seen.add(id(t))
            for p in t._parents:
                visit(p)
            order.append(t)

        visit(self)
        if grad is None:
            if self.data.size != 1:
                raise ValueError("grad must be given for a non-scalar output")
            grad = np.ones_like(self.data)
        self.grad = None
        self._accumulate(np.asarray(grad, dtype=self.data.dtype))
        for t in reversed(order):
            if t.grad is not None:
                t._backward(t.grad)

    def zero_grad(self) -> None:
        self.grad = None

    # operator sugar
    def __add__(self, other: Tensor | ArrayLike) -> Tensor:
        return add(self, as_tensor(other))

    def __radd__(self, other: Tensor | ArrayLike) -> Tensor:
        return add(as_tensor(other), self)

    def __mul__(self, other: Tensor | ArrayLike) -> Tensor:
        return mul(self, as_tensor(other))

    def __rmul__(self, other: Tensor | ArrayLike) -> Tensor:
        return mul(as_tensor(other), self)

    def __neg__(self) -> Tensor:
        return mul(self, as_tensor(-1.0))

    def __sub__(self, other: Tensor | ArrayLike) -> Tensor:
        return add(self, -as_tensor(other))

    def __rsub__(self, other: Tensor | ArrayLike) -> Tensor:
        return add(as_tensor(other), -self)

    def __matmul__(self, other: Tensor | ArrayLike) -> Tensor:
        return matmul(self, as_tensor(other))

    @property
    def T(self) -> Tensor:
        return transpose(self)

    def __repr__(self) -> str:
        return (
            f"Tensor(shape={self.data.shape}, op={self.op!r}, requires_grad={self.requires_grad})"
        )


def as_tensor(x: Tensor | ArrayLike) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float64))


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the axes that broadcasting added or stretched to reach it."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


# ---------------------------------------------------------------- elementwise
def add(a: Tensor, b: Tensor) -> Tensor:
    out = Tensor(a.data + b.data, _parents=(a, b), op="add")

    def backward(g: np.ndarray) -> None:
        a._accumulate(_unbroadcast(g, a.shape))
        b._accumulate(_unbroadcast(g, b.shape))

    out._backward = backward
    return out


def mul(a: Tensor, b: Tensor) -> Tensor:
    out = Tensor(a.data * b.data, _parents=(a, b), op="mul")

    def backward(g: np.ndarray) -> None:  # d(ab) = b da + a db
        if a.requires_grad:
            a._accumulate(_unbroadcast(g * b.data, a.shape))
        if b.requires_grad:
            b._accumulate(_unbroadcast(g * a.data, b.shape))

    out._backward = backward
    return out


def _activation_op(name: str) -> Callable[[Tensor], Tensor]:
    act = get_activation(name)

    def op(a: Tensor) -> Tensor:
        out = Tensor(act.value(a.data), _parents=(a,), op=name)
        out._backward = lambda g: a._accumulate(g * act.first(a.data))  # d sigma(z) = sigma'(z) dz
        return out

    op.__name__ = name
    op.__doc__ = (
        f"Elementwise {name}; backward multiplies by its derivative (refprune.activations)."
    )
    return op


tanh = _activation_op("tanh")
sigmoid = _activation_op("sigmoid")
identity = _activation_op("identity")


def relu(
    a: Tensor,
) -> Tensor:  # written out rather than via _activation_op: the hot path of training
    """max(z, 0); backward passes the gradient where z > 0."""
    positive = a.data > 0
    out = Tensor(np.where(positive, a.data, 0.0), _parents=(a,), op="relu")
    out._backward = lambda g: a._accumulate(np.where(positive, g, 0.0))
    return out


# ---------------------------------------------------------------- linear algebra
def matmul(a: Tensor, b: Tensor) -> Tensor:
    out = Tensor(a.data @ b.data, _parents=(a, b), op="matmul")

    def backward(g: np.ndarray) -> None:
        if a.requires_grad:
            a._accumulate(g @ b.data.T)  # dA = G B^T
        if b.requires_grad:
            b._accumulate((g.T @ a.data).T)  # dB = A^T G, formed as (G^T A)^T so that the
            # gradient of a transposed weight W^T reaches W
            # C-ordered like W (keeps the update fast)

    out._backward = backward
    return out


def transpose(a: Tensor) -> Tensor:
    out = Tensor(a.data.T, _parents=(a,), op="transpose")
    out._backward = lambda g: a._accumulate(g.T)
    return out


# ---------------------------------------------------------------- reductions
def sum(a: Tensor) -> Tensor:  # noqa: A001 - the op's name
    out = Tensor(np.asarray(a.data.sum()), _parents=(a,), op="sum")
    out._backward = lambda g: a._accumulate(np.broadcast_to(g, a.shape).copy())
    return out


def mean(a: Tensor) -> Tensor:
    out = Tensor(np.asarray(a.data.mean()), _parents=(a,), op="mean")
    out._backward = lambda g: a._accumulate(np.broadcast_to(g / a.data.size, a.shape).copy())
    return out


# ---------------------------------------------------------------- losses
def log_softmax(z: Tensor) -> Tensor:
    """log softmax along the last axis: z - max - log1p(sum of the others' exp(z - max)).

    ``activations.softmax_parts`` computes it, with no digits lost when one class
    dominates. d log p_k / dz_j = 1[k = j] - p_j.
    """
    out_data, p, _ = softmax_parts(z.data)
    out = Tensor(out_data, _parents=(z,), op="log_softmax")
    out._backward = lambda g: z._accumulate(g - p * g.sum(axis=-1, keepdims=True))
    return out


def cross_entropy(logits: Tensor, labels: np.ndarray) -> Tensor:
    """Mean over the batch of -log softmax(logits)[label]; one fused, stable node.

    dL/dz = (p - onehot(y)) / N, the target's entry written -(1 - p_y) with 1 - p_y
    from ``activations.softmax_parts`` (no cancellation when p_y is close to 1).
    """
    n = logits.data.shape[0]
    logp, p, q = softmax_parts(logits.data)
    rows = np.arange(n)
    out = Tensor(np.asarray(-logp[rows, labels].mean()), _parents=(logits,), op="cross_entropy")

    def backward(g: np.ndarray) -> None:  # dL/dz = (softmax(z) - onehot(y)) / N
        d = p.copy()
        d[rows, labels] = -q[rows, labels]
        logits._accumulate(d * (g / n))

    out._backward = backward
    return out


def mse(pred: Tensor, target: np.ndarray) -> Tensor:
    """Mean over all entries of (pred - target)**2."""
    diff = pred.data - target
    out = Tensor(np.asarray(np.mean(diff * diff)), _parents=(pred,), op="mse")
    out._backward = lambda g: pred._accumulate(
        diff * (2.0 * g / diff.size)
    )  # dL/dp = 2 (p - t) / (N K)
    return out
