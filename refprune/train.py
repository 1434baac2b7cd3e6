"""Training a masked MLP with stochastic gradient descent.

The update, for every parameter w with gradient g and mask M (True = alive):

    d = g + weight_decay * w
    v = momentum * v + d          (v starts at 0, so the first step has v = d)
    w = w - lr_t * (v * M)

Gradients of pruned entries are already 0 (the forward pass uses w * M), and
the update is masked as well, so a pruned weight stays exactly 0.0 and its
velocity stays 0. This is PyTorch's ``torch.optim.SGD`` with dampening 0 and
``nesterov=False``.

Mini-batches: with ``batch_size`` < N, each epoch draws one permutation
``rng.permutation(N)`` (rng = ``make_rng(seed)``, one draw per epoch, in epoch
order) and walks it in consecutive slices; the last batch may be smaller.
Full-batch training draws nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ._checks import float_array, positive_int, real_number
from .mlp import MLP
from .rng import make_rng


class SGD:
    """SGD with optional momentum and L2 weight decay; state is the velocity per parameter."""

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0):
        self.lr = real_number(lr, "lr", low=0.0, low_open=True)
        self.momentum = real_number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
        self.weight_decay = real_number(weight_decay, "weight_decay", low=0.0)
        self.velocity: dict[str, np.ndarray] = {}

    def reset(self) -> None:
        """Forget the momentum (done on every rewind)."""
        self.velocity = {}

    def step(self, model: MLP, grads: Mapping[str, Any], lr: float | None = None) -> None:
        """Apply one update to ``model.params`` in place (the rule of the module docstring).

        Two phases: the model, the rate (``lr`` > 0, finite; default ``self.lr``)
        and the gradients (a finite float array of the parameter's shape for
        every parameter, and no other name) are checked, the parameters must be
        writeable, and every new value and velocity is computed; only then are
        they stored. On any error the model and the optimizer are unchanged.
        """
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a refprune MLP, got {type(model).__name__}")
        lr = self.lr if lr is None else real_number(lr, "lr", low=0.0, low_open=True)
        if not isinstance(grads, Mapping):
            raise TypeError(f"grads must be a mapping name -> array, got {type(grads).__name__}")
        missing = [n for n in model.params if n not in grads]
        unknown = [n for n in grads if n not in model.params]
        if missing or unknown:
            raise ValueError(f"grads must have exactly the model's parameters "
                             f"{list(model.params)}; missing {missing}, unknown {unknown}")
        checked = {}
        for name, w in model.params.items():
            checked[name] = float_array(grads[name], f"grads[{name!r}]", allow_empty=True)
            if checked[name].shape != w.shape:
                raise ValueError(f"grads[{name!r}] must have the parameter's shape {w.shape}, "
                                 f"got {checked[name].shape}")
        model.check_writeable(model.params)
        self._step(model, checked, lr)

    def _step(self, model: MLP, grads: Mapping[str, np.ndarray], lr: float) -> None:
        """``step`` on checked gradients (the training loop's own, trusted)."""
        new_params, new_velocity = {}, {}
        for name, w in model.params.items():
            d = grads[name]
            if self.weight_decay:
                d = d + self.weight_decay * w
            if self.momentum:
                v = self.velocity.get(name)
                d = d.copy() if v is None else self.momentum * v + d
                new_velocity[name] = d
            if model._pruned[name]:
                d = d * model.masks[name]
            new_params[name] = w - lr * d
        for name, w in model.params.items():               # commit: nothing here can fail
            np.copyto(w, new_params[name])
        self.velocity.update(new_velocity)


@dataclass
class History:
    """Per-epoch record of a training run (evaluated on the full sets after each epoch)."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    steps: int = 0

    def to_dict(self) -> dict:
        return {"loss": self.loss, "accuracy": self.accuracy, "test_loss": self.test_loss,
                "test_accuracy": self.test_accuracy, "steps": self.steps}


def train(model: MLP, X: np.ndarray, y: np.ndarray, *, epochs: int = 10, lr: float = 0.1,
          batch_size: int | None = None, momentum: float = 0.0, weight_decay: float = 0.0,
          lr_schedule: Callable[[int], float] | None = None, seed: int | np.random.Generator = 0,
          optimizer: SGD | None = None, start_step: int = 0, first_batch: int = 0,
          X_test: np.ndarray | None = None, y_test: np.ndarray | None = None,
          callback: Callable[[int, MLP], None] | None = None) -> History:
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
    momentum : float in [0, 1); weight_decay : float >= 0
        Used to build a new ``SGD`` when ``optimizer`` is None.
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
    if isinstance(start_step, bool) or not isinstance(start_step, (int, np.integer)) or start_step < 0:
        raise ValueError(f"start_step must be a non-negative integer, got {start_step!r}")
    if isinstance(first_batch, bool) or not isinstance(first_batch, (int, np.integer)) or first_batch < 0:
        raise ValueError(f"first_batch must be a non-negative integer, got {first_batch!r}")
    if lr_schedule is not None and not callable(lr_schedule):
        raise TypeError(f"lr_schedule must be callable (step -> learning rate), got {type(lr_schedule).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        X_test, y_test = model.check_inputs(X_test, y_test)
    if optimizer is None:
        optimizer = SGD(lr, momentum, weight_decay)
    elif not isinstance(optimizer, SGD):
        raise TypeError(f"optimizer must be a refprune SGD, got {type(optimizer).__name__}")
    n = X.shape[0]
    full_batch = batch_size is None or batch_size >= n
    batches_per_epoch = 1 if full_batch else -(-n // batch_size)
    if first_batch >= batches_per_epoch:
        raise ValueError(f"first_batch must be < the batches per epoch ({batches_per_epoch}), "
                         f"got {first_batch}")
    step = int(start_step)
    updates = epochs * batches_per_epoch - first_batch
    rates = (None if lr_schedule is None else
             [_checked_rate(lr_schedule(t), t) for t in range(step, step + updates)])
    model.check_writeable(model.params)
    rng = make_rng(seed)

    # Everything that can be checked has been. What is left (the callback, a signal) is
    # undone on the way out: the model, the optimizer and a given generator are restored.
    arrays, values = dict(model.params), {k: p.copy() for k, p in model.params.items()}
    masks, velocity = dict(model.masks), dict(optimizer.velocity)
    rng_state = rng.bit_generator.state
    try:
        history = _run(model, X, y, X_test, y_test, optimizer, rng, rates, callback, step,
                       epochs, first_batch, batch_size, full_batch)
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


def _run(model: MLP, X, y, X_test, y_test, optimizer: SGD, rng: np.random.Generator,
         rates: list[float] | None, callback, step: int, epochs: int, first_batch: int,
         batch_size: int | None, full_batch: bool) -> History:
    """The training loop of ``train`` on checked arguments."""
    n = X.shape[0]
    start_step = step
    history = History()
    if callback is not None:
        callback(step, model)
    for epoch in range(epochs):
        order = None if full_batch else rng.permutation(n)
        skip = first_batch if epoch == 0 else 0
        width = n if full_batch else batch_size
        for start in range(skip * width, n, width):
            idx = None if full_batch else order[start:start + batch_size]
            xb, yb = (X, y) if idx is None else (X[idx], y[idx])
            _, grads = model._loss_and_grads(xb, yb)
            rate = optimizer.lr if rates is None else rates[step - start_step]
            optimizer._step(model, grads, rate)
            step += 1
            if callback is not None:
                callback(step, model)
        _record(history, model, X, y, X_test, y_test)
    history.steps = step - start_step
    return history


def _checked_rate(rate, step: int) -> float:
    return real_number(rate, f"lr_schedule({step})", low=0.0, low_open=True)


def _record(history: History, model: MLP, X, y, X_test, y_test) -> None:
    for (xs, ys, losses, accs) in ((X, y, history.loss, history.accuracy),
                                   (X_test, y_test, history.test_loss, history.test_accuracy)):
        if xs is None:
            continue
        losses.append(float(model._graph(xs, ys)[0].data))
        if model.loss == "cross_entropy":
            accs.append(float(np.mean(np.argmax(model._forward(xs), axis=1) == ys)))
