"""Training a masked MLP with stochastic gradient descent.

The update of every parameter theta with mask M (True = alive) at update t, with
g the gradient of the mean loss in the effective weights w = theta * M,
``lr_t`` the rate of update t, mu the momentum and wd the weight decay:

    d = g (* M, see mask_at)  [+ wd * theta     coupled weight decay: L2 in the gradient]
    v = mu * v + d                (v = d at the first update and after a reset)
    u = d + mu * v  if nesterov,  v  if mu > 0,  d  otherwise
    s = u                         [+ wd * theta  decoupled weight decay]
    theta = theta - lr_t * s      (* M, see mask_at)

This is PyTorch's ``torch.optim.SGD`` with dampening 0 (its ``nesterov=True``
computes u = d + mu * v; coupled decay is its ``weight_decay``). Decoupled
weight decay is SGDW of Loshchilov and Hutter, "Decoupled Weight Decay
Regularization", ICLR 2019 (AdamW's rule with SGD's step): the decay is not in
the velocity, it shrinks the weights directly by lr_t * wd * theta.

Where the mask is applied (``mask_at``; docs/training.md has the proofs):

* ``"update"`` (the default, refprune's own): g and the whole step s are
  multiplied by M, and the state of a pruned entry is zero: its weight and its
  velocity are set to 0.0 when it is pruned (the velocity of a weight pruned at
  update t is zeroed before update t uses it). A pruned weight stays exactly
  0.0, its velocity 0.0.
* ``"weights"``: the weights are multiplied by M after every update
  (theta = (theta - lr_t * s) * M) and when pruned; the gradient is the dense
  network's at theta (not masked) and the velocity is never masked, as when a
  library zeroes the weights after ``optimizer.step()``. A pruned weight stays
  exactly 0.0; its velocity accumulates gradients it never uses.
* ``"gradient"``: only the gradient is masked, through the forward pass, as in
  ``torch.nn.utils.prune``'s reparametrisation (weight = weight_orig * mask):
  theta (weight_orig) is never zeroed, weight decay and momentum keep moving
  its pruned entries, and the network computes with theta * M. Only
  ``train_steps`` offers it: an ``MLP`` holds 0.0 at every pruned entry.

Under every convention the effective weights theta * M of a run are the same,
and a pruned effective weight is exactly 0.0 forever (docs/training.md).

Mini-batches: with ``batch_size`` < N, each epoch draws one permutation
``rng.permutation(N)`` (rng = ``make_rng(seed)``, one draw per epoch, in epoch
order) and walks it in consecutive slices; the last batch may be smaller.
Full-batch training draws nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import bool_array, choice, float_array, positive_int, real_number
from .mlp import MLP, check_param_dict
from .rng import make_rng

MASK_AT = ("update", "weights", "gradient")


def sgd_update(
    theta: np.ndarray,
    grad: np.ndarray,
    velocity: np.ndarray | None,
    mask: np.ndarray,
    lr: float,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    decoupled: bool = False,
    mask_at: str = "update",
) -> tuple[np.ndarray, np.ndarray]:
    """One SGD update of one parameter (the rule of the module docstring), on new arrays.

    ``grad`` is the gradient of the loss in the effective weights theta * M, not
    masked; ``velocity`` the buffer of the previous update (None: the first update
    or after a reset). Under ``"update"`` the caller keeps theta and the velocity
    zero at pruned entries (``zero_pruned_state``). Returns (new theta, new
    velocity); the velocity is d itself when ``momentum`` is 0. Trusted arguments.
    """
    g = grad if mask_at == "weights" else np.where(mask, grad, 0.0)
    d = g + weight_decay * theta if weight_decay and not decoupled else g
    if velocity is None or not momentum:
        v = d.copy()
    else:
        v = momentum * velocity + d
    if nesterov:
        u = d + momentum * v
    else:
        u = v if momentum else d
    s = u + weight_decay * theta if weight_decay and decoupled else u
    if mask_at == "update":
        s = np.where(mask, s, 0.0)
    new = theta - lr * s
    if mask_at == "weights":
        new = np.where(mask, new, 0.0)
    return new, v


def zero_pruned_state(
    theta: np.ndarray, velocity: np.ndarray | None, mask: np.ndarray, mask_at: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The state of a parameter right after its mask becomes ``mask`` (at the start, at pruning).

    "update": weight and velocity 0.0 at pruned entries; "weights": the weight only;
    "gradient": nothing (torch.nn.utils.prune leaves weight_orig and the optimizer's
    buffer as they are).
    """
    if mask_at == "gradient":
        return theta, velocity
    theta = np.where(mask, theta, 0.0)
    if mask_at == "update" and velocity is not None:
        velocity = np.where(mask, velocity, 0.0)
    return theta, velocity


