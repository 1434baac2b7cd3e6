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
        return {"kind": sched.kind, "steps": np.array(sched.steps, dtype=np.int64),
                "values": np.array(sched.values, dtype=np.float64),
                "densities": np.array(sched.densities(), dtype=np.float64),
                "alive_counts": np.array(sched.alive_counts(n, rounding), dtype=np.int64)}
