"""The TF-MOT adapter: the suite passes TF-MOT under the tfmot profile, except where its
float32 schedules meet the float64 schedules family.

TensorFlow runs only in other processes (the conformance worker, and one script below), so
that its threads and settings stay out of this one. Runs only when TF-MOT is installed (the
``tfmot`` extra); the import test at the end runs everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.runner import golden_case, read_xfails, run

ROOT = Path(__file__).resolve().parents[1]
SPEC = "conformance.adapters.tfmot_backend:TfmotBackend"
XFAILS = ROOT / "conformance" / "adapters" / "tfmot_xfails.txt"
DEVIATIONS = {
    "367",
    "368",
    "369",
    "372",
    "schedules/differential",
    "schedules/polynomial-differential",
}


def _have_tfmot() -> bool:
    return all(
        importlib.util.find_spec(m) is not None
        for m in ("tensorflow", "tf_keras", "tensorflow_model_optimization")
    )


needs_tfmot = pytest.mark.skipif(
    not _have_tfmot(), reason="TF-MOT is not installed (optional: pip install 'refprune[tfmot]')"
)

# One TensorFlow process for the direct checks: each line of its output is one JSON result.
CHECKS = r"""
import json
import numpy as np
from conformance.adapters.tfmot_backend import TfmotBackend
from conformance.backend import ReferenceBackend
from conformance.conventions import (get_profile, tfmot_polynomial_decay,
                                     tfmot_polynomial_decay_keep_count)

b, ref, out = TfmotBackend(), ReferenceBackend(), {}
# 1. cubic 0 -> 0.9 over steps 0..100 (every 10): TF-MOT's values and counts are the profile's
o = {"initial_sparsity": 0.0, "final_sparsity": 0.9, "t0": 0, "dt": 10, "n_steps": 10}
got = b.schedule(name="cubic", options=o, n=1000, rounding="round-half-even")
out["steps"] = got["steps"].tolist()
out["values_are_profile"] = [float(tfmot_polynomial_decay(t, 0.0, 0.9, 0, 100))
                             for t in got["steps"]] == got["values"].tolist()
out["counts"] = got["alive_counts"].tolist()
out["profile_counts"] = [tfmot_polynomial_decay_keep_count(1000, t, 0.0, 0.9, 0, 100)
                         for t in got["steps"]]
out["reference_counts"] = ref.schedule(name="cubic", options=o, n=1000,
                                       rounding="round-half-even")["alive_counts"].tolist()
# 2. ties at the threshold are all kept: [1, 1, 1, 1, 2] at sparsity 0.6 keeps all five
s = {"w": np.array([1.0, 1.0, 1.0, 1.0, 2.0])}
out["ties_kept"] = b.profile_mask(scores=s, amount=0.6, alive=None, scope="layer",
                                  ignore=[])["w"].tolist()
# 3. a threshold of 0 revives pruned entries: 2 of 4 alive, sparsity 0.25 keeps k = 3
alive = {"w": np.array([True, True, False, False])}
s = {"w": np.array([0.5, 0.7, 0.9, 0.3])}
out["revived"] = b.profile_mask(scores=s, amount=0.25, alive=alive, scope="layer",
                                ignore=[])["w"].tolist()
out["revived_profile"] = get_profile("tfmot").keep_masks(s, 0.25, alive=alive)["w"].tolist()
# 4. N:M on non-negative scores with ties: tf.math.top_k keeps the lower index, as the reference
sc = np.array([[0.4, 0.4, 0.1, 0.4, 0.0, 0.0, 0.0, 0.0], [0.3, 0.2, 0.2, 0.2, 0.9, 0.9, 0.9, 0.9]])
out["n_m"] = b.n_m_mask(scores=sc, n=2, m=4, alive=None).tolist()
out["n_m_reference"] = ref.n_m_mask(scores=sc, n=2, m=4, alive=None).tolist()
# 5. TensorFlow flushes subnormals: a lone 5e-324 reads as 0, so the threshold is 0 and all stay
s = {"w": np.array([0.0] * 24 + [5e-324])}
out["subnormal"] = b.profile_mask(scores=s, amount=0.999, alive=None, scope="layer",
                                  ignore=[])["w"].tolist()
