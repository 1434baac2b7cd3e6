"""The sparse path: CSR form of a pruned MLP, its execution choice, and sparse masked SGD.

Equalities are norm-wise: max|a - b| <= tol * max|b| (a per-entry relative error
is meaningless where a pre-activation cancels to ~0).
"""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refprune.mlp import MLP
from refprune.sparse import SparseMLP, to_sparse
from refprune import sparse_kernels
from refprune.sparse_kernels import (csr_from_positions, csr_matmul, csr_product, feature_major, predicted_seconds,
                                     row_blocks, run_tasks, sampled_product, sparse_blocks, sparse_is_faster,
                                     transpose)
from refprune.sparse_train import SparseSGD
from refprune.train import SGD, train

U32 = 2.0 ** -24   # unit roundoff of float32


def pruned(sizes, density, seed=0, activation="relu", loss="cross_entropy", bias_density=1.0):
    """MLP with every weight (and bias, if bias_density < 1) kept with probability density."""
    model = MLP(sizes, activation, loss=loss, seed=seed)
    rng = np.random.default_rng(seed + 100)
    masks = {n: rng.random(model.params[n].shape) < density for n in model.weight_names()}
    masks |= {n: rng.random(model.params[n].shape) < bias_density for n in model.bias_names()}
    model.set_masks(masks)
    for n in model.bias_names():   # non-zero biases, so bias handling is exercised
        model.params[n][:] = rng.standard_normal(model.params[n].shape) * model.masks[n]
    return model


def rel(a, b):
    if np.size(b) == 0:
        return 0.0
    scale = np.abs(b).max()
    return np.abs(a - b).max() / (scale if scale > 0 else 1.0)


def batch(model, n, seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((n, model.sizes[0])).astype(dtype)


sizes_st = st.lists(st.integers(1, 12), min_size=2, max_size=4)
density_st = st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0])   # 0: a layer with nothing stored
activation_st = st.sampled_from(["relu", "tanh", "sigmoid", "identity"])
execution_st = st.sampled_from(["auto", "dense", "sparse"])


# ------------------------------------------------------------------ forward
@given(sizes_st, density_st, activation_st, execution_st, st.sampled_from([1, 2, 7]), st.integers(0, 2**16))
def test_forward_equals_dense_masked_forward_float64(sizes, density, activation, execution, n, seed):
    model = pruned(sizes, density, seed, activation, bias_density=0.5)
    X = batch(model, n, seed)
    assert rel(SparseMLP(model, execution=execution).forward(X), model.forward(X)) <= 1e-12


def float32_error_bound(model, X):
    """Elementwise a priori bound on |f32 - f64| (standard dot-product rounding, propagated).

    e_0 = u|x|;  e_{l+1} = |W| e_l + gamma_{k+2} (|W| (|a_l| + e_l) + |b|) + 4u (|a_{l+1}| + |W| e_l)
    with k = stored weights per row, gamma_m = m u / (1 - m u), u = 2**-24, and
    activations that are 1-Lipschitz (relu, tanh, identity; sigmoid is 1/4-Lipschitz).
    """
    p = model.effective_params()
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "identity": lambda z: z,
           "sigmoid": lambda z: 1 / (1 + np.exp(-z))}[model.activation]
    a, e = X, U32 * np.abs(X)
    for l in range(model.n_layers):
        W, b = p[f"layers.{l}.weight"], p[f"layers.{l}.bias"]
        k = (W != 0).sum(axis=1) + 2
        gamma = k * U32 / (1 - k * U32)
        z = a @ W.T + b
        e = e @ np.abs(W).T + gamma * ((np.abs(a) + e) @ np.abs(W).T + np.abs(b))
        a = act(z) if l < model.n_layers - 1 else z
        e = e + 4 * U32 * (np.abs(a) + e)
    return e


@given(sizes_st, density_st, activation_st, execution_st, st.integers(0, 2**16))
def test_float32_forward_within_the_rounding_bound(sizes, density, activation, execution, seed):
    model = pruned(sizes, density, seed, activation)
    X = batch(model, 5, seed)
    f32 = SparseMLP(model, dtype=np.float32, execution=execution).forward(X.astype(np.float32))
    assert f32.dtype == np.float32
    assert np.all(np.abs(f32 - model.forward(X)) <= float32_error_bound(model, X))


