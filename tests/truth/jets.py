"""Second-order forward-mode derivatives over mpmath numbers (truncated Taylor jets).

A ``Jet`` is a number x together with chosen first and second partial derivatives
of it with respect to the free variables t_0 .. t_{n-1} of a ``Space``:

    x = v + sum_i d_i t_i + sum_{(i, j) in pairs} h_ij t_i t_j + (terms not kept)

where d_i = dx/dt_i and h_ij = d2x/(dt_i dt_j) (the coefficient convention of
hyper-dual numbers: the pair (i, i) also holds the full second derivative).
Every arithmetic operation applies the product and chain rules exactly, so a
function written once for plain numbers returns its own derivatives:

    (a b)_ij   = a h_ij(b) + d_i(a) d_j(b) + d_j(a) d_i(b) + h_ij(a) b
    f(a)_i     = f'(a) d_i(a)
    f(a)_ij    = f'(a) h_ij(a) + f''(a) d_i(a) d_j(a)

Which pairs a space keeps decides what is computed: none (a gradient), (i, i)
(the Hessian diagonal), (i, v) with v an extra direction (a Hessian-vector
product), or every i <= j (the full Hessian). The rules are closed under any
choice of pairs, because a kept second derivative needs only first derivatives
and itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mpmath import mpf


class Space:
    """The free variables (``n`` first-order directions) and the kept second-order pairs."""

    def __init__(self, n: int, pairs: Sequence[tuple[int, int]] = ()) -> None:
        self.n = n
        self.pairs = tuple(pairs)

    def variable(self, value: mpf, direction: dict[int, mpf]) -> Jet:
        """value + sum_i direction[i] t_i (no second-order part)."""
        d = [mpf(0)] * self.n
        for i, c in direction.items():
            d[i] = mpf(c)
        return Jet(self, mpf(value), d, [mpf(0)] * len(self.pairs))


class Jet:
    __slots__ = ("d", "h", "space", "v")

    def __init__(self, space: Space, v: mpf, d: list, h: list) -> None:
        self.space, self.v, self.d, self.h = space, v, d, h

    # -------------------------------------------------------------- sums
    def __add__(self, other):
        if isinstance(other, Jet):
            return Jet(
                self.space,
                self.v + other.v,
                [x + y for x, y in zip(self.d, other.d)],
                [x + y for x, y in zip(self.h, other.h)],
            )
        return Jet(self.space, self.v + other, self.d, self.h)

    __radd__ = __add__

    def __neg__(self):
        return Jet(self.space, -self.v, [-x for x in self.d], [-x for x in self.h])

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    # ---------------------------------------------------------- products
    def __mul__(self, other):
        if not isinstance(other, Jet):
            return Jet(
                self.space, self.v * other, [x * other for x in self.d], [x * other for x in self.h]
            )
        a, b = self, other
        d = [a.v * y + x * b.v for x, y in zip(a.d, b.d)]
        ad, bd = a.d, b.d
        h = [
            a.v * bh + ad[i] * bd[j] + ad[j] * bd[i] + ah * b.v
            for (i, j), ah, bh in zip(a.space.pairs, a.h, b.h)
        ]
        return Jet(a.space, a.v * b.v, d, h)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, Jet):
            return self * apply(other, lambda v: (1 / v, -1 / v**2, 2 / v**3))
        return self * (1 / mpf(other))


def apply(a, f: Callable[[mpf], tuple[mpf, mpf, mpf]]):
    """f(a) for a function given by its value, first and second derivative at a point."""
    if not isinstance(a, Jet):
        return f(a)[0]
    f0, f1, f2 = f(a.v)
    d = [f1 * x for x in a.d]
    ad = a.d
    h = [f1 * ah + f2 * ad[i] * ad[j] for (i, j), ah in zip(a.space.pairs, a.h)]
    return Jet(a.space, f0, d, h)


def value(x) -> mpf:
    return x.v if isinstance(x, Jet) else x
