"""Wrong backends of the sparse_execution family: sparse kernels that do not compute what the
dense masked network computes.

``CSRKernel`` is a sparse kernel of its own (SciPy CSR matrices built from a stored pattern,
the forward pass, backpropagation through the CSR matrices and the sampled weight gradient
written out here), with one hook per decision a real kernel makes: which positions it
stores, which values it reads, how it orients the matrix, where it puts gradients, what
the step updates, the precision of its values. With every hook at its default it passes
the family (``tests/test_sparse_execution_family.py``); each subclass changes one hook.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from refprune.activations import get_activation, softmax_parts

from .base import WrongBackend


class CSRKernel(WrongBackend):
    """A pruned MLP on SciPy CSR matrices (feature-major: z^T = W a^T + b), one SGD step by
    hand-written backpropagation; the hooks below are the kernel's decisions."""

    name = "SciPy CSR kernel with hooks"

    # ----------------------------------------------------------------- the hooks
    def stored(self, weight: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The positions the sparse matrix stores: the mask (alive zeros included)."""
        return mask

    def values(self, weight: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The dense values the stored positions are read from: w * M."""
        return weight * mask

    def bias_values(self, bias: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return bias * mask

    def orient(self, W: sp.csr_array) -> sp.csr_array:
        """The matrix that multiplies a^T: W itself (shape (out, in))."""
        return W

    def value_dtype(self) -> np.dtype:
        return np.dtype(np.float64)

    def updated(self, stored: np.ndarray) -> np.ndarray:
        """The positions a step updates: the stored ones (every other entry is 0.0)."""
        return stored

    def steps_bias(self) -> bool:
        return True

    # ----------------------------------------------------------------- the kernel
    def _matrices(self, params, masks):
        L = sum(1 for n in params if n.endswith(".weight"))
        out = []
        for l in range(L):
            w, m = np.asarray(params[f"layers.{l}.weight"]), np.asarray(masks[f"layers.{l}.weight"])
            keep = self.stored(w, m)
            rows, cols = np.nonzero(keep)
            vals = self.values(w, m)[rows, cols].astype(self.value_dtype())
            W = sp.csr_array((vals, (rows, cols)), shape=w.shape)
            b = self.bias_values(
                np.asarray(params[f"layers.{l}.bias"]), np.asarray(masks[f"layers.{l}.bias"])
            )
            out.append((self.orient(W), b, keep))
        return out

    def _forward(self, layers, X, activation):
        act = get_activation(activation)
        aT, acts, zs = np.asarray(X, dtype=np.float64).T.copy(), [], []
        for l, (W, b, _) in enumerate(layers):
            acts.append(aT)
            zT = np.asarray(W @ aT, dtype=np.float64) + b[:, None]
            zs.append(zT)
            aT = act.value(zT) if l < len(layers) - 1 else zT
        return acts, zs

    def sparse_forward(self, *, params, masks, X, activation):
        layers = self._matrices(params, masks)
        return self._forward(layers, X, activation)[1][-1].T.copy()

    def sparse_train_step(self, *, params, masks, X, y, activation, loss, lr, weight_decay):
        act = get_activation(activation)
        layers = self._matrices(params, masks)
        acts, zs = self._forward(layers, X, activation)
        fT = zs[-1]
        K, N = fT.shape
        if loss == "cross_entropy":
            logp, p, _ = softmax_parts(fT.T)
            labels = np.asarray(y, dtype=int)
            value = float(-logp[np.arange(N), labels].mean())
            p[np.arange(N), labels] -= 1.0
            dzT = p.T / N
        else:
            r = fT - np.asarray(y, dtype=np.float64).reshape(N, K).T
            value = float((r * r).mean())
            dzT = r * (2.0 / (N * K))
        new = {}
        for l in range(len(layers) - 1, -1, -1):
            W, b, keep = layers[l]
            name = f"layers.{l}"
            w0 = np.asarray(params[f"{name}.weight"]) * masks[f"{name}.weight"]
            grad = dzT @ acts[l].T  # g[i, j] = sum_n dz[i, n] a[j, n]
            where = self.updated(keep)
            d = grad + weight_decay * w0
            new[f"{name}.weight"] = np.where(where, w0 - lr * d, 0.0)
            b0 = np.asarray(params[f"{name}.bias"]) * masks[f"{name}.bias"]
            if self.steps_bias():
                db = dzT.sum(axis=1) + weight_decay * b0
                new[f"{name}.bias"] = np.where(masks[f"{name}.bias"], b0 - lr * db, 0.0)
            else:
                new[f"{name}.bias"] = np.where(masks[f"{name}.bias"], b0, 0.0)
            if l > 0:
                dzT = np.asarray(W.T @ dzT, dtype=np.float64) * act.first(zs[l - 1])
        return {"params": {n: new[n] for n in params}, "loss": value}


# ============================================================================== defects
class TransposedCSR(CSRKernel):
    """A square layer is multiplied by W^T: the CSR matrix was built from the transposed
    weight, which only a square layer's shape check lets through.

    Models building the sparse matrix for ``x @ W_csr`` from W (out, in) instead of W.T,
    the classic orientation slip between ``F.linear``'s (out, in) weights and a
    sample-major product.
    """

    name = "square layers multiplied by the transposed CSR matrix"
    family = "sparse_execution"

    def orient(self, W):
        return W.T.tocsr() if W.shape[0] == W.shape[1] else W


class AliveZerosDropped(CSRKernel):
    """Alive weights equal to 0.0 are not stored, so they never get a gradient and stay 0.0.

    Models building the training pattern with ``to_sparse_csr()`` / ``csr_matrix(W * M)``,
    which keep the non-zeros, not the mask.
    """

    name = "alive zeros dropped from the pattern"
    family = "sparse_execution"

    def stored(self, weight, mask):
        return mask & (weight != 0)


class PrunedRevived(CSRKernel):
    """The step puts the dense gradient at every position, pruned ones included.

    Models a kernel that computes the weight gradient as the dense product dz^T a and
    applies it to the whole matrix instead of sampling it at the stored pattern: pruned
    weights come back to life after one step.
    """

    name = "gradient applied at every position"
    family = "sparse_execution"

    def updated(self, stored):
        return np.ones_like(stored, dtype=bool)


class BiasNotStepped(CSRKernel):
    """The step updates the CSR weights only: the biases keep their values.

    Models an optimizer handed only the sparse matrices' value arrays (the parameters it
    was built on), with the dense biases left out of its parameter list.
    """

    name = "biases left out of the sparse step"
    family = "sparse_execution"

    def steps_bias(self):
        return False


class RawWeightsStored(CSRKernel):
    """The sparse matrix holds the non-zeros of the raw weights: values at pruned entries
    are read, and alive zeros are not stored.

    Models converting ``weight_orig`` (torch's reparametrisation keeps the pruned values
    there) instead of ``weight = weight_orig * weight_mask`` to the sparse format.
    """

    name = "CSR of the raw weights, mask ignored"
    family = "sparse_execution"

    def stored(self, weight, mask):
        return weight != 0

    def values(self, weight, mask):
        return weight


class BiasMaskIgnored(CSRKernel):
    """Pruned bias entries are added anyway: the bias is used without its mask.

    Models a kernel that converts the weight matrices with their masks but copies the
    dense bias as it is, so a pruned bias (structured pruning removes it) keeps acting.
    """

    name = "bias used without its mask"
    family = "sparse_execution"

    def bias_values(self, bias, mask):
        return np.asarray(bias, dtype=np.float64)


class Float32Values(CSRKernel):
    """The sparse matrices hold float32 values.

    Models ``torch.sparse_csr_tensor`` / ``scipy.sparse`` built from values whose dtype
    was left to a default of float32 (torch's default dtype), a precision loss of about
    1e-7 that no summation order explains.
    """

    name = "float32 values in the sparse matrices"
    family = "sparse_execution"

    def value_dtype(self):
        return np.dtype(np.float32)
