"""Kernels of the sparse path: CSR storage, threaded products, the sampled product, the cost model.

Every product here works on feature-major activations: a batch of N vectors of
width k is a C-contiguous array of shape (k, N) (or shape (k,) when N = 1), so a
layer's pre-activation is z^T = W a^T, one CSR-times-dense product whose inner
loop runs along the batch.

Products. The CSR products run in the compiled kernels of ``refprune/_kernels.c``
(module ``_refprune_kernels``, built at install time): the same loops as SciPy's
``csr_matvec(s)``, in the same order and rounding, hence the same bits, with
several samples of a row computed side by side in SIMD registers (2-3x SciPy's
speed per core at batch >= 32). Where the package was installed without a C
compiler, ``KERNELS`` is "scipy" and SciPy's own products run instead, giving
the same bits more slowly. The sampled product has its own summation order in
each (``sampled_product``).

Threads. ``csr_matmul`` and ``sampled_product`` split the rows of W into blocks
of about equal non-zero count (``row_blocks``); the compiled kernels share the
blocks between the calling thread and worker threads of their own, which spin
for 0.1 ms after a product before they sleep, so consecutive products hand
work over in about a microsecond (each participant claims the next block
with one atomic operation). Without them, SciPy's products of the blocks run on
a small Python thread pool (``run_tasks``: each thread takes the next block not
yet taken; SciPy releases the GIL). A row split writes disjoint rows of the
output and every row is summed in the same order whatever the split, so every
thread count gives bit-identical results.

Cost model (``predicted_seconds``; derivation and crossover table in
docs/sparse_execution.md). For a layer of shape (out, in) with nnz stored
weights, at batch N:

    t_dense(N)  = D0 + max(D1(N) * out * in * N / c,           out * in * v / BWd(cores))
    t_sparse(N) = S0 + max((S1(N) * nnz * N + T) / b,          nnz * (v + 4) / BWs(b)) + split [b > 1]

split = T0 + (in + out) * N * v / EXCHANGE_BANDWIDTH for a row split (the
kernels' threads; activations cross between the cores' caches), T0_CHUNKS for
Python threads taking chunks of the batch (``sparse_blocks``).

(c = 1 + 0.7 (cores - 1): OpenBLAS's second core adds 0.7 of the first; 1 at
N = 1; b = threads the sparse work is split over; v = bytes per value;
BWd = 23 or 34 GB/s on 1 or 2 cores, BWs = 12 or 30 GB/s on 1 or 2 threads:
bandwidths of a dense and of a CSR product streaming from memory,
counted only for a matrix larger than the cache; T = time of the transposes
into or out of feature-major at this layer: TR1 per element, more for rows
wider than 8 KiB). D1, S1 are per-core costs measured at N in
{1, 32, 256, 2048} and interpolated linearly in log N (clamped outside that
range); S1 and G1 (the sampled product, per stored weight and sample) have one
table for the compiled kernels and one for SciPy's products.

Crossover table: the density (stored fraction) below which ``sparse_is_faster``
runs a layer sparse on 2 cores with the compiled kernels, for an inner layer
(no transposes; a first or last layer crosses over a little lower).
``crossover_density`` computes it, and a test checks this copy:

    dtype    out x in     N=1    N=32   N=256  N=2048
    float64  4096 x 4096  0.583  0.512  0.438  0.344
    float64    300 x 784  0.208  0.436  0.429  0.343
    float64    100 x 300  0.095  0.239  0.363  0.336
    float64     10 x 100  0.000  0.000  0.151  0.164
    float32  4096 x 4096  0.434  0.368  0.399  0.444
    float32    300 x 784  0.102  0.249  0.380  0.441
    float32    100 x 300  0.000  0.157  0.251  0.424
    float32     10 x 100  0.000  0.000  0.067  0.204
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import scipy.sparse as sp

try:
    import _refprune_kernels as _native
except ImportError:  # pragma: no cover - installed without a C compiler
    _native = None

#: Which CSR products run: "compiled" (refprune/_kernels.c) or "scipy" (its fallback).
KERNELS = "compiled" if _native is not None else "scipy"


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


class RowBlocks(list):
    """Row blocks of a CSR matrix (a list of CSR views), with the matrix and the cut rows.

    ``matrix`` is the whole matrix and ``cuts`` (int64) the block boundaries:
    block b holds rows cuts[b] <= i < cuts[b + 1]. The compiled kernels take the
    matrix and the cuts; SciPy's products take the views.
    """

    matrix: sp.csr_array
    cuts: np.ndarray


def row_blocks(A: sp.csr_array, parts: int) -> RowBlocks:
    """Split A's rows into at most ``parts`` contiguous blocks of about equal non-zero count.

    The blocks are views: they share ``A.data`` and ``A.indices``, so an in-place
    update of A's values is seen by every block.
    """
    n_rows, n_cols = A.shape
    parts = max(1, min(parts, n_rows))
    cuts = [0, n_rows]
    if parts > 1:
        targets = np.linspace(0, A.indptr[-1], parts + 1)[1:-1]
        cuts = sorted({0, *np.searchsorted(A.indptr, targets, side="left").tolist(), n_rows})
    blocks = RowBlocks([A] if len(cuts) == 2 else
                       [_csr_view(A.data[A.indptr[r0]:A.indptr[r1]], A.indices[A.indptr[r0]:A.indptr[r1]],
                                  A.indptr[r0:r1 + 1] - A.indptr[r0], (r1 - r0, n_cols))
                        for r0, r1 in zip(cuts[:-1], cuts[1:])])
    blocks.matrix, blocks.cuts = A, np.array(cuts, dtype=np.int64)
    return blocks


def _compiled(A: sp.csr_array, B: np.ndarray) -> bool:
    """Whether the compiled kernels take this product (int32 indices, one dtype, C order)."""
    return (_native is not None and A.indices.dtype == np.int32 and A.indptr.dtype == np.int32
            and A.data.dtype == B.dtype and B.flags.c_contiguous)


def csr_product(A: sp.csr_array, B: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = A @ B for a CSR A and a C-contiguous B of shape (in,) or (in, N), in ``out``.

    Row i of out is sum over A's stored entries of row i, in column order, of
    A[i, j] * B[j], starting from 0.0: the compiled kernel where it applies,
    else SciPy, with the same bits.
    """
    if _compiled(A, B):
        _native.csr_matmul(A.indptr, A.indices, A.data, B, out)
    else:
        out[...] = A @ B
    return out


