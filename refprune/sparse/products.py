"""The products of the sparse path: CSR times dense (SciPy), the sampled product, transposes.

Activations are feature-major: a batch of N vectors of width k is an array of
shape (k, N) (or (k,) for N = 1), so a layer is one product z^T = W a^T of a
CSR matrix with a dense block, SciPy's ``csr_matvec``/``csr_matvecs``: for
each row i, z^T[i, :] = sum over the stored w_ij, in column order, of
w_ij * a^T[j, :], starting from 0.0. Every output entry is summed in that
order however the rows or the batch are split, so any split gives the same bits.

The weight gradient of a sparse layer needs dZ^T A only at the stored
positions (r_k, c_k): the sampled dense-dense product (SDDMM),

    g_k = sum_n dZ^T[r_k, n] * A^T[c_k, n],

computed here in NumPy with one summation order, **pairwise over n**
(``pairwise_sum``): the products of samples 0 and 1, 2 and 3, ... are added,
then those sums in pairs, and so on; an odd last term moves up a level
unchanged. The order is written out in plain loops in ``pairwise_sum`` and
``sampled_product_reference`` (the definitions); ``sampled_product`` computes
the same bits vectorised over positions (a test checks the bits). Every
operation in it is an IEEE multiplication or addition of two numbers, so the
bits are the same on every machine, NumPy build and thread count.

Public functions check their arguments (``csr_matmul``, ``sampled_product``,
``feature_major``): shapes, including B's rows against A's columns, dtypes, the
CSR structure (indices inside the matrix; SciPy itself trusts them), and
outputs that overlap an input. The private ``_`` versions trust their callers
(the sparse model, which built its matrices itself).
"""

from __future__ import annotations

import threading
from itertools import pairwise
from typing import Any

import numpy as np
import scipy.sparse as sp

from .pool import run_parallel

__all__ = [
    "csr_matmul",
    "feature_major",
    "pairwise_sum",
    "row_blocks",
    "sampled_product",
    "sampled_product_reference",
]

FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


# ------------------------------------------------------------------ checks
def check_csr(A: Any, name: str) -> sp.csr_array | sp.csr_matrix:
    """A SciPy CSR matrix with float64 or float32 values and a valid structure, else raise.

    Valid: ``indptr`` has rows + 1 entries, starts at 0, never decreases and
    ends at ``len(indices)``; every column index lies in [0, columns). SciPy
    checks this when a matrix is built but not when its arrays are changed
    afterwards, and its products read memory at whatever the indices say.
    """
    if not sp.issparse(A) or A.format != "csr":
        raise TypeError(
            f"{name} must be a scipy.sparse CSR array or matrix, got {type(A).__name__}"
        )
    if A.data.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must hold float64 or float32 values, got {A.data.dtype}")
    n_rows, n_cols = A.shape
    indptr, indices = A.indptr, A.indices
    if (
        indptr.ndim != 1
        or indptr.shape[0] != n_rows + 1
        or indices.ndim != 1
        or A.data.shape != indices.shape
    ):
        raise ValueError(
            f"{name} has an invalid CSR structure: indptr needs {n_rows + 1} entries "
            f"(got {indptr.shape}), indices and data one per stored entry "
            f"(got {indices.shape} and {A.data.shape})"
        )
    if indptr[0] != 0 or indptr[-1] != indices.shape[0] or np.any(np.diff(indptr) < 0):
        raise ValueError(
            f"{name} has an invalid CSR structure: indptr must rise from 0 to "
            f"{indices.shape[0]} (the stored entries)"
        )
    if indices.size and (indices.min() < 0 or indices.max() >= n_cols):
        raise ValueError(
            f"{name} has column indices outside [0, {n_cols}): [{indices.min()}, {indices.max()}]"
        )
    return A


