"""The tfmot profile's schedule arithmetic: fixed cases, and the comparison with TF-MOT.

The fixed cases were read off TensorFlow 2.21 / TF-MOT 0.8.1 (``tests/tfmot_reference.py``
prints how they were checked). The comparison with the real library runs only where
TF-MOT is installed (it is not a dependency), in a subprocess so that TensorFlow's threads
and settings stay out of this process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.conventions import (
    tfmot_keep_count,
    tfmot_polynomial_decay,
    tfmot_polynomial_decay_keep_count,
)

STEP_168 = dict(step=168, initial_sparsity=0.1, final_sparsity=0.9, begin_step=0, end_step=1000)


def test_step_168_of_0_1_to_0_9_in_both_executions():
    # model.fit (graph): p = 168 * f32(1/1000), pow(q, 3) = (d*q)*(q*q): keeps 798 of 1424;
    # run_eagerly: p = 168 / 1000, powf: keeps 799.
    graph = tfmot_polynomial_decay(**STEP_168)
    eager = tfmot_polynomial_decay(**STEP_168, execution="eager")
    assert float(graph) == float.fromhex("0x1.c1cc3cp-2")
    assert float(eager) == float.fromhex("0x1.c1cc3ap-2")
    assert tfmot_keep_count(graph, 1424) == 798 and tfmot_keep_count(eager, 1424) == 799
    assert tfmot_polynomial_decay_keep_count(1424, **STEP_168) == 798
    assert tfmot_polynomial_decay_keep_count(1424, **STEP_168, execution="eager") == 799


def test_eager_power_is_the_correctly_rounded_cube_not_numpys_float32_power():
    # NumPy's float32 power is 1 ulp off the exact cube at step 1 (and depends on the SIMD
    # path NumPy picks); the profile rounds the exact cube.
    q = np.float32(1) - np.float32(1) / np.float32(1000)
    exact = np.float32(float(q) ** 3)  # the double cube is exact to 2^-53: no tie here
    s = tfmot_polynomial_decay(1, 0.1, 0.9, 0, 1000, execution="eager")
    assert s == np.float32(np.float32(np.float32(0.1 - 0.9) * exact) + np.float32(0.9))


def test_graph_count_is_folded_not_the_count_of_the_sparsity():
    # Grappler folds 1 - (m + 0.9f) into (1 - 0.9f) - m inside _update_mask.
    s = tfmot_polynomial_decay(875, 0.1, 0.9, 0, 1000)
    assert tfmot_keep_count(s, 64) == 6
    assert tfmot_polynomial_decay_keep_count(64, 875, 0.1, 0.9, 0, 1000) == 7


def test_exact_powers_agree_between_the_closed_forms():
    for step in range(0, 1001, 13):
        for power, form in (
            (1.0, lambda q: q),
            (2.0, lambda q: q * q),
            (0.5, lambda q: np.sqrt(q)),
        ):
            q = np.float32(1) - min(np.float32(1), np.float32(step) / np.float32(1000))
            want = np.float32(np.float32(0.1 - 0.9) * form(q)) + np.float32(0.9)
            assert tfmot_polynomial_decay(step, 0.1, 0.9, 0, 1000, power, execution="eager") == want


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(execution="xla"), "execution must be one of"),
        (dict(power=float("nan")), "power must be in"),
        (dict(power=0.0), "power must be in"),
        (dict(power=1e300), "positive float32 number"),
        (dict(end_step=0), "end_step must be > begin_step"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(step=3, initial_sparsity=0.1, final_sparsity=0.9, begin_step=0, end_step=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        tfmot_polynomial_decay(**args)
    with pytest.raises(ValueError, match=match):
        tfmot_polynomial_decay_keep_count(5, **args)


def _have_tfmot() -> bool:
    return all(
        importlib.util.find_spec(m) is not None
        for m in ("tensorflow", "tf_keras", "tensorflow_model_optimization")
    )


@pytest.mark.skipif(
    not _have_tfmot(),
    reason="TF-MOT is not installed (optional: pip install "
    "tensorflow-cpu tf-keras tensorflow-model-optimization)",
)
def test_profile_against_tfmot():
    script = Path(__file__).with_name("tfmot_reference.py")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(script.parent.parent), os.environ.get("PYTHONPATH", "")]),
    )
    out = subprocess.run(
        [sys.executable, str(script), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    total = [line for line in out.stdout.splitlines() if line.startswith("total:")]
    assert out.returncode == 0 and total, out.stdout[-3000:] + out.stderr[-3000:]
    assert " 0 mismatches;" in total[0], total[0]