def test_forward_of_a_784_300_100_10_network_at_2_percent():
    model = pruned((784, 300, 100, 10), 0.02)
    X = batch(model, 33)
    ref = model.forward(X)
    for execution in ("auto", "sparse", "dense"):
        sm = SparseMLP(model, execution=execution)
        assert rel(sm.forward(X), ref) <= 1e-12
        assert rel(sm.forward(X[:1]), ref[:1]) <= 1e-12
    assert np.array_equal(SparseMLP(model).predict(X), np.argmax(ref, axis=1))


@pytest.mark.parametrize("n", [1, 9, 150])   # 150 samples of width 1500: three chunks
def test_thread_count_does_not_change_a_bit(n):
    model = pruned((1500, 40, 5), 0.1)
    X = batch(model, n)
    outs = [SparseMLP(model, execution="sparse", threads=t).forward(X) for t in (1, 2, 3)]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    assert rel(outs[0], model.forward(X)) <= 1e-12
    A = SparseMLP(model).layers[0].weight
    B = np.ascontiguousarray(X.T)
    assert all(np.array_equal(csr_matmul(row_blocks(A, p), B, t), A @ B)
               for p in (1, 2, 5, 1000) for t in (1, 2, 3))


def test_same_inputs_same_bits():
    model = pruned((30, 20, 4), 0.3)
    X = batch(model, 6)
    assert np.array_equal(SparseMLP(model).forward(X), SparseMLP(model).forward(X))


# ------------------------------------------------------------------ storage
@given(sizes_st, density_st, st.integers(0, 2**16))
def test_round_trip_to_dense_is_exact(sizes, density, seed):
    model = pruned(sizes, density, seed, bias_density=0.5)
    dense = SparseMLP(model).to_dense()
    assert all(np.array_equal(dense[n], p) for n, p in model.effective_params().items())
    dense32 = SparseMLP(model, dtype=np.float32).to_dense()
    assert all(np.array_equal(dense32[n], p.astype(np.float32)) for n, p in model.effective_params().items())


def test_no_explicit_zeros_are_stored():
    model = pruned((6, 5, 3), 0.8)
    W = model.params["layers.0.weight"]
    alive = np.argwhere(model.masks["layers.0.weight"])
    W[tuple(alive[0])] = 0.0      # alive, value 0.0
    W[tuple(alive[1])] = -0.0     # alive, value -0.0
    W[tuple(alive[2])] = 1e-46    # alive, non-zero in float64, rounds to 0.0 in float32
    for dtype in (np.float64, np.float32):
        for layer, name in zip(SparseMLP(model, dtype=dtype).layers, model.weight_names()):
            stored = layer.weight.data
            assert np.all(stored != 0)
            assert layer.nnz == np.count_nonzero(model.effective_params()[name].astype(dtype))
            assert layer.weight.has_canonical_format


def test_an_unpruned_model_is_valid_and_runs_dense_by_the_automatic_rule():
    model = MLP((784, 300, 100, 10), seed=0)
    sm = SparseMLP(model)
    assert sm.density() == 1.0
    assert all(sm.plan(n) == [("dense", 1)] * 3 for n in (1, 32, 256, 2048))
    X = batch(model, 4)
    assert rel(sm.forward(X), model.forward(X)) <= 1e-12


def test_model_is_not_modified_and_later_changes_are_not_seen():
    model = pruned((8, 6, 3), 0.5)
    before = model.state_dict()
    sm = to_sparse(model)
    X = batch(model, 3)
    X_copy = X.copy()
    out = sm.forward(X)
    assert np.array_equal(X, X_copy)
    assert all(np.array_equal(before["params"][n], p) for n, p in model.params.items())
    model.params["layers.0.weight"][:] = 7.0
    assert np.array_equal(sm.forward(X), out)


