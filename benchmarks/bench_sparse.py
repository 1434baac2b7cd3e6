"""Dense NumPy against the SciPy sparse path of a pruned MLP, in one run.

Forward pass: a 784-300-100-10 ReLU MLP and a single 4096x4096 layer, every
weight matrix pruned to density d by a random mask (keep_top_k of uniform
scores, seed 0), d in {1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01}, batch sizes
{1, 32, 256, 2048}, float64 and float32. Contenders, timed one after another in
one run, medians of the repeats (the count is printed per point), each after a
warm-up and followed by a rest (see ``timed``):

    dense   NumPy a @ (W * M).T + b per layer (the dense masked forward, no input checks)
    sdense  SparseMLP forced dense on every layer (same checks and layout as the others)
    sparse  SparseMLP forced sparse on every layer
    auto    SparseMLP with the automatic per-layer choice
    torch   torch.sparse CSR per layer (only when torch imports; its default threads)

"spd/dense" is dense / sparse; "auto/best" is auto / min(sdense, sparse), the
cost of the automatic choice against the better forced choice.

Each sparse point also gets its memory-bandwidth lower bound: bytes moved =
nnz * (value + index bytes) + activations (N * (in + out) * value bytes per
layer), over the bandwidth of a large array copy measured at the start
(bytes read + bytes written, as in STREAM "copy"), the larger of its one- and
two-thread values (both are recorded).

Training step: 784-300-100-10, batch 256, float64, densities {0.2, 0.05, 0.01}:
the dense masked SGD step written in NumPy against ``SparseSGD.step``.

Timings on a shared machine are noisy: the load average is printed before and
after; ratios within one run are the meaningful numbers.

    python benchmarks/bench_sparse.py [--quick] [--json PATH] [--budget SECONDS]
    python benchmarks/bench_sparse.py --calibrate   # fit the cost model constants
    python benchmarks/bench_sparse.py --cpu-time    # one thread, CPU time (robust to load)
    python benchmarks/bench_sparse.py --from-json run.json --markdown run.md   # tables only
    python benchmarks/bench_sparse.py --recheck-auto run.json   # paired auto/best where > 1.10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import scipy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_medians  # noqa: E402

from refprune.masks import fraction_to_count, keep_top_k  # noqa: E402
from refprune.mlp import MLP  # noqa: E402
from refprune.rng import make_rng  # noqa: E402
from refprune.sparse import SparseMLP  # noqa: E402
from refprune.sparse_kernels import COST_BATCHES, KERNELS, csr_product, sampled_product  # noqa: E402
from refprune.sparse_train import SparseSGD  # noqa: E402

try:
    import torch
except ImportError:  # torch stays optional: its column is skipped
    torch = None

DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
BATCHES = (1, 32, 256, 2048)
DTYPES = ("float64", "float32")
MODELS = {"784-300-100-10": (784, 300, 100, 10), "4096x4096": (4096, 4096)}
TRAIN_DENSITIES = (0.2, 0.05, 0.01)
TRAIN_BATCH = 256
MAX_SECONDS_PER_CALL = 0.3   # sparse and torch are skipped ("-") where the sparse path is predicted slower


# ------------------------------------------------------------------ timing
CONFIG = {"cpu_time": False, "threads": None, "settle": None}   # set by main(); --cpu-time, --quick


WARMUP_SECONDS = 0.02   # untimed calls before a contender's repeats (at least WARMUP_CALLS)
WARMUP_CALLS = 3
SETTLE_SECONDS = 0.15   # rest after each contender: OpenBLAS's and torch's threads spin ~0.1 s after a call
ROUNDS = 3              # each contender's repeats are split over this many rounds


def timed(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call over ``repeats`` calls of each contender, in ROUNDS back-to-back runs.

    Each round takes the contenders in turn (the order reversed every other
    round), and each contender: untimed calls for WARMUP_SECONDS (at least
    WARMUP_CALLS), so that its matrices are back in cache after the previous
    contender streamed its own through it (a cold cache measured up to 4x slower
    for several calls); then its share of the repeats back to back; then
    SETTLE_SECONDS of rest. The rest matters: after a threaded BLAS or torch call
    their worker threads spin on for ~0.1 s, and a threaded product timed in
    that window measured up to 2.3x slower (their spinning took its second
    core). Contenders never alternate call by call, for the same reason; the
    rounds spread each one over time, so a slow drift of the machine (other
    tenants of the host) does not land on one contender only. Wall time, or
    with --cpu-time the CPU time of this thread.
    """
    clock = time.thread_time if CONFIG["cpu_time"] else time.perf_counter
    settle = SETTLE_SECONDS if CONFIG["settle"] is None else CONFIG["settle"]
    rounds = min(ROUNDS, repeats)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        share = repeats // rounds + (r < repeats % rounds)
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            fn = fns[name]
            start, calls = time.perf_counter(), 0
            while calls < WARMUP_CALLS or time.perf_counter() - start < WARMUP_SECONDS * (settle > 0):
                fn()
                calls += 1
            for _ in range(share):
                t0 = clock()
                fn()
                samples[name].append(clock() - t0)
            time.sleep(settle)
    return {k: float(np.median(v)) for k, v in samples.items()}


