"""A pruned MLP in sparse form: SciPy CSR weights, each layer run dense or sparse.

Each masked weight matrix W_l * M_l (shape (out_l, in_l)) is stored as a
``scipy.sparse.csr_array`` of its non-zero entries: an alive weight whose value
is exactly 0.0 contributes nothing to a product and is not stored. Biases stay
dense, as b_l * Mb_l. The forward pass is the one of ``refprune.mlp``:

    z_l = a_l (W_l * M_l)^T + b_l * Mb_l,   a_{l+1} = sigma(z_l)  (last layer linear),

computed feature-major, z_l^T = W_l a_l^T + b_l, so that a layer is one CSR
product whose inner loop runs along the batch (``products``). ``_layers`` is
that loop and nothing else; the rest of this module cuts the batch into chunks
and hands them to threads (``plan``, ``pool``).

float32 on request (``dtype=np.float32``): weights, biases and activations in
float32; inputs must then be float32 too (precisions are never mixed silently).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import numpy as np
import scipy.sparse as sp

from .._checks import all_finite, choice, positive_int
from ..activations import get_activation
from ..mlp import MLP
from . import plan as planning
from .plan import Calibration, calibrate, chunk_size, split_pays
from .pool import available_cores, run_parallel
from .products import _csr_matmul, _feature_major, row_blocks

__all__ = ["EXECUTIONS", "SparseMLP", "to_sparse"]

EXECUTIONS = ("auto", "dense", "sparse")
# Whole-pass contenders are timed on up to 8 chunks, as many samples as 4 chunks of a training
# step's size. Timed on 4 forward chunks (64 samples of a 4096-wide float64 input), threaded
# contenders on a guest kernel that packs threads onto one vCPU showed too little of their
# speed-up, and a plan on one thread ran 1.3-1.8x slower than forced sparse on the threads.
MEASURE_CHUNKS = 8
DTYPES = ("float64", "float32")


# ------------------------------------------------------------------ checks
def check_model(model: Any) -> np.dtype:
    """Check that ``model`` is a refprune MLP whose parameters share one float dtype; return it."""
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a refprune.mlp.MLP, got {type(model).__name__}")
    dtypes = {np.asarray(p).dtype for p in model.params.values()}
    if len(dtypes) != 1 or next(iter(dtypes)).kind != "f":
        raise TypeError(
            f"model parameters must share one floating dtype, got {sorted(map(str, dtypes))}"
        )
    return next(iter(dtypes))


def check_dtype(dtype: Any) -> np.dtype:
    """float64 or float32 (anything ``np.dtype`` accepts for them), else an error."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float64 or float32, got {dtype!r}") from exc
    if dt.name not in DTYPES:
        raise ValueError(f"dtype must be float64 or float32, got {dt.name}")
    return cast(np.dtype[Any], dt)


def check_execution(execution: Any, n_layers: int) -> tuple[str, ...]:
    """One of EXECUTIONS for every layer, or a sequence of them, one per layer."""
    if isinstance(execution, str):
        return (choice(execution, "execution", EXECUTIONS),) * n_layers
    if not isinstance(execution, Sequence) or len(execution) != n_layers:
        raise ValueError(
            f"execution must be one of {list(EXECUTIONS)} or a sequence of "
            f"{n_layers} of them (one per layer), got {execution!r}"
        )
    return tuple(choice(e, f"execution[{l}]", EXECUTIONS) for l, e in enumerate(execution))


def check_threads(threads: Any) -> int:
    return available_cores() if threads is None else positive_int(threads, "threads")


