"""A catalogue of wrong backends: the reference with exactly one realistic defect each.

Each class below is a small subclass of ``conformance.backend.ReferenceBackend``
that gets one thing wrong, the way real implementations get it wrong. The
conformance suite must fail on every one of them; ``tests/test_buggy_backends.py``
runs it on each and checks that it does, and which check catches it. They are
also a quick way to see what a failure report looks like::

    python -m conformance run --backend conformance.buggy:TiesToHigherIndex --family masks

Every class states, in its docstring, what it computes wrongly and which
real-world mistake it models, and carries two attributes:

``family``
    the family of checks expected to catch it;
``caught_by``
    the checks expected to fail, any one of which is enough: property names
    (``"masks/select-nesting-counts"``) or ``"golden:<op>"`` for any golden
    case of that operation.

``CATALOGUE`` maps a short name to each class.

Where a defect sits inside a computation the reference does in one call (the
count rule inside mask selection, a term inside the Hessian-diagonal
recursion), the class reimplements that computation from the public refprune
functions with a hook, and the hook is the one place it differs: with the
hook left at its default the reimplementation equals the reference (the tests
check this too), so the class has exactly one defect.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from refprune.activations import get_activation, softmax_parts
from refprune.masks import fraction_to_count, keep_top_k, select_masks, select_masks_count

from .backend import ReferenceBackend, flat_names, flatten

__all__ = ["WrongBackend", "SelectionBackend", "CATALOGUE", "caught_by", "family_of"]


class WrongBackend(ReferenceBackend):
    """The reference with one defect; subclasses say which, and what catches it."""

    name = "wrong backend"
    family: str = ""
    caught_by: tuple[str, ...] = ()


# ============================================================================ mask selection
class SelectionBackend(WrongBackend):
    """Mask selection rebuilt around three hooks: the count rule, the top-k rule, and how a
    group's new mask is chosen.

    ``fraction_to_count``, ``keep_top_k`` and ``select_masks`` all go through
    ``count`` and ``top_k`` (``select_masks`` through ``group_keep`` too), as a
    real library routes every selection through one rounding helper and one
    top-k helper. With the hooks at their defaults this class *is* the
    reference (``select_masks`` is then bit-for-bit
    ``refprune.masks.select_masks``); each subclass overrides one.
    """

    name = "selection with hooks"

    # ----------------------------------------------------------------- the hooks
    def count(self, fraction: float, n_alive: int, n_total: int, rounding: str) -> int:
        """Entries pruned from a group with ``n_alive`` alive of ``n_total``: rounding(f * n_alive)."""
        return fraction_to_count(fraction, n_alive, rounding)

    def top_k(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Keep the k highest scores; equal scores: the lower flat index kept."""
        return keep_top_k(scores, k)

    def group_keep(self, scores: list[np.ndarray], masks: list[np.ndarray], n_prune: int
                   ) -> list[np.ndarray]:
        """New masks of one group: its alive scores in C order, tensor after tensor, lose the
        ``n_prune`` lowest; dead entries stay dead."""
        alive = np.concatenate([s[m] for s, m in zip(scores, masks)])
        keep = self.top_k(alive, alive.size - n_prune)
        out, start = [], 0
        for m in masks:
            new = m.copy()
            n = int(m.sum())
            new[m] = keep[start:start + n]
            start += n
            out.append(new)
        return out

    # ----------------------------------------------------------------- the operations
    def fraction_to_count(self, *, fraction, n, rounding):
        fraction_to_count(fraction, n, rounding)                  # the reference's argument checks
        return self.count(fraction, n, n, rounding)

    def keep_top_k(self, *, scores, k):
        keep_top_k(scores, k)                                     # the reference's argument checks
        return self.top_k(np.asarray(scores, dtype=np.float64), k)

    def select_masks(self, *, scores, masks, fraction, scope, rate_multipliers, rounding):
        select_masks(scores, masks, fraction, scope=scope, rate_multipliers=rate_multipliers,
                     rounding=rounding)                           # the reference's argument checks
        s = {n: np.asarray(v, dtype=np.float64) for n, v in scores.items()}
        m = {n: np.asarray(masks[n], dtype=bool) for n in s}
        mult = dict(rate_multipliers or {})
        if scope == "layer":
            groups = [([n], fraction * mult.get(n, 1.0)) for n in s]
        else:
            pool = [n for n in s if mult.get(n, 1.0) == 1.0]
            groups = ([(pool, fraction)] if pool else []) + \
                     [([n], fraction * mult[n]) for n in s if n not in pool]
        out = {}
        for names, f in groups:
            n_alive = sum(int(m[n].sum()) for n in names)
            n_total = sum(m[n].size for n in names)
            n_prune = self.count(f, n_alive, n_total, rounding)
            for n, new in zip(names, self.group_keep([s[n] for n in names], [m[n] for n in names],
                                                     n_prune)):
                out[n] = new
        return {n: out[n] for n in s}


