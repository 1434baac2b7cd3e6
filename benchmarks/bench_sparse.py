"""The SciPy sparse path of a pruned MLP against dense NumPy, with a verdict for every target.

One command measures everything and prints, at the end, each target with its
measured value and a verdict (PASS / FAIL):

    python benchmarks/bench_sparse.py --json run.json --markdown run.md    # ~50 minutes (estimate)
    python benchmarks/bench_sparse.py --quick                              # smoke run, < 1 minute

Forward pass: a 784-300-100-10 ReLU MLP and a single 4096x4096 layer, every
weight matrix pruned to density d by a random mask (``keep_top_k`` of uniform
scores, seed 0), d in {1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01}, batches
{1, 32, 256, 2048}, float64 and float32. Contenders (``timed``):

    dense   NumPy a @ (W * M).T + b per layer: the dense masked forward, no input checks
    sdense  SparseMLP forced dense on every layer
    sparse  SparseMLP forced sparse on every layer
    auto    SparseMLP with the automatic per-layer choice (measured at first use, in the warm-up)
    torch   torch.sparse CSR per layer, at torch's default threads (when torch imports)

dense/sparse and dense/auto are speed-ups over the dense masked forward;
auto/best = auto / min(sdense, sparse) is what the automatic choice costs against
the better forced choice. Points where the table shows auto/best > 1.10 are
measured again *paired* (auto and the better forced one called alternately,
median of the ratios), which cancels the machine's drift between contenders.

Each sparse point gets a memory-bandwidth lower bound: bytes moved = nnz * (value
+ 4 index bytes) + activations (N * (in + out) * value bytes per layer), over the
bandwidth of a large array copy (bytes read + written, STREAM "copy"; McCalpin 1995).

Training step: 784-300-100-10, batch 256, float64, densities {0.2, 0.05, 0.01}:
the dense masked SGD step written in NumPy against ``SparseSGD.step`` (forced
dense, forced sparse, auto).

Threads (paired): the 4096x4096 layer, forced sparse, on all threads against one
thread, batches >= 32, densities <= 10 %. Overhead (paired): at batch 1 on that
layer, ``SparseMLP.forward`` against a bare ``scipy.sparse.csr_matrix @ x``.

Other BLAS kernels: the forward table's auto/best check and the training rows
are measured again in child processes with OPENBLAS_CORETYPE=Sandybridge and
with OPENBLAS_NUM_THREADS=1 (set for the child only; this process's
environment is never changed).

Timings on a shared machine are noisy: the load average is printed before and
after; run it on an otherwise idle machine.

    python benchmarks/bench_sparse.py --from-json run.json --markdown run.md   # tables only
    python benchmarks/bench_sparse.py --skip-kernels                           # this kernel only
    python benchmarks/bench_sparse.py --targets-only                           # ~3 minutes

``--targets-only`` (about 3 minutes) measures the points the targets name and nothing else: the
784-300-100-10 forward at 2 % (batches 32 and 256, both dtypes, with the other
contenders of the table), the training step at 1 %, the threads and the
overhead tables; the auto check then covers only those points, on this kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.sparse as sp

from refprune.masks import fraction_to_count, keep_top_k
from refprune.mlp import MLP
from refprune.rng import make_rng
from refprune.sparse import SparseMLP, SparseSGD
from refprune.sparse import plan as planning

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
MAX_SPARSE_SECONDS = (
    0.5  # forced sparse is skipped ("-") where its estimate exceeds this and 4x dense's
)
KERNEL_ENVIRONMENTS = ({"OPENBLAS_CORETYPE": "Sandybridge"}, {"OPENBLAS_NUM_THREADS": "1"})

# the targets (docs/sparse_execution.md)
SPEEDUP_TARGET = 2.5  # 784-300-100-10 at 2 %, batches 32 and 256; training step at 1 %
THREADS_TARGET = 1.8  # 4096 layer, batches >= 32, density <= 10 %: threaded / one thread
OVERHEAD_TARGET = 1.15  # 4096 layer, batch 1, density <= 10 %: forward / bare csr_matrix @ x
AUTO_TARGET = 1.10  # auto / better forced choice, every point

CONFIG = {"settle": None}
WARMUP_SECONDS = 0.02  # untimed calls before a contender's repeats (at least WARMUP_CALLS)
WARMUP_CALLS = 3
SETTLE_SECONDS = (
    0.15  # rest after each contender: OpenBLAS's and torch's threads spin ~0.1 s after a call
)
ROUNDS = 3  # each contender's repeats are split over this many rounds


# ------------------------------------------------------------------ timing
def timed(
    fns: dict[str, Callable[[], object]], repeats: int, faults: dict[str, float] | None = None
) -> dict[str, float]:
    """Median seconds per call of each contender over ``repeats`` calls, in ROUNDS runs.

    Each round takes the contenders in turn (the order reversed every other
    round), and each contender: untimed calls for WARMUP_SECONDS (at least
    WARMUP_CALLS; the first call of ``auto`` plans, which is not timed), so that
    its matrices are back in cache after the previous contender streamed its own
    through it; then its share of the repeats back to back; then SETTLE_SECONDS
    of rest (after a threaded BLAS or torch call their worker threads spin for
    ~0.1 s, and a threaded product timed in that window loses a core).

    ``faults``, when given, receives each contender's minor page faults per timed
    call (the whole process's, ``getrusage``; where that does not exist, nothing):
    memory the C allocator gave back to the system and a contender touches again
    costs a fault per page, a cost that depends on the heap's state, not the code.
    """
    settle = SETTLE_SECONDS if CONFIG["settle"] is None else CONFIG["settle"]
    rounds = min(ROUNDS, repeats)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    counted: dict[str, int] = dict.fromkeys(fns, 0)
    for r in range(rounds):
        share = repeats // rounds + (r < repeats % rounds)
        for name in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            fn = fns[name]
            start, calls = time.perf_counter(), 0
            while calls < WARMUP_CALLS or time.perf_counter() - start < WARMUP_SECONDS * (
                settle > 0
            ):
                fn()
                calls += 1
            before = minor_faults()
            for _ in range(share):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
            counted[name] += minor_faults() - before
            time.sleep(settle)
    if faults is not None and minor_faults() >= 0:
        faults.update({k: counted[k] / len(samples[k]) for k in fns})
    return {k: float(np.median(v)) for k, v in samples.items()}


def minor_faults() -> int:
    """Minor page faults of this process so far (-1 where ``resource`` does not exist)."""
    try:
        import resource
    except ImportError:  # Windows
        return -1
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def _two(x: float | None) -> str:
    """A ratio with two decimals, or blank when there is none."""
    return "" if x is None else f"{x:.2f}"


def paired_ratio(fa: Callable[[], object], fb: Callable[[], object], repeats: int) -> float:
    """Median over ``repeats`` of time(fa) / time(fb), the two called one right after the other
    (which goes first alternates), after a warm-up of both."""
    for _ in range(WARMUP_CALLS):
        fa()
        fb()
    ratios = []
    for i in range(repeats):
        first, second = (fa, fb) if i % 2 == 0 else (fb, fa)
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        ta, tb = (t1 - t0, t2 - t1) if i % 2 == 0 else (t2 - t1, t1 - t0)
        ratios.append(ta / tb)
    return float(np.median(ratios))


def once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def repeats_for(seconds: float, budget: float, lo: int, hi: int) -> int:
    return int(np.clip(budget / max(seconds, 1e-7), lo, hi))


def pairs_for(seconds: float, budget: float) -> int:
    """Pairs for a paired ratio: odd, 5 .. 41, about ``budget`` seconds."""
    n = int(np.clip(budget / max(2 * seconds, 1e-7), 5, 41))
    return n | 1


# ------------------------------------------------------------------ setup
def pruned_model(sizes, density: float, seed: int = 0, activation: str = "relu") -> MLP:
    """MLP(sizes, seed), each weight matrix pruned to density by random scores (biases alive)."""
    model = MLP(sizes, activation, seed=seed)
    rng = make_rng(seed + 1)
    masks = {}
    for name in model.weight_names():
        shape = model.params[name].shape
        k = max(1, fraction_to_count(density, int(np.prod(shape))))
        masks[name] = keep_top_k(rng.random(shape), k)
    model.set_masks(masks)
    return model


def copy_bandwidth(n_bytes: int, repeats: int = 7) -> dict[str, float]:
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

    best = {"one": np.inf, "two": np.inf}
    one()
    two()
    for _ in range(repeats):
        best["one"] = min(best["one"], once(one))
        best["two"] = min(best["two"], once(two))
    return {k: 2 * a.nbytes / v for k, v in best.items()}


def dense_forward(params: dict[str, np.ndarray], dtype: str) -> Callable[[np.ndarray], np.ndarray]:
    """The dense masked forward a @ (W * M).T + b, ReLU, in ``dtype``: the baseline."""
    Ws = [params[f"layers.{l}.weight"].astype(dtype) for l in range(len(params) // 2)]
    bs = [params[f"layers.{l}.bias"].astype(dtype) for l in range(len(params) // 2)]

    def run(X):
        a = X
        for l, (W, b) in enumerate(zip(Ws, bs)):
            z = a @ W.T + b
            a = np.maximum(z, 0.0) if l < len(Ws) - 1 else z
        return a

    return run


def torch_forward(model: MLP, dtype: str) -> Callable[[np.ndarray], Any]:
    """torch.sparse CSR product per layer, feature-major like the SciPy path."""
    tdt = getattr(torch, dtype)
    layers = []
    p = model.effective_params()
    for l in range(model.n_layers):
        W = p[f"layers.{l}.weight"]
        A = sp.csr_array(W.astype(dtype))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Wt = torch.sparse_csr_tensor(
                torch.from_numpy(A.indptr.astype(np.int64)),
                torch.from_numpy(A.indices.astype(np.int64)),
                torch.from_numpy(A.data),
                size=W.shape,
                dtype=tdt,
            )
        layers.append((Wt, torch.from_numpy(p[f"layers.{l}.bias"].astype(dtype))))

    def run(X):
        with torch.no_grad():
            x = torch.from_numpy(X)
            aT = x[0] if x.shape[0] == 1 else x.T.contiguous()
            for l, (W, b) in enumerate(layers):
                zT = torch.mv(W, aT) + b if aT.dim() == 1 else torch.sparse.mm(W, aT) + b[:, None]
                aT = torch.relu(zT) if l < len(layers) - 1 else zT
            return aT[None, :] if aT.dim() == 1 else aT.T.contiguous()

    return run


def bound_bytes(model: MLP, batch: int, value_bytes: int, index_bytes: int = 4) -> int:
    nnz = sum(int(np.count_nonzero(model.effective_params()[n])) for n in model.weight_names())
    acts = sum(batch * (i + o) * value_bytes for i, o in zip(model.sizes[:-1], model.sizes[1:]))
    return nnz * (value_bytes + index_bytes) + acts


def sparse_estimate(model: MLP, batch: int, dtype: str) -> float:
    """Seconds forced sparse needs at least (one thread at the calibrated best rate)."""
    cal = planning.calibrate(dtype)
    nnz = sum(int(model.masks[n].sum()) for n in model.weight_names())
    return nnz * batch / (cal.sparse_rate_1 if batch == 1 else cal.sparse_rate)


def plan_letters(executions) -> str:
    return "".join(e[0].upper() for e in executions)


# ------------------------------------------------------------------ forward table
def forward_table(
    models,
    densities,
    batches,
    dtypes,
    budget: float,
    min_repeats: int,
    bandwidth: float | None,
    baselines: bool,
) -> list[dict]:
    """One row per point; with ``baselines`` also the dense masked forward and torch."""
    rows = []
    for mname, sizes in models.items():
        for density in densities:
            model = pruned_model(sizes, density)
            params = model.effective_params()
            for dtype in dtypes:
                value_bytes = np.dtype(dtype).itemsize
                sparse = SparseMLP(model, dtype=dtype, execution="sparse")
                auto = SparseMLP(model, dtype=dtype, execution="auto")
                sdense = SparseMLP(model, dtype=dtype, execution="dense")
                dense = dense_forward(params, dtype)
                tfwd = torch_forward(model, dtype) if (torch is not None and baselines) else None
                for batch in batches:
                    X = make_rng(7).standard_normal((batch, sizes[0])).astype(dtype)
                    fns: dict[str, Callable[[], object]] = {
                        "sdense": partial(sdense.forward, X),
                        "auto": partial(auto.forward, X),
                    }
                    if baselines:
                        fns["dense"] = partial(dense, X)
                    slowest = max(once(f) for f in fns.values())
                    skipped = sparse_estimate(
                        model, batch, dtype
                    ) > MAX_SPARSE_SECONDS and sparse_estimate(model, batch, dtype) > 4 * once(
                        fns["sdense"]
                    )
                    if not skipped:
                        fns["sparse"] = partial(sparse.forward, X)
                        slowest = max(slowest, once(fns["sparse"]))
                        if tfwd is not None:
                            fns["torch"] = partial(tfwd, X)
                    reps = repeats_for(slowest, budget / (len(fns) + 1), min_repeats, 100)
                    med = timed(fns, reps)
                    row = {
                        "model": mname,
                        "dtype": dtype,
                        "density": density,
                        "batch": batch,
                        "repeats": reps,
                        "plan": plan_letters(auto.plan(batch)),
                        **{f"{k}_us": v * 1e6 for k, v in med.items()},
                    }
                    if not skipped and bandwidth:
                        row["bound_us"] = bound_bytes(model, batch, value_bytes) / bandwidth * 1e6
                    row["auto_best"] = auto_best(row)
                    if row["auto_best"] > AUTO_TARGET:  # measured again, paired
                        best = sparse if row.get("sparse_us", np.inf) < row["sdense_us"] else sdense
                        reps_p = pairs_for(
                            min(row["sdense_us"], row.get("sparse_us", np.inf)) / 1e6, budget
                        )
                        row["auto_best_paired"] = paired_ratio(
                            partial(auto.forward, X), partial(best.forward, X), reps_p
                        )
                    rows.append(row)
                    print(format_row(row), flush=True)
    return rows


def auto_best(r: dict) -> float:
    return r["auto_us"] / min(r["sdense_us"], r.get("sparse_us", np.inf))


def auto_verdict_ratio(r: dict) -> float:
    """auto/best for the verdict: the paired measurement where there is one."""
    return r.get("auto_best_paired", r["auto_best"])


HEADER = (
    f"{'model':>15} {'dtype':>7} {'dens':>5} {'N':>5} {'reps':>4} {'dense':>10} {'sdense':>10} "
    f"{'sparse':>10} {'auto':>10} {'torch':>10} {'dn/auto':>7} {'auto/best':>9} {'paired':>6} "
    f"{'sp/bound':>8} plan"
)


def format_row(r: dict) -> str:
    def us(k):
        return f"{r[k]:10.1f}" if k in r else f"{'-':>10}"

    speed = f"{r['dense_us'] / r['auto_us']:7.2f}" if "dense_us" in r else f"{'-':>7}"
    paired = f"{r['auto_best_paired']:6.2f}" if "auto_best_paired" in r else f"{'':>6}"
    over = f"{r['sparse_us'] / r['bound_us']:8.2f}" if "bound_us" in r else f"{'-':>8}"
    return (
        f"{r['model']:>15} {r['dtype']:>7} {r['density']:5.2f} {r['batch']:5d} {r['repeats']:4d} "
        f"{us('dense_us')} {us('sdense_us')} {us('sparse_us')} {us('auto_us')} {us('torch_us')} "
        f"{speed} {r['auto_best']:9.2f} {paired} {over} {r['plan']}"
    )


# ------------------------------------------------------------------ training step
def dense_masked_step(model: MLP, lr: float):
    """refprune.train.SGD's masked step (momentum 0, no decay) written out in NumPy."""
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
            gW *= Ms[l]  # in place: fewer large temporaries for the allocator to fault in
            gW *= lr
            Ws[l] -= gW
            bs[l] -= lr * gb

    return step


def training_table(
    sizes, densities, batch: int, budget: float, min_repeats: int, baselines: bool
) -> list[dict]:
    rows = []
    rng = make_rng(11)
    X = rng.standard_normal((batch, sizes[0]))
    y = rng.integers(0, sizes[-1], batch)
    for density in densities:
        model = pruned_model(sizes, density)
        opts = {
            k: SparseSGD(model, lr=1e-6, execution=e)
            for k, e in (("sdense", "dense"), ("sparse", "sparse"), ("auto", "auto"))
        }
        fns: dict[str, Callable[[], object]] = {k: partial(o.step, X, y) for k, o in opts.items()}
        if baselines:
            fns["dense"] = partial(dense_masked_step(model.copy(), 1e-6), X, y)
        reps = repeats_for(
            max(once(f) for f in fns.values()), budget / (len(fns) + 1), min_repeats, 200
        )
        faults: dict[str, float] = {}
        med = timed(fns, reps, faults)
        row = {
            "model": "-".join(map(str, sizes)),
            "dtype": "float64",
            "density": density,
            "batch": batch,
            "repeats": reps,
            "plan": plan_letters(opts["auto"].plan(batch)),
            **{f"{k}_us": v * 1e6 for k, v in med.items()},
            **{f"{k}_faults": v for k, v in faults.items()},
        }
        row["auto_best"] = auto_best(row)
        if row["auto_best"] > AUTO_TARGET:
            best = opts["sparse"] if row["sparse_us"] < row["sdense_us"] else opts["sdense"]
            row["auto_best_paired"] = paired_ratio(
                partial(opts["auto"].step, X, y),
                partial(best.step, X, y),
                pairs_for(min(row["sparse_us"], row["sdense_us"]) / 1e6, budget),
            )
        rows.append(row)
        speed = f"dense/sparse {row['dense_us'] / row['sparse_us']:6.2f} " if baselines else ""
        print(
            f"{'train step':>15} {density:5.2f} {batch:5d} {reps:4d} "
            + " ".join(f"{k} {row[k + '_us']:10.1f}" for k in fns)
            + f" {speed}auto/best {row['auto_best']:5.2f} plan {row['plan']}"
            + (
                " page faults/call " + " ".join(f"{k} {faults[k]:.0f}" for k in fns)
                if faults
                else ""
            ),
            flush=True,
        )
    return rows


# ------------------------------------------------------------------ threads and overhead
def threads_table(densities, batches, dtypes, budget: float) -> list[dict]:
    """Forced sparse on the 4096x4096 layer: one thread against all, paired (planned without
    measurement, so that the threads are used wherever the hand-off model says they pay)."""
    rows = []
    for density in densities:
        model = pruned_model(MODELS["4096x4096"], density)
        for dtype in dtypes:
            one = SparseMLP(model, dtype=dtype, execution="sparse", threads=1)
            many = SparseMLP(model, dtype=dtype, execution="sparse")
            for batch in batches:
                X = make_rng(7).standard_normal((batch, 4096)).astype(dtype)
                planning.set_measure(False)  # the threaded path itself, even where it loses
                try:
                    many.plan(batch)
                finally:
                    planning.set_measure(True)
                reps = pairs_for(once(partial(one.forward, X)), budget)
                ratio = paired_ratio(partial(one.forward, X), partial(many.forward, X), reps)
                rows.append(
                    {
                        "density": density,
                        "dtype": dtype,
                        "batch": batch,
                        "repeats": reps,
                        "threads": many.threads,
                        "speedup": ratio,
                    }
                )
                print(
                    f"threads 4096x4096 {dtype} {density:5.2f} {batch:5d}: one thread / "
                    f"{many.threads} threads = {ratio:5.2f} ({reps} pairs)",
                    flush=True,
                )
    return rows


def overhead_table(densities, dtypes, budget: float) -> list[dict]:
    """SparseMLP.forward at batch 1 against a bare csr_matrix @ x, paired."""
    rows = []
    for density in densities:
        model = pruned_model(MODELS["4096x4096"], density)
        for dtype in dtypes:
            sm = SparseMLP(model, dtype=dtype)
            bare = sp.csr_matrix(model.effective_params()["layers.0.weight"].astype(dtype))
            X = make_rng(7).standard_normal((1, 4096)).astype(dtype)
            x = X[0].copy()
            sm.forward(X)
            reps = pairs_for(once(partial(bare.dot, x)), budget / 2)
            ratio = paired_ratio(partial(sm.forward, X), partial(bare.dot, x), max(reps, 21))
            rows.append(
                {
                    "density": density,
                    "dtype": dtype,
                    "repeats": max(reps, 21),
                    "ratio": ratio,
                    "plan": plan_letters(sm.plan(1)),
                }
            )
            print(
                f"overhead 4096x4096 {dtype} {density:5.2f} N=1: forward / bare csr_matrix @ x = "
                f"{ratio:5.2f}",
                flush=True,
            )
    return rows


# ------------------------------------------------------------------ other BLAS kernels
def kernel_runs(args: argparse.Namespace) -> list[dict]:
    """This script in auto-check mode, in child processes with other BLAS settings."""
    runs = []
    for env_extra in KERNEL_ENVIRONMENTS:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "child.json"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--auto-only",
                "--json",
                str(out),
                "--budget",
                str(args.budget),
            ] + (["--quick"] if args.quick else [])
            label = " ".join(f"{k}={v}" for k, v in env_extra.items())
            print(f"\n== auto check under {label} ==", flush=True)
            proc = subprocess.run(cmd, env={**os.environ, **env_extra}, check=False)
            if proc.returncode != 0 or not out.exists():
                runs.append({"environment": env_extra, "error": f"exit status {proc.returncode}"})
                continue
            child = json.loads(out.read_text())
            runs.append({"environment": env_extra, **child})
    return runs


