"""The sparse path: CSR form of a pruned MLP, its execution choice, and sparse masked SGD.

Equalities are norm-wise: max|a - b| <= tol * max|b| (a per-entry relative error
is meaningless where a pre-activation cancels to ~0).
"""

import ast
import functools
import importlib.util
import itertools
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import refprune
from refprune.mlp import MLP
from refprune.sparse import SparseMLP, SparseSGD, to_sparse
from refprune.sparse import plan as planning
from refprune.sparse.forward import Schedule
from refprune.sparse.products import (
    csr_matmul,
    feature_major,
    pairwise_sum,
    row_blocks,
    sampled_product,
    sampled_product_reference,
)
from refprune.train import SGD, train

U32 = 2.0**-24  # unit roundoff of float32


def pruned(sizes, density, seed=0, activation="relu", loss="cross_entropy", bias_density=1.0):
    """MLP with every weight (and bias, if bias_density < 1) kept with probability density."""
    model = MLP(sizes, activation, loss=loss, seed=seed)
    rng = np.random.default_rng(seed + 100)
    masks = {n: rng.random(model.params[n].shape) < density for n in model.weight_names()}
    masks |= {n: rng.random(model.params[n].shape) < bias_density for n in model.bias_names()}
    model.set_masks(masks)
    for n in model.bias_names():  # non-zero biases, so bias handling is exercised
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
density_st = st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0])  # 0: a layer with nothing stored
activation_st = st.sampled_from(["relu", "tanh", "sigmoid", "identity"])
execution_st = st.sampled_from(["auto", "dense", "sparse"])


# ------------------------------------------------------------------ forward
@given(
    sizes_st,
    density_st,
    activation_st,
    execution_st,
    st.sampled_from([1, 2, 7]),
    st.integers(0, 2**16),
)
def test_forward_equals_dense_masked_forward_float64(
    sizes, density, activation, execution, n, seed
):
    model = pruned(sizes, density, seed, activation, bias_density=0.5)
    X = batch(model, n, seed)
    assert rel(SparseMLP(model, execution=execution).forward(X), model.forward(X)) <= 1e-12