class FloorForRoundHalfEven(SelectionBackend):
    """Counts truncated where round-half-even is documented: ``int(fraction * n)``.

    ``round-half-even`` is implemented as floor (floor and ceil are right), so
    0.35 * 10 = 3.5 gives 3 instead of 4, while 0.85 * 10 = 8.5 gives 8, right
    only because 8 is even.
    Models the most common hand-written count, ``int(amount * n)``, which
    truncates and so always prunes a little less than asked.
    """

    name = "floor for round-half-even"
    family = "masks"
    caught_by = ("golden:fraction_to_count", "masks/fraction-to-count-differential",
                 "golden:select_masks", "masks/select-nesting-counts")

    def count(self, fraction, n_alive, n_total, rounding):
        if rounding == "round-half-even":
            rounding = "floor"
        return fraction_to_count(fraction, n_alive, rounding)


class Float32Count(SelectionBackend):
    """The product fraction * n taken in float32 instead of float64.

    float32(0.07) * 100 rounds to exactly 7.0 in float32, so ceil gives 7 where
    the float64 product 7.000000000000001 gives 8; likewise half-way points
    move. Models a count computed on the device in the weights' precision
    (``(amount * torch.tensor(n, dtype=torch.float32)).ceil()``, TF's float32
    sparsity tensor).
    """

    name = "count in float32"
    family = "masks"
    caught_by = ("golden:fraction_to_count", "masks/fraction-to-count-differential")

    def count(self, fraction, n_alive, n_total, rounding):
        x = float(np.float32(fraction) * np.float32(n_alive))
        if rounding == "floor":
            return min(int(np.floor(x)), n_alive)
        if rounding == "ceil":
            return min(int(np.ceil(x)), n_alive)
        return min(int(round(x)), n_alive)


class FractionOfAllWeights(SelectionBackend):
    """The pruned fraction taken of all entries instead of the alive ones.

    A group with 9 of 12 entries alive pruned at 0.5 loses round(6) = 6 instead
    of round(4.5) = 4 (capped at the alive count). Models iterative pruning
    that recomputes ``amount * weight.numel()`` every round, forgetting that
    the previous rounds already removed part of the tensor; the density then
    falls faster than the schedule says.
    """

    name = "fraction of all weights"
    family = "masks"
    caught_by = ("golden:select_masks", "masks/select-nesting-counts", "masks/select-differential")

    def count(self, fraction, n_alive, n_total, rounding):
        return min(fraction_to_count(fraction, n_total, rounding), n_alive)


class TiesToHigherIndex(SelectionBackend):
    """Equal scores broken the other way: the *higher* flat index is kept.

    Top-k by ``np.argsort(scores, kind="stable")[n - k:]``: a stable ascending
    sort puts the later of two equal scores later, so taking the tail keeps it.
    The documented rule keeps the lower index. Models the natural "sort
    ascending, keep the last k" implementation.
    """

    name = "ties to the higher index"
    family = "masks"
    caught_by = ("golden:keep_top_k", "masks/keep-top-k-differential", "golden:select_masks")

    def top_k(self, scores, k):
        flat = scores.ravel()
        keep = np.zeros(flat.size, dtype=bool)
        keep[np.argsort(flat, kind="stable")[flat.size - k:]] = True
        return keep.reshape(scores.shape)


class ThresholdAtSortedK(SelectionBackend):
    """The threshold taken at ``sorted[p]`` and everything at or below it pruned.

    To prune p of n, the backend sorts ascending, takes t = sorted[p] and keeps
    ``scores > t``: p + 1 entries go (more with ties), and one goes even when
    p = 0. Models the off-by-one of indexing the sorted array at the count
    instead of at count - 1 (open_lth's ``sparse_global`` does exactly this,
    which is why its profile documents it as a convention).
    """

    name = "threshold at sorted[k]"
    family = "masks"
    caught_by = ("golden:keep_top_k", "masks/keep-top-k-count", "masks/keep-top-k-differential")

    def top_k(self, scores, k):
        flat = scores.ravel()
        p = flat.size - k
        if p >= flat.size:
            return np.zeros(scores.shape, dtype=bool)
        return (flat > np.sort(flat)[p]).reshape(scores.shape)


