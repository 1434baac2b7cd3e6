"""Masked SGD on a pruned MLP held in sparse form: the same steps as ``refprune.train.SGD``.

The alive weights of layer l (mask True, in C order = CSR order) are a vector
w_l with fixed row and column indices (r_k, c_k); pruned weights are not stored,
so they never receive an update and stay exactly 0.0. Unlike the inference form
(``refprune.sparse``), the pattern here is the mask itself: an alive weight whose
value is 0.0 is stored, because training may move it.

One step on a batch (X, y), activations feature-major (a^T of shape (width, N)):

    forward    z_l^T = W_l a_l^T + b_l * Mb_l,   a_{l+1}^T = sigma(z_l^T) (last layer linear)
    loss       cross_entropy: -1/N sum_n log softmax(z_n)[y_n],  dL/dz^T = (softmax - onehot) / N
               mse: 1/(N K) sum (f - t)**2,                     dL/dz^T = 2 (f - t) / (N K)
    backward   g_k = sum_n dz_l^T[r_k, n] a_l^T[c_k, n]  (sampled dense-dense product, only at
                                                          the stored positions)
               g_b = (sum_n dz_l^T[:, n]) * Mb_l
               da_l^T = W_l^T dz_l^T  (CSR of W_l^T, values kept in step with w_l),
               dz_{l-1}^T = da_l^T * sigma'(z_{l-1}^T)
    update     d = g + weight_decay * w;  v = momentum * v + d (v = d on the first step);
               w = w - lr * d  (biases: w = w - lr * (d * Mb))

which is ``refprune.train.SGD.step`` restricted to the alive entries (there the
gradient and decay of a pruned entry are 0 and the update is masked), so both
produce the same weights up to rounding of the products (tested to 1e-10 relative
after several steps). float64 throughout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._checks import positive_int, real_number
from .activations import get_activation
from .mlp import MLP
from .sparse import MIN_SPLIT_CHUNK, check_execution, check_model, chunk_size
from .sparse_kernels import (BLOCKS_PER_THREAD, T0, T0_CHUNKS, available_cores, csr_from_positions,
                             csr_matmul, predicted_seconds, row_blocks, run_tasks, sampled_product, sparse_blocks,
                             sparse_is_faster, transpose)

F64 = np.dtype(np.float64)


class _TrainLayer:
    """Alive weights of one layer as values on a fixed pattern, with both orientations as CSR."""

    def __init__(self, weight: np.ndarray, mask: np.ndarray, bias: np.ndarray, bias_mask: np.ndarray):
        self.shape: tuple[int, int] = weight.shape
        n_out, n_in = self.shape
        self.flat = np.flatnonzero(mask)                       # C order = CSR order
        self.rows, self.cols = np.divmod(self.flat, n_in)
        self.values = np.ascontiguousarray(weight.ravel()[self.flat], dtype=F64)
        self.W = csr_from_positions(self.shape, self.flat, self.values)      # shares self.values
        # W^T in CSR: entry k of W sits at position inv[k] of W^T's C order
        order = np.lexsort((self.rows, self.cols))             # sort by column, then row
        self.perm = order                                      # values_T = values[perm]
        self.values_T = self.values[self.perm]
        flat_T = self.cols[order] * n_out + self.rows[order]
        self.WT = csr_from_positions((n_in, n_out), flat_T, self.values_T)  # shares self.values_T
        self.bias = np.array(bias, dtype=F64)
        self.bias_mask = None if bias_mask.all() else bias_mask.astype(F64)
        self.velocity: np.ndarray | None = None
        self.bias_velocity: np.ndarray | None = None
        self._blocks: dict[tuple[str, int], list[sp.csr_array]] = {}
        self._dense: np.ndarray | None = None
        self._dense_fresh = False

    @property
    def nnz(self) -> int:
        return int(self.flat.size)

    def blocks(self, which: str, threads: int) -> list[sp.csr_array]:
        key = (which, threads)
        if key not in self._blocks:
            self._blocks[key] = row_blocks(self.W if which == "W" else self.WT,
                                           1 if threads == 1 else BLOCKS_PER_THREAD * threads)
        return self._blocks[key]

    def dense(self) -> np.ndarray:
        """Dense W (pruned entries 0.0), rebuilt from the values after each update."""
        if self._dense is None:
            self._dense = np.zeros(self.shape)
        if not self._dense_fresh:
            self._dense.ravel()[self.flat] = self.values
            self._dense_fresh = True
        return self._dense

    def effective_bias(self) -> np.ndarray:
        return self.bias if self.bias_mask is None else self.bias * self.bias_mask

    def values_changed(self) -> None:
        np.take(self.values, self.perm, out=self.values_T)
        self._dense_fresh = False


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
        How each layer's three products run (forward, backward, weight gradient);
        "auto" uses the cost model of ``refprune.sparse_kernels`` at each batch size.
        The weights are stored sparse either way.
    threads : int, optional
        Threads for the sparse products (default: cores available, at most 2).
    """

    def __init__(self, model: MLP, *, lr: float = 0.1, momentum: float = 0.0,
                 weight_decay: float = 0.0, execution: Any = "auto", threads: int | None = None):
        check_model(model)
        self.lr = real_number(lr, "lr", low=0.0, low_open=True)
        self.momentum = real_number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        self.weight_decay = real_number(weight_decay, "weight_decay", low=0.0)
        self.execution = check_execution(execution, model.n_layers)
        self.threads = min(2, available_cores()) if threads is None else positive_int(threads, "threads")
        self._model = model.copy()
        self._act = get_activation(model.activation)
        p, m = model.params, model.masks
        self.layers = [_TrainLayer(p[f"layers.{l}.weight"], m[f"layers.{l}.weight"],
                                   p[f"layers.{l}.bias"], m[f"layers.{l}.bias"])
                       for l in range(model.n_layers)]
        self._plans: dict[int, tuple[tuple[str, int, bool], ...]] = {}

    # ------------------------------------------------------------ planning
    def plan(self, batch: int) -> list[tuple[str, int, bool]]:
        """Per layer: (execution, sparse threads, weight gradient sampled?) at this batch size."""
        batch = positive_int(batch, "batch")
        if batch not in self._plans:
            steps = []
            chunked = len(self._bounds(batch)) > 1
            for L, forced in zip(self.layers, self.execution):
                # a layer's step is three products of about nnz * batch multiply-adds each; split
                # by chunks (Python threads, T0_CHUNKS) or by rows (activations cross the cores)
                exchanged = 0 if chunked else (L.shape[0] + L.shape[1]) * batch * F64.itemsize
                blocks = sparse_blocks(3 * L.nnz, batch, F64, self.threads, 0.0,
                                       T0_CHUNKS if chunked else T0, exchanged)
                sparse = (sparse_is_faster(L.shape, L.nnz, batch, F64, self.threads)
                          if forced == "auto" else forced == "sparse")
                sampled = sparse and (min(predicted_seconds("sampled", L.shape, L.nnz, batch, F64, t)
                                          for t in {1, self.threads})
                                      < predicted_seconds("dense", L.shape, L.nnz, batch, F64, self.threads))
                steps.append(("sparse" if sparse else "dense", blocks, sampled or forced == "sparse"))
            self._plans[batch] = tuple(steps)
        return list(self._plans[batch])

    # ------------------------------------------------------------ one step
    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, Any]]:
        """Mean batch loss and its gradients: weights as CSR arrays on the alive pattern, biases dense.

        A weight gradient stores every alive position (its value may be 0.0).
        """
        X, y = self._model.check_inputs(X, y, require_y=True)
        loss, grads = self._loss_and_grads(X, y)
        out: dict[str, Any] = {}
        for l, (L, (gw, gb)) in enumerate(zip(self.layers, grads)):
            out[f"layers.{l}.weight"] = csr_from_positions(L.shape, L.flat, gw)
            out[f"layers.{l}.bias"] = gb
        return loss, out

    def step(self, X: np.ndarray, y: np.ndarray, lr: float | None = None) -> float:
        """One SGD update on the batch (X, y); returns the batch loss before the update."""
        lr = self.lr if lr is None else real_number(lr, "lr", low=0.0, low_open=True)
        X, y = self._model.check_inputs(X, y, require_y=True)
        loss, grads = self._loss_and_grads(X, y)
        for L, (gw, gb) in zip(self.layers, grads):
            L.velocity = self._update(L.values, gw, L.velocity, lr, None)
            L.bias_velocity = self._update(L.bias, gb, L.bias_velocity, lr, L.bias_mask)
            L.values_changed()
        return loss

    def _update(self, w: np.ndarray, g: np.ndarray, v: np.ndarray | None, lr: float,
                mask: np.ndarray | None) -> np.ndarray | None:
        """In place: d = g + wd w; v = momentum v + d; w -= lr * d (masked); returns the new v."""
        d = g
        if self.weight_decay:
            d = d + self.weight_decay * w
        if self.momentum:
            d = d.copy() if v is None else self.momentum * v + d
            v = d
        if mask is not None:
            d = d * mask
        w -= lr * d
        return v

    def _bounds(self, n: int) -> list[tuple[int, int]]:
        """The chunks of a batch of n: four where they stay >= MIN_SPLIT_CHUNK samples (a late
        thread still takes a share), at most ``chunk_size``; they depend on n only."""
        step = min(chunk_size(self._model.sizes[0], F64.itemsize), max(MIN_SPLIT_CHUNK, -(-n // 4)))
        return [(s, min(s + step, n)) for s in range(0, n, step)]

    def _loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
        """Loss and gradients of the batch, summed over chunks of samples in chunk order.

        When every layer runs sparse with a sampled gradient and there are
        several chunks (``_bounds``), the step runs chunk by chunk (on the threads
        when the plan splits some layer: each thread takes the next chunk through
        the whole step) and the partial losses and gradients are added in chunk
        order; otherwise one pass over the batch (dense products lose more to
        small chunks than they gain) splits the products the plan splits. The
        chunks depend on the batch alone, so every thread count gives the same
        bits.
        """
        n = X.shape[0]
        plan = self.plan(n)
        bounds = self._bounds(n)
        if len(bounds) == 1 or not all(how == "sparse" and sampled for how, _, sampled in plan):
            return self._pass(transpose(X, self.threads), y, n, plan, self.threads)
        # chunk by chunk even on one thread: a chunk's activations stay in cache (784-300-100-10
        # at 1 %, batch 256, one thread: 0.86 ms in chunks of 64, 2.75 ms in one pass)
        single = [("sparse", 1, True)] * len(plan)
        threads = self.threads if any(blocks > 1 for _, blocks, _ in plan) else 1
        parts = run_tasks([lambda s=s, e=e: self._pass(transpose(X[s:e]), y[s:e], n, single, 1)
                           for s, e in bounds], threads)
        loss = parts[0][0]
        grads = [(gw.copy(), gb.copy()) for gw, gb in parts[0][1]]
        for part_loss, part_grads in parts[1:]:
            loss += part_loss
            for (gw, gb), (pw, pb) in zip(grads, part_grads):
                gw += pw
                gb += pb
        return loss, grads

    def _pass(self, aT: np.ndarray, y: np.ndarray, n_total: int, plan, threads: int):
        """Forward and backward over the samples of aT (feature-major); loss and gradients as
        contributions to the mean over ``n_total`` samples."""
        acts, pre = [aT], []
        for l, (L, (how, blocks, _)) in enumerate(zip(self.layers, plan)):
            zT = (csr_matmul(L.blocks("W", blocks), acts[-1], blocks) if how == "sparse"
                  else L.dense() @ acts[-1])
            zT += L.effective_bias()[:, None]
            pre.append(zT)
            if l < len(self.layers) - 1:
                acts.append(self._act.value(zT))
        loss, dzT = self._loss_head(pre[-1], y, n_total)
        grads: list[tuple[np.ndarray, np.ndarray]] = [None] * len(self.layers)  # type: ignore[list-item]
        for l in range(len(self.layers) - 1, -1, -1):
            L, (how, blocks, sampled) = self.layers[l], plan[l]
            if sampled:
                gw = sampled_product(dzT, acts[l], L.blocks("W", blocks), np.empty(L.nnz), blocks)
            else:
                gw = (dzT @ acts[l].T).ravel()[L.flat]
            gb = dzT.sum(axis=1)
            if L.bias_mask is not None:
                gb *= L.bias_mask
            grads[l] = (gw, gb)
            if l > 0:
                daT = (csr_matmul(L.blocks("WT", blocks), dzT, blocks) if how == "sparse"
                       else L.dense().T @ dzT)
                dzT = daT * self._act.first(pre[l - 1])
        return loss, grads

    def _loss_head(self, zT: np.ndarray, y: np.ndarray, n_total: int) -> tuple[float, np.ndarray]:
        """This chunk's share of the mean loss over ``n_total`` samples, and dL/dz^T for z^T (K, n)."""
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

    # ------------------------------------------------------------ results
    def to_model(self) -> MLP:
        """A new MLP (copy of the model given at construction) holding the trained parameters."""
        model = self._model.copy()
        for l, L in enumerate(self.layers):
            W = np.zeros(L.shape)
            W.ravel()[L.flat] = L.values
            model.params[f"layers.{l}.weight"] = W
            model.params[f"layers.{l}.bias"] = L.effective_bias().copy()
        return model

    def density(self) -> float:
        """Alive fraction of all weight entries."""
        return sum(L.nnz for L in self.layers) / sum(L.shape[0] * L.shape[1] for L in self.layers)
