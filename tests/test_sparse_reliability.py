"""The sparse path under hostile use: bad bounds, aliased outputs, concurrent callers, interrupts
delivered at random moments, and fork.

Every scenario that could crash or hang on a regression runs in a child Python
process with a timeout, so that a segfault or a deadlock fails its test instead
of taking the test run down with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import scipy.sparse as sp

from refprune.mlp import MLP
from refprune.sparse import SparseMLP
from refprune.sparse.pool import run_parallel
from refprune.sparse.products import csr_matmul, feature_major, sampled_product

TIMEOUT = 120  # seconds for one child process; the scenarios take a few seconds each

PRELUDE = textwrap.dedent("""
    import os, random, signal, sys, threading, time, _thread
    import numpy as np
    import scipy.sparse as sp
    from refprune.mlp import MLP
    from refprune.sparse import SparseMLP, SparseSGD

    # Ctrl-C raises KeyboardInterrupt even where this process was started with SIGINT
    # ignored (a background job of a shell without job control inherits that)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def pruned(sizes, density, seed=0):
        model = MLP(sizes, "relu", seed=seed)
        rng = np.random.default_rng(seed + 100)
        model.set_masks({n: rng.random(model.params[n].shape) < density
                          for n in model.weight_names()})
        return model

    # Interrupts are delivered only while the main thread is inside a call of the library
    # (``guarded``), at random moments of it; the gate makes sure none lands in the test's
    # own bookkeeping once the call has returned.
    GATE = threading.Lock()
    INSIDE = [False]

    def guarded(fn, *args):
        try:
            INSIDE[0] = True
            return fn(*args)
        finally:
            with GATE:
                INSIDE[0] = False

    def call_seconds(fn, *args):
        t0 = time.perf_counter()
        for _ in range(3):
            fn(*args)
        return (time.perf_counter() - t0) / 3

    def interrupter(deliver, seed, stop, upper):
        # wait for the main thread to enter a call, then interrupt it after a random pause in
        # [0, upper] s (if it is still inside); again and again
        r = random.Random(seed)
        while not stop[0]:
            while not INSIDE[0] and not stop[0]:
                time.sleep(0.0002)
            time.sleep(r.uniform(0.0, upper))
            with GATE:
                if INSIDE[0] and not stop[0]:
                    deliver()
""")


def run_child(body: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run PRELUDE + body in a fresh interpreter; fail the test on a timeout (a hang)."""
    code = PRELUDE + textwrap.dedent(body)
    try:
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"child process hung (no exit within {timeout} s); output so far:\n"
            f"{exc.stdout}\n{exc.stderr}"
        )


def assert_ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def pruned(sizes, density, seed=0):
    model = MLP(sizes, "relu", seed=seed)
    rng = np.random.default_rng(seed + 100)
    model.set_masks({n: rng.random(model.params[n].shape) < density for n in model.weight_names()})
    return model


