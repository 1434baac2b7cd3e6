"""Kernels of the sparse path: CSR storage, threaded products, the sampled product, the cost model.

Every product here works on feature-major activations: a batch of N vectors of
width k is a C-contiguous array of shape (k, N) (or shape (k,) when N = 1), so a
layer's pre-activation is z^T = W a^T, one CSR-times-dense product whose inner
loop runs along the batch.

Threads. SciPy releases the GIL inside its sparse products, so ``csr_matmul``
splits the rows of W into blocks of about equal non-zero count and multiplies
the blocks on a small thread pool (``run_tasks``: each thread takes the next
block not yet taken). A row split writes disjoint rows of the output and every
row is summed in the same order whatever the split, so every thread count gives
bit-identical results.

Cost model (``predicted_seconds``; derivation and crossover table in
docs/sparse_execution.md). For a layer of shape (out, in) with nnz stored
weights, at batch N:

    t_dense(N)  = D0 + max(D1(N) * out * in * N / c,           out * in * v / (BWd * cores))
    t_sparse(N) = S0 + max((S1(N) * nnz * N + T) / b,          nnz * (v + 4) / BWs) + T0 [b > 1]

(c = cores, 1 at N = 1; b = threads the sparse work is split over; v = bytes
per value; BWd = 23 GB/s per core, BWs = 10 GB/s: bandwidths of a dense and of
a CSR product streaming from memory, counted only for a matrix larger than the
cache; T = time of the transposes into or out of feature-major at this layer:
TR1 per element, more for rows wider than 8 KiB).
D1, S1 are per-core costs measured at N in {1, 32, 256, 2048} and interpolated
linearly in log N (clamped outside that range). The sampled product (weight
gradient) costs G1(N) per stored weight and sample.

Crossover table: the density (stored fraction) below which ``sparse_is_faster``
runs a layer sparse on 2 cores, for an inner layer (no transposes; a first or
last layer crosses over a little lower). ``crossover_density`` computes it, and
a test checks this copy:

    dtype    out x in     N=1    N=32   N=256  N=2048
    float64  4096 x 4096  0.145  0.198  0.171  0.141
    float64   300 x 784   0.152  0.099  0.154  0.139
    float64   100 x 300   0.070  0.092  0.084  0.126
    float64    10 x 100   0.000  0.000  0.054  0.066
    float32  4096 x 4096  0.125  0.144  0.146  0.154
    float32   300 x 784   0.070  0.072  0.115  0.150
    float32   100 x 300   0.000  0.060  0.071  0.123
    float32    10 x 100   0.000  0.000  0.015  0.069
"""

from __future__ import annotations

import itertools
import operator
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import scipy.sparse as sp

# ------------------------------------------------------------------ threads
_POOL: ThreadPoolExecutor | None = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()