class NegativeZeroBelowZero(SelectionBackend):
    """-0.0 ranked below +0.0, as IEEE-754 totalOrder (or a radix select on the bits) ranks it.

    Among scores that compare equal, -0.0 loses to 0.0 whatever their indices.
    Models a top-k that sorts the floats' bit patterns as integers (GPU radix
    select) or uses ``totalOrder``, where the project says -0.0 == 0.0 and the
    lower index wins.
    """

    name = "-0.0 below 0.0"
    family = "masks"
    caught_by = ("golden:keep_top_k", "masks/keep-top-k-differential")

    def top_k(self, scores, k):
        flat = scores.ravel()
        # rank by (value, sign bit set last), then by index: -0.0 sorts below 0.0
        order = np.lexsort((np.arange(flat.size), np.signbit(flat), -flat))
        keep = np.zeros(flat.size, dtype=bool)
        keep[order[:k]] = True
        return keep.reshape(scores.shape)


class SubnormalsFlushedToZero(SelectionBackend):
    """Subnormal scores flushed to zero before ranking (FTZ/DAZ arithmetic).

    5e-324 and 0.0 become equal, so the tie rule, not the value, decides
    between them. Models kernels compiled with ``-ffast-math`` or run with the
    CPU's flush-to-zero / denormals-are-zero flags, as GPUs run by default.
    """

    name = "subnormals flushed to zero"
    family = "masks"
    caught_by = ("golden:keep_top_k", "masks/keep-top-k-differential")

    def top_k(self, scores, k):
        tiny = np.finfo(np.float64).tiny
        flushed = np.where(np.abs(scores) < tiny, 0.0, scores)
        return keep_top_k(flushed, k)


class RevivesPrunedEntries(SelectionBackend):
    """Each step ranks *all* entries again, so a pruned entry with a high score comes back.

    The group's new mask keeps the (n_total - n_dead - n_prune) highest scores
    over every entry, dead ones included: the density is right, but masks are
    not nested. Models "prune to the target sparsity from scratch each step"
    (recomputing the mask from scores that are not zero at pruned entries,
    e.g. gradients of ``weight_orig``), where the project's masks only shrink.
    """

    name = "pruned entries revived"
    family = "masks"
    caught_by = ("masks/select-nesting-counts", "masks/select-twice-nested", "golden:select_masks")

    def group_keep(self, scores, masks, n_prune):
        flat = np.concatenate([s.ravel() for s in scores])
        n_alive = sum(int(m.sum()) for m in masks)
        keep = self.top_k(flat, n_alive - n_prune)
        out, start = [], 0
        for m in masks:
            out.append(keep[start:start + m.size].reshape(m.shape))
            start += m.size
        return out


class ScopesSwapped(WrongBackend):
    """Global and layer-wise selection mixed up: scope "layer" pools the tensors, "global" does not.

    Models a flag read the wrong way round (``if global_: prune each layer``),
    or a library whose "global" keyword means something else; every count
    still looks plausible, only which tensors lose weights changes.
    """

    name = "scopes swapped"
    family = "masks"
    caught_by = ("golden:select_masks", "masks/select-differential", "masks/select-nesting-counts")

    def select_masks(self, *, scores, masks, fraction, scope, rate_multipliers, rounding):
        swapped = {"layer": "global", "global": "layer"}.get(scope, scope)
        return super().select_masks(scores=scores, masks=masks, fraction=fraction, scope=swapped,
                                    rate_multipliers=rate_multipliers, rounding=rounding)


class NMIgnoresAlive(WrongBackend):
    """N:M pattern chosen on the raw scores, then multiplied by the old mask.

    A group whose highest scores are already pruned keeps fewer than n alive
    entries, although it has more alive ones to keep. Models
    ``mask = nm_pattern(w) & old_mask`` instead of choosing among the alive.
    """

    name = "N:M ignores the alive mask"
    family = "masks"
    caught_by = ("masks/n-m-counts", "masks/n-m-differential", "golden:n_m_mask")

    def n_m_mask(self, *, scores, n, m, alive):
        mask = super().n_m_mask(scores=scores, n=n, m=m, alive=None)
        return mask if alive is None else mask & np.asarray(alive, dtype=bool)


def _prune_units(params: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], fraction: float,
                 norm: str, rounding: str, *, with_bias: bool) -> dict[str, np.ndarray]:
    """Structured pruning of hidden units (``refprune.masks.prune_units`` rebuilt on its public
    parts), with the unit's bias inside its norm when ``with_bias``."""
    n_layers = sum(1 for n in params if n.endswith(".weight"))
    new = {n: np.asarray(masks[n], dtype=bool).copy() for n in params}
    old = {n: np.asarray(masks[n], dtype=bool) for n in params}
    scores, alive = {}, {}
    for l in range(n_layers - 1):                           # every layer scored before any removal
        rows = np.where(old[f"layers.{l}.weight"], params[f"layers.{l}.weight"], 0.0)
        if with_bias:
            b = np.where(old[f"layers.{l}.bias"], params[f"layers.{l}.bias"], 0.0)
            rows = np.concatenate([rows, b[:, None]], axis=1)
        scores[l] = np.abs(rows).sum(axis=1) if norm == "l1" else np.sqrt((rows * rows).sum(axis=1))
        alive[l] = (old[f"layers.{l}.weight"].any(axis=1) | old[f"layers.{l}.bias"]
                    | old[f"layers.{l + 1}.weight"].any(axis=0))
    for l in scores:
        kept = select_masks({"u": scores[l]}, {"u": alive[l]}, fraction, rounding=rounding)["u"]
        removed = alive[l] & ~kept
        new[f"layers.{l}.weight"][removed, :] = False
        new[f"layers.{l}.bias"][removed] = False
        new[f"layers.{l + 1}.weight"][:, removed] = False
    return new


