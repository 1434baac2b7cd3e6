"""Masked SGD on a pruned MLP held in sparse form: the steps of ``refprune.train.SGD``.

The alive weights of layer l (mask True, in C order = CSR order) are a vector
w_l on a fixed pattern of positions (r_k, c_k); pruned weights are not stored,
so they never receive an update and stay exactly 0.0. Unlike the inference
form (``forward``), the pattern here is the mask itself: an alive weight whose
value is 0.0 is stored, because training may move it.

One step on a batch (X, y), activations feature-major (a^T of shape (width, N)):

    forward    z_l^T = W_l a_l^T + b_l * Mb_l,   a_{l+1}^T = sigma(z_l^T)  (last layer linear)
    loss       cross_entropy: -1/N sum_n log softmax(z_n)[y_n],   dL/dz^T = (softmax - onehot) / N
               mse: 1/(N K) sum (f - t)**2,                      dL/dz^T = 2 (f - t) / (N K)
    backward   g_k = sum_n dz_l^T[r_k, n] a_l^T[c_k, n]    (the sampled product, alive k only)
               g_b = (sum_n dz_l^T[:, n]) * Mb_l
               dz_{l-1}^T = (W_l^T dz_l^T) * sigma'(z_{l-1}^T)
    update     d = g + weight_decay * w;  v = momentum * v + d  (v = d on the first step);
               w = w - lr * d  (biases: w = w - lr * (d * Mb))

which is ``refprune.train.SGD.step`` restricted to the alive entries (there the
gradient and decay of a pruned entry are 0 and the update is masked), so both
give the same weights up to the rounding of the products (tested to 1e-10
relative). ``_pass`` is this computation for one chunk of the batch, on one
screen; float64 throughout.

Sums over samples: a batch runs in chunks of samples (``plan.chunk_size``, a
function of the batch size and the widths only); within a chunk, weight and
bias gradients are summed pairwise over the samples (``products.pairwise_sum``),
and the chunks' gradients are added in chunk order. So the bits depend on the
batch and the network, never on the threads.

A step is atomic: the new weights and velocities are written into a second set
of buffers, and one assignment makes them current. An error or an interrupt at
any point leaves the optimizer exactly as it was.
"""

from __future__ import annotations

from functools import partial
from typing import Any, cast

import numpy as np
import scipy.sparse as sp

from .._checks import positive_int, real_number
from ..activations import Activation, get_activation
from ..mlp import MLP
from . import plan as planning
from .forward import check_execution, check_model, check_threads
from .plan import calibrate, chunk_size, split_pays
from .pool import run_parallel
from .products import (
    _feature_major,
    _keep_scratch,
    _pairwise_rows,
    _sampled_product,
    _take_scratch,
)

__all__ = ["SparseSGD"]

F64 = np.dtype(np.float64)


def _pattern_csr(
    shape: tuple[int, int], indices: np.ndarray, indptr: np.ndarray, values: np.ndarray
) -> sp.csr_array:
    """A CSR array whose arrays are exactly these (updating ``values`` in place updates it)."""
    A = sp.csr_array((values, indices, indptr), shape=shape, copy=False)
    A.data, A.indices, A.indptr = values, indices, indptr
    return A


def _row_sums(M: np.ndarray) -> np.ndarray:
    """Pairwise sums of the rows of M (k, n): the order of ``products.pairwise_sum``."""
    k, n = M.shape
    width = 1 << max(0, (n - 1).bit_length())
    padded = np.full((k, width), -0.0, dtype=M.dtype)  # -0.0: x + -0.0 == x for every x
    padded[:, :n] = M
    return _pairwise_rows(padded).copy()


