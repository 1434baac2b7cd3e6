"""PyTorch as a conformance backend: ``torch.nn.utils.prune`` for masks, ``torch.func`` for curvature.

    python -m conformance run --backend conformance.adapters.torch_backend:TorchBackend --profile torch

Everything is computed by PyTorch's own functions, in float64 on the CPU; this
module only converts arrays and arranges the calls. What each operation calls:

==================  ==========================================================================
operation           PyTorch
==================  ==========================================================================
profile_mask        every tensor is the ``weight`` of its own ``nn.Module``, its current mask
                    installed with ``prune.custom_from_mask``; then ``prune.l1_unstructured``
                    per tensor (scope "layer") or ``prune.global_unstructured`` with
                    ``L1Unstructured`` (scope "global"). The second call goes through the
                    ``PruningContainer``, so the amount is of the alive entries and pruned
                    entries stay pruned, exactly as in iterative pruning with torch.
select_masks        the same calls, with the reference's grouping (multipliers scale the
                    amount per tensor); only "round-half-even" (torch's rounding) and
                    non-negative scores (torch ranks |score|) are expressible.
keep_top_k          ``L1Unstructured(amount=n - k)`` on non-negative scores.
fraction_to_count   ``prune._compute_nparams_toprune``: round(fraction * n) in Python floats,
                    the count every torch pruning method uses; "round-half-even" only.
prune_units         ``prune.ln_structured(dim=0, n=1 or 2)`` on each hidden layer's weight
                    (masked as above, every layer scored before any removal); the removed
                    rows' biases and outgoing columns are then masked, which torch leaves to
                    the user.
loss_value          ``torch.nn.functional.cross_entropy`` / ``mse_loss`` (mean reductions)
                    of ``F.linear`` layers with ``torch.relu``, ``tanh``, ``sigmoid``.
gradient            ``torch.func.grad``.
hvp                 ``torch.func.vjp`` of ``torch.func.grad`` (reverse-over-reverse, double
                    backward). ``TorchForwardOverReverse`` uses ``torch.func.jvp`` of
                    ``torch.func.grad`` instead, which torch 2.13 cannot do through
                    ``F.mse_loss`` (pytorch/pytorch#123996).
full_hessian        ``torch.func.hessian`` of the loss of the flat parameter vector.
hessian_diag        "exact": the diagonal of ``torch.func.hessian`` taken per parameter
                    tensor (the diagonal blocks of the Hessian); "ggn": diag(J^T H_out J) with
                    J = ``torch.func.jacrev`` of the network output and H_out =
                    ``torch.func.hessian`` of the loss in the output. "obd" has no PyTorch
                    counterpart: not provided.
hutchinson_diag     mean over the given probes of v * (H v), H v as in ``hvp``.
imp_round           the weight matrices pruned as in select_masks (by |trained|, their masks
                    installed first), then ``weight_orig`` set to the rewind values: the
                    pruned network is ``weight_orig * weight_mask``, as torch code rewinds.
scores              the rules' formulas on ``torch.func`` derivatives of L(theta * M): g from
                    ``grad``, h from ``hessian_diag`` ("exact", "ggn"), H g from ``hvp``;
                    SynFlow's dR/dW from ``torch.autograd.grad``. "random" (NumPy's stream),
                    "obs" and the "obd" Hessian method: not provided.
sparse_forward      each layer's ``weight`` (``weight_orig * weight_mask`` after
                    ``prune.custom_from_mask``) converted by ``Tensor.to_sparse_csr()``;
                    z^T = ``torch.sparse.mm``(W, a^T) + bias.
sparse_train_step   ``torch.sparse_csr_tensor`` on the mask's pattern (alive zeros stored:
                    ``to_sparse_csr`` would drop them), its values a Parameter; biases
                    through ``prune.custom_from_mask``; one ``torch.optim.SGD(lr,
                    weight_decay)`` step after ``backward()`` through ``torch.sparse.mm``.
train_steps         ``torch.optim.SGD`` (momentum, nesterov, weight_decay) on
                    ``weight_orig`` / ``bias_orig`` of layers pruned with
                    ``prune.custom_from_mask`` (forward pre-hook ``orig * mask``): the
                    "gradient" convention; pruning events are further ``custom_from_mask``
                    calls, rewinds copy into ``*_orig`` and start a new optimizer.
==================  ==========================================================================

N:M masks, schedules, the sparse-approximation operators and a whole IMP run
(training included) have no PyTorch function to call: not provided. An argument torch cannot express
(another rounding mode, signed scores where torch ranks |score|) raises
``NotProvided`` rather than being approximated. What passes and where PyTorch
deviates, and why: ``docs/torch_adapter.md``.

torch is imported when the backend is instantiated, never at import time, so
the conformance package does not depend on it (``pip install 'refprune[torch]'``).
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backend import Backend, NotProvided, flat_names, flatten, unflatten
from ._scores import derivative_scores, masked_score_inputs

HALF_EVEN = "round-half-even"


def _import_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "the PyTorch backend needs torch; install it with pip install 'refprune[torch]'"
        ) from exc
    return torch


@contextlib.contextmanager
def _sparse_beta():
    """torch warns at every CSR tensor that its sparse CSR support is "in beta state"."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        yield


