"""Iterative magnitude pruning, lottery-ticket rewinding, the controls, and gradual pruning.

Iterative pruning (IMP) repeats: train, prune, rewind. Round 0 trains the
network as given (usually dense). Round r >= 1 scores the weights of the
network trained in round r - 1, prunes the r-th step of a schedule (for the
geometric schedule: a fraction alpha of the weights still alive), *rewinds*,
resets the optimizer's momentum, and trains again.

Rewinding modes (``Rewind``):

* ``"init"`` -- surviving weights go back to their initial values w0 and
  training restarts at step 0. Frankle and Carbin, "The Lottery Ticket
  Hypothesis: Finding Sparse, Trainable Neural Networks", ICLR 2019.
* ``"step:K"`` -- late rewinding: surviving weights go back to the values w_K
  they had after K updates of round 0 (the dense run), and training resumes at
  step K for the remaining T - K updates, with the learning-rate schedule and
  the data order of steps K .. T - 1 replayed. Frankle, Dziugaite, Roy and
  Carbin, "Linear Mode Connectivity and the Lottery Ticket Hypothesis",
  ICML 2020. K may fall inside an epoch: the round resumes at batch
  K mod (updates per epoch) of that epoch's permutation; ``step:0`` is ``init``.
* ``"lr"`` -- learning-rate rewinding: keep the trained weights (pruned entries
  0), replay the whole learning-rate schedule from step 0. Renda, Frankle and
  Carbin, "Comparing Rewinding and Fine-tuning in Neural Network Pruning",
  ICLR 2020.
* ``"finetune"`` -- keep the trained weights and train for T more updates at
  the final learning rate of the schedule, lr(T - 1) (the fine-tuning baseline
  of Renda et al. 2020; Han et al. 2015).

In every mode the optimizer state (the momentum buffer) is reset when a
round starts, as after a rewind nothing of the previous run's velocity
belongs to the new starting point.

Conventions
-----------
* Scores come from ``refprune.scores.compute_scores`` on the trained network
  (higher score = kept); masks from ``refprune.masks.prune``, so a round prunes
  only alive weights, masks are nested across rounds, and pruned weights stay
  exactly 0.0. Counts follow ``refprune.schedules`` (rounding by
  ``refprune.masks.fraction_to_count``).
* Data order: every round trains with ``train(..., seed=config.seed)``, the same
  mini-batch permutations each round (late rewinding replays them from step K).
* A round's record (``trace["rounds"][r]``) holds: per-parameter alive counts
  and densities, the total density over the pruned parameters, the SHA-256 of
  each mask, the weights right after rewinding, train/test loss and accuracy,
  and per-class test accuracy (Hooker et al., "What Do Compressed Deep Neural
  Networks Forget?", 2019: the average hides the classes that lose most).
* Mask checksum: SHA-256 of the mask's entries in flat C order, one byte each,
  0x01 for alive and 0x00 for pruned, nothing else (no shape, no header).
* Weights in the trace: ``"hex"`` (``float.hex``, e.g. ``"0x1.8000000000000p-1"``,
  C's ``%a``: exact in every language), ``"float"`` (JSON numbers, the shortest
  repr that round-trips in float64) or ``"none"``; each entry is
  ``{"shape": [...], "data": [...]}`` with data in flat C order.

Specification and citations: ``docs/lottery.md``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ._checks import boolean, choice, positive_int, real_number
from .masks import ROUNDINGS, SCOPES, apply_masks, fraction_to_count, prune, select_masks_count
from .mlp import MLP, check_model
from .rng import make_rng
from .schedules import Schedule, geometric
from .scores import DIAG_RULES, RULES, compute_scores
from .train import SGD, train

REWIND_MODES = ("init", "step", "lr", "finetune")
CONTROLS = ("reinit", "random_masks", "one_shot")
WEIGHT_FORMATS = ("hex", "float", "none")
TRACE_FORMAT = "refprune.lottery-trace"
TRACE_VERSION = 1
MASK_CHECKSUM = "sha256 of one byte per entry in flat C order: 0x01 alive, 0x00 pruned"


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Rewind:
    """A rewinding mode: ``"init"``, ``"step:K"``, ``"lr"`` or ``"finetune"`` (module docstring)."""

    mode: str = "init"
    step: int = 0

    def __post_init__(self) -> None:
        choice(self.mode, "rewind mode", REWIND_MODES)
        positive_int(self.step, "rewind step", minimum=0)
        if self.mode != "step" and self.step != 0:
            raise ValueError(
                f"rewind step is only meaningful for mode 'step', got mode {self.mode!r}"
            )

    @classmethod
    def parse(cls, spec: str | Rewind) -> Rewind:
        """Parse ``"init"``, ``"step:K"`` (K >= 0), ``"lr"`` or ``"finetune"``."""
        if isinstance(spec, Rewind):
            return spec
        if not isinstance(spec, str):
            raise TypeError(
                f"rewind must be a string such as 'init' or 'step:100', got {type(spec).__name__}"
            )
        if spec.startswith("step:"):
            k = spec[5:]
            if not k.isdigit():
                raise ValueError(
                    f"rewind must be 'step:K' with K a non-negative integer, got {spec!r}"
                )
            return cls("step", int(k))
        if spec not in ("init", "lr", "finetune"):
            raise ValueError(
                f"unknown rewind {spec!r}; expected one of 'init', 'step:K', 'lr', 'finetune'"
            )
        return cls(spec)

    def __str__(self) -> str:
        return f"step:{self.step}" if self.mode == "step" else self.mode


@dataclass(frozen=True)
class StepDecayLR:
    """Learning rate lr * gamma^j after the j-th milestone: lr_t = lr * gamma^(#{m in milestones: m <= t}).

    gamma^j is the left-to-right float64 product, so every backend gets the same bits.
    """

    lr: float
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        real_number(self.lr, "lr", low=0.0, low_open=True)
        real_number(self.gamma, "gamma", low=0.0, low_open=True)
        for m in self.milestones:
            positive_int(m, "milestones[i]", minimum=0)
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be non-decreasing, got {self.milestones}")

    def __call__(self, t: int) -> float:
        rate = self.lr
        for m in self.milestones:
            if m <= t:
                rate = rate * self.gamma
        return rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": "step_decay",
            "lr": self.lr,
            "milestones": list(self.milestones),
            "gamma": self.gamma,
        }


@dataclass(frozen=True)
class TrainConfig:
    """How each round trains (passed to ``refprune.train.train``).

    ``lr_schedule(t)`` gives the rate of update t (counted from the start of the
    round's schedule); None means the constant ``lr``. ``seed`` fixes the
    mini-batch order, the same in every round.
    """

    epochs: int = 10
    lr: float = 0.1
    batch_size: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: Callable[[int], float] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        positive_int(self.epochs, "epochs")
        real_number(self.lr, "lr", low=0.0, low_open=True)
        if self.batch_size is not None:
            positive_int(self.batch_size, "batch_size")
        real_number(self.momentum, "momentum", low=0.0, high=1.0, high_open=True)
        real_number(self.weight_decay, "weight_decay", low=0.0)
        if self.lr_schedule is not None and not callable(self.lr_schedule):
            raise TypeError(
                f"lr_schedule must be callable (step -> rate), got {type(self.lr_schedule).__name__}"
            )
        positive_int(self.seed, "seed", minimum=0)

    def steps_per_epoch(self, n: int) -> int:
        """Updates per epoch on n training rows: 1 for full batch, else ceil(n / batch_size)."""
        return 1 if self.batch_size is None or self.batch_size >= n else -(-n // self.batch_size)

    def rate(self, t: int) -> float:
        return self.lr if self.lr_schedule is None else float(self.lr_schedule(t))

    def to_dict(self) -> dict[str, Any]:
        sched = self.lr_schedule
        described: dict[str, Any] | str | None = None  # a Schedule's document, else a name
        if sched is not None:
            described = (
                sched.to_dict()
                if hasattr(sched, "to_dict")
                else getattr(sched, "__qualname__", "callable")
            )
        return {
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "lr_schedule": described,
            "seed": self.seed,
        }


# ---------------------------------------------------------------- small pure helpers
def mask_sha256(mask: Any) -> str:
    """SHA-256 (hex digest) of a mask: one byte per entry in flat C order, 0x01 alive, 0x00 pruned."""
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean array, got dtype {m.dtype}")
    return hashlib.sha256(np.ascontiguousarray(m, dtype=np.uint8).tobytes()).hexdigest()


def encode_array(a: np.ndarray, fmt: str = "hex") -> dict[str, Any]:
    """``{"shape": [...], "data": [...]}`` with data in flat C order, as hex floats or JSON numbers."""
    choice(fmt, "weights format", ("hex", "float"))
    flat = np.asarray(a, dtype=np.float64).ravel().tolist()
    return {
        "shape": list(np.shape(a)),
        "data": [float.hex(v) for v in flat] if fmt == "hex" else flat,
    }


def decode_array(entry: Mapping[str, Any]) -> np.ndarray:
    """Inverse of ``encode_array`` (hex strings or numbers); exact."""
    data = [float.fromhex(v) if isinstance(v, str) else float(v) for v in entry["data"]]
    return np.array(data, dtype=np.float64).reshape(entry["shape"])


def random_masks_like(
    masks: Mapping[str, Any],
    names: Sequence[str],
    seed: int | np.random.Generator = 0,
    *,
    within: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Random masks with exactly the same alive count per parameter as ``masks``.

    For each name in ``names``, in order: k = alive entries of ``masks[name]``,
    c = the candidate entries (the flat C-order indices of the alive entries of
    ``within[name]``; all n entries when ``within`` is None or has no such name),
    ``perm = rng.permutation(len(c))`` (rng = ``make_rng(seed)``, continued from
    name to name), and the entries c[perm[:k]] are alive. Exact counts, not
    Bernoulli draws (the random-pruning control of Frankle and Carbin 2019); every
    set of k candidates is equally likely, and with ``within`` the new mask is
    nested in it. Names not in ``names`` keep their masks.
    """
    rng = make_rng(seed)
    out = {n: np.asarray(m, dtype=bool).copy() for n, m in masks.items()}
    for name in names:
        m = out[name]
        k = int(m.sum())
        if within is None or name not in within:
            candidates = np.arange(m.size)
        else:
            w = np.asarray(within[name], dtype=bool)
            if w.shape != m.shape:
                raise ValueError(
                    f"within[{name!r}] must have the mask's shape {m.shape}, got {w.shape}"
                )
            candidates = np.flatnonzero(w)
        if k > candidates.size:
            raise ValueError(
                f"masks[{name!r}] has {k} alive entries, more than the "
                f"{candidates.size} alive in within[{name!r}]"
            )
        new = np.zeros(m.size, dtype=bool)
        new[candidates[rng.permutation(candidates.size)[:k]]] = True
        out[name] = new.reshape(m.shape)
    return out


def reinit_like(model: MLP, seed: int | np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh initial parameters for ``model``'s architecture: ``MLP(same sizes, activation,
    loss, init, sigma, seed=seed).params`` (the random-reinitialisation control)."""
    fresh = MLP(
        model.sizes,
        model.activation,
        loss=model.loss,
        init=model.init,
        sigma=model.sigma,
        seed=seed,
    )
    return fresh.params


def rewind_weights(model: MLP, params: Mapping[str, np.ndarray]) -> None:
    """Set every parameter to a copy of ``params`` and keep the masks: survivors take the
    stored values, pruned entries are 0.0. Mutates ``model`` (its purpose)."""
    model.load_state_dict({"params": params})


def evaluate(model: MLP, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Loss, accuracy and per-class accuracy of ``model`` on (X, y).

    accuracy = mean(argmax f(x) == y); per_class_accuracy[c] = that mean over the
    rows with y == c (None when the set has no row of class c). For an mse
    model both accuracies are None.
    """
    X, y = model.check_inputs(X, y, require_y=True)
    out: dict[str, Any] = {
        "loss": model.loss_value(X, y),
        "accuracy": None,
        "per_class_accuracy": None,
    }
    if model.loss == "cross_entropy":
        pred = np.argmax(model._forward(X), axis=1)
        hit = pred == y
        out["accuracy"] = float(np.mean(hit))
        out["per_class_accuracy"] = [
            float(np.mean(hit[y == c])) if np.any(y == c) else None for c in range(model.n_outputs)
        ]
    return out


# ---------------------------------------------------------------- one pruning step
@dataclass(frozen=True)
class PruneGroup:
    """Parameters whose alive count is kept as one: their names, how they are ranked
    (``"global"``: one ranking over the concatenation; ``"layer"``: a single name) and the
    factor on an absolute sparsity target (1 for the global pool, else the multiplier)."""

    names: tuple[str, ...]
    scope: str
    multiplier: float


@dataclass(frozen=True)
class PruneSpec:
    """What a pruning step prunes and how (shared by IMP, its controls and gradual pruning).

    rule : a rule of ``refprune.scores.RULES`` (higher score = kept).
    names : parameters pruned (default at the call sites: the weight matrices).
    scope, rate_multipliers, rounding : as in ``refprune.masks.select_masks``.
    hessian_method, score_options : passed to ``refprune.scores.compute_scores``.
    allow_collapse : passed to ``refprune.masks.prune``.
    """

    rule: str = "magnitude"
    names: tuple[str, ...] = ()
    scope: str = "layer"
    rate_multipliers: Mapping[str, float] | None = None
    rounding: str = "round-half-even"
    hessian_method: str = "exact"
    score_options: Mapping[str, Any] | None = None
    allow_collapse: bool = False

    def __post_init__(self) -> None:
        choice(self.rule, "rule", RULES)
        choice(self.scope, "scope", SCOPES)
        choice(self.rounding, "rounding", ROUNDINGS)
        boolean(self.allow_collapse, "allow_collapse")

    def scores(
        self, model: MLP, X: np.ndarray | None, y: np.ndarray | None, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """compute_scores(rule, model, X, y, names); ``rng`` is passed only to the rules that draw."""
        draws = self.rule == "random" or (
            self.rule in DIAG_RULES and self.hessian_method == "hutchinson"
        )
        return compute_scores(
            self.rule,
            model,
            X,
            y,
            names=list(self.names),
            seed=rng if draws else None,
            hessian_method=self.hessian_method,
            **dict(self.score_options or {}),
        )

    def pool(self) -> list[str]:
        """Names ranked together: those with multiplier 1 in global scope; none in layer scope."""
        if self.scope == "layer":
            return []
        mult = self.rate_multipliers or {}
        return [n for n in self.names if mult.get(n, 1.0) == 1.0]

    def groups(self) -> list[PruneGroup]:
        """The groups counts are kept for: the global pool (if any), then each other name.

        Each group says how it is ranked (the pool as one ranking, scope "global";
        any other name on its own, scope "layer") and the factor on a target
        (1 for the pool, the name's multiplier otherwise).
        """
        mult = self.rate_multipliers or {}
        pool = self.pool()
        out = [PruneGroup(tuple(pool), "global", 1.0)] if pool else []
        return out + [
            PruneGroup((n,), "layer", float(mult.get(n, 1.0))) for n in self.names if n not in pool
        ]

    def target_alive(self, model: MLP, sparsity: float) -> list[int]:
        """Alive count of each group (``groups()`` order) for an absolute sparsity target.

        Group of n entries (sizes of the original matrices) with multiplier m
        (1 for the pool): k = n - fraction_to_count(s * m, n, rounding).
        """
        sparsity = real_number(sparsity, "sparsity", low=0.0, high=1.0)
        out = []
        for group in self.groups():
            f = sparsity * group.multiplier
            if f > 1.0:
                raise ValueError(
                    f"sparsity * rate_multipliers[{group.names[0]!r}] must be <= 1, got {f}"
                )
            n = sum(model.masks[g].size for g in group.names)
            out.append(n - fraction_to_count(f, n, self.rounding))
        return out

    def prune_to_counts(
        self, model: MLP, scores: Mapping[str, np.ndarray], alive_targets: Sequence[int]
    ) -> None:
        """Prune each group from its alive count down to its target (never up), in place.

        The pool is ranked as one group (scope "global"), every other name on its
        own. All new masks are computed first and applied together with
        ``refprune.masks.prune_count``, so on any error the model is unchanged.
        """
        groups = self.groups()
        if len(alive_targets) != len(groups):
            raise ValueError(
                f"alive_targets must have one count per group ({len(groups)}), "
                f"got {len(alive_targets)}"
            )
        new: dict[str, np.ndarray] = {}
        for group, k in zip(groups, alive_targets):
            alive = sum(int(model.masks[g].sum()) for g in group.names)
            if alive > k:
                new.update(
                    select_masks_count(
                        {g: scores[g] for g in group.names}, model.masks, alive - k, scope="global"
                    )
                )
        if new:
            apply_masks(model, new, allow_collapse=self.allow_collapse)

    def target_densities(self, model: MLP, schedule: Schedule) -> list[float]:
        """Target density over ``names`` after each step of ``schedule``, multipliers applied.

        Group g (``groups()``) with n_g entries, a_g of them alive in ``model``,
        and factor m_g is aimed at a_g * prod_{i <= j} (1 - f_i * m_g) alive
        entries after step j of a relative schedule (left-to-right float64
        products), at n_g * (1 - s_j * m_g) after an absolute one; the target
        density is their sum over sum_g n_g. Without multipliers and from all
        alive, this is ``schedule.densities()``; with them it is what the steps
        actually aim at (Frankle and Carbin's output layer at half the rate
        leaves more weights than (1 - alpha)^r).
        """
        groups = self.groups()
        sizes = [sum(model.masks[g].size for g in group.names) for group in groups]
        alive = [float(sum(int(model.masks[g].sum()) for g in group.names)) for group in groups]
        out = []
        for value in schedule.values:
            for i, group in enumerate(groups):
                if schedule.kind == "relative":
                    alive[i] = alive[i] * (1.0 - value * group.multiplier)
                else:
                    alive[i] = sizes[i] * (1.0 - value * group.multiplier)
            out.append(sum(alive) / sum(sizes))
        return out

    def apply(
        self, model: MLP, scores: Mapping[str, np.ndarray], schedule: Schedule, j: int
    ) -> None:
        """Apply step j of ``schedule`` to ``model`` in place.

        Relative step: ``prune(model, scores, f_j, names, scope, rate_multipliers,
        rounding)``, a fraction f_j of the alive entries. Absolute step: each group
        down to ``target_alive(model, s_j)``.
        """
        if schedule.kind == "relative":
            prune(
                model,
                scores,
                schedule.values[j],
                names=list(self.names),
                scope=self.scope,
                rate_multipliers=self.rate_multipliers,
                rounding=self.rounding,
                allow_collapse=self.allow_collapse,
            )
        else:
            self.prune_to_counts(model, scores, self.target_alive(model, schedule.values[j]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "names": list(self.names),
            "scope": self.scope,
            "rate_multipliers": None
            if self.rate_multipliers is None
            else {k: float(v) for k, v in self.rate_multipliers.items()},
            "rounding": self.rounding,
            "hessian_method": self.hessian_method,
            "score_options": dict(self.score_options or {}),
            "allow_collapse": self.allow_collapse,
        }


#: Training and optional test data: (X, y, X_test, y_test); the test pair is both or neither.
_Data = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


def _check_data(model: MLP, X: Any, y: Any, X_test: Any, y_test: Any) -> _Data:
    check_model(model)
    X, y = model.check_inputs(X, y, require_y=True)
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        X_test, y_test = model.check_inputs(X_test, y_test, require_y=True)
    return X, y, X_test, y_test


def imp_round(
    model: MLP,
    rewind_params: Mapping[str, np.ndarray],
    fraction: float,
    *,
    rule: str = "magnitude",
    names: Sequence[str] | None = None,
    scope: str = "layer",
    rate_multipliers: Mapping[str, float] | None = None,
    rounding: str = "round-half-even",
    X: np.ndarray | None = None,
    y: np.ndarray | None = None,
    seed: int | np.random.Generator = 0,
    hessian_method: str = "exact",
    allow_collapse: bool = False,
) -> MLP:
    """One IMP round after training: prune, then rewind. Returns a new model; ``model`` is untouched.

    scores = compute_scores(rule, model, X, y, names) (higher = kept); new masks
    = the old ones minus the fraction_to_count(fraction, alive, rounding)
    lowest-scoring alive entries of each group (``refprune.masks.prune``); then
    every parameter is set to ``rewind_params`` under the new masks (survivors
    take the rewind values, pruned entries are 0.0).

    Parameters
    ----------
    model : MLP
        The trained network (its masks are the current ones).
    rewind_params : mapping name -> array
        Values to rewind to: w0 (Frankle and Carbin 2019), w_K (Frankle et al.
        2020), or the trained weights themselves (learning-rate rewinding and
        fine-tuning, Renda et al. 2020).
    fraction : float in [0, 1]
        Fraction of the alive weights to prune.
    rule, names, scope, rate_multipliers, rounding, hessian_method, allow_collapse : as in ``run_imp``.
    X, y : training data, for the rules that need it.
    seed : int or Generator
        For the rules that draw ("random"); ignored by the others.
    """
    check_model(model)
    spec = _pruning_spec(
        model,
        None,
        {
            "rule": rule,
            "names": names,
            "scope": scope,
            "rate_multipliers": rate_multipliers,
            "rounding": rounding,
            "hessian_method": hessian_method,
            "allow_collapse": allow_collapse,
        },
    )
    net = model.copy()
    prune(
        net,
        spec.scores(net, X, y, make_rng(seed)),
        fraction,
        names=list(spec.names),
        scope=spec.scope,
        rate_multipliers=spec.rate_multipliers,
        rounding=spec.rounding,
        allow_collapse=spec.allow_collapse,
    )
    rewind_weights(net, rewind_params)
    return net


# ---------------------------------------------------------------- records
def _record(
    model: MLP,
    names: Sequence[str],
    *,
    index: int,
    target_density: float | None,
    schedule_density: float | None,
    start_weights: Mapping[str, np.ndarray] | None,
    weights_format: str,
    steps: int,
    train_eval: dict[str, Any],
    test_eval: dict[str, Any] | None,
) -> dict[str, Any]:
    alive = {n: int(m.sum()) for n, m in model.masks.items()}
    rec: dict[str, Any] = {
        "round": index,
        "density": model.density(names),
        "target_density": target_density,
        "schedule_density": schedule_density,
        "alive": alive,
        "layer_density": {n: alive[n] / m.size for n, m in model.masks.items()},
        "mask_sha256": {n: mask_sha256(m) for n, m in model.masks.items()},
        "steps": steps,
        "train_loss": train_eval["loss"],
        "train_accuracy": train_eval["accuracy"],
        "test_loss": None if test_eval is None else test_eval["loss"],
        "test_accuracy": None if test_eval is None else test_eval["accuracy"],
        "per_class_test_accuracy": None if test_eval is None else test_eval["per_class_accuracy"],
    }
    if weights_format != "none" and start_weights is not None:
        rec["rewound_weights"] = {
            n: encode_array(w, weights_format) for n, w in start_weights.items()
        }
    return rec


def _dump(trace: dict[str, Any], path: str | None, indent: int | None) -> str:
    text = json.dumps(trace, indent=indent, allow_nan=False)
    if path is not None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return text


@dataclass
class LotteryResult:
    """What ``run_imp`` returns.

    Attributes
    ----------
    trace : dict
        JSON-ready record of the run: ``format``, ``version``, ``config``,
        ``rounds`` (one record per round, round 0 first) and ``controls``
        (control name -> one record per round r >= 1).
    model : MLP
        The network after the last round's training.
    masks : list of dict name -> bool array
        The masks of every round (round 0: the masks the model came with).
    init_params : dict
        w0, the parameters of the model as given.
    rewind_params : dict or None
        What rounds rewind to: w0 ("init"), w_K ("step:K"), None ("lr", "finetune").
    dense_params : dict
        The parameters after round 0's training.
    """

    trace: dict[str, Any]
    model: MLP
    masks: list[dict[str, np.ndarray]]
    init_params: dict[str, np.ndarray]
    rewind_params: dict[str, np.ndarray] | None
    dense_params: dict[str, np.ndarray]

    def to_json(self, path: str | None = None, *, indent: int | None = None) -> str:
        """The trace as JSON text (same run, same bytes); also written to ``path`` when given."""
        return _dump(self.trace, path, indent)


# ---------------------------------------------------------------- IMP
_SEGMENTS = {"init": "full", "step": "resume", "lr": "full", "finetune": "finetune"}
_PRUNE_KEYWORDS = (
    "rule",
    "names",
    "scope",
    "rate_multipliers",
    "rounding",
    "hessian_method",
    "score_options",
    "allow_collapse",
)


@dataclass(frozen=True)
class Controls:
    """The control runs of IMP (``run_imp``) and the seeds they draw from.

    names : subset of ``CONTROLS`` ("reinit", "random_masks", "one_shot"), run in this order.
    reinit_seed : seed of the fresh weights of "reinit" (``reinit_like``).
    mask_seed : seed of the random masks of "random_masks" (``random_masks_like``).
    """

    names: tuple[str, ...] = ()
    reinit_seed: int = 1
    mask_seed: int = 2

    def __post_init__(self) -> None:
        names = (self.names,) if isinstance(self.names, str) else tuple(self.names)
        for c in names:
            choice(c, "controls[i]", CONTROLS)
        object.__setattr__(self, "names", names)
        for seed in ("reinit_seed", "mask_seed"):
            object.__setattr__(self, seed, positive_int(getattr(self, seed), seed, minimum=0))


class _Trainer:
    """Trains one round the way the rewinding mode says (shared by IMP and its controls)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, cfg: TrainConfig, rw: Rewind) -> None:
        self.X, self.y, self.cfg, self.rw = X, y, cfg, rw
        self.spe = cfg.steps_per_epoch(X.shape[0])
        self.total = cfg.epochs * self.spe
        self.optimizer = SGD(cfg.lr, cfg.momentum, cfg.weight_decay)

    def run(
        self, net: MLP, segment: str, callback: Callable[[int, MLP], None] | None = None
    ) -> int:
        """Train ``net`` in place and return the number of updates.

        segment "full": updates 0 .. T-1 of the schedule; "resume": updates
        K .. T-1 (late rewinding; the permutations of the first floor(K / (updates
        per epoch)) epochs are drawn and discarded and the next epoch starts at
        batch K mod (updates per epoch), so the rest is replayed exactly);
        "finetune": T updates at the constant rate lr(T - 1). The momentum is
        reset first, always.
        """
        cfg = self.cfg
        self.optimizer.reset()  # momentum never survives a rewind
        self.optimizer.lr = cfg.lr
        lr_schedule, skip, start = cfg.lr_schedule, 0, 0
        first_batch = 0
        if segment == "resume":
            (skip, first_batch), start = divmod(self.rw.step, self.spe), self.rw.step
        elif segment == "finetune":
            self.optimizer.lr = cfg.rate(self.total - 1)
            lr_schedule = None
        rng = make_rng(cfg.seed)
        if self.spe > 1:
            for _ in range(skip):  # train draws one permutation per epoch
                rng.permutation(self.X.shape[0])
        if cfg.epochs - skip == 0:
            if callback is not None:
                callback(start, net)
            return 0
        hist = train(
            net,
            self.X,
            self.y,
            epochs=cfg.epochs - skip,
            batch_size=cfg.batch_size,
            lr_schedule=lr_schedule,
            seed=rng,
            optimizer=self.optimizer,
            start_step=start,
            first_batch=first_batch,
            callback=callback,
        )
        return hist.steps


class _Recorder:
    """Builds the trace of one IMP run: its header, then one record per trained network.

    ``add(kind, r, net, start, steps)`` evaluates ``net`` on the training and test
    data, appends the record of round r to ``trace["rounds"]`` (kind "imp") or to
    ``trace["controls"][kind]``, then calls ``observe`` and ``progress``.
    """

    def __init__(
        self,
        trace: dict[str, Any],
        names: list[str],
        data: _Data,
        targets: list[float],
        scheduled: list[float],
        weights_format: str,
        progress: Callable[[str, dict[str, Any]], None] | None,
        observe: Callable[[str, int, MLP], None] | None,
    ) -> None:
        self.trace, self.names, self.data = trace, names, data
        self.targets, self.scheduled = targets, scheduled  # index r: round r (0: as given)
        self.weights_format, self.progress, self.observe = weights_format, progress, observe
        self.t0 = time.perf_counter()

    def add(self, kind: str, r: int, net: MLP, start: Mapping[str, np.ndarray], steps: int) -> None:
        X, y, X_test, y_test = self.data
        te = None if X_test is None or y_test is None else evaluate(net, X_test, y_test)
        rec = _record(
            net,
            self.names,
            index=r,
            target_density=self.targets[r],
            schedule_density=self.scheduled[r],
            start_weights=start,
            weights_format=self.weights_format,
            steps=steps,
            train_eval=evaluate(net, X, y),
            test_eval=te,
        )
        (self.trace["rounds"] if kind == "imp" else self.trace["controls"][kind]).append(rec)
        if self.observe is not None:
            self.observe(kind, r, net)
        if self.progress is not None:
            self.progress(kind, dict(rec, elapsed=time.perf_counter() - self.t0))


def _copy(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {n: a.copy() for n, a in arrays.items()}


def _trace_header(
    model: MLP,
    X: np.ndarray,
    X_test: np.ndarray | None,
    schedule: Schedule,
    pruning: PruneSpec,
    rw: Rewind,
    cfg: TrainConfig,
    score_seed: int,
    controls: Controls,
    weights_format: str,
) -> dict[str, Any]:
    """The trace before any round: ``format``, ``version``, the whole ``config``, empty records."""
    arch = {
        "sizes": list(model.sizes),
        "activation": model.activation,
        "loss": model.loss,
        "init": model.init,
        "sigma": model.sigma,
    }
    config = {
        "model": arch,
        "n_train": int(X.shape[0]),
        "n_test": None if X_test is None else int(X_test.shape[0]),
        "schedule": schedule.to_dict(),
        "pruning": pruning.to_dict(),
        "rewind": str(rw),
        "train": cfg.to_dict(),
        "score_seed": score_seed,
        "controls": list(controls.names),
        "reinit_seed": controls.reinit_seed,
        "mask_seed": controls.mask_seed,
        "weights_format": weights_format,
        "mask_checksum": MASK_CHECKSUM,
    }
    return {
        "format": TRACE_FORMAT,
        "version": TRACE_VERSION,
        "config": config,
        "rounds": [],
        "controls": {c: [] for c in controls.names},
    }


def _pruning_spec(model: MLP, pruning: PruneSpec | None, keywords: dict[str, Any]) -> PruneSpec:
    """``pruning`` with its names resolved, or a PruneSpec from the flat keywords of its fields."""
    if pruning is None:
        fields = {k: keywords.pop(k) for k in _PRUNE_KEYWORDS if k in keywords}
        names = model.check_names(fields.pop("names", None))
        for key in ("rate_multipliers", "score_options"):
            if fields.get(key) is not None:
                fields[key] = dict(fields[key])
        return PruneSpec(names=tuple(names), **fields)
    if not isinstance(pruning, PruneSpec):
        raise TypeError(f"pruning must be a PruneSpec, got {type(pruning).__name__}")
    given = [k for k in _PRUNE_KEYWORDS if k in keywords]
    if given:
        raise TypeError(f"give either pruning or its fields as keywords, not both (got {given})")
    return replace(pruning, names=tuple(model.check_names(pruning.names or None)))


def _check_imp(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray | None,
    y_test: np.ndarray | None,
    schedule: Schedule | None,
    pruning: PruneSpec | None,
    train_config: TrainConfig | None,
    rewind: str | Rewind,
    controls: Any,  # a Controls, or the names Controls.__post_init__ normalises
    score_seed: int,
    weights_format: str,
    progress: Callable[[str, dict[str, Any]], None] | None,
    observe: Callable[[str, int, MLP], None] | None,
    keywords: dict[str, Any],
) -> tuple[_Data, Schedule, PruneSpec, TrainConfig, Rewind, Controls, int]:
    """Validate run_imp's arguments once; return them as spec objects."""
    data = _check_data(model, X, y, X_test, y_test)
    rounds, alpha = keywords.pop("rounds", 10), keywords.pop("alpha", 0.2)
    if schedule is None:
        schedule = geometric(alpha, rounds)
    elif not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a refprune Schedule, got {type(schedule).__name__}")
    pruning = _pruning_spec(model, pruning, keywords)
    if not isinstance(controls, Controls):
        controls = Controls(controls, keywords.pop("reinit_seed", 1), keywords.pop("mask_seed", 2))
    if keywords:
        raise TypeError(f"run_imp() got unexpected keyword arguments {sorted(keywords)}")
    rw = Rewind.parse(rewind)
    cfg = TrainConfig() if train_config is None else train_config
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(cfg).__name__}")
    score_seed = positive_int(score_seed, "score_seed", minimum=0)
    choice(weights_format, "weights_format", WEIGHT_FORMATS)
    for name, f in (("progress", progress), ("observe", observe)):
        if f is not None and not callable(f):
            raise TypeError(f"{name} must be callable, got {type(f).__name__}")
    total = cfg.epochs * cfg.steps_per_epoch(data[0].shape[0])
    if rw.mode == "step" and rw.step > total:
        raise ValueError(
            f"rewind step K must be in [0, {total}] (the updates of a round), got {rw.step}"
        )
    if "reinit" in controls.names and all(
        np.array_equal(reinit_like(model, controls.reinit_seed)[n], model.params[n])
        for n in pruning.names
    ):
        raise ValueError(
            f"reinit_seed={controls.reinit_seed} draws the model's own initial "
            "weights; choose a seed other than the model's"
        )
    return data, schedule, pruning, cfg, rw, controls, score_seed


def run_imp(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    *,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    schedule: Schedule | None = None,
    pruning: PruneSpec | None = None,
    train_config: TrainConfig | None = None,
    rewind: str | Rewind = "init",
    controls: Controls | Sequence[str] = (),
    score_seed: int = 0,
    weights_format: str = "hex",
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    observe: Callable[[str, int, MLP], None] | None = None,
    **keywords: Any,
) -> LotteryResult:
    """Iterative pruning with rewinding (the Lottery Ticket procedure), with optional controls.

    Round 0 trains a copy of ``model`` (``model`` itself is never modified).
    Round r = 1 .. R: scores = compute_scores(rule, net, X, y) on the network
    trained in round r - 1 (higher = kept); prune step r of the schedule
    (default ``geometric(alpha, rounds)``: a fraction alpha of the alive
    weights, density (1 - alpha)^r up to the integer counts of
    ``Schedule.alive_counts``); rewind (``Rewind``); reset the momentum; train.
    Frankle and Carbin, ICLR 2019; Frankle et al., ICML 2020; Renda et al., ICLR 2020.

    Controls (``run_controls``), one run per round r >= 1, each trained exactly
    as round r is, recorded under ``trace["controls"][name]``: "reinit" (round
    r's masks on fresh weights), "random_masks" (round r's alive counts placed
    at random, on the rewind weights), "one_shot" (one pruning step from the
    dense trained network to round r's alive counts, on the rewind weights).

    Parameters
    ----------
    model : MLP
        Architecture, initial weights w0 and initial masks.
    X, y : training data; X_test, y_test : optional held-out data.
    schedule : Schedule, optional
        Round r applies its r-th step (relative: a fraction of the alive;
        absolute: a sparsity of the original sizes). Default
        ``geometric(alpha, rounds)`` (keywords ``rounds=10``, ``alpha=0.2``).
    pruning : PruneSpec, optional
        Rule, names (empty: the weight matrices), scope, rate multipliers,
        rounding, Hessian method, score options, layer collapse (Frankle and
        Carbin prune the output layer at half the rate: ``rate_multipliers=
        {"layers.<L-1>.weight": 0.5}``). Its fields may instead be given as keywords.
    train_config : TrainConfig, optional
    rewind : "init", "step:K", "lr", "finetune", or a ``Rewind``
    controls : Controls, or a subset of ("reinit", "random_masks", "one_shot")
        With a plain sequence, the keywords ``reinit_seed=1`` and ``mask_seed=2``
        give the seeds.
    score_seed : int >= 0
        ``make_rng(score_seed)`` feeds the rules that draw ("random"), continued
        round after round.
    weights_format : {"hex", "float", "none"}
        How the weights right after rewinding are stored in the trace.
    progress : callable, optional
        ``progress(kind, record)`` after every round (kind "imp") and every
        control run (kind = the control's name); the record has an ``elapsed`` entry.
    observe : callable, optional
        ``observe(kind, round, net)`` with the trained network, right after the
        record of each round (kind "imp") and each control run, for measurements
        the trace does not hold (e.g. per-example losses). It must not modify ``net``.
    **keywords
        ``rounds``, ``alpha``, the fields of ``PruneSpec`` and the seeds of
        ``Controls``, as flat keywords.

    Returns
    -------
    LotteryResult
    """
    (X, y, X_test, y_test), schedule, pruning, cfg, rw, controls, score_seed = _check_imp(
        model,
        X,
        y,
        X_test,
        y_test,
        schedule,
        pruning,
        train_config,
        rewind,
        controls,
        score_seed,
        weights_format,
        progress,
        observe,
        dict(keywords),
    )
    names = list(pruning.names)
    trace = _trace_header(
        model, X, X_test, schedule, pruning, rw, cfg, score_seed, controls, weights_format
    )
    dense_density = model.density(names)
    rec = _Recorder(
        trace,
        names,
        (X, y, X_test, y_test),
        [dense_density, *pruning.target_densities(model, schedule)],
        [dense_density, *schedule.densities()],
        weights_format,
        progress,
        observe,
    )
    trainer = _Trainer(X, y, cfg, rw)
    net = model.copy()
    w0 = _copy(net.params)
    w_k: dict[str, np.ndarray] = {}  # filled in round 0 when rewinding to a step K
    steps = trainer.run(net, "full", callback=_snapshot_at(rw, w_k))
    rewind_to = {"init": w0, "step": w_k}.get(rw.mode)
    dense, masks = _copy(net.params), [_copy(net.masks)]
    rec.add("imp", 0, net, w0, steps)
    score_rng = make_rng(score_seed)
    for r in range(1, len(schedule) + 1):
        pruning.apply(net, pruning.scores(net, X, y, score_rng), schedule, r - 1)
        if rewind_to is not None:
            rewind_weights(net, rewind_to)
        start = _copy(net.params)
        masks.append(_copy(net.masks))
        steps = trainer.run(net, _SEGMENTS[rw.mode])
        rec.add("imp", r, net, start, steps)
    result = LotteryResult(trace, net, masks, w0, rewind_to, dense)
    run_controls(model, result, controls, pruning, trainer, rec, score_seed)
    return result


def _snapshot_at(rw: Rewind, into: dict[str, np.ndarray]) -> Callable[[int, MLP], None]:
    """Training callback that copies the parameters w_K into ``into`` (late rewinding)."""

    def grab(t: int, m: MLP) -> None:
        if rw.mode == "step" and t == rw.step:
            into.update(_copy(m.params))

    return grab


def run_controls(
    model: MLP,
    result: LotteryResult,
    controls: Controls,
    pruning: PruneSpec,
    trainer: _Trainer,
    rec: _Recorder,
    score_seed: int,
) -> None:
    """Train and record each control of ``controls`` for rounds 1 .. R of ``result``.

    Each run starts from the network the control builds for round r (below),
    is trained as round r is (late rewinding: updates K .. T-1; every other
    mode: the full schedule from step 0, as "lr" and "finetune" keep no
    earlier weights) and recorded under ``trace["controls"][name]``.

    * ``"reinit"``: round r's masks on fresh weights ``reinit_like(model,
      reinit_seed)`` (the same fresh draw in every round);
    * ``"random_masks"``: round r's exact alive count per pruned parameter,
      placed at random (``random_masks_like`` with one generator
      ``make_rng(mask_seed)`` continued round after round), on the rewind
      weights (w0 for "init", "lr" and "finetune"; w_K for "step:K");
    * ``"one_shot"``: a single pruning step from the dense trained network
      (round 0's result, scored once) to round r's alive counts (per parameter
      in layer scope; the pool count in global scope), on the same rewind weights.
    """
    segment = "resume" if trainer.rw.mode == "step" else "full"
    for name in controls.names:
        start_of = _CONTROLS[name](model, result, controls, pruning, trainer, score_seed)
        for r in range(1, len(result.masks)):
            net = start_of(r)
            start = _copy(net.params)
            steps = trainer.run(net, segment)
            rec.add(name, r, net, start, steps)


def _rewound(result: LotteryResult) -> dict[str, np.ndarray]:
    return result.init_params if result.rewind_params is None else result.rewind_params


def _reinit_control(
    model: MLP,
    result: LotteryResult,
    controls: Controls,
    pruning: PruneSpec,
    trainer: _Trainer,
    score_seed: int,
) -> Callable[[int], MLP]:
    fresh = reinit_like(model, controls.reinit_seed)

    def start_of(r: int) -> MLP:
        net = model.copy()
        net.load_state_dict({"params": fresh, "masks": result.masks[r]})
        return net

    return start_of


def _random_masks_control(
    model: MLP,
    result: LotteryResult,
    controls: Controls,
    pruning: PruneSpec,
    trainer: _Trainer,
    score_seed: int,
) -> Callable[[int], MLP]:
    rng = make_rng(controls.mask_seed)

    def start_of(r: int) -> MLP:
        net = model.copy()
        masks = random_masks_like(result.masks[r], pruning.names, rng)
        net.load_state_dict({"params": _rewound(result), "masks": masks})
        return net

    return start_of


def _one_shot_control(
    model: MLP,
    result: LotteryResult,
    controls: Controls,
    pruning: PruneSpec,
    trainer: _Trainer,
    score_seed: int,
) -> Callable[[int], MLP]:
    dense = model.copy()
    dense.load_state_dict({"params": result.dense_params})
    scores = pruning.scores(dense, trainer.X, trainer.y, make_rng(score_seed))

    def start_of(r: int) -> MLP:
        net = model.copy()
        net.load_state_dict({"params": result.dense_params})
        targets = [
            sum(int(result.masks[r][g].sum()) for g in group.names) for group in pruning.groups()
        ]
        pruning.prune_to_counts(net, scores, targets)
        rewind_weights(net, _rewound(result))
        return net

    return start_of


_CONTROLS = {
    "reinit": _reinit_control,
    "random_masks": _random_masks_control,
    "one_shot": _one_shot_control,
}


# ---------------------------------------------------------------- gradual pruning
@dataclass
class GradualResult:
    """What ``train_gradual`` returns: the trained model and a JSON-ready trace."""

    model: MLP
    trace: dict[str, Any]

    def to_json(self, path: str | None = None, *, indent: int | None = None) -> str:
        """The trace as JSON text; also written to ``path`` when given."""
        return _dump(self.trace, path, indent)


def train_gradual(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    schedule: Schedule,
    *,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    pruning: PruneSpec | None = None,
    train_config: TrainConfig | None = None,
    score_seed: int = 0,
    **keywords: Any,
) -> GradualResult:
    """Prune during one training run, following ``schedule`` (Zhu and Gupta 2017).

    ``schedule.steps`` count updates: step j is applied when the training
    callback reports t = steps[j] updates done (t = 0: before the first
    update), with scores of the current weights (``compute_scores``, higher =
    kept) and ``PruneSpec.apply`` (relative: a fraction of the alive;
    absolute, e.g. ``cubic``: the target sparsity of the original sizes).
    Pruned weights become 0.0 and every later update is masked; the momentum
    buffer is kept (pruned entries never use it again). A copy of ``model`` is
    trained; ``model`` is untouched.

    Zhu and Gupta, "To prune, or not to prune: exploring the efficacy of
    pruning for model compression", arXiv:1710.01878, 2017.

    Parameters
    ----------
    pruning : PruneSpec, optional
        What each step prunes, as in ``run_imp``; its fields may instead be
        given as keywords (``rule=``, ``scope=``, ...).
    train_config : TrainConfig, optional
    score_seed : int >= 0
        ``make_rng(score_seed)`` feeds the rules that draw, continued step after step.

    Returns
    -------
    GradualResult
        ``trace["steps"]``: per pruning step, its index, update count, target
        sparsity (``target_sparsity``: multipliers applied, ``PruneSpec.target_densities``;
        ``schedule_sparsity``: the schedule's own), alive counts, density and mask
        checksums; ``trace["final"]``:
        density, train and test loss, accuracy, per-class test accuracy.
    """
    X, y, X_test, y_test = _check_data(model, X, y, X_test, y_test)
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a refprune Schedule, got {type(schedule).__name__}")
    spec = _pruning_spec(model, pruning, keywords)
    if keywords:
        raise TypeError(f"train_gradual() got unexpected keyword arguments {sorted(keywords)}")
    cfg = TrainConfig() if train_config is None else train_config
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(cfg).__name__}")
    total = cfg.epochs * cfg.steps_per_epoch(X.shape[0])
    if len(schedule) and schedule.steps[-1] > total:
        raise ValueError(
            f"schedule steps must be <= the number of updates ({total}), got {schedule.steps[-1]}"
        )
    score_seed = positive_int(score_seed, "score_seed", minimum=0)
    score_rng = make_rng(score_seed)
    names = list(spec.names)
    targets = schedule.sparsities()
    applied = [1.0 - d for d in spec.target_densities(model, schedule)]
    net = model.copy()
    records: list[dict[str, Any]] = []
    pending = list(range(len(schedule)))

    def on_step(t: int, m: MLP) -> None:
        while pending and schedule.steps[pending[0]] == t:
            j = pending.pop(0)
            spec.apply(m, spec.scores(m, X, y, score_rng), schedule, j)
            records.append(
                {
                    "index": j,
                    "step": t,
                    "target_sparsity": applied[j],
                    "schedule_sparsity": targets[j],
                    "density": m.density(names),
                    "alive": {n: int(m.masks[n].sum()) for n in names},
                    "mask_sha256": {n: mask_sha256(m.masks[n]) for n in names},
                }
            )

    train(
        net,
        X,
        y,
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        lr_schedule=cfg.lr_schedule,
        seed=cfg.seed,
        callback=on_step,
    )
    tr = evaluate(net, X, y)
    te = None if X_test is None or y_test is None else evaluate(net, X_test, y_test)
    trace = {
        "format": "refprune.gradual-trace",
        "version": TRACE_VERSION,
        "config": {
            "schedule": schedule.to_dict(),
            "pruning": spec.to_dict(),
            "train": cfg.to_dict(),
            "score_seed": score_seed,
            "mask_checksum": MASK_CHECKSUM,
        },
        "steps": records,
        "final": {
            "density": net.density(names),
            "train_loss": tr["loss"],
            "train_accuracy": tr["accuracy"],
            "test_loss": None if te is None else te["loss"],
            "test_accuracy": None if te is None else te["accuracy"],
            "per_class_test_accuracy": None if te is None else te["per_class_accuracy"],
        },
    }
    return GradualResult(net, trace)


__all__ = [
    "Rewind",
    "StepDecayLR",
    "TrainConfig",
    "PruneSpec",
    "LotteryResult",
    "GradualResult",
    "REWIND_MODES",
    "CONTROLS",
    "mask_sha256",
    "encode_array",
    "decode_array",
    "random_masks_like",
    "reinit_like",
    "rewind_weights",
    "evaluate",
    "imp_round",
    "run_imp",
    "run_controls",
    "Controls",
    "train_gradual",
]