# ------------------------------------------------------------------ targets
def targets(result: dict) -> list[dict]:
    """Each target with its measured value and a verdict."""
    out = []

    def add(name: str, value: str, ok: bool | None) -> None:
        out.append(
            {
                "target": name,
                "measured": value,
                "verdict": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
            }
        )

    fwd = result.get("forward", [])
    for dtype in DTYPES:
        pts = [
            r
            for r in fwd
            if r["model"] == "784-300-100-10"
            and r["density"] == 0.02
            and r["batch"] in (32, 256)
            and r["dtype"] == dtype
            and "dense_us" in r
        ]
        if pts:
            vals = [r["dense_us"] / r["auto_us"] for r in pts]
            add(
                f"784-300-100-10 at 2 %, {dtype}: auto >= {SPEEDUP_TARGET}x dense at N = 32, 256",
                ", ".join(f"{v:.2f}x" for v in vals),
                min(vals) >= SPEEDUP_TARGET,
            )
    train = [r for r in result.get("training", []) if r["density"] == 0.01 and "dense_us" in r]
    if train:
        r = train[0]
        vals = [r["dense_us"] / r["sparse_us"], r["dense_us"] / r["auto_us"]]
        add(
            f"training step at 1 %, N = 256: >= {SPEEDUP_TARGET}x the dense masked step "
            "(sparse; auto)",
            f"{vals[0]:.2f}x; {vals[1]:.2f}x",
            min(vals) >= SPEEDUP_TARGET,
        )
    thr = result.get("threads", [])
    if thr:
        worst = min(thr, key=lambda r: r["speedup"])
        add(
            f"4096x4096, N >= 32, density <= 10 %: threaded >= {THREADS_TARGET}x one thread "
            f"({len(thr)} points)",
            f"worst {worst['speedup']:.2f}x ({worst['dtype']}, "
            f"{worst['density']}, N = {worst['batch']}); median "
            f"{np.median([r['speedup'] for r in thr]):.2f}x",
            worst["speedup"] >= THREADS_TARGET,
        )
    ovh = result.get("overhead", [])
    if ovh:
        worst = max(ovh, key=lambda r: r["ratio"])
        add(
            f"4096x4096, N = 1, density <= 10 %: forward within {OVERHEAD_TARGET}x of bare "
            f"csr_matrix @ x ({len(ovh)} points)",
            f"worst {worst['ratio']:.2f}x ({worst['dtype']}, {worst['density']})",
            worst["ratio"] <= OVERHEAD_TARGET,
        )

    def auto_check(label: str, rows: list[dict]) -> None:
        if not rows:
            return
        worst = max(rows, key=auto_verdict_ratio)
        beyond = sum(auto_verdict_ratio(r) > AUTO_TARGET for r in rows)
        add(
            f"auto within {AUTO_TARGET:.2f}x of the better forced choice, every point ({label}, "
            f"{len(rows)} points)",
            f"worst {auto_verdict_ratio(worst):.2f} ({worst['model']} {worst['dtype']} "
            f"{worst['density']} N = {worst['batch']}); {beyond} beyond",
            beyond == 0,
        )

    auto_check("this machine, forward and training", fwd + result.get("training", []))
    for run in result.get("kernels", []):
        label = " ".join(f"{k}={v}" for k, v in run["environment"].items())
        if "error" in run:
            add(f"auto check under {label}", run["error"], False)
        else:
            auto_check(label, run.get("forward", []) + run.get("training", []))
    add(
        "reliability tests pass 20 times in a row",
        "run: for i in $(seq 20); do python -m pytest -q tests/test_sparse_reliability.py "
        "|| break; done",
        None,
    )
    return out