class TorchBackend(Backend):
    """PyTorch's pruning utilities and automatic differentiation, float64 on the CPU."""

    def __init__(self) -> None:
        self.torch = _import_torch()
        from torch.nn.utils import prune

        self.prune = prune
        self.name = f"PyTorch {self.torch.__version__} (torch.nn.utils.prune, torch.func)"

    # ============================================================== helpers: masks
    def _holder(self, values: np.ndarray, alive: np.ndarray | None):
        """A module whose parameter ``weight`` holds a copy of ``values`` (dtype kept), with
        ``alive`` installed as its pruning mask (all alive when None)."""
        torch = self.torch
        module = torch.nn.Module()
        module.weight = torch.nn.Parameter(torch.tensor(np.array(values)), requires_grad=False)
        mask = (
            np.ones(np.shape(values), dtype=bool)
            if alive is None
            else np.asarray(alive, dtype=bool)
        )
        self.prune.custom_from_mask(module, "weight", mask=torch.tensor(mask.copy()))
        return module

    @staticmethod
    def _mask(module) -> np.ndarray:
        return module.weight_mask.detach().cpu().numpy() != 0

    def _prune(
        self,
        scores: Mapping[str, np.ndarray],
        alive: Mapping[str, np.ndarray] | None,
        groups: list[tuple[list[str], Any]],
    ) -> dict[str, np.ndarray]:
        """The masks after pruning ``scores`` (masked by ``alive``) group by group."""
        holders = {n: self._holder(scores[n], None if alive is None else alive[n]) for n in scores}
        self._prune_holders(holders, groups)
        return {n: self._mask(holders[n]) for n in scores}

    def _prune_holders(self, holders: dict[str, Any], groups: list[tuple[list[str], Any]]) -> None:
        """Prune each group: one tensor with ``l1_unstructured``, several with ``global_unstructured``."""
        for names, amount in groups:
            if len(names) == 1:
                self.prune.l1_unstructured(holders[names[0]], "weight", amount=amount)
            elif names:
                self.prune.global_unstructured(
                    [(holders[n], "weight") for n in names],
                    pruning_method=self.prune.L1Unstructured,
                    amount=amount,
                )

    @staticmethod
    def _rounding(rounding: str) -> None:
        if rounding != HALF_EVEN:
            raise NotProvided(f"torch rounds counts half-to-even only, not {rounding!r}")

    @staticmethod
    def _nonnegative(scores: Mapping[str, np.ndarray] | np.ndarray) -> None:
        arrays = scores.values() if isinstance(scores, Mapping) else [scores]
        if any(np.any(np.asarray(a) < 0) for a in arrays):
            raise NotProvided(
                "torch.nn.utils.prune ranks |score|; signed scores are not expressible"
            )

    # ============================================================== masks
    def fraction_to_count(self, *, fraction, n, rounding):
        self._rounding(rounding)
        if isinstance(fraction, numbers.Integral) and not isinstance(fraction, bool):
            fraction = float(
                fraction
            )  # the protocol's fraction; torch would read an int as a count
        self.prune._validate_pruning_amount_init(fraction)
        return int(self.prune._compute_nparams_toprune(fraction, int(n)))

    def keep_top_k(self, *, scores, k):
        s = np.asarray(scores)
        self._nonnegative(s)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= s.size:  # type: ignore[operator]
            raise ValueError(f"k must be an integer in [0, {s.size}], got {k!r}")
        holder = self._holder(s, None)
        self.prune.l1_unstructured(holder, "weight", amount=int(s.size - k))  # type: ignore[call-overload]
        return self._mask(holder)

    @staticmethod
    def _groups(
        names: list[str], fraction: float, scope: str, rate_multipliers: Mapping[str, float] | None
    ) -> list[tuple[list[str], float]]:
        """The reference's grouping: one group per tensor at fraction * multiplier (layer), or
        the pool of multiplier-1 tensors at fraction plus each other tensor on its own (global)."""
        mult = dict(rate_multipliers or {})
        if scope == "layer":
            return [([n], float(fraction * mult.get(n, 1.0))) for n in names]
        if scope == "global":
            pool = [n for n in names if mult.get(n, 1.0) == 1.0]
            return [(pool, float(fraction))] + [
                ([n], float(fraction * mult[n])) for n in names if n not in pool
            ]
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")

    def select_masks(self, *, scores, masks, fraction, scope, rate_multipliers, rounding):
        self._rounding(rounding)
        self._nonnegative(scores)
        return self._prune(
            scores, masks, self._groups(list(scores), fraction, scope, rate_multipliers)
        )

    def profile_mask(self, *, scores, amount, alive, scope, ignore):
        prunable = [n for n in scores if n not in set(ignore)]
        if scope == "layer":
            groups = [([n], amount) for n in prunable]
        elif scope == "global":
            groups = [(prunable, amount)]
        else:
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
        return self._prune(scores, alive, groups)

    def prune_units(self, *, params, masks, fraction, norm, rounding):
        self._rounding(rounding)
        if norm not in ("l1", "l2"):
            raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
        n_layers = sum(1 for n in params if n.endswith(".weight"))
        new = {n: np.asarray(masks[n], dtype=bool).copy() for n in params}
        removed = {}
        for l in range(n_layers - 1):  # all layers scored on the old masks
            name = f"layers.{l}.weight"
            holder = self._holder(params[name], masks[name])
            self.prune.ln_structured(
                holder, "weight", amount=float(fraction), n=1 if norm == "l1" else 2, dim=0
            )
            before, after = np.asarray(masks[name], dtype=bool), self._mask(holder)
            removed[l] = before.any(axis=1) & ~after.any(axis=1)
        for l, gone in removed.items():
            new[f"layers.{l}.weight"][gone, :] = False
            new[f"layers.{l}.bias"][gone] = False
            new[f"layers.{l + 1}.weight"][:, gone] = False
        return new

    # ============================================================== lottery
    def imp_round(
        self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding
    ):
        """Prune the trained weight matrices with ``l1_unstructured`` / ``global_unstructured`` (their
        masks as the PruningContainer's starting point), then rewind the way torch code does:
        ``weight_orig`` takes the rewind values, the mask stays, weight = weight_orig * mask."""
        torch = self.torch
        self._rounding(rounding)
        names = flat_names(trained)
        weights = [n for n in names if n.endswith(".weight")]
        holders = {n: self._holder(trained[n], masks[n]) for n in weights}
        self._prune_holders(holders, self._groups(weights, fraction, scope, rate_multipliers))
        out_masks, out_params = {}, {}
        for n in names:
            if n in holders:
                with torch.no_grad():
                    holders[n].weight_orig.copy_(
                        torch.tensor(np.array(rewind_params[n], dtype=np.float64))
                    )
                out_masks[n] = self._mask(holders[n])
                out_params[n] = (
                    (holders[n].weight_orig * holders[n].weight_mask).detach().numpy().copy()
                )
            else:  # biases are never pruned
                out_masks[n] = np.asarray(masks[n], dtype=bool).copy()
                out_params[n] = np.where(
                    out_masks[n], np.asarray(rewind_params[n], dtype=np.float64), 0.0
                )
        return {"masks": out_masks, "params": out_params}

    # ============================================================== scores
    def scores(self, *, rule, params, X, y, activation, loss, masks, options):
        """Saliencies from ``torch.func`` derivatives of L(theta * M) (see the module table).

        "random" draws NumPy's PCG64 stream and "obs" inverts a damped Hessian: neither
        is a PyTorch computation, so both are not provided, nor is hessian_method "obd".
        """
        torch = self.torch
        options, names, m, w = masked_score_inputs(rule, params, masks, options, "PyTorch")
        if rule == "magnitude":
            out = {n: np.abs(w[n]) for n in names}
        elif rule == "synflow":
            weights = [n for n in flat_names(params) if n.endswith(".weight")]
            if any(n not in weights for n in names):
                raise ValueError("synflow scores weight matrices only")
            W = [torch.tensor(np.abs(w[n])).requires_grad_(True) for n in weights]
            a = torch.ones(W[0].shape[1], dtype=torch.float64)
            for Wl in W:
                a = Wl @ a  # R = 1^T |W_{L-1}| ... |W_0| 1
            grads = torch.autograd.grad(a.sum(), W)
            out = {n: np.abs(grads[weights.index(n)].numpy() * np.abs(w[n])) for n in names}
        else:
            theta, _, loss_of, _, _ = self._problem(params, X, y, activation, loss, m)
            method = options.get("hessian_method", "exact")
            out = derivative_scores(
                rule,
                names,
                w,
                g=self._tree(torch.func.grad(loss_of)(theta), params),
                hvp=lambda v: self._tree(self._hvp(loss_of, theta, self._flat(v)), params),
                diagonal=lambda: self._tree(
                    self._diag(params, X, y, activation, loss, method, m), params
                ),
            )
        return {n: np.where(m[n], out[n], 0.0) for n in names}

    # ============================================================== helpers: curvature
    def _activation(self, activation: str):
        """The torch function of the hidden activation named ``activation``."""
        torch = self.torch
        acts = {
            "relu": torch.relu,
            "tanh": torch.tanh,
            "sigmoid": torch.sigmoid,
            "identity": lambda z: z,
        }
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        return acts[activation]

    def _problem(self, params, X, y, activation: str, loss: str, masks=None):
        """(theta, unflat, loss_of_theta, output_of_theta, loss_of_output) for the flat parameters.

        With ``masks`` the network computes with theta * M, so every derivative is
        of L(theta * M) in theta."""
        torch = self.torch
        F = torch.nn.functional
        act = self._activation(activation)
        if loss not in ("cross_entropy", "mse"):
            raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
        names = flat_names(params)
        shapes = [tuple(np.shape(params[n])) for n in names]
        sizes = [int(np.prod(s)) for s in shapes]
        theta = torch.tensor(
            np.concatenate([np.ravel(params[n]) for n in names]).astype(np.float64)
        )
        M = (
            None
            if masks is None
            else torch.tensor(
                np.concatenate(
                    [
                        np.ravel(masks[n])
                        if n in masks
                        else np.ones(int(np.size(params[n])), dtype=bool)
                        for n in names
                    ]
                ).astype(np.float64)
            )
        )
        Xt = None if X is None else torch.tensor(np.array(X, dtype=np.float64))
        yt = (
            None
            if y is None
            else torch.tensor(np.array(y, dtype=np.int64))
            if loss == "cross_entropy"
            else torch.tensor(np.array(y, dtype=np.float64))
        )
        n_layers = len(names) // 2

        def unflat(t):
            parts = torch.split(t, sizes)
            return [p.reshape(s) for p, s in zip(parts, shapes)]

        def output(t):
            p = unflat(t if M is None else t * M)
            a = Xt
            for l in range(n_layers):
                z = F.linear(a, p[2 * l], p[2 * l + 1])  # a W^T + b
                a = act(z) if l < n_layers - 1 else z
            return a

        def loss_of_output(f):
            return F.cross_entropy(f, yt) if loss == "cross_entropy" else F.mse_loss(f, yt)

        def loss_of(t):
            return loss_of_output(output(t))

        return theta, unflat, loss_of, output, loss_of_output

    def _tree(self, vec, params) -> dict[str, np.ndarray]:
        """A flat torch vector as a dict shaped like ``params`` (protocol flat order)."""
        return unflatten(vec.detach().cpu().numpy().astype(np.float64), params)  # a copy

    def _flat(self, tree: Mapping[str, np.ndarray]):
        """A params-shaped dict as one float64 torch vector (protocol flat order)."""
        return self.torch.tensor(np.asarray(flatten(tree), dtype=np.float64))

    # ============================================================== curvature
    def loss_value(self, *, params, X, y, activation, loss):
        theta, _, loss_of, _, _ = self._problem(params, X, y, activation, loss)
        with self.torch.no_grad():
            return float(loss_of(theta))

    def gradient(self, *, params, X, y, activation, loss):
        theta, _, loss_of, _, _ = self._problem(params, X, y, activation, loss)
        return self._tree(self.torch.func.grad(loss_of)(theta), params)

    def _hvp(self, loss_of, theta, v):
        """H v by reverse-over-reverse: the vector-Jacobian product of ``torch.func.grad``."""
        _, vjp = self.torch.func.vjp(self.torch.func.grad(loss_of), theta)
        return vjp(v)[0]

    def hvp(self, *, params, X, y, v, activation, loss):
        theta, _, loss_of, _, _ = self._problem(params, X, y, activation, loss)
        return self._tree(self._hvp(loss_of, theta, self._flat(v)), params)

    def full_hessian(self, *, params, X, y, activation, loss):
        theta, _, loss_of, _, _ = self._problem(params, X, y, activation, loss)
        return self.torch.func.hessian(loss_of)(theta).detach().cpu().numpy().astype(np.float64)

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        return self._tree(self._diag(params, X, y, activation, loss, method, None), params)

    def _diag(self, params, X, y, activation, loss, method, masks):
        """The Hessian diagonal ("exact") or the GGN diagonal ("ggn") of L(theta * M), flat."""
        torch = self.torch
        if method == "obd":
            raise NotProvided("PyTorch has no Optimal Brain Damage diagonal recursion")
        if method not in ("exact", "ggn"):
            raise ValueError(f"method must be 'exact', 'ggn' or 'obd', got {method!r}")
        theta, _, loss_of, output, loss_of_output = self._problem(
            params, X, y, activation, loss, masks
        )
        if method == "exact":
            parts, start = [], 0
            for n in flat_names(params):  # diagonal block of each parameter tensor
                size = int(np.size(params[n]))
                head, tail = theta[:start], theta[start + size :]

                def block_loss(p, head=head, tail=tail):
                    return loss_of(torch.cat([head, p, tail]))

                block = torch.func.hessian(block_loss)(theta[start : start + size])
                parts.append(torch.diagonal(block))
                start += size
            return torch.cat(parts)
        f = output(theta)
        J = torch.func.jacrev(output)(theta).reshape(f.numel(), theta.numel())
        H_out = torch.func.hessian(loss_of_output)(f.detach()).reshape(f.numel(), f.numel())
        return torch.einsum("ai,ab,bi->i", J, H_out, J)

    def hutchinson_diag(self, *, params, X, y, activation, loss, probes):
        theta, _, loss_of, _, _ = self._problem(params, X, y, activation, loss)
        V = self.torch.tensor(np.array(probes, dtype=np.float64))
        if V.ndim != 2 or V.shape[0] < 1 or V.shape[1] != theta.numel():
            raise ValueError(
                f"probes must have shape (S >= 1, {theta.numel()}), got {tuple(V.shape)}"
            )
        acc = self.torch.zeros_like(theta)
        for v in V:  # summed in probe order, then / S
            acc = acc + v * self._hvp(loss_of, theta, v)
        return self._tree(acc / V.shape[0], params)

    # ============================================================== sparse execution
    def _pruned_linear(self, params, masks, l: int):
        """``nn.Linear`` holding layer ``l``, its weight and bias masks installed with
        ``prune.custom_from_mask`` (``weight = weight_orig * weight_mask``, the same for bias)."""
        torch = self.torch
        W = np.array(params[f"layers.{l}.weight"], dtype=np.float64)
        lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(W))
            lin.bias.copy_(torch.tensor(np.array(params[f"layers.{l}.bias"], dtype=np.float64)))
        for kind in ("weight", "bias"):
            mask = np.array(masks[f"layers.{l}.{kind}"], dtype=bool)
            self.prune.custom_from_mask(lin, kind, mask=torch.tensor(mask))
        return lin

    def sparse_forward(self, *, params, masks, X, activation):
        with _sparse_beta():
            return self._sparse_forward(params, masks, X, activation)

    def sparse_train_step(self, *, params, masks, X, y, activation, loss, lr, weight_decay):
        with _sparse_beta():
            return self._sparse_train_step(params, masks, X, y, activation, loss, lr, weight_decay)

    def _sparse_forward(self, params, masks, X, activation):
        """Each pruned weight (``weight_orig * weight_mask``) converted with
        ``Tensor.to_sparse_csr()``; z^T = ``torch.sparse.mm``(W, a^T) + b."""
        torch = self.torch
        act = self._activation(activation)
        n_layers = len(flat_names(params)) // 2
        aT = torch.tensor(np.array(X, dtype=np.float64)).T
        with torch.no_grad():
            for l in range(n_layers):
                lin = self._pruned_linear(params, masks, l)
                W = lin.weight.to_sparse_csr()
                zT = torch.sparse.mm(W, aT) + lin.bias[:, None]
                aT = act(zT) if l < n_layers - 1 else zT
        return aT.T.numpy().copy()

    def _sparse_train_step(self, params, masks, X, y, activation, loss, lr, weight_decay):
        """One ``torch.optim.SGD`` step (lr, weight_decay) on CSR weights whose pattern is the
        mask: ``torch.sparse_csr_tensor`` over the alive positions, its values the optimized
        parameter; biases through ``prune.custom_from_mask`` (``bias_orig`` optimized,
        ``prune.remove`` makes ``bias_orig * bias_mask`` the result)."""
        torch = self.torch
        F = torch.nn.functional
        act = self._activation(activation)
        names = flat_names(params)
        n_layers = len(names) // 2
        layers = []
        for l in range(n_layers):
            mask = np.array(masks[f"layers.{l}.weight"], dtype=bool)
            rows, cols = np.nonzero(mask)  # C order: CSR order
            # a copy: np.nonzero's arrays are strided views, and torch.tensor keeps a stride
            # of 2 on a one-element one, which sparse_csr_tensor refuses as "not contiguous"
            crow = torch.tensor(np.searchsorted(rows, np.arange(mask.shape[0] + 1)))
            values = torch.nn.Parameter(
                torch.tensor(np.array(params[f"layers.{l}.weight"], dtype=np.float64)[rows, cols])
            )
            layers.append(
                (
                    crow,
                    torch.tensor(cols.copy()),
                    values,
                    mask.shape,
                    self._pruned_linear(params, masks, l),
                )
            )
        opt = torch.optim.SGD(
            [p for _, _, v, _, lin in layers for p in (v, lin.bias_orig)],
            lr=lr,
            weight_decay=weight_decay,
        )
        aT = torch.tensor(np.array(X, dtype=np.float64)).T
        for l, (crow, col, values, shape, lin) in enumerate(layers):
            W = torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=True)
            zT = torch.sparse.mm(W, aT) + lin.bias[:, None]
            aT = act(zT) if l < n_layers - 1 else zT
        if loss == "cross_entropy":
            value = F.cross_entropy(aT.T, torch.tensor(np.array(y, dtype=np.int64)))
        elif loss == "mse":
            value = F.mse_loss(aT.T, torch.tensor(np.array(y, dtype=np.float64)))
        else:
            raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
        opt.zero_grad()
        value.backward()
        opt.step()
        out = {}
        with torch.no_grad():
            for l, (crow, col, values, shape, lin) in enumerate(layers):
                W = torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=True)
                out[f"layers.{l}.weight"] = W.to_dense().numpy().copy()
                self.prune.remove(lin, "bias")
                out[f"layers.{l}.bias"] = lin.bias.numpy().copy()
        return {"params": out, "loss": float(value.item())}

    # ============================================================== training
    def train_steps(
        self,
        *,
        params,
        masks,
        X,
        y,
        activation,
        loss,
        lr_schedule,
        momentum,
        nesterov,
        weight_decay,
        decoupled,
        mask_at,
        prune_at,
        record,
    ):
        """Full-batch ``torch.optim.SGD`` (momentum, nesterov, weight_decay, dampening 0) on
        ``nn.Linear`` layers pruned by ``prune.custom_from_mask``: the optimized tensors are
        ``weight_orig`` / ``bias_orig``, the forward pre-hook computes ``orig * mask``.

        That reparametrisation is the "gradient" convention: the chain rule masks the
        gradient, nothing else (the decay and the momentum keep moving ``weight_orig``).
        A pruning event is another ``custom_from_mask`` (the ``PruningContainer`` combines
        the masks; the optimizer keeps its state); a rewind copies the values into
        ``*_orig`` and starts a new optimizer. "update", "weights" and decoupled decay
        (``torch.optim.SGD`` has none) are not provided."""
        torch = self.torch
        F = torch.nn.functional
        if mask_at != "gradient" or decoupled:
            raise NotProvided
        if record not in ("all", "last"):
            raise ValueError(f"record must be 'all' or 'last', got {record!r}")
        act = self._activation(activation)
        names = flat_names(params)
        n_layers = len(names) // 2
        masks = masks or {n: np.ones(np.shape(params[n]), dtype=bool) for n in names}
        lins = [self._pruned_linear(params, masks, l) for l in range(n_layers)]
        Xt = torch.tensor(np.array(X, dtype=np.float64))
        yt = (
            torch.tensor(np.array(y, dtype=np.int64))
            if loss == "cross_entropy"
            else torch.tensor(np.array(y, dtype=np.float64))
        )
        if loss not in ("cross_entropy", "mse"):
            raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")

        def origs():
            return {
                f"layers.{l}.{kind}": getattr(lins[l], f"{kind}_orig")
                for l in range(n_layers)
                for kind in ("weight", "bias")
            }

        def optimizer():
            return torch.optim.SGD(
                list(origs().values()),
                lr=float(lr_schedule[0]),
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=weight_decay,
            )

        def snapshot(tensors):
            return {n: tensors[n].detach().numpy().copy() for n in names}

        opt = optimizer()
        events = {int(e["step"]): e for e in (prune_at or [])}
        thetas, velocities = [snapshot(origs())], []
        for t, lr in enumerate(np.asarray(lr_schedule, dtype=np.float64)):
            event = events.get(t)
            if event is not None:
                for l, lin in enumerate(lins):
                    for kind in ("weight", "bias"):
                        new = np.array(event["masks"][f"layers.{l}.{kind}"], dtype=bool)
                        self.prune.custom_from_mask(lin, kind, mask=torch.tensor(new))
                if event.get("rewind") is not None:
                    with torch.no_grad():
                        for n, p in origs().items():
                            p.copy_(torch.tensor(np.array(event["rewind"][n], dtype=np.float64)))
                    opt = optimizer()
            for group in opt.param_groups:
                group["lr"] = float(lr)
            opt.zero_grad()
            a = Xt
            for l, lin in enumerate(lins):
                z = lin(a)  # the pre-hook: weight_orig * mask
                a = act(z) if l < n_layers - 1 else z
            value = F.cross_entropy(a, yt) if loss == "cross_entropy" else F.mse_loss(a, yt)
            value.backward()
            if momentum == 0:  # torch keeps no buffer: d itself
                with torch.no_grad():
                    d = {n: torch.add(p.grad, p, alpha=weight_decay) for n, p in origs().items()}
            opt.step()
            if momentum != 0:
                d = {n: opt.state[p]["momentum_buffer"] for n, p in origs().items()}
            velocities.append(snapshot(d))
            thetas.append(snapshot(origs()))
        if record == "last":
            return {"params": [thetas[-1]], "velocity": [velocities[-1]]}
        return {"params": thetas, "velocity": velocities}


class TorchForwardOverReverse(TorchBackend):
    """``TorchBackend`` with H v as ``torch.func.jvp`` of ``torch.func.grad`` (forward-over-reverse).

    The cheaper of the two ways ``torch.func`` offers; through
    ``torch.nn.functional.mse_loss`` with the "mean" reduction torch 2.13 raises
    "ZeroTensors are immutable" (pytorch/pytorch#123996), so its mse products fail.
    """

    def _hvp(self, loss_of, theta, v):
        func = self.torch.func
        return func.jvp(func.grad(loss_of), (theta,), (v,))[1]