class UnitNormWithBias(WrongBackend):
    """Structured pruning scores each unit by the norm of its incoming weights *and its bias*.

    The documented unit score is the norm of the masked incoming row only.
    Models ranking a unit by the norm of all its parameters (``torch.norm``
    over ``[weight, bias]``, or a flattened per-unit parameter group), which
    reorders units whose biases are large next to their weights.
    """

    name = "unit norm includes the bias"
    family = "masks"
    caught_by = ("golden:prune_units", "masks/prune-units-differential")

    def prune_units(self, *, params, masks, fraction, norm, rounding):
        super().prune_units(params=params, masks=masks, fraction=fraction, norm=norm,
                            rounding=rounding)                   # the reference's argument checks
        return _prune_units(params, masks, fraction, norm, rounding, with_bias=True)


# ============================================================================ curvature
class MSEMeanOverBatchOnly(WrongBackend):
    """Mean-squared error averaged over the N samples only, summed over the K outputs.

    L = 1/N sum_n ||f_n - t_n||^2 instead of the documented 1/(N K) sum (f - t)^2
    (PyTorch's ``MSELoss(reduction="mean")``): loss, gradient, HVP and Hessians
    are all K times too large. Models the textbook per-sample squared norm
    ``((f - t) ** 2).sum(1).mean()``; invisible when K = 1.
    """

    name = "mse mean over the batch only"
    family = "curvature"
    caught_by = ("golden:loss_value", "golden:gradient", "golden:hvp", "golden:hessian_diag",
                 "curvature/loss-differential", "curvature/gradient-differential")

    @staticmethod
    def _k(y, loss) -> float:
        return float(np.shape(y)[1]) if loss == "mse" else 1.0

    def loss_value(self, *, params, X, y, activation, loss):
        return super().loss_value(params=params, X=X, y=y, activation=activation, loss=loss) \
            * self._k(y, loss)

    def _scaled(self, d, y, loss):
        k = self._k(y, loss)
        return {n: v * k for n, v in d.items()}

    def gradient(self, *, params, X, y, activation, loss):
        return self._scaled(super().gradient(params=params, X=X, y=y, activation=activation,
                                             loss=loss), y, loss)

    def hvp(self, *, params, X, y, v, activation, loss):
        return self._scaled(super().hvp(params=params, X=X, y=y, v=v,
                                        activation=activation, loss=loss), y, loss)

    def full_hessian(self, *, params, X, y, activation, loss):
        return super().full_hessian(params=params, X=X, y=y, activation=activation, loss=loss) \
            * self._k(y, loss)

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        return self._scaled(super().hessian_diag(params=params, X=X, y=y, activation=activation,
                                                 loss=loss, method=method), y, loss)

    def hutchinson_diag(self, *, params, X, y, activation, loss, probes):
        return self._scaled(super().hutchinson_diag(params=params, X=X, y=y, activation=activation,
                                                    loss=loss, probes=probes), y, loss)


class GGNReportedAsExact(WrongBackend):
    """The generalised Gauss-Newton diagonal returned when the exact Hessian diagonal is asked for.

    Drops the sigma''(z) * (delta W) terms, so it agrees with the exact
    diagonal for ReLU and identity networks and differs for tanh and sigmoid.
    Models reporting a Gauss-Newton or Fisher diagonal (what most curvature
    libraries compute cheaply) under the name "Hessian diagonal".
    """

    name = "GGN reported as exact"
    family = "curvature"
    caught_by = ("golden:hessian_diag", "curvature/hessian-diag-differential",
                 "curvature/exact-diag-is-diag-of-full")

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        if method == "exact":
            method = "ggn"
        return super().hessian_diag(params=params, X=X, y=y, activation=activation, loss=loss,
                                    method=method)


