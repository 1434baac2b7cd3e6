"""Wrong backends of the lottery family: IMP rounds and full IMP runs with rewinding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from conformance.backend import _model, flat_names
from refprune.masks import fraction_to_count, select_masks, select_masks_count

from .base import WrongBackend


def imp_round_rebuilt(
    trained: Mapping[str, np.ndarray],
    rewind_params: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    fraction: float,
    scope: str,
    rate_multipliers: Mapping[str, float] | None,
    rounding: str,
    *,
    signed: bool = False,
    count_biases: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """One IMP round (the protocol's ``imp_round``) rebuilt from ``refprune.masks`` with two switches.

    Scores |trained * masks| of the weight matrices (``signed``: trained * masks);
    each group (the global pool, or one matrix) loses fraction_to_count(f, alive)
    of its alive entries, the lowest scores (``count_biases``: alive counts the
    group's biases too, though only weights are pruned); survivors take
    ``rewind_params``, pruned entries 0.0.
    """
    weights = [n for n in flat_names(trained) if n.endswith(".weight")]
    m = {n: np.asarray(masks[n], dtype=bool) for n in flat_names(trained)}
    eff = {n: np.where(m[n], trained[n], 0.0) for n in weights}
    s = {n: (eff[n] if signed else np.abs(eff[n])) for n in weights}
    mult = dict(rate_multipliers or {})
    if scope == "layer":
        groups = [([n], fraction * mult.get(n, 1.0)) for n in weights]
    else:
        pool = [n for n in weights if mult.get(n, 1.0) == 1.0]
        groups = ([(pool, fraction)] if pool else []) + [
            ([n], fraction * mult[n]) for n in weights if n not in pool
        ]
    new = dict(m)
    for names, f in groups:
        alive = sum(int(m[n].sum()) for n in names)
        counted = alive + (
            sum(int(m[n[: -len("weight")] + "bias"].sum()) for n in names) if count_biases else 0
        )
        n_prune = min(fraction_to_count(f, counted, rounding), alive)
        if len(names) == 1:
            out = select_masks_count(
                {names[0]: s[names[0]]}, {names[0]: m[names[0]]}, {names[0]: n_prune}, scope="layer"
            )
        else:
            out = select_masks_count(
                {n: s[n] for n in names}, {n: m[n] for n in names}, n_prune, scope="global"
            )
        new.update(out)
    params = {
        n: np.where(new[n], np.asarray(rewind_params[n], dtype=np.float64), 0.0)
        for n in flat_names(trained)
    }
    return {"masks": {n: new[n].copy() for n in flat_names(trained)}, "params": params}


class SignedWeightsAsMagnitudes(WrongBackend):
    """IMP ranks the signed trained weights instead of their magnitudes.

    Large negative weights are pruned first and small positive ones kept.
    Models a missing ``abs()`` (``torch.topk(w.flatten(), k)`` on the raw
    weights), one of the commonest magnitude-pruning slips.
    """

    name = "signed weights as magnitudes"
    family = "lottery"

    def imp_round(
        self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding
    ):
        super().imp_round(
            trained=trained,
            rewind_params=rewind_params,
            masks=masks,
            fraction=fraction,
            scope=scope,
            rate_multipliers=rate_multipliers,
            rounding=rounding,
        )  # argument checks
        return imp_round_rebuilt(
            trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding, signed=True
        )


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

    def imp_round(
        self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding
    ):
        super().imp_round(
            trained=trained,
            rewind_params=rewind_params,
            masks=masks,
            fraction=fraction,
            scope=scope,
            rate_multipliers=rate_multipliers,
            rounding=rounding,
        )  # argument checks
        return imp_round_rebuilt(
            trained,
            rewind_params,
            masks,
            fraction,
            scope,
            rate_multipliers,
            rounding,
            count_biases=True,
        )


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

    def imp_round(
        self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding
    ):
        return super().imp_round(
            trained=trained,
            rewind_params=trained,
            masks=masks,
            fraction=fraction,
            scope=scope,
            rate_multipliers=rate_multipliers,
            rounding=rounding,
        )


def imp_rebuilt(
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    activation: str,
    loss: str,
    options: Mapping[str, Any],
    *,
    reset: bool = True,
    mask_update: bool = True,
    snapshot_offset: int = 0,
) -> dict[str, Any]:
    """Full-batch IMP (the protocol's ``imp``) rebuilt on ``refprune.mlp`` with three switches.

    The masks live beside an unmasked network, as in a hand-written training
    loop: pruning zeroes the pruned weights, the gradient is masked, and the
    SGD update d, v = momentum v + d, w -= lr_t v is masked too
    (``mask_update``). ``reset``: the momentum buffer is cleared when a round
    starts. ``snapshot_offset``: late rewinding ("step:K") saves the weights
    after K + offset updates (training still resumes at update K).
    """
    o = dict(options)
    net = _model(params, activation, loss)  # every mask True: the loop holds the masks
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
            new = select_masks(
                scores,
                {n: masks[n] for n in weights},
                float(o["alpha"]),
                scope=o.get("scope", "layer"),
                rate_multipliers=o.get("rate_multipliers"),
            )
        else:  # absolute targets: each group down to its count
            mult = o.get("rate_multipliers") or {}
            pool = (
                [n for n in weights if mult.get(n, 1.0) == 1.0]
                if o.get("scope") == "global"
                else []
            )
            new = {}
            for group, m in ([(pool, 1.0)] if pool else []) + [
                ([n], mult.get(n, 1.0)) for n in weights if n not in pool
            ]:
                size = sum(masks[n].size for n in group)
                keep = size - fraction_to_count(float(sparsities[r]) * m, size)
                alive = sum(int(masks[n].sum()) for n in group)
                new.update(
                    select_masks_count(
                        {n: scores[n] for n in group}, masks, max(alive - keep, 0), scope="global"
                    )
                )
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
        return imp_rebuilt(
            params,
            X,
            y,
            activation,
            loss,
            options,
            reset=self.reset,
            mask_update=self.mask_update,
            snapshot_offset=self.snapshot_offset,
        )


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
    snapshot_offset = 1


class _RewindSwapped(WrongBackend):
    """``imp`` with one rewinding mode run as another (``swap``: asked -> run)."""

    swap: dict = {}

    def run_as(self, rewind: str) -> str:
        if rewind.startswith("step:") and "step:K" in self.swap:
            return self.swap["step:K"]
        return self.swap.get(rewind, rewind)

    def imp(self, *, params, X, y, activation, loss, options):
        options = dict(options)
        options["rewind"] = self.run_as(str(options.get("rewind", "init")))
        return super().imp(
            params=params, X=X, y=y, activation=activation, loss=loss, options=options
        )


class LateRewindingToInit(_RewindSwapped):
    """Late rewinding ("step:K") rewinds to the initial weights instead of those after K updates,
    and restarts the schedule at update 0.

    Models a rewind point that is never saved (the checkpoint hook at step K
    not wired up) so the code falls back to the only weights it kept, w0: the
    original lottery-ticket recipe where Frankle et al. (2020) ask for the
    stabilised one.
    """

    name = "late rewinding to init"
    family = "lottery"
    swap = {"step:K": "init"}


class FinetuneReplaysTheSchedule(_RewindSwapped):
    """Fine-tuning ("finetune") replays the learning-rate schedule from update 0 instead of
    training at the final rate: it runs as learning-rate rewinding ("lr").

    Models restarting the LR scheduler along with the training loop after
    pruning, which is exactly Renda et al.'s learning-rate rewinding, when the
    fine-tuning baseline keeps the last, small rate.
    """

    name = "finetune replays the schedule"
    family = "lottery"
    swap = {"finetune": "lr"}


class PrunedWeightsRewoundNotZeroed(WrongBackend):
    """An IMP round rewinds every weight, pruned ones included, to its rewind value.

    The returned parameters hold w0 at pruned entries where the protocol has
    +0.0 (the mask is right). Models ``model.load_state_dict(w0)`` after
    pruning: it overwrites the zeroed weights, and code that applies the mask
    only in the forward pass never notices, while the parameters it exports
    are not sparse.
    """

    name = "pruned weights rewound, not zeroed"
    family = "lottery"

    def imp_round(
        self, *, trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding
    ):
        out = super().imp_round(
            trained=trained,
            rewind_params=rewind_params,
            masks=masks,
            fraction=fraction,
            scope=scope,
            rate_multipliers=rate_multipliers,
            rounding=rounding,
        )
        params = {n: np.asarray(rewind_params[n], dtype=np.float64).copy() for n in out["params"]}
        return {"masks": out["masks"], "params": params}