def csr_matmul(blocks: Sequence[sp.csr_array], B: np.ndarray, threads: int = 1) -> np.ndarray:
    """sum_j W[i, j] B[j, ...] for the row blocks of W on ``threads`` threads, rows concatenated.

    ``B`` is C-contiguous, shape (in,) or (in, N). Each row is summed over its
    stored entries in column order (``csr_product``), so the result does not
    depend on the blocks or the threads. With the compiled kernels the blocks
    (``RowBlocks``) are shared by the calling thread and the kernels' own
    worker threads; else SciPy's products of the blocks run on ``run_tasks``.
    """
    A = getattr(blocks, "matrix", blocks[0])
    dtype = B.dtype if A.data.dtype == B.dtype else np.result_type(A.data.dtype, B.dtype)
    out = np.empty((A.shape[0],) + B.shape[1:], dtype=dtype)
    if len(blocks) == 1:
        return csr_product(A, B, out)
    if _compiled(A, B):
        _native.csr_matmul(A.indptr, A.indices, A.data, B, out, blocks.cuts, threads)
        return out
    edges = blocks.cuts.tolist()
    run_tasks([lambda blk=blk, a=a, b=b: csr_product(blk, B, out[a:b])
               for blk, a, b in zip(blocks, edges[:-1], edges[1:])], threads)
    return out


WIDE_ROW_BYTES = 8192   # NumPy fallback: rows wider than this are transposed 8 samples at a time


def feature_major(rows: np.ndarray, out: np.ndarray | None = None, threads: int = 1) -> np.ndarray:
    """(width, n) copy of a (n, width) block of samples, its transpose, in ``out`` (any row stride).

    The compiled ``transpose`` copies tiles of 8 x 8 float64 (16 x 16 float32)
    values, so that reads and writes both move whole cache lines: 0.3-0.4 ns
    per element in cache, about 1 ns for arrays larger than L2 (measured on
    this project's benchmark shapes, one thread), on ``threads`` threads.
    NumPy's transposing copy, used without the kernels, took 0.3 to 6 ns per
    element on the same shapes (it reads or writes one cache line per element
    on some of them); it is copied 8 samples at a time for rows wider than
    WIDE_ROW_BYTES (2-3 ns per element at width 4096 in one go, 0.6 ns so).
    """
    n, width = rows.shape
    out = np.empty((width, n), dtype=rows.dtype) if out is None else out
    if (_native is not None and rows.dtype == out.dtype and rows.dtype.name in ("float64", "float32")
            and rows.strides[1] == rows.itemsize and out.strides[1] == out.itemsize):
        _native.transpose(rows, out, threads)
    elif width * rows.itemsize <= WIDE_ROW_BYTES:
        np.copyto(out, rows.T)
    else:
        for s in range(0, n, 8):
            np.copyto(out[:, s:s + 8], rows[s:s + 8].T)
    return out