# ------------------------------------------------------------------ bounds
def test_products_refuse_operands_that_do_not_fit():
    proc = run_child("""
        from refprune.sparse.products import csr_matmul, sampled_product
        A = sp.random_array((50, 40), density=0.3, format="csr", rng=np.random.default_rng(0))
        caught = []
        def expect(fn, error, text):
            try:
                fn()
            except error as exc:
                assert text in str(exc), (text, str(exc))
                caught.append(text)
            else:
                raise AssertionError(f"no {error.__name__} for {text}")
        expect(lambda: csr_matmul(A, np.ones((39, 17))), ValueError, "B must have 40 rows")
        expect(lambda: csr_matmul(A, np.ones((3, 17)), out=np.empty((50, 17))), ValueError,
               "B must have 40 rows")
        expect(lambda: csr_matmul(A, np.ones(7)), ValueError, "B must have 40 rows")
        expect(lambda: csr_matmul(A, np.ones((40, 17)), out=np.empty((49, 17))), ValueError,
               "out must have shape")
        expect(lambda: csr_matmul(A, np.ones((40, 2), dtype=np.float32)), TypeError,
               "dtype float64")
        expect(lambda: csr_matmul(A.toarray(), np.ones((40, 2))), TypeError, "CSR")
        expect(lambda: csr_matmul(A.tocsc(), np.ones((40, 2))), TypeError, "CSR")
        bad = A.copy(); bad.indices[3] = 10**6        # SciPy's product would read far outside B
        expect(lambda: csr_matmul(bad, np.ones((40, 2))), ValueError, "column indices outside")
        bad = A.copy(); bad.indices[0] = -5
        expect(lambda: csr_matmul(bad, np.ones((40, 2))), ValueError, "column indices outside")
        bad = A.copy(); bad.indptr[10] = bad.indptr[-1] + 100
        expect(lambda: csr_matmul(bad, np.ones((40, 2))), ValueError, "indptr must rise")
        left = np.ones((50, 3))
        expect(lambda: sampled_product(left, np.ones((39, 3)), A), ValueError, "right 40")
        expect(lambda: sampled_product(left, np.ones((40, 4)), A), ValueError, "same number")
        bad = A.copy(); bad.indices[-1] = 40
        expect(lambda: sampled_product(left, np.ones((40, 3)), bad), ValueError, "outside")
        expect(lambda: sampled_product(left, np.ones((40, 3)), A, out=np.empty(A.nnz - 1)),
               ValueError, "out must have shape")
        print(len(caught))
    """)
    assert assert_ok(proc).strip() == "14"


def test_a_valid_product_after_the_checks_is_scipys():
    rng = np.random.default_rng(3)
    A = sp.random_array((50, 40), density=0.3, format="csr", rng=rng)
    B = rng.standard_normal((40, 17))
    for threads in (1, 2, 3):
        assert np.array_equal(csr_matmul(A, B, threads=threads), A @ B)
    assert np.array_equal(csr_matmul(A, B[:, 0]), A @ B[:, 0])


# ------------------------------------------------------------------ aliasing
def test_outputs_that_overlap_an_input_are_refused():
    rng = np.random.default_rng(4)
    A = sp.random_array((40, 40), density=0.3, format="csr", rng=rng)
    B = rng.standard_normal((40, 6))
    before = B.copy()
    with pytest.raises(ValueError, match="out must not overlap B"):
        csr_matmul(A, B, out=B)
    big = rng.standard_normal((80, 6))
    with pytest.raises(ValueError, match="out must not overlap B"):
        csr_matmul(A, big[:40], out=big[20:60])
    with pytest.raises(ValueError, match="out must not overlap A.data"):
        _alias_data()
    X = rng.standard_normal((6, 6))
    with pytest.raises(ValueError, match="out must not overlap X"):
        feature_major(X, out=X)
    with pytest.raises(ValueError, match="out must not overlap X"):
        feature_major(X[:3], out=X[:, 3:])
    P = sp.random_array((6, 5), density=0.5, format="csr", rng=rng)
    left, right = rng.standard_normal((6, 4)), rng.standard_normal((5, 4))
    with pytest.raises(ValueError, match="out must not overlap left"):
        sampled_product(left, right, P, out=left.reshape(-1)[: P.nnz])
    assert np.array_equal(B, before)


def _alias_data():
    """csr_matmul writing into the matrix's own values."""
    data = np.ones(5)
    A = sp.csr_array((data[:4], np.arange(4), np.array([0, 4])), shape=(1, 4))
    A.data = data[:4]  # the constructor may copy; make the values a view for sure
    csr_matmul(A, np.ones(4), out=data[3:4])


def test_forward_never_writes_to_its_input():
    model = pruned((64, 32, 10), 0.2)
    X = np.random.default_rng(5).standard_normal((300, 64))
    X.flags.writeable = False
    for execution in ("auto", "sparse", "dense"):
        SparseMLP(model, execution=execution, threads=2).forward(X)