class SGD:
    """SGD with optional (Nesterov) momentum and coupled or decoupled weight decay.

    The rule is the module docstring's; ``mask_at`` is "update" (default) or
    "weights" ("gradient" needs weights that keep values at pruned entries, which an
    ``MLP`` does not: use ``train_steps``). State: the velocity per parameter.
    """

    def __init__(
        self,
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        *,
        nesterov: bool = False,
        decoupled: bool = False,
        mask_at: str = "update",
    ):
        self.lr = real_number(lr, "lr", low=0.0, low_open=True)
        self.momentum = real_number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        self.weight_decay = real_number(weight_decay, "weight_decay", low=0.0)
        self.nesterov = _flag(nesterov, "nesterov")
        self.decoupled = _flag(decoupled, "decoupled")
        if self.nesterov and not self.momentum:
            raise ValueError("nesterov=True needs momentum > 0 (as torch.optim.SGD)")
        self.mask_at = choice(mask_at, "mask_at", ("update", "weights"))
        self.velocity: dict[str, np.ndarray] = {}

    def reset(self) -> None:
        """Forget the momentum (done on every rewind)."""
        self.velocity = {}

    def step(self, model: MLP, grads: Mapping[str, Any], lr: float | None = None) -> None:
        """Apply one update to ``model.params`` in place (the rule of the module docstring).

        ``grads`` are the model's gradients: masked ones (``model.loss_and_grads``)
        under "update", the dense network's under "weights" (the mask is applied
        to the weights there). Two phases: the model, the rate (``lr`` > 0,
        finite; default ``self.lr``) and the gradients (a finite float array of
        the parameter's shape for every parameter, and no other name) are
        checked, the parameters must be writeable, and every new value and
        velocity is computed; only then are they stored. On any error the model
        and the optimizer are unchanged.
        """
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a refprune MLP, got {type(model).__name__}")
        lr = self.lr if lr is None else real_number(lr, "lr", low=0.0, low_open=True)
        checked = check_param_dict(grads, model, "grads")
        model.check_writeable(model.params)
        self._step(model, checked, lr)

    def _step(self, model: MLP, grads: Mapping[str, np.ndarray], lr: float) -> None:
        """``step`` on checked gradients (the training loop's own, trusted)."""
        new_params, new_velocity = {}, {}
        for name, w in model.params.items():
            v = self.velocity.get(name)
            if v is not None and self.mask_at == "update" and model._pruned[name]:
                v = np.where(model.masks[name], v, 0.0)  # pruned since: its velocity is zeroed
            new_params[name], v = sgd_update(
                w,
                grads[name],
                v,
                model.masks[name],
                lr,
                momentum=self.momentum,
                nesterov=self.nesterov,
                weight_decay=self.weight_decay,
                decoupled=self.decoupled,
                mask_at=self.mask_at,
            )
            if self.momentum:
                new_velocity[name] = v
        for name, w in model.params.items():  # commit: nothing here can fail
            np.copyto(w, new_params[name])
        self.velocity.update(new_velocity)


def _flag(x: Any, name: str) -> bool:
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(x).__name__}")
    return bool(x)


