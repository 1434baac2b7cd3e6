"""Pruning schedules: when to prune, and to which density.

A schedule is a list of pruning steps; each step has a *when* (a round of
iterative pruning, or a training step for gradual pruning) and an exact,
real-valued target. Two kinds exist, because pruning methods state their
targets in two ways:

* ``"relative"`` (geometric): each step prunes a fraction ``alpha`` of the
  weights *still alive*, so the exact density after j steps is
  (1 - alpha)^j. Integer counts follow the recursion
  ``k_j = k_{j-1} - fraction_to_count(alpha, k_{j-1}, rounding)`` with
  ``k_0 = n``: exactly what the mask-selection step does when asked to prune a
  fraction ``alpha`` of the alive weights.
* ``"absolute"`` (one-shot, cubic, linear, constant): step j targets a
  sparsity s_j of the *original* n weights. The number pruned so far is
  ``fraction_to_count(s_j, n, rounding)``, so the alive count after step j is
  ``n - fraction_to_count(s_j, n, rounding)``.

Counts are the project's rounding rule (``refprune.masks.fraction_to_count``)
applied as above, never a second copy of it. Targets are evaluated with the
basic IEEE-754 float64 operations in the order given in each docstring (no
``pow``), so any language reproduces them bit for bit.

The derivation of the geometric error bound, ``|k_S / n - (1 - alpha)^S| <=
1 / (2 alpha n)`` under round-half-even, is in ``docs/schedules.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._checks import choice, positive_int, real_number
from .masks import ROUNDINGS, fraction_to_count

KINDS = ("relative", "absolute")


@dataclass(frozen=True)
class Schedule:
    """Pruning steps with exact targets.

    Attributes
    ----------
    name : str
        "geometric", "one_shot", "cubic", "linear" or "constant".
    kind : {"relative", "absolute"}
        How ``values`` are read (module docstring).
    steps : tuple of int
        When each pruning step happens: a round index (iterative pruning) or
        the number of training updates done (gradual pruning). Non-decreasing.
    values : tuple of float
        ``"relative"``: the fraction of the alive weights pruned at each step.
        ``"absolute"``: the target sparsity (fraction of the original weights
        pruned) after each step; non-decreasing, since pruned weights never
        come back.
    """

    name: str
    kind: str
    steps: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        choice(self.kind, "kind", KINDS)
        for j, t in enumerate(self.steps):
            positive_int(t, f"steps[{j}]", minimum=0)
        for j, v in enumerate(self.values):
            real_number(v, f"values[{j}]", low=0.0, high=1.0)
        if len(self.steps) != len(self.values):
            raise ValueError(
                f"steps and values must have the same length, got {len(self.steps)} "
                f"and {len(self.values)}"
            )
        if any(b < a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"steps must be non-decreasing, got {self.steps}")
        if self.kind == "absolute" and any(b < a for a, b in zip(self.values, self.values[1:])):
            raise ValueError(f"absolute sparsity targets must be non-decreasing, got {self.values}")

    def __len__(self) -> int:
        return len(self.steps)

    def densities(self) -> tuple[float, ...]:
        """Exact target density after each step.

        Relative: d_j = d_{j-1} * (1 - f_j), d_0 = 1 (left-to-right products, so
        the geometric schedule gives (1 - alpha)^j by repeated multiplication).
        Absolute: d_j = 1 - s_j.
        """
        if self.kind == "absolute":
            return tuple(1.0 - s for s in self.values)
        out, d = [], 1.0
        for f in self.values:
            d = d * (1.0 - f)
            out.append(d)
        return tuple(out)

    def sparsities(self) -> tuple[float, ...]:
        """Exact target sparsity after each step: s_j for absolute, 1 - d_j for relative."""
        if self.kind == "absolute":
            return self.values
        return tuple(1.0 - d for d in self.densities())

    def alive_counts(self, n: int, rounding: str = "round-half-even") -> tuple[int, ...]:
        """Integer number of weights alive after each step, for a group of ``n`` weights.

        Relative: k_j = k_{j-1} - fraction_to_count(f_j, k_{j-1}, rounding), k_0 = n.
        Absolute: k_j = n - fraction_to_count(s_j, n, rounding).
        These are the counts the mask-selection step produces; the rounding
        rule is ``refprune.masks.fraction_to_count``.
        """
        n = positive_int(n, "n", minimum=0)
        choice(rounding, "rounding", ROUNDINGS)
        if self.kind == "absolute":
            return tuple(n - fraction_to_count(s, n, rounding) for s in self.values)
        out, k = [], n
        for f in self.values:
            k = k - fraction_to_count(f, k, rounding)
            out.append(k)
        return tuple(out)

    def prune_counts(self, n: int, rounding: str = "round-half-even") -> tuple[int, ...]:
        """Number of weights pruned *at* each step (alive before minus alive after)."""
        alive = (positive_int(n, "n", minimum=0),) + self.alive_counts(n, rounding)
        return tuple(a - b for a, b in zip(alive, alive[1:]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (values as Python floats, exact under JSON round trip)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "steps": list(self.steps),
            "values": [float(v) for v in self.values],
        }


# ---------------------------------------------------------------- constructors
def _fraction(x: Any, name: str) -> float:
    return real_number(x, name, low=0.0, high=1.0)


def geometric(alpha: float, rounds: int, *, start: int = 1) -> Schedule:
    """Iterative pruning of a fixed fraction of the weights still alive.

    Round j (j = 1 .. rounds) prunes a fraction ``alpha`` of the alive weights,
    so the exact density after j rounds is (1 - alpha)^j. Integer counts:
    k_j = k_{j-1} - fraction_to_count(alpha, k_{j-1}), k_0 = n; with
    round-half-even, |k_S / n - (1 - alpha)^S| <= (1 - (1 - alpha)^S) / (2 alpha n)
    < 1 / (2 alpha n) (``docs/schedules.md``; see ``geometric_error_bound``).

    Frankle and Carbin, "The Lottery Ticket Hypothesis: Finding Sparse,
    Trainable Neural Networks", ICLR 2019 (iterative pruning at a rate p^(1/n)
    per round); Han et al., "Learning both Weights and Connections for
    Efficient Neural Networks", NIPS 2015.

    Parameters
    ----------
    alpha : float in [0, 1]
        Fraction of the alive weights pruned each round.
    rounds : int >= 0
    start : int >= 0
        Index of the first round (steps are start, start + 1, ...).
    """
    alpha = _fraction(alpha, "alpha")
    rounds = positive_int(rounds, "rounds", minimum=0)
    start = positive_int(start, "start", minimum=0)
    return Schedule("geometric", "relative", tuple(range(start, start + rounds)), (alpha,) * rounds)


def one_shot(sparsity: float, *, step: int = 0) -> Schedule:
    """A single pruning step to ``sparsity`` (fraction of the weights pruned).

    Alive count after it: n - fraction_to_count(sparsity, n, rounding).
    """
    sparsity = _fraction(sparsity, "sparsity")
    step = positive_int(step, "step", minimum=0)
    return Schedule("one_shot", "absolute", (step,), (sparsity,))


def _grid(t0: int, dt: int, n_steps: int) -> tuple[int, int, int, tuple[int, ...]]:
    t0 = positive_int(t0, "t0", minimum=0)
    dt = positive_int(dt, "dt")
    n_steps = positive_int(n_steps, "n_steps")
    return t0, dt, n_steps, tuple(t0 + j * dt for j in range(n_steps + 1))


def cubic(
    initial_sparsity: float, final_sparsity: float, *, t0: int = 0, dt: int = 1, n_steps: int = 10
) -> Schedule:
    """The gradual pruning schedule of Zhu and Gupta.

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3 for t = t0, t0 + dt, ...,
    t0 + n dt. Sparsity rises fast at first and levels off at s_f. On step
    j = (t - t0) / dt it is evaluated in float64 as
    ``u = 1.0 - j / n; s_j = s_f + (s_i - s_f) * (u * u * u)``
    (j / n is the same float as (t - t0) / (n dt), both being the correctly
    rounded quotient of the same rational). The formula is evaluated as
    written at every step, so s_0 = s_f + (s_i - s_f), which equals s_i up to
    one rounding (it is 0.0 for s_i = 1e-300, s_f = 1), and s_n = s_f exactly.

    Zhu and Gupta, "To prune, or not to prune: exploring the efficacy of
    pruning for model compression", arXiv:1710.01878, 2017, eq. (1).

    Parameters
    ----------
    initial_sparsity, final_sparsity : float in [0, 1], s_i <= s_f
    t0 : int >= 0
        Training step of the first pruning step.
    dt : int >= 1
        Steps between pruning steps.
    n_steps : int >= 1
        Number of intervals; the schedule has n_steps + 1 pruning steps.
    """
    s_i = _fraction(initial_sparsity, "initial_sparsity")
    s_f = _fraction(final_sparsity, "final_sparsity")
    if s_i > s_f:
        raise ValueError(f"initial_sparsity must be <= final_sparsity, got {s_i} > {s_f}")
    t0, dt, n, steps = _grid(t0, dt, n_steps)
    values = []
    for j in range(n + 1):
        u = 1.0 - j / n
        values.append(s_f + (s_i - s_f) * (u * u * u))
    return Schedule("cubic", "absolute", steps, tuple(values))


def linear(
    initial_sparsity: float, final_sparsity: float, *, t0: int = 0, dt: int = 1, n_steps: int = 10
) -> Schedule:
    """Sparsity rising linearly: s_j = s_i + (s_f - s_i) * (j / n) at t = t0 + j dt, j = 0 .. n.

    Parameters as in ``cubic``.
    """
    s_i = _fraction(initial_sparsity, "initial_sparsity")
    s_f = _fraction(final_sparsity, "final_sparsity")
    if s_i > s_f:
        raise ValueError(f"initial_sparsity must be <= final_sparsity, got {s_i} > {s_f}")
    t0, dt, n, steps = _grid(t0, dt, n_steps)
    return Schedule(
        "linear", "absolute", steps, tuple(s_i + (s_f - s_i) * (j / n) for j in range(n + 1))
    )


def constant(sparsity: float, *, t0: int = 0, dt: int = 1, n_steps: int = 10) -> Schedule:
    """The same sparsity target s at t = t0 + j dt, j = 0 .. n.

    The first step prunes to s; later steps re-select nothing new (the alive
    count is already n - fraction_to_count(s, n)), so the mask is held fixed.
    """
    s = _fraction(sparsity, "sparsity")
    t0, dt, n, steps = _grid(t0, dt, n_steps)
    return Schedule("constant", "absolute", steps, (s,) * (n + 1))


# ---------------------------------------------------------------- geometric helpers
def rounds_to_density(
    target_density: float, alpha: float, *, n: int | None = None, rounding: str = "round-half-even"
) -> int:
    """Fewest geometric rounds that bring the density down to ``target_density`` or below.

    Without ``n``: the smallest S >= 0 with (1 - alpha)^S <= target, where
    (1 - alpha)^S is the repeated float64 product of ``Schedule.densities``
    (mathematically ceil(log(target) / log(1 - alpha)); the products decide
    the float cases, in O(S) multiplications).
    With ``n``: the smallest S with k_S / n <= target for the integer counts
    k_S of ``Schedule.alive_counts`` (a ValueError when the counts stop
    decreasing before reaching the target, because fraction_to_count(alpha, k)
    is 0 for small k).

    Parameters
    ----------
    target_density : float in [0, 1]
    alpha : float in (0, 1]
    n : int >= 1, optional
    rounding : {"round-half-even", "floor", "ceil"}
    """
    target = _fraction(target_density, "target_density")
    alpha = real_number(alpha, "alpha", low=0.0, high=1.0, low_open=True)
    choice(rounding, "rounding", ROUNDINGS)
    if n is None:
        if target == 0.0 and alpha < 1.0:
            raise ValueError("target_density 0 is never reached by (1 - alpha)^S with alpha < 1")
        d, s = 1.0, 0
        while d > target:  # O(S) products: the definition, bit for bit
            d = d * (1.0 - alpha)
            s += 1
        return s
    n = positive_int(n, "n")
    k, s = n, 0
    while k / n > target:
        drop = fraction_to_count(alpha, k, rounding)
        if drop == 0:
            raise ValueError(
                f"target_density {target} is not reachable with alpha={alpha}, n={n}, "
                f"rounding={rounding!r}: the count stops at {k} alive"
            )
        k -= drop
        s += 1
    return s


def geometric_error_bound(
    alpha: float, n: int, rounds: int | None = None, rounding: str = "round-half-even"
) -> float:
    """Bound on |k_S / n - (1 - alpha)^S| for the integer geometric counts.

    Each round's count error is at most h = 1/2 (round-half-even) or h = 1
    (floor, ceil), and errors shrink by (1 - alpha) per later round, so

        |k_S / n - (1 - alpha)^S| <= h (1 - (1 - alpha)^S) / (alpha n) < h / (alpha n).

    With ``rounds=None`` the S-free bound h / (alpha n) is returned (1/(2 alpha n)
    for round-half-even). Derivation in ``docs/schedules.md``; the float64
    product alpha * k adds at most one unit in the last place per round.

    Parameters
    ----------
    alpha : float in (0, 1]
    n : int >= 1
    rounds : int >= 0, optional
    rounding : {"round-half-even", "floor", "ceil"}
    """
    alpha = real_number(alpha, "alpha", low=0.0, high=1.0, low_open=True)
    n = positive_int(n, "n")
    choice(rounding, "rounding", ROUNDINGS)
    h = 0.5 if rounding == "round-half-even" else 1.0
    if rounds is None:
        return h / (alpha * n)
    rounds = positive_int(rounds, "rounds", minimum=0)
    d = 1.0
    for _ in range(rounds):
        d = d * (1.0 - alpha)
    return h * (1.0 - d) / (alpha * n)


__all__ = [
    "Schedule",
    "geometric",
    "one_shot",
    "cubic",
    "linear",
    "constant",
    "rounds_to_density",
    "geometric_error_bound",
]