# ------------------------------------------------------------------ concurrent callers
def test_concurrent_callers_get_their_own_results():
    proc = run_child("""
        from refprune.sparse.products import csr_matmul
        model = pruned((512, 256, 10), 0.05)
        rng = np.random.default_rng(1)
        Xs = [rng.standard_normal((n, 512)) for n in (1, 5, 40, 300)]
        refs = [SparseMLP(model, execution="sparse", threads=1).forward(X) for X in Xs]
        shared = SparseMLP(model, execution="sparse", threads=2)
        A = sp.random_array((300, 200), density=0.1, format="csr", rng=rng)
        B = rng.standard_normal((200, 33))
        AB = A @ B
        errors = []
        def caller(i):
            try:
                own = SparseMLP(model, execution="sparse", threads=2 + i % 14)
                for r in range(60):
                    j = (i + r) % len(Xs)
                    for sm in (shared, own):
                        if not np.array_equal(sm.forward(Xs[j]), refs[j]):
                            errors.append(("forward", i, r))
                    if not np.array_equal(csr_matmul(A, B, threads=2 + (i + r) % 15), AB):
                        errors.append(("csr_matmul", i, r))
            except BaseException as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(6)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert not errors, errors[:5]
        print("ok")
    """)
    assert assert_ok(proc).strip() == "ok"


def test_a_task_error_reaches_the_caller_and_the_pool_goes_on():
    def task(i):
        if i == 5:
            raise ZeroDivisionError("task 5")

    for _ in range(20):
        with pytest.raises(ZeroDivisionError, match="task 5"):
            run_parallel(task, 40, 3)
    done = []
    run_parallel(lambda i: done.append(i), 100, 4)
    assert sorted(done) == list(range(100))


def test_a_task_that_runs_tasks_does_them_inline():
    seen = []
    lock = threading.Lock()

    def inner(i):
        with lock:
            seen.append(i)

    run_parallel(lambda i: run_parallel(inner, 10, 4), 8, 4)
    assert sorted(seen) == sorted(list(range(10)) * 8)


# ------------------------------------------------------------------ interrupts
INTERRUPT_LOOP = """
    model = pruned((1024, 256, 64, 10), 0.05)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((600, 1024))
    x1 = X[:1]
    ref = SparseMLP(model, execution="sparse", threads=1).forward(X)
    ref1 = SparseMLP(model, execution="sparse", threads=1).forward(x1)
    sm = SparseMLP(model, execution="sparse", threads=2)
    sm.forward(X)
    stop = [False]
    upper = 1.5 * call_seconds(sm.forward, X)  # about two calls in three interrupted
    threading.Thread(target=interrupter, args=(DELIVER, 0, stop, upper), daemon=True).start()
    interrupted = completed = 0
    deadline = time.monotonic() + 60.0   # until enough of both, however loaded the machine
    while (interrupted < 40 or completed < 40) and time.monotonic() < deadline:
        try:
            out = guarded(sm.forward, X if completed % 3 else x1)
        except KeyboardInterrupt:
            interrupted += 1
            continue
        assert np.array_equal(out, ref if completed % 3 else ref1)
        completed += 1
    stop[0] = True
    # the pool is still usable and still right
    assert np.array_equal(sm.forward(X), ref)
    assert np.array_equal(SparseMLP(model, execution="sparse", threads=2).forward(X), ref)
    print(interrupted, completed)
"""


@pytest.mark.parametrize(
    "deliver", ["_thread.interrupt_main()", "os.kill(os.getpid(), signal.SIGINT)"]
)
def test_keyboard_interrupt_at_random_moments(deliver):
    proc = run_child(f"DELIVER = lambda: {deliver}\n" + textwrap.dedent(INTERRUPT_LOOP))
    interrupted, completed = map(int, assert_ok(proc).split())
    assert interrupted >= 40 and completed >= 40, (interrupted, completed)