# ------------------------------------------------------------------ execution choice
def test_automatic_choice_follows_density_and_batch():
    assert SparseMLP(pruned((1000, 1000), 0.01)).plan(1) == [("sparse", 1)]
    assert sparse_blocks(838861, 1, np.dtype("float64"), 2) == 2      # 4096 x 4096 at 5 %: two threads
    assert sparse_blocks(4704, 32, np.dtype("float64"), 2) == 1       # 300 x 784 at 2 %, batch 32: one
    assert sparse_is_faster((4096, 4096), 167772, 32, np.dtype("float64"), 2)
    assert not sparse_is_faster((4096, 4096), 4096 * 4096 // 2, 256, np.dtype("float64"), 2)
    tiny = pruned((10, 3), 0.5)     # too little work for a sparse call to pay
    assert SparseMLP(tiny).plan(1) == [("dense", 1)]


@pytest.mark.skipif(sparse_kernels.KERNELS != "compiled", reason="the table is of the compiled kernels")
def test_the_crossover_table_in_the_docstring_is_the_cost_model():
    import refprune.sparse_kernels as kernels
    rows = [line.split() for line in kernels.__doc__.splitlines() if line.strip().startswith("float")]
    assert len(rows) == 8
    for dtype, n_out, _, n_in, *table in rows:
        got = [kernels.crossover_density((int(n_out), int(n_in)), n, np.dtype(dtype), 2) for n in (1, 32, 256, 2048)]
        assert [f"{g:.3f}" for g in got] == table, (dtype, n_out, n_in)


def test_predicted_times_grow_with_work():
    f64 = np.dtype("float64")
    assert predicted_seconds("dense", (100, 100), 0, 32, f64) < predicted_seconds("dense", (100, 200), 0, 32, f64)
    assert predicted_seconds("sparse", (9, 9), 10, 8, f64) < predicted_seconds("sparse", (9, 9), 20, 8, f64)


def test_override_forces_the_execution_per_layer():
    model = pruned((50, 40, 30, 5), 0.5)
    assert [h for h, _ in SparseMLP(model, execution="sparse").plan(4)] == ["sparse"] * 3
    assert [h for h, _ in SparseMLP(model, execution="dense").plan(4)] == ["dense"] * 3
    mixed = SparseMLP(model, execution=("sparse", "dense", "sparse"))
    assert [h for h, _ in mixed.plan(4)] == ["sparse", "dense", "sparse"]
    X = batch(model, 4)
    assert rel(mixed.forward(X), model.forward(X)) <= 1e-12


# ------------------------------------------------------------------ kernels
compiled = pytest.mark.skipif(sparse_kernels.KERNELS != "compiled",
                              reason="installed without the compiled kernels (no C compiler)")


@pytest.fixture
def scipy_kernels(monkeypatch):
    """Run the sparse path as installed without a C compiler: SciPy's products, einsum."""
    monkeypatch.setattr(sparse_kernels, "_native", None)


def test_compiled_kernels_are_built_where_required():
    # CI installs with a C compiler and sets this, so a broken build cannot pass as the fallback
    if os.environ.get("REFPRUNE_REQUIRE_KERNELS"):
        assert sparse_kernels.KERNELS == "compiled"


def sparse_operands(draw_shape, n, density, dtype, seed):
    rng = np.random.default_rng(seed)
    n_out, n_in = draw_shape
    W = rng.standard_normal((n_out, n_in)) * (rng.random((n_out, n_in)) < density)
    flat = np.flatnonzero(W)
    A = csr_from_positions(W.shape, flat, W.ravel()[flat].astype(dtype))
    B = rng.standard_normal((n_in, n) if n > 1 else n_in).astype(dtype)
    B[rng.random(B.shape) < 0.1] = -0.0           # products -0.0: the sign of a zero sum is exact too
    return A, B


@compiled
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 75), density_st,
       st.sampled_from([np.float64, np.float32]), st.integers(0, 2**16))
def test_compiled_product_has_scipy_bits(n_out, n_in, n, density, dtype, seed):
    # n up to 75 runs every path of the kernel: 4 vectors, 1 vector and scalar tails, the matvec
    A, B = sparse_operands((n_out, n_in), n, density, dtype, seed)
    out = np.empty((n_out, n) if n > 1 else n_out, dtype=dtype)
    ref = A @ B
    assert np.array_equal(csr_product(A, B, out), ref) and np.array_equal(np.signbit(out), np.signbit(ref))


