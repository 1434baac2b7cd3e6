"""Autograd gradients against central finite differences, op by op and for whole MLP losses."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refprune import autograd as ag
from refprune.mlp import MLP

REL = 1e-6


def rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of scalar f at array x (x is restored afterwards)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def check_op(build, *arrays):
    """build(*tensors) -> scalar tensor; compare every input's gradient with finite differences."""
    leaves = [ag.Tensor(a, requires_grad=True) for a in arrays]
    out = build(*leaves)
    out.backward()
    # central differences carry an absolute rounding error of about eps_mach * |f| / h
    # (h = 1e-6), which dominates where an input's whole gradient is tiny
    atol = 1e-9 * max(1.0, abs(float(out.data)))
    for leaf, a in zip(leaves, arrays):
        num = numeric_grad(lambda: float(build(*[ag.Tensor(b) for b in arrays]).data), a)
        assert np.max(np.abs(leaf.grad - num)) <= REL * np.max(np.abs(num)) + atol, build


shapes = st.tuples(st.integers(1, 4), st.integers(1, 4))
seeds = st.integers(0, 2**32 - 1)


def rand(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


@given(shapes, st.integers(1, 4), seeds)
def test_matmul_and_transpose(shape, k, seed):
    a, b = rand(seed, *shape), rand(seed + 1, k, shape[1])
    check_op(lambda x, y: ag.sum(ag.tanh(x @ y.T)), a, b)


@given(shapes, seeds, st.sampled_from(["row", "col", "scalar", "full"]))
def test_broadcasting_add_mul(shape, seed, how):
    a = rand(seed, *shape)
    bshape = {"row": (shape[1],), "col": (shape[0], 1), "scalar": (), "full": shape}[how]
    b = rand(seed + 7, *bshape) if bshape else np.asarray(rand(seed + 7, 1)[0])
    check_op(lambda x, y: ag.sum(ag.sigmoid(x * y + y)), a, b)
    check_op(lambda x, y: ag.mean(ag.tanh(x - y) * x), a, b)


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "identity"])
@given(shapes, seeds)
def test_activations(act, shape, seed):
    a = rand(seed, *shape)
    a[np.abs(a) < 1e-3] = 0.5  # keep finite differences away from ReLU's kink
    check_op(lambda x: ag.sum(getattr(ag, act)(x) * x), a)


@given(shapes, seeds)
def test_log_softmax_and_cross_entropy(shape, seed):
    z = 3 * rand(seed, *shape)
    labels = np.random.default_rng(seed).integers(0, shape[1], shape[0])
    w = rand(seed + 3, *shape)
    check_op(lambda x: ag.sum(ag.log_softmax(x) * ag.Tensor(w)), z)
    check_op(lambda x: ag.cross_entropy(x, labels), z)


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1000.0, -1000.0, 0.0]])
    t = ag.Tensor(z, requires_grad=True)
    loss = ag.cross_entropy(t, np.array([1]))
    loss.backward()
    assert np.isfinite(loss.data) and loss.data == pytest.approx(2000.0)
    assert np.all(np.isfinite(t.grad))


@given(shapes, seeds)
def test_mse(shape, seed):
    p, t = rand(seed, *shape), rand(seed + 1, *shape)
    check_op(lambda x: ag.mse(x, t), p)
    assert float(ag.mse(ag.Tensor(p), t).data) == pytest.approx(np.mean((p - t) ** 2))


def test_gradients_accumulate():
    x = ag.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = ag.sum(x * x + x)  # x used twice: both paths add up
    y.backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data + 1)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@given(sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4), n=st.integers(1, 6), seed=seeds)
def test_full_mlp_loss_gradient(activation, loss, sizes, n, seed):
    model = MLP(sizes, activation, loss=loss, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]))
    for name in model.bias_names():  # non-zero biases exercise their gradient
        model.params[name][:] = 0.1 * rng.standard_normal(model.params[name].shape)
    y = (
        rng.integers(0, sizes[-1], n)
        if loss == "cross_entropy"
        else rng.standard_normal((n, sizes[-1]))
    )
    assume(activation != "relu" or min_abs_preactivation(model, X) > 1e-4)  # away from the kink
    loss, grads = model.loss_and_grads(X, y)
    # central differences carry an absolute rounding error of about eps_mach * |L| / h = 2e-10 |L|
    # (h = 1e-6), which dominates where a parameter's whole gradient is tiny
    atol = 1e-9 * max(1.0, abs(loss))
    for name, p in model.params.items():
        num = numeric_grad(lambda: model.loss_value(X, y), p)
        assert np.max(np.abs(grads[name] - num)) <= REL * np.max(np.abs(num)) + atol, name


def min_abs_preactivation(model, X):
    a, smallest = X, np.inf
    for l in range(model.n_layers - 1):
        z = a @ model.params[f"layers.{l}.weight"].T + model.params[f"layers.{l}.bias"]
        smallest = min(smallest, np.min(np.abs(z)))
        a = np.maximum(z, 0)
    return smallest