def test_an_uncaught_interrupt_ends_the_process_without_hanging():
    proc = run_child("""
        model = pruned((1024, 256, 10), 0.05)
        X = np.random.default_rng(2).standard_normal((600, 1024))
        sm = SparseMLP(model, execution="sparse", threads=2)
        sm.forward(X)
        threading.Timer(0.3, _thread.interrupt_main).start()
        while True:
            sm.forward(X)
    """)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr


def test_an_interrupted_training_step_leaves_the_optimizer_as_it_was():
    # after every call, interrupted or not, the optimizer must hold exactly the weights of k
    # uninterrupted steps or of k + 1 (an interrupt can land after the step has committed)
    proc = run_child("""
        model = pruned((512, 64, 10), 0.1)
        rng = np.random.default_rng(3)
        X = rng.standard_normal((400, 512))
        y = rng.integers(0, 10, 400)
        opt = SparseSGD(model, lr=0.05, momentum=0.9, execution="sparse", threads=2)
        upper = 1.5 * call_seconds(opt.step, X, y)
        opt = SparseSGD(model, lr=0.05, momentum=0.9, execution="sparse", threads=2)
        ref = SparseSGD(model, lr=0.05, momentum=0.9, execution="sparse", threads=1)

        def same(a, b):
            a, b = a.to_model().params, b.to_model().params
            return all(np.array_equal(a[n], b[n]) for n in a)

        stop = [False]
        threading.Thread(target=interrupter, args=(_thread.interrupt_main, 7, stop, upper),
                         daemon=True).start()
        steps = interrupted = 0
        deadline = time.monotonic() + 60.0   # until enough of both, however loaded the machine
        while (interrupted < 20 or steps < 20) and time.monotonic() < deadline:
            try:
                guarded(opt.step, X, y)
                finished = True
            except KeyboardInterrupt:
                interrupted += 1
                finished = False
            if finished or not same(opt, ref):
                ref.step(X, y)
                steps += 1
                assert same(opt, ref), "a step was applied in part"
        stop[0] = True
        opt.step(X, y)     # and it goes on from there
        ref.step(X, y)
        assert same(opt, ref)
        print(interrupted, steps)
    """)
    interrupted, steps = map(int, assert_ok(proc).split())
    assert interrupted >= 20 and steps >= 20, (interrupted, steps)


# ------------------------------------------------------------------ fork
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_working_pool():
    proc = run_child("""
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)    # fork with threads (3.12+)
        model = pruned((1024, 256, 10), 0.05)
        X = np.random.default_rng(2).standard_normal((600, 1024))
        ref = SparseMLP(model, execution="sparse", threads=1).forward(X)
        sm = SparseMLP(model, execution="sparse", threads=2)
        assert np.array_equal(sm.forward(X), ref)
        busy = True
        def keep_busy():          # the parent's pool is in use at the moment of the fork
            while busy:
                sm.forward(X)
        t = threading.Thread(target=keep_busy)
        t.start()
        children = []
        for _ in range(8):
            time.sleep(0.01)
            pid = os.fork()
            if pid == 0:
                ok = (np.array_equal(sm.forward(X), ref)
                      and np.array_equal(SparseMLP(model, execution="sparse", threads=2)
                                         .forward(X), ref))
                os._exit(0 if ok else 3)
            children.append(pid)
        busy = False
        t.join()
        statuses = []
        deadline = time.monotonic() + 60
        for pid in children:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses.append(os.waitstatus_to_exitcode(status))
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    statuses.append("hung")
                    break
                time.sleep(0.01)
        assert statuses == [0] * len(children), statuses
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(2) as procs:
            outs = procs.map(sm.forward, [X, X[:7], X[:1]])
        assert np.array_equal(outs[0], ref) and np.array_equal(outs[1], ref[:7])
        print("ok")
    """)
    assert assert_ok(proc).strip() == "ok"
