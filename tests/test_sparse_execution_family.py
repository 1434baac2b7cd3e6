"""The sparse_execution family: the reference's sparse path meets the dense definition within
the family's stated bound, and that bound is tight enough to refuse a float32 kernel."""

from __future__ import annotations

import numpy as np
import pytest

from conformance import golden
from conformance.backend import ReferenceBackend, _masked_model
from conformance.compare import compare
from conformance.families.sparse_execution import FAMILY, running_bounds
from refprune.train import SGD

CASES = [c for c in golden.load(golden.GOLDEN_DIR / "sparse_execution.json").cases]


def _dense(case):
    i = case.inputs
    if case.op == "sparse_forward":
        return _masked_model(i["params"], i["masks"], i["activation"], "mse").forward(i["X"])
    model = _masked_model(i["params"], i["masks"], i["activation"], i["loss"])
    value, grads = model.loss_and_grads(i["X"], i["y"])
    SGD(lr=i["lr"], weight_decay=i["weight_decay"]).step(model, grads)
    return {"params": dict(model.params), "loss": value}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.id}-{c.op}" for c in CASES])
def test_the_sparse_reference_meets_the_dense_masked_network_within_the_bound(case):
    """refprune.sparse (SciPy CSR) against refprune.mlp / refprune.train.SGD (dense, w * M)."""
    got = getattr(ReferenceBackend(), case.op)(**case.inputs)
    dense = _dense(case)
    tol = FAMILY.tolerance(case.op, dense, case.inputs)
    assert compare(dense, got, tol, inputs=case.inputs) is None


@pytest.mark.parametrize("case", CASES, ids=[f"{c.id}-{c.op}" for c in CASES])
def test_the_golden_answer_moved_to_float32_fails(case):
    """Every golden case with full-mantissa parameters refuses float32 rounding of its answer;
    the others at least refuse a relative error of 2^-24 everywhere."""
    expected = case.expected[next(iter(case.expected))]
    tol = case.tolerance[next(iter(case.tolerance))]

    def moved(x):
        return np.asarray(x, dtype=np.float64) * (1 + 2.0**-24)

    if case.op == "sparse_forward":
        wrong = moved(expected)
    else:
        wrong = {
            "params": {n: moved(p) for n, p in expected["params"].items()},
            "loss": float(expected["loss"]) * (1 + 2.0**-24),
        }
    assert compare(expected, wrong, tol, inputs=case.inputs) is not None


def test_the_running_bound_leaves_pruned_entries_no_room():
    case = next(c for c in CASES if "pruned-garbage" in c.flags and c.op == "sparse_train_step")
    i = case.inputs
    b = running_bounds(
        i["params"],
        i["masks"],
        i["X"],
        i["activation"],
        i["loss"],
        i["y"],
        i["lr"],
        i["weight_decay"],
    )
    for n, m in i["masks"].items():
        assert np.all(b["params"][n][~m] == 0.0)
        assert np.all(b["params"][n][m] > 0.0)


def test_the_csr_kernel_of_the_wrong_backends_passes_with_its_hooks_at_their_defaults():
    """Each wrong backend of tests/wrong_backends/sparse_execution.py changes one hook of this
    kernel, so the kernel itself must pass the family: the defect is the hook alone."""
    from conformance.runner import run
    from tests.wrong_backends.sparse_execution import CSRKernel

    report = run(CSRKernel(), families=["sparse_execution"], max_examples=10, shrink=False)
    assert report.ok, "\n\n".join(f"{r.id}: {r.detail}" for r in report.failures)