def transpose(X: np.ndarray, threads: int = 1, min_size: int = 1 << 16) -> np.ndarray:
    """C-contiguous copy of X.T (``feature_major``), on ``threads`` threads when X is large."""
    threads = 1 if X.size < min_size else threads
    if _native is not None:
        return feature_major(X, threads=threads)
    parts = 1 if threads <= 1 else max(1, min(BLOCKS_PER_THREAD * threads, X.shape[0] // 8))
    out = np.empty((X.shape[1], X.shape[0]), dtype=X.dtype)
    edges = np.linspace(0, X.shape[0], parts + 1).astype(int)
    run_tasks([lambda a=a, b=b: feature_major(X[a:b], out[:, a:b]) for a, b in zip(edges[:-1], edges[1:])],
              threads)
    return out


# ------------------------------------------------------------------ sampled product
SAMPLED_CHUNK_BYTES = 1 << 20   # the two gathered row sets of a chunk stay in 1 MiB of L2


def sampled_product(dZT: np.ndarray, AT: np.ndarray, blocks: Sequence[sp.csr_array],
                    out: np.ndarray, threads: int = 1) -> np.ndarray:
    """out[k] = sum_n dZT[r_k, n] * AT[c_k, n]: the entries of dZT @ AT.T at the stored positions.

    The sampled dense-dense product (SDDMM): the weight gradient dL/dW = dZ^T A
    evaluated only at the stored positions (r_k, c_k) of a CSR pattern, given as
    its row blocks (``row_blocks``; k runs over the stored entries in CSR order).
    Work and memory grow with the number of positions, not with out * in. The
    blocks run on ``threads`` threads. dZT (out, N) and AT (in, N) are
    C-contiguous, one dtype.

    Summation order over n: the compiled kernel keeps 4 x L interleaved partial
    sums (L = 8 float64 or 16 float32 lanes) combined in a fixed tree
    (refprune/_kernels.c), the same bits on every instruction set; without it,
    NumPy's ``einsum`` in chunks of positions (gathered rows stay in cache). The
    two differ in the last bits, never within one installation.
    """
    A = getattr(blocks, "matrix", blocks[0])
    if _compiled(A, dZT) and AT.dtype == dZT.dtype and AT.flags.c_contiguous:
        cuts = getattr(blocks, "cuts", None)
        _native.sampled_product(A.indptr, A.indices, dZT, AT, out, cuts, threads if len(blocks) > 1 else 1)
        return out
    n = dZT.shape[1]
    edges = np.cumsum([0] + [blk.shape[0] for blk in blocks]).tolist()
    starts = np.cumsum([0] + [blk.nnz for blk in blocks]).tolist()
    step = max(64, SAMPLED_CHUNK_BYTES // (16 * max(n, 1)))

    def block(b: int) -> None:
        blk, r0, s0 = blocks[b], edges[b], starts[b]
        A, dst = dZT[r0:edges[b + 1]], out[s0:starts[b + 1]]
        rows = np.repeat(np.arange(blk.shape[0]), np.diff(blk.indptr))
        for s in range(0, blk.nnz, step):
            e = min(s + step, blk.nnz)
            np.einsum("kn,kn->k", A[rows[s:e]], AT[blk.indices[s:e]], out=dst[s:e])

    run_tasks([lambda b=b: block(b) for b in range(len(blocks))], threads)
    return out


# ------------------------------------------------------------------ cost model
#: Batch sizes at which the per-element costs below were measured.
COST_BATCHES = (1, 32, 256, 2048)

# Per-core constants, measured by ``python benchmarks/bench_sparse.py --calibrate`` (CPU time
# of one thread, BLAS limited to one thread) on a 2-core AMD EPYC (2 MiB L2 per core, 32 MiB
# L3), NumPy 2.4 with OpenBLAS 0.3.31, SciPy 1.17; docs/sparse_execution.md has the run.
#: Seconds per (stored weight x sample) of ``csr_product`` on cache-sized chunks: the compiled
#: kernel, and SciPy's csr_matvec(s) (used without it).
S1_COMPILED = {"float64": (4.9e-10, 1.1e-10, 1.1e-10, 1.3e-10),
               "float32": (4.6e-10, 7.0e-11, 5.6e-11, 5.3e-11)}
S1_SCIPY = {"float64": (6.7e-10, 2.4e-10, 2.4e-10, 2.7e-10),
            "float32": (6.7e-10, 1.5e-10, 1.3e-10, 1.3e-10)}
#: Seconds per (weight x sample), dense product (OpenBLAS), matrix in cache.
D1 = {"float64": (1.1e-10, 4.8e-11, 4.1e-11, 3.8e-11),
      "float32": (5.5e-11, 2.2e-11, 1.9e-11, 2.0e-11)}
#: Seconds per (stored weight x sample) of ``sampled_product``: compiled, and NumPy's einsum.
G1_COMPILED = {"float64": (2.0e-9, 2.0e-10, 1.4e-10, 1.9e-10),
               "float32": (1.8e-9, 3.0e-10, 1.0e-10, 6.1e-11)}
G1_SCIPY = {"float64": (3.6e-9, 1.3e-9, 8.4e-10, 9.7e-10),
            "float32": (3.2e-9, 1.0e-9, 4.6e-10, 4.6e-10)}
S1, G1 = (S1_COMPILED, G1_COMPILED) if KERNELS == "compiled" else (S1_SCIPY, G1_SCIPY)
TR1 = (5.0e-10, 8.0e-10)  # seconds per element of a transposing copy (batch into or out of
                          # feature-major): rows up to 8 KiB, wider rows (``feature_major``)
S0 = 3.4e-6    # fixed cost of one sparse product call (dispatch, output allocation)
D0 = 1.5e-6    # fixed cost of one NumPy dense product call
T0 = 3.0e-5    # sharing a product with the worker threads: ~1 us while they spin (calls less than
               # 0.1 ms apart), 10-65 us to wake them after an idle gap; 30 us splits what pays either way
T0_CHUNKS = 2.0e-4            # Python threads taking chunks through a run of layers: waking the pool
                              # thread (50-100 us here) and sharing the GIL; 784-300-100-10 at 2 %,
                              # batch 256 ran 370 us on one thread and 430-500 us on two
EXCHANGE_BANDWIDTH = 15e9     # bytes/s of activations moving between the cores' caches in a row split
CACHE_BYTES = 16 << 20        # a matrix larger than this (half the shared L3) streams from memory
DENSE_BANDWIDTH = (23e9, 34e9)    # bytes/s of a dense GEMV streaming its matrix, on 1 and 2 cores
SPARSE_BANDWIDTH = (12e9, 30e9)   # bytes/s of a CSR product streaming values and indices, 1 and 2 threads
DENSE_EXTRA_CORE = 0.7        # OpenBLAS's second core adds 0.7 of the first (4096x4096 at batch 32:
                              # 25.8 ms predicted on one core, 19.0 ms measured on two)
INDEX_BYTES = 4               # int32 column indices


def _bandwidth(table: tuple[float, ...], threads: int) -> float:
    return table[min(max(threads, 1), len(table)) - 1]


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
        cores = 1 + (threads - 1) * DENSE_EXTRA_CORE if batch > 1 else 1
        base, compute = D0, _per_element(D1, dtype, batch) * n_out * n_in * batch / cores
        nbytes, bandwidth = n_out * n_in * itemsize, _bandwidth(DENSE_BANDWIDTH, threads)
    else:
        table = S1 if kind == "sparse" else G1
        base = S0 + T0 * (threads > 1)
        compute = (_per_element(table, dtype, batch) * nnz * batch + transposed) / threads
        nbytes, bandwidth = nnz * (itemsize + INDEX_BYTES), _bandwidth(SPARSE_BANDWIDTH, threads)
    memory = nbytes / bandwidth if nbytes > CACHE_BYTES else 0.0
    return base + max(compute, memory)


def sparse_blocks(nnz: int, batch: int, dtype: np.dtype, threads: int, transposed: float = 0.0,
                  handoff: float = T0, exchanged: int = 0) -> int:
    """Threads to split a sparse product over: ``threads`` when that lowers its predicted time, else 1.

    A split pays ``handoff`` (T0 for the kernels' threads, T0_CHUNKS for Python
    threads taking chunks) and moves ``exchanged`` bytes of activations between
    the cores' caches (a row split: every thread reads the whole input and the
    next layer reads every thread's rows) at EXCHANGE_BANDWIDTH.
    """
    if threads <= 1:
        return 1
    single = predicted_seconds("sparse", (1, 1), nnz, batch, dtype, 1, transposed)
    split = (predicted_seconds("sparse", (1, 1), nnz, batch, dtype, threads, transposed) - T0 + handoff
             + exchanged / EXCHANGE_BANDWIDTH)
    return threads if split < single else 1


def sparse_is_faster(shape: tuple[int, int], nnz: int, batch: int, dtype: np.dtype,
                     threads: int, transposed: float = 0.0, handoff: float = T0, exchanged: int = 0) -> bool:
    """The automatic rule: run this layer sparse when its predicted time is lower than dense.

    Both sides get ``threads`` cores: BLAS uses them for the dense product, the
    sparse product is split over them when that pays (``sparse_blocks``).
    """
    blocks = sparse_blocks(nnz, batch, dtype, threads, transposed, handoff, exchanged)
    split = (handoff - T0 + exchanged / EXCHANGE_BANDWIDTH) if blocks > 1 else 0.0
    return (predicted_seconds("sparse", shape, nnz, batch, dtype, blocks, transposed) + split
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