def _dense_gradient_at(dzT: np.ndarray, aT: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """(dz^T a) at the flat positions ``flat``: the dense product (BLAS), computed in this
    thread's kept scratch array (a new (out, in) array per chunk costs page faults wherever
    the allocator gives the memory back in between)."""
    shape = (dzT.shape[0], aT.shape[0])
    buf = _take_scratch(shape[0] * shape[1], dzT.dtype)
    try:
        G = np.matmul(dzT, aT.T, out=buf.reshape(shape))
        return cast(np.ndarray, G.ravel()[flat])
    finally:
        _keep_scratch(buf)


class _Layer:
    """Alive weights of one layer on a fixed pattern, in two sets of buffers (current, next)."""

    def __init__(
        self, weight: np.ndarray, mask: np.ndarray, bias: np.ndarray, bias_mask: np.ndarray
    ):
        self.shape: tuple[int, int] = weight.shape
        n_out, n_in = self.shape
        self.flat = np.flatnonzero(mask)  # C order = CSR order
        rows, cols = np.divmod(self.flat, n_in)
        self.rows = rows.astype(np.int32)
        self.indices = cols.astype(np.int32)
        self.indptr = np.searchsorted(rows, np.arange(n_out + 1)).astype(np.int32)
        # W^T as CSR: entry k of W is entry inv[k] of W^T; values_T = values[perm]
        self.perm = np.lexsort((rows, cols))
        self.indices_T = rows[self.perm].astype(np.int32)
        self.indptr_T = np.searchsorted(cols[self.perm], np.arange(n_in + 1)).astype(np.int32)
        self.bias_mask = None if bias_mask.all() else bias_mask.astype(F64)
        values = np.ascontiguousarray(weight.ravel()[self.flat], dtype=F64)
        self.values = [values, values.copy()]
        self.values_T = [values[self.perm], values[self.perm]]
        self.W = [_pattern_csr(self.shape, self.indices, self.indptr, v) for v in self.values]
        self.WT = [
            _pattern_csr((n_in, n_out), self.indices_T, self.indptr_T, v) for v in self.values_T
        ]
        self.bias = [np.array(bias, dtype=F64), np.array(bias, dtype=F64)]
        self.velocity = [np.zeros_like(values), np.zeros_like(values)]
        self.bias_velocity = [np.zeros_like(self.bias[0]), np.zeros_like(self.bias[0])]
        self.timings: dict[tuple[str, int], float] = {}
        self._scratch: np.ndarray | None = None

    @property
    def nnz(self) -> int:
        return int(self.flat.size)

    def dense(self, k: int) -> np.ndarray:
        """Dense W of buffer set k (pruned entries 0.0), a new array."""
        return self._scatter(np.zeros(self.shape), k)

    def dense_scratch(self, k: int) -> np.ndarray:
        """Dense W of buffer set k in this layer's one scratch array, rewritten on each call
        (pruned entries are never written, so they stay 0.0). Kept between steps: a new
        (out, in) array every step costs page faults wherever the allocator returns the
        memory in between."""
        if self._scratch is None:
            self._scratch = np.zeros(self.shape)
        return self._scatter(self._scratch, k)

    def _scatter(self, W: np.ndarray, k: int) -> np.ndarray:
        """W with the alive entries of buffer set k written in (W[flat] = values[k])."""
        W.ravel()[self.flat] = self.values[k]
        return W

    def effective_bias(self, k: int) -> np.ndarray:
        return self.bias[k] if self.bias_mask is None else self.bias[k] * self.bias_mask


class SparseSGD:
    """SGD with momentum and weight decay on the alive weights of a pruned MLP, in sparse form.

    Parameters
    ----------
    model : MLP
        Copied at construction (the caller's model is never modified); read the
        result with ``to_model()``.
    lr : float > 0; momentum : float in [0, 1); weight_decay : float >= 0
        As in ``refprune.train.SGD``.
    execution : "auto" (default), "dense", "sparse", or one per layer
        How each layer's three products run (forward, backward, weight
        gradient); "auto" measures both at first use for the batch size
        (``refprune.sparse.plan``). The weights are stored sparse either way.
    threads : int, optional
        Threads for the chunks of a batch, the calling one included (default:
        the cores available). Results do not depend on it.

    One step at a time: ``step`` is not meant to be called from several threads
    on the same optimizer.
    """

    def __init__(
        self,
        model: MLP,
        *,
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        execution: Any = "auto",
        threads: int | None = None,
    ):
        check_model(model)
        self.lr = real_number(lr, "lr", low=0.0, low_open=True)
        self.momentum = real_number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        self.weight_decay = real_number(weight_decay, "weight_decay", low=0.0)
        self.execution = check_execution(execution, model.n_layers)
        self.threads = check_threads(threads)
        self._model = model.copy()
        p, m = model.params, model.masks
        self.layers = [
            _Layer(
                p[f"layers.{l}.weight"],
                m[f"layers.{l}.weight"],
                p[f"layers.{l}.bias"],
                m[f"layers.{l}.bias"],
            )
            for l in range(model.n_layers)
        ]
        self._state = (0, False)  # (current buffer set, whether a velocity exists)
        self._plans: dict[int, tuple[tuple[str, ...], int, int]] = {}

    @property
    def _act(self) -> Activation:
        return get_activation(self._model.activation)

    # ------------------------------------------------------------ one step
    def step(self, X: np.ndarray, y: np.ndarray, lr: float | None = None) -> float:
        """One SGD update on the batch (X, y); returns the batch loss before the update."""
        lr = self.lr if lr is None else real_number(lr, "lr", low=0.0, low_open=True)
        X, y = self._check(X, y)
        k, moving = self._state
        loss, grads = self._loss_and_grads(X, y, k)
        nxt = 1 - k
        for L, (gw, gb) in zip(self.layers, grads):
            self._update(
                L.values[k], gw, L.velocity[k], moving, lr, None, L.values[nxt], L.velocity[nxt]
            )
            self._update(
                L.bias[k],
                gb,
                L.bias_velocity[k],
                moving,
                lr,
                L.bias_mask,
                L.bias[nxt],
                L.bias_velocity[nxt],
            )
            np.take(L.values[nxt], L.perm, out=L.values_T[nxt])
        self._state = (nxt, bool(self.momentum))  # the commit: one assignment
        return loss

    def _update(
        self,
        w: np.ndarray,
        g: np.ndarray,
        v: np.ndarray,
        moving: bool,
        lr: float,
        mask: np.ndarray | None,
        w_out: np.ndarray,
        v_out: np.ndarray,
    ) -> None:
        """d = g + wd w; v' = momentum v + d (or d); w' = w - lr d (masked); into w_out, v_out."""
        d = g + self.weight_decay * w if self.weight_decay else g
        if self.momentum:
            d = self.momentum * v + d if moving else d
            v_out[...] = d
        if mask is not None:
            d = d * mask
        np.subtract(w, lr * d, out=w_out)

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, Any]]:
        """Mean batch loss and its gradients: weights as CSR arrays on the alive pattern, biases
        dense.

        A weight gradient stores every alive position (its value may be 0.0).
        """
        X, y = self._check(X, y)
        loss, grads = self._loss_and_grads(X, y, self._state[0])
        out: dict[str, Any] = {}
        for l, (L, (gw, gb)) in enumerate(zip(self.layers, grads)):
            out[f"layers.{l}.weight"] = sp.csr_array(
                (gw, L.indices.copy(), L.indptr.copy()), shape=L.shape
            )
            out[f"layers.{l}.bias"] = gb
        return loss, out

    def _check(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """X and y checked (``MLP.check_inputs``; y is required). X is not copied: a step only
        reads it (its chunks are copied feature-major), so the caller's array stays as it was."""
        X, y = self._model.check_inputs(X, y, require_y=True, copy=False)
        return X, y

    # ------------------------------------------------------------ the math of one chunk
    def _pass(
        self,
        aT: np.ndarray,
        y: np.ndarray,
        n_total: int,
        k: int,
        executions: tuple[str, ...],
        dense: list[np.ndarray | None],
    ) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
        """Forward and backward over the samples of aT (feature-major); the loss and gradients
        as this chunk's share of the mean over ``n_total`` samples."""
        acts, pre = [aT], []
        for l, L in enumerate(self.layers):
            W = L.W[k] if executions[l] == "sparse" else dense[l]
            zT = W @ acts[-1]  # SciPy CSR product, or BLAS
            zT += L.effective_bias(k)[:, None]
            pre.append(zT)
            if l < len(self.layers) - 1:
                acts.append(self._act.value(zT))
        loss, dzT = self._loss_head(pre[-1], y, n_total)
        grads: list[Any] = [None] * len(self.layers)
        for l in range(len(self.layers) - 1, -1, -1):
            L = self.layers[l]
            if executions[l] == "sparse":  # only at the alive positions
                gw = _sampled_product(dzT, acts[l], L.rows, L.indices, np.empty(L.nnz))
            else:
                gw = _dense_gradient_at(dzT, acts[l], L.flat)
            gb = _row_sums(dzT)
            grads[l] = (gw, gb if L.bias_mask is None else gb * L.bias_mask)
            if l > 0:
                WT = L.WT[k] if executions[l] == "sparse" else cast(np.ndarray, dense[l]).T
                dzT = (WT @ dzT) * self._act.first(pre[l - 1])
        return loss, grads

    def _loss_head(self, zT: np.ndarray, y: np.ndarray, n_total: int) -> tuple[float, np.ndarray]:
        """This chunk's share of the mean loss over ``n_total`` samples; dL/dz^T for z^T (K, n)."""
        n = zT.shape[1]
        if self._model.loss == "cross_entropy":
            shifted = zT - zT.max(axis=0)
            logp = shifted - np.log(np.exp(shifted).sum(axis=0))
            cols = np.arange(n)
            loss = float(-logp[y, cols].sum() / n_total)
            d = np.exp(logp)
            d[y, cols] -= 1.0
            return loss, d * (1.0 / n_total)
        diff = zT - y.T
        size = n_total * zT.shape[0]
        return float((diff * diff).sum() / size), diff * (2.0 / size)

    # ------------------------------------------------------------ chunks and threads
    def _loss_and_grads(
        self,
        X: np.ndarray,
        y: np.ndarray,
        k: int,
        plan: tuple[tuple[str, ...], int, int] | None = None,
    ) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
        """The batch in chunks (on the threads where that pays), gradients added in chunk order;
        run as ``plan`` says (default: the batch size's plan)."""
        n = X.shape[0]
        executions, step, threads = self._plan(n) if plan is None else plan
        dense = [
            L.dense_scratch(k) if how == "dense" else None
            for L, how in zip(self.layers, executions)
        ]
        bounds = [(s, min(s + step, n)) for s in range(0, n, step)]
        parts: list[Any] = [None] * len(bounds)

        def chunk(c: int) -> None:
            s, e = bounds[c]
            parts[c] = self._pass(_feature_major(X[s:e]), y[s:e], n, k, executions, dense)

        run_parallel(chunk, len(bounds), threads)
        loss, grads = parts[0]
        for part_loss, part_grads in parts[1:]:
            loss += part_loss
            for (gw, gb), (pw, pb) in zip(grads, part_grads):
                gw += pw
                gb += pb
        return loss, grads

    def plan(self, batch: int) -> list[str]:
        """Execution of each layer ("dense" or "sparse") for a batch of this size (pin it by
        passing it back as ``execution=``)."""
        return list(self._plan(positive_int(batch, "batch"))[0])

    def _plan(self, n: int) -> tuple[tuple[str, ...], int, int]:
        """(executions, chunk size, threads) for a batch of n."""
        if n not in self._plans:
            cal = calibrate(F64)
            work = 3 * sum(L.nnz for L in self.layers)  # forward, backward, gradient
            step = chunk_size(n, max(self._model.sizes), F64.itemsize, work) if n > 1 else 1
            n_chunks = -(-n // step)
            executions, seconds = [], 0.0
            for l, (L, forced) in enumerate(zip(self.layers, self.execution)):
                how, ts = self._choose(l, L, forced, n, step, n_chunks, cal)
                executions.append(how)
                seconds += ts
            big_dense = any(  # a dense product that BLAS itself runs on several threads
                how == "dense" and L.shape[0] * L.shape[1] * step >= planning.CHUNK_WORK
                for L, how in zip(self.layers, executions)
            )
            if all(how == "dense" for how in executions):  # BLAS on the whole batch
                step, threads = n, 1
            elif big_dense:  # BLAS has threads of its own
                threads = 1
            else:
                threads = split_pays(seconds, n_chunks, self.threads, cal)
            planned = (tuple(executions), step, threads)
            if planning.measuring():
                planned = self._measured(n, planned, cal)
            self._plans[n] = planned
            for l, L in enumerate(self.layers):  # a dense copy only where some plan runs dense
                if all(p[0][l] == "sparse" for p in self._plans.values()):
                    L._scratch = None
        return self._plans[n]

    def _measured(
        self, n: int, planned: tuple[tuple[str, ...], int, int], cal: planning.Calibration
    ) -> tuple[tuple[str, ...], int, int]:
        """The fastest of the whole-step contenders (as ``SparseMLP``'s forward plan): the
        planned one, the same on the calling thread alone, and, where no layer is pinned,
        every layer sparse (on the threads as planned, and not) and every layer dense; each
        timed computing the loss and gradients (no update) of min(n, 4 chunks) samples."""
        executions, step, threads = planned
        candidates = {planned: 0.0, (executions, step, 1): 0.0}
        m = min(n, 4 * step)
        if all(how == "auto" for how in self.execution):
            layers = len(self.layers)
            n_chunks = -(-n // step)
            work = sum(3 * planning.sparse_estimate(L.nnz, n, cal) for L in self.layers)
            shared = split_pays(work, n_chunks, self.threads, cal)
            candidates.setdefault((("sparse",) * layers, step, shared), 0.0)
            candidates.setdefault((("sparse",) * layers, step, 1), 0.0)
            low = sum(3 * planning.dense_bound(*L.shape, m, cal) for L in self.layers)
            candidates.setdefault((("dense",) * layers, n, 1), low)  # timed if it can win
        if len(candidates) == 1:
            return planned
        rng = np.random.default_rng(n)
        X = rng.standard_normal((m, self._model.sizes[0]))
        y: np.ndarray
        if self._model.loss == "cross_entropy":
            y = rng.integers(0, self._model.sizes[-1], m)
        else:
            y = rng.standard_normal((m, self._model.sizes[-1]))
        k = self._state[0]
        unique = sorted(candidates, key=lambda plan: "dense" in plan[0])  # BLAS users last
        best = planning.fastest(
            [partial(self._loss_and_grads, X, y, k, plan) for plan in unique],
            list(candidates.values()),
            planning.rest(
                threaded=any(plan[2] > 1 for plan in unique),
                after_blas=any("dense" in plan[0] for plan in unique)
                or any(key[0] == "dense" for L in self.layers for key in L.timings),
            ),
        )
        return unique[best]

    def _choose(
        self,
        l: int,
        L: _Layer,
        forced: str,
        n: int,
        step: int,
        n_chunks: int,
        cal: planning.Calibration,
    ) -> tuple[str, float]:
        """("dense" or "sparse", one thread's seconds for the layer's sparse step on the batch)."""
        out_w, in_w = L.shape
        rng = np.random.default_rng(l)

        m = step if n >= step else 1 << (n.bit_length() - 1)  # measured at a power of two

        def sparse() -> float:
            if not planning.measuring():
                return 3 * planning.sparse_estimate(L.nnz, n, cal)
            key = ("sparse", m)
            if key not in L.timings:
                aT = rng.standard_normal((in_w, m))
                dzT = rng.standard_normal((out_w, m))
                buf = np.empty(L.nnz)
                L.timings[key] = planning.best_time(
                    lambda: (
                        L.W[0] @ aT,
                        L.WT[0] @ dzT,
                        _sampled_product(dzT, aT, L.rows, L.indices, buf),
                    )
                )
            return L.timings[key] * n / m

        def dense() -> float:
            nd = 1 << (min(n, 256).bit_length() - 1)
            key = ("dense", nd)
            if key not in L.timings:
                W = L.dense(0)
                aT = rng.standard_normal((in_w, nd))
                dzT = rng.standard_normal((out_w, nd))
                L.timings[key] = planning.best_time(
                    lambda: (W @ aT, W.T @ dzT, (dzT @ aT.T).ravel()[L.flat])
                )
            return L.timings[key] * n / nd

        if forced != "auto":
            return forced, (sparse() if forced == "sparse" and self.threads > 1 else 0.0)

        def shared(seconds: float) -> float:
            t = split_pays(seconds, n_chunks, self.threads, cal)
            return seconds / t + (cal.handoff if t > 1 else 0.0)

        most = max(1, min(self.threads, n_chunks))
        how, _, _ = planning.faster(
            lambda: shared(sparse()),
            dense,
            3 * planning.sparse_bound(L.nnz, n, cal) / most,
            3 * planning.dense_bound(out_w, in_w, n, cal),
        )
        return how, (sparse() if how == "sparse" else 0.0)

    # ------------------------------------------------------------ results
    def to_model(self) -> MLP:
        """A new MLP (copy of the model given at construction) holding the trained parameters."""
        k = self._state[0]
        model = self._model.copy()
        for l, L in enumerate(self.layers):
            W = np.zeros(L.shape)
            W.ravel()[L.flat] = L.values[k]
            model.params[f"layers.{l}.weight"] = W
            model.params[f"layers.{l}.bias"] = L.effective_bias(k).copy()
        return model

    def density(self) -> float:
        """Alive fraction of all weight entries."""
        return sum(L.nnz for L in self.layers) / sum(L.shape[0] * L.shape[1] for L in self.layers)
