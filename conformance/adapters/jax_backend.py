"""JAX as a conformance backend: ``jax.grad``, ``jax.jvp`` and ``jax.hessian`` in float64.

    python -m conformance run --backend conformance.adapters.jax_backend:JaxBackend

Everything is computed by JAX's own transformations on the CPU, with 64-bit
floats enabled (``jax.config.update("jax_enable_x64", True)``, set when the
backend is created); this module only writes the network as a JAX function of
its flat parameter vector, converts arrays and arranges the calls. Each
derivative is ``jax.jit``-compiled once per network structure, as JAX code is
run (op-by-op, every primitive is compiled for every shape: several times
slower). What each operation calls:

==================  ==========================================================================
operation           JAX
==================  ==========================================================================
loss_value          the network written with ``jnp.matmul``, ``jax.nn.relu`` (ReLU'(0) = 0,
                    its custom JVP), ``jnp.tanh``, ``jax.nn.sigmoid``; cross-entropy as the
                    mean of ``-jax.nn.log_softmax`` at the labels, mse as ``jnp.mean`` of
                    the squared error.
gradient            ``jax.grad``.
hvp                 ``jax.jvp`` of ``jax.grad`` (forward-over-reverse, the form JAX's
                    documentation recommends).
full_hessian        ``jax.hessian`` (``jacfwd`` of ``jacrev``) of the loss of the flat vector.
hessian_diag        "exact": the diagonal of ``jax.hessian``; "ggn": diag(J^T H_out J) with
                    J = ``jax.jacrev`` of the network output and H_out = ``jax.hessian`` of
                    the loss in the output. "obd" has no JAX counterpart: not provided.
hutchinson_diag     mean over the given probes of v * (H v), H v as in ``hvp``.
scores              the rules' formulas on JAX derivatives of L(theta * M): g from
                    ``jax.grad``, h from ``hessian_diag`` ("exact", "ggn"), H g from ``hvp``;
                    SynFlow's dR/dW from ``jax.grad`` of R. "random" (NumPy's stream),
                    "obs" and the "obd" Hessian method: not provided.
train_steps         full-batch SGD: g = ``jax.grad`` of the loss in theta * M, the update
                    of ``torch.optim.SGD`` (dampening 0) in ``jax.numpy``, ``jax.jit``-compiled,
                    the mask where ``mask_at`` says (JAX has no optimizer of its own).
==================  ==========================================================================

JAX has no pruning library: the mask, schedule, sparse-approximation and
lottery operations have no JAX function to call and are not provided (writing
them in ``jax.numpy`` would test this module, not JAX). What passes and where
JAX deviates, and why: ``docs/jax_adapter.md``.

jax is imported when the backend is instantiated, never at import time, so
the conformance package does not depend on it (``pip install 'refprune[jax]'``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..backend import Backend, NotProvided, flat_names, flatten, unflatten
from ._scores import derivative_scores, masked_score_inputs


def _import_jax():
    try:
        import jax
    except ImportError as exc:  # pragma: no cover - exercised only without jax
        raise ImportError(
            "the JAX backend needs jax; install it with pip install 'refprune[jax]'"
        ) from exc
    jax.config.update("jax_enable_x64", True)
    return jax


class JaxBackend(Backend):
    """JAX's automatic differentiation (``jax.grad``, ``jax.jvp``, ``jax.hessian``), float64 on the CPU."""

    def __init__(self) -> None:
        self.jax = _import_jax()
        self.jnp = self.jax.numpy
        self.name = f"JAX {self.jax.__version__} (jax.grad, jax.jvp, jax.hessian; float64)"
        self._compiled: dict[tuple, dict[str, object]] = {}

    # ============================================================== helpers
    def _functions(self, shapes: tuple[tuple[int, ...], ...], activation: str, loss: str):
        """The compiled functions of one network structure, each of (theta, M, X, y[, v]).

        The network computes with theta * M (M all ones when no mask is given: x * 1.0 is
        exact), so every derivative is of L(theta * M) in theta. Each function is
        ``jax.jit``-compiled once per structure and per shape of X, as JAX code is run.
        """
        key = (shapes, activation, loss)
        if key in self._compiled:
            return self._compiled[key]
        jax, jnp = self.jax, self.jnp
        acts = self._activations()
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        if loss not in ("cross_entropy", "mse"):
            raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
        act = acts[activation]
        bounds = np.cumsum([int(np.prod(s)) for s in shapes])[:-1].tolist()
        n_layers = len(shapes) // 2

        def output(t, M, X):
            parts = jnp.split(t * M, bounds)
            p = [part.reshape(s) for part, s in zip(parts, shapes)]
            a = X
            for l in range(n_layers):
                z = a @ p[2 * l].T + p[2 * l + 1]
                a = act(z) if l < n_layers - 1 else z
            return a

        def loss_of_output(f, y):
            if loss == "cross_entropy":
                logp = jax.nn.log_softmax(f, axis=1)
                return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
            return jnp.mean((f - y) ** 2)

        def loss_of(t, M, X, y):
            return loss_of_output(output(t, M, X), y)

        grad = jax.grad(loss_of)

        def hvp(t, M, X, y, v):  # forward-over-reverse
            return jax.jvp(lambda s: grad(s, M, X, y), (t,), (v,))[1]

        def ggn_diag(t, M, X, y):
            f = output(t, M, X)
            J = jax.jacrev(output)(t, M, X).reshape(f.size, t.size)
            H_out = jax.hessian(loss_of_output)(f, y).reshape(f.size, f.size)
            return jnp.einsum("ai,ab,bi->i", J, H_out, J)

        hessian = jax.jit(jax.hessian(loss_of))
        fns = {
            "loss": jax.jit(loss_of),
            "grad": jax.jit(grad),
            "hvp": jax.jit(hvp),
            "hessian": hessian,
            "exact": lambda *args: jnp.diagonal(hessian(*args)),
            "ggn": jax.jit(ggn_diag),
        }
        self._compiled[key] = fns
        return fns

    def _activations(self) -> dict:
        jax = self.jax
        return {
            "relu": jax.nn.relu,
            "tanh": jax.numpy.tanh,
            "sigmoid": jax.nn.sigmoid,
            "identity": lambda z: z,
        }

    def _problem(self, params, X, y, activation: str, loss: str, masks=None):
        """(the compiled functions, theta, M, X, y) as JAX arrays, theta in flat parameter order."""
        jnp = self.jnp
        names = flat_names(params)
        shapes = tuple(tuple(int(d) for d in np.shape(params[n])) for n in names)
        fns = self._functions(shapes, activation, loss)
        theta = jnp.asarray(np.concatenate([np.ravel(params[n]) for n in names]).astype(np.float64))
        M = jnp.asarray(
            np.concatenate(
                [
                    np.ravel(masks[n])
                    if masks is not None and n in masks
                    else np.ones(int(np.size(params[n])), dtype=bool)
                    for n in names
                ]
            ).astype(np.float64)
        )
        Xj = jnp.asarray(np.array(X, dtype=np.float64))
        yj = jnp.asarray(np.array(y, dtype=np.int64 if loss == "cross_entropy" else np.float64))
        return fns, theta, M, Xj, yj

    @staticmethod
    def _tree(vec, params) -> dict[str, np.ndarray]:
        """A flat JAX vector as a dict shaped like ``params`` (protocol flat order)."""
        return unflatten(np.array(vec, dtype=np.float64), params)  # a copy: writable

    def _flat(self, tree: Mapping[str, np.ndarray]):
        """A params-shaped dict as one float64 JAX vector (protocol flat order)."""
        return self.jnp.asarray(np.asarray(flatten(tree), dtype=np.float64))

    # ============================================================== curvature
    def loss_value(self, *, params, X, y, activation, loss):
        fns, *args = self._problem(params, X, y, activation, loss)
        return float(fns["loss"](*args))

    def gradient(self, *, params, X, y, activation, loss):
        fns, *args = self._problem(params, X, y, activation, loss)
        return self._tree(fns["grad"](*args), params)

    def hvp(self, *, params, X, y, v, activation, loss):
        fns, *args = self._problem(params, X, y, activation, loss)
        return self._tree(fns["hvp"](*args, self._flat(v)), params)

    def full_hessian(self, *, params, X, y, activation, loss):
        fns, *args = self._problem(params, X, y, activation, loss)
        return np.asarray(fns["hessian"](*args), dtype=np.float64).copy()

    def hessian_diag(self, *, params, X, y, activation, loss, method):
        return self._tree(self._diag(params, X, y, activation, loss, method, None), params)

    def _diag(self, params, X, y, activation, loss, method, masks):
        """The Hessian diagonal ("exact") or the GGN diagonal ("ggn") of L(theta * M), flat."""
        if method == "obd":
            raise NotProvided("JAX has no Optimal Brain Damage diagonal recursion")
        if method not in ("exact", "ggn"):
            raise ValueError(f"method must be 'exact', 'ggn' or 'obd', got {method!r}")
        fns, *args = self._problem(params, X, y, activation, loss, masks)
        return fns[method](*args)

    def hutchinson_diag(self, *, params, X, y, activation, loss, probes):
        fns, theta, *rest = self._problem(params, X, y, activation, loss)
        V = np.array(probes, dtype=np.float64)
        if V.ndim != 2 or V.shape[0] < 1 or V.shape[1] != theta.size:
            raise ValueError(f"probes must have shape (S >= 1, {theta.size}), got {V.shape}")
        acc = np.zeros(theta.size)
        for v in V:  # summed in probe order, then / S
            acc += v * np.asarray(fns["hvp"](theta, *rest, self.jnp.asarray(v)))
        return self._tree(acc / V.shape[0], params)

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
        record="all",
    ):
        """Full-batch masked SGD written in JAX: g = ``jax.grad`` of the loss in the effective
        weights theta * M, the update of ``torch.optim.SGD`` (dampening 0) in ``jax.numpy``,
        ``jax.jit``-compiled, with the mask applied where ``mask_at`` says (the protocol's rule).
        JAX has no optimizer of its own (optax is a separate library), so this checks JAX's
        gradients and arithmetic inside the loop, not a JAX training API."""
        jnp = self.jnp
        if mask_at not in ("update", "weights", "gradient"):
            raise ValueError(f"mask_at must be 'update', 'weights' or 'gradient', got {mask_at!r}")
        if record not in ("all", "last"):
            raise ValueError(f"record must be 'all' or 'last', got {record!r}")
        if nesterov and not momentum:
            raise ValueError("nesterov=True needs momentum > 0")
        names = flat_names(params)
        fns, theta, M, Xj, yj = self._problem(params, X, y, activation, loss, masks)
        ones = jnp.ones_like(theta)

        def flat_mask(tree):
            return jnp.asarray(
                np.concatenate([np.ravel(tree[n]) for n in names]).astype(np.float64)
            )

        def zero_pruned(theta, v, M):  # the state right after the mask becomes M
            if mask_at == "gradient":
                return theta, v
            theta = jnp.where(M != 0, theta, 0.0)
            if mask_at == "update" and v is not None:
                v = jnp.where(M != 0, v, 0.0)
            return theta, v

        events = {int(e["step"]): e for e in (prune_at or [])}
        rates = np.asarray(lr_schedule, dtype=np.float64)
        theta, v = zero_pruned(theta, None, M)
        trajectory, velocities = [theta], []
        for t, rate in enumerate(rates):
            if t in events:
                event = events[t]
                M = flat_mask(event["masks"])
                if event.get("rewind") is not None:
                    theta, v = self._flat(event["rewind"]), None
                theta, v = zero_pruned(theta, v, M)
            g = fns["grad"](jnp.where(M != 0, theta, 0.0), ones, Xj, yj)  # dL/dw, dense network
            update = self._sgd(
                mask_at,
                v is None,
                bool(momentum),
                bool(nesterov),
                bool(weight_decay),
                bool(decoupled),
            )
            theta, v = update(
                theta, g, ones if v is None else v, M, rate, float(momentum), float(weight_decay)
            )
            trajectory.append(theta)
            velocities.append(v)
        if record == "last":
            trajectory, velocities = trajectory[-1:], velocities[-1:]
        return {
            "params": [self._tree(a, params) for a in trajectory],
            "velocity": [self._tree(a, params) for a in velocities],
        }

    def _sgd(
        self,
        mask_at: str,
        first: bool,
        has_momentum: bool,
        nesterov: bool,
        has_decay: bool,
        decoupled: bool,
    ):
        """The compiled update (theta, g, v, M, lr, mu, wd) -> (theta, v) of one configuration:
        d = g (* M) (+ wd theta), v = mu v + d (v = d first), u = d + mu v | v | d,
        s = u (+ wd theta), theta = theta - lr s, masked where ``mask_at`` says."""
        key = ("sgd", mask_at, first, has_momentum, nesterov, has_decay, decoupled)
        if key in self._compiled:
            return self._compiled[key]
        jnp = self.jnp

        def update(theta, g, v, M, lr, mu, wd):
            alive = M != 0
            if mask_at != "weights":
                g = jnp.where(alive, g, 0.0)
            d = g + wd * theta if has_decay and not decoupled else g
            v = d if first or not has_momentum else mu * v + d
            u = d + mu * v if nesterov else (v if has_momentum else d)
            step = u + wd * theta if has_decay and decoupled else u
            if mask_at == "update":
                step = jnp.where(alive, step, 0.0)
            new = theta - lr * step
            if mask_at == "weights":
                new = jnp.where(alive, new, 0.0)
            return new, v

        self._compiled[key] = self.jax.jit(update)
        return self._compiled[key]

    # ============================================================== scores
    def scores(self, *, rule, params, X, y, activation, loss, masks, options):
        """Saliencies from JAX derivatives of L(theta * M) (see the module table).

        "random" draws NumPy's PCG64 stream and "obs" inverts a damped Hessian: neither
        is a JAX computation, so both are not provided, nor is hessian_method "obd".
        """
        jax, jnp = self.jax, self.jnp
        options, names, m, w = masked_score_inputs(rule, params, masks, options, "JAX")
        if rule == "magnitude":
            out = {n: np.abs(w[n]) for n in names}
        elif rule == "synflow":
            weights = [n for n in flat_names(params) if n.endswith(".weight")]
            if any(n not in weights for n in names):
                raise ValueError("synflow scores weight matrices only")

            def R(W):  # R = 1^T |W_{L-1}| ... |W_0| 1
                a = jnp.ones(W[0].shape[1], dtype=jnp.float64)
                for Wl in W:
                    a = Wl @ a
                return jnp.sum(a)

            grads = jax.grad(R)([jnp.asarray(np.abs(w[n])) for n in weights])
            out = {n: np.abs(np.asarray(grads[weights.index(n)]) * np.abs(w[n])) for n in names}
        else:
            fns, *args = self._problem(params, X, y, activation, loss, m)
            method = options.get("hessian_method", "exact")
            out = derivative_scores(
                rule,
                names,
                w,
                g=self._tree(fns["grad"](*args), params),
                hvp=lambda v: self._tree(fns["hvp"](*args, self._flat(v)), params),
                diagonal=lambda: self._tree(
                    self._diag(params, X, y, activation, loss, method, m), params
                ),
            )
        return {n: np.where(m[n], out[n], 0.0) for n in names}


class JaxHighestAccuracy(JaxBackend):
    """``JaxBackend`` with tanh and sigmoid at ``accuracy=jax.lax.AccuracyMode.HIGHEST``.

    By default JAX differentiates tanh as g (1 + t)(1 - t) and the logistic function as
    g s (1 - s), from the rounded output, which loses every digit of the derivative where
    the unit saturates (t or s within an ulp of 1). At the highest accuracy the same
    primitives (``jax.lax.tanh``, ``jax.lax.logistic``) differentiate as
    4 g logistic(2x) logistic(-2x) and g s logistic(-x), with no subtraction
    (jax/_src/lax/lax.py, the ``ad.defjvp2`` rules of ``tanh_p`` and ``logistic_p``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.name += ", tanh and logistic at AccuracyMode.HIGHEST"

    def _activations(self) -> dict:
        lax = self.jax.lax
        highest = lax.AccuracyMode.HIGHEST
        return dict(
            super()._activations(),
            tanh=lambda z: lax.tanh(z, accuracy=highest),
            sigmoid=lambda z: lax.logistic(z, accuracy=highest),
        )