def float32_error_bound(model, X):
    """Elementwise a priori bound on |f32 - f64| (standard dot-product rounding, propagated).

    e_0 = u|x|;
    e_{l+1} = |W| e_l + gamma_{k+2} (|W| (|a_l| + e_l) + |b|) + 4u (|a_{l+1}| + |W| e_l)
    with k = stored weights per row, gamma_m = m u / (1 - m u), u = 2**-24, and
    activations that are 1-Lipschitz (relu, tanh, identity; sigmoid is 1/4-Lipschitz).
    """
    p = model.effective_params()
    act = {
        "relu": lambda z: np.maximum(z, 0),
        "tanh": np.tanh,
        "identity": lambda z: z,
        "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    }[model.activation]
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


@pytest.mark.parametrize("n", [1, 9, 150])  # 150 samples of width 1500: three chunks
def test_thread_count_does_not_change_a_bit(n):
    model = pruned((1500, 40, 5), 0.1)
    X = batch(model, n)
    outs = [SparseMLP(model, execution="sparse", threads=t).forward(X) for t in (1, 2, 3)]
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    assert rel(outs[0], model.forward(X)) <= 1e-12


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
    assert all(
        np.array_equal(dense32[n], p.astype(np.float32))
        for n, p in model.effective_params().items()
    )


def test_no_explicit_zeros_are_stored():
    model = pruned((6, 5, 3), 0.8)
    W = model.params["layers.0.weight"]
    alive = np.argwhere(model.masks["layers.0.weight"])
    W[tuple(alive[0])] = 0.0  # alive, value 0.0
    W[tuple(alive[1])] = -0.0  # alive, value -0.0
    W[tuple(alive[2])] = 1e-46  # alive, non-zero in float64, rounds to 0.0 in float32
    for dtype in (np.float64, np.float32):
        for layer, name in zip(SparseMLP(model, dtype=dtype).layers, model.weight_names()):
            stored = layer.weight.data
            assert np.all(stored != 0)
            assert layer.nnz == np.count_nonzero(model.effective_params()[name].astype(dtype))
            assert layer.weight.has_canonical_format
            assert layer.weight.indices.dtype == layer.weight.indptr.dtype == np.int32


@pytest.fixture
def estimated_choice():
    """The automatic choice from fixed rates (no timing): deterministic on any machine."""
    rates = planning.Calibration(
        "float64",
        dense_rate=4e10,
        dense_rate_1=8e9,
        sparse_rate=4e9,
        sparse_rate_1=1.5e9,
        handoff=5e-5,
    )
    planning.set_calibration(rates)
    planning.set_measure(False)
    yield rates
    planning.set_measure(True)
    planning.set_calibration(None, np.float64)


def test_an_unpruned_model_is_valid_and_runs_dense_by_the_automatic_rule(estimated_choice):
    model = MLP((784, 300, 100, 10), seed=0)
    sm = SparseMLP(model)
    assert sm.density() == 1.0
    assert all(sm.plan(n) == ["dense"] * 3 for n in (1, 32, 256, 2048))
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
def test_a_pinned_plan_is_followed_and_computes_the_same_function():
    model = pruned((60, 40, 30, 5), 0.3)
    X = batch(model, 40)
    auto = SparseMLP(model)
    plan = auto.plan(40)
    assert set(plan) <= {"dense", "sparse"} and len(plan) == 3
    pinned = SparseMLP(model, execution=plan)
    assert pinned.plan(40) == plan
    assert np.array_equal(pinned.forward(X), auto.forward(X))


def test_the_automatic_choice_takes_the_measured_faster_side(monkeypatch):
    model = pruned((200, 200), 0.05)
    X = batch(model, 64)
    # rates no product reaches: the bounds never spare a measurement
    planning.set_calibration(planning.Calibration("float64", 1e15, 1e15, 1e15, 1e15, handoff=5e-5))
    real = planning.best_time
    try:
        # pretend the machine's dense products are 10^4 times slower or faster than measured
        for factor, expected in ((1e4, "sparse"), (1e-4, "dense")):

            def skewed(fn, repeats=planning.MEASURE_REPEATS, factor=factor):
                t = real(fn, repeats)
                return t * factor if _times_dense(fn) else t

            monkeypatch.setattr(planning, "best_time", skewed)
            sm = SparseMLP(model)
            assert sm.plan(64) == [expected], (factor, sm.layers[0].timings)
            assert rel(sm.forward(X), model.forward(X)) <= 1e-12
    finally:
        planning.set_calibration(None, np.float64)


def _times_dense(fn) -> bool:
    """Whether a timed function runs a dense product: a layer's own dense contender, or a
    whole-network contender (``SparseMLP._run`` with a schedule) with a dense layer."""
    if isinstance(fn, functools.partial):
        return "dense" in fn.args[1].executions
    return ".dense." in fn.__qualname__


def test_whole_network_contenders_decide_the_threads(monkeypatch):
    model = pruned((300, 300, 10), 0.05)
    X = batch(model, 256)
    # a hand-off that costs nothing: the modelled choice always shares the work
    planning.set_calibration(planning.Calibration("float64", 1e15, 1e15, 1e15, 1e15, handoff=1e-12))
    real = planning.best_time
    try:
        # pretend sharing with the threads costs 10^3 times more, or less, than measured
        for factor, shared in ((1e3, False), (1e-3, True)):

            def skewed(fn, repeats=planning.MEASURE_REPEATS, factor=factor):
                t = real(fn, repeats)
                threaded = isinstance(fn, functools.partial) and any(
                    threads > 1 for *_, threads in fn.args[1].runs
                )
                return t * factor if threaded else t

            monkeypatch.setattr(planning, "best_time", skewed)
            sm = SparseMLP(model, execution="sparse", threads=2)
            runs = sm._schedule(256).runs
            assert any(t > 1 for *_, t in runs) == shared, (factor, runs)
            assert np.array_equal(sm.forward(X), SparseMLP(model, execution="sparse").forward(X))
    finally:
        planning.set_calibration(None, np.float64)


@pytest.mark.parametrize("n,timed", [(2048, 512), (256, 256), (40, 40)])
def test_whole_pass_contenders_run_on_up_to_eight_chunks(monkeypatch, n, timed):
    from refprune.sparse import forward

    model = pruned((784, 30, 10), 0.05)  # float64 chunks of 64 samples here
    seen = []
    real = planning.fastest

    def spy(fns, lows, rest=(False, False)):
        seen.extend(fn.args[0].shape[0] for fn in fns)
        return real(fns, lows, rest)

    monkeypatch.setattr(planning, "fastest", spy)
    sm = SparseMLP(model, threads=2)
    sm.plan(n)
    assert seen and set(seen) == {min(n, forward.MEASURE_CHUNKS * sm._schedules[n].chunk)}
    assert sm._schedules[n].chunk == 64 or n < 64
    assert set(seen) == {timed}


def test_estimated_choice_follows_density(estimated_choice):
    assert SparseMLP(pruned((1000, 1000), 0.01)).plan(32) == ["sparse"]
    assert SparseMLP(pruned((1000, 1000), 0.5)).plan(32) == ["dense"]
    assert SparseMLP(pruned((1000, 1000), 0.5), execution="sparse").plan(32) == ["sparse"]


def test_a_contender_that_cannot_win_is_never_run():
    calls = []

    def measure(name, seconds):
        return lambda: calls.append(name) or seconds

    # sparse measured at 1 ms; dense cannot beat 5 ms: dense is never run
    assert (
        planning.faster(measure("sparse", 1e-3), measure("dense", 1e-4), 1e-4, 5e-3)[0] == "sparse"
    )
    assert calls == ["sparse"]
    calls.clear()
    assert (
        planning.faster(measure("sparse", 1e-3), measure("dense", 1e-4), 5e-3, 1e-5)[0] == "dense"
    )
    assert calls == ["dense"]
    calls.clear()
    assert (
        planning.faster(measure("sparse", 1e-3), measure("dense", 2e-3), 1e-4, 1e-4)[0] == "sparse"
    )
    assert calls == ["sparse", "dense"]


def test_the_fastest_whole_plan_is_kept_and_a_hopeless_one_never_runs(monkeypatch):
    calls = []
    times = {"a": 3e-3, "b": 1e-3, "c": 2e-3, "d": 5e-4}
    monkeypatch.setattr(planning, "best_time", lambda fn, repeats=3: fn())

    def measure(name):
        return lambda: calls.append(name) or times[name]

    fns = [measure(k) for k in "abcd"]
    rounds = planning.MEASURE_REPEATS
    # d could win on its bound (1e-4) but c's bound (4e-3) exceeds b's time: c never runs
    assert planning.fastest(fns, [0.0, 0.0, 4e-3, 1e-4]) == 3
    assert calls == ["a", "b", "d"] * rounds
    calls.clear()
    assert planning.fastest(fns[:2], [0.0, 0.0]) == 1 and calls == ["a", "b"] * rounds
    times["b"] = times["a"]  # a tie keeps the first
    assert planning.fastest(fns[:2], [0.0, 0.0]) == 0
    # waits for idle threads (BLAS threads spin after a product): before the first round, and
    # before each later round, as asked
    waits = []
    monkeypatch.setattr(planning, "wait_for_idle_threads", lambda: waits.append(len(calls)))
    calls.clear()
    planning.fastest(fns[:2], [0.0, 0.0], rest=(True, True))
    assert waits == [0, 2, 4][:rounds]
    waits.clear()
    planning.fastest(fns[:2], [0.0, 0.0], rest=(True, False))
    assert len(waits) == 1
    waits.clear()
    planning.fastest(fns[:2], [0.0, 0.0])
    assert waits == []


def test_waiting_for_idle_threads_lasts_while_another_thread_computes():
    stop = threading.Event()

    def spin():  # a thread on a CPU until told to stop, as OpenBLAS's workers after a product
        while not stop.is_set():
            pass

    planning.wait_for_idle_threads(limit=1.0)  # BLAS threads of earlier products go idle
    assert planning.wait_for_idle_threads(limit=1.0) < 0.5  # nothing else at work
    spinner = threading.Thread(target=spin)
    spinner.start()
    threading.Timer(0.2, stop.set).start()
    t0 = time.perf_counter()
    waited = planning.wait_for_idle_threads(limit=5.0)
    spinner.join()
    assert 0.1 <= waited <= time.perf_counter() - t0 < 4.0
    assert planning.wait_for_idle_threads(limit=0.05) < 1.0  # a limit ends the wait anyway
    for kwargs, error in [
        (dict(limit=-1.0), ValueError),
        (dict(probe=0.0), ValueError),
        (dict(probe=float("nan")), ValueError),
        (dict(limit="1"), TypeError),
    ]:
        with pytest.raises(error, match=next(iter(kwargs))):
            planning.wait_for_idle_threads(**kwargs)


def test_a_threaded_contender_waits_for_blas_threads_spinning_from_any_product():
    model = pruned((300, 300, 10), 0.05)
    sm = SparseMLP(model, threads=2)
    serial = Schedule(("sparse", "sparse"), 64, ((0, 2, "sparse", 1),))
    threaded = Schedule(("sparse", "sparse"), 64, ((0, 2, "sparse", 2),))
    dense = Schedule(("dense", "dense"), 64, ((0, 2, "dense", 1),))
    # nothing threaded: no wait; threaded: a wait first (the caller's own BLAS product may
    # have run just before), and before every round where this plan runs BLAS products too
    assert sm._rest([serial, dense]) == (False, False)
    assert sm._rest([serial, threaded]) == (True, False)
    assert sm._rest([serial, threaded, dense]) == (True, True)
    sm.layers[0].timings[("dense", 64, False, False)] = 1e-3  # a layer was timed dense
    assert sm._rest([serial, threaded]) == (True, True)


def test_a_threaded_plan_is_not_lost_to_blas_threads_the_caller_left_spinning(monkeypatch):
    # The first use follows a threaded BLAS product of the caller's: the first round waits for
    # its threads, and contenders that run BLAS products are timed after the others.
    model = pruned((300, 300, 10), 0.05)
    sm = SparseMLP(model, threads=2)
    order, rests = [], []

    def fastest(fns, lows, rest=(False, False)):
        order.extend(fn.args[1] for fn in fns)
        rests.append(rest)
        return 0

    monkeypatch.setattr(planning, "fastest", fastest)
    planned = Schedule(("sparse", "dense"), 64, ((0, 1, "sparse", 2), (1, 2, "dense", 1)))
    cal = planning.Calibration("float64", 1e10, 1e9, 1e9, 1e8, 1e-5)
    chosen = sm._measured(256, planned, 4, cal)
    assert [("dense" in s.executions) for s in order] == sorted(
        "dense" in s.executions for s in order
    )
    assert chosen == order[0] and rests == [(True, True)]


def test_training_steps_decide_the_whole_plan_by_timing_it(monkeypatch):
    model = pruned((40, 30, 5), 0.3)
    X, y = batch(model, 64), np.arange(64) % 5
    real = planning.best_time
    for favoured in ("dense", "sparse"):

        def skewed(fn, repeats=planning.MEASURE_REPEATS, favoured=favoured):
            t = real(fn, repeats)
            whole = isinstance(fn, functools.partial) and fn.func.__name__ == "_loss_and_grads"
            wins = whole and set(fn.args[3][0]) == {favoured}
            return t * 1e-4 if wins else t

        monkeypatch.setattr(planning, "best_time", skewed)
        opt = SparseSGD(model, lr=0.1)
        assert opt.plan(64) == [favoured, favoured], favoured
        before = opt.to_model().state_dict()
        opt.step(X, y)  # planning changed nothing; the step runs as planned
        reference = SparseSGD(model, lr=0.1, execution="sparse")
        reference.step(X, y)
        assert all(
            np.allclose(opt.to_model().params[n], reference.to_model().params[n], rtol=1e-12)
            for n in before["params"]
        )


def test_a_large_sparse_layer_never_builds_its_dense_copy():
    sm = SparseMLP(pruned((2000, 2000), 0.002))
    sm.forward(np.ones((64, 2000)))
    assert sm.plan(64) == ["sparse"] and sm.layers[0]._dense is None


def test_calibration_is_cached_pinned_and_forgotten():
    cal = planning.calibrate(np.float64)
    assert planning.calibrate("float64") is cal
    assert cal.dense_rate > 0 and cal.sparse_rate > 0 and cal.handoff >= 0
    pinned = planning.Calibration.from_dict({**cal.to_dict(), "sparse_rate": 1.0})
    try:
        planning.set_calibration(pinned)
        assert planning.calibrate(np.float64) is pinned
    finally:
        planning.set_calibration(None, np.float64)
    assert planning.calibrate(np.float64) not in (cal, pinned)
    with pytest.raises(TypeError, match="Calibration"):
        planning.set_calibration({"dtype": "float64"})


@pytest.mark.parametrize(
    "n,width,itemsize,work,expected",
    [
        (2, 784, 8, 5324, 128),  # 784-300-100-10 at 2 %: a chunk needs ~100 samples to pay
        (32, 784, 8, 5324, 128),
        (256, 784, 8, 5324, 128),
        (2048, 784, 8, 5324, 128),  # the cache's limit
        (32, 4096, 8, 167772, 16),  # 4096 x 4096 at 1 %: two chunks of 16
        (256, 4096, 8, 167772, 32),
        (2048, 4096, 4, 167772, 64),
        (100000, 10, 8, 10**6, 512),
        (3, 10, 8, 1, 512),  # one chunk: tiny work
    ],
)
def test_chunks_depend_on_the_batch_widths_and_work_only(n, width, itemsize, work, expected):
    assert planning.chunk_size(n, width, itemsize, work) == expected


@pytest.mark.parametrize(
    "n,width,itemsize,work,expected",
    [
        (256, 784, 8, 5324, 64),  # 784-300-100-10 at 2 %: rows of a^T of 512 bytes
        (2048, 784, 4, 5324, 128),  # float32: 128 samples in 512 bytes
        (256, 4096, 8, 167772, 16),
        (2048, 4096, 4, 167772, 32),
    ],
)
def test_a_forward_pass_takes_chunks_of_half_a_training_steps_cache(
    n, width, itemsize, work, expected
):
    got = planning.chunk_size(n, width, itemsize, work, planning.FORWARD_CHUNK_BYTES)
    assert got == expected


def test_the_forward_schedule_uses_the_forward_chunks():
    model = pruned((784, 300, 100, 10), 0.02)
    s = SparseMLP(model, execution="sparse", threads=1)
    s.forward(np.zeros((256, 784)))
    assert s._schedules[256].chunk == 64


def test_override_forces_the_execution_per_layer():
    model = pruned((50, 40, 30, 5), 0.5)
    assert SparseMLP(model, execution="sparse").plan(4) == ["sparse"] * 3
    assert SparseMLP(model, execution="dense").plan(4) == ["dense"] * 3
    mixed = SparseMLP(model, execution=("sparse", "dense", "sparse"))
    assert mixed.plan(4) == ["sparse", "dense", "sparse"]
    X = batch(model, 40)
    for n in (1, 4, 40):
        assert rel(mixed.forward(X[:n]), model.forward(X[:n])) <= 1e-12


# ------------------------------------------------------------------ products
def sparse_operands(shape, n, density, dtype, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(shape) * (rng.random(shape) < density)
    A = sp.csr_array(W.astype(dtype))
    B = rng.standard_normal((shape[1], n) if n > 1 else shape[1]).astype(dtype)
    B[rng.random(B.shape) < 0.1] = -0.0  # products -0.0: the sign of a zero sum is exact too
    return A, B


@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.integers(1, 40),
    density_st,
    st.sampled_from([np.float64, np.float32]),
    st.integers(1, 4),
    st.integers(0, 2**16),
)
def test_csr_matmul_is_scipys_product_bit_for_bit(n_out, n_in, n, density, dtype, threads, seed):
    A, B = sparse_operands((n_out, n_in), n, density, dtype, seed)
    got, ref = csr_matmul(A, B, threads=threads), A @ B
    assert np.array_equal(got, ref) and np.array_equal(np.signbit(got), np.signbit(ref))


def test_row_blocks_cover_the_rows_and_share_the_values():
    A = sp.random_array((30, 20), density=0.3, format="csr", rng=np.random.default_rng(1))
    for parts in (1, 2, 5, 100):
        blocks = row_blocks(A, parts)
        assert blocks[0][0] == 0 and blocks[-1][1] == 30 and len(blocks) <= min(parts, 30)
        assert all(b[1] == c[0] for b, c in itertools.pairwise(blocks))
        assert np.array_equal(sp.vstack([blk for _, _, blk in blocks]).toarray(), A.toarray())
        assert all(np.shares_memory(blk.data, A.data) for _, _, blk in blocks if blk.nnz)


@pytest.mark.parametrize(
    "terms,expected",
    [
        ([], 0.0),
        ([2.5], 2.5),
        ([1.0, 2.0, 3.0], 6.0),
        ([1.0, 1e100, 1.0, -1e100], 0.0),  # (1 + 1e100) + (1 - 1e100): both halves round
        ([1e100, 1.0, -1e100, 1.0], 0.0),
        ([1.0, -1e100, 1e100, 1.0], 0.0),
        ([-0.0, -0.0, -0.0], -0.0),
        ([1e100, -1e100, 1.0], 1.0),  # the odd last term joins at the top
    ],
)
def test_pairwise_sum_is_the_documented_order(terms, expected):
    got = pairwise_sum(np.array(terms, dtype=np.float64))
    assert got == expected and np.signbit(got) == np.signbit(expected)


@given(
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(1, 70),
    density_st,
    st.sampled_from([np.float64, np.float32]),
    st.integers(1, 3),
    st.integers(0, 2**16),
)
def test_sampled_product_has_the_bits_of_the_plain_loop(
    n_out, n_in, n, density, dtype, threads, seed
):
    rng = np.random.default_rng(seed)
    pattern = sp.csr_array((rng.random((n_out, n_in)) < density).astype(dtype))
    left = rng.standard_normal((n_out, n)).astype(dtype)
    right = rng.standard_normal((n_in, n)).astype(dtype)
    left[rng.random(left.shape) < 0.1] = -0.0
    right[rng.random(right.shape) < 0.05] = 0.0
    right[:, ::7] *= 1e30  # large terms: cancellation makes the order visible
    rows = np.repeat(np.arange(n_out), np.diff(pattern.indptr))
    ref = sampled_product_reference(left, right, rows, pattern.indices)
    got = sampled_product(left, right, pattern, threads=threads)
    assert got.dtype == dtype
    assert np.array_equal(got, ref, equal_nan=True) and np.array_equal(
        np.signbit(got), np.signbit(ref)
    )


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_sampled_product_over_many_chunks_reuses_its_buffer_without_leftovers(threads):
    # 3000 positions at 200 samples (width 256): 12 chunks of 256 positions per call; calls of
    # other widths and dtypes in between leave the thread's kept buffer at other shapes
    rng = np.random.default_rng(5)
    pattern = sp.csr_array((rng.random((200, 300)) < 0.05).astype(np.float64))
    left, right = rng.standard_normal((200, 200)), rng.standard_normal((300, 200))
    rows = np.repeat(np.arange(200), np.diff(pattern.indptr))
    ref = sampled_product_reference(left, right, rows, pattern.indices)
    for n in (200, 3, 64, 200):
        got = sampled_product(left[:, :n], right[:, :n], pattern, threads=threads)
        small = sampled_product(
            left[:, :n].astype(np.float32),
            right[:, :n].astype(np.float32),
            pattern.astype(np.float32),
            threads=threads,
        )
        assert small.dtype == np.float32
        if n == 200:
            assert np.array_equal(got, ref)


def test_scratch_is_kept_per_thread_and_never_handed_out_twice():
    from refprune.sparse.products import _keep_scratch, _take_scratch

    dt = np.dtype(np.float64)

    def body():  # on a new thread: an empty store
        a = _take_scratch(1000, dt)
        b = _take_scratch(10, dt)  # a nested use while a is taken: other memory
        assert a.shape == (1000,) and b.shape == (10,) and not np.shares_memory(a, b)
        _keep_scratch(b)
        _keep_scratch(a)  # the last one handed back is kept
        c = _take_scratch(500, dt)
        assert np.shares_memory(c, a) and c.shape == (500,)
        other = []
        t = threading.Thread(target=lambda: other.append(_take_scratch(500, dt)))
        t.start()
        t.join()
        assert not np.shares_memory(other[0], c)  # another thread has a store of its own
        _keep_scratch(c)
        assert not np.shares_memory(_take_scratch(2000, dt), a)  # too small: a new array
        return True

    done = []
    t = threading.Thread(target=lambda: done.append(body()))
    t.start()
    t.join()
    assert done == [True]


def test_sampled_product_is_the_dense_product_at_the_positions():
    rng = np.random.default_rng(7)
    pattern = sp.csr_array(rng.random((30, 20)) < 0.3)
    pattern = sp.csr_array((np.ones(pattern.nnz), pattern.indices, pattern.indptr), shape=(30, 20))
    left, right = rng.standard_normal((30, 100)), rng.standard_normal((20, 100))
    dense = (left @ right.T)[pattern.toarray() != 0]
    magnitude = (np.abs(left) @ np.abs(right).T)[pattern.toarray() != 0]
    gamma = 100 * 2.0**-53 / (1 - 100 * 2.0**-53)
    assert np.all(np.abs(sampled_product(left, right, pattern) - dense) <= 2 * gamma * magnitude)
    empty = sp.csr_array((5, 4))
    assert sampled_product(np.ones((5, 3)), np.ones((4, 3)), empty).shape == (0,)


@pytest.mark.parametrize(
    "shape", [(1, 1), (3, 700), (300, 400), (13, 1100), (9, 3000)]
)  # narrow, wide rows
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_feature_major_is_the_transpose(shape, dtype):
    X = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    got = feature_major(X)
    assert np.array_equal(got, X.T) and got.flags.c_contiguous
    wide = np.zeros((shape[1], shape[0] + 5), dtype=dtype)  # into columns of a wider array
    feature_major(X, wide[:, 2 : 2 + shape[0]])
    assert np.array_equal(wide[:, 2 : 2 + shape[0]], X.T) and not wide[:, :2].any()


def _imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_the_package_has_no_compiled_code_and_nothing_else_imports_the_sparse_path():
    root = Path(refprune.__file__).parent
    assert not [p for p in root.rglob("*") if p.suffix in (".c", ".so", ".pyd", ".cpp", ".pyx")]
    pyproject = (root.parent / "pyproject.toml").read_text()
    assert "ext-modules" not in pyproject and "ext_modules" not in pyproject
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[:2] == ("refprune", "sparse") or parts == ("refprune", "__init__"):
            continue
        package = ".".join(parts[:-1])
        imported = _imported_modules(path, package)
        sparse = [m for m in imported if m == "refprune.sparse" or m.startswith("refprune.sparse.")]
        assert not sparse, (path, sparse)


# ------------------------------------------------------------------ training
def dense_steps(model, batches, lr, momentum, weight_decay):
    """refprune.train.SGD on the dense masked model, one update per batch."""
    model, opt = model.copy(), SGD(lr, momentum, weight_decay)
    for X, y in batches:
        opt.step(model, model.loss_and_grads(X, y)[1])
    return model


def sparse_steps(model, batches, lr, momentum, weight_decay, execution="auto", threads=None):
    opt = SparseSGD(
        model,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        execution=execution,
        threads=threads,
    )
    for X, y in batches:
        opt.step(X, y)
    return opt.to_model()


def labelled_batches(model, count, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        X = rng.standard_normal((n, model.sizes[0]))
        y = (
            rng.integers(0, model.sizes[-1], n)
            if model.loss == "cross_entropy"
            else rng.standard_normal((n, model.sizes[-1]))
        )
        out.append((X, y))
    return out


@pytest.mark.parametrize(
    "momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.0, 1e-2), (0.9, 1e-2)]
)
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
def test_sparse_training_equals_dense_masked_training_over_shapes(
    sizes, density, activation, n, seed
):
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
@pytest.mark.parametrize(
    "n", [7, 150]
)  # 150 samples of width 1500: three chunks, split over threads
def test_sparse_training_thread_count_does_not_change_a_bit(n, loss):
    model = pruned((1500, 30, 4), 0.05, loss=loss)
    batches = labelled_batches(model, 2, n, seed=8)
    runs = [sparse_steps(model, batches, 0.1, 0.9, 1e-3, "sparse", threads=t) for t in (1, 2, 3)]
    assert all(
        np.array_equal(r.params[k], runs[0].params[k]) for r in runs[1:] for k in model.params
    )
    ref = dense_steps(model, batches, 0.1, 0.9, 1e-3)
    assert all(rel(runs[0].params[k], p) <= 1e-10 for k, p in ref.params.items())


def test_an_alive_weight_at_zero_is_trained_and_a_pruned_one_is_not():
    model = pruned((5, 4, 3), 0.5)
    alive = tuple(np.argwhere(model.masks["layers.0.weight"])[0])
    model.params["layers.0.weight"][alive] = 0.0
    batches = labelled_batches(model, 2, 8, seed=2)
    got = sparse_steps(model, batches, 0.5, 0.0, 0.0, execution="sparse")
    ref = dense_steps(model, batches, 0.5, 0.0, 0.0)
    assert got.params["layers.0.weight"][alive] == pytest.approx(
        ref.params["layers.0.weight"][alive], rel=1e-10
    )
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
    with pytest.raises(
        TypeError, match="X has dtype float32 but this sparse model computes in float64"
    ):
        sm.forward(batch(model, 2).astype(np.float32))
    with pytest.raises(
        TypeError, match="X has dtype float64 but this sparse model computes in float32"
    ):
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
    with pytest.raises(TypeError, match="y must be given"):
        SparseSGD(model).step(np.zeros((2, 6)), None)


def test_dense_layers_reuse_one_scratch_copy_with_the_same_bits():
    model = pruned((12, 8, 4), 0.5, bias_density=0.7)
    batches = labelled_batches(model, 4, 6, seed=2)
    kept = SparseSGD(model, momentum=0.9, execution="dense")
    fresh = SparseSGD(model, momentum=0.9, execution="dense")
    for L in fresh.layers:
        L.dense_scratch = L.dense  # a new dense array every step, as before
    scratches = None
    for X, y in batches:
        assert kept.step(X, y) == fresh.step(X, y)
        now = [L._scratch for L in kept.layers]
        assert all(s is not None for s in now)
        assert scratches is None or all(a is b for a, b in zip(now, scratches))  # kept
        scratches = now
    for name, p in fresh.to_model().params.items():
        assert np.array_equal(kept.to_model().params[name], p)
    for L in kept.layers:  # pruned entries of the scratch are never written
        assert np.all(np.delete(L._scratch.ravel(), L.flat) == 0.0)
    sparse = SparseSGD(model, execution="sparse")
    sparse.step(*batches[0])
    assert all(L._scratch is None for L in sparse.layers)


@pytest.mark.parametrize("shape,n", [((30, 50), 7), ((5, 3), 40), ((300, 784), 64)])
def test_a_dense_layers_gradient_in_the_kept_scratch_is_the_plain_product(shape, n):
    from refprune.sparse.train import _dense_gradient_at

    rng = np.random.default_rng(3)
    dzT, aT = rng.standard_normal((shape[0], n)), rng.standard_normal((shape[1], n))
    flat = np.flatnonzero(rng.random(shape) < 0.3)
    expected = (dzT @ aT.T).ravel()[flat]
    first = _dense_gradient_at(dzT, aT, flat)
    again = _dense_gradient_at(dzT, aT, flat)  # in the same scratch array, kept
    assert np.array_equal(first, expected) and np.array_equal(again, expected)
    assert not np.shares_memory(first, again)  # results never alias the scratch


def test_a_step_reads_the_callers_batch_without_writing_it():
    model = pruned((6, 4, 3), 0.5)
    X, y = batch(model, 5), np.array([0, 1, 2, 0, 1])
    X_before, y_before = X.copy(), y.copy()
    X.flags.writeable = False  # a write would raise
    opt = SparseSGD(model, momentum=0.9)
    opt.step(X, y)
    opt.loss_and_grads(X, y)
    assert np.array_equal(X, X_before) and np.array_equal(y, y_before)


def test_a_failed_step_changes_nothing():
    model = pruned((6, 4, 3), 0.5)
    opt = SparseSGD(model, momentum=0.9)
    before = opt.to_model().params
    with pytest.raises(ValueError):
        opt.step(np.zeros((2, 6)), np.array([0, 9]))
    assert all(np.array_equal(p, before[n]) for n, p in opt.to_model().params.items())


# ------------------------------------------------------------------ benchmark smoke run (no timing)
def test_benchmark_quick_run_writes_its_json(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sparse.py"
    spec = importlib.util.spec_from_file_location("bench_sparse", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(
        [
            "--quick",
            "--skip-kernels",
            "--json",
            str(tmp_path / "out.json"),
            "--markdown",
            str(tmp_path / "out.md"),
        ]
    )
    result = json.loads((tmp_path / "out.json").read_text())
    text = (tmp_path / "out.md").read_text()
    assert text.count("| 64-32-10 |") == len(result["forward"]) + len(result["training"])
    assert {"machine", "forward", "training", "threads", "overhead", "targets"} <= set(result)
    assert all(
        {"dense_us", "sdense_us", "auto_us", "auto_best", "repeats", "plan"} <= set(r)
        for r in result["forward"]
    )
    assert all("bound_us" in r for r in result["forward"] if "sparse_us" in r)
    assert all(t["verdict"] in ("PASS", "FAIL", "n/a") for t in result["targets"])
    assert len(result["targets"]) >= 4  # threads, overhead, auto here, reliability
