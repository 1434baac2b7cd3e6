"""Curvature of the MLP training loss: gradient, Hessian-vector products, Hessian, Hessian diagonals.

Every formula here is derived once in ``docs/curvature.md``; the docstrings
give the equations and point there.

Conventions (the same for every function in this module)
--------------------------------------------------------
* Loss. L is the model's loss, a mean over the batch (``refprune.mlp``):
  cross-entropy ``-1/N sum_n log softmax(f_n)[y_n]`` or mean-squared error
  ``1/(N K) sum_{n,k} (f_nk - t_nk)**2``.
* Masks. All derivatives are of ``L(theta * M)`` with respect to ``theta``,
  where ``M`` are the model's boolean masks (for every parameter, biases too).
  Hence, for a pruned entry i: the gradient is exactly 0, the Hessian
  diagonal is exactly 0, every Hessian-vector product has 0 at i, and the full
  Hessian has an all-zero row and column i. (With ``Heff`` the Hessian in the
  effective parameters ``theta * M``: ``H = diag(M) Heff diag(M)``.)
* Notation. Layer l (l = 0 .. L-1) maps a_l to z_{l+1} = a_l W_l^T + b_l;
  a_0 = X, a_l = sigma(z_l) for 0 < l < L, and the output f = z_L is linear.
  ``delta_l = dL/dz_l`` per sample (it carries the 1/N of the mean).
* Order. Dicts follow ``model.params`` (``layers.{l}.weight``, ``layers.{l}.bias``,
  layer by layer); flat vectors (``flatten_params``) concatenate those arrays,
  each raveled in C order. This is the row/column order of ``full_hessian``.
* Activations. sigma, sigma' and sigma'' come from ``refprune.activations``
  (ReLU'(0) = 0; sigma'' = 0 for ReLU and identity).
* Bits. Results are deterministic: the same inputs give identical bits. The
  batch is processed in chunks whose size depends only on the array shapes.

References
----------
B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural
Computation 6(1), 1994.
Y. LeCun, J. S. Denker and S. A. Solla, "Optimal Brain Damage", NIPS 2, 1990.
S. Becker and Y. LeCun, "Improving the convergence of back-propagation
learning with second order methods", Proc. 1988 Connectionist Models Summer
School, 1989.
M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix
for Laplacian smoothing splines", Communications in Statistics - Simulation and
Computation 19(2), 1990.
N. N. Schraudolph, "Fast curvature matrix-vector products for second-order
gradient descent", Neural Computation 14(7), 2002 (generalised Gauss-Newton).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._checks import choice, positive_int
from .activations import Activation, get_activation, softmax_parts
from .mlp import MLP, check_model, check_param_dict, flatten_params, n_params, unflatten_params
from .rng import make_rng

METHODS = ("exact", "ggn", "obd", "hutchinson")
#: Largest difference allowed between a ``_fast`` route and its definition, relative to
#: the largest magnitude of the array (each parameter's array on its own); checked in
#: tests/test_curvature.py and tests/test_rescoring.py (worst seen: 2e-14).
FAST_BOUND = 1e-10
DEFAULT_MAX_PARAMS = 2000

# Work-array budget (float64 entries) for one chunk of samples or probes: about
# 4 MB, small enough to stay near the caches, large enough for efficient GEMMs.
_CHUNK_FLOATS = 1 << 19

__all__ = [
    "METHODS",
    "DEFAULT_MAX_PARAMS",
    "gradient",
    "hvp",
    "full_hessian",
    "hessian_diag",
    "flatten_params",
    "unflatten_params",
    "n_params",
    "FAST_BOUND",
]


# ====================================================================== checks
def _check_batch(model: MLP, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    if y is None:
        raise TypeError("y must be given: labels (cross_entropy) or targets (mse), got None")
    return model.check_inputs(X, y, require_y=True)


# ====================================================================== loss at the output
class _Output:
    """The loss as a function of the output f, per sample, for a batch of size N.

    ``grad`` is dL/df (N, K); ``hess_vec(R)`` applies the per-sample output Hessian
    to R (..., N, K); ``factor()`` returns S^T (n, K, K) with H_out = S S^T per
    sample; ``hess_diag()`` is diag(H_out) (n, K). ``rows`` selects a chunk.

    Cross-entropy uses 1 - p from ``softmax_parts`` wherever the formulas have it
    (the target's gradient p_y - 1, the diagonal p (1 - p), the factor's diagonal)
    and writes the largest class's row of (diag(p) - p p^T) R as sum_{j != m}
    p_j (R_m - R_j): a saturated softmax loses no digits (docs/curvature.md).
    """

    loss: str
    n_total: int  # N, the whole batch's size
    k: int  # K, the number of outputs
    p: NDArray[np.float64] | None  # softmax p (cross-entropy only)
    q: NDArray[np.float64] | None  # 1 - p (cross-entropy only)

    def __init__(self, f: np.ndarray, y: np.ndarray, loss: str, n_total: int):
        self.loss, self.n_total, self.k = loss, n_total, f.shape[1]
        if loss == "cross_entropy":
            _, self.p, self.q = softmax_parts(f)
            self.top = np.argmax(f, axis=1)  # m, the class whose 1 - p is small
            rows = np.arange(f.shape[0])
            g = self.p.copy()
            g[rows, y] = -self.q[rows, y]  # p_y - 1 = -(1 - p_y)
            self.grad = g / n_total  # (p - onehot(y)) / N
        else:
            self.p = self.q = None
            self.grad = (f - y) * (2.0 / (n_total * self.k))  # 2 (f - t) / (N K)

    def hess_vec(self, R: np.ndarray) -> np.ndarray:
        if self.loss == "cross_entropy":  # (diag(p) - p p^T) R / N
            assert self.p is not None
            p, top = self.p, self.top[:, None]
            out: NDArray[np.float64] = p * (R - (p * R).sum(axis=-1, keepdims=True))
            # class m: R_m - p.R = sum_{j != m} p_j (R_m - R_j)
            R_top = np.take_along_axis(R, np.broadcast_to(top, R.shape[:-1] + (1,)), axis=-1)
            p_rest = p.copy()
            np.put_along_axis(p_rest, top, 0.0, axis=-1)
            top_row = (p_rest * (R_top - R)).sum(axis=-1, keepdims=True)
            p_top = np.take_along_axis(p, top, axis=-1)
            np.put_along_axis(
                out, np.broadcast_to(top, R.shape[:-1] + (1,)), p_top * top_row, axis=-1
            )
            return out / self.n_total
        return R * (2.0 / (self.n_total * self.k))  # 2 R / (N K)

    def factor(self, rows: slice) -> np.ndarray:
        n = len(range(*rows.indices(self.grad.shape[0])))
        if self.loss == "cross_entropy":  # S^T[c, k] = sqrt(p_c) (1[c=k] - p_k) / sqrt(N)
            assert self.p is not None and self.q is not None
            p, q = self.p[rows], self.q[rows]
            sq: NDArray[np.float64] = np.sqrt(p) / np.sqrt(self.n_total)
            inner = -np.broadcast_to(p[:, None, :], (n, self.k, self.k)).copy()
            diag = np.arange(self.k)
            inner[:, diag, diag] = q  # 1 - p_c on the diagonal
            return sq[:, :, None] * inner
        c = np.sqrt(2.0 / (self.n_total * self.k))  # S = sqrt(2 / (N K)) I
        return np.broadcast_to(c * np.eye(self.k), (n, self.k, self.k))

    def hess_diag(self, rows: slice) -> np.ndarray:
        if self.loss == "cross_entropy":  # p (1 - p) / N
            assert self.p is not None and self.q is not None
            return self.p[rows] * self.q[rows] / self.n_total
        n = len(range(*rows.indices(self.grad.shape[0])))
        return np.full((n, self.k), 2.0 / (self.n_total * self.k))


# ====================================================================== forward / backward
def _effective(model: MLP) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The weights and biases the forward pass uses (value * mask), layer by layer."""
    eff = model.effective_params()
    return [eff[n] for n in model.weight_names()], [eff[n] for n in model.bias_names()]