def available_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity`` where it exists)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return max(1, os.cpu_count() or 1)


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared worker pool, grown to at least ``workers`` threads."""
    global _POOL, _POOL_WORKERS
    with _POOL_LOCK:
        if _POOL is None or _POOL_WORKERS < workers:
            if _POOL is not None:
                _POOL.shutdown(wait=True)
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="refprune-sparse")
            _POOL_WORKERS = workers
        return _POOL


BLOCKS_PER_THREAD = 4   # work is cut finer than the threads, so a late thread takes less of it


def run_tasks(tasks: Sequence, threads: int) -> list:
    """Results of zero-argument callables, in order, computed by the calling thread and
    ``threads - 1`` pool threads that each take the next task not yet taken.

    Dynamic: a pool thread that the OS schedules late (the other core busy) takes
    fewer tasks, and one that has not started when the calling thread runs out
    of tasks is cancelled; one that starts late and then shares its core can
    still delay the end by up to one task. Which thread runs a task does not
    change its result.
    """
    n = len(tasks)
    threads = max(1, min(threads, n))
    if threads == 1:
        return [t() for t in tasks]
    results: list = [None] * n
    counter = itertools.count()

    def drain() -> None:
        while (i := next(counter)) < n:     # itertools.count's next is atomic under the GIL
            results[i] = tasks[i]()

    futures = [_pool(threads - 1).submit(drain) for _ in range(threads - 1)]
    drain()
    for f in futures:
        if not f.cancel():
            f.result()
    return results


# ------------------------------------------------------------------ storage
def index_dtype(*sizes: int) -> type:
    """int32 when every index and count fits (SciPy's own choice), else int64."""
    return np.int32 if max(sizes, default=0) < np.iinfo(np.int32).max else np.int64


def csr_from_positions(shape: tuple[int, int], flat: np.ndarray, values: np.ndarray) -> sp.csr_array:
    """CSR array with ``values`` at the C-order flat positions ``flat`` (sorted ascending).

    C order of the flat positions is CSR order: rows ascending, columns ascending
    within a row. The arrays are used as given (no copy), so a caller that updates
    ``values`` in place updates the matrix.
    """
    n_rows, n_cols = shape
    itype = index_dtype(n_rows, n_cols, flat.size)
    rows = flat // n_cols
    indptr = np.zeros(n_rows + 1, dtype=itype)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    indices = (flat % n_cols).astype(itype)
    return _csr_view(values, indices, indptr, shape)


def _csr_view(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
              shape: tuple[int, int]) -> sp.csr_array:
    """A csr_array whose arrays are exactly these (views kept, never copied)."""
    A = sp.csr_array((data, indices, indptr), shape=shape, copy=False)
    # the constructor may copy a view of a larger array (its "prune" step); undo that
    A.data, A.indices, A.indptr = data, indices, indptr
    return A


def row_blocks(A: sp.csr_array, parts: int) -> list[sp.csr_array]:
    """Split A's rows into at most ``parts`` contiguous blocks of about equal non-zero count.

    The blocks are views: they share ``A.data`` and ``A.indices``, so an in-place
    update of A's values is seen by every block.
    """
    n_rows, n_cols = A.shape
    parts = max(1, min(parts, n_rows))
    if parts == 1:
        return [A]
    targets = np.linspace(0, A.indptr[-1], parts + 1)[1:-1]
    cuts = [0, *np.searchsorted(A.indptr, targets, side="left").tolist(), n_rows]
    cuts = sorted(set(cuts))
    blocks = []
    for r0, r1 in zip(cuts[:-1], cuts[1:]):
        s0, s1 = int(A.indptr[r0]), int(A.indptr[r1])
        blocks.append(_csr_view(A.data[s0:s1], A.indices[s0:s1],
                                A.indptr[r0:r1 + 1] - A.indptr[r0], (r1 - r0, n_cols)))
    return blocks


def csr_matmul(blocks: Sequence[sp.csr_array], B: np.ndarray, threads: int = 1) -> np.ndarray:
    """sum_j W[i, j] B[j, ...] for the row blocks of W on ``threads`` threads, rows concatenated.

    ``B`` is C-contiguous, shape (in,) or (in, N). Each row is summed over its
    stored entries in column order (SciPy's ``csr_matvec(s)``), so the result does
    not depend on the blocks or the threads.
    """
    parts = run_tasks([lambda blk=blk: operator.matmul(blk, B) for blk in blocks], threads)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


WIDE_ROW_BYTES = 8192   # rows wider than this are transposed in blocks of 8 (see feature_major)


def feature_major(rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """C-contiguous (width, n) copy of a (n, width) block of samples: its transpose.

    NumPy's transposing copy writes one output row per input element; for rows
    wider than WIDE_ROW_BYTES that scatters writes over a cache line each (2-3 ns
    per element measured at width 4096), so such blocks are copied 8 samples at
    a time, filling whole cache lines (0.6 ns). Narrow rows copy in one go
    (0.4-0.5 ns at width 784).
    """
    n, width = rows.shape
    out = np.empty((width, n), dtype=rows.dtype) if out is None else out
    if width * rows.itemsize <= WIDE_ROW_BYTES:
        np.copyto(out, rows.T)
    else:
        for s in range(0, n, 8):
            np.copyto(out[:, s:s + 8], rows[s:s + 8].T)
    return out


def transpose(X: np.ndarray, threads: int = 1, min_size: int = 1 << 16) -> np.ndarray:
    """C-contiguous copy of X.T (``feature_major``), its column blocks written by ``threads`` threads.

    The copies release the GIL, so large ones split over the threads.
    """
    parts = 1 if X.size < min_size or threads <= 1 else max(1, min(BLOCKS_PER_THREAD * threads, X.shape[0] // 8))
    out = np.empty((X.shape[1], X.shape[0]), dtype=X.dtype)
    edges = np.linspace(0, X.shape[0], parts + 1).astype(int)
    run_tasks([lambda a=a, b=b: feature_major(X[a:b], out[:, a:b]) for a, b in zip(edges[:-1], edges[1:])],
              threads)
    return out


# ------------------------------------------------------------------ sampled product
SAMPLED_CHUNK_BYTES = 1 << 20   # the two gathered row sets of a chunk stay in 1 MiB of L2


def sampled_product(dZT: np.ndarray, AT: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                    out: np.ndarray, threads: int = 1) -> np.ndarray:
    """out[k] = sum_n dZT[rows[k], n] * AT[cols[k], n]: the entries of dZT @ AT.T at (rows, cols).

    The sampled dense-dense product (SDDMM): the weight gradient dL/dW = dZ^T A
    evaluated only at the stored positions. Work and memory grow with the number
    of positions, not with out * in. Computed in chunks of positions (gathered rows
    stay in cache), the chunks split over ``threads`` threads; each entry is one
    ``einsum`` dot product, so the result does not depend on the chunking.
    """
    k, n = rows.size, dZT.shape[1]
    step = max(64, SAMPLED_CHUNK_BYTES // (16 * max(n, 1)))

    def span(s: int) -> None:
        e = min(s + step, k)
        np.einsum("kn,kn->k", dZT[rows[s:e]], AT[cols[s:e]], out=out[s:e])

    run_tasks([lambda s=s: span(s) for s in range(0, k, step)], threads)
    return out


# ------------------------------------------------------------------ cost model
#: Batch sizes at which the per-element costs below were measured.
COST_BATCHES = (1, 32, 256, 2048)

# Per-core constants, measured by ``python benchmarks/bench_sparse.py --calibrate`` (CPU time
# of one thread, BLAS limited to one thread) on a 2-core AMD EPYC (2 MiB L2 per core, 32 MiB
# L3), NumPy 2.4 with OpenBLAS 0.3.31, SciPy 1.17; docs/sparse_execution.md has the run.
#: Seconds per (stored weight x sample), SciPy csr_matvec(s) on cache-sized chunks.
S1 = {"float64": (6.7e-10, 2.4e-10, 2.4e-10, 2.7e-10),
      "float32": (6.7e-10, 1.5e-10, 1.3e-10, 1.3e-10)}
#: Seconds per (weight x sample), dense product (OpenBLAS), matrix in cache.
D1 = {"float64": (1.1e-10, 4.8e-11, 4.1e-11, 3.8e-11),
      "float32": (5.5e-11, 2.2e-11, 1.9e-11, 2.0e-11)}
#: Seconds per (stored weight x sample) of ``sampled_product``.
G1 = {"float64": (3.6e-9, 1.3e-9, 8.4e-10, 9.7e-10),
      "float32": (3.2e-9, 1.0e-9, 4.6e-10, 4.6e-10)}
TR1 = (5.0e-10, 8.0e-10)  # seconds per element of a transposing copy (batch into or out of
                          # feature-major): rows up to 8 KiB, wider rows (``feature_major``)
S0 = 3.4e-6    # fixed cost of one SciPy product call (dispatch, output allocation)
D0 = 1.5e-6    # fixed cost of one NumPy dense product call
T0 = 1.2e-4    # handing work to the pool and collecting it: 21 us on a quiet machine, 80-110 us
               # at load 2 (the other core busy); 120 us splits only work that pays either way
CACHE_BYTES = 16 << 20        # a matrix larger than this (half the shared L3) streams from memory
DENSE_BANDWIDTH = 23e9        # bytes/s per core of a dense GEMV streaming its matrix (46 on 2 cores)
SPARSE_BANDWIDTH = 10e9       # bytes/s of a CSR product streaming values and indices, 1 or 2 threads
INDEX_BYTES = 4               # int32 column indices


def _per_element(table: dict, dtype: np.dtype, batch: int) -> float:
    """Interpolate a per-element cost linearly in log(batch) between the measured batches."""
    costs = table[np.dtype(dtype).name]
    x = np.log(np.clip(batch, COST_BATCHES[0], COST_BATCHES[-1]))
    return float(np.interp(x, np.log(COST_BATCHES), costs))


def transpose_seconds(width: int, batch: int, dtype: np.dtype) -> float:
    """Predicted time of moving a batch of ``width``-wide rows into or out of feature-major."""
    if batch == 1:
        return 0.0
    return width * batch * TR1[width * np.dtype(dtype).itemsize > 8192]


def predicted_seconds(kind: str, shape: tuple[int, int], nnz: int, batch: int, dtype: np.dtype,
                      threads: int = 1, transposed: float = 0.0) -> float:
    """Predicted time of one layer product, ``kind`` in {"dense", "sparse", "sampled"}.

    overhead + max(per-core cost * work / threads, bytes / MEMORY_BANDWIDTH), the
    memory term only for a matrix larger than CACHE_BYTES (a roofline: a product
    over a matrix that does not stay in cache cannot beat reading it once). The
    dense product runs on ``threads`` cores (BLAS; one for a GEMV); a sparse one split over
    ``threads`` > 1 pays T0 once, plus ``transposed`` seconds of transposes (the
    batch entering or leaving feature-major at this layer, ``transpose_seconds``).
    """
    n_out, n_in = shape
    itemsize = np.dtype(dtype).itemsize
    if kind == "dense":   # BLAS threads a matrix product and a GEMV that streams from memory
        cores = threads if batch > 1 else 1
        base, compute = D0, _per_element(D1, dtype, batch) * n_out * n_in * batch / cores
        nbytes, bandwidth = n_out * n_in * itemsize, DENSE_BANDWIDTH * threads
    else:
        table = S1 if kind == "sparse" else G1
        base = S0 + T0 * (threads > 1)
        compute = (_per_element(table, dtype, batch) * nnz * batch + transposed) / threads
        nbytes, bandwidth = nnz * (itemsize + INDEX_BYTES), SPARSE_BANDWIDTH
    memory = nbytes / bandwidth if nbytes > CACHE_BYTES else 0.0
    return base + max(compute, memory)


def sparse_blocks(nnz: int, batch: int, dtype: np.dtype, threads: int, transposed: float = 0.0) -> int:
    """Threads to split a sparse product over: ``threads`` when that lowers its predicted time, else 1."""
    if threads <= 1:
        return 1
    single = predicted_seconds("sparse", (1, 1), nnz, batch, dtype, 1, transposed)
    split = predicted_seconds("sparse", (1, 1), nnz, batch, dtype, threads, transposed)
    return threads if split < single else 1


def sparse_is_faster(shape: tuple[int, int], nnz: int, batch: int, dtype: np.dtype,
                     threads: int, transposed: float = 0.0) -> bool:
    """The automatic rule: run this layer sparse when its predicted time is lower than dense.

    Both sides get ``threads`` cores: BLAS uses them for the dense product, the
    sparse product is split over them when that pays (``sparse_blocks``).
    """
    blocks = sparse_blocks(nnz, batch, dtype, threads, transposed)
    return (predicted_seconds("sparse", shape, nnz, batch, dtype, blocks, transposed)
            < predicted_seconds("dense", shape, nnz, batch, dtype, threads))


def crossover_density(shape: tuple[int, int], batch: int, dtype: np.dtype, threads: int = 2) -> float:
    """Largest stored fraction at which ``sparse_is_faster`` still runs the layer sparse (0.0: never).

    t_sparse grows with nnz and t_dense does not, so this is a bisection on nnz.
    The values for the benchmark's layers are the crossover table of the module
    docstring and docs/sparse_execution.md.
    """
    size = shape[0] * shape[1]
    lo, hi = 0, size                      # invariant: sparse at lo (or lo == 0), dense above hi
    if not sparse_is_faster(shape, 0, batch, dtype, threads):
        return 0.0
    if sparse_is_faster(shape, size, batch, dtype, threads):
        return 1.0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if sparse_is_faster(shape, mid, batch, dtype, threads) else (lo, mid)
    return lo / size
