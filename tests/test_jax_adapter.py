"""The JAX adapter: the curvature family passes JAX except where its float64 derivatives
lose digits (saturated units and a saturated softmax).

Runs only when jax is installed (the ``jax`` extra); the import test at the end runs
everywhere. Compiling JAX's functions for every new network shape is what costs time, so
the suite runs here with few examples and the curvature family only; the full run and its
table are in docs/jax_adapter.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import strategies as cst
from conformance.backend import NotProvided, ReferenceBackend
from conformance.runner import golden_case, read_xfails, run

XFAILS = Path(__file__).resolve().parents[1] / "conformance" / "adapters" / "jax_xfails.txt"
SATURATED_TANH = (431, 432, 433, 434)  # tanh units in their flat tails, mse
SATURATED_SOFTMAX = (424, 425, 426, 427, 428)  # 1 - p_y below 1e-9
LARGE_LOGITS = (97, 98, 99)  # logits of order 100


@pytest.fixture(scope="module")
def jax_backend():
    pytest.importorskip("jax", reason="the JAX adapter needs jax (pip install 'refprune[jax]')")
    from conformance.adapters.jax_backend import JaxBackend

    return JaxBackend()


def test_the_suite_passes_jax_up_to_its_declared_deviations(jax_backend):
    report = run(
        jax_backend,
        backend_spec="conformance.adapters.jax_backend:JaxBackend",
        families=["curvature"],
        max_examples=2,
        xfails=read_xfails(XFAILS),
        shrink=False,
    )
    assert report.ok, "\n\n".join(f"{r.id} {r.flags}: {r.detail}" for r in report.failures)
    assert not report.unmatched_xfails
    summary = report.summary()
    assert summary["curvature"]["golden"]["passed"] == 87


def test_the_declared_deviations_are_the_saturated_cases():
    ids = {int(i) for i in read_xfails(XFAILS)}
    assert ids >= set(SATURATED_TANH) | set(SATURATED_SOFTMAX) | set(LARGE_LOGITS)
    for i in ids:
        flags = set(golden_case(i).flags)
        assert flags & {"saturated", "saturated-softmax", "large-logits"}, (i, flags)


# ------------------------------------------------------------------ the deviations, pinned
def test_tanh_at_the_highest_accuracy_passes_the_saturated_cases(jax_backend):
    """Default tanh differentiates as (1 + t)(1 - t) from the rounded t; AccuracyMode.HIGHEST
    as 4 logistic(2x) logistic(-2x). Only the second keeps the digits of a saturated unit."""
    jax = pytest.importorskip("jax")
    if not hasattr(jax.lax, "AccuracyMode"):
        pytest.skip("this jax has no accuracy modes")
    from conformance.adapters.jax_backend import JaxHighestAccuracy

    highest = run(JaxHighestAccuracy(), case_ids=SATURATED_TANH, properties=False)
    default = run(jax_backend, case_ids=SATURATED_TANH, properties=False)
    assert highest.ok and len(highest.results) == len(SATURATED_TANH)
    assert sorted(int(r.id) for r in default.failures) == list(SATURATED_TANH)


def test_log_softmax_loses_a_saturated_loss_to_its_log_of_a_sum(jax_backend):
    """jax.nn.log_softmax is shifted - log(sum(exp(shifted))): for 1 - p_y ~ 1e-10 the log of a
    sum rounded to 1 + 1e-10 keeps about 6 digits of the loss, not 16 (log1p would)."""
    case = golden_case(SATURATED_SOFTMAX[0])
    want = case.expected["loss"]
    got = jax_backend.loss_value(**case.inputs)
    assert 1e-9 < abs(got - want) / want < 1e-5


# ------------------------------------------------------------------ what JAX computes
@settings(max_examples=10, deadline=None)
@given(cst.networks(max_layers=2, max_width=3, max_samples=3), st.data())
def test_forward_over_reverse_hvp_matches_the_reference(jax_backend, net, data):
    v = data.draw(cst.like(net["params"]), label="v")
    got = jax_backend.hvp(v=v, **net)
    want = ReferenceBackend().hvp(v=v, **net)
    scale = max(1.0, max(float(np.max(np.abs(a))) for a in want.values()))
    assert all(np.allclose(got[n], want[n], rtol=1e-10, atol=1e-10 * scale) for n in want)


def test_the_exact_diagonal_is_the_diagonal_of_jax_hessian(jax_backend):
    case = golden_case(98)
    net = {k: v for k, v in case.inputs.items() if k != "method"}
    full = jax_backend.full_hessian(**net)
    diag = jax_backend.hessian_diag(**net, method="exact")
    flat = np.concatenate([np.ravel(diag[n]) for n in diag])
    assert np.array_equal(flat, np.diagonal(full))


def test_the_obd_recursion_and_the_random_rule_are_not_provided(jax_backend):
    net = {"layers.0.weight": np.ones((2, 2)), "layers.0.bias": np.zeros(2)}
    with pytest.raises(NotProvided):
        jax_backend.hessian_diag(
            params=net,
            X=np.ones((1, 2)),
            y=np.array([0]),
            activation="tanh",
            loss="cross_entropy",
            method="obd",
        )
    with pytest.raises(NotProvided):
        jax_backend.scores(
            rule="random",
            params=net,
            X=None,
            y=None,
            activation="relu",
            loss="mse",
            masks=None,
            options={"seed": 0},
        )


def test_inputs_are_left_untouched(jax_backend):
    case = golden_case(97)
    before = {n: a.copy() for n, a in case.inputs["params"].items()}
    jax_backend.hvp(**case.inputs)
    assert all(np.array_equal(before[n], case.inputs["params"][n]) for n in before)


# ------------------------------------------------------------------ jax stays optional
def test_the_adapter_module_imports_without_jax():
    code = (
        "import sys; sys.modules['jax'] = None\n"
        "import conformance.adapters.jax_backend as m\n"
        "try:\n    m.JaxBackend()\nexcept ImportError as e:\n    print('ImportError', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.startswith("ImportError") and "refprune[jax]" in out.stdout