def train_steps(
    params: Mapping[str, Any],
    masks: Mapping[str, Any] | None,
    X: np.ndarray,
    y: np.ndarray,
    *,
    activation: str,
    loss: str,
    lr_schedule: Any,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    decoupled: bool = False,
    mask_at: str = "update",
    prune_at: Sequence[Mapping[str, Any]] | None = None,
    record: str = "all",
) -> dict[str, list[dict[str, np.ndarray]]]:
    """T full-batch SGD updates, pruning and rewinding on the way: the whole trajectory.

    The definition of the update for every ``mask_at`` (the module docstring's
    rule, one parameter at a time, by ``sgd_update``), written as a loop a
    reader checks line by line. theta_0 = ``params``, M_0 = ``masks`` (None:
    all alive), then ``zero_pruned_state``. Before update t (t = 0 .. T-1), the
    event of ``prune_at`` with "step" t, if any: the masks become its "masks"
    (every parameter; nested: a pruned entry is never revived), then, with a
    "rewind" (params), theta = the rewind values and the velocity is reset
    (the next update has v = d), then ``zero_pruned_state``. Update t uses the
    gradient of the mean loss over all of (X, y) at the effective weights
    theta * M, in the dense network (not masked; ``sgd_update`` masks it), and
    the rate ``lr_schedule[t]``.

    Parameters
    ----------
    params : mapping name -> float array
        An MLP's parameters (``layers.{l}.weight``, ``layers.{l}.bias``).
    masks : mapping name -> bool array (every parameter), or None
    X, y : the batch; activation, loss : as ``MLP``
    lr_schedule : 1-d float array (T,), every rate finite and >= 0
    momentum : float in [0, 1); nesterov : bool (needs momentum > 0)
    weight_decay : float >= 0; decoupled : bool
    mask_at : {"update", "weights", "gradient"}
    prune_at : sequence of mappings {"step": int, "masks": ..., "rewind": params or None}
        In strictly increasing step order, 0 <= step < T.
    record : {"all", "last"}
        "last" keeps only theta_T and v_T (the lists then have one entry each).

    Returns
    -------
    dict
        "params": [theta_0, ..., theta_T] (theta_t after t updates; under "update"
        and "weights" pruned entries are 0.0, under "gradient" theta is
        weight_orig, the network computing with theta * M); "velocity":
        [v_1, ..., v_T], the buffer after each update (d itself when momentum is 0).
        Every entry is a dict name -> new float64 array.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping name -> array, got {type(params).__name__}")
    n_layers = sum(1 for n in params if isinstance(n, str) and n.endswith(".weight"))
    names = [f"layers.{l}.{kind}" for l in range(n_layers) for kind in ("weight", "bias")]
    if n_layers == 0 or sorted(params) != sorted(names):
        raise ValueError(f"params must have exactly the names {names}, got {sorted(params)}")
    theta = {n: float_array(params[n], f"params[{n!r}]") for n in names}
    weights = [theta[f"layers.{l}.weight"] for l in range(n_layers)]
    if any(w.ndim != 2 for w in weights):
        raise ValueError("params: every layers.{l}.weight must be 2-dimensional")
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    net = MLP(sizes, activation, loss=loss, seed=0)
    net.load_state_dict({"params": theta})
    X, y = net.check_inputs(X, y, require_y=True)
    rates = float_array(lr_schedule, "lr_schedule", ndim=1, allow_empty=True)
    if np.any(rates < 0):
        raise ValueError(f"lr_schedule must hold rates >= 0, got {rates.min()}")
    momentum = real_number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
    weight_decay = real_number(weight_decay, "weight_decay", low=0.0)
    nesterov, decoupled = _flag(nesterov, "nesterov"), _flag(decoupled, "decoupled")
    if nesterov and not momentum:
        raise ValueError("nesterov=True needs momentum > 0 (as torch.optim.SGD)")
    choice(mask_at, "mask_at", MASK_AT)
    choice(record, "record", ("all", "last"))
    current = _masks(masks, theta, "masks")
    events = _events(prune_at, theta, rates.size)

    velocity: dict[str, np.ndarray | None] = {n: None for n in names}
    for n in names:
        theta[n], _ = zero_pruned_state(theta[n], None, current[n], mask_at)
    trajectory, velocities = [_copy(theta)], []
    for t, rate in enumerate(rates):
        if t in events:
            event = events[t]
            for n in names:
                if np.any(event["masks"][n] & ~current[n]):
                    raise ValueError(
                        f"prune_at: the masks at step {t} revive entries of {n!r} "
                        "pruned before; masks must be nested"
                    )
            current = event["masks"]
            if event["rewind"] is not None:
                theta = _copy(event["rewind"])
                velocity = {n: None for n in names}
            for n in names:
                theta[n], velocity[n] = zero_pruned_state(
                    theta[n], velocity[n], current[n], mask_at
                )
        for n in names:  # the dense network at theta * M
            np.copyto(net.params[n], np.where(current[n], theta[n], 0.0))
        _, grads = net._loss_and_grads(X, y, masked=False)
        for n in names:
            theta[n], velocity[n] = sgd_update(
                theta[n],
                grads[n],
                velocity[n],
                current[n],
                float(rate),
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=weight_decay,
                decoupled=decoupled,
                mask_at=mask_at,
            )
        trajectory.append(_copy(theta))
        velocities.append(_copy(velocity))
    if record == "last":
        return {"params": trajectory[-1:], "velocity": velocities[-1:]}
    return {"params": trajectory, "velocity": velocities}


def _copy(tree: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {n: np.array(a, dtype=np.float64) for n, a in tree.items()}


def _masks(masks: Any, like: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    if masks is None:
        return {n: np.ones(p.shape, dtype=bool) for n, p in like.items()}
    if not isinstance(masks, Mapping) or sorted(masks) != sorted(like):
        raise ValueError(f"{name} must be a mapping with a mask for every parameter {list(like)}")
    return {n: bool_array(masks[n], f"{name}[{n!r}]", shape=p.shape) for n, p in like.items()}


def _events(prune_at: Any, like: Mapping[str, np.ndarray], T: int) -> dict[int, dict[str, Any]]:
    """The checked events of ``train_steps`` by step."""
    if prune_at is None:
        return {}
    if isinstance(prune_at, Mapping) or not isinstance(prune_at, Sequence):
        raise TypeError(
            "prune_at must be a list of events {'step', 'masks', 'rewind'}, "
            f"got {type(prune_at).__name__}"
        )
    out: dict[int, dict[str, Any]] = {}
    last = -1
    for i, event in enumerate(prune_at):
        if (
            not isinstance(event, Mapping)
            or not {"step", "masks"} <= set(event)
            or set(event) - {"step", "masks", "rewind"}
        ):
            raise ValueError(
                f"prune_at[{i}] must be a mapping with 'step', 'masks' and optionally 'rewind'"
            )
        step = event["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not last < step < T:
            raise ValueError(
                f"prune_at[{i}]['step'] must be an integer in ({last}, {T}) "
                f"(increasing, before the last update), got {step!r}"
            )
        rewind = event.get("rewind")
        if rewind is not None:
            if not isinstance(rewind, Mapping) or sorted(rewind) != sorted(like):
                raise ValueError(f"prune_at[{i}]['rewind'] must be None or parameters {list(like)}")
            rewind = {}
            for n, p in like.items():
                rewind[n] = float_array(event["rewind"][n], f"prune_at[{i}]['rewind'][{n!r}]")
                if rewind[n].shape != p.shape:
                    raise ValueError(f"prune_at[{i}]['rewind'][{n!r}] must have shape {p.shape}")
        out[int(step)] = {
            "masks": _masks(event["masks"], like, f"prune_at[{i}]['masks']"),
            "rewind": rewind,
        }
        last = int(step)
    return out


@dataclass
class History:
    """Per-epoch record of a training run (evaluated on the full sets after each epoch)."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "steps": self.steps,
        }


