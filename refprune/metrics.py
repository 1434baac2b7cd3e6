"""What pruning costs beyond average accuracy: which classes pay, and what the model leaks.

1. **Fairness: per-class accuracy.** A pruned network can keep its average
   test accuracy while a few classes lose much more than the rest (Hooker,
   Courville, Clark, Dauphin and Frome, "What Do Compressed Deep Neural
   Networks Forget?", arXiv:1911.05248, 2019). ``per_class_accuracy`` is the
   accuracy on the rows of each class (the class's recall) and
   ``class_excess_drop`` the part of a class's drop that the average drop
   does not explain.

2. **Privacy: membership inference by a loss threshold.** A model that fits
   its training rows better than unseen rows tells an attacker which rows it
   was trained on. The attack of Yeom, Giacomelli, Fredrikson and Jha
   ("Privacy Risk in Machine Learning: Analyzing the Connection to
   Overfitting", IEEE CSF 2018) says "member" when the loss of a row is below
   a threshold; its advantage is TPR - FPR. ``membership_advantage`` chooses
   the threshold on one half of the members and non-members and measures the
   advantage on the other half.

Conventions: float64; an empty class gives ``None``; every random split comes
from ``refprune.rng.make_rng`` in the documented order; the one tie rule of
the threshold choice is "the smallest threshold among the best".
Specification: ``docs/sweeps.md`` (section "What is measured").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from ._checks import float_array, int_labels, positive_int, real_number
from .activations import softmax_parts
from .masks import fraction_to_count
from .mlp import MLP, check_model
from .rng import make_rng


# ---------------------------------------------------------------- fairness
def per_class_accuracy(predictions: Any, labels: Any, n_classes: int) -> list[float | None]:
    """Accuracy on the rows of each class: a_c = #{i: y_i = c, p_i = c} / #{i: y_i = c}.

    This is the recall of class c (Hooker et al. 2019 compare it between a
    dense and a pruned model). ``None`` for a class with no row. Higher = better.

    Parameters
    ----------
    predictions, labels : int arrays (m,) with values in [0, K)
    n_classes : int K >= 1

    Returns
    -------
    list of K floats (or None)
    """
    k = positive_int(n_classes, "n_classes")
    p = int_labels(predictions, "predictions", n_classes=k)
    y = int_labels(labels, "labels", n_classes=k)
    if p.shape != y.shape:
        raise ValueError(
            f"predictions and labels must have the same length, got {p.shape[0]} and {y.shape[0]}"
        )
    hit = p == y
    return [float(np.mean(hit[y == c])) if np.any(y == c) else None for c in range(k)]


def class_excess_drop(
    dense_per_class: Sequence[float | None],
    pruned_per_class: Sequence[float | None],
    dense_accuracy: float,
    pruned_accuracy: float,
) -> list[float | None]:
    """How much more class c loses than the whole test set: e_c = (a_c - a'_c) - (a - a').

    a_c, a'_c are the dense and pruned accuracies on class c, a, a' the overall
    ones. e_c > 0: the class pays more than the average (in accuracy points
    / 100); e_c < 0: less. Weighted by the class frequencies n_c / n the e_c sum
    to 0, since a = sum_c (n_c / n) a_c. ``None`` where a class accuracy is None.

    In the spirit of Hooker et al. 2019, who compare each class's change with
    the change of the overall accuracy; they use relative changes and a t-test
    over many models, here the absolute difference is reported per seed.

    Parameters
    ----------
    dense_per_class, pruned_per_class : sequences of K floats in [0, 1] (or None)
    dense_accuracy, pruned_accuracy : floats in [0, 1]
    """
    if len(dense_per_class) != len(pruned_per_class):
        raise ValueError(
            f"dense_per_class and pruned_per_class must have the same length, "
            f"got {len(dense_per_class)} and {len(pruned_per_class)}"
        )
    drop = real_number(dense_accuracy, "dense_accuracy", low=0.0, high=1.0) - real_number(
        pruned_accuracy, "pruned_accuracy", low=0.0, high=1.0
    )
    return [
        None if a is None or b is None else (a - b) - drop
        for a, b in zip(dense_per_class, pruned_per_class)
    ]


# ---------------------------------------------------------------- privacy
def per_example_loss(model: MLP, X: Any, y: Any) -> np.ndarray:
    """Cross-entropy of each row: l_i = log(sum_k exp(z_ik)) - z_{i, y_i}, z = f(x_i).

    log softmax comes from ``refprune.activations.softmax_parts``, as in
    ``refprune.autograd.cross_entropy``, so the mean of the result is the
    model's mean loss. Lower = better fit. Only for cross-entropy models.
    """
    check_model(model)
    if model.loss != "cross_entropy":
        raise ValueError(f"per_example_loss needs a cross_entropy model, got loss {model.loss!r}")
    X, y = model.check_inputs(X, y)
    logp, _, _ = softmax_parts(model._forward(X))
    return cast(np.ndarray, -logp[np.arange(X.shape[0]), y])


def _losses(x: Any, name: str) -> np.ndarray:
    a = float_array(x, name, ndim=1)
    if a.size == 0:
        raise ValueError(f"{name} must hold at least one loss, got an empty array")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return a


def threshold_advantage(
    member_losses: Any, nonmember_losses: Any, threshold: float
) -> tuple[float, float, float]:
    """Advantage of the attack "member iff loss < threshold": (TPR - FPR, TPR, FPR).

    TPR = #{members with l < t} / #members, FPR = #{non-members with l < t} /
    #non-members; the advantage lies in [-1, 1], 0 for an attack that learns
    nothing. ``threshold`` may be -inf (nobody is called a member) or +inf
    (everybody is). Yeom et al., IEEE CSF 2018.
    """
    m = _losses(member_losses, "member_losses")
    n = _losses(nonmember_losses, "nonmember_losses")
    t = float(threshold)
    if np.isnan(t):
        raise ValueError("threshold must not be NaN")
    tpr = np.count_nonzero(m < t) / m.size
    fpr = np.count_nonzero(n < t) / n.size
    return tpr - fpr, tpr, fpr


def candidate_thresholds(member_losses: Any, nonmember_losses: Any) -> np.ndarray:
    """Every threshold that splits the pooled losses differently, in increasing order.

    With u_1 < ... < u_k the distinct pooled losses: -inf, one threshold t_j
    in (u_j, u_{j+1}] for each j, and +inf. Any other threshold gives the same
    counts as one of these ("l < t" counts the losses <= u_j for every t in
    that interval). t_j is the midpoint (u_j + u_{j+1}) / 2 where it rounds
    into the interval, else u_{j+1} (adjacent floats, such as 0 and 5e-324,
    whose midpoint rounds to u_j; or a sum that overflows).
    """
    u = np.unique(
        np.concatenate(
            [_losses(member_losses, "member_losses"), _losses(nonmember_losses, "nonmember_losses")]
        )
    )
    with np.errstate(over="ignore"):
        mid = (u[:-1] + u[1:]) / 2.0
    mid = np.where((u[:-1] < mid) & (mid <= u[1:]), mid, u[1:])
    return np.concatenate([[-np.inf], mid, [np.inf]])


def best_threshold(member_losses: Any, nonmember_losses: Any) -> tuple[float, float]:
    """The threshold with the largest advantage on these losses, and that advantage.

    t* = argmax over ``candidate_thresholds`` of TPR(t) - FPR(t); among equal
    advantages the smallest t. The advantage is >= 0 (t = -inf gives 0).
    This loop is the definition; ``_best_threshold_fast`` computes the same by
    sorting and is what ``membership_advantage`` calls.
    """
    best_t, best_a = -np.inf, -2.0
    for t in candidate_thresholds(member_losses, nonmember_losses):
        a = threshold_advantage(member_losses, nonmember_losses, t)[0]
        if a > best_a:
            best_t, best_a = float(t), a
    return best_t, best_a


def _best_threshold_fast(member_losses: Any, nonmember_losses: Any) -> tuple[float, float]:
    """``best_threshold`` in O((m + n) log(m + n)): counts below each candidate by binary search."""
    m = _losses(member_losses, "member_losses")
    n = _losses(nonmember_losses, "nonmember_losses")
    t = candidate_thresholds(m, n)
    adv = (
        np.searchsorted(np.sort(m), t, side="left") / m.size
        - np.searchsorted(np.sort(n), t, side="left") / n.size
    )
    j = int(np.argmax(adv))  # first maximum = smallest threshold
    return float(t[j]), float(adv[j])


@dataclass(frozen=True)
class MembershipResult:
    """What ``membership_advantage`` returns.

    advantage, tpr, fpr : the attack on the evaluation halves (TPR - FPR, TPR, FPR).
    threshold : chosen on the calibration halves (-inf or +inf possible).
    calibration_advantage : the advantage of that threshold on the calibration halves (>= 0).
    n_calibration, n_evaluation : (members, non-members) in each half.
    """

    advantage: float
    tpr: float
    fpr: float
    threshold: float
    calibration_advantage: float
    n_calibration: tuple[int, int]
    n_evaluation: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; an infinite threshold becomes None."""
        return {
            "advantage": self.advantage,
            "tpr": self.tpr,
            "fpr": self.fpr,
            "threshold": self.threshold if np.isfinite(self.threshold) else None,
            "calibration_advantage": self.calibration_advantage,
            "n_calibration": list(self.n_calibration),
            "n_evaluation": list(self.n_evaluation),
        }


