"""Wrong backends of the training family: masked SGD that lets pruned weights or their optimizer
state come back, and optimizers that compute another rule than the one asked for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from conformance.backend import flat_names
from refprune.mlp import MLP

from .base import WrongBackend

#: The switches of ``train_steps_rebuilt``; all True is the reference's rule.
RIGHT = {
    "zero_weights": True,
    "zero_velocity": True,
    "mask_step": True,
    "report_masked": False,
    "reset_at_rewind": True,
    "honour_nesterov": True,
    "honour_decoupled": True,
}


def train_steps_rebuilt(
    params: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray] | None,
    X: np.ndarray,
    y: np.ndarray,
    activation: str,
    loss: str,
    lr_schedule: np.ndarray,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    decoupled: bool,
    mask_at: str,
    prune_at: list[dict[str, Any]] | None,
    record: str = "all",
    **switches: bool,
) -> dict[str, list]:
    """``train_steps`` (docs/training.md) rebuilt from the formula, with switches (``RIGHT``).

    zero_weights: under "update" and "weights" the stored weights are zeroed at pruned
    entries (at the start and at pruning); zero_velocity: under "update" the velocity
    too; mask_step: under "update" the step is masked; report_masked: theta * M is
    returned under "update" and "weights" instead of the stored weights (the same when
    they are zeroed); reset_at_rewind: a rewind resets the velocity; honour_nesterov /
    honour_decoupled: the flags are honoured.
    """
    s = dict(RIGHT, **switches)
    names = flat_names(params)
    theta = {n: np.array(params[n], dtype=np.float64) for n in names}
    current = {
        n: (np.ones(theta[n].shape, bool) if masks is None else np.asarray(masks[n], bool))
        for n in names
    }
    sizes = [theta["layers.0.weight"].shape[1]] + [
        theta[n].shape[0] for n in names if n.endswith("weight")
    ]
    net = MLP(sizes, activation, loss=loss, seed=0)
    events = {e["step"]: e for e in prune_at or []}
    zeroing = mask_at != "gradient" and s["zero_weights"]
    velocity: dict[str, np.ndarray | None] = {n: None for n in names}

    def zero_state() -> None:
        for n in names:
            if zeroing:
                theta[n] = np.where(current[n], theta[n], 0.0)
            if mask_at == "update" and s["zero_velocity"] and velocity[n] is not None:
                velocity[n] = np.where(current[n], velocity[n], 0.0)

    def shown() -> dict[str, np.ndarray]:
        if s["report_masked"] and mask_at != "gradient":
            return {n: np.where(current[n], theta[n], 0.0) for n in names}
        return {n: theta[n].copy() for n in names}

    zero_state()
    trajectory, velocities = [shown()], []
    nest = nesterov and s["honour_nesterov"]
    dec = decoupled and s["honour_decoupled"]
    for t, lr in enumerate(np.asarray(lr_schedule, dtype=np.float64)):
        if t in events:
            current = {n: np.asarray(events[t]["masks"][n], bool) for n in names}
            if events[t].get("rewind") is not None:
                theta = {n: np.array(events[t]["rewind"][n], dtype=np.float64) for n in names}
                if s["reset_at_rewind"]:
                    velocity = {n: None for n in names}
            zero_state()
        for n in names:
            np.copyto(net.params[n], np.where(current[n], theta[n], 0.0))
        _, grads = net._loss_and_grads(X, y, masked=False)
        for n in names:
            m, th = current[n], theta[n]
            g = grads[n] if mask_at == "weights" else np.where(m, grads[n], 0.0)
            d = g + weight_decay * th if weight_decay and not dec else g
            v = d.copy() if velocity[n] is None or not momentum else momentum * velocity[n] + d
            u = d + momentum * v if nest else (v if momentum else d)
            step = u + weight_decay * th if weight_decay and dec else u
            if mask_at == "update" and s["mask_step"]:
                step = np.where(m, step, 0.0)
            new = th - lr * step
            theta[n] = np.where(m, new, 0.0) if mask_at == "weights" else new
            velocity[n] = v
        trajectory.append(shown())
        velocities.append({n: velocity[n].copy() for n in names})
    if record == "last":
        return {"params": trajectory[-1:], "velocity": velocities[-1:]}
    return {"params": trajectory, "velocity": velocities}


class _TrainingBackend(WrongBackend):
    """``train_steps`` through ``train_steps_rebuilt`` with the class's switches."""

    switches: dict[str, bool] = {}

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
        super().train_steps(
            params=params,
            masks=masks,
            X=X,
            y=y,
            activation=activation,
            loss=loss,
            lr_schedule=lr_schedule,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            decoupled=decoupled,
            mask_at=mask_at,
            prune_at=prune_at,
            record=record,
        )  # argument checks
        return train_steps_rebuilt(
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
            **self.switches,
        )