class _Pass:
    """Forward and backward pass of a batch through the effective (masked) network.

    Ws[l], bs[l]: effective weights and bias of layer l. a[l]: input of layer l
    (a[0] = X). z[l]: pre-activation of layer l-1's output, l = 1 .. L (z[L] = f).
    back[l] = delta_{l+1} W_l (N, n_l) for l = 1 .. L-1, so delta_l = back[l] * sigma'(z_l).
    delta[l] = dL/dz_l for l = 1 .. L (only delta[L] when ``backward`` is False).
    (a is a list; z, back and delta are dicts keyed by l, holding only the l named.)
    """

    def __init__(
        self,
        model: MLP,
        X: np.ndarray,
        y: np.ndarray,
        n_total: int | None = None,
        Ws: list[np.ndarray] | None = None,
        bs: list[np.ndarray] | None = None,
        backward: bool = True,
    ):
        self.act: Activation = get_activation(model.activation)
        if Ws is None or bs is None:
            Ws, bs = _effective(model)
        self.Ws, self.bs, self.L = Ws, bs, len(Ws)
        L = self.L
        self.a: list[np.ndarray] = [X]
        self.z: dict[int, np.ndarray] = {}
        for l in range(L):  # z_{l+1} = a_l W_l^T + b_l
            z = self.a[l] @ Ws[l].T + bs[l]
            self.z[l + 1] = z
            if l < L - 1:
                self.a.append(self.act.value(z))  # a_{l+1} = sigma(z_{l+1})
        self.out = _Output(self.z[L], y, model.loss, X.shape[0] if n_total is None else n_total)
        self.delta: dict[int, np.ndarray] = {L: self.out.grad}  # delta_L = dL/df
        self.back: dict[int, np.ndarray] = {}
        for l in range(L - 1, 0, -1) if backward else ():
            self.back[l] = self.delta[l + 1] @ Ws[l]  # delta_{l+1} W_l
            self.delta[l] = self.back[l] * self.act.first(self.z[l])  # delta_l = back_l sigma'(z_l)