def membership_split(
    n_members: int,
    n_nonmembers: int,
    *,
    calibration_fraction: float = 0.5,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, ...]:
    """Row indices of the calibration and evaluation halves of members and non-members.

    Draws, in order: ``perm_m = rng.permutation(n_members)``, ``perm_n =
    rng.permutation(n_nonmembers)`` (rng = ``make_rng(seed)``). The first
    ``fraction_to_count(calibration_fraction, n)`` entries of each permutation
    calibrate, the rest evaluate. Returns (members_cal, members_eval,
    nonmembers_cal, nonmembers_eval); each half must be non-empty.
    """
    nm = positive_int(n_members, "n_members", minimum=2)
    nn = positive_int(n_nonmembers, "n_nonmembers", minimum=2)
    f = real_number(
        calibration_fraction,
        "calibration_fraction",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    rng = make_rng(seed)
    perm_m, perm_n = rng.permutation(nm), rng.permutation(nn)
    km, kn = fraction_to_count(f, nm), fraction_to_count(f, nn)
    if not (0 < km < nm and 0 < kn < nn):
        raise ValueError(
            f"calibration_fraction {f} leaves an empty half of {nm} members or {nn} non-members"
        )
    return perm_m[:km], perm_m[km:], perm_n[:kn], perm_n[kn:]


def membership_advantage(
    member_losses: Any,
    nonmember_losses: Any,
    *,
    calibration_fraction: float = 0.5,
    seed: int | np.random.Generator = 0,
) -> MembershipResult:
    """Membership advantage of the loss-threshold attack, its threshold chosen on held-out halves.

    Members are the training rows, non-members rows the model never saw.
    Split both (``membership_split``); on the calibration halves choose
    t* = ``best_threshold``; report TPR - FPR of "member iff loss < t*" on the
    evaluation halves. Choosing and measuring on different rows keeps the
    estimate honest: on the calibration rows the best threshold always shows
    an advantage >= 0, even for a model that leaks nothing.

    Yeom, Giacomelli, Fredrikson and Jha, "Privacy Risk in Machine Learning:
    Analyzing the Connection to Overfitting", IEEE CSF 2018 (advantage =
    TPR - FPR of the membership experiment; the loss-threshold adversary).

    Parameters
    ----------
    member_losses, nonmember_losses : float arrays of per-row losses (``per_example_loss``)
    calibration_fraction : float in (0, 1)
    seed : int or Generator, for the split

    Returns
    -------
    MembershipResult
    """
    m = _losses(member_losses, "member_losses")
    n = _losses(nonmember_losses, "nonmember_losses")
    mc, me, nc, ne = membership_split(
        m.size, n.size, calibration_fraction=calibration_fraction, seed=seed
    )
    t, cal = _best_threshold_fast(m[mc], n[nc])
    adv, tpr, fpr = threshold_advantage(m[me], n[ne], t)
    return MembershipResult(adv, tpr, fpr, t, cal, (mc.size, nc.size), (me.size, ne.size))


__all__ = [
    "MembershipResult",
    "best_threshold",
    "candidate_thresholds",
    "class_excess_drop",
    "membership_advantage",
    "membership_split",
    "per_class_accuracy",
    "per_example_loss",
    "threshold_advantage",
]
