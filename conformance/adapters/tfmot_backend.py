"""TensorFlow Model Optimization as a conformance backend: ``prune_low_magnitude``'s mask update.

    python -m conformance run --backend conformance.adapters.tfmot_backend:TfmotBackend --profile tfmot

Every mask and every schedule value comes from TF-MOT's own code
(``tensorflow_model_optimization.python.core.sparsity.keras``), the code the
``PruneLowMagnitude`` wrapper runs in training: a ``pruning_impl.Pruning``
object over (weight, mask, threshold) variables, its
``conditional_mask_update()`` (the schedule decides whether to update; then
``_update_mask``, or the M-by-N rule) and ``weight_mask_op()`` (weights =
weights * mask). This module only creates the variables, converts arrays and
arranges the calls. What each operation calls:

==================  ==========================================================================
operation           TF-MOT
==================  ==========================================================================
profile_mask        (tfmot profile) each tensor not ignored is a weight variable holding
                    the scores with the pruned entries at 0.0 (as ``weight_mask_op`` leaves
                    them), pruned with ``ConstantSparsity(amount, begin_step=0,
                    frequency=1)`` at step 0 by ``Pruning.conditional_mask_update``; in the
                    scores' dtype. Layer scope only (TF-MOT masks each weight on its own).
n_m_mask            ``Pruning(sparsity_m_by_n=(m - n, m))``, whose mask update runs at step 1
                    (``pruning_utils.generate_m_by_n_mask``); the scores of an (out, in)
                    matrix are passed as a Keras kernel, i.e. transposed to (in, out), so that
                    TF-MOT's blocks run along the last axis of the scores as in the protocol.
                    Rank-2 scores, non-negative scores, no dead entries and 0 < n only;
                    float32, the only dtype this mask update accepts.
schedule            "cubic" / "linear": ``PolynomialDecay(s_i, s_f, begin_step=t0,
                    end_step=t0 + n_steps * dt, power=3 / 1, frequency=dt)``; "constant":
                    ``ConstantSparsity(s, begin_step=t0, end_step=t0 + n_steps * dt,
                    frequency=dt)``; "one_shot": ``ConstantSparsity(s, begin_step=step,
                    end_step=step, frequency=1)``. Every step from begin to end runs the
                    schedule and the mask update of a weight of n distinct magnitudes in one
                    ``tf.function`` (as ``model.fit`` runs them); a step is reported where
                    the schedule updated the mask, with its float32 sparsity and the number
                    of weights the mask keeps. Round-half-even only.
==================  ==========================================================================

"geometric" schedules, ``rounds_to_density``, ``fraction_to_count``,
``keep_top_k``, ``select_masks`` and ``prune_units`` have no TF-MOT counterpart
(TF-MOT has no relative schedule, no count with another rounding, and its
threshold keeps every tie, so it cannot keep exactly k): not provided. What
passes and where TF-MOT deviates, and why: ``docs/tfmot_adapter.md``.

TensorFlow is imported when the backend is instantiated, never at import time,
so the conformance package does not depend on it (``pip install
'refprune[tfmot]'``). TF-MOT 0.8 needs the Keras 2 package ``tf-keras``; the
backend asks for it with ``TF_USE_LEGACY_KERAS=1`` unless that is already set.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..backend import Backend, NotProvided

HALF_EVEN = "round-half-even"


def _import_tfmot():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    try:
        import tensorflow as tf
        import tensorflow_model_optimization as tfmot
        from tensorflow_model_optimization.python.core.sparsity.keras import (
            pruning_impl,
            pruning_schedule,
        )
    except ImportError as exc:  # pragma: no cover - exercised only without TF-MOT
        raise ImportError(
            "the TF-MOT backend needs tensorflow, tf-keras and "
            "tensorflow-model-optimization; install them with "
            "pip install 'refprune[tfmot]'"
        ) from exc
    return tf, tfmot, pruning_impl, pruning_schedule


class TfmotBackend(Backend):
    """TF-MOT's ``prune_low_magnitude`` mask update and its pruning schedules."""

    profile = "tfmot"

    def __init__(self) -> None:
        self.tf, tfmot, self.pruning_impl, self.schedules = _import_tfmot()
        self.name = (
            f"TF-MOT {tfmot.__version__} on TensorFlow {self.tf.__version__} "
            "(pruning_impl.Pruning, PolynomialDecay, ConstantSparsity)"
        )

    # ============================================================== helpers
    def _pruning(self, weights: list[np.ndarray], schedule, step: int, m_by_n=None):
        """A ``Pruning`` object over fresh (weight, mask, threshold) variables, as
        ``PruneLowMagnitude.build`` creates them (mask ones, threshold zero), at ``step``."""
        tf = self.tf
        step_var = tf.Variable(step, dtype=tf.int64)
        variables = [
            (
                tf.Variable(w),
                tf.Variable(tf.ones(w.shape, dtype=w.dtype)),
                tf.Variable(tf.zeros([], dtype=w.dtype)),
            )
            for w in weights
        ]
        pruning = self.pruning_impl.Pruning(
            training_step_fn=lambda: step_var,
            pruning_vars=variables,
            pruning_schedule=schedule,
            block_size=(1, 1),
            block_pooling_type="AVG",
            sparsity_m_by_n=m_by_n,
        )
        return pruning, step_var, variables

    # ============================================================== masks
    def profile_mask(self, *, scores, amount, alive, scope, ignore):
        if scope != "layer":
            raise ValueError(
                f"TF-MOT masks each weight on its own: scope must be 'layer', got {scope!r}"
            )
        names = [n for n in scores if n not in set(ignore)]
        if isinstance(amount, bool) or not isinstance(amount, (int, float, np.floating)):
            raise TypeError(f"amount must be a sparsity in [0, 1), got {type(amount).__name__}")
        try:
            schedule = self.schedules.ConstantSparsity(float(amount), begin_step=0, frequency=1)
        except ValueError as exc:  # _validate_sparsity: [0, 1)
            raise ValueError(
                f"amount must be a sparsity in [0, 1), got {amount!r} ({exc})"
            ) from None
        alive = {
            n: (
                np.ones(np.shape(s), dtype=bool)
                if alive is None
                else np.asarray(alive[n], dtype=bool)
            )
            for n, s in scores.items()
        }
        weights = []
        for n in names:  # weight_mask_op left pruned weights at 0
            s = np.asarray(scores[n])
            weights.append(np.where(alive[n], s, np.zeros((), dtype=s.dtype)))
        pruning, _, variables = self._pruning(weights, schedule, step=0)
        pruning.conditional_mask_update()
        out = {n: alive[n].copy() for n in scores}
        for n, (_, mask, _) in zip(names, variables):
            out[n] = mask.numpy() != 0
        return out

    def n_m_mask(self, *, scores, n, m, alive):
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 2:
            raise NotProvided(
                "TF-MOT's M-by-N sparsity takes rank-2 (Dense) or rank-4 (Conv2D) "
                "kernels; here only (out, in) matrices are passed"
            )
        if np.any(s < 0):
            raise NotProvided("TF-MOT ranks |weight|; signed scores are not expressible")
        if alive is not None and not np.all(alive):
            raise NotProvided("TF-MOT's M-by-N mask is computed once, at step 1, from all weights")
        if not 0 < int(n) <= int(m) or s.shape[-1] % int(m):
            raise NotProvided(
                f"TF-MOT's sparsity_m_by_n needs 0 <= m - n < m, got n={n!r}, m={m!r}"
            )
        kernel = s.T.astype(np.float32)  # a float32 Keras kernel (in, out): the
        # M-by-N mask is built in float32
        pruning, _, variables = self._pruning(
            [kernel],
            self.schedules.ConstantSparsity(0.5, 0),
            step=1,
            m_by_n=(int(m) - int(n), int(m)),
        )
        pruning.conditional_mask_update()
        return variables[0][1].numpy().T != 0

    # ============================================================== schedules
    def schedule(self, *, name, options, n, rounding):
        ps = self.schedules
        if rounding != HALF_EVEN:
            raise NotProvided(
                f"TF-MOT rounds counts half-to-even only (tf.math.round), not {rounding!r}"
            )
        if name == "geometric":
            raise NotProvided("TF-MOT has no relative (geometric) schedule")
        if name not in ("cubic", "linear", "constant", "one_shot"):
            raise ValueError(
                f"name must be one of ['constant', 'cubic', 'geometric', 'linear', "
                f"'one_shot'], got {name!r}"
            )
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        if n == 0:
            raise NotProvided(
                "TF-MOT cannot take a threshold of an empty weight (top_k of 0 values)"
            )
        o = dict(options)
        try:
            if name == "one_shot":
                begin = end = int(o["step"])
                sched = ps.ConstantSparsity(
                    float(o["sparsity"]), begin_step=begin, end_step=end, frequency=1
                )
            else:
                begin, dt = int(o["t0"]), int(o["dt"])
                end = begin + int(o["n_steps"]) * dt
                if name == "constant":
                    sched = ps.ConstantSparsity(
                        float(o["sparsity"]), begin_step=begin, end_step=end, frequency=dt
                    )
                else:
                    sched = ps.PolynomialDecay(
                        float(o["initial_sparsity"]),
                        float(o["final_sparsity"]),
                        begin_step=begin,
                        end_step=end,
                        power=3 if name == "cubic" else 1,
                        frequency=dt,
                    )
        except ValueError as exc:  # _validate_sparsity / _validate_step
            raise NotProvided(f"TF-MOT refuses these options: {exc}") from None
        return self._run_schedule(sched, begin, end, int(n))

    def _run_schedule(self, sched, begin: int, end: int, n: int) -> dict[str, Any]:
        """Steps begin .. end of the schedule and the mask update of n distinct weights, in a
        ``tf.function`` (graph execution, as ``model.fit``)."""
        tf = self.tf
        weights = np.arange(1, n + 1, dtype=np.float32)
        pruning, step_var, variables = self._pruning([weights], sched, step=begin)
        mask = variables[0][1]

        @tf.function
        def train_step():
            should_prune, sparsity = sched(step_var)
            pruning.conditional_mask_update()
            pruning.weight_mask_op()
            return should_prune, sparsity, tf.math.count_nonzero(mask)

        steps, values, kept = [], [], []
        for step in range(begin, end + 1):
            step_var.assign(step)
            should_prune, sparsity, alive = train_step()
            if bool(should_prune):
                steps.append(step)
                values.append(float(sparsity.numpy()))
                kept.append(int(alive.numpy()))
        values_arr = np.array(values, dtype=np.float64)
        return {
            "kind": "absolute",
            "steps": np.array(steps, dtype=np.int64),
            "values": values_arr,
            "densities": 1.0 - values_arr,
            "alive_counts": np.array(kept, dtype=np.int64),
        }
