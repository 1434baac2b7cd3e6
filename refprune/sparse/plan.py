"""How a sparse model runs on this machine: chunks of the batch, dense or sparse, threads.

Nothing here changes what is computed, only how fast: every choice computes the
same function (dense and sparse products differ only in rounding, float64 to
~1e-16 relative), and the chunks and their summation orders depend on the
batch size and the layer widths alone, never on the machine or the threads.

**Chunks.** A batch of N > 1 samples runs in chunks of C samples
(``chunk_size``), a power of two: at most the largest with width * C * itemsize
<= CHUNK_BYTES for a training step, FORWARD_CHUNK_BYTES for a forward pass (the
widest layer input stays in a core's L2 cache while every stored weight reads
its row); within that, N / 4 rounded up (four chunks to
share between threads), unless a chunk would then hold less than CHUNK_WORK
multiply-adds of stored weights (a hand-off to a thread would cost more than
it saves); at least MIN_CHUNK. A batch of one chunk shares the rows of each
product between the threads instead.

**Dense or sparse.** ``execution="auto"`` runs each layer the way that is
faster *on the running machine*, found at first use (FFTW's "measure" planning,
Frigo and Johnson 2005): for a layer and a chunk size it times the layer's own
product both ways (interleaved, best of MEASURE_REPEATS after a warm-up call),
unless a contender's lower bound already loses: a product cannot run faster
than the best rate this process's BLAS (dense) or SciPy (sparse) reached in
``calibrate``, so a contender whose work divided by that rate (times
PEAK_MARGIN) exceeds the other's measured time is not run at all (a 1 %-dense
4096 x 4096 layer never builds its 128 MB dense copy). The timings are cached
per layer and chunk size; ``calibrate`` runs once per process and dtype (about
0.05 s) and can be pinned with ``set_calibration`` (``Calibration.to_dict`` /
``from_dict``). A plan can be read with ``SparseMLP.plan(N)`` and pinned by
passing it as ``execution``; "dense" or "sparse" disables the choice.

Because the choice is measured, two processes may choose differently where the
two contenders are within noise of each other, and then their outputs differ
in the last bits; ``execution="sparse"`` gives the same bits everywhere.

**Threads.** Work is handed to the process's worker threads (``pool``) only
where the single-thread time of the work exceeds what the hand-off costs
(``split_pays``: the measured round trip of ``calibrate``, times SPLIT_MARGIN).

**Whole plans.** The layer-by-layer choice and ``split_pays`` are models; the
sparse model then times complete passes (``fastest``): the plan, the plan on
one thread and, where no layer is pinned, all layers sparse and all dense, and
keeps the fastest (``SparseMLP._measured``, ``SparseSGD._measured``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._checks import real_number
from .pool import available_cores, pool_size, run_parallel

__all__ = [
    "Calibration",
    "calibrate",
    "chunk_size",
    "fastest",
    "rest",
    "set_calibration",
    "set_measure",
    "split_pays",
    "wait_for_idle_threads",
]

CHUNK_BYTES = 1 << 20  # 1 MiB: a chunk of the widest layer input stays in a core's L2
# A forward pass runs fastest with half that: rows of a^T of 512 bytes at 784 inputs (measured
# with SciPy's products on one thread; a training step's chunks carry three products and the
# sampled product's sums, and run faster at 1 MiB).
FORWARD_CHUNK_BYTES = 1 << 19
MIN_CHUNK = 16  # samples; smaller chunks lose per element in SciPy's products
MAX_CHUNK = 512
CHUNK_WORK = 1 << 19  # multiply-adds a chunk must hold to be worth a thread of its own
MEASURE_REPEATS = 3  # timed calls per contender (best of), after one warm-up call
PEAK_MARGIN = 3.0  # a lower bound is work / (PEAK_MARGIN * best rate seen)
SPLIT_MARGIN = 2.0  # threads are used where the saved time is twice the hand-off
# OpenBLAS's worker threads spin for a number of CPU cycles after a threaded product before they
# sleep (its OPENBLAS_THREAD_TIMEOUT setting): 0.10-0.12 s, measured on a 2.6 GHz machine. A wait
# for idle threads ends when they stop, and after BLAS_REST seconds at the latest.
BLAS_REST = 0.15  # the longest wait for idle threads before a round of whole-pass timings
# Seconds of each sleep that checks whether the other threads are idle. The CPU time of a
# process's other running threads advances by whole clock ticks (4 ms at Linux's HZ = 250, 10 ms
# at HZ = 100, 15.6 ms on Windows), so a probe spans more than one tick of the coarsest of these.
IDLE_PROBE = 0.02


def chunk_size(n: int, width: int, itemsize: int, work: int, cache_bytes: int = CHUNK_BYTES) -> int:
    """Samples per chunk of a batch of n > 1: the widest layer input has ``width`` values of
    ``itemsize`` bytes and a chunk of it at most ``cache_bytes``, and one sample costs ``work``
    multiply-adds of stored weights."""
    cache = max(MIN_CHUNK, _pow2_floor(cache_bytes // (width * itemsize)))
    quarter = _pow2_ceil(-(-n // 4))
    worth = _pow2_ceil(-(-CHUNK_WORK // max(work, 1)))
    return int(max(MIN_CHUNK, min(cache, max(quarter, worth), MAX_CHUNK)))


def _pow2_floor(x: int) -> int:
    return 1 << (max(x, 1).bit_length() - 1)


def _pow2_ceil(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


@dataclass(frozen=True)
class Calibration:
    """Best rates of this process's products and its thread hand-off (seconds, operations/s).

    dense_rate, dense_rate_1: multiply-adds per second of a NumPy dense product
    (BLAS, its own threads) in cache, at 256 samples and at 1; sparse_rate,
    sparse_rate_1: stored weights x samples per second of SciPy's CSR product
    on one thread, at 64 samples and at 1; handoff: seconds to hand two tasks to
    the pool and get them back (0.0 on one core).
    """

    dtype: str
    dense_rate: float
    dense_rate_1: float
    sparse_rate: float
    sparse_rate_1: float
    handoff: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(**d)


_CALIBRATIONS: dict[str, Calibration] = {}
_CALIBRATION_LOCK = threading.Lock()
_MEASURE = [True]


def set_measure(enabled: bool) -> None:
    """Measure the layers at first use (default), or choose by the calibrated rates alone.

    Without measurement each layer goes to the side whose work divided by the
    calibrated best rate is smaller: no timing at first use, the same choice in
    every process that shares the calibration (pin it with ``set_calibration``),
    but a rougher estimate (it knows nothing of caches or of a layer's shape).
    """
    _MEASURE[0] = bool(enabled)


def set_calibration(calibration: Calibration | None, dtype: Any = None) -> None:
    """Pin the calibration of ``calibration.dtype`` (no measurement at first use), or forget it
    (``None``: the next use measures again) for ``dtype``, or for every dtype if not given."""
    with _CALIBRATION_LOCK:
        if calibration is not None:
            if not isinstance(calibration, Calibration):
                raise TypeError(
                    f"calibration must be a Calibration or None, got {type(calibration).__name__}"
                )
            _CALIBRATIONS[calibration.dtype] = calibration
        elif dtype is None:
            _CALIBRATIONS.clear()
        else:
            _CALIBRATIONS.pop(np.dtype(dtype).name, None)


def best_time(fn: Callable[[], object], repeats: int = MEASURE_REPEATS) -> float:
    """Best wall time of ``repeats`` calls after one untimed call."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return float(best)


def wait_for_idle_threads(limit: float = BLAS_REST, probe: float = IDLE_PROBE) -> float:
    """Sleep until no other thread of this process is on a CPU, for at most ``limit`` seconds;
    returns the seconds waited.

    After a threaded BLAS product OpenBLAS's worker threads spin for a while and
    hold a core; a threaded contender timed then loses to its one-thread twin.
    Rather than always sleeping the longest such spin, this sleeps ``probe``
    seconds at a time until the process's CPU time (``time.process_time``, all
    its threads) grew by less than half the wall time of the last sleep: the
    calling thread sleeps, so what grows it is another thread at work.
    """
    limit = real_number(limit, "limit", low=0.0)
    probe = real_number(probe, "probe", low=0.0, low_open=True)
    start = time.perf_counter()
    while True:
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(probe)
        now = time.perf_counter()
        if time.process_time() - cpu < 0.5 * (now - wall) or now - start >= limit:
            return now - start


def rest(*, threaded: bool, after_blas: bool) -> tuple[bool, bool]:
    """Whether ``fastest`` waits for idle threads (``wait_for_idle_threads``) before its first
    round and before each later round.

    Only where a threaded contender is timed. Then always before the first round
    (the caller may have run a threaded BLAS product just before this first use),
    and before the later rounds too where a contender or a layer timing of this
    plan runs one (``after_blas``).
    """
    return threaded, threaded and after_blas


def fastest(
    fns: list[Callable[[], object]], lows: list[float], rest: tuple[bool, bool] = (False, False)
) -> int:
    """Index of the fastest of ``fns``, timed in MEASURE_REPEATS rounds (the first wins ties):
    FFTW's "measure" planning (Frigo and Johnson 2005) applied to whole passes.

    Each round times every contender once after a warm-up call (``best_time(fn, 1)``),
    in order, and keeps each one's best. In the first round a contender whose lower
    bound ``lows[i]`` is not below the best time so far is dropped unrun. ``rest``
    says whether the first round, and each later one, starts by waiting for the
    process's other threads to go idle (see ``rest``). Callers list the contenders
    that run BLAS products last, so that within a round none of them is timed just
    before a threaded one.
    """
    times = [np.inf] * len(fns)
    active: list[int] = []
    for r in range(MEASURE_REPEATS):
        if rest[0 if r == 0 else 1]:
            wait_for_idle_threads()
        for i in range(len(fns)) if r == 0 else active:
            if r == 0:
                if lows[i] >= min(times):
                    continue
                active.append(i)
            times[i] = min(times[i], best_time(fns[i], 1))
    return int(np.argmin(times))


def calibrate(dtype: Any = np.float64) -> Calibration:
    """The process's calibration for ``dtype``: measured once (about 0.05 s), then cached."""
    name = np.dtype(dtype).name
    cal = _CALIBRATIONS.get(name)
    if cal is None:
        with _CALIBRATION_LOCK:
            cal = _CALIBRATIONS.get(name)
            if cal is None:
                cal = _CALIBRATIONS[name] = _measure(np.dtype(dtype))
    return cal


def _measure(dtype: np.dtype) -> Calibration:
    rng = np.random.default_rng(0)
    n = 512
    Wd = rng.standard_normal((n, n)).astype(dtype)
    Ws = sp.random_array((n, n), density=0.1, format="csr", rng=rng, dtype=dtype)
    B = rng.standard_normal((n, 256)).astype(dtype)
    B64 = np.ascontiguousarray(B[:, :64])
    x = np.ascontiguousarray(B[:, 0])
    dense = best_time(lambda: Wd @ B, 5)
    dense_1 = best_time(lambda: Wd @ x, 20)
    sparse = best_time(lambda: Ws @ B64, 5)
    sparse_1 = best_time(lambda: Ws @ x, 20)
    handoff = 0.0
    if min(available_cores(), pool_size() + 1) > 1:
        run_parallel(lambda i: None, 2, 2)
        samples = []
        for _ in range(15):
            t0 = time.perf_counter()
            run_parallel(lambda i: None, 2, 2)
            samples.append(time.perf_counter() - t0)
            time.sleep(0.001)  # let the worker go idle, as between the products of a call
        handoff = float(np.median(samples))
    return Calibration(
        dtype=dtype.name,
        dense_rate=n * n * 256 / dense,
        dense_rate_1=n * n / dense_1,
        sparse_rate=Ws.nnz * 64 / sparse,
        sparse_rate_1=Ws.nnz / sparse_1,
        handoff=handoff,
    )


def split_pays(seconds: float, tasks: int, threads: int, cal: Calibration) -> int:
    """Threads for ``tasks`` equal tasks of ``seconds`` in all (1 where sharing does not pay)."""
    t = min(threads, tasks, pool_size() + 1)
    if t <= 1:
        return 1
    saved = seconds - seconds / t
    return t if saved > SPLIT_MARGIN * cal.handoff else 1


def dense_bound(out: int, width: int, n: int, cal: Calibration) -> float:
    """Seconds a dense product of an (out, width) matrix with n samples cannot beat."""
    rate = cal.dense_rate_1 if n == 1 else cal.dense_rate
    return out * width * n / (PEAK_MARGIN * rate)


def measuring() -> bool:
    """Whether layers are timed at first use (``set_measure``)."""
    return _MEASURE[0]


def sparse_estimate(nnz: int, n: int, cal: Calibration) -> float:
    """Seconds of a CSR product with nnz stored weights and n samples on one thread, at the
    calibrated best rate (used instead of a timing when measurement is off)."""
    return nnz * n / (cal.sparse_rate_1 if n == 1 else cal.sparse_rate)


def sparse_bound(nnz: int, n: int, cal: Calibration) -> float:
    """Seconds a CSR product with nnz stored weights and n samples cannot beat on one thread."""
    rate = cal.sparse_rate_1 if n == 1 else cal.sparse_rate
    return nnz * n / (PEAK_MARGIN * rate)


def faster(
    sparse: Callable[[], float], dense: Callable[[], float], sparse_low: float, dense_low: float
) -> tuple[str, float, float]:
    """("sparse" or "dense", sparse seconds, dense seconds) from measuring the contenders.

    The one with the lower bound is measured first; the other only if its
    bound is below that measurement (an unmeasured side reports its bound).
    With measurement off (``set_measure``), the bounds decide.
    """
    if not _MEASURE[0]:
        return ("sparse" if sparse_low <= dense_low else "dense"), sparse_low, dense_low
    if sparse_low <= dense_low:
        ts = sparse()
        td = dense() if dense_low < ts else dense_low
    else:
        td = dense()
        ts = sparse() if sparse_low < td else sparse_low
    return ("sparse" if ts <= td else "dense"), ts, td
