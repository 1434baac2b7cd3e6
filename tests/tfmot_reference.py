"""Compare the ``tfmot`` profile with the real TensorFlow Model Optimization library.

Run ``python tests/tfmot_reference.py`` (needs ``pip install tensorflow-cpu tf-keras
tensorflow-model-optimization``; none of them is a dependency of refprune). It prints the
ranges compared and the number of mismatches, and exits with status 1 if any comparison that
the profile claims to reproduce bit for bit differs. ``tests/test_tfmot_reference.py`` runs it
when TF-MOT is installed.

Three comparisons, each against TF-MOT's own code:

1. ``PolynomialDecay.__call__`` and ``_should_prune_in_step`` at every step from begin - 3
   to end + 3 of a grid of schedules, executed both ways TF executes them: inside a
   ``tf.function`` (what ``model.fit`` does; Grappler rewrites the arithmetic) and eagerly.
   The float32 sparsity is compared bit for bit with ``tfmot_polynomial_decay(...,
   execution=...)``.
2. The kept count: ``Pruning._update_mask`` run on weight tensors of many sizes n (both
   ways) at every step of a few schedules; the number of kept weights is compared with
   ``tfmot_polynomial_decay_keep_count``. Then TF's count arithmetic on a float32 sparsity
   (the ops of ``_update_mask``: cast, sub, mul, round, max) over every n in 1 .. N at every
   sparsity of part 1, against ``tfmot_keep_count``.
3. End to end: ``prune_low_magnitude`` layers trained with ``model.fit`` (graph, and
   ``run_eagerly=True``) and ``UpdatePruningStep``; the mask's alive count after every
   update is compared with the profile's count at that step.

Powers whose TF arithmetic calls the C library's ``powf`` (every power in eager execution;
powers other than 1, 2, 3 and 0.5 in graph execution) are reported apart: the profile rounds
the exact power, and the platform's powf is not always correctly rounded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from itertools import product

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

from conformance.conventions import (  # noqa: E402
    tfmot_keep_count,
    tfmot_polynomial_decay,
    tfmot_polynomial_decay_keep_count,
    tfmot_should_prune,
)

EXACT_GRAPH_POWERS = (1.0, 2.0, 3.0, 0.5)


def _schedules(quick: bool) -> list[tuple[float, float, int, int, float, int]]:
    """(initial, final, begin, end, power, frequency) of every schedule compared.

    Full: every pair of sparsities with every span at power 3 (the default), and the first
    four pairs with two spans at powers 1, 2, 0.5, 4, 1.5, 2.5 and 6. Quick: 0.1 -> 0.9 and
    0.0 -> 0.5 over 0..1000 and 0..37 at powers 3 and 1.5.
    """
    sparsities = [
        (0.1, 0.9),
        (0.0, 0.5),
        (0.2, 0.8),
        (0.05, 0.95),
        (0.3, 0.99),
        (0.5, 0.8),
        (0.0, 0.875),
        (0.6, 0.61),
    ]
    spans = [(0, 1000), (0, 37), (100, 612), (5, 2005), (3, 4)]
    freqs = [1, 7, 100]
    if quick:
        grid = list(product(sparsities[:2], spans[:2], [3.0, 1.5]))
    else:
        grid = list(product(sparsities, spans, [3.0])) + list(
            product(sparsities[:4], spans[:2], [1.0, 2.0, 0.5, 4.0, 1.5, 2.5, 6.0])
        )
    return [
        (si, sf, b, e, pw, freqs[i % len(freqs)]) for i, ((si, sf), (b, e), pw) in enumerate(grid)
    ]


def compare_schedules(tf, ps, quick: bool) -> dict:
    """Part 1: every step of every schedule, graph and eager, against the profile."""
    step_var = tf.Variable(0, dtype=tf.int64)
    res = {
        "schedules": 0,
        "steps": 0,
        "exact": [0, 0],
        "powf": [0, 0],
        "should_prune": [0, 0],
        "sparsities": set(),
        "examples": [],
    }
    for si, sf, b, e, pw, freq in _schedules(quick):
        sched = ps.PolynomialDecay(si, sf, b, e, power=pw, frequency=freq)
        graph_fn = tf.function(lambda: sched(step_var))
        res["schedules"] += 1
        for step in range(max(b - 3, 0), e + 4):
            step_var.assign(step)
            g_prune, g_s = (t.numpy() for t in graph_fn())
            e_prune, e_s = (t.numpy() for t in sched(tf.constant(step, tf.int64)))
            res["steps"] += 1
            for mode, got in (("graph", g_s), ("eager", e_s)):
                want = tfmot_polynomial_decay(step, si, sf, b, e, pw, execution=mode)
                res["sparsities"].add(float(got))
                kind = "exact" if mode == "graph" and pw in EXACT_GRAPH_POWERS else "powf"
                res[kind][0] += 1
                if got.tobytes() != want.tobytes():
                    res[kind][1] += 1
                    if len(res["examples"]) < 8:
                        res["examples"].append(
                            (mode, si, sf, b, e, pw, step, float(got), float(want))
                        )
            want_prune = tfmot_should_prune(step, b, e, freq)
            res["should_prune"][0] += 2
            res["should_prune"][1] += (bool(g_prune) != want_prune) + (bool(e_prune) != want_prune)
    return res


UPDATE_SCHEDULES = (
    (0.1, 0.9, 0, 1000, 3.0),
    (0.05, 0.95, 0, 37, 3.0),
    (0.0, 0.875, 100, 612, 2.0),
    (0.3, 0.99, 5, 2005, 1.0),
)


def compare_update_mask(tf, ps, pruning_impl, quick: bool) -> dict:
    """Part 2a: the real ``_update_mask`` on tensors of n weights, graph and eager."""
    sizes = [1, 2, 3, 7, 10, 15, 64, 100, 128, 997, 1000, 1023, 1424, 4096, 12345]
    if not quick:
        sizes += [65536, 131071]
    step_var = tf.Variable(0, dtype=tf.int64)
    res = {
        "sizes": sizes,
        "schedules": UPDATE_SCHEDULES,
        "compared": 0,
        "mismatches": 0,
        "examples": [],
        "eager": [0, 0],
    }
    rng = np.random.default_rng(0)
    for n, (si, sf, b, e, pw) in product(sizes, UPDATE_SCHEDULES):
        sched = ps.PolynomialDecay(si, sf, b, e, power=pw, frequency=1)
        w = tf.Variable(rng.permutation(n).astype(np.float32) + 1.0)  # distinct magnitudes
        prune = pruning_impl.Pruning(
            training_step_fn=lambda: step_var,
            pruning_vars=[],
            pruning_schedule=sched,
            block_size=(1, 1),
            block_pooling_type="AVG",
        )
        graph_fn = tf.function(lambda: prune._update_mask(w)[1])
        every = 1 if n < 10000 and not quick else 7
        for step in range(max(b - 2, 0), e + 3, every):
            step_var.assign(step)
            for mode in ("graph", "eager"):
                mask = graph_fn() if mode == "graph" else prune._update_mask(w)[1]
                kept = int(np.count_nonzero(mask.numpy()))
                want = tfmot_polynomial_decay_keep_count(n, step, si, sf, b, e, pw, execution=mode)
                if mode == "eager":  # powers through powf
                    res["eager"][0] += 1
                    res["eager"][1] += kept != want
                    continue
                res["compared"] += 1
                if kept != want:
                    res["mismatches"] += 1
                    if len(res["examples"]) < 8:
                        res["examples"].append((mode, n, si, sf, b, e, pw, step, kept, want))
    return res


def compare_count_formula(tf, sparsities: set, n_max: int) -> dict:
    """Part 2b: TF's count ops over every n in 1 .. n_max at every sparsity of part 1.

    These are the ops of ``_update_mask`` on a float32 sparsity that is not folded into them
    (``ConstantSparsity``, eager execution); ``tfmot_keep_count`` is their profile.
    """
    n = tf.range(1, n_max + 1)
    ns = np.arange(1, n_max + 1)
    res = {
        "n_max": n_max,
        "sparsities": len(sparsities),
        "compared": 0,
        "mismatches": 0,
        "examples": [],
    }
    for s in sorted(sparsities):
        sparsity = tf.constant(s, tf.float32)
        k = tf.cast(
            tf.math.maximum(tf.math.round(tf.cast(n, tf.float32) * (1 - sparsity)), 1), tf.int32
        ).numpy()
        s32 = np.float32(s)
        # The profile, one n at a time where its vector form could hide a difference.
        want = np.maximum(
            np.round(ns.astype(np.float32) * (np.float32(1.0) - s32)), np.float32(1.0)
        ).astype(np.int64)
        for i in np.linspace(0, n_max - 1, 25).astype(int):
            want[i] = tfmot_keep_count(s32, int(ns[i]))
        bad = np.flatnonzero(k != want)
        res["compared"] += n_max
        res["mismatches"] += bad.size
        for i in bad[: max(0, 8 - len(res["examples"]))]:
            res["examples"].append((s, int(ns[i]), int(k[i]), int(want[i])))
    return res


def compare_fit(tf, tfmot, keras, quick: bool) -> dict:
    """Part 3: ``model.fit`` with ``prune_low_magnitude``, graph and run_eagerly."""
    res = {"runs": [], "compared": 0, "mismatches": 0, "examples": [], "eager": [0, 0]}
    n_steps = 1010 if not quick else 300
    for eager, (n_in, n_out) in product((False, True), ((89, 16), (8, 8), (37, 27))):
        sched = tfmot.sparsity.keras.PolynomialDecay(0.1, 0.9, 0, 1000, power=3, frequency=1)
        layer = tfmot.sparsity.keras.prune_low_magnitude(
            keras.layers.Dense(n_out, use_bias=False), pruning_schedule=sched, input_shape=(n_in,)
        )
        model = keras.Sequential([layer])
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", run_eagerly=eager)
        counts = []

        class Record(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                mask = layer.pruning_vars[0][1].numpy()
                counts.append((int(layer.pruning_step.numpy()), int(np.count_nonzero(mask))))

        rng = np.random.default_rng(1)
        X = rng.standard_normal((n_steps, n_in)).astype(np.float32)
        Y = rng.standard_normal((n_steps, n_out)).astype(np.float32)
        model.fit(
            X,
            Y,
            batch_size=1,
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), Record()],
        )
        mode = "eager" if eager else "graph"
        res["runs"].append(f"{mode} {n_in}x{n_out} steps {counts[0][0]}..{counts[-1][0]}")
        for step, kept in counts:
            want = tfmot_polynomial_decay_keep_count(
                n_in * n_out, step, 0.1, 0.9, 0, 1000, execution=mode
            )
            if eager:  # power 3 through powf
                res["eager"][0] += 1
                res["eager"][1] += kept != want
                continue
            res["compared"] += 1
            if kept != want:
                res["mismatches"] += 1
                if len(res["examples"]) < 8:
                    res["examples"].append((mode, n_in * n_out, step, kept, want))
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller grid (about a tenth)")
    parser.add_argument(
        "--n-max", type=int, default=1500, help="part 2b compares every n in 1 .. N (default 1500)"
    )
    args = parser.parse_args(argv)
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.sparsity.keras import (
        pruning_impl,
        pruning_schedule,
    )

    t0 = time.perf_counter()
    print(
        f"TensorFlow {tf.__version__}, TF-MOT {tfmot.__version__}, tf-keras {keras.__version__}, "
        f"NumPy {np.__version__}"
    )
    sch = compare_schedules(tf, pruning_schedule, args.quick)
    print(
        f"1. PolynomialDecay: {sch['schedules']} schedules (initial/final sparsity, begin/end, "
        f"power, frequency from the grid in _schedules), {sch['steps']} steps, each in graph "
        f"and eager execution"
    )
    print(
        f"   exact (graph, power 1, 2, 3, 0.5): {sch['exact'][0]} compared, "
        f"{sch['exact'][1]} mismatches"
    )
    print(
        f"   through powf (eager; graph with other powers): {sch['powf'][0]} compared, "
        f"{sch['powf'][1]} differ in the last bit (the platform's powf misrounds)"
    )
    print(
        f"   should_prune: {sch['should_prune'][0]} compared, {sch['should_prune'][1]} mismatches"
    )
    for ex in sch["examples"]:
        print("     e.g. (mode, s_i, s_f, begin, end, power, step, TF, profile) =", ex)
    upd = compare_update_mask(tf, pruning_schedule, pruning_impl, args.quick)
    print(
        f"2a. _update_mask kept count: n in {upd['sizes']}, every step from begin - 2 to "
        f"end + 2 (every 7th for n >= 10000{' and all n with --quick' if args.quick else ''}) "
        f"of the schedules (s_i, s_f, begin, end, power) {upd['schedules']}: "
        f"graph {upd['compared']} compared, "
        f"{upd['mismatches']} mismatches; eager (powf) {upd['eager'][0]} compared, "
        f"{upd['eager'][1]} differ"
    )
    for ex in upd["examples"]:
        print("     e.g. (mode, n, s_i, s_f, begin, end, power, step, TF kept, profile) =", ex)
    cnt = compare_count_formula(tf, sch["sparsities"], args.n_max)
    print(
        f"2b. count arithmetic: every n in 1..{cnt['n_max']} at {cnt['sparsities']} distinct "
        f"float32 sparsities: {cnt['compared']} compared, {cnt['mismatches']} mismatches"
    )
    for ex in cnt["examples"]:
        print("     e.g. (sparsity, n, TF k, profile k) =", ex)
    fit = compare_fit(tf, tfmot, keras, args.quick)
    print(
        f"3. model.fit with prune_low_magnitude ({'; '.join(fit['runs'])}): graph "
        f"{fit['compared']} compared, {fit['mismatches']} mismatches; run_eagerly (powf) "
        f"{fit['eager'][0]} compared, {fit['eager'][1]} differ"
    )
    for ex in fit["examples"]:
        print("     e.g. (mode, n, step, TF kept, profile) =", ex)
    exact_bad = (
        sch["exact"][1]
        + sch["should_prune"][1]
        + cnt["mismatches"]
        + upd["mismatches"]
        + fit["mismatches"]
    )
    powf = [sch["powf"][i] + upd["eager"][i] + fit["eager"][i] for i in (0, 1)]
    checked = (
        sch["exact"][0]
        + sch["should_prune"][0]
        + upd["compared"]
        + cnt["compared"]
        + fit["compared"]
    )
    print(
        f"total: {checked} comparisons the profile reproduces bit for bit, "
        f"{exact_bad} mismatches; {powf[0]} through the platform's powf, {powf[1]} differ "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return 1 if exact_bad or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