out["subnormal_profile"] = get_profile("tfmot").keep_masks(s, 0.999)["w"].tolist()
out["subnormal_reference"] = get_profile("reference").keep_masks(s, 0.999)["w"].tolist()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def checks():
    out = subprocess.run(
        [sys.executable, "-c", CHECKS], capture_output=True, text=True, cwd=ROOT, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_tfmot
def test_the_suite_passes_tfmot_up_to_its_declared_deviations():
    report = run(
        SPEC,
        profile="tfmot",
        families=["profiles", "masks", "schedules"],
        max_examples=10,
        xfails=read_xfails(XFAILS),
        shrink=False,
    )
    assert report.ok, "\n\n".join(f"{r.id} {r.flags}: {r.detail}" for r in report.failures)
    assert not report.unmatched_xfails
    summary = report.summary()
    assert summary["profiles"]["golden"]["passed"] == 7
    assert summary["profiles"]["property"]["passed"] == 1


def test_the_declared_deviations_are_float32_schedules():
    assert read_xfails(XFAILS) == DEVIATIONS
    for i in (x for x in DEVIATIONS if x.isdigit()):
        case = golden_case(int(i))
        assert case.op == "schedule" and case.inputs["rounding"] == "round-half-even"


@needs_tfmot
def test_its_schedules_are_the_tfmot_profile_bit_for_bit(checks):
    assert checks["steps"] == list(range(0, 101, 10))
    assert checks["values_are_profile"]
    assert checks["counts"] == checks["profile_counts"]
    # step 50: sparsity 0.78749996f, 1000 * 0.21250004f rounds to 213; float64 0.7875 -> 212
    assert checks["counts"][5] == 213 and checks["reference_counts"][5] == 212


@needs_tfmot
def test_ties_at_the_threshold_are_all_kept(checks):
    assert checks["ties_kept"] == [True] * 5


@needs_tfmot
def test_a_zero_threshold_revives_pruned_entries(checks):
    assert checks["revived"] == [True, True, True, True] == checks["revived_profile"]


@needs_tfmot
def test_n_m_ties_go_to_the_lower_index(checks):
    assert checks["n_m"] == checks["n_m_reference"]


@needs_tfmot
def test_a_subnormal_weight_reads_as_zero(checks):
    assert checks["subnormal"] == [True] * 25 == checks["subnormal_profile"]
    # the reference prunes round(0.999 * 25) = 25 of them
    assert checks["subnormal_reference"] == [False] * 25


def test_the_tfmot_profile_flushes_subnormals_without_tensorflow():
    from conformance.conventions import get_profile

    for dtype in (np.float32, np.float64):
        tiny = np.finfo(dtype).tiny
        w = {"w": np.array([0.0, tiny / 2, tiny, 2 * tiny], dtype=dtype)}
        # k = 2 of 4: the smallest normal number is not flushed, so the threshold is tiny
        assert get_profile("tfmot").keep_masks(w, 0.5)["w"].tolist() == [False, False, True, True]
        w = {"w": np.array([0.0, 0.0, tiny / 2, tiny / 4], dtype=dtype)}
        # k = 2: the 2nd largest |w| reads as 0, so everything is kept
        assert get_profile("tfmot").keep_masks(w, 0.5)["w"].tolist() == [True] * 4


def test_the_adapter_module_imports_without_tensorflow():
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import conformance.adapters.tfmot_backend as m\n"
        "try:\n    m.TfmotBackend()\nexcept ImportError as e:\n    print('ImportError', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.startswith("ImportError") and "refprune[tfmot]" in out.stdout
