"""A pruned MLP in sparse form: SciPy CSR weights, dense or sparse execution per layer.

Each masked weight matrix W_l * M_l (shape (out_l, in_l)) is stored as a
``scipy.sparse.csr_array`` of its non-zero entries: explicit zeros are never
stored (an alive weight whose value is exactly 0.0 contributes nothing to a
product and is dropped). Biases stay dense, as b_l * Mb_l. The forward pass is
the one of ``refprune.mlp``: z_{l+1} = a_l (W_l * M_l)^T + b_l * Mb_l, hidden
activation from ``refprune.activations``, last layer linear.

Orientation. Activations are kept feature-major, a^T of shape (width, N), so a
layer is z^T = W a^T: CSR times a C-contiguous dense matrix, the inner loop
along the batch, each output row summed over its stored weights in column
order. The batch is transposed once on entry and once on exit. CSR was measured
faster than CSC for this product (docs/sparse_execution.md), and at batch 1
the CSR matvec y = W x faster than x^T W^T (a CSC scatter). The products run in
the compiled kernels of ``refprune.sparse_kernels`` (SciPy's summation order and
bits, several samples per SIMD register), or in SciPy itself where the package
was installed without a C compiler.

Execution per layer: "sparse" (CSR product, rows split over threads), "dense"
(NumPy product with the dense masked matrix, built on first use), or "auto":
the cheaper of the two under the measured cost model of
``refprune.sparse_kernels`` (crossover table in docs/sparse_execution.md).
Either choice computes the same function; only rounding differs (float64: the
two agree to ~1e-15 relative, tested to 1e-12).

float32 on request (``dtype=np.float32``): weights, biases and activations in
float32, inputs must then be float32 as well (no silent mixing of precisions).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from ._checks import choice, positive_int
from .activations import get_activation
from .mlp import MLP
from .sparse_kernels import (BLOCKS_PER_THREAD, T0, T0_CHUNKS, available_cores, csr_from_positions, csr_matmul,
                             csr_product, feature_major, predicted_seconds, row_blocks, run_tasks,
                             sparse_blocks, sparse_is_faster, transpose_seconds)

EXECUTIONS = ("auto", "dense", "sparse")
CHUNK_BYTES = 1 << 20   # 1 MiB: half of this machine's per-core L2
MIN_SPLIT_CHUNK = 64    # samples: smaller chunks lose 10-15 % per element in a CSR product
DTYPES = ("float64", "float32")


def check_model(model: Any) -> np.dtype:
    """Check that ``model`` is a refprune MLP whose parameters share one float dtype; return it."""
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a refprune.mlp.MLP, got {type(model).__name__}")
    dtypes = {np.asarray(p).dtype for p in model.params.values()}
    if len(dtypes) != 1 or next(iter(dtypes)).kind != "f":
        raise TypeError(f"model parameters must share one floating dtype, got {sorted(map(str, dtypes))}")
    return next(iter(dtypes))


def check_dtype(dtype: Any) -> np.dtype:
    """float64 or float32 (anything ``np.dtype`` accepts for them), else ValueError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float64 or float32, got {dtype!r}") from exc
    if dt.name not in DTYPES:
        raise ValueError(f"dtype must be float64 or float32, got {dt.name}")
    return dt


def check_execution(execution: Any, n_layers: int) -> tuple[str, ...]:
    """One of EXECUTIONS for every layer, or a sequence of them, one per layer."""
    if isinstance(execution, str):
        return (choice(execution, "execution", EXECUTIONS),) * n_layers
    if not isinstance(execution, Sequence) or len(execution) != n_layers:
        raise ValueError(f"execution must be one of {list(EXECUTIONS)} or a sequence of "
                         f"{n_layers} of them (one per layer), got {execution!r}")
    return tuple(choice(e, f"execution[{l}]", EXECUTIONS) for l, e in enumerate(execution))