@compiled
def test_compiled_kernels_check_their_arguments():
    A, B = sparse_operands((5, 4), 3, 0.5, np.float64, 0)
    out = np.empty((5, 3))
    native = sparse_kernels._native
    with pytest.raises(TypeError, match="float64 or all float32"):
        native.csr_matmul(A.indptr, A.indices, A.data, B.astype(np.float32), out)
    with pytest.raises(TypeError, match="C-contiguous"):
        native.csr_matmul(A.indptr, A.indices, A.data, np.asfortranarray(B), out)
    with pytest.raises(TypeError, match="int32"):
        native.csr_matmul(A.indptr.astype(np.int64), A.indices, A.data, B, out)
    with pytest.raises(ValueError, match="cuts must be ascending"):
        native.csr_matmul(A.indptr, A.indices, A.data, B, out, np.array([0, 6], dtype=np.int64), 2)
    with pytest.raises(ValueError, match="cuts must be ascending"):
        native.csr_matmul(A.indptr, A.indices, A.data, B, out, np.array([0, 3, 2, 5], dtype=np.int64), 2)
    with pytest.raises(TypeError, match="int64"):
        native.csr_matmul(A.indptr, A.indices, A.data, B, out, np.array([0, 5], dtype=np.int32), 2)
    with pytest.raises(ValueError, match="threads"):
        native.csr_matmul(A.indptr, A.indices, A.data, B, out, None, 0)
    with pytest.raises(ValueError, match="shape"):
        native.csr_matmul(A.indptr, A.indices, A.data, B, np.empty((5, 2)))
    with pytest.raises(ValueError, match="shape"):
        native.sampled_product(A.indptr, A.indices, out[:, :2].copy(), B, np.empty(A.nnz))


def _products_agree(A, B, ref, calls, threads):
    return all(np.array_equal(csr_matmul(row_blocks(A, 4 * threads), B, threads), ref) for _ in range(calls))


@compiled
def test_compiled_worker_threads_under_concurrent_callers():
    # two Python threads share the kernels' workers (one job at a time; the other runs alone)
    A, B = sparse_operands((300, 200), 17, 0.2, np.float64, 3)
    ref = A @ B
    results = run_tasks([lambda t=t: _products_agree(A, B, ref, 200, t) for t in (2, 3, 2, 1)], 2)
    assert all(results)


def _forked_product(queue):
    A, B = sparse_operands((300, 200), 17, 0.2, np.float64, 3)
    queue.put(_products_agree(A, B, A @ B, 20, 2))


@compiled
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_compiled_worker_threads_after_fork():
    import multiprocessing
    A, B = sparse_operands((300, 200), 17, 0.2, np.float64, 3)
    assert _products_agree(A, B, A @ B, 5, 2)        # the parent's workers are running
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forked_product, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and queue.get(timeout=5)


@pytest.mark.parametrize("n", [1, 9, 150])
def test_scipy_fallback_gives_the_compiled_bits(n, monkeypatch):
    model = pruned((1500, 40, 5), 0.1)
    X = batch(model, n)
    outs = [SparseMLP(model, execution="sparse", threads=2).forward(X)]
    monkeypatch.setattr(sparse_kernels, "_native", None)
    outs.append(SparseMLP(model, execution="sparse", threads=2).forward(X))
    assert np.array_equal(outs[0], outs[1])


def test_sparse_training_without_compiled_kernels(scipy_kernels):
    model = pruned((40, 30, 20, 5), 0.3, activation="tanh", bias_density=0.7)
    batches = labelled_batches(model, 4, 70, seed=5)
    ref = dense_steps(model, batches, 0.1, 0.9, 1e-3)
    got = sparse_steps(model, batches, 0.1, 0.9, 1e-3, "sparse", threads=2)
    assert all(rel(got.params[n], p) <= 1e-10 for n, p in ref.params.items())


@pytest.mark.parametrize("kernels", ["compiled", "scipy"])
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 75), density_st, st.integers(1, 3),
       st.integers(0, 2**16))