class TrainingMomentumRevivesPruned(_TrainingBackend):
    """Weights pruned in the middle of training come back through their momentum.

    The gradient is masked and the newly pruned weights are set to 0.0, but their
    velocity is kept and the step is not masked, so the next update moves them by
    -lr * mu * v. Models masking gradients with a hook (``p.grad.mul_(mask)``) and
    zeroing the weights at pruning, while ``optimizer.state`` still holds the
    momentum buffers of the dense run.
    """

    name = "momentum revives weights pruned mid-training"
    family = "training"
    switches = {"zero_velocity": False, "mask_step": False}


class MaskOnGradientNotUpdate(_TrainingBackend):
    """Only the gradient is masked: the stored weights are never zeroed and keep moving.

    Asked for the "update" or "weights" convention, it computes the "gradient" one and
    reports its stored dense weights: pruned entries keep their values, weight decay and
    momentum move them. Models a gradient hook as the whole pruning mechanism, or saving
    ``weight_orig`` of torch.nn.utils.prune as if it were the pruned weight.
    """

    name = "mask on gradient, not on update"
    family = "training"
    switches = {"zero_weights": False, "zero_velocity": False, "mask_step": False}


class DecayOnPrunedWeights(_TrainingBackend):
    """Coupled weight decay reads the dense stored weights, so pruned entries gather velocity.

    The weights kept dense (pruned values not zeroed, the forward pass and the step
    masked, theta * M reported): the L2 term wd * theta of a pruned entry enters the
    velocity, which the "update" convention keeps at 0.0. Models an L2 penalty summed
    over ``weight_orig`` (the dense tensors) instead of the masked weights.
    """

    name = "weight decay on pruned weights"
    family = "training"
    switches = {"zero_weights": False, "zero_velocity": False, "report_masked": True}


class OptimizerStateKeptAcrossRewind(_TrainingBackend):
    """A rewind restores the weights but not the optimizer: the velocity of the run goes on.

    Models rewinding with ``model.load_state_dict(w0)`` and no fresh optimizer (or
    without ``optimizer.state.clear()``): the first updates after the rewind carry
    the momentum of the weights that were just discarded.
    """

    name = "optimizer state kept across a rewind"
    family = "training"
    switches = {"reset_at_rewind": False}


class NesterovAsHeavyBall(_TrainingBackend):
    """``nesterov=True`` is ignored: the step is the heavy-ball velocity v, not d + mu v.

    Models an optimizer wrapper that forwards momentum but drops the ``nesterov``
    keyword (or a hand-written loop with only one momentum rule).
    """

    name = "Nesterov written as heavy-ball"
    family = "training"
    switches = {"honour_nesterov": False}


class CoupledInsteadOfDecoupled(_TrainingBackend):
    """``decoupled=True`` is ignored: the decay goes into the gradient (L2), not onto the weights.

    With momentum the decay is then accumulated in the velocity and amplified by
    1 / (1 - mu). Models using ``torch.optim.SGD(weight_decay=...)`` where SGDW /
    AdamW-style decay (Loshchilov and Hutter 2019) was meant.
    """

    name = "coupled instead of decoupled weight decay"
    family = "training"
    switches = {"honour_decoupled": False}
