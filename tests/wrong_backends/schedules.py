"""Wrong backends of the schedules family: gradual pruning schedules and their counts."""

from __future__ import annotations

import numpy as np

from .base import WrongBackend


class CubicExponentTwo(WrongBackend):
    """Zhu and Gupta's gradual schedule with exponent 2 instead of 3.

    s_j = s_f + (s_i - s_f) (1 - j/n)**2: the same end points, but sparsity
    rises more slowly at first, so every intermediate target and count is off.
    Models a polynomial-decay schedule whose ``power`` was left at a default
    (TF's ``polynomial_decay`` and TF-MOT's ``PolynomialDecay`` take the
    exponent as an argument; the paper's is 3).
    """

    name = "cubic schedule with exponent 2"
    family = "schedules"

    def schedule(self, *, name, options, n, rounding):
        result = super().schedule(name=name, options=options, n=n, rounding=rounding)
        if name != "cubic":
            return result
        from refprune.schedules import Schedule

        o = dict(options)
        s_i, s_f = float(o["initial_sparsity"]), float(o["final_sparsity"])
        steps = tuple(int(t) for t in result["steps"])
        n_steps = len(steps) - 1
        values = []
        for j in range(n_steps + 1):
            u = 1.0 - j / n_steps
            values.append(s_f + (s_i - s_f) * (u * u))
        sched = Schedule("cubic", "absolute", steps, tuple(values))
        return {
            "kind": sched.kind,
            "steps": np.array(sched.steps, dtype=np.int64),
            "values": np.array(sched.values, dtype=np.float64),
            "densities": np.array(sched.densities(), dtype=np.float64),
            "alive_counts": np.array(sched.alive_counts(n, rounding), dtype=np.int64),
        }


def _with_counts(result: dict, values, n: int, rounding: str, kind: str | None = None) -> dict:
    """A schedule answer with other values (and its densities and counts) from ``Schedule``."""
    from refprune.schedules import Schedule

    sched = Schedule(
        str(result["kind"]) if kind is None else kind,
        str(result["kind"]),
        tuple(int(t) for t in result["steps"]),
        tuple(float(v) for v in values),
    )
    return {
        "kind": sched.kind,
        "steps": np.array(sched.steps, dtype=np.int64),
        "values": np.array(sched.values, dtype=np.float64),
        "densities": np.array(sched.densities(), dtype=np.float64),
        "alive_counts": np.array(sched.alive_counts(n, rounding), dtype=np.int64),
    }


def polynomial_rebuilt(
    name: str, options, result: dict, n: int, rounding: str, *, extra_intervals: int = 0
) -> dict:
    """The cubic or linear schedule rebuilt on the steps of ``result``, interpolated over
    n_steps + ``extra_intervals`` intervals: u = 1.0 - j / span; cubic s_f + (s_i - s_f) *
    (u * u * u), linear s_i + (s_f - s_i) * (j / span)."""
    o = dict(options)
    s_i, s_f = float(o["initial_sparsity"]), float(o["final_sparsity"])
    span = len(result["steps"]) - 1 + extra_intervals
    if name == "cubic":
        values = []
        for j in range(len(result["steps"])):
            u = 1.0 - j / span
            values.append(s_f + (s_i - s_f) * (u * u * u))
    else:
        values = [s_i + (s_f - s_i) * (j / span) for j in range(len(result["steps"]))]
    return _with_counts(result, values, n, rounding, kind=name)


class PolynomialSpanOneStepLong(WrongBackend):
    """Cubic and linear schedules interpolated over n + 1 intervals instead of n.

    u = 1 - j / (n + 1) (cubic) and j / (n + 1) (linear): the last step stops
    short of the final sparsity and every target in between is low. Models the
    off-by-one between the number of pruning steps and the number of
    intervals between them (``end_step`` inclusive or exclusive, as
    TF-MOT's ``PolynomialDecay`` and hand-written loops disagree).
    """

    name = "polynomial span one step long"
    family = "schedules"

    def schedule(self, *, name, options, n, rounding):
        result = super().schedule(name=name, options=options, n=n, rounding=rounding)
        if name not in ("cubic", "linear"):
            return result
        return polynomial_rebuilt(name, options, result, n, rounding, extra_intervals=1)


class GeometricFractionOfInitialCount(WrongBackend):
    """Geometric rounds each prune alpha of the *initial* count instead of alpha of the alive one.

    k_j = k_{j-1} - round(alpha n) instead of k_{j-1} - round(alpha k_{j-1}):
    the density falls linearly, 1 - j alpha, not as (1 - alpha)^j. Models
    ``n_prune = int(rate * total_weights)`` computed once before the loop, the
    schedule-level twin of ``FractionOfAllWeights``.
    """

    name = "geometric fraction of the initial count"
    family = "schedules"

    def schedule(self, *, name, options, n, rounding):
        from refprune.masks import fraction_to_count

        result = super().schedule(name=name, options=options, n=n, rounding=rounding)
        if name != "geometric":
            return result
        k, counts = n, []
        for v in result["values"]:
            k = max(k - fraction_to_count(float(v), n, rounding), 0)
            counts.append(k)
        return dict(result, alive_counts=np.array(counts, dtype=np.int64))


class RoundsToDensityStrict(WrongBackend):
    """rounds_to_density stops only once the density is strictly below the target.

    The documented S is the fewest rounds with d_S <= target; with "<" a target
    reached exactly (0.5 after one halving, 0.64 after two rounds of 0.2) takes
    one round more. Models ``while density >= target`` for
    ``while density > target``.
    """

    name = "rounds to density, strict"
    family = "schedules"

    def rounds_to_density(self, *, target_density, alpha, n, rounding):
        super().rounds_to_density(
            target_density=target_density, alpha=alpha, n=n, rounding=rounding
        )  # checks, unreachable targets
        return rounds_rebuilt(target_density, alpha, n, rounding, strict=True)


def rounds_rebuilt(
    target: float, alpha: float, n: int | None, rounding: str, *, strict: bool = False
) -> int:
    """rounds_to_density rebuilt: the fewest S with d_S <= target (``strict``: d_S < target),
    d_S the repeated float64 product (n None) or k_S / n for the integer counts."""
    from refprune.masks import fraction_to_count

    def above(d: float) -> bool:
        return d >= target if strict else d > target

    if n is None:
        d, s = 1.0, 0
        while above(d) and s < 100_000:
            d, s = d * (1.0 - alpha), s + 1
        return s
    k, s = n, 0
    while above(k / n) and k > 0:
        drop = fraction_to_count(alpha, k, rounding)
        if drop == 0:
            raise ValueError("the count stalls before the target")
        k, s = k - drop, s + 1
    return s