def test_sampled_product_is_the_dense_product_at_the_positions(kernels, n_out, n_in, n, density, threads,
                                                               seed):
    if kernels == "compiled" and sparse_kernels.KERNELS != "compiled":
        pytest.skip("installed without the compiled kernels")
    saved = sparse_kernels._native
    if kernels == "scipy":
        sparse_kernels._native = None
    try:
        _check_sampled_product(n_out, n_in, n, density, threads, seed)
    finally:
        sparse_kernels._native = saved


@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 75), st.integers(0, 2**16))
def test_sampled_product_in_float32(n_out, n_in, n, seed):
    rng = np.random.default_rng(seed)
    flat = np.flatnonzero(rng.random((n_out, n_in)) < 0.5)
    pattern = csr_from_positions((n_out, n_in), flat, np.ones(flat.size, dtype=np.float32))
    dZ, A = rng.standard_normal((n_out, n)), rng.standard_normal((n_in, n))
    got = sampled_product(dZ.astype(np.float32), A.astype(np.float32), [pattern],
                          np.empty(flat.size, dtype=np.float32))
    exact = (dZ.astype(np.float32).astype(np.float64) @ A.astype(np.float32).astype(np.float64).T).ravel()[flat]
    bound = (n + 1) * U32 * (np.abs(dZ) @ np.abs(A).T).ravel()[flat] * 1.01   # gamma_n |dZ| |A|^T
    assert np.all(np.abs(got - exact) <= bound)


def _check_sampled_product(n_out, n_in, n, density, threads, seed):
    rng = np.random.default_rng(seed)
    flat = np.flatnonzero(rng.random((n_out, n_in)) < density)
    pattern = csr_from_positions((n_out, n_in), flat, np.ones(flat.size))
    dZ, A = rng.standard_normal((n_out, n)), rng.standard_normal((n_in, n))
    got = sampled_product(dZ, A, row_blocks(pattern, threads), np.empty(flat.size), threads)
    # both sides are dot products of length n in float64, each within gamma_n sum |dz a| of the
    # exact value (Higham 2002, 3.1), so they differ by at most twice that; no relative test
    # (a sum can cancel to ~0)
    magnitude = (np.abs(dZ) @ np.abs(A).T).ravel()[flat]
    gamma = n * 2.0 ** -53 / (1 - n * 2.0 ** -53)
    assert np.all(np.abs(got - (dZ @ A.T).ravel()[flat]) <= 2 * gamma * magnitude)


@pytest.mark.parametrize("shape", [(1, 1), (3, 700), (300, 400), (13, 1100), (9, 3000)])   # narrow, wide rows
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threaded_transpose_is_the_transpose(shape, dtype):
    X = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    assert all(np.array_equal(transpose(X, t, min_size=1), X.T) for t in (1, 2, 3))
    assert np.array_equal(feature_major(X), X.T) and feature_major(X).flags.c_contiguous
    wide = np.zeros((shape[1], shape[0] + 5), dtype=dtype)          # into columns of a wider array
    feature_major(X, wide[:, 2:2 + shape[0]], threads=2)
    assert np.array_equal(wide[:, 2:2 + shape[0]], X.T) and not wide[:, :2].any() and not wide[:, 2 + shape[0]:].any()


