"""Wrong backends of the curvature family: losses, gradients, Hessian-vector products, diagonals."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from conformance.backend import flat_names, flatten
from refprune.activations import get_activation, softmax_parts

from .base import WrongBackend


class MSEMeanOverBatchOnly(WrongBackend):
    """Mean-squared error averaged over the N samples only, summed over the K outputs.

    L = 1/N sum_n ||f_n - t_n||^2 instead of the documented 1/(N K) sum (f - t)^2
    (PyTorch's ``MSELoss(reduction="mean")``): loss, gradient, HVP and Hessians
    are all K times too large. Models the textbook per-sample squared norm
    ``((f - t) ** 2).sum(1).mean()``; invisible when K = 1.
    """

    name = "mse mean over the batch only"
    family = "curvature"

    @staticmethod
    def _k(y, loss) -> float:
        return float(np.shape(y)[1]) if loss == "mse" else 1.0

    def loss_value(self, *, params, X, y, activation, loss):
        return super().loss_value(
            params=params, X=X, y=y, activation=activation, loss=loss
        ) * self._k(y, loss)

    def _scaled(self, d, y, loss):
        k = self._k(y, loss)
        return {n: v * k for n, v in d.items()}

    def gradient(self, *, params, X, y, activation, loss):
        return self._scaled(
            super().gradient(params=params, X=X, y=y, activation=activation, loss=loss), y, loss
        )

    def hvp(self, *, params, X, y, v, activation, loss):
        return self._scaled(
            super().hvp(params=params, X=X, y=y, v=v, activation=activation, loss=loss), y, loss
        )

    def full_hessian(self, *, params, X, y, activation, loss):
        return super().full_hessian(
            params=params, X=X, y=y, activation=activation, loss=loss
        ) * self._k(y, loss)

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        return self._scaled(
            super().hessian_diag(
                params=params, X=X, y=y, activation=activation, loss=loss, method=method
            ),
            y,
            loss,
        )

    def hutchinson_diag(self, *, params, X, y, activation, loss, probes):
        return self._scaled(
            super().hutchinson_diag(
                params=params, X=X, y=y, activation=activation, loss=loss, probes=probes
            ),
            y,
            loss,
        )


class GGNReportedAsExact(WrongBackend):
    """The generalised Gauss-Newton diagonal returned when the exact Hessian diagonal is asked for.

    Drops the sigma''(z) * (delta W) terms, so it agrees with the exact
    diagonal for ReLU and identity networks and differs for tanh and sigmoid.
    Models reporting a Gauss-Newton or Fisher diagonal (what most curvature
    libraries compute cheaply) under the name "Hessian diagonal".
    """

    name = "GGN reported as exact"
    family = "curvature"

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        if method == "exact":
            method = "ggn"
        return super().hessian_diag(
            params=params, X=X, y=y, activation=activation, loss=loss, method=method
        )


def obd_diagonal(
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    activation: str,
    loss: str,
    *,
    sigma2: bool = True,
) -> dict[str, np.ndarray]:
    """The Becker-LeCun diagonal recursion (the reference's ``"obd"`` method), rebuilt.

    h_L = diag(H_out) per sample; h_l = sigma'(z_l)**2 * (h_{l+1} @ W_l**2)
    + sigma''(z_l) * (delta_{l+1} W_l); d2L/dW_l[i,j]^2 = sum_n a_l[n,j]**2 h_{l+1}[n,i],
    d2L/db_l[i]^2 = sum_n h_{l+1}[n,i]. ``sigma2=False`` drops the sigma'' term.
    """
    act = get_activation(activation)
    L = sum(1 for n in params if n.endswith(".weight"))
    Ws = [np.asarray(params[f"layers.{l}.weight"], dtype=np.float64) for l in range(L)]
    bs = [np.asarray(params[f"layers.{l}.bias"], dtype=np.float64) for l in range(L)]
    X = np.asarray(X, dtype=np.float64)
    a, z = [X], [None]
    for l in range(L):
        z.append(a[l] @ Ws[l].T + bs[l])
        if l < L - 1:
            a.append(act.value(z[l + 1]))
    f, N = z[L], X.shape[0]
    if loss == "cross_entropy":
        _, p, q = softmax_parts(f)  # q = 1 - p without cancellation
        rows, target = np.arange(N), np.asarray(y)
        delta = p.copy()
        delta[rows, target] = -q[rows, target]
        delta /= N
        h = p * q / N
    else:
        K = f.shape[1]
        delta = (f - np.asarray(y, dtype=np.float64)) * (2.0 / (N * K))
        h = np.full(f.shape, 2.0 / (N * K))
    out: dict[str, np.ndarray] = {}
    for l in range(L - 1, -1, -1):
        out[f"layers.{l}.weight"] = h.T @ (a[l] * a[l])
        out[f"layers.{l}.bias"] = h.sum(axis=0)
        if l > 0:
            back = delta @ Ws[l]
            d1 = act.first(z[l])
            h_new = (h @ (Ws[l] * Ws[l])) * d1**2
            if sigma2:
                h_new = h_new + act.second(z[l]) * back
            delta, h = back * d1, h_new
    return {n: out[n] for n in flat_names(params)}


class OBDWithoutSigma2(WrongBackend):
    """The OBD diagonal recursion without its sigma''(z) * dL/da term.

    h_l = sigma'(z_l)**2 * (h_{l+1} @ W_l**2) only; the documented "obd" method
    adds sigma''(z_l) * (delta_{l+1} W_l). Equal for ReLU and identity
    networks, wrong for tanh and sigmoid. Models the Levenberg-Marquardt
    simplification applied to every layer where the specification keeps the
    full Becker-LeCun recursion.
    """

    name = "OBD recursion without sigma''"
    family = "curvature"

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        result = super().hessian_diag(
            params=params, X=X, y=y, activation=activation, loss=loss, method=method
        )  # argument checks, other methods
        if method != "obd":
            return result
        return obd_diagonal(params, X, y, activation, loss, sigma2=False)


class FiniteDifferenceHVP(WrongBackend):
    """A central finite difference of the gradient returned as the exact Hessian-vector product.

    H v ~ (g(w + e v) - g(w - e v)) / (2 e) with e = 1e-5: right to about 1e-10
    relative, far outside the tolerance of an exact product (a few ulps).
    Models an HVP "by differencing gradients", a common shortcut when the
    framework has no double backward.
    """

    name = "finite-difference HVP"
    family = "curvature"
    step = 1e-5

    def hvp(self, *, params, X, y, v, activation, loss):
        e = self.step
        plus = {n: params[n] + e * v[n] for n in params}
        minus = {n: params[n] - e * v[n] for n in params}
        gp = self.gradient(params=plus, X=X, y=y, activation=activation, loss=loss)
        gm = self.gradient(params=minus, X=X, y=y, activation=activation, loss=loss)
        return {n: (gp[n] - gm[n]) / (2.0 * e) for n in params}


class SortedKeyFlatOrder(WrongBackend):
    """Flat parameter order taken as the *sorted* names: layers.0.bias before layers.0.weight.

    The full Hessian's rows and columns, and the probes of Hutchinson's
    estimate, are in the wrong order. Models flattening a dict of parameters
    with ``jax.flatten_util.ravel_pytree`` (dict keys are flattened sorted),
    where the protocol's order is weight then bias, layer by layer.
    """

    name = "sorted-key flat order"
    family = "curvature"

    @staticmethod
    def _permutation(params) -> np.ndarray:
        """Flat positions (protocol order) of the entries taken in sorted-name order."""
        starts, pos = {}, 0
        for n in flat_names(params):
            starts[n] = pos
            pos += np.size(params[n])
        return np.concatenate([starts[n] + np.arange(np.size(params[n])) for n in sorted(params)])

    def full_hessian(self, *, params, X, y, activation, loss):
        H = super().full_hessian(params=params, X=X, y=y, activation=activation, loss=loss)
        p = self._permutation(params)
        return H[np.ix_(p, p)]

    def hutchinson_diag(self, *, params, X, y, activation, loss, probes):
        probes = np.asarray(probes, dtype=np.float64)
        reread = []
        for v in probes:  # each probe sliced in sorted-name order
            tree, start = {}, 0
            for n in sorted(params):
                size = np.size(params[n])
                tree[n] = v[start : start + size].reshape(np.shape(params[n]))
                start += size
            reread.append(flatten(tree))
        return super().hutchinson_diag(
            params=params,
            X=X,
            y=y,
            activation=activation,
            loss=loss,
            probes=np.array(reread).reshape(probes.shape),
        )


class OBDReportedAsExact(WrongBackend):
    """The OBD recursion's diagonal returned when the exact Hessian diagonal is asked for.

    The recursion drops the off-diagonal couplings between units of a layer,
    so it is exact for a network without hidden layers and differs as soon
    as there is one. Models taking Becker and LeCun's cheap recursion for "the"
    Hessian diagonal, as OBD implementations often describe it.
    """

    name = "OBD reported as exact"
    family = "curvature"

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        if method == "exact":
            method = "obd"
        return super().hessian_diag(
            params=params, X=X, y=y, activation=activation, loss=loss, method=method
        )


class ExactReportedAsGGN(WrongBackend):
    """The exact Hessian diagonal returned when the Gauss-Newton diagonal is asked for.

    Equal for relu and identity networks; for tanh and sigmoid the exact
    diagonal keeps the sigma'' terms and can be negative, where the GGN is
    positive semi-definite. Models a "ggn" option that falls through to the
    default (exact) branch of a method switch.
    """

    name = "exact reported as GGN"
    family = "curvature"

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        if method == "ggn":
            method = "exact"
        return super().hessian_diag(
            params=params, X=X, y=y, activation=activation, loss=loss, method=method
        )


class CrossEntropySummedOverBatch(WrongBackend):
    """Cross-entropy summed over the batch instead of averaged: every derivative N times too large.

    L = sum_n -log p_n[y_n] where the protocol's loss is the mean over the N
    samples. Models ``CrossEntropyLoss(reduction="sum")`` (or a hand-written
    ``-log_probs[range(N), y].sum()``), invisible with a batch of one.
    """

    name = "cross-entropy summed over the batch"
    family = "curvature"

    @staticmethod
    def _n(X, loss) -> float:
        return float(np.shape(X)[0]) if loss == "cross_entropy" else 1.0

    def _scaled(self, d, X, loss):
        k = self._n(X, loss)
        return {n: v * k for n, v in d.items()}

    def loss_value(self, *, params, X, y, activation, loss):
        return super().loss_value(
            params=params, X=X, y=y, activation=activation, loss=loss
        ) * self._n(X, loss)

    def gradient(self, *, params, X, y, activation, loss):
        return self._scaled(
            super().gradient(params=params, X=X, y=y, activation=activation, loss=loss), X, loss
        )

    def hvp(self, *, params, X, y, v, activation, loss):
        return self._scaled(
            super().hvp(params=params, X=X, y=y, v=v, activation=activation, loss=loss), X, loss
        )

    def full_hessian(self, *, params, X, y, activation, loss):
        return super().full_hessian(
            params=params, X=X, y=y, activation=activation, loss=loss
        ) * self._n(X, loss)

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        return self._scaled(
            super().hessian_diag(
                params=params, X=X, y=y, activation=activation, loss=loss, method=method
            ),
            X,
            loss,
        )

    def hutchinson_diag(self, *, params, X, y, activation, loss, probes):
        return self._scaled(
            super().hutchinson_diag(
                params=params, X=X, y=y, activation=activation, loss=loss, probes=probes
            ),
            X,
            loss,
        )


class HutchinsonSummedOverProbes(WrongBackend):
    """Hutchinson's estimate summed over the S probes instead of averaged.

    diag ~ sum_s v_s * (H v_s), S times the documented 1/S sum: right with one
    probe only. Models accumulating ``est += v * Hv`` in a loop and
    forgetting the final division by the number of samples.
    """

    name = "Hutchinson summed over the probes"
    family = "curvature"

    def hutchinson_diag(self, *, params, X, y, activation, loss, probes):
        out = super().hutchinson_diag(
            params=params, X=X, y=y, activation=activation, loss=loss, probes=probes
        )
        S = float(np.shape(probes)[0])
        return {n: v * S for n, v in out.items()}