def obd_diagonal(params: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray, activation: str,
                 loss: str, *, sigma2: bool = True) -> dict[str, np.ndarray]:
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
        _, p, q = softmax_parts(f)                 # q = 1 - p without cancellation
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
            h_new = (h @ (Ws[l] * Ws[l])) * d1 ** 2
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
    caught_by = ("golden:hessian_diag", "curvature/hessian-diag-differential")

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        result = super().hessian_diag(params=params, X=X, y=y, activation=activation, loss=loss,
                                      method=method)              # argument checks, other methods
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
    caught_by = ("golden:hvp", "golden:hutchinson_diag", "curvature/hvp-differential",
                 "curvature/hvp-linear-symmetric")
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
    caught_by = ("golden:full_hessian", "golden:hutchinson_diag",
                 "curvature/full-hessian-differential", "curvature/hutchinson-differential")

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
        for v in probes:                      # each probe sliced in sorted-name order
            tree, start = {}, 0
            for n in sorted(params):
                size = np.size(params[n])
                tree[n] = v[start:start + size].reshape(np.shape(params[n]))
                start += size
            reread.append(flatten(tree))
        return super().hutchinson_diag(params=params, X=X, y=y, activation=activation, loss=loss,
                                       probes=np.array(reread).reshape(probes.shape))


# ============================================================================ sparse approximation
class SoftHardSwapped(WrongBackend):
    """Soft and hard thresholding swapped: ``soft_threshold`` keeps survivors unshrunk.

    soft_threshold(w, lam) returns w * (|w| > sqrt(2 lam)) and
    hard_threshold_prox returns sign(w) max(|w| - lam, 0). Models the two
    proximal operators wired to each other's names, an easy slip since both
    "threshold" w.
    """

    name = "soft and hard thresholding swapped"
    family = "sparse_approx"
    caught_by = ("golden:soft_threshold", "golden:hard_threshold_prox",
                 "sparse_approx/soft-threshold-differential", "sparse_approx/soft-threshold-minimises",
                 "sparse_approx/hard-threshold-prox-differential")

    def soft_threshold(self, *, w, lam):
        return super().hard_threshold_prox(w=w, lam=lam)

    def hard_threshold_prox(self, *, w, lam):
        return super().soft_threshold(w=w, lam=lam)


# ============================================================================ scores
class OBDWithAbsoluteWeight(WrongBackend):
    """OBD saliency with |w| where the formula has w**2: s = 1/2 h |w|.

    The ranking changes wherever the curvatures differ: a weight with a large
    h and a small |w| moves up. Models the square dropped when porting
    LeCun et al.'s s_i = h_ii u_i**2 / 2 next to magnitude code that already
    works with |w|.
    """

    name = "OBD with |w|"
    family = "scores"
    caught_by = ("golden:scores", "scores/differential")

    def scores(self, *, rule, params, X, y, activation, loss, masks, options):
        result = super().scores(rule=rule, params=params, X=X, y=y, activation=activation, loss=loss,
                                masks=masks, options=options)    # argument checks, other rules
        if rule != "obd":
            return result
        m = {n: (np.ones(np.shape(v), dtype=bool) if masks is None else np.asarray(masks[n], dtype=bool))
             for n, v in params.items()}
        w = {n: np.where(m[n], params[n], 0.0) for n in params}
        h = self.hessian_diag(params=w, X=X, y=y, activation=activation, loss=loss,
                              method=(options or {}).get("hessian_method", "exact"))
        return {n: np.where(m[n], 0.5 * h[n] * np.abs(w[n]), 0.0) for n in result}


# ============================================================================ schedules
class CubicExponentTwo(WrongBackend):
    """Zhu and Gupta's gradual schedule with exponent 2 instead of 3.

    s_j = s_f + (s_i - s_f) (1 - j/n)**2: the same end points, but sparsity
    rises more slowly at first, so every intermediate target and count is off.
    Models a polynomial-decay schedule whose ``power`` was left at a default
    (TF's ``polynomial_decay`` and TF-MOT's ``PolynomialDecay`` take the
    exponent as an argument; the paper's is 3).
    """

    name = "cubic schedule with exponent 2"
    family = "schedules"
    caught_by = ("golden:schedule", "schedules/differential")

    def schedule(self, *, name, options, n, rounding):
        result = super().schedule(name=name, options=options, n=n, rounding=rounding)
        if name != "cubic":
            return result
        from refprune.schedules import Schedule
        o = dict(options)
        s_i, s_f = float(o["initial_sparsity"]), float(o["final_sparsity"])
        steps = tuple(int(t) for t in result["steps"])
        n_steps = len(steps) - 1
        values = []
        for j in range(n_steps + 1):
            u = 1.0 - j / n_steps
            values.append(s_f + (s_i - s_f) * (u * u))
        sched = Schedule("cubic", "absolute", steps, tuple(values))
        return {"kind": sched.kind, "steps": np.array(sched.steps, dtype=np.int64),
                "values": np.array(sched.values, dtype=np.float64),
                "densities": np.array(sched.densities(), dtype=np.float64),
                "alive_counts": np.array(sched.alive_counts(n, rounding), dtype=np.int64)}