@compiled
def test_compiled_transpose_checks_its_arguments():
    native, X = sparse_kernels._native, np.ones((3, 4))
    with pytest.raises(ValueError, match="shape of src transposed"):
        native.transpose(X, np.empty((3, 4)))
    with pytest.raises(TypeError, match="float64 or both float32"):
        native.transpose(X, np.empty((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="contiguous rows"):
        native.transpose(X[:, ::2], np.empty((2, 3)))
    read_only = np.empty((4, 3))
    read_only.flags.writeable = False
    with pytest.raises(TypeError, match="writable"):
        native.transpose(X, read_only)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_task_pool_returns_results_in_order_and_raises_errors(threads):
    assert run_tasks([lambda i=i: i * i for i in range(7)], threads) == [i * i for i in range(7)]
    with pytest.raises(ZeroDivisionError):
        run_tasks([lambda: 1, lambda: 1 / 0, lambda: 2], threads)


def test_csr_blocks_are_views_of_the_values():
    values = np.arange(1.0, 7.0)
    A = csr_from_positions((3, 4), np.array([0, 3, 5, 6, 8, 11]), values)
    blocks = row_blocks(A, 2)
    values *= 2.0
    assert np.array_equal(np.concatenate([b.toarray() for b in blocks]), A.toarray())
    assert A.toarray()[2, 3] == 12.0


# ------------------------------------------------------------------ training
def dense_steps(model, batches, lr, momentum, weight_decay):
    """refprune.train.SGD on the dense masked model, one update per batch."""
    model, opt = model.copy(), SGD(lr, momentum, weight_decay)
    for X, y in batches:
        opt.step(model, model.loss_and_grads(X, y)[1])
    return model


def sparse_steps(model, batches, lr, momentum, weight_decay, execution="auto", threads=None):
    opt = SparseSGD(model, lr=lr, momentum=momentum, weight_decay=weight_decay, execution=execution,
                    threads=threads)
    for X, y in batches:
        opt.step(X, y)
    return opt.to_model()


def labelled_batches(model, count, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        X = rng.standard_normal((n, model.sizes[0]))
        y = (rng.integers(0, model.sizes[-1], n) if model.loss == "cross_entropy"
             else rng.standard_normal((n, model.sizes[-1])))
        out.append((X, y))
    return out


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 1e-2), (0.9, 1e-2)])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_sparse_training_equals_dense_masked_training(momentum, weight_decay, loss):
    model = pruned((40, 30, 20, 5), 0.3, activation="tanh", loss=loss, bias_density=0.7)
    batches = labelled_batches(model, 6, 16, seed=5)
    ref = dense_steps(model, batches, 0.1, momentum, weight_decay)
    for execution in ("auto", "sparse", "dense"):
        got = sparse_steps(model, batches, 0.1, momentum, weight_decay, execution)
        for name, p in ref.params.items():
            assert rel(got.params[name], p) <= 1e-10, (execution, name)
            assert np.all(got.params[name][~model.masks[name]] == 0.0)


@given(sizes_st, density_st, activation_st, st.integers(1, 5), st.integers(0, 2**16))
def test_sparse_training_equals_dense_masked_training_over_shapes(sizes, density, activation, n, seed):
    model = pruned(sizes, density, seed, activation, bias_density=0.5)
    batches = labelled_batches(model, 3, n, seed)
    ref = dense_steps(model, batches, 0.05, 0.9, 1e-3)
    got = sparse_steps(model, batches, 0.05, 0.9, 1e-3, execution="sparse", threads=2)
    assert all(rel(got.params[n], p) <= 1e-10 for n, p in ref.params.items())


def test_sparse_training_equals_refprune_train_full_batch():
    model = pruned((784, 300, 100, 10), 0.02, seed=3)
    X, y = labelled_batches(model, 1, 64, seed=9)[0]
    ref = model.copy()
    train(ref, X, y, epochs=4, lr=0.05, momentum=0.9, weight_decay=5e-4)
    got = sparse_steps(model, [(X, y)] * 4, 0.05, 0.9, 5e-4)
    assert all(rel(got.params[n], p) <= 1e-10 for n, p in ref.params.items())


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("n", [7, 150])   # 150 samples of width 1500: three chunks, split over threads
def test_sparse_training_thread_count_does_not_change_a_bit(n, loss):
    model = pruned((1500, 30, 4), 0.05, loss=loss)
    batches = labelled_batches(model, 2, n, seed=8)
    runs = [sparse_steps(model, batches, 0.1, 0.9, 1e-3, "sparse", threads=t) for t in (1, 2, 3)]
    assert all(np.array_equal(r.params[k], runs[0].params[k]) for r in runs[1:] for k in model.params)
    ref = dense_steps(model, batches, 0.1, 0.9, 1e-3)
    assert all(rel(runs[0].params[k], p) <= 1e-10 for k, p in ref.params.items())


def test_an_alive_weight_at_zero_is_trained_and_a_pruned_one_is_not():
    model = pruned((5, 4, 3), 0.5)
    alive = tuple(np.argwhere(model.masks["layers.0.weight"])[0])
    model.params["layers.0.weight"][alive] = 0.0
    batches = labelled_batches(model, 2, 8, seed=2)
    got = sparse_steps(model, batches, 0.5, 0.0, 0.0, execution="sparse")
    ref = dense_steps(model, batches, 0.5, 0.0, 0.0)
    assert got.params["layers.0.weight"][alive] == pytest.approx(ref.params["layers.0.weight"][alive], rel=1e-10)
    assert np.array_equal(got.masks["layers.0.weight"], model.masks["layers.0.weight"])