def check_batch(X: Any, width: int, dtype: np.dtype) -> np.ndarray:
    """A finite batch X of shape (N, width) in ``dtype``, as an array (not copied, not written)."""
    if isinstance(X, (str, bytes)) or X is None:
        raise TypeError(f"X must be a float array, got {type(X).__name__}")
    X = np.asarray(X)
    if X.dtype.kind != "f":
        raise TypeError(f"X must be a floating-point array, got dtype {X.dtype}")
    if X.dtype != dtype:
        raise TypeError(
            f"X has dtype {X.dtype} but this sparse model computes in {dtype}; "
            f"convert with X.astype(np.{dtype.name})"
        )
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional (N, {width}), got shape {X.shape}")
    if X.shape[1] != width:
        raise ValueError(f"X must have {width} columns (the input width), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"X must not be empty, got shape {X.shape}")
    if not all_finite(X):
        raise ValueError("X must be finite (no NaN or inf)")
    return cast(np.ndarray, X)


# ------------------------------------------------------------------ one layer
class SparseLayer:
    """One layer: CSR weight (no explicit zeros), dense masked bias, and what planning measured."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, dtype: np.dtype):
        flat = np.flatnonzero(weight)
        values = weight.ravel()[flat].astype(dtype)
        keep = values != 0  # float64 -> float32 may round tiny values to 0.0
        flat, values = flat[keep], values[keep]
        self.shape: tuple[int, int] = weight.shape
        rows, cols = np.divmod(flat, self.shape[1])
        # int32 indices wherever they fit (as SciPy chooses): 4 bytes less to read per weight
        itype = np.int32 if max(*self.shape, flat.size) < np.iinfo(np.int32).max else np.int64
        indptr = np.searchsorted(rows, np.arange(self.shape[0] + 1)).astype(itype)
        self.weight = sp.csr_array((values, cols.astype(itype), indptr), shape=self.shape)
        self.bias: np.ndarray = bias.astype(dtype)
        self._dense: np.ndarray | None = None
        self._blocks: dict[int, list[Any]] = {}
        self.timings: dict[tuple[str, int, bool, bool], float] = {}

    @property
    def nnz(self) -> int:
        return int(self.weight.nnz)

    @property
    def density(self) -> float:
        """Stored (non-zero) fraction of the weight matrix."""
        return self.nnz / (self.shape[0] * self.shape[1])

    def dense_weight(self) -> np.ndarray:
        """The dense masked weight (out, in), built on first use and kept."""
        if self._dense is None:
            self._dense = self.weight.toarray()
        return self._dense

    def blocks(self, parts: int) -> list[Any]:
        """``weight``'s rows in ``parts`` blocks of equal stored count (``row_blocks``), kept."""
        if parts not in self._blocks:
            self._blocks[parts] = row_blocks(self.weight, parts)
        return self._blocks[parts]


@dataclass(frozen=True)
class Schedule:
    """How a batch of n runs: per layer dense or sparse, the chunk size, and the threads of each
    maximal run of layers with the same execution (``runs``: (first, end, execution, threads))."""

    executions: tuple[str, ...]
    chunk: int
    runs: tuple[tuple[int, int, str, int], ...]


class SparseMLP:
    """A pruned ``refprune.mlp.MLP`` in sparse form (see the module docstring).

    The model is read once, never modified; later changes to it are not seen.

    Parameters
    ----------
    model : MLP
        Any refprune MLP. A model whose masks are all True is valid: its layers
        are dense, and the automatic choice runs them dense.
    dtype : float64 (default) or float32
        Precision of weights, biases and activations.
    execution : "auto" (default), "dense", "sparse", or one of these per layer
        "auto" runs each layer the way measured faster on this machine at first
        use for the batch size (``refprune.sparse.plan``); the others force it
        ("sparse" everywhere gives the same bits on every machine).
    threads : int, optional
        Threads for the sparse products, the calling one included (default:
        the cores available). Results do not depend on it.
    """

    def __init__(
        self,
        model: MLP,
        *,
        dtype: Any = np.float64,
        execution: Any = "auto",
        threads: int | None = None,
    ):
        check_model(model)
        self.dtype = check_dtype(dtype)
        self.execution = check_execution(execution, model.n_layers)
        self.threads = check_threads(threads)
        self.sizes = model.sizes
        self.activation = model.activation
        p = model.effective_params()
        self.layers = [
            SparseLayer(p[f"layers.{l}.weight"], p[f"layers.{l}.bias"], self.dtype)
            for l in range(model.n_layers)
        ]
        self._schedules: dict[int, Schedule] = {}

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def _act(self, z: np.ndarray) -> np.ndarray:
        return get_activation(self.activation).value(z)

    # ------------------------------------------------------------ the math
    def forward(self, X: np.ndarray) -> np.ndarray:
        """Network output f(X), shape (N, out), in ``self.dtype``; X must have that dtype.

        f(X) = a_L with a_0 = X, z_l = a_l (W_l * M_l)^T + b_l * Mb_l and
        a_{l+1} = sigma(z_l) (last layer linear), as ``refprune.mlp.MLP.forward``.
        Layers run dense (BLAS) or sparse (SciPy CSR) as planned; the batch runs in
        chunks, on the threads where that pays. The result does not depend on the
        threads.
        """
        X = check_batch(X, self.sizes[0], self.dtype)
        return self._run(X, self._schedule(X.shape[0]))

    def _run(self, X: np.ndarray, schedule: Schedule) -> np.ndarray:
        """f(X) for a checked batch, run as ``schedule`` says."""
        if X.shape[0] == 1:
            return self._forward_one(X[0], schedule)[None, :]
        if all(how == "dense" for how in schedule.executions):
            return self._forward_dense(X)
        return self._forward_chunks(X, schedule)

    def _layers(
        self, aT: np.ndarray, first: int, end: int, how: str, threads: int = 1
    ) -> np.ndarray:
        """z_l^T = W_l a_l^T + b_l and a_{l+1}^T = sigma(z_l^T) for layers first .. end-1, all
        dense or all sparse; aT feature-major, (width, n) or (width,) for one sample."""
        for l in range(first, end):
            layer = self.layers[l]
            zT = self._product(layer, aT, how, threads)  # W_l a_l^T
            zT += layer.bias if zT.ndim == 1 else layer.bias[:, None]
            aT = self._act(zT) if l < self.n_layers - 1 else zT
        return aT

    def _product(self, layer: SparseLayer, aT: np.ndarray, how: str, threads: int) -> np.ndarray:
        """W a^T by SciPy's CSR product (its rows in blocks on ``threads`` threads) or by BLAS."""
        if how == "dense":
            return cast(np.ndarray, layer.dense_weight() @ aT)
        if threads == 1:
            return cast(np.ndarray, layer.weight @ aT)
        out = np.empty((layer.shape[0],) + aT.shape[1:], dtype=self.dtype)
        return _csr_matmul(layer.weight, aT, out, layer.blocks(2 * threads), threads)

    # ------------------------------------------------------------ how it runs
    def _forward_one(self, x: np.ndarray, schedule: Schedule) -> np.ndarray:
        """One sample: one matrix-vector product per layer (a big sparse one in row blocks)."""
        a = x
        for first, end, how, threads in schedule.runs:
            a = self._layers(a, first, end, how, threads)
        return a

    def _forward_dense(self, X: np.ndarray) -> np.ndarray:
        """Every layer dense: one BLAS product per layer over the whole batch, sample-major."""
        a = X
        for l, layer in enumerate(self.layers):
            z = a @ layer.dense_weight().T
            z += layer.bias
            a = self._act(z) if l < self.n_layers - 1 else z
        return a

    def _forward_chunks(self, X: np.ndarray, schedule: Schedule) -> np.ndarray:
        """The batch in chunks; each run of sparse layers takes the chunks on its threads, each
        run of dense layers takes them one after another (BLAS has threads of its own)."""
        n, step = X.shape[0], schedule.chunk
        bounds = [(s, min(s + step, n)) for s in range(0, n, step)]
        out = np.empty((n, self.sizes[-1]), dtype=self.dtype)
        acts: list[Any] = [X[s:e] for s, e in bounds]  # sample-major until the first run

        for first, end, how, threads in schedule.runs:
            rows = threads if len(bounds) == 1 else 1  # one chunk: its products' rows in blocks

            def run(
                c: int, first: int = first, end: int = end, how: str = how, rows: int = rows
            ) -> None:
                a = acts[c]
                if first == 0:  # into feature-major: a copy for SciPy, a view for BLAS
                    a = _feature_major(a) if how == "sparse" else a.T
                a = self._layers(a, first, end, how, rows)
                if end == self.n_layers:
                    _feature_major(a, out[bounds[c][0] : bounds[c][1]])
                acts[c] = a

            run_parallel(run, len(bounds), threads if how == "sparse" and rows == 1 else 1)
        return out

    # ------------------------------------------------------------ planning
    def plan(self, batch: int) -> list[str]:
        """Execution of each layer ("dense" or "sparse") for a batch of this size.

        Pass it back as ``execution=`` to pin it (no measurement at first use).
        """
        return list(self._schedule(positive_int(batch, "batch")).executions)

    def _schedule(self, n: int) -> Schedule:
        schedule = self._schedules.get(n)
        if schedule is None:
            schedule = self._schedules[n] = self._make_schedule(n)
        return schedule

    def _make_schedule(self, n: int) -> Schedule:
        cal = calibrate(self.dtype)
        widest = max(self.sizes[:-1])
        work = sum(layer.nnz for layer in self.layers)
        chunk = (
            1
            if n == 1
            else chunk_size(n, widest, self.dtype.itemsize, work, planning.FORWARD_CHUNK_BYTES)
        )
        n_chunks = -(-n // chunk)
        executions, sparse_seconds = [], []
        for l, (layer, forced) in enumerate(zip(self.layers, self.execution)):
            how, ts = self._choose(l, layer, forced, n, chunk, n_chunks, cal)
            executions.append(how)
            sparse_seconds.append(ts)
        planned = self._runs(executions, sparse_seconds, n_chunks, chunk, cal)
        if not planning.measuring():
            return planned
        return self._measured(n, planned, n_chunks, cal)

    def _runs(
        self,
        executions: Sequence[str],
        sparse_seconds: Sequence[float],
        n_chunks: int,
        chunk: int,
        cal: Calibration,
    ) -> Schedule:
        """The schedule of these executions: maximal runs of layers with one execution, each sparse
        run on the threads where ``split_pays`` says sharing its work pays."""
        runs = []
        l = 0
        while l < self.n_layers:
            end = l + 1
            while end < self.n_layers and executions[end] == executions[l]:
                end += 1
            threads = 1
            if executions[l] == "sparse":
                seconds = sum(sparse_seconds[l:end])
                tasks = 2 * self.threads if n_chunks == 1 else n_chunks  # row blocks or chunks
                threads = split_pays(seconds, tasks, self.threads, cal)
            runs.append((l, end, executions[l], threads))
            l = end
        return Schedule(tuple(executions), chunk, tuple(runs))

    def _measured(self, n: int, planned: Schedule, n_chunks: int, cal: Calibration) -> Schedule:
        """The fastest of the whole-network contenders, timed on a batch like the caller's.

        The layer-by-layer choice models the threads and the layers' interplay
        (caches, hand-offs); here the complete forward pass is timed instead
        (``planning.fastest``) for: the planned schedule, the same on the
        calling thread alone (even where the executions are pinned: threads
        are only ever taken where measured to pay), and, where no layer is
        pinned, every layer sparse (threaded as planned, and not) and every
        layer dense. Contenders are timed on min(n, MEASURE_CHUNKS chunks)
        samples: the same chunks, fewer of them.
        """
        m = n if n == 1 else min(n, MEASURE_CHUNKS * planned.chunk)
        candidates = {planned: 0.0, _serial(planned): 0.0}
        if all(how == "auto" for how in self.execution):
            work = [planning.sparse_estimate(L.nnz, n, cal) for L in self.layers]
            sparse = self._runs(("sparse",) * self.n_layers, work, n_chunks, planned.chunk, cal)
            candidates.setdefault(sparse, 0.0)
            candidates.setdefault(_serial(sparse), 0.0)
            dense = Schedule(
                ("dense",) * self.n_layers, planned.chunk, ((0, self.n_layers, "dense", 1),)
            )
            low = sum(planning.dense_bound(*L.shape, m, cal) for L in self.layers)
            candidates.setdefault(dense, low)  # timed only if its bound can win
        if len(candidates) == 1:
            return planned
        X = np.random.default_rng(n).standard_normal((m, self.sizes[0])).astype(self.dtype)
        unique = sorted(candidates, key=lambda s: "dense" in s.executions)  # BLAS users last
        best = planning.fastest(
            [partial(self._run, X, s) for s in unique],
            list(candidates.values()),
            self._rest(unique),
        )
        chosen = unique[best]
        for L, how in zip(self.layers, chosen.executions):
            if how == "sparse":
                L._dense = None  # a dense copy was only needed to time it
        return chosen

    def _rest(self, candidates: list[Schedule]) -> tuple[bool, bool]:
        """``planning.rest`` for these contenders: where one is threaded, a wait for idle
        threads before the first round, and before every round where a threaded BLAS product
        of this plan (a layer timed dense, or a contender with dense layers) may precede it."""
        return planning.rest(
            threaded=any(t > 1 for s in candidates for *_, t in s.runs),
            after_blas=any("dense" in s.executions for s in candidates)
            or any(key[0] == "dense" for L in self.layers for key in L.timings),
        )

    def _choose(
        self,
        l: int,
        layer: SparseLayer,
        forced: str,
        n: int,
        chunk: int,
        n_chunks: int,
        cal: Calibration,
    ) -> tuple[str, float]:
        """("dense" or "sparse", single-thread seconds of the sparse product over the batch)."""
        first, last = l == 0, l == self.n_layers - 1
        rng = np.random.default_rng(l)
        out_w, in_w = layer.shape
        m = chunk if n >= chunk else 1 << (n.bit_length() - 1)  # measured at a power of two

        def sparse() -> float:
            if not planning.measuring():
                return planning.sparse_estimate(layer.nnz, n, cal)
            key = ("sparse", m, first, last)
            if key not in layer.timings:
                if m == 1:
                    x = rng.standard_normal(in_w).astype(self.dtype)
                    layer.timings[key] = planning.best_time(lambda: layer.weight @ x)
                else:
                    X = rng.standard_normal((m, in_w)).astype(self.dtype)
                    xT = np.ascontiguousarray(X.T)
                    layer.timings[key] = planning.best_time(
                        lambda: _moved(layer.weight @ (_feature_major(X) if first else xT), last)
                    )
            return layer.timings[key] * n / m

        def dense() -> float:
            nd = 1 if n == 1 else 1 << (min(n, 256).bit_length() - 1)
            key = ("dense", nd, False, False)
            if key not in layer.timings:
                W = layer.dense_weight()
                B = rng.standard_normal(in_w if nd == 1 else (in_w, nd)).astype(self.dtype)
                layer.timings[key] = planning.best_time(lambda: W @ B)
            return layer.timings[key] * n / nd

        tasks = 2 * self.threads if n_chunks == 1 else n_chunks  # row blocks or chunks

        def shared(seconds: float) -> float:  # on the threads, where sharing pays
            t = split_pays(seconds, tasks, self.threads, cal)
            return seconds / t + (cal.handoff if t > 1 else 0.0)

        if forced != "auto":
            return forced, (sparse() if forced == "sparse" and self.threads > 1 else 0.0)
        most = max(1, min(self.threads, tasks))
        how, _, _ = planning.faster(
            lambda: shared(sparse()),
            dense,
            planning.sparse_bound(layer.nnz, n, cal) / most,
            planning.dense_bound(out_w, in_w, n, cal),
        )
        if how == "dense":
            return how, 0.0
        layer._dense = None  # the dense copy was only needed to measure it
        return how, sparse()

    # ------------------------------------------------------------ conveniences
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class predictions argmax_k f(x)_k (first maximum on ties)."""
        return cast(np.ndarray, np.argmax(self.forward(X), axis=1))

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
        return sum(
            L.weight.data.nbytes + L.weight.indices.nbytes + L.weight.indptr.nbytes + L.bias.nbytes
            for L in self.layers
        )

    def __repr__(self) -> str:
        return (
            f"SparseMLP(sizes={self.sizes}, activation={self.activation!r}, "
            f"dtype={self.dtype.name}, "
            f"density={self.density():.4f})"
        )


def _serial(schedule: Schedule) -> Schedule:
    """``schedule`` with every run on the calling thread."""
    return Schedule(
        schedule.executions, schedule.chunk, tuple((f, e, how, 1) for f, e, how, _ in schedule.runs)
    )


def _moved(zT: np.ndarray, last: bool) -> np.ndarray:
    """The output chunk moved back to sample-major when it is the network's (for timing)."""
    return _feature_major(zT) if last else zT


def to_sparse(
    model: MLP, *, dtype: Any = np.float64, execution: Any = "auto", threads: int | None = None
) -> SparseMLP:
    """The sparse form of ``model``: ``SparseMLP(model, dtype=..., execution=..., threads=...)``."""
    return SparseMLP(model, dtype=dtype, execution=execution, threads=threads)