def check_batch(X: Any, width: int, dtype: np.dtype) -> np.ndarray:
    """Check a batch X of shape (N, width) in ``dtype``; returns it as an array (not copied).

    The checks of ``refprune._checks.float_array`` (floating, 2-D, non-empty,
    finite), plus: the dtype must equal ``dtype`` (no silent change of
    precision). No copy is made here: the forward pass copies X anyway, into
    transposed chunks, and never writes to it.
    """
    if isinstance(X, (str, bytes)) or X is None:
        raise TypeError(f"X must be a float array, got {type(X).__name__}")
    X = np.asarray(X)
    if X.dtype.kind != "f":
        raise TypeError(f"X must be a floating-point array, got dtype {X.dtype}")
    if X.dtype != dtype:
        raise TypeError(f"X has dtype {X.dtype} but this sparse model computes in {dtype}; "
                        f"convert with X.astype(np.{dtype.name})")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional (N, {width}), got shape {X.shape}")
    if X.shape[1] != width:
        raise ValueError(f"X must have {width} columns (the input width), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"X must not be empty, got shape {X.shape}")
    if not np.isfinite(X.sum()) and not np.isfinite(X).all():  # a finite sum implies finite entries
        raise ValueError("X must be finite (no NaN or inf)")
    return X


def chunk_size(width: int, itemsize: int) -> int:
    """Samples per chunk: the largest power of two C with width * C * itemsize <= CHUNK_BYTES, in [32, 512].

    A chunk of a layer's input then stays in the core's cache while every stored
    weight reads its row of it (measured: 2.7x faster at batch 2048 on the
    4096x4096 layer than one product over the whole batch).
    """
    c = max(1, CHUNK_BYTES // (width * itemsize))
    return int(min(512, max(32, 1 << (c.bit_length() - 1))))


class SparseLayer:
    """One layer in sparse form: CSR weight (no explicit zeros), dense masked bias.

    ``weight`` has shape (out, in); ``blocks[b]`` are its rows split into b blocks
    of about equal non-zero count (views on ``weight``), made on first use.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, dtype: np.dtype):
        flat = np.flatnonzero(weight)
        values = weight.ravel()[flat].astype(dtype)
        keep = values != 0            # float64 -> float32 may round tiny values to 0.0
        flat, values = flat[keep], np.ascontiguousarray(values[keep])
        self.shape: tuple[int, int] = weight.shape
        self.weight: sp.csr_array = csr_from_positions(self.shape, flat, values)
        self.bias: np.ndarray = bias.astype(dtype)
        self._blocks: dict[int, list[sp.csr_array]] = {}
        self._dense: np.ndarray | None = None

    @property
    def nnz(self) -> int:
        return int(self.weight.nnz)

    @property
    def density(self) -> float:
        """Stored (non-zero) fraction of the weight matrix."""
        return self.nnz / (self.shape[0] * self.shape[1])

    def blocks(self, threads: int) -> list[sp.csr_array]:
        """Row blocks of ``weight`` for a product on ``threads`` threads (BLOCKS_PER_THREAD each)."""
        if threads not in self._blocks:
            self._blocks[threads] = row_blocks(self.weight, 1 if threads == 1 else BLOCKS_PER_THREAD * threads)
        return self._blocks[threads]

    def dense_weight(self) -> np.ndarray:
        """The dense masked weight (out, in), built on first use and kept."""
        if self._dense is None:
            self._dense = self.weight.toarray()
        return self._dense


class SparseMLP:
    """A pruned ``refprune.mlp.MLP`` in sparse form (see the module docstring).

    The model is read, never modified; later changes to it are not seen.

    Parameters
    ----------
    model : MLP
        Any refprune MLP. A model whose masks are all True is valid: its layers
        are dense, and the automatic rule runs them dense.
    dtype : float64 (default) or float32
        Precision of weights, biases and activations.
    execution : "auto" (default), "dense", "sparse", or one of these per layer
        "auto" picks per layer and batch size by the cost model of
        ``refprune.sparse_kernels``; the others force it.
    threads : int, optional
        Threads for the sparse products (default: the cores available, at most 2,
        the machine the cost model was measured on).
    """

    def __init__(self, model: MLP, *, dtype: Any = np.float64, execution: Any = "auto",
                 threads: int | None = None):
        check_model(model)
        self.dtype = check_dtype(dtype)
        self.execution = check_execution(execution, model.n_layers)
        self.threads = min(2, available_cores()) if threads is None else positive_int(threads, "threads")
        self.sizes = model.sizes
        self.activation = model.activation
        self._act = get_activation(model.activation).value
        p = model.effective_params()
        self.layers = [SparseLayer(p[f"layers.{l}.weight"], p[f"layers.{l}.bias"], self.dtype)
                       for l in range(model.n_layers)]
        self._plans: dict[int, tuple[tuple[str, int], ...]] = {}

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def plan(self, batch: int) -> list[tuple[str, int]]:
        """(execution, threads) per layer at this batch size: ("dense", 1) or ("sparse", blocks)."""
        if batch in self._plans:
            return list(self._plans[batch])
        batch = positive_int(batch, "batch")
        if batch not in self._plans:
            steps = []
            for l, (layer, forced) in enumerate(zip(self.layers, self.execution)):
                # a sparse first (last) layer transposes the batch into (out of) feature-major
                moved = ((l == 0) * transpose_seconds(layer.shape[1], batch, self.dtype)
                         + (l == self.n_layers - 1) * transpose_seconds(layer.shape[0], batch, self.dtype))
                if self._split_by_chunks(batch):    # each thread keeps its chunks' activations
                    handoff, exchanged = T0_CHUNKS, 0
                else:                                 # every thread reads all of a^T, writes rows of z^T
                    handoff, exchanged = T0, (layer.shape[0] + layer.shape[1]) * batch * self.dtype.itemsize
                blocks = sparse_blocks(layer.nnz, batch, self.dtype, self.threads, moved, handoff, exchanged)
                if forced != "auto":
                    sparse = forced == "sparse"
                elif (batch > 1 and steps and steps[-1][0] == "sparse" and steps[-1][1] > 1
                      and self._split_by_chunks(batch)):
                    # inside a run of sparse layers split over the threads, staying sparse
                    # saves ending the run (a hand-off, T0) and pays no new one
                    inside = predicted_seconds("sparse", layer.shape, layer.nnz, batch, self.dtype,
                                               self.threads, moved) - T0
                    sparse = inside <= predicted_seconds("dense", layer.shape, layer.nnz, batch,
                                                         self.dtype, self.threads) + T0
                    blocks = self.threads if sparse else 1
                else:
                    sparse = sparse_is_faster(layer.shape, layer.nnz, batch, self.dtype, self.threads, moved,
                                              handoff, exchanged)
                steps.append(("sparse", blocks) if sparse else ("dense", 1))
            self._plans[batch] = tuple(steps)
        return list(self._plans[batch])

    def _split_step(self, n: int) -> int:
        """Samples per chunk when a sparse layer is split over the threads.

        Two chunks per thread where chunks stay >= MIN_SPLIT_CHUNK samples, so a
        thread that starts late still takes a share; a batch of one chunk splits
        the rows of W instead (both threads streaming the whole matrix for half a
        chunk measured 1.4x slower).
        """
        step = chunk_size(max(self.sizes[:-1]), self.dtype.itemsize)
        return min(step, max(MIN_SPLIT_CHUNK, -(-n // (2 * self.threads))))

    def _split_by_chunks(self, n: int) -> bool:
        """Whether a split sparse layer at batch n goes to Python threads by chunks (else by rows)."""
        return n > self._split_step(n)

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Network output f(X), shape (N, out), in ``self.dtype``; X must have that dtype.

        The batch runs in chunks of ``chunk_size`` samples, each transposed to
        feature-major once. A sparse layer spreads its work over the threads: the
        chunks when there are several, else the rows of W. Every split gives the same bits
        (each output entry is summed in the same order).
        """
        X = check_batch(X, self.sizes[0], self.dtype)
        n = X.shape[0]
        plan = self.plan(n)
        if n == 1:
            a = np.ascontiguousarray(X[0])
            for l, (layer, (how, parts)) in enumerate(zip(self.layers, plan)):
                z = csr_matmul(layer.blocks(parts), a, parts) if how == "sparse" else layer.dense_weight() @ a
                a = self._finish(z, layer.bias, l)
            return a[None, :]
        if all(how == "dense" for how, _ in plan):   # one BLAS product per layer, no chunks
            a = X.T
            for l, layer in enumerate(self.layers):
                a = self._finish(layer.dense_weight() @ a, layer.bias, l)
            return feature_major(a, threads=self.threads)
        if any(how == "sparse" and parts > 1 for how, parts in plan):
            step = self._split_step(n)
        else:
            step = chunk_size(max(self.sizes[:-1]), self.dtype.itemsize)
        bounds = [(s, min(s + step, n)) for s in range(0, n, step)]
        out = np.empty((n, self.sizes[-1]), dtype=self.dtype)
        chunks: list = [X[s:e].T for s, e in bounds]    # feature-major views, copied where needed
        l = 0
        while l < self.n_layers:
            layer, (how, parts) = self.layers[l], plan[l]
            if how == "dense":                 # BLAS reads the transposed view as it is
                W = layer.dense_weight()
                chunks = [self._finish(W @ c, layer.bias, l) for c in chunks]
                l += 1
            elif parts > 1 and len(chunks) > 1:
                # split the batch: each thread takes the next chunk through this and the
                # following sparse layers (one hand-off), transposing its input and output
                m = l
                while m < self.n_layers and plan[m][0] == "sparse":
                    m += 1
                chunks = run_tasks([lambda i=i, l=l, m=m: self._sparse_run(chunks[i], l, m, out, bounds[i])
                                    for i in range(len(chunks))], parts)
                l = m
            else:                              # split the rows of W
                chunks = [self._finish(csr_matmul(layer.blocks(parts), c if c.flags.c_contiguous
                                                  else feature_major(c.T, threads=parts), parts),
                                       layer.bias, l)
                          for c in chunks]
                l += 1
        if chunks[0] is not None:
            for (s, e), c in zip(bounds, chunks):
                feature_major(c, out[s:e], self.threads)
        return out

    def _sparse_run(self, a: np.ndarray, l: int, m: int, out: np.ndarray, bound: tuple[int, int]):
        """Layers l .. m-1 (all sparse, one block each) on one chunk; the last layer writes into ``out``."""
        a = feature_major(a.T) if not a.flags.c_contiguous else a
        for k in range(l, m):
            W = self.layers[k].weight
            a = self._finish(csr_product(W, a, np.empty((W.shape[0], a.shape[1]), dtype=a.dtype)),
                             self.layers[k].bias, k)
        if m < self.n_layers:
            return a
        feature_major(a, out[bound[0]:bound[1]])
        return None

    def _finish(self, z: np.ndarray, bias: np.ndarray, l: int) -> np.ndarray:
        """z + b, then the hidden activation (not after the last layer)."""
        z += bias if z.ndim == 1 else bias[:, None]
        return self._act(z) if l < self.n_layers - 1 else z

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class predictions argmax_k f(x)_k (first maximum on ties)."""
        return np.argmax(self.forward(X), axis=1)

    def to_dense(self) -> dict[str, np.ndarray]:
        """The effective parameters (value * mask) as dense arrays in ``self.dtype``, by name."""
        out: dict[str, np.ndarray] = {}
        for l, layer in enumerate(self.layers):
            out[f"layers.{l}.weight"] = layer.weight.toarray()
            out[f"layers.{l}.bias"] = layer.bias.copy()
        return out

    def density(self) -> float:
        """Stored fraction of all weight entries."""
        return sum(L.nnz for L in self.layers) / sum(L.shape[0] * L.shape[1] for L in self.layers)

    def nbytes(self) -> int:
        """Bytes of the sparse weights (values, indices, row pointers) and biases."""
        return sum(L.weight.data.nbytes + L.weight.indices.nbytes + L.weight.indptr.nbytes
                   + L.bias.nbytes for L in self.layers)

    def __repr__(self) -> str:
        return (f"SparseMLP(sizes={self.sizes}, activation={self.activation!r}, dtype={self.dtype.name}, "
                f"density={self.density():.4f})")


def to_sparse(model: MLP, *, dtype: Any = np.float64, execution: Any = "auto",
              threads: int | None = None) -> SparseMLP:
    """The sparse form of ``model``: ``SparseMLP(model, dtype=..., execution=..., threads=...)``."""
    return SparseMLP(model, dtype=dtype, execution=execution, threads=threads)