# ============================================================================ lottery
def imp_round_rebuilt(trained: Mapping[str, np.ndarray], rewind_params: Mapping[str, np.ndarray],
                      masks: Mapping[str, np.ndarray], fraction: float, scope: str,
                      rate_multipliers: Mapping[str, float] | None, rounding: str, *,
                      signed: bool = False, count_biases: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """One IMP round (the protocol's ``imp_round``) rebuilt from ``refprune.masks`` with two switches.

    Scores |trained * masks| of the weight matrices (``signed``: trained * masks);
    each group (the global pool, or one matrix) loses fraction_to_count(f, alive)
    of its alive entries, the lowest scores (``count_biases``: alive counts the
    group's biases too, though only weights are pruned); survivors take
    ``rewind_params``, pruned entries 0.0.
    """
    from refprune.masks import select_masks_count

    weights = [n for n in flat_names(trained) if n.endswith(".weight")]
    m = {n: np.asarray(masks[n], dtype=bool) for n in flat_names(trained)}
    eff = {n: np.where(m[n], trained[n], 0.0) for n in weights}
    s = {n: (eff[n] if signed else np.abs(eff[n])) for n in weights}
    mult = dict(rate_multipliers or {})
    if scope == "layer":
        groups = [([n], fraction * mult.get(n, 1.0)) for n in weights]
    else:
        pool = [n for n in weights if mult.get(n, 1.0) == 1.0]
        groups = ([(pool, fraction)] if pool else []) + \
                 [([n], fraction * mult[n]) for n in weights if n not in pool]
    new = dict(m)
    for names, f in groups:
        alive = sum(int(m[n].sum()) for n in names)
        counted = alive + (sum(int(m[n[:-len("weight")] + "bias"].sum()) for n in names)
                           if count_biases else 0)
        n_prune = min(fraction_to_count(f, counted, rounding), alive)
        if len(names) == 1:
            out = select_masks_count({names[0]: s[names[0]]}, {names[0]: m[names[0]]},
                                     {names[0]: n_prune}, scope="layer")
        else:
            out = select_masks_count({n: s[n] for n in names}, {n: m[n] for n in names}, n_prune,
                                     scope="global")
        new.update(out)
    params = {n: np.where(new[n], np.asarray(rewind_params[n], dtype=np.float64), 0.0)
              for n in flat_names(trained)}
    return {"masks": {n: new[n].copy() for n in flat_names(trained)}, "params": params}


class SignedWeightsAsMagnitudes(WrongBackend):
    """IMP ranks the signed trained weights instead of their magnitudes.

    Large negative weights are pruned first and small positive ones kept.
    Models a missing ``abs()`` (``torch.topk(w.flatten(), k)`` on the raw
    weights), one of the commonest magnitude-pruning slips.
    """

    name = "signed weights as magnitudes"
    family = "lottery"
    caught_by = ("golden:imp_round", "lottery/imp-round-differential")

    def imp_round(self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding):
        super().imp_round(trained=trained, rewind_params=rewind_params, masks=masks, fraction=fraction,
                          scope=scope, rate_multipliers=rate_multipliers, rounding=rounding)   # argument checks
        return imp_round_rebuilt(trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding,
                                 signed=True)


class BiasesCountedInDensity(WrongBackend):
    """The pruned count is a fraction of the alive weights *and biases*, but only weights are pruned.

    Each group loses fraction_to_count(f, alive weights + alive biases of its
    layers) weights, so every round prunes more than asked, and the density
    over the weight matrices drifts below the schedule. Models computing the
    count from ``model.parameters()`` (or a density over every parameter)
    while pruning only the weight matrices.
    """

    name = "biases counted in the density"
    family = "lottery"
    caught_by = ("golden:imp_round", "lottery/imp-round-differential")

    def imp_round(self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding):
        super().imp_round(trained=trained, rewind_params=rewind_params, masks=masks, fraction=fraction,
                          scope=scope, rate_multipliers=rate_multipliers, rounding=rounding)   # argument checks
        return imp_round_rebuilt(trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding,
                                 count_biases=True)


class RewindRestoresNothing(WrongBackend):
    """The rewind point was saved by reference, so rewinding restores the trained weights.

    The "rewound" network is the trained one with pruned entries zeroed, i.e.
    fine-tuning, whatever the rewinding mode says. Models saving the rewind
    point as ``w0 = dict(model.named_parameters())`` (or a ``state_dict()``
    without ``copy.deepcopy``), which keeps references to the tensors that
    training then updates in place.
    """

    name = "rewind restores nothing"
    family = "lottery"
    caught_by = ("golden:imp_round", "lottery/imp-round-rewinds", "lottery/imp-round-differential")

    def imp_round(self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding):
        return super().imp_round(trained=trained, rewind_params=trained, masks=masks, fraction=fraction,
                                 scope=scope, rate_multipliers=rate_multipliers, rounding=rounding)


def imp_rebuilt(params: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray, activation: str,
                loss: str, options: Mapping[str, Any], *, reset: bool = True,
                mask_update: bool = True, snapshot_offset: int = 0) -> dict[str, Any]:
    """Full-batch IMP (the protocol's ``imp``) rebuilt on ``refprune.mlp`` with three switches.

    The masks live beside an unmasked network, as in a hand-written training
    loop: pruning zeroes the pruned weights, the gradient is masked, and the
    SGD update d, v = momentum v + d, w -= lr_t v is masked too
    (``mask_update``). ``reset``: the momentum buffer is cleared when a round
    starts. ``snapshot_offset``: late rewinding ("step:K") saves the weights
    after K + offset updates (training still resumes at update K).
    """
    from .backend import _model

    o = dict(options)
    net = _model(params, activation, loss)                 # every mask True: the loop holds the masks
    names = flat_names(params)
    weights = [n for n in names if n.endswith(".weight")]
    epochs, lr, momentum = int(o["epochs"]), float(o["lr"]), float(o.get("momentum", 0.0))
    milestones, gamma = tuple(o.get("milestones") or ()), float(o.get("gamma", 0.1))
    rewind = str(o.get("rewind", "init"))
    K = int(rewind[5:]) if rewind.startswith("step:") else 0

    def rate(t: int) -> float:
        r = lr
        for mstone in milestones:
            if mstone <= t:
                r = r * gamma
        return r

    masks = {n: np.ones(np.shape(params[n]), dtype=bool) for n in names}
    velocity: dict[str, np.ndarray] = {}
    snap: dict[str, np.ndarray] = {}
    snap_at = min(K + snapshot_offset, epochs)

    def train(start: int, updates: int, fixed_rate: float | None = None) -> None:
        if reset:
            velocity.clear()
        t = start
        if rewind.startswith("step:") and t == snap_at and not snap:
            snap.update({n: p.copy() for n, p in net.params.items()})
        for _ in range(updates):
            _, grads = net.loss_and_grads(X, y)
            r = rate(t) if fixed_rate is None else fixed_rate
            for n, w in net.params.items():
                d = grads[n] * masks[n]
                if momentum:
                    v = velocity.get(n)
                    d = d.copy() if v is None else momentum * v + d
                    velocity[n] = d
                w -= r * (d * masks[n] if mask_update else d)
            t += 1
            if rewind.startswith("step:") and t == snap_at and not snap:
                snap.update({n: p.copy() for n, p in net.params.items()})

    init = {n: p.copy() for n, p in net.params.items()}
    trace = {"masks": [], "rewound": [], "final": None, "train_loss": []}
    trace["rewound"].append({n: p.copy() for n, p in init.items()})
    train(0, epochs)
    trace["masks"].append({n: m.copy() for n, m in masks.items()})
    trace["train_loss"].append(net.loss_value(X, y))
    rewind_params = {"init": init}.get(rewind, snap if rewind.startswith("step:") else None)
    sparsities = o.get("sparsities")
    for r in range(int(o["rounds"]) if sparsities is None else len(sparsities)):
        scores = {n: np.abs(np.where(masks[n], net.params[n], 0.0)) for n in weights}
        if sparsities is None:
            new = select_masks(scores, {n: masks[n] for n in weights}, float(o["alpha"]),
                               scope=o.get("scope", "layer"),
                               rate_multipliers=o.get("rate_multipliers"))
        else:                               # absolute targets: each group down to its count
            mult = o.get("rate_multipliers") or {}
            pool = ([n for n in weights if mult.get(n, 1.0) == 1.0]
                    if o.get("scope") == "global" else [])
            new = {}
            for group, m in ([(pool, 1.0)] if pool else []) + [([n], mult.get(n, 1.0))
                                                               for n in weights if n not in pool]:
                size = sum(masks[n].size for n in group)
                keep = size - fraction_to_count(float(sparsities[r]) * m, size)
                alive = sum(int(masks[n].sum()) for n in group)
                new.update(select_masks_count({n: scores[n] for n in group}, masks,
                                              max(alive - keep, 0), scope="global"))
        masks.update(new)
        source = net.params if rewind_params is None else rewind_params
        for n in names:
            net.params[n] = np.where(masks[n], source[n], 0.0)
        trace["rewound"].append({n: p.copy() for n, p in net.params.items()})
        trace["masks"].append({n: m.copy() for n, m in masks.items()})
        if rewind.startswith("step:"):
            train(K, epochs - K)
        elif rewind == "finetune":
            train(0, epochs, fixed_rate=rate(epochs - 1))
        else:
            train(0, epochs)
        trace["train_loss"].append(net.loss_value(X, y))
    trace["final"] = {n: p.copy() for n, p in net.params.items()}
    trace["train_loss"] = np.array(trace["train_loss"], dtype=np.float64)
    return trace


class _IMPBackend(WrongBackend):
    """``imp`` through ``imp_rebuilt`` with the switches set by the class attributes."""

    reset = True
    mask_update = True
    snapshot_offset = 0

    def imp(self, *, params, X, y, activation, loss, options):
        return imp_rebuilt(params, X, y, activation, loss, options, reset=self.reset,
                           mask_update=self.mask_update, snapshot_offset=self.snapshot_offset)


class OptimizerNotReset(_IMPBackend):
    """The momentum buffer carried over from the previous round instead of being reset.

    After a rewind the surviving weights start with the velocity they had at
    the end of the last round's training, which belongs to another point of
    the loss surface. Models building ``torch.optim.SGD`` once for the whole
    IMP run (its ``momentum_buffer`` survives ``load_state_dict`` of the
    model), where the lottery-ticket procedure starts each round afresh.
    """

    name = "optimizer state not reset"
    family = "lottery"
    caught_by = ("golden:imp", "lottery/imp-differential")
    reset = False


class MomentumRevivesPruned(OptimizerNotReset):
    """Only the gradients are masked, so the carried-over momentum moves pruned weights again.

    The training loop of ``OptimizerNotReset`` (one optimizer for the whole
    run), with the mask applied to the gradient but not to the update: the
    velocity a weight gathered before it was pruned keeps changing it, so a
    pruned weight becomes non-zero and takes part in the forward pass again.
    Models the common ``p.grad *= mask; optimizer.step()`` loop; on its own
    gradient masking is harmless, together with a momentum buffer that outlives
    the pruning step it revives weights.
    """

    name = "momentum revives pruned weights"
    caught_by = ("golden:imp", "lottery/imp-differential", "lottery/imp-nested-and-rewound")
    mask_update = False


class RewindToWrongStep(_IMPBackend):
    """Late rewinding to the weights after K + 1 updates instead of K.

    The snapshot is taken one update late (the hook runs after the step
    counter has moved on), while training still resumes at update K. Models
    the off-by-one between "after K steps" and "at step K" in a training
    loop's callback.
    """

    name = "rewind to the wrong step"
    family = "lottery"
    caught_by = ("golden:imp", "lottery/imp-differential")
    snapshot_offset = 1


# ============================================================================ catalogue
#: name -> wrong backend class
CATALOGUE: dict[str, type[WrongBackend]] = {
    "floor_for_round_half_even": FloorForRoundHalfEven,
    "float32_count": Float32Count,
    "fraction_of_all_weights": FractionOfAllWeights,
    "ties_to_higher_index": TiesToHigherIndex,
    "threshold_at_sorted_k": ThresholdAtSortedK,
    "negative_zero_below_zero": NegativeZeroBelowZero,
    "subnormals_flushed_to_zero": SubnormalsFlushedToZero,
    "revives_pruned_entries": RevivesPrunedEntries,
    "scopes_swapped": ScopesSwapped,
    "n_m_ignores_alive": NMIgnoresAlive,
    "unit_norm_with_bias": UnitNormWithBias,
    "mse_mean_over_batch_only": MSEMeanOverBatchOnly,
    "ggn_reported_as_exact": GGNReportedAsExact,
    "obd_without_sigma2": OBDWithoutSigma2,
    "finite_difference_hvp": FiniteDifferenceHVP,
    "sorted_key_flat_order": SortedKeyFlatOrder,
    "soft_hard_swapped": SoftHardSwapped,
    "obd_with_absolute_weight": OBDWithAbsoluteWeight,
    "cubic_exponent_two": CubicExponentTwo,
    "signed_weights_as_magnitudes": SignedWeightsAsMagnitudes,
    "biases_counted_in_density": BiasesCountedInDensity,
    "rewind_restores_nothing": RewindRestoresNothing,
    "optimizer_not_reset": OptimizerNotReset,
    "momentum_revives_pruned": MomentumRevivesPruned,
    "rewind_to_wrong_step": RewindToWrongStep,
}


def family_of(name: str) -> str:
    """The family of checks expected to catch the catalogue entry ``name``."""
    return CATALOGUE[name].family


def caught_by(name: str) -> tuple[str, ...]:
    """The checks expected to catch ``name`` (any one suffices): property names or "golden:<op>"."""
    return CATALOGUE[name].caught_by