def test_gradients_equal_autograd():
    model = pruned((12, 9, 4), 0.4, activation="sigmoid", bias_density=0.5)
    X, y = labelled_batches(model, 1, 7, seed=4)[0]
    loss, grads = SparseSGD(model, execution="sparse").loss_and_grads(X, y)
    ref_loss, ref = model.loss_and_grads(X, y)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    for name, g in ref.items():
        got = grads[name].toarray() if hasattr(grads[name], "toarray") else grads[name]
        assert rel(got, g) <= 1e-13


# ------------------------------------------------------------------ bad input
def test_bad_input_raises_clearly():
    model = pruned((6, 4, 3), 0.5)
    sm = SparseMLP(model)
    with pytest.raises(TypeError, match="model must be a refprune.mlp.MLP"):
        SparseMLP({"layers.0.weight": np.ones((2, 2))})
    with pytest.raises(TypeError, match="model must be a refprune.mlp.MLP"):
        SparseSGD(object())
    mixed = model.copy()
    mixed.params["layers.1.weight"] = mixed.params["layers.1.weight"].astype(np.float32)
    with pytest.raises(TypeError, match="share one floating dtype"):
        SparseMLP(mixed)
    with pytest.raises(TypeError, match="X has dtype float32 but this sparse model computes in float64"):
        sm.forward(batch(model, 2).astype(np.float32))
    with pytest.raises(TypeError, match="X has dtype float64 but this sparse model computes in float32"):
        SparseMLP(model, dtype=np.float32).forward(batch(model, 2))
    with pytest.raises(ValueError, match="X must have 6 columns"):
        sm.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="2-dimensional"):
        sm.forward(np.zeros(6))
    with pytest.raises(ValueError, match="finite"):
        sm.forward(np.full((2, 6), np.nan))
    with pytest.raises(TypeError, match="floating-point"):
        sm.forward(np.zeros((2, 6), dtype=int))
    with pytest.raises(ValueError, match="dtype must be float64 or float32"):
        SparseMLP(model, dtype=np.float16)
    with pytest.raises(ValueError, match="unknown execution"):
        SparseMLP(model, execution="fast")
    with pytest.raises(ValueError, match="one per layer"):
        SparseMLP(model, execution=("sparse",))
    with pytest.raises(ValueError, match="threads must be >= 1"):
        SparseMLP(model, threads=0)
    with pytest.raises(ValueError, match="lr must be in"):
        SparseSGD(model, lr=0.0)
    with pytest.raises(ValueError, match="X must have 6 columns"):
        SparseSGD(model).step(np.zeros((2, 5)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="class labels"):
        SparseSGD(model).step(np.zeros((2, 6)), np.array([0, 3]))


def test_a_failed_step_changes_nothing():
    model = pruned((6, 4, 3), 0.5)
    opt = SparseSGD(model, momentum=0.9)
    before = opt.to_model().params
    with pytest.raises(ValueError):
        opt.step(np.zeros((2, 6)), np.array([0, 9]))
    assert all(np.array_equal(p, before[n]) for n, p in opt.to_model().params.items())


# ------------------------------------------------------------------ benchmark smoke run (no timing asserted)
def test_benchmark_quick_run_writes_its_json(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sparse.py"
    spec = importlib.util.spec_from_file_location("bench_sparse", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--quick", "--json", str(tmp_path / "out.json"), "--markdown", str(tmp_path / "out.md")])
    result = json.loads((tmp_path / "out.json").read_text())
    assert (tmp_path / "out.md").read_text().count("| 64-32-10 |") == len(result["forward"]) + len(result["training"])
    assert {"machine", "forward", "training"} <= set(result)
    assert all({"dense_us", "auto_us", "repeats", "plan"} <= set(r) for r in result["forward"])
    assert all("bound_us" in r for r in result["forward"] if "sparse_us" in r)