def train(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 10,
    lr: float = 0.1,
    batch_size: int | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    decoupled: bool = False,
    mask_at: str = "update",
    lr_schedule: Callable[[int], float] | None = None,
    seed: int | np.random.Generator = 0,
    optimizer: SGD | None = None,
    start_step: int = 0,
    first_batch: int = 0,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    callback: Callable[[int, MLP], None] | None = None,
) -> History:
    """Train ``model`` in place with masked SGD (see the module docstring).

    Parameters
    ----------
    model : MLP
        Trained in place; its masks are respected and never changed.
    X, y : training inputs (N, in) and labels (int, for cross-entropy) or targets (float, for mse).
    epochs : int >= 1
    lr : float > 0
        Learning rate, used when ``lr_schedule`` is None.
    batch_size : int >= 1 or None
        None (or >= N) means full batch.
    momentum : float in [0, 1); weight_decay : float >= 0; nesterov, decoupled : bool;
    mask_at : {"update", "weights"}
        Used to build a new ``SGD`` when ``optimizer`` is None (module docstring).
    lr_schedule : callable, optional
        ``lr_schedule(t)`` is the learning rate of update t (t counts from ``start_step``);
        it is evaluated for every update before the first one, so that a rate that is not
        a finite positive number is reported before the model changes.
    seed : int or Generator
        Source of the mini-batch permutations.
    optimizer : SGD, optional
        Continue with this optimizer's state (momentum); its lr is the default rate.
    start_step : int >= 0
        Global index of the first update (for schedules that continue a run).
    first_batch : int >= 0
        Resume inside an epoch: the first epoch draws its permutation as usual
        but starts at this batch of it (0 = the whole epoch). With the same
        seed stream, this replays the rest of an interrupted run exactly.
    X_test, y_test : optional held-out set evaluated after every epoch.
    callback : callable, optional
        ``callback(t, model)`` is called with t = start_step before the first
        update and with the number of updates done after each update.

    On any error, including one raised by ``callback``, the model (parameters
    and masks), the optimizer's velocity and a generator passed as ``seed``
    are restored to their state at the call: nothing is left half-trained.

    Returns
    -------
    History
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a refprune MLP, got {type(model).__name__}")
    X, y = model.check_inputs(X, y, require_y=True)
    epochs = positive_int(epochs, "epochs")
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
    if (
        isinstance(start_step, bool)
        or not isinstance(start_step, (int, np.integer))
        or start_step < 0
    ):
        raise ValueError(f"start_step must be a non-negative integer, got {start_step!r}")
    if (
        isinstance(first_batch, bool)
        or not isinstance(first_batch, (int, np.integer))
        or first_batch < 0
    ):
        raise ValueError(f"first_batch must be a non-negative integer, got {first_batch!r}")
    if lr_schedule is not None and not callable(lr_schedule):
        raise TypeError(
            f"lr_schedule must be callable (step -> learning rate), got {type(lr_schedule).__name__}"
        )
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        X_test, y_test = model.check_inputs(X_test, y_test)
    if optimizer is None:
        optimizer = SGD(
            lr, momentum, weight_decay, nesterov=nesterov, decoupled=decoupled, mask_at=mask_at
        )
    elif not isinstance(optimizer, SGD):
        raise TypeError(f"optimizer must be a refprune SGD, got {type(optimizer).__name__}")
    n = X.shape[0]
    full_batch = batch_size is None or batch_size >= n
    batches_per_epoch = 1 if full_batch else -(-n // batch_size)
    if first_batch >= batches_per_epoch:
        raise ValueError(
            f"first_batch must be < the batches per epoch ({batches_per_epoch}), got {first_batch}"
        )
    step = int(start_step)
    updates = epochs * batches_per_epoch - first_batch
    rates = (
        None
        if lr_schedule is None
        else [_checked_rate(lr_schedule(t), t) for t in range(step, step + updates)]
    )
    model.check_writeable(model.params)
    rng = make_rng(seed)

    # Everything that can be checked has been. What is left (the callback, a signal) is
    # undone on the way out: the model, the optimizer and a given generator are restored.
    arrays, values = dict(model.params), {k: p.copy() for k, p in model.params.items()}
    masks, velocity = dict(model.masks), dict(optimizer.velocity)
    rng_state = rng.bit_generator.state
    try:
        history = _run(
            model,
            X,
            y,
            X_test,
            y_test,
            optimizer,
            rng,
            rates,
            callback,
            step,
            epochs,
            first_batch,
            batch_size,
            full_batch,
        )
    except BaseException:
        for k, p in arrays.items():
            np.copyto(p, values[k])
        model.params.update(arrays)
        for k, m in masks.items():
            model._store_mask(k, m)
        optimizer.velocity = velocity
        rng.bit_generator.state = rng_state
        raise
    return history


def _run(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray | None,
    y_test: np.ndarray | None,
    optimizer: SGD,
    rng: np.random.Generator,
    rates: list[float] | None,
    callback: Callable[[int, MLP], None] | None,
    step: int,
    epochs: int,
    first_batch: int,
    batch_size: int | None,
    full_batch: bool,
) -> History:
    """The training loop of ``train`` on checked arguments."""
    n = X.shape[0]
    start_step = step
    history = History()
    if callback is not None:
        callback(step, model)
    width = n if full_batch or batch_size is None else batch_size
    for epoch in range(epochs):
        order = None if full_batch else rng.permutation(n)
        skip = first_batch if epoch == 0 else 0
        for start in range(skip * width, n, width):
            idx = None if order is None else order[start : start + width]
            xb, yb = (X, y) if idx is None else (X[idx], y[idx])
            _, grads = model._loss_and_grads(xb, yb, optimizer.mask_at != "weights")
            rate = optimizer.lr if rates is None else rates[step - start_step]
            optimizer._step(model, grads, rate)
            step += 1
            if callback is not None:
                callback(step, model)
        _record(history, model, X, y, X_test, y_test)
    history.steps = step - start_step
    return history


def _checked_rate(rate: Any, step: int) -> float:
    return real_number(rate, f"lr_schedule({step})", low=0.0, low_open=True)


def _record(
    history: History,
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray | None,
    y_test: np.ndarray | None,
) -> None:
    for xs, ys, losses, accs in (
        (X, y, history.loss, history.accuracy),
        (X_test, y_test, history.test_loss, history.test_accuracy),
    ):
        if xs is None or ys is None:  # no test set (X_test and y_test come together)
            continue
        losses.append(float(model._graph(xs, ys)[0].data))
        if model.loss == "cross_entropy":
            accs.append(float(np.mean(np.argmax(model._forward(xs), axis=1) == ys)))