class single_blas_thread:
    """Context: BLAS on one thread (threadpoolctl when installed; else the environment decides)."""

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
            self._limits = threadpool_limits(1)
        except ImportError:
            self._limits = None
        return self

    def __exit__(self, *exc):
        if self._limits is not None:
            self._limits.restore_original_limits()


# ------------------------------------------------------------------ setup
def pruned_model(sizes, density: float, seed: int = 0, activation: str = "relu") -> MLP:
    """MLP(sizes, seed) with each weight matrix pruned to density by random scores (biases alive)."""
    model = MLP(sizes, activation, seed=seed)
    rng = make_rng(seed + 1)
    masks = {}
    for name in model.weight_names():
        shape = model.params[name].shape
        k = max(1, fraction_to_count(density, int(np.prod(shape))))
        masks[name] = keep_top_k(rng.random(shape), k)
    model.set_masks(masks)
    return model


def copy_bandwidth(n_bytes: int = 1 << 28, repeats: int = 7) -> dict[str, float]:
    """Bytes (read + written) per second of np.copyto on a large array, one and two threads."""
    a = np.ones(n_bytes // 8)
    b = np.empty_like(a)
    half = a.size // 2

    def one():
        np.copyto(b, a)

    def two():
        t = threading.Thread(target=np.copyto, args=(b[:half], a[:half]))
        t.start()
        np.copyto(b[half:], a[half:])
        t.join()

    if CONFIG["cpu_time"]:   # one thread's CPU time; two threads have no CPU-time equivalent
        return {"one": 2 * a.nbytes / _cpu_seconds(one, repeats), "two": float("nan")}
    med = interleaved_medians({"one": one, "two": two}, repeats=repeats, warmup=1)
    return {k: 2 * a.nbytes / v for k, v in med.items()}


def relu(z):
    return np.maximum(z, 0.0)


def dense_forward(params, act, dtype):
    Ws = [params[f"layers.{l}.weight"].astype(dtype) for l in range(len(params) // 2)]
    bs = [params[f"layers.{l}.bias"].astype(dtype) for l in range(len(params) // 2)]

    def run(X):
        a = X
        for l, (W, b) in enumerate(zip(Ws, bs)):
            z = a @ W.T + b
            a = act(z) if l < len(Ws) - 1 else z
        return a
    return run


def torch_forward(model: MLP, dtype):
    """torch.sparse CSR product per layer, feature-major like the SciPy path."""
    tdt = getattr(torch, dtype)
    layers = []
    for l in range(model.n_layers):
        W = model.effective_params()[f"layers.{l}.weight"]
        flat = np.flatnonzero(W)
        rows, cols = np.divmod(flat, W.shape[1])
        crow = np.zeros(W.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=W.shape[0]), out=crow[1:])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Wt = torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(cols.astype(np.int64)),
                                         torch.from_numpy(W.ravel()[flat].astype(dtype)), size=W.shape,
                                         dtype=tdt)
        layers.append((Wt, torch.from_numpy(model.params[f"layers.{l}.bias"].astype(dtype))))

    def run(X):
        with torch.no_grad():
            x = torch.from_numpy(X)
            aT = x[0] if x.shape[0] == 1 else x.T.contiguous()
            for l, (W, b) in enumerate(layers):
                zT = torch.mv(W, aT) + b if aT.dim() == 1 else torch.sparse.mm(W, aT) + b[:, None]
                aT = torch.relu(zT) if l < len(layers) - 1 else zT
            return aT[None, :] if aT.dim() == 1 else aT.T.contiguous()   # (N, out), like the others
    return run


def bound_bytes(model: MLP, batch: int, value_bytes: int, index_bytes: int = 4) -> int:
    nnz = sum(int(np.count_nonzero(model.effective_params()[n])) for n in model.weight_names())
    acts = sum(batch * (i + o) * value_bytes for i, o in zip(model.sizes[:-1], model.sizes[1:]))
    return nnz * (value_bytes + index_bytes) + acts


def repeats_for(fn, budget: float, lo: int, hi: int) -> int:
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    return int(np.clip(budget / max(once, 1e-7), lo, hi))


# ------------------------------------------------------------------ forward table
def forward_table(models, densities, batches, dtypes, budget: float, min_repeats: int,
                  bandwidth: float) -> list[dict]:
    rows = []
    for mname, sizes in models.items():
        for density in densities:
            model = pruned_model(sizes, density)
            params = model.effective_params()
            for dtype in dtypes:
                value_bytes = np.dtype(dtype).itemsize
                th = CONFIG["threads"]
                sparse = SparseMLP(model, dtype=dtype, execution="sparse", threads=th)
                auto = SparseMLP(model, dtype=dtype, execution="auto", threads=th)
                forced_dense = SparseMLP(model, dtype=dtype, execution="dense", threads=th)
                dense = dense_forward(params, relu, dtype)
                tfwd = torch_forward(model, dtype) if torch is not None else None
                for batch in batches:
                    X = make_rng(7).standard_normal((batch, sizes[0])).astype(dtype)
                    fns = {"dense": lambda: dense(X), "auto": lambda: auto.forward(X),
                           "sdense": lambda: forced_dense.forward(X)}
                    skipped = _predicted_too_slow(sparse, batch)
                    if not skipped:
                        fns["sparse"] = lambda: sparse.forward(X)
                    slowest = max(fns.values(), key=lambda f: _once(f))
                    reps = repeats_for(slowest, budget / (len(fns) + 1), min_repeats, 100)
                    if tfwd is not None and not skipped:
                        fns["torch"] = lambda: tfwd(X)
                    med = timed(fns, reps)
                    row = {"model": mname, "dtype": dtype, "density": density, "batch": batch,
                           "repeats": reps, "plan": "".join(h[0].upper() for h, _ in auto.plan(batch)),
                           **{f"{k}_us": v * 1e6 for k, v in med.items()}}
                    if not skipped:
                        row["bound_us"] = bound_bytes(model, batch, value_bytes) / bandwidth * 1e6
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


def paired_ratio(fa, fb, repeats: int) -> float:
    """Median over ``repeats`` of time(fa) / time(fb), the two called one right after the other.

    A paired measurement: each ratio compares two calls made within
    milliseconds, so a drift of the machine between rounds cancels out. Used to
    re-measure auto/best where the main table shows auto more than 10 % slower
    than the better forced contender.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < WARMUP_SECONDS:
        fa()
        fb()
    ratios = []
    for i in range(repeats):
        first, second = (fa, fb) if i % 2 == 0 else (fb, fa)   # alternate which goes first
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        ta, tb = (t1 - t0, t2 - t1) if i % 2 == 0 else (t2 - t1, t1 - t0)
        ratios.append(ta / tb)
    return float(np.median(ratios))


def recheck_auto(result: dict, threshold: float = 1.10, repeats: int = 41) -> list[dict]:
    """Paired re-measurement of auto against the better forced choice at the points beyond ``threshold``."""
    rows = []
    for r in result["forward"]:
        best_kind = "sparse" if r.get("sparse_us", np.inf) < r["sdense_us"] else "dense"
        ratio = r["auto_us"] / min(r["sdense_us"], r.get("sparse_us", np.inf))
        if ratio <= threshold:
            continue
        sizes = MODELS[r["model"]]
        model = pruned_model(sizes, r["density"])
        auto = SparseMLP(model, dtype=r["dtype"], execution="auto")
        best = SparseMLP(model, dtype=r["dtype"], execution=best_kind)
        X = make_rng(7).standard_normal((r["batch"], sizes[0])).astype(r["dtype"])
        reps = repeats if r["batch"] * np.prod(sizes[:2]) < 1e8 else 9
        paired = paired_ratio(lambda: auto.forward(X), lambda: best.forward(X), reps)
        row = {"model": r["model"], "dtype": r["dtype"], "density": r["density"], "batch": r["batch"],
               "plan": r["plan"], "best": best_kind, "auto_best_table": ratio, "auto_best_paired": paired,
               "repeats": reps}
        rows.append(row)
        print(f"{r['model']:>15} {r['dtype']:>7} {r['density']:5.2f} {r['batch']:5d} plan {r['plan']:>4} "
              f"best {best_kind:>6}: auto/best {ratio:5.2f} in the table, {paired:5.2f} paired "
              f"({reps} pairs)", flush=True)
    return rows


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _predicted_too_slow(sm: SparseMLP, batch: int) -> bool:
    from refprune.sparse_kernels import predicted_seconds
    t = sum(predicted_seconds("sparse", L.shape, L.nnz, batch, sm.dtype, blocks)
            for L, (_, blocks) in zip(sm.layers, sm.plan(batch)))
    return t > MAX_SECONDS_PER_CALL


HEADER = (f"{'model':>15} {'dtype':>7} {'dens':>5} {'N':>5} {'reps':>4} {'dense':>10} {'sdense':>10} "
          f"{'sparse':>10} {'auto':>10} {'torch':>10} {'spd/dense':>9} {'auto/best':>9} {'bound':>9} "
          f"{'sp/bound':>8} plan")


def format_row(r: dict) -> str:
    def us(k):
        return f"{r[k]:10.1f}" if k in r else f"{'-':>10}"
    best = min(r["sdense_us"], r.get("sparse_us", np.inf))   # the choice: forced dense or forced sparse
    speed = f"{r['dense_us'] / r['sparse_us']:9.2f}" if "sparse_us" in r else f"{'-':>9}"
    bound = f"{r['bound_us']:9.1f}" if "bound_us" in r else f"{'-':>9}"
    over = f"{r['sparse_us'] / r['bound_us']:8.2f}" if "bound_us" in r else f"{'-':>8}"
    return (f"{r['model']:>15} {r['dtype']:>7} {r['density']:5.2f} {r['batch']:5d} {r['repeats']:4d} "
            f"{us('dense_us')} {us('sdense_us')} {us('sparse_us')} {us('auto_us')} {us('torch_us')} {speed} "
            f"{r['auto_us'] / best:9.2f} {bound} {over} {r['plan']}")


# ------------------------------------------------------------------ training step
def dense_masked_step(model: MLP, lr: float):
    """refprune.train.SGD's masked step (momentum 0, no decay), written out in NumPy, sample-major."""
    Ws = [model.params[n] for n in model.weight_names()]
    bs = [model.params[n] for n in model.bias_names()]
    Ms = [model.masks[n].astype(np.float64) for n in model.weight_names()]

    def step(X, y):
        acts, pre = [X], []
        for l, (W, b) in enumerate(zip(Ws, bs)):
            z = acts[-1] @ W.T + b
            pre.append(z)
            if l < len(Ws) - 1:
                acts.append(np.maximum(z, 0.0))
        z = pre[-1]
        shifted = z - z.max(axis=1, keepdims=True)
        p = np.exp(shifted)
        p /= p.sum(axis=1, keepdims=True)
        n = X.shape[0]
        d = p
        d[np.arange(n), y] -= 1.0
        d /= n
        for l in range(len(Ws) - 1, -1, -1):
            gW, gb = d.T @ acts[l], d.sum(0)
            if l > 0:
                d = (d @ Ws[l]) * (pre[l - 1] > 0)
            Ws[l] -= lr * (gW * Ms[l])
            bs[l] -= lr * gb
    return step


def training_table(sizes, densities, batch: int, budget: float, min_repeats: int) -> list[dict]:
    rows = []
    rng = make_rng(11)
    X = rng.standard_normal((batch, sizes[0]))
    y = rng.integers(0, sizes[-1], batch)
    for density in densities:
        model = pruned_model(sizes, density)
        dense_model = model.copy()
        dstep = dense_masked_step(dense_model, 1e-6)
        sparse = SparseSGD(model, lr=1e-6, execution="sparse", threads=CONFIG["threads"])
        auto = SparseSGD(model, lr=1e-6, execution="auto", threads=CONFIG["threads"])
        fns = {"dense": lambda: dstep(X, y), "sparse": lambda: sparse.step(X, y),
               "auto": lambda: auto.step(X, y)}
        reps = repeats_for(lambda: dstep(X, y), budget / 3, min_repeats, 200)
        med = timed(fns, reps)
        row = {"model": "-".join(map(str, sizes)), "dtype": "float64", "density": density, "batch": batch,
               "repeats": reps, "plan": "".join(h[0].upper() for h, _, _ in auto.plan(batch)),
               **{f"{k}_us": v * 1e6 for k, v in med.items()}}
        rows.append(row)
        print(f"{'train step':>15} {density:5.2f} {batch:5d} {reps:4d} dense {row['dense_us']:10.1f} "
              f"sparse {row['sparse_us']:10.1f} auto {row['auto_us']:10.1f} "
              f"dense/sparse {row['dense_us'] / row['sparse_us']:6.2f} plan {row['plan']}", flush=True)
    return rows


# ------------------------------------------------------------------ calibration
def _cpu_seconds(fn, repeats: int) -> float:
    """Fastest CPU time of this thread over the repeats (insensitive to waiting for a core)."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best


def calibrate(budget: float) -> dict:
    """Measure the constants of refprune.sparse_kernels' cost model and print them as code.

    Every per-element cost is per core: CPU time of the calling thread (best of
    the repeats), BLAS limited to one thread, which a shared machine disturbs
    little. Medians over layers (4096x4096, 1024x1024, 300x784; densities 0.1 and
    0.02), in the forward pass's own orientation and chunking. T0 (thread
    hand-off) is a wall time and needs a quiet machine.
    """
    from refprune.sparse import chunk_size
    rng = make_rng(3)
    per = {k: {dt: {b: [] for b in COST_BATCHES} for dt in DTYPES} for k in ("S1", "D1", "G1")}
    for dtype in DTYPES:
        itemsize = np.dtype(dtype).itemsize
        for shape in ((4096, 4096), (1024, 1024), (300, 784)):
            for density in (0.1, 0.02):
                layer = SparseMLP(pruned_model((shape[1], shape[0]), density), dtype=dtype,
                                  execution="sparse").layers[0]
                A, Wd = layer.weight, layer.dense_weight()
                for batch in COST_BATCHES:
                    if layer.nnz * batch > 3e8:
                        continue
                    step = min(batch, chunk_size(shape[1], itemsize))
                    X = rng.standard_normal((shape[1], batch)).astype(dtype)
                    chunks = [np.ascontiguousarray(X[:, s:s + step]) for s in range(0, batch, step)]
                    if batch == 1:
                        chunks = [X[:, 0].copy()]
                    dz = rng.standard_normal((shape[0], batch)).astype(dtype)
                    buf = np.empty(layer.nnz, dtype=dtype)
                    reps = int(np.clip(budget / (layer.nnz * batch * 1e-9 + 1e-5), 3, 50))
                    t_s = _cpu_seconds(lambda: [csr_product(A, ch, np.empty((shape[0],) + ch.shape[1:], dtype))
                                                for ch in chunks], reps)
                    t_g = _cpu_seconds(lambda: sampled_product(dz, X, [A], buf, 1), reps)
                    xd = X[:, 0].copy() if batch == 1 else X
                    with single_blas_thread():
                        t_d = _cpu_seconds(lambda: Wd @ xd, reps)
                    per["S1"][dtype][batch].append(t_s / (layer.nnz * batch))
                    per["G1"][dtype][batch].append(t_g / (layer.nnz * batch))
                    per["D1"][dtype][batch].append(t_d / (shape[0] * shape[1] * batch))
                    print(f"{dtype} {shape} d={density} N={batch}: sparse {t_s * 1e6:.1f} us, "
                          f"sampled {t_g * 1e6:.1f} us, dense {t_d * 1e6:.1f} us", flush=True)
    tr = []
    for n, w in ((256, 784), (2048, 784), (256, 4096)):
        Xs = rng.standard_normal((n, w))
        step = chunk_size(w, 8)
        tr.append(_cpu_seconds(lambda: [np.ascontiguousarray(Xs[s:s + step].T) for s in range(0, n, step)], 10)
                  / (n * w))
    tiny = SparseMLP(pruned_model((8, 8), 0.5), execution="sparse").layers[0]
    x8 = np.ones(8)
    s0 = _cpu_seconds(lambda: tiny.weight @ x8, 200)
    d8 = tiny.dense_weight()
    d0 = _cpu_seconds(lambda: d8 @ x8, 200)
    # T0: a product shared with the worker threads after they went to sleep, less the same alone
    from refprune.sparse_kernels import csr_matmul, row_blocks
    shared = SparseMLP(pruned_model((1024, 1024), 0.02), execution="sparse").layers[0].weight
    x1k = np.ones(1024)

    def after_idle(threads: int) -> float:
        blocks = row_blocks(shared, 4 * threads)
        times = []
        for _ in range(60):
            time.sleep(0.002)
            t = time.perf_counter()
            csr_matmul(blocks, x1k, threads)
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    t0 = after_idle(2) - after_idle(1) / 2
    fitted = {k: {dt: tuple(float(f"{np.median(v[dt][b]):.2g}") if v[dt][b] else None for b in COST_BATCHES)
                  for dt in DTYPES} for k, v in per.items()}
    fitted.update(S0=float(f"{s0:.2g}"), D0=float(f"{d0:.2g}"), T0=float(f"{t0:.2g}"),
                  TR1=float(f"{np.median(tr):.2g}"))
    for k in ("S1", "D1", "G1"):
        print(f"{k} = {fitted[k]!r}")
    print(f"TR1 = {fitted['TR1']!r}\nS0 = {fitted['S0']!r}\nD0 = {fitted['D0']!r}\nT0 = {fitted['T0']!r}")
    return fitted


# ------------------------------------------------------------------ report
def markdown(result: dict) -> str:
    """The run as markdown tables (the format of docs/sparse_execution.md's results)."""
    m = result["machine"]
    out = [f"Timer: {m['timer']}; load average before {m['load_before'][0]:.2f}, after "
           f"{m['load_after'][0]:.2f}; copy bandwidth {m['copy_bandwidth_one_thread'] / 1e9:.1f} GB/s "
           f"(one thread), {m['copy_bandwidth_two_threads'] / 1e9:.1f} GB/s (two; the bound uses the "
           f"larger). Microseconds, medians; reps = timed calls per contender.", "",
           "| model | dtype | density | N | reps | dense | sdense | sparse | auto | torch | dense/sparse "
           "| auto/best | bound | sparse/bound | plan |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def us(r, k):
        return f"{r[k]:,.1f}" if k in r else "-"
    for r in result["forward"]:
        best = min(r["sdense_us"], r.get("sparse_us", np.inf))
        ratio = f"{r['dense_us'] / r['sparse_us']:.2f}" if "sparse_us" in r else "-"
        over = f"{r['sparse_us'] / r['bound_us']:.2f}" if "bound_us" in r else "-"
        bound = f"{r['bound_us']:,.1f}" if "bound_us" in r else "-"
        out.append(f"| {r['model']} | {r['dtype']} | {r['density']} | {r['batch']} | {r['repeats']} | "
                   f"{us(r, 'dense_us')} | {us(r, 'sdense_us')} | {us(r, 'sparse_us')} | {us(r, 'auto_us')} | "
                   f"{us(r, 'torch_us')} | {ratio} | {r['auto_us'] / best:.2f} | {bound} | {over} | {r['plan']} |")
    out += ["", "| training step | density | N | reps | dense masked | sparse | auto | dense/sparse | dense/auto "
            "| plan |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["training"]:
        out.append(f"| {r['model']} | {r['density']} | {r['batch']} | {r['repeats']} | {r['dense_us']:,.1f} | "
                   f"{r['sparse_us']:,.1f} | {r['auto_us']:,.1f} | {r['dense_us'] / r['sparse_us']:.2f} | "
                   f"{r['dense_us'] / r['auto_us']:.2f} | {r['plan']} |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ main
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small grid, few repeats")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--markdown", type=Path, default=None, help="write the tables here, as markdown")
    ap.add_argument("--from-json", type=Path, default=None, help="only render --markdown from this JSON")
    ap.add_argument("--budget", type=float, default=0.4, help="seconds of timing per point (default 0.4)")
    ap.add_argument("--min-repeats", type=int, default=4)
    ap.add_argument("--calibrate", action="store_true", help="measure the cost model constants instead")
    ap.add_argument("--recheck-auto", type=Path, default=None,
                    help="re-measure auto/best, paired, at the points of this JSON where it exceeds 1.10")
    ap.add_argument("--cpu-time", action="store_true",
                    help="one thread everywhere (BLAS, torch, sparse) timed in CPU time of the thread: "
                         "per-core costs that a shared machine disturbs little")
    args = ap.parse_args(argv)
    if args.from_json is not None:
        text = markdown(json.loads(args.from_json.read_text()))
        if args.markdown is not None:
            args.markdown.write_text(text)
        print(text)
        return {}
    CONFIG.update(cpu_time=args.cpu_time, threads=1 if args.cpu_time else None)
    limiter = None
    if args.cpu_time:
        if torch is not None:
            torch.set_num_threads(1)
        try:
            from threadpoolctl import threadpool_limits
            limiter = threadpool_limits(1)
        except ImportError:
            print("warning: threadpoolctl is not installed; run with OPENBLAS_NUM_THREADS=1 so that "
                  "BLAS stays on the timed thread")

    info = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "torch": None if torch is None else torch.__version__,
            "torch_threads": None if torch is None else torch.get_num_threads(),
            "cores": os.cpu_count(), "load_before": os.getloadavg(), "kernels": KERNELS,
            "timer": "thread CPU time, one thread" if args.cpu_time else "wall time, all cores"}
    print(json.dumps(info))
    if args.calibrate:
        return calibrate(args.budget)
    if args.recheck_auto is not None:
        rows = recheck_auto(json.loads(args.recheck_auto.read_text()))
        if args.json is not None:
            args.json.write_text(json.dumps({"machine": info, "recheck_auto": rows}, indent=1))
        return {"recheck_auto": rows}
    train_sizes = MODELS["784-300-100-10"]
    if args.quick:
        models = {"64-32-10": (64, 32, 10)}
        train_sizes = models["64-32-10"]
        densities, batches, dtypes, train_d = (1.0, 0.05), (1, 32), ("float64", "float32"), (0.05,)
        budget, min_repeats, bw_bytes = 0.002, 1, 1 << 22
        CONFIG["settle"] = 0.0   # a smoke run: no warm-up time, no rest
    else:
        models, densities, batches, dtypes, train_d = MODELS, DENSITIES, BATCHES, DTYPES, TRAIN_DENSITIES
        budget, min_repeats, bw_bytes = args.budget, args.min_repeats, 1 << 28
    bw = copy_bandwidth(bw_bytes)
    info["copy_bandwidth_one_thread"] = bw["one"]
    info["copy_bandwidth_two_threads"] = bw["two"]
    print(f"copy bandwidth (read + write): one thread {bw['one'] / 1e9:.1f} GB/s, "
          f"two threads {bw['two'] / 1e9:.1f} GB/s; times in microseconds, medians of 'reps' "
          f"back-to-back repeats; bound uses the larger copy bandwidth")
    print(HEADER)
    forward = forward_table(models, densities, batches, dtypes, budget, min_repeats,
                            np.nanmax([bw["one"], bw["two"]]))
    training = training_table(train_sizes, train_d, 32 if args.quick else TRAIN_BATCH, budget, min_repeats)
    info["load_after"] = os.getloadavg()
    print(f"load average before {info['load_before']}, after {info['load_after']}")
    result = {"machine": info, "forward": forward, "training": training}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    if args.markdown is not None:
        args.markdown.write_text(markdown(result))
        print(f"wrote {args.markdown}")
    if limiter is not None:
        limiter.restore_original_limits()
    return result


if __name__ == "__main__":
    main()