def _masked(model: MLP, d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Apply the mask convention: exact +0.0 at pruned entries."""
    return {n: np.where(model.masks[n], d[n], 0.0) for n in model.params}


# ====================================================================== gradient
def gradient(model: MLP, X: Any, y: Any, *, fast: bool = True) -> dict[str, np.ndarray]:
    """Gradient of the mean loss by hand-derived backpropagation.

    The textbook equations (``docs/curvature.md``, section "Gradient"), independent
    of the autograd engine, for each sample n (summed over n)::

        delta_L = dL/df_n        (p_n - onehot(y_n)) / N  or  2 (f_n - t_n) / (N K)
        delta_l = (W_l^T delta_{l+1}) * sigma'(z_l)          l = L-1 .. 1
        dL/dW_l += delta_{l+1} a_l^T,   dL/db_l += delta_{l+1}

    Rumelhart, Hinton and Williams, "Learning representations by back-propagating
    errors", Nature 323, 1986.

    The loop over samples below (``fast=False``) is the definition. The default,
    ``_gradient_fast``, runs the same equations on the whole batch as matrix
    products; ``tests/test_curvature.py`` checks the two agree within
    ``FAST_BOUND`` (relative to the largest entry of each array) for every
    activation, both losses and pruned, unpruned and collapsed masks.

    Parameters
    ----------
    model : MLP
    X : array (N, in)
    y : int labels (N,) for cross-entropy, targets (N, K) for mse
    fast : bool, default True
        False runs the per-sample definition.

    Returns
    -------
    dict name -> array, shaped like ``model.params``; derivative of L(theta * M)
    with respect to theta, so exactly 0.0 at pruned entries.
    """
    check_model(model)
    X, y = _check_batch(model, X, y)
    if fast:
        return _gradient_fast(model, X, y)
    act, (Ws, bs), N = get_activation(model.activation), _effective(model), X.shape[0]
    gW, gb = [np.zeros(w.shape) for w in Ws], [np.zeros(b.shape) for b in bs]
    for n in range(N):
        a: list[np.ndarray] = [X[n]]
        z: dict[int, np.ndarray] = {}  # z[l] for l = 1 .. L
        for l in range(len(Ws)):  # z_{l+1} = W_l a_l + b_l
            z[l + 1] = Ws[l] @ a[l] + bs[l]
            a.append(act.value(z[l + 1]))  # (the last one is unused)
        delta = _Output(z[len(Ws)][None, :], y[n : n + 1], model.loss, N).grad[0]
        for l in range(len(Ws) - 1, -1, -1):
            gW[l] += np.outer(delta, a[l])
            gb[l] += delta
            if l > 0:
                delta = (Ws[l].T @ delta) * act.first(z[l])
    return _masked(model, _by_name(gW, gb))


def _gradient_fast(model: MLP, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """``gradient`` on the whole batch at once: dL/dW_l = delta_{l+1}^T a_l (N rows)."""
    fw = _Pass(model, X, y)
    gW = [fw.delta[l + 1].T @ fw.a[l] for l in range(fw.L)]
    gb = [fw.delta[l + 1].sum(axis=0) for l in range(fw.L)]
    return _masked(model, _by_name(gW, gb))


def _by_name(weights: list[np.ndarray], biases: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-layer lists into a dict in ``model.params`` order."""
    out: dict[str, np.ndarray] = {}
    for l, (w, b) in enumerate(zip(weights, biases)):
        out[f"layers.{l}.weight"], out[f"layers.{l}.bias"] = w, b
    return out


# ====================================================================== Hessian-vector products
def _rop(
    fw: _Pass, V: list[np.ndarray], u: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pearlmutter's R-operator for a stack of B directions at once.

    V[l] (B, out_l, in_l) and u[l] (B, out_l) are the (already masked) directions
    for W_l and b_l. Returns (R{dL/dW_l}, R{dL/db_l}) lists of (B, ...) arrays.
    See docs/curvature.md, "Hessian-vector products".
    """
    act, L, Ws = fw.act, fw.L, fw.Ws
    smooth = not act.piecewise_linear
    Ra: dict[int, np.ndarray] = {}  # R{a_l}, l = 1 .. L-1 (R{a_0} = 0)
    Rz: dict[int, np.ndarray] = {}  # R{z_l}, l = 1 .. L
    first = {l: act.first(fw.z[l]) for l in range(1, L)}
    for l in range(L):  # R{z_{l+1}} = R{a_l} W_l^T + a_l V_l^T + u_l
        r = np.matmul(fw.a[l], V[l].transpose(0, 2, 1)) + u[l][:, None, :]
        if l > 0:  # (R{a_0} = 0)
            r += Ra[l] @ Ws[l].T
        Rz[l + 1] = r
        if l < L - 1:
            Ra[l + 1] = first[l + 1] * r  # R{a_l} = sigma'(z_l) R{z_l}
    Rd = fw.out.hess_vec(Rz[L])  # R{delta_L} = H_out R{f}
    RgW: dict[int, np.ndarray] = {}
    Rgb: dict[int, np.ndarray] = {}
    for l in range(L - 1, -1, -1):
        gW = np.matmul(
            Rd.transpose(0, 2, 1), fw.a[l]
        )  # R{dL/dW_l} = R{delta}^T a_l + delta^T R{a_l}
        if l > 0:
            gW += np.matmul(fw.delta[l + 1].T, Ra[l])
        RgW[l], Rgb[l] = gW, Rd.sum(axis=1)  # R{dL/db_l} = sum_n R{delta}
        if l > 0:  # R{delta_l} = (R{delta_{l+1}} W_l + delta_{l+1} V_l) sigma'(z_l) + ...
            r = (Rd @ Ws[l] + np.matmul(fw.delta[l + 1], V[l])) * first[l]
            if smooth:  #   + (delta_{l+1} W_l) sigma''(z_l) R{z_l}
                r += fw.back[l] * act.second(fw.z[l]) * Rz[l]
            Rd = r
    return [RgW[l] for l in range(L)], [Rgb[l] for l in range(L)]


def _hvp_flat(model: MLP, fw: _Pass, Vflat: np.ndarray) -> np.ndarray:
    """H v for each row v of Vflat (B, P); returns (B, P) in flatten_params order."""
    B = Vflat.shape[0]
    mflat = np.concatenate([model.masks[n].ravel() for n in model.params])
    Vflat = np.where(mflat, Vflat, 0.0)  # directions in theta * M
    V, u, start = [], [], 0
    for l in range(model.n_layers):
        w = model.params[f"layers.{l}.weight"]
        V.append(Vflat[:, start : start + w.size].reshape((B,) + w.shape))
        start += w.size
        b = model.params[f"layers.{l}.bias"]
        u.append(Vflat[:, start : start + b.size])
        start += b.size
    RgW, Rgb = _rop(fw, V, u)
    out = np.concatenate([x.reshape(B, -1) for pair in zip(RgW, Rgb) for x in pair], axis=1)
    return np.where(mflat, out, 0.0)


def _probe_chunk(model: MLP, N: int) -> int:
    """How many directions to push through the R-operator at once."""
    per_probe = N * sum(model.sizes) * 4
    return max(1, min(64, _CHUNK_FLOATS // max(per_probe, 1)))


def hvp(model: MLP, X: Any, y: Any, v: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Exact Hessian-vector product H v by Pearlmutter's R-operator.

    ``R{.} = d/dr (.)(theta + r v) at r = 0``, applied to the forward and the
    backward pass (docs/curvature.md, "Hessian-vector products")::

        R{z_{l+1}} = R{a_l} W_l^T + a_l V_l^T + u_l,   R{a_l} = sigma'(z_l) R{z_l},  R{a_0} = 0
        R{delta_L} = H_out R{f}
        R{delta_l} = (R{delta_{l+1}} W_l + delta_{l+1} V_l) sigma'(z_l)
                     + (delta_{l+1} W_l) sigma''(z_l) R{z_l}
        (H v)_{W_l} = R{delta_{l+1}}^T a_l + delta_{l+1}^T R{a_l},  (H v)_{b_l} = sum_n R{delta_{l+1}}

    with (V_l, u_l) the parts of v for (W_l, b_l) and H_out the per-sample Hessian of
    the loss in the output (``(diag(p) - p p^T)/N`` for cross-entropy, ``2 I/(N K)``
    for mse). Exact to rounding; no finite differences. Cost: about two gradients.

    Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation, 1994.

    Parameters
    ----------
    model : MLP
    X, y : a batch, as for ``model.loss_and_grads``
    v : mapping name -> float array, exactly the model's parameter names and shapes,
        finite.

    Returns
    -------
    dict name -> array: ``H v`` with H the Hessian of L(theta * M) in theta, that is
    ``M * Heff (M * v)``; 0.0 at pruned entries, and v's pruned entries have no effect.
    """
    check_model(model)
    X, y = _check_batch(model, X, y)
    vflat = flatten_params(check_param_dict(v, model, "v"), model)
    fw = _Pass(model, X, y)
    return unflatten_params(_hvp_flat(model, fw, vflat[None, :])[0], model)


def full_hessian(
    model: MLP, X: Any, y: Any, *, max_params: int = DEFAULT_MAX_PARAMS, allow_large: bool = False
) -> np.ndarray:
    """The full Hessian of the mean loss, column j = H e_j by the R-operator.

    ``H[i, j] = d2 L(theta * M) / dtheta_i dtheta_j`` in ``flatten_params`` order
    (rows and columns of pruned entries are exactly zero). Column j is the exact
    Hessian-vector product with the j-th unit vector (``hvp``); nothing is
    symmetrised, so ``H - H^T`` shows the rounding of the two paths.
    docs/curvature.md, "Full Hessian".

    Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation, 1994.

    Parameters
    ----------
    model : MLP
    X, y : a batch
    max_params : int, default 2000
        Largest parameter count P accepted (P x P float64 entries: 32 MB at 2000).
    allow_large : bool, default False
        Set True to compute the Hessian of a model with P > max_params anyway.

    Returns
    -------
    numpy.ndarray of shape (P, P), float64.
    """
    check_model(model)
    max_params = positive_int(max_params, "max_params")
    if not isinstance(allow_large, (bool, np.bool_)):
        raise TypeError(f"allow_large must be a bool, got {type(allow_large).__name__}")
    P = n_params(model)
    if P > max_params and not allow_large:
        raise ValueError(
            f"model has {P} parameters, above max_params={max_params}; a full "
            f"Hessian needs P*P*8 = {P * P * 8} bytes and P Hessian-vector products. "
            f"Pass allow_large=True (or a larger max_params) to compute it anyway"
        )
    X, y = _check_batch(model, X, y)
    fw = _Pass(model, X, y)
    H = np.zeros((P, P))
    alive = np.flatnonzero(np.concatenate([model.masks[n].ravel() for n in model.params]))
    step = _probe_chunk(model, X.shape[0])
    for s in range(0, alive.size, step):
        cols = alive[s : s + step]
        E = np.zeros((cols.size, P))
        E[np.arange(cols.size), cols] = 1.0
        H[:, cols] = _hvp_flat(model, fw, E).T
    return H


# ====================================================================== Hessian diagonal
def _sample_chunk(model: MLP, method: str) -> int:
    """Samples per chunk, from the widest per-sample work array of ``method``."""
    s = model.sizes
    per = max(s) * 4
    if method in ("exact", "ggn"):
        smooth = method == "exact" and not get_activation(model.activation).piecewise_linear
        cols = s[-1]  # factor columns at z_{l+1}
        for l in range(model.n_layers - 1, 0, -1):
            full = cols > s[l + 1]
            per = max(per, (s[l + 1] + s[l]) * s[l] if full else (cols + 1) * s[l])
            cols = s[l] if full else cols + (s[l + 1] if smooth and l + 1 < model.n_layers else 0)
    return max(1, _CHUNK_FLOATS // per)


#: A term of a per-sample pre-activation Hessian, as ``_propagate`` describes it.
_Part = tuple[str, np.ndarray, np.ndarray | None]


def _propagate(
    parts: list[_Part], W: np.ndarray, D: np.ndarray, keep: bool
) -> tuple[np.ndarray, list[_Part]]:
    """One step of the exact pre-activation-Hessian recursion, z_{l+1} -> z_l.

    H_{l+1} (per sample) is the sum of ``parts``, each one of
      ("factor", A (n, C, m), w (n, C) or None):  A^T diag(w) A  (w None: all ones)
      ("full",   G (n, m, m), None):              G
      ("diag",   e (n, m), None):                 diag(e)
    with m = n_{l+1}. Returns diag(D W^T H_{l+1} W D) (n, n_l) and, if ``keep``,
    the parts of D W^T H_{l+1} W D (the sigma'' term of layer l is added by the caller).
    """
    n, m = D.shape[0], W.shape[0]
    acc = np.zeros(D.shape)
    new: list[_Part] = []
    for kind, A, w in parts:
        if kind == "factor":  # (A W)^T diag(w) (A W)
            U = (A.reshape(-1, m) @ W).reshape(n, -1, W.shape[1])
            if keep:
                new.append(("factor", U * D[:, None, :], w))
            if w is None:
                acc += np.einsum("nci,nci->ni", U, U)
            else:
                U *= U
                acc += np.einsum("nc,nci->ni", w, U)
        elif kind == "full":  # W^T G W
            M = A @ W
            acc += np.einsum("nji,ji->ni", M, W)
            if keep:
                G = W.T @ M
                G *= D[:, :, None]
                G *= D[:, None, :]
                new.append(("full", G, None))
        else:  # W^T diag(e) W
            acc += A @ (W * W)
            if keep:
                new.append(("factor", np.broadcast_to(W, (n,) + W.shape) * D[:, None, :], A))
    acc *= D * D
    return acc, new


def _consolidate(parts: list[_Part], width: int) -> list[_Part]:
    """Fold all factors into one full matrix when they have more columns than ``width``."""
    factors = [p for p in parts if p[0] == "factor"]
    if sum(p[1].shape[1] for p in factors) <= width:
        return parts
    G: np.ndarray | None = None
    for kind, A, w in parts:
        if kind == "diag":
            continue
        if kind == "factor":
            A = np.matmul(
                A.transpose(0, 2, 1), A if w is None else A * w[:, :, None]
            )  # A^T diag(w) A
        G = A if G is None else G + A
    assert G is not None  # factors exist: their columns add up to more than width
    return [("full", G, None)] + [p for p in parts if p[0] == "diag"]


def _preact_diags(fw: _Pass, rows: slice, method: str) -> dict[int, np.ndarray]:
    """diag of the per-sample Hessian of L in z_l, l = 1 .. L, for one chunk of rows."""
    L, act, Ws = fw.L, fw.act, fw.Ws
    h = {L: fw.out.hess_diag(rows)}  # diag H_out
    smooth = not act.piecewise_linear
    if method == "obd":  # diagonal terms only
        for l in range(L - 1, 0, -1):
            z = fw.z[l][rows]
            hl = (h[l + 1] @ (Ws[l] * Ws[l])) * act.first(z) ** 2
            if smooth:
                hl += act.second(z) * fw.back[l][rows]
            h[l] = hl
        return h
    second = method == "exact" and smooth  # ggn drops the sigma'' terms
    parts: list[_Part] = [("factor", fw.out.factor(rows), None)]  # H_L = S S^T
    for l in range(L - 1, 0, -1):
        z = fw.z[l][rows]
        keep = l > 1
        hl, parts = _propagate(parts, Ws[l], act.first(z), keep)
        if second:  # + diag(sigma''(z_l) (delta_{l+1} W_l))
            e = act.second(z) * fw.back[l][rows]
            hl += e
            if keep:
                parts.append(("diag", e, None))
        if keep:
            parts = _consolidate(parts, Ws[l].shape[1])
        h[l] = hl
    return h


def hessian_diag(
    model: MLP,
    X: Any,
    y: Any,
    method: str = "exact",
    *,
    n_samples: int | None = None,
    seed: int | np.random.Generator | None = None,
    fast: bool = True,
) -> dict[str, np.ndarray]:
    """Diagonal of the Hessian of the mean loss (exact, or one of three approximations).

    Every method uses that W_l[i, j] reaches the loss only through z_{l+1, i}, so
    (sum over samples n, h = per-sample diagonal of the Hessian of L in z_{l+1})::

        d2L/dW_l[i, j]^2 = sum_n a_l[n, j]**2 * h_{l+1}[n, i]
        d2L/db_l[i]^2    = sum_n h_{l+1}[n, i]

    and the methods differ in h (docs/curvature.md, "Hessian diagonal")::

        H_L = H_out = S S^T                 (per sample)
        H_l = D_l W_l^T H_{l+1} W_l D_l + diag(sigma''(z_l) * (delta_{l+1} W_l)),
        D_l = diag(sigma'(z_l))

    - ``"exact"``: the true diagonal. H_{l} is carried as factors: S propagated as
      T_l = T_{l+1} W_l D_l (K columns), each sigma'' term as a diagonal that becomes
      a weighted factor when it is propagated, folded into a full matrix only when
      the factors have more columns than the layer has units; for the first hidden
      layer only the diagonal is formed. For piecewise-linear activations (relu,
      identity) sigma'' = 0 and this is automatically the pure factor route:
      diag H_l = sum_c T_l[:, c]**2.
    - ``"ggn"``: diagonal of the generalised Gauss-Newton matrix J^T H_out J
      (the sigma'' terms dropped). Equals "exact" for relu and identity.
    - ``"obd"``: the Becker-LeCun / Optimal Brain Damage recursion, which keeps only
      diagonal terms when propagating: h_l = sigma'(z_l)**2 * (h_{l+1} @ W_l**2)
      + sigma''(z_l) * (delta_{l+1} W_l), from h_L = diag(H_out). An approximation:
      exact for a single linear layer, in general not beyond.
    - ``"hutchinson"``: the unbiased estimate (1/S) sum_s v_s * (H v_s) over S =
      ``n_samples`` Rademacher probes v_s (exact HVPs, ``hvp``); E[v * H v] = diag H.
      Variance of entry i: (1/S) sum_{j != i} H_ij**2.
      Draw order: ``rng = refprune.rng.make_rng(seed)``; for s = 0 .. S-1 in turn,
      ``v_s = rng.integers(0, 2, size=P) * 2 - 1`` (one call per probe, int64 turned
      into float64), P = all parameters in ``flatten_params`` order, pruned ones
      included (so the draws do not depend on the masks). The products v_s * H v_s
      are added in probe order, s = 0 first, and the sum is divided by S.

    For "exact", "ggn" and "obd" the loop over samples below (``fast=False``)
    is the definition: per sample, the Hessian H_l in z_l as a matrix, the
    recursion above applied as written ("ggn": without the sigma'' term; "obd":
    H_{l+1} replaced by its diagonal before each step, from diag(H_out)). The
    default, ``_hessian_diag_fast``, gets the same diagonals without forming
    H_l (factors, chunks of samples); ``tests/test_curvature.py`` checks the
    two agree within ``FAST_BOUND`` (relative to the largest entry of each
    array) for every activation, both losses and pruned, unpruned and
    collapsed masks.

    Citations: LeCun, Denker and Solla, "Optimal Brain Damage", NIPS 1990; Becker
    and LeCun 1988 (diagonal second-order backpropagation); Pearlmutter 1994 (HVP);
    Hutchinson 1990 (stochastic diagonal/trace estimator); Schraudolph 2002 (GGN).

    Parameters
    ----------
    model : MLP
    X, y : a batch, as for ``model.loss_and_grads``
    method : {"exact", "ggn", "obd", "hutchinson"}
    n_samples : int >= 1, required for (and only accepted with) "hutchinson"
    seed : int or numpy Generator, required for (and only accepted with) "hutchinson"
    fast : bool, default True
        False runs the per-sample definition ("hutchinson" has one route only).

    Returns
    -------
    dict name -> array shaped like ``model.params``: the diagonal of the Hessian of
    L(theta * M) in theta, exactly 0.0 at pruned entries.
    """
    rng, n_samples = _check_diag_options(model, method, n_samples, seed)
    X, y = _check_batch(model, X, y)
    if method == "hutchinson":
        assert rng is not None and n_samples is not None  # both given for this method
        return _hutchinson(model, X, y, n_samples, rng)
    if fast:
        return _hessian_diag_fast(model, X, y, method)
    fw, act = _Pass(model, X, y), get_activation(model.activation)
    Ws, L = fw.Ws, fw.L
    dW, db = [np.zeros(w.shape) for w in Ws], [np.zeros(w.shape[0]) for w in Ws]
    for n in range(X.shape[0]):
        H = _output_hessian(fw.out, n)  # in z_L = f
        for l in range(L - 1, -1, -1):  # H: the Hessian in z_{l+1}
            if method == "obd":
                H = np.diag(np.diag(H))
            dW[l] += np.outer(np.diag(H), fw.a[l][n] ** 2)  # h_{l+1}[i] a_l[j]**2
            db[l] += np.diag(H)
            if l > 0:  # H_l = D W^T H W D (+ sigma'')
                d = act.first(fw.z[l][n])
                H = d[:, None] * (Ws[l].T @ H @ Ws[l]) * d[None, :]
                if method != "ggn":
                    H = H + np.diag(act.second(fw.z[l][n]) * fw.back[l][n])
    return _masked(model, _by_name(dW, db))


def _output_hessian(out: _Output, n: int) -> np.ndarray:
    """H_out of sample n (K, K): (diag(p) - p p^T) / N, or 2 I / (N K) for mse."""
    if out.loss == "cross_entropy":
        assert out.p is not None and out.q is not None
        p = out.p[n]
        H = -np.outer(p, p)
        H[np.diag_indices(out.k)] = p * out.q[n]  # p (1 - p), 1 - p kept exact
        return H / out.n_total
    return np.eye(out.k) * (2.0 / (out.n_total * out.k))


def _check_diag_options(
    model: Any, method: str, n_samples: Any, seed: Any
) -> tuple[np.random.Generator | None, int | None]:
    """Check hessian_diag's method and its Hutchinson options: (generator, n_samples) or Nones."""
    check_model(model)
    choice(method, "method", METHODS)
    if method == "hutchinson":
        if n_samples is None:
            raise ValueError("n_samples must be given for method='hutchinson'")
        n_samples = positive_int(n_samples, "n_samples")
        if seed is None:
            raise ValueError("seed must be given for method='hutchinson' (draws are reproducible)")
        return make_rng(seed), n_samples
    if n_samples is not None:
        raise ValueError(
            f"n_samples is used only by method='hutchinson', got {n_samples!r} "
            f"with method={method!r}"
        )
    if seed is not None:
        raise ValueError(
            f"seed is used only by method='hutchinson', got one with method={method!r}"
        )
    return None, None


def _hessian_diag_fast(
    model: MLP, X: np.ndarray, y: np.ndarray, method: str
) -> dict[str, np.ndarray]:
    """``hessian_diag`` for "exact", "ggn", "obd" without forming per-sample matrices.

    Chunks of samples (sizes from the array shapes only); the pre-activation
    Hessians carried as factors (``_preact_diags``), summed as
    h_{l+1}^T (a_l * a_l) over each chunk.
    """
    N = X.shape[0]
    Ws, bs = _effective(model)
    diag = [np.zeros(w.shape) for w in Ws], [np.zeros(b.shape) for b in bs]
    step = _sample_chunk(model, method)
    # delta_{l+1} W_l is needed only for the sigma'' terms
    back = method != "ggn" and not get_activation(model.activation).piecewise_linear
    fw_all = _Pass(model, X, y, Ws=Ws, bs=bs, backward=back) if step >= N else None
    for s in range(0, N, step):
        rows = slice(s, min(N, s + step))
        if fw_all is not None:
            fw, sub = fw_all, rows
        else:  # per-sample: a chunk needs the full N for 1/N
            fw, sub = (
                _Pass(model, X[rows], y[rows], n_total=N, Ws=Ws, bs=bs, backward=back),
                slice(None),
            )
        h = _preact_diags(fw, sub, method)
        for l in range(fw.L):
            a = fw.a[l][sub]
            diag[0][l] += h[l + 1].T @ (a * a)  # sum_n h_{l+1}[n, i] a_l[n, j]^2
            diag[1][l] += h[l + 1].sum(axis=0)
    return _masked(model, _by_name(*diag))


def _hutchinson(
    model: MLP, X: np.ndarray, y: np.ndarray, n_samples: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    P = n_params(model)
    fw = _Pass(model, X, y)
    acc = np.zeros(P)
    step = _probe_chunk(model, X.shape[0])
    for s in range(0, n_samples, step):
        B = min(step, n_samples - s)
        Vs = np.empty((B, P))
        for b in range(B):  # one call per probe, in probe order
            Vs[b] = rng.integers(0, 2, size=P) * 2 - 1
        prod = Vs * _hvp_flat(model, fw, Vs)
        for b in range(B):
            acc += prod[b]
    return _masked(model, unflatten_params(acc / n_samples, model))