def _check_dense(B: Any, name: str, dtype: np.dtype, ndims: tuple[int, ...]) -> np.ndarray:
    if not isinstance(B, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(B).__name__}")
    if B.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (the sparse operand's), got {B.dtype}")
    if B.ndim not in ndims:
        raise ValueError(
            f"{name} must be {' or '.join(map(str, ndims))}-dimensional, got shape {B.shape}"
        )
    return B


def _check_out(
    out: Any, shape: tuple[int, ...], dtype: np.dtype, inputs: dict[str, Any]
) -> np.ndarray:
    """``out``: a writeable array of this shape and dtype sharing no memory with the inputs."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"out must have shape {shape} and dtype {dtype}, got {out.shape} {out.dtype}"
        )
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    for name, arr in inputs.items():
        if np.shares_memory(out, arr):
            raise ValueError(
                f"out must not overlap {name} (the result would be read while written)"
            )
    return out


# ------------------------------------------------------------------ CSR times dense
def row_blocks(A: sp.csr_array, parts: int) -> list[tuple[int, int, sp.csr_array]]:
    """A's rows cut into at most ``parts`` contiguous blocks of about equal stored count.

    Each block is (first row, end row, CSR view); the views share A's arrays.
    """
    n_rows = A.shape[0]
    parts = max(1, min(parts, n_rows))
    targets = np.linspace(0, A.indptr[-1], parts + 1)[1:-1]
    cuts = sorted({0, n_rows, *np.searchsorted(A.indptr, targets).tolist()})
    return [(r0, r1, _csr_rows(A, r0, r1)) for r0, r1 in pairwise(cuts)]


def _csr_rows(A: sp.csr_array, r0: int, r1: int) -> sp.csr_array:
    """Rows r0 .. r1-1 of A as a CSR array on views of A's arrays (no copy)."""
    lo, hi = A.indptr[r0], A.indptr[r1]
    data, indices, indptr = A.data[lo:hi], A.indices[lo:hi], A.indptr[r0 : r1 + 1] - lo
    block = sp.csr_array((data, indices, indptr), shape=(r1 - r0, A.shape[1]), copy=False)
    block.data, block.indices = data, indices  # the constructor may copy a slice; keep the views
    return block


def _csr_matmul(
    A: sp.csr_array, B: np.ndarray, out: np.ndarray, blocks: Any = None, threads: int = 1
) -> np.ndarray:
    """out = A @ B (SciPy's product), rows split into ``blocks`` on ``threads`` threads."""
    if blocks is None or threads <= 1 or len(blocks) == 1:
        out[...] = A @ B
        return out

    def block(b: int) -> None:
        r0, r1, part = blocks[b]
        out[r0:r1] = part @ B

    run_parallel(block, len(blocks), threads)
    return out


def csr_matmul(A: Any, B: Any, *, out: np.ndarray | None = None, threads: int = 1) -> np.ndarray:
    """A @ B for a SciPy CSR matrix A (m, k) and a dense B (k,) or (k, N), by SciPy's product.

    out[i] = sum over A's stored entries of row i, in column order, of
    A[i, j] * B[j], starting from 0.0 (``scipy.sparse``'s csr_matvec(s)).
    With ``threads`` > 1 the rows are cut into blocks of equal stored count
    (``row_blocks``) run on the process's worker threads; each row is summed
    the same way, so the bits do not depend on ``threads``.

    Checks: A is CSR with a valid structure (``check_csr``), B a numpy array
    of A's dtype with ``B.shape[0] == A.shape[1]``, ``out`` (if given) of the
    result's shape and dtype, writeable, sharing no memory with B or A.
    """
    A = check_csr(A, "A")
    B = _check_dense(B, "B", A.data.dtype, (1, 2))
    if B.shape[0] != A.shape[1]:
        raise ValueError(f"B must have {A.shape[1]} rows (A's columns), got shape {B.shape}")
    shape = (A.shape[0],) + B.shape[1:]
    if out is None:
        out = np.empty(shape, dtype=B.dtype)
    else:
        out = _check_out(
            out,
            shape,
            B.dtype,
            {"B": B, "A.data": A.data, "A.indices": A.indices, "A.indptr": A.indptr},
        )
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    blocks = row_blocks(A, 4 * threads) if threads > 1 else None
    return _csr_matmul(A, B, out, blocks, threads)


# ------------------------------------------------------------------ transposes
WIDE_ROW_BYTES = 8192  # rows wider than this are copied 8 at a time


def _feature_major(X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """out = X.T as a C-contiguous copy, X of shape (n, width); returns out."""
    n, width = X.shape
    if out is None:
        out = np.empty((width, n), dtype=X.dtype)
    if width * X.itemsize <= WIDE_ROW_BYTES:
        np.copyto(out, X.T)
    else:  # 8 rows at a time: each write then fills one cache line of every output row
        for s in range(0, n, 8):
            np.copyto(out[:, s : s + 8], X[s : s + 8].T)
    return out


def feature_major(X: Any, out: np.ndarray | None = None) -> np.ndarray:
    """The transpose of a batch X (n, width) as a C-contiguous (width, n) array (in ``out``)."""
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        raise ValueError(
            f"X must be a 2-dimensional numpy array, got {type(X).__name__} "
            f"{getattr(X, 'shape', '')}"
        )
    if out is not None:
        out = _check_out(out, X.shape[::-1], X.dtype, {"X": X})
    return _feature_major(X, out)


# ------------------------------------------------------------------ sampled product
def pairwise_sum(terms: np.ndarray) -> Any:
    """Sum of a 1-D array in the sparse path's order: pairwise over consecutive terms.

    Terms 0 and 1, 2 and 3, ... are added; then the sums, in the same way; an odd
    last term moves up a level unchanged; until one value is left (0.0 for no
    terms). Each addition is one IEEE addition in the array's dtype. This loop is
    the definition; ``sampled_product`` computes the same bits vectorised.
    """
    level = list(terms)
    if not level:
        return terms.dtype.type(0.0)
    while len(level) > 1:
        level = [
            level[i] + level[i + 1] if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0]


def sampled_product_reference(
    left: np.ndarray, right: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """g_k = pairwise_sum(left[rows[k], :] * right[cols[k], :]): the sampled product, one position
    at a time (the definition of ``sampled_product``'s bits; slow)."""
    out = np.empty(len(rows), dtype=left.dtype)
    for k, (r, c) in enumerate(zip(rows, cols)):
        out[k] = pairwise_sum(left[r] * right[c])
    return out


_KEPT = threading.local()  # per thread: dtype -> its scratch array while not in use


def _take_scratch(size: int, dtype: np.dtype) -> np.ndarray:
    """A 1-D scratch array of ``size`` entries: this thread's kept one when it is big enough.

    Hand it back with ``_keep_scratch``. While taken it is out of the thread's
    store, so a nested call (a signal handler, say) gets a new array, not the
    one in use. One array per thread and dtype is kept: the sampled product's,
    at most SAMPLED_BUFFER_BYTES.
    """
    buf = _kept().pop(dtype, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype=dtype)
    return buf[:size]


def _keep_scratch(buf: np.ndarray) -> None:
    """Put a scratch array from ``_take_scratch`` back into this thread's store."""
    _kept()[buf.dtype] = buf if buf.base is None else buf.base


def _kept() -> dict[np.dtype, np.ndarray]:
    arrays: dict[np.dtype, np.ndarray] = _KEPT.__dict__.setdefault("arrays", {})
    return arrays


SAMPLED_BUFFER_BYTES = 1 << 19  # products of one chunk of positions: 512 KiB, in L2


def _sampled_product(
    left: np.ndarray,
    right: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    out: np.ndarray,
    threads: int = 1,
) -> np.ndarray:
    """out[k] = sum_n left[rows[k], n] * right[cols[k], n], pairwise over n.

    left (m, N) and right (p, N) are C-contiguous, one dtype. The positions are
    taken in chunks; for a chunk, the rows right[c_k] are gathered into a
    buffer of shape (chunk, P), P = N rounded up to a power of two, the columns
    beyond N holding -0.0 (x + -0.0 = x for every x, so the padding changes no
    bit), multiplied by the gathered left[r_k], and each level of the pairwise
    tree adds the even and odd columns of all rows in one NumPy operation.

    The chunks are split into ``threads`` consecutive parts; each part gathers
    into one buffer of its thread (``_take_scratch``), kept from call to call.
    (A buffer allocated per chunk let the C allocator hand its pages back to
    the system and fault them in again: up to 900 page faults and 3x the time
    for one 784-300 layer.)
    """
    n = left.shape[1]
    nnz = cols.shape[0]
    if n == 0 or nnz == 0:
        out[...] = 0.0
        return out
    width = 1 << (n - 1).bit_length()
    step = max(16, SAMPLED_BUFFER_BYTES // (width * left.itemsize))
    n_chunks = -(-nnz // step)
    parts = min(threads, n_chunks)
    size = min(step, nnz)

    def part(p: int) -> None:
        buf = _take_scratch(size * width, left.dtype)
        try:
            products = buf.reshape(size, width)
            for c in range(p * n_chunks // parts, (p + 1) * n_chunks // parts):
                s, e = c * step, min(c * step + step, nnz)
                P = products[: e - s]
                np.take(right, cols[s:e], axis=0, out=P[:, :n] if width > n else P, mode="clip")
                P[:, :n] *= left[rows[s:e]]
                P[:, n:] = -0.0
                out[s:e] = _pairwise_rows(P)
        finally:
            _keep_scratch(buf)

    run_parallel(part, parts, threads)
    return out


def _pairwise_rows(products: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """The pairwise sum of each row of a C-contiguous (k, 2^j) array (destroys it; ``scratch``,
    if given, a 1-D array of at least k * 2^(j-1) entries, is overwritten too)."""
    k, width = products.shape
    a = products.reshape(-1)
    b = np.empty(k * width // 2, dtype=products.dtype) if scratch is None else scratch
    while width > 1:
        width //= 2
        # the even and odd columns of every row are the even and odd entries of the flat array
        np.add(a[0 : 2 * k * width : 2], a[1 : 2 * k * width : 2], out=b[: k * width])
        a, b = b, a
    return a[:k]


def sampled_product(
    left: Any, right: Any, pattern: Any, *, out: np.ndarray | None = None, threads: int = 1
) -> np.ndarray:
    """The entries of left @ right.T at the stored positions of a CSR pattern (SDDMM).

    g_k = sum_n left[r_k, n] * right[c_k, n] for the stored positions (r_k, c_k)
    of ``pattern`` (m, p) in CSR order, summed pairwise over n
    (``pairwise_sum``): the same bits on every machine and for every
    ``threads``. With left = dZ^T (out, N) and right = A^T (in, N) this is the
    weight gradient dL/dW at the alive weights (Nisa et al., HiPC 2018).

    Checks: pattern CSR with a valid structure (its values are not read; their
    dtype sets the result's), left (m, N) and right (p, N) numpy arrays of that
    dtype, ``out`` (nnz,) of that dtype sharing no memory with left or right.
    """
    pattern = check_csr(pattern, "pattern")
    dtype = pattern.data.dtype
    left = _check_dense(left, "left", dtype, (2,))
    right = _check_dense(right, "right", dtype, (2,))
    m, p = pattern.shape
    if left.shape[0] != m or right.shape[0] != p or left.shape[1] != right.shape[1]:
        raise ValueError(
            f"left must have {m} rows and right {p} (the pattern's shape), both with "
            f"the same number of columns; got {left.shape} and {right.shape}"
        )
    nnz = pattern.indices.shape[0]
    if out is None:
        out = np.empty(nnz, dtype=dtype)
    else:
        out = _check_out(out, (nnz,), dtype, {"left": left, "right": right})
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    rows = np.repeat(np.arange(m), np.diff(pattern.indptr))
    return _sampled_product(
        np.ascontiguousarray(left), np.ascontiguousarray(right), rows, pattern.indices, out, threads
    )