# ------------------------------------------------------------------ report
def wake_round_trip(trips: int = 2000) -> float:
    """Median seconds for one thread to wake another and be woken back (two locks, passed to
    and fro ``trips`` times, in 5 runs): what every hand-off to a sleeping thread costs, and
    what a thread waiting for the GIL pays when it is handed over."""
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()

    def peer() -> None:
        for _ in range(5 * trips):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=peer)
    thread.start()
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(trips):
            ping.release()
            pong.acquire()
        runs.append((time.perf_counter() - t0) / trips)
    thread.join()
    return float(np.median(runs))


def markdown(result: dict) -> str:
    """The run as markdown tables (the format of docs/sparse_execution.md's results)."""
    m = result["machine"]
    head = (
        f"Machine: {m.get('cpu', '?')}, {m['cores']} cores; NumPy {m['numpy']}, "
        f"SciPy {m['scipy']}, "
        f"torch {m['torch']}; load average before {m['load_before'][0]:.2f}, after "
        f"{m.get('load_after', [float('nan')])[0]:.2f}; copy bandwidth "
        f"{m['copy_bandwidth_one_thread'] / 1e9:.1f} GB/s (one thread), "
        f"{m['copy_bandwidth_two_threads'] / 1e9:.1f} GB/s (two; the bound uses the larger); "
        + (
            f"thread wake round trip {m['wake_round_trip'] * 1e6:.0f} us; "
            if "wake_round_trip" in m
            else ""
        )
        + f"{m.get('seconds', float('nan')):.0f} s. Microseconds, medians; reps = timed calls per "
        "contender."
    )
    out = [head, ""]
    out += ["| target | measured | verdict |", "|---|---|---|"]
    out += [
        f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in result.get("targets", [])
    ]
    out += [
        "",
        (
            "| model | dtype | density | N | reps | dense | sdense | sparse | auto | torch | "
            "dense/auto | auto/best | paired | sparse/bound | plan |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def us(r, k):
        return f"{r[k]:,.1f}" if k in r else "-"

    for r in result["forward"]:
        speed = f"{r['dense_us'] / r['auto_us']:.2f}" if "dense_us" in r else "-"
        over = f"{r['sparse_us'] / r['bound_us']:.2f}" if "bound_us" in r else "-"
        paired = f"{r['auto_best_paired']:.2f}" if "auto_best_paired" in r else ""
        out.append(
            f"| {r['model']} | {r['dtype']} | {r['density']} | {r['batch']} | {r['repeats']} | "
            f"{us(r, 'dense_us')} | {us(r, 'sdense_us')} | {us(r, 'sparse_us')} | "
            f"{us(r, 'auto_us')} | {us(r, 'torch_us')} | {speed} | {r['auto_best']:.2f} | "
            f"{paired} | {over} | {r['plan']} |"
        )
    out += [
        "",
        (
            "| training step | density | N | reps | dense masked | sdense | sparse | auto | "
            "dense/sparse | dense/auto | auto/best | paired | plan | page faults per call "
            "(dense masked / sparse / auto) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["training"]:
        out.append(
            f"| {r['model']} | {r['density']} | {r['batch']} | {r['repeats']} | "
            f"{us(r, 'dense_us')} | {us(r, 'sdense_us')} | {us(r, 'sparse_us')} | "
            f"{us(r, 'auto_us')} | "
            f"{r['dense_us'] / r['sparse_us']:.2f} | {r['dense_us'] / r['auto_us']:.2f} | "
            f"{r['auto_best']:.2f} | {_two(r.get('auto_best_paired'))} | {r['plan']} | "
            + " / ".join(
                f"{r[k]:.0f}" if k in r else ""
                for k in ("dense_faults", "sparse_faults", "auto_faults")
            )
            + " |"
        )
    if result.get("threads"):
        out += [
            "",
            "| threads, 4096x4096 | dtype | density | N | pairs | one thread / all threads |",
            "|---|---|---|---|---|---|",
        ]
        out += [
            f"| {r['threads']} threads | {r['dtype']} | {r['density']} | {r['batch']} | "
            f"{r['repeats']} | {r['speedup']:.2f} |"
            for r in result["threads"]
        ]
    if result.get("overhead"):
        out += [
            "",
            "| overhead, 4096x4096, N = 1 | dtype | density | pairs | forward / bare | plan |",
            "|---|---|---|---|---|---|",
        ]
        out += [
            f"| | {r['dtype']} | {r['density']} | {r['repeats']} | {r['ratio']:.2f} | {r['plan']} |"
            for r in result["overhead"]
        ]
    for run in result.get("kernels", []):
        label = " ".join(f"{k}={v}" for k, v in run["environment"].items())
        rows = run.get("forward", []) + run.get("training", [])
        out += [
            "",
            (
                f"Auto check under {label}: {len(rows)} points; where auto/best > "
                f"{AUTO_TARGET:.2f} in the table, the paired measurement:"
            ),
            "",
            "| model | dtype | density | N | sdense | sparse | auto | auto/best | paired | plan |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r["auto_best"] > AUTO_TARGET:
                out.append(
                    f"| {r['model']} | {r['dtype']} | {r['density']} | {r['batch']} | "
                    f"{us(r, 'sdense_us')} | {us(r, 'sparse_us')} | {us(r, 'auto_us')} | "
                    f"{r['auto_best']:.2f} | {r.get('auto_best_paired', float('nan')):.2f} | "
                    f"{r['plan']} |"
                )
    return "\n".join(out) + "\n"


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_before": os.getloadavg(),
        "openblas": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
    }
    try:
        info["blas"] = [
            {
                k: str(v)
                for k, v in d.items()
                if k
                in ("internal_api", "version", "num_threads", "threading_layer", "architecture")
            }
            for d in np.show_config(mode="dicts").get("Build Dependencies", {}).values()
            if isinstance(d, dict)
        ][:1]
    except Exception as exc:  # noqa: BLE001 - informational only
        info["blas"] = repr(exc)
    return info


# ------------------------------------------------------------------ main
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small grid, few repeats")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument(
        "--markdown", type=Path, default=None, help="write the tables here, as markdown"
    )
    ap.add_argument(
        "--from-json", type=Path, default=None, help="only render --markdown from this JSON"
    )
    ap.add_argument(
        "--budget", type=float, default=0.5, help="seconds of timing per point (default 0.5)"
    )
    ap.add_argument("--min-repeats", type=int, default=4)
    ap.add_argument(
        "--skip-kernels",
        action="store_true",
        help="skip the auto check under other BLAS kernels (child processes)",
    )
    ap.add_argument(
        "--targets-only",
        action="store_true",
        help="only the points the targets name (no other BLAS kernels): a ~3-minute check",
    )
    ap.add_argument(
        "--auto-only",
        action="store_true",
        help="(child mode) only forced dense, forced sparse and auto: the auto check",
    )
    args = ap.parse_args(argv)
    if args.from_json is not None:
        text = markdown(json.loads(args.from_json.read_text()))
        if args.markdown is not None:
            args.markdown.write_text(text)
        print(text)
        return {}
    started = time.perf_counter()
    info = machine_info()
    info["calibration"] = {dt: planning.calibrate(dt).to_dict() for dt in DTYPES}
    print(json.dumps(info))
    baselines = not args.auto_only
    train_sizes = MODELS["784-300-100-10"]
    models, densities, batches, train_d = MODELS, DENSITIES, BATCHES, TRAIN_DENSITIES
    budget, min_repeats, bw_bytes = args.budget, args.min_repeats, 1 << 28
    thr_d, thr_b, ovh_d = (0.1, 0.05, 0.02, 0.01), (32, 256, 2048), (0.1, 0.05, 0.02, 0.01)
    if args.quick:
        models = {"64-32-10": (64, 32, 10)}
        train_sizes = models["64-32-10"]
        densities, batches, train_d = (1.0, 0.05), (1, 32), (0.05,)
        budget, min_repeats, bw_bytes = 0.002, 1, 1 << 22
        thr_d, thr_b, ovh_d = (0.05,), (32,), (0.05,)
        CONFIG["settle"] = 0.0
    elif args.targets_only:  # the points the targets name, on this kernel only
        models = {"784-300-100-10": MODELS["784-300-100-10"]}
        densities, batches, train_d = (0.02,), (32, 256), (0.01,)
        args.skip_kernels = True
    result: dict[str, Any] = {"machine": info}
    bandwidth = None
    if baselines:
        bw = copy_bandwidth(bw_bytes)
        info["copy_bandwidth_one_thread"], info["copy_bandwidth_two_threads"] = bw["one"], bw["two"]
        bandwidth = max(bw.values())
        info["wake_round_trip"] = wake_round_trip(200 if args.quick else 2000)
        print(
            f"copy bandwidth (read + write): one thread {bw['one'] / 1e9:.1f} GB/s, two threads "
            f"{bw['two'] / 1e9:.1f} GB/s; thread wake round trip "
            f"{info['wake_round_trip'] * 1e6:.0f} us"
        )
    print(HEADER)
    result["forward"] = forward_table(
        models, densities, batches, DTYPES, budget, min_repeats, bandwidth, baselines
    )
    result["training"] = training_table(
        train_sizes, train_d, 32 if args.quick else TRAIN_BATCH, budget, min_repeats, baselines
    )
    if baselines:
        result["threads"] = threads_table(thr_d, thr_b, DTYPES, budget)
        result["overhead"] = overhead_table(ovh_d, DTYPES, budget)
        if not args.skip_kernels:
            result["kernels"] = kernel_runs(args)
    info["load_after"] = os.getloadavg()
    info["seconds"] = time.perf_counter() - started
    if baselines:
        result["targets"] = targets(result)
        print(
            f"\nload average before {info['load_before']}, after {info['load_after']}; "
            f"{info['seconds']:.0f} s\n"
        )
        for t in result["targets"]:
            print(f"[{t['verdict']:>4}] {t['target']}: {t['measured']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    if args.markdown is not None and baselines:
        args.markdown.write_text(markdown(result))
        print(f"wrote {args.markdown}")
    return result


if __name__ == "__main__":
    main()
