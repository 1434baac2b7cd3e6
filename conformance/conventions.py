"""Convention profiles: how popular pruning libraries turn scores into masks.

Libraries that all say "prune 20% of the smallest weights" disagree on the
details: what the 20% is a fraction of, how the count is rounded and in which
precision, what happens at ties, whether an already-pruned weight can come
back. A backend that matches one library will not match another, so the
conformance suite checks it against the *profile* it claims. Each profile
below reproduces what the library's code does, arithmetic precision included,
and cites the file and commit each rule comes from (``Profile.citations``;
the same table is in ``docs/profiles.md``).

Profiles
--------
``reference``
    This project's conventions (``refprune.masks``): prune
    ``fraction_to_count(fraction, n_alive)`` of the alive weights, keep the
    highest scores, equal scores -> lower flat C-order index kept.
``torch``
    ``torch.nn.utils.prune`` (``l1_unstructured``, ``global_unstructured``):
    prune ``round(amount * n_alive)`` (Python float64, round-half-even), an
    integer amount is a count, ranking by ``|score|``, ties unspecified.
``tfmot``
    TensorFlow Model Optimization ``prune_low_magnitude``: keep
    ``k = max(round(float32(n) * (1 - float32(s))), 1)`` in float32, keep
    every ``|w| >= k-th largest |w|`` (ties kept), recomputed from the masked
    weights of the whole tensor.
``open-lth``
    ``open_lth`` ``sparse_global``: ``m = ceil(fraction * n_alive)`` (alive
    counted over every prunable tensor, ignored ones included), threshold =
    ``sort(|w_alive|)[m]``, keep ``|w| > threshold``: at least m + 1 go.
``shrinkbench``
    ShrinkBench ``GlobalMagWeight`` / ``LayerMagWeight``: the fraction is the
    fraction *kept*, threshold = ``np.quantile(|w|, 1 - fraction)`` (linear
    interpolation), keep ``|w| >= threshold``; biases are pruned too.

Higher score = more important = kept, in every profile. The four library
profiles rank by ``|score|`` because each library takes the absolute value of
whatever it ranks; for the non-negative scores refprune produces this changes
nothing.

Inputs and outputs
------------------
``Profile.keep_masks(scores, amount, alive=None, scope="layer", ignore=())``
takes either one score array or a mapping ``name -> array`` (ordered: global
scope concatenates the tensors in this order, each in flat C order), an
optional mapping of boolean "alive" masks (the current mask; all True when
omitted), and the names of tensors that are carried along but not pruned.
It returns boolean keep-masks of the same structure; ``keep_mask`` does the
same for one array. ``count(amount, n)`` is the integer the library derives
from its amount, and ``masks_match``/``mask_mismatch`` compare a backend's
mask with the profile's (up to ties where the library's ties are
unspecified). Score arrays keep their floating dtype: pass float32 scores to
reproduce a float32 library bit for bit (comparisons and quantiles happen in
the scores' dtype, as in the library).
"""

from __future__ import annotations

import decimal
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any, cast

import numpy as np

from refprune.masks import SCOPES, fraction_to_count, keep_top_k, select_masks

__all__ = [
    "Citation",
    "Profile",
    "PROFILES",
    "get_profile",
    "reference_profile",
    "equal_up_to_ties",
    "tie_mismatch",
    "torch_nparams_toprune",
    "tfmot_keep_count",
    "open_lth_prune_count",
    "shrinkbench_threshold",
    "shrinkbench_fraction_to_keep",
    "tfmot_constant_sparsity",
    "tfmot_polynomial_decay",
    "tfmot_should_prune",
    "TFMOT_EXECUTIONS",
    "tfmot_polynomial_decay_keep_count",
]

Scores = np.ndarray | Mapping[str, Any]

# The source each rule was read from. Commits are the exact revisions read.
TORCH_REPO, TORCH_COMMIT = "pytorch/pytorch", "03459473c0ec8fea0afc2b32d0d5f45346c2a072"
TORCH_PRUNE = "torch/nn/utils/prune.py"
TFMOT_REPO, TFMOT_COMMIT = (
    "tensorflow/model-optimization",
    "6fbc2cec3984877251aa6ce961aceb7049cf2b25",
)
TFMOT_DIR = "tensorflow_model_optimization/python/core/sparsity/keras/"
OPEN_LTH_REPO, OPEN_LTH_COMMIT = (
    "facebookresearch/open_lth",
    "2ce732fe48abd5a80c10a153c45d397b048e980c",
)
SHRINKBENCH_REPO, SHRINKBENCH_COMMIT = (
    "JJGO/shrinkbench",
    "b24497451b6815a4dbdf2ded7b10c264805e772b",
)
NUMPY_REPO, NUMPY_COMMIT = "numpy/numpy", "4a71101d40a9b04a7405dbfa3a443a2d449f2291"


@dataclass(frozen=True)
class Citation:
    """Where a profile rule comes from: repository, file, commit and symbol."""

    rule: str
    repo: str
    path: str
    commit: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.repo}@{self.commit[:12]}:{self.path} ({self.symbol}): {self.rule}"


# ----------------------------------------------------------------------------
# Argument checks (at the public boundary only)
# ----------------------------------------------------------------------------


def _check_real(
    x: Any, name: str, low: float, high: float, *, high_open: bool = False, low_open: bool = False
) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    v = float(x)
    bad = (
        not math.isfinite(v)
        or (v <= low if low_open else v < low)
        or (v >= high if high_open else v > high)
    )
    if bad:
        raise ValueError(
            f"{name} must be in {'(' if low_open else '['}{low}, {high}"
            f"{')' if high_open else ']'}, got {x}"
        )
    return v


def _check_count_n(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return int(n)


def _score_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be a float array, got {type(x).__name__}")
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return np.array(arr, copy=True)


def _bool_array(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr.copy()


@dataclass
class _Tensors:
    """Scores, alive masks and prunable flags of an ordered set of tensors."""

    names: list[str]
    scores: list[np.ndarray]
    alive: list[np.ndarray]
    prunable: list[bool]
    single: bool

    def pack(self, masks: Sequence[np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
        if self.single:
            return masks[0]
        return {name: m for name, m in zip(self.names, masks)}


def _tensors(scores: Scores, alive: Any, ignore: Any) -> _Tensors:
    """Validate ``scores``/``alive``/``ignore`` and return them as aligned lists."""
    single = not isinstance(scores, Mapping)
    if single:
        names, raw = [""], [scores]
    else:
        by_name = cast(Mapping[str, Any], scores)
        names, raw = list(by_name.keys()), list(by_name.values())
        if not names:
            raise ValueError("scores must hold at least one tensor, got an empty mapping")
        for k in names:
            if not isinstance(k, str):
                raise TypeError(
                    f"scores keys must be parameter names (str), got {type(k).__name__}"
                )
    arrays = [_score_array(a, "scores" if single else f"scores[{k!r}]") for k, a in zip(names, raw)]
    if alive is None:
        alive_list = [np.ones(a.shape, dtype=bool) for a in arrays]
    elif single:
        if isinstance(alive, Mapping):
            raise TypeError("alive must be a boolean array when scores is an array, got a mapping")
        alive_list = [_bool_array(alive, "alive", arrays[0].shape)]
    else:
        if not isinstance(alive, Mapping):
            raise TypeError(
                f"alive must be a mapping name -> boolean array when scores is a "
                f"mapping, got {type(alive).__name__}"
            )
        if set(alive) != set(names):
            raise ValueError(
                f"alive must have the same names as scores; missing "
                f"{sorted(set(names) - set(alive))}, extra {sorted(set(alive) - set(names))}"
            )
        alive_list = [
            _bool_array(alive[k], f"alive[{k!r}]", a.shape) for k, a in zip(names, arrays)
        ]
    if isinstance(ignore, str):
        raise TypeError("ignore must be a collection of names, got a single string")
    ignored = set(ignore)
    if single and ignored:
        raise ValueError("ignore names tensors of a mapping; scores is a single array")
    unknown = ignored - set(names)
    if unknown:
        raise ValueError(f"ignore names unknown tensors {sorted(unknown)}; known: {names}")
    prunable = [k not in ignored for k in names]
    if not any(prunable):
        raise ValueError("every tensor is in ignore; nothing is left to prune")
    return _Tensors(names, arrays, alive_list, prunable, single)


def _magnitudes(t: _Tensors, masked: bool) -> list[np.ndarray]:
    """|score| per tensor, in the score's dtype; 0 where not alive when ``masked``.

    ``masked`` reproduces libraries that rank the masked weights w * m (a
    pruned weight reads as exactly 0.0) instead of excluding pruned entries.
    """
    mags = [np.abs(s) for s in t.scores]
    if masked:
        mags = [np.where(a, m, np.zeros((), dtype=m.dtype)) for m, a in zip(mags, t.alive)]
    return mags


def _keep_top_among_alive(
    values: list[np.ndarray], alive: list[np.ndarray], k: int
) -> list[np.ndarray]:
    """Keep the k highest alive values across tensors (concatenated in order).

    Ties follow ``refprune.masks.keep_top_k``: the lower flat index in the
    concatenation of the alive entries is kept.
    """
    flat = np.concatenate([v[a] for v, a in zip(values, alive)]) if values else np.empty(0)
    keep_flat = keep_top_k(flat.astype(np.float64), k)
    out, start = [], 0
    for v, a in zip(values, alive):
        m = np.zeros(v.shape, dtype=bool)
        n = int(a.sum())
        m[a] = keep_flat[start : start + n]
        start += n
        out.append(m)
    return out


def _groups(t: _Tensors, scope: str) -> list[list[int]]:
    """Indices of the prunable tensors selected together: one group per tensor, or one."""
    idx = [i for i, p in enumerate(t.prunable) if p]
    return [idx] if scope == "global" else [[i] for i in idx]


# ----------------------------------------------------------------------------
# reference
# ----------------------------------------------------------------------------


def _reference_select(rounding: str):
    def select(t: _Tensors, amount: Any, scope: str) -> list[np.ndarray]:
        """``refprune.masks.select_masks`` on the prunable tensors; the others stay as they are."""
        names = [f"t{i}" for i, p in enumerate(t.prunable) if p]
        idx = [i for i, p in enumerate(t.prunable) if p]
        new = select_masks(
            {n: t.scores[i] for n, i in zip(names, idx)},
            {n: t.alive[i] for n, i in zip(names, idx)},
            amount,
            scope=scope,
            rounding=rounding,
        )
        out = [a.copy() for a in t.alive]
        for n, i in zip(names, idx):
            out[i] = new[n]
        return out

    return select


# ----------------------------------------------------------------------------
# torch.nn.utils.prune
# ----------------------------------------------------------------------------


def _torch_amount(amount: Any) -> int | float:
    """``_validate_pruning_amount_init``: an Integral >= 0 is a count, a Real in [0, 1] a fraction."""
    if isinstance(amount, bool):
        raise TypeError("amount must be an int (a count) or a float (a fraction), got bool")
    if isinstance(amount, numbers.Integral):
        if amount < 0:
            raise ValueError(
                f"amount must be a non-negative integer or a float in [0, 1], got {amount}"
            )
        return cast(int, amount)
    if not isinstance(amount, numbers.Real):
        raise TypeError(
            f"amount must be an int (a count) or a float (a fraction), got {type(amount).__name__}"
        )
    if not (0.0 <= float(amount) <= 1.0):
        raise ValueError(
            f"amount must be a non-negative integer or a float in [0, 1], got {amount}"
        )
    return cast(float, amount)


def torch_nparams_toprune(amount: int | float, n_alive: int) -> int:
    """Number of weights ``torch.nn.utils.prune`` prunes from ``n_alive`` alive ones.

    n_prune = amount if amount is an integer, else round(amount * n_alive),
    with ``amount * n_alive`` a Python (float64) product and ``round`` Python's
    round-half-even: ``round(0.25 * 10) == 2``, ``round(0.35 * 10) == 4``.
    An integer amount larger than ``n_alive`` is refused, as torch refuses it.

    torch/nn/utils/prune.py, ``_compute_nparams_toprune`` and
    ``_validate_pruning_amount`` (pytorch/pytorch@03459473c0ec).

    Parameters
    ----------
    amount : int >= 0 (a count) or float in [0, 1] (a fraction of the alive weights)
    n_alive : int >= 0, the number of weights still alive in the pruned scope

    Returns
    -------
    int in [0, n_alive]
    """
    amount = _torch_amount(amount)
    n_alive = _check_count_n(n_alive, "n_alive")
    if isinstance(amount, numbers.Integral):
        if amount > n_alive:
            raise ValueError(
                f"amount={amount} is a count larger than the number of alive "
                f"weights {n_alive}; torch refuses it"
            )
        return int(amount)
    return int(round(amount * n_alive))


def _torch_select(t: _Tensors, amount: Any, scope: str) -> list[np.ndarray]:
    """L1Unstructured / global_unstructured on the alive slice (PruningContainer)."""
    amount = _torch_amount(amount)
    mags = _magnitudes(t, masked=False)
    out = [a.copy() for a in t.alive]
    for group in _groups(t, scope):
        n_alive = sum(int(t.alive[i].sum()) for i in group)
        n_prune = torch_nparams_toprune(amount, n_alive)
        masks = _keep_top_among_alive(
            [mags[i] for i in group], [t.alive[i] for i in group], n_alive - n_prune
        )
        for i, m in zip(group, masks):
            out[i] = m
    return out


def _torch_count(amount: Any, n: int) -> int:
    return torch_nparams_toprune(amount, n)


# ----------------------------------------------------------------------------
# TensorFlow Model Optimization
# ----------------------------------------------------------------------------


def _tfmot_sparsity(sparsity: Any) -> np.float32:
    """The sparsity as ``_update_mask`` sees it: a float32 tensor.

    A Python float is checked as the schedules check it (0 <= s < 1,
    ``_validate_sparsity``) and then rounded to float32, which may give 1.0f
    for s just below 1 (k is then 1). A NumPy float32 (the output of
    ``tfmot_polynomial_decay``) is used as it is.
    """
    if isinstance(sparsity, np.float32):
        if not (np.float32(0.0) <= sparsity <= np.float32(1.0)):
            raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
        return sparsity
    return np.float32(_check_real(sparsity, "sparsity", 0.0, 1.0, high_open=True))


def tfmot_keep_count(sparsity: float | np.floating[Any], n: int) -> int:
    """Number of weights TF-MOT keeps in a tensor of ``n`` weights at ``sparsity``.

    k = max(round(float32(n) * (1 - float32(s))), 1), every operation in
    float32 (IEEE single, correctly rounded) and ``round`` half-to-even
    (``tf.math.round``). The float32 product can fall on the other side of a
    half-way point than the float64 one: n = 10, s = 0.85 gives
    10 * (1 - 0.85f) = 1.4999998f, so k = 1, where float64 gives
    1.5000000000000002 and k = 2.

    pruning_impl.py ``Pruning._update_mask``; the float32 sparsity comes from
    pruning_schedule.py (tensorflow/model-optimization@6fbc2cec3984).

    Parameters
    ----------
    sparsity : float in [0, 1) (target fraction of the whole tensor that is zero)
        A Python float is first rounded to float32, as the schedules do.
    n : int >= 1, the number of weights in the tensor (pruned ones included)

    Returns
    -------
    int in [1, n]
    """
    s = _tfmot_sparsity(sparsity)
    n = _check_count_n(n)
    if n == 0:
        raise ValueError("n must be >= 1: TF-MOT cannot take a threshold of an empty tensor")
    kf = np.round(np.float32(n) * (np.float32(1.0) - s))  # float32 throughout; half to even
    return int(max(kf, np.float32(1.0)))


def _tfmot_select(t: _Tensors, amount: Any, scope: str) -> list[np.ndarray]:
    """``_update_mask`` per tensor: threshold = k-th largest |masked w|, keep |w| >= it.

    A subnormal |w| counts as 0, as in TensorFlow, whose CPU kernels run with
    flush-to-zero and denormals-are-zero set.
    """
    if scope != "layer":
        raise ValueError("tfmot prunes each tensor on its own; scope must be 'layer', got 'global'")
    s = _tfmot_sparsity(amount)
    mags = [_flush_subnormals(m) for m in _magnitudes(t, masked=True)]
    out = [a.copy() for a in t.alive]
    for i in (i for i, p in enumerate(t.prunable) if p):
        v = mags[i]
        k = tfmot_keep_count(s, v.size)
        threshold = np.sort(v, axis=None)[v.size - k]  # top_k(values)[k - 1]
        out[i] = v >= threshold  # tf.math.greater_equal: ties kept
    return out


def _flush_subnormals(magnitudes: np.ndarray) -> np.ndarray:
    """Magnitudes below the dtype's smallest normal number read as +0.0 (FTZ/DAZ)."""
    if magnitudes.dtype.kind != "f":
        return magnitudes
    tiny = np.finfo(magnitudes.dtype).tiny
    return np.where(magnitudes < tiny, np.zeros((), dtype=magnitudes.dtype), magnitudes)


def _tfmot_count(amount: Any, n: int) -> int:
    return tfmot_keep_count(amount, n)


def tfmot_should_prune(step: int, begin_step: int, end_step: int, frequency: int) -> bool:
    """Whether a TF-MOT schedule updates the masks at ``step``.

    begin_step <= step and (step <= end_step or end_step < 0) and
    (step - begin_step) mod frequency == 0 (floor modulo).

    pruning_schedule.py ``PruningSchedule._should_prune_in_step``
    (tensorflow/model-optimization@6fbc2cec3984).
    """
    for name, v in (
        ("step", step),
        ("begin_step", begin_step),
        ("end_step", end_step),
        ("frequency", frequency),
    ):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if frequency <= 0:
        raise ValueError(f"frequency must be > 0, got {frequency}")
    in_range = step >= begin_step and (step <= end_step or end_step < 0)
    return bool(in_range and (step - begin_step) % frequency == 0)


def tfmot_constant_sparsity(target_sparsity: float) -> np.float32:
    """Sparsity of ``ConstantSparsity``: ``tf.constant(target_sparsity, tf.float32)``.

    pruning_schedule.py ``ConstantSparsity.__call__``
    (tensorflow/model-optimization@6fbc2cec3984).
    """
    return np.float32(_check_real(target_sparsity, "target_sparsity", 0.0, 1.0, high_open=True))


TFMOT_EXECUTIONS = ("graph", "eager")


def tfmot_polynomial_decay(
    step: int,
    initial_sparsity: float,
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    power: float = 3,
    *,
    execution: str = "graph",
) -> np.float32:
    """Sparsity of TF-MOT's ``PolynomialDecay`` at ``step``, in float32 as TF computes it.

    The schedule's formula is s = s_f + (s_i - s_f) * (1 - p)**power with
    p = clip((step - begin) / (end - begin), 0, 1) (Zhu and Gupta, "To prune,
    or not to prune", 2017). TF evaluates it with float32 ops, and which ops
    run depends on how the schedule is executed:

    ``execution="graph"`` (the default: ``model.fit``, any ``tf.function``;
    Grappler's default rewrites replace x / c by x * (1 / c) and pow(x, 3) by
    x * square(x), and move the constant factor into that product)::

        p = min(1, max(0, f32(step - begin) * (1 / f32(end - begin))))
        q = 1 - p
        s = (d * q) * (q * q) + f32(s_f)          if f32(power) == 3
        s = d * q**f32(power) + f32(s_f)          otherwise

    ``execution="eager"`` (``run_eagerly=True``, or calling the schedule
    outside a ``tf.function``)::

        p = min(1, max(0, f32(step - begin) / f32(end - begin)))
        s = d * (1 - p)**f32(power) + f32(s_f)

    with d = f32(s_i - s_f) (a float64 difference rounded to float32), every
    operation a correctly rounded float32 operation, evaluated in the order
    written. So the sparsity at ``begin_step`` is not always f32(s_i): for
    s_i = 0.1, s_f = 0.5 it is 0.099999994.

    ``q**y`` is the correctly rounded float32 power (``_f32_power``). TF calls
    the C library's ``powf`` there, which is within an ulp but not always
    correctly rounded: glibc's powf gives 0.1981553 for 0.583**3 where the
    exact cube rounds to 0.19815528. Graph execution with power 3 (the
    default, and Zhu and Gupta's cubic) never calls powf and is reproduced bit
    for bit; so are powers 1, 2 and 0.5 (identity, square and square root,
    which TF computes exactly rounded too). Other powers, and power 3 in eager
    execution, agree with TF wherever the platform's powf is correctly rounded.
    How this was checked against TF-MOT: ``docs/profiles.md``.

    pruning_schedule.py ``PolynomialDecay.__call__``
    (tensorflow/model-optimization@6fbc2cec3984).

    Parameters
    ----------
    step, begin_step, end_step : int, 0 <= begin_step < end_step (step may be outside)
    initial_sparsity, final_sparsity : float in [0, 1)
    power : float > 0, finite (rounded to float32, as TF does)
    execution : {"graph", "eager"}

    Returns
    -------
    numpy.float32
    """
    decayed, final = _tfmot_decay(
        step, initial_sparsity, final_sparsity, begin_step, end_step, power, execution
    )
    return np.float32(decayed + final)


def tfmot_polynomial_decay_keep_count(
    n: int,
    step: int,
    initial_sparsity: float,
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    power: float = 3,
    *,
    execution: str = "graph",
) -> int:
    """Weights TF-MOT keeps in a tensor of ``n`` weights at ``step`` of a ``PolynomialDecay``.

    Eager execution: ``tfmot_keep_count(tfmot_polynomial_decay(..., execution="eager"), n)``.
    Graph execution (``model.fit``): the schedule and the mask update are one graph, and
    Grappler folds ``1 - (m + f32(s_f))`` into ``f32(1 - f32(s_f)) - m``, where m is the
    decayed term of ``tfmot_polynomial_decay``, so

        k = max(round(f32(n) * (f32(1 - f32(s_f)) - m)), 1)

    in float32, half to even, which is not always the count of the returned sparsity (n = 64,
    0.1 -> 0.9 over steps 0..1000, step 875: TF keeps 7, the sparsity's count is 6).

    pruning_impl.py ``Pruning._update_mask``, pruning_schedule.py ``PolynomialDecay.__call__``
    (tensorflow/model-optimization@6fbc2cec3984).

    Parameters
    ----------
    n : int >= 1, the number of weights in the tensor
    step, initial_sparsity, final_sparsity, begin_step, end_step, power, execution
        As in ``tfmot_polynomial_decay``.

    Returns
    -------
    int in [1, n]
    """
    decayed, final = _tfmot_decay(
        step, initial_sparsity, final_sparsity, begin_step, end_step, power, execution
    )
    if execution == "eager":
        return tfmot_keep_count(np.float32(decayed + final), n)
    n = _check_count_n(n)
    if n == 0:
        raise ValueError("n must be >= 1: TF-MOT cannot take a threshold of an empty tensor")
    kept = np.round(np.float32(n) * ((np.float32(1.0) - final) - decayed))
    return int(max(kept, np.float32(1.0)))


def _tfmot_decay(
    step: int,
    initial_sparsity: float,
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    power: float,
    execution: str,
) -> tuple[np.float32, np.float32]:
    """The two float32 terms of ``PolynomialDecay``: (d * (1 - p)**power, f32(s_f))."""
    for name, v in (("step", step), ("begin_step", begin_step), ("end_step", end_step)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if begin_step < 0:
        raise ValueError(f"begin_step must be >= 0, got {begin_step}")
    if end_step <= begin_step:
        raise ValueError(f"end_step must be > begin_step, got {end_step} <= {begin_step}")
    initial = _check_real(initial_sparsity, "initial_sparsity", 0.0, 1.0, high_open=True)
    final = _check_real(final_sparsity, "final_sparsity", 0.0, 1.0, high_open=True)
    power = _check_real(power, "power", 0.0, math.inf, low_open=True, high_open=True)
    if execution not in TFMOT_EXECUTIONS:
        raise ValueError(f"execution must be one of {list(TFMOT_EXECUTIONS)}, got {execution!r}")
    f32 = np.float32
    if power > float(np.finfo(f32).max):
        raise ValueError(
            f"power must be a positive float32 number (TF rounds it to float32), got {power}"
        )
    y = f32(power)
    elapsed = f32(np.int64(step - begin_step))  # tf.cast(int64 -> float32)
    span = f32(np.int64(end_step - begin_step))
    if execution == "graph":
        p = elapsed * (f32(1.0) / span)  # x / c -> x * (1 / c)
    else:
        p = elapsed / span
    p = min(f32(1.0), max(f32(0.0), p))
    q = f32(1.0) - p
    d = f32(initial - final)
    if execution == "graph" and y == f32(3.0):
        decayed = (d * q) * (q * q)  # pow(q, 3) -> q * square(q)
    else:
        decayed = d * _f32_power(q, y)
    return f32(decayed), f32(final)


def _f32_power(x: np.float32, y: np.float32) -> np.float32:
    """x**y correctly rounded to float32 (round half to even), for float32 x >= 0 and y > 0.

    Integer y (up to 4096): the exact rational power, rounded. Other y: the
    power to 60 significant digits (``decimal``), rounded; an ``ArithmeticError``
    if that cannot decide the rounding (never a silent guess).
    """
    xf, yf = Fraction(float(x)), Fraction(float(y))
    if xf == 0 or xf == 1:
        return np.float32(xf)
    if yf.denominator == 1 and yf <= 4096:
        return _nearest_f32(xf ** int(yf))
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        value = Fraction(decimal.Decimal(float(x)) ** decimal.Decimal(float(y)))
    out = _nearest_f32(value)
    below, above = np.nextafter(out, np.float32(0.0)), np.nextafter(out, np.float32(np.inf))
    for neighbour in (below, above):
        midpoint = (Fraction(float(out)) + Fraction(float(neighbour))) / 2
        if abs(value - midpoint) <= value * Fraction(1, 10**50):
            raise ArithmeticError(
                f"cannot round {float(x)!r}**{float(y)!r} to float32: it lies "
                "at a half-way point to 50 digits"
            )
    return out


def _nearest_f32(value: Fraction) -> np.float32:
    """The float32 nearest to a non-negative rational, ties to the even significand."""
    guess = np.float32(float(value))  # within one float32 ulp of value
    candidates = [
        np.nextafter(guess, np.float32(-np.inf)),
        guess,
        np.nextafter(guess, np.float32(np.inf)),
    ]
    candidates = [c for c in candidates if np.isfinite(c) and c >= 0]

    def key(c: np.float32) -> tuple[Fraction, int]:
        odd = int(np.array(c, dtype=np.float32).view(np.uint32)) & 1
        return abs(Fraction(float(c)) - value), odd

    return min(candidates, key=key)


# ----------------------------------------------------------------------------
# open_lth
# ----------------------------------------------------------------------------


def open_lth_prune_count(fraction: float, n_alive: int) -> int:
    """open_lth's ``number_of_weights_to_prune`` from ``n_alive`` alive weights.

    m = ceil(fraction * n_alive), the product in float64 (a Python float times
    the NumPy integer sum of the saved integer masks), so 0.07 * 100 =
    7.000000000000001 gives m = 8. The threshold is then the sorted value at
    index m and the comparison is strict, so at least m + 1 weights go.

    pruning/sparse_global.py ``Strategy.prune``
    (facebookresearch/open_lth@2ce732fe48ab).

    Parameters
    ----------
    fraction : float in [0, 1]
    n_alive : int >= 0, alive weights of every prunable tensor (ignored ones included)
    """
    fraction = _check_real(fraction, "fraction", 0.0, 1.0)
    n_alive = _check_count_n(n_alive, "n_alive")
    return int(math.ceil(fraction * float(n_alive)))


def _open_lth_select(t: _Tensors, amount: Any, scope: str) -> list[np.ndarray]:
    """sparse_global: threshold = sort(|w_alive|)[m]; keep alive and |w| > threshold."""
    if scope != "global":
        raise ValueError(
            "open-lth prunes globally (sparse_global); scope must be 'global', got 'layer'"
        )
    n_alive = sum(int(a.sum()) for a in t.alive)  # every tensor in the mask, ignored ones too
    m = open_lth_prune_count(amount, n_alive)
    mags = _magnitudes(t, masked=False)
    candidates = np.concatenate([mags[i][t.alive[i]] for i in range(len(mags)) if t.prunable[i]])
    if m >= candidates.size:
        raise ValueError(
            f"open-lth would prune at index {m} of only {candidates.size} alive "
            f"prunable weights (fraction {amount} of {n_alive} alive); the library "
            f"raises IndexError here"
        )
    threshold = np.sort(candidates)[m]
    return [
        (mag > threshold) & a if p else a.copy() for mag, a, p in zip(mags, t.alive, t.prunable)
    ]


def _open_lth_count(amount: Any, n: int) -> int:
    return open_lth_prune_count(amount, n)


# ----------------------------------------------------------------------------
# ShrinkBench
# ----------------------------------------------------------------------------


def shrinkbench_threshold(importances: Any, fraction: float) -> np.floating:
    """ShrinkBench's ``fraction_threshold``: ``np.quantile(importances, 1 - fraction)``.

    ``fraction`` is the fraction KEPT. NumPy's default ("linear", Hyndman and
    Fan type 7) quantile of the n sorted values x_(0) <= ... <= x_(n-1) at
    q = 1 - fraction (a float64 difference) is, for float64 input,

        h = (n - 1) * q,  j = floor(h),  g = h - j,
        Q = x_(j) + (x_(j+1) - x_(j)) * g           if g <  0.5
        Q = x_(j+1) - (x_(j+1) - x_(j)) * (1 - g)   if g >= 0.5
        (Q = x_(n-1) when h >= n - 1)

    which is NumPy's ``_lerp`` since 1.22 (numpy/lib/_function_base_impl.py,
    numpy/numpy@4a71101d40a9). For float32 input NumPy 2 interpolates in
    float32 while NumPy 1.x returned a float64 threshold; this function calls
    the installed NumPy, as ShrinkBench does.

    strategies/utils.py ``fraction_threshold`` (JJGO/shrinkbench@b24497451b68).
    """
    fraction = _check_real(fraction, "fraction", 0.0, 1.0, low_open=True)
    imp = _score_array(importances, "importances")
    if imp.size == 0:
        raise ValueError("importances must not be empty")
    return np.quantile(imp, 1 - fraction)


def shrinkbench_fraction_to_keep(compression: float, total_size: int, prunable_size: int) -> float:
    """ShrinkBench's fraction of prunable parameters kept for a compression ratio.

    fraction = 1 / prunable * (total / compression - (total - prunable)),
    where the sizes count every parameter, biases included (``model_size``),
    and ``prunable`` those of the prunable modules (not the classifier).
    ShrinkBench asserts 0 < fraction <= 1.

    pruning/utils.py ``fraction_to_keep`` (JJGO/shrinkbench@b24497451b68).
    """
    compression = _check_real(
        compression, "compression", 0.0, math.inf, low_open=True, high_open=True
    )
    total = _check_count_n(total_size, "total_size")
    prunable = _check_count_n(prunable_size, "prunable_size")
    if not 0 < prunable <= total:
        raise ValueError(f"prunable_size must be in [1, total_size={total}], got {prunable}")
    nonprunable = total - prunable
    fraction = 1 / prunable * (total / compression - nonprunable)
    if not 0 < fraction <= 1:
        raise ValueError(
            f"cannot compress {compression}x with {nonprunable} of {total} "
            f"parameters not prunable (fraction kept would be {fraction})"
        )
    return fraction


def _shrinkbench_select(t: _Tensors, amount: Any, scope: str) -> list[np.ndarray]:
    """GlobalMagWeight / LayerMagWeight: prune where -thr < |w| < thr, thr a quantile."""
    fraction = _check_real(amount, "fraction", 0.0, 1.0, low_open=True)
    mags = _magnitudes(t, masked=True)  # pruned weights were zeroed in place
    out = [a.copy() for a in t.alive]
    for group in _groups(t, scope):
        flat = np.concatenate([mags[i].ravel() for i in group])
        threshold = np.quantile(flat, 1 - fraction)
        for i in group:
            out[i] = ~((mags[i] < threshold) & (mags[i] > -threshold))  # threshold_mask
    return out


# ----------------------------------------------------------------------------
# Comparing masks up to ties
# ----------------------------------------------------------------------------


def _flat(x: Any, name: str, dtype_kind: str) -> np.ndarray:
    if isinstance(x, Mapping):
        parts = [np.asarray(v) for v in x.values()]
        if not parts:
            raise ValueError(f"{name} must hold at least one tensor")
        arr = np.concatenate([p.ravel() for p in parts])
    else:
        arr = np.asarray(x).ravel()
    if dtype_kind == "b" and arr.dtype != np.bool_:
        raise TypeError(f"{name} must be boolean, got dtype {arr.dtype}")
    if dtype_kind == "f" and arr.dtype.kind != "f":
        raise TypeError(f"{name} must be floating-point, got dtype {arr.dtype}")
    return arr


def tie_mismatch(expected: Any, actual: Any, scores: Any, alive: Any = None) -> str | None:
    """Why two keep-masks differ beyond the order of equal scores, or None if they do not.

    Two masks are equal up to ties when, for every distinct score value v
    among the alive entries, they keep the same number of the entries scoring
    v, and they agree on every entry that is not alive. For a top-k mask this
    is the rule: every entry strictly above or below the threshold score
    matches, and the count kept at the threshold matches. -0.0 equals 0.0.

    ``expected``, ``actual``, ``scores`` and ``alive`` are arrays, or mappings
    of arrays taken together in iteration order (global scope). Pass the
    scores the selection ranked (``Profile.masks_match`` passes |score| for
    the library profiles).
    """
    e = _flat(expected, "expected", "b")
    a = _flat(actual, "actual", "b")
    s = _flat(scores, "scores", "f")
    al = np.ones(s.shape, dtype=bool) if alive is None else _flat(alive, "alive", "b")
    if not (e.shape == a.shape == s.shape == al.shape):
        raise ValueError(
            f"expected, actual, scores and alive must have the same number of "
            f"entries, got {e.size}, {a.size}, {s.size}, {al.size}"
        )
    dead_diff = np.flatnonzero(~al & (e != a))
    if dead_diff.size:
        return (
            f"{dead_diff.size} entries outside the alive set differ, first at flat "
            f"index {dead_diff[0]} (expected {bool(e[dead_diff[0]])}, got {bool(a[dead_diff[0]])})"
        )
    values, inverse = np.unique(s[al], return_inverse=True)
    kept_e = np.bincount(inverse, weights=e[al], minlength=values.size)
    kept_a = np.bincount(inverse, weights=a[al], minlength=values.size)
    total = np.bincount(inverse, minlength=values.size)
    bad = np.flatnonzero(kept_e != kept_a)
    if bad.size:
        parts = [
            f"score {float(values[j])!r}: expected {int(kept_e[j])} of {int(total[j])} kept, "
            f"got {int(kept_a[j])}"
            for j in bad[:3]
        ]
        more = f" (and {bad.size - 3} more score values)" if bad.size > 3 else ""
        return "; ".join(parts) + more
    return None


def equal_up_to_ties(expected: Any, actual: Any, scores: Any, alive: Any = None) -> bool:
    """True when the masks differ only in which of equally scored entries are kept.

    See ``tie_mismatch`` for the rule.
    """
    return tie_mismatch(expected, actual, scores, alive) is None


# ----------------------------------------------------------------------------
# Profiles
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A library's conventions for turning scores into keep-masks.

    Attributes
    ----------
    name, description : str
    amount_meaning : str
        What the ``amount`` argument of ``keep_masks`` means in this library.
    count_meaning : str
        What the integer returned by ``count(amount, n)`` counts.
    scopes : tuple of str
        The scopes the library offers ("layer": each tensor on its own;
        "global": all prunable tensors together).
    deterministic_ties : bool
        False when the library leaves the choice among equal scores
        unspecified; masks are then compared with ``equal_up_to_ties``.
    ranks_magnitude : bool
        True when the library ranks |score| rather than the signed score.
    ignored_count_as_alive : bool
        True when tensors in ``ignore`` still count towards the alive total.
    signed_zeros : bool
        False when the library writes a pruned weight as ``w * 0`` (which is
        -0.0 for a negative w) instead of +0.0; comparisons then accept
        either sign of zero (``honour``).
    citations : tuple of Citation
    extras : mapping name -> function
        The library's related arithmetic (schedules, size formulas).
    mask_at : str or None
        Where the library's training applies the mask (family ``training``,
        docs/training.md): "update", "weights" or "gradient"; None where this
        project has not read it from the library's source.
    generator : str
        "reference" when the library's random controls reproduce NumPy's PCG64
        stream, "own" when it draws from its own generator (family ``controls``).
    """

    name: str
    description: str
    amount_meaning: str
    count_meaning: str
    scopes: tuple[str, ...]
    deterministic_ties: bool
    ranks_magnitude: bool
    ignored_count_as_alive: bool
    citations: tuple[Citation, ...]
    _select: Callable[[_Tensors, Any, str], list[np.ndarray]] = field(repr=False, compare=False)
    _count: Callable[[Any, int], int] | None = field(default=None, repr=False, compare=False)
    extras: Mapping[str, Callable[..., Any]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )
    signed_zeros: bool = True
    mask_at: str | None = None
    generator: str = "own"

    def honour(self, tolerance: dict[str, Any]) -> dict[str, Any]:
        """``tolerance`` as this profile allows it: zeros' signs dropped unless promised."""
        if self.signed_zeros or "signed_zeros" not in tolerance:
            return tolerance
        return {k: v for k, v in tolerance.items() if k != "signed_zeros"}

    def keep_masks(
        self,
        scores: Scores,
        amount: Any,
        *,
        alive: Any = None,
        scope: str = "layer",
        ignore: Sequence[str] = (),
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Boolean keep-masks as the library computes them (higher score = kept).

        Parameters
        ----------
        scores : float array, or mapping name -> float array (ordered)
            Importance scores; their dtype is kept (float32 reproduces float32
            libraries exactly).
        amount : number
            The library's own argument; see ``amount_meaning``.
        alive : bool array or mapping, optional
            The current mask (True = alive); all True when omitted.
        scope : {"layer", "global"}
            Must be one of ``scopes``.
        ignore : collection of str
            Tensors carried along unpruned (their alive mask is returned as
            is); with ``ignored_count_as_alive`` they still count towards n.

        Returns
        -------
        bool array, or dict name -> bool array, of the shapes of ``scores``.
        """
        if not isinstance(scope, str) or scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; expected one of {list(SCOPES)}")
        if scope not in self.scopes:
            raise ValueError(
                f"the {self.name} profile has no {scope!r} scope; it offers {list(self.scopes)}"
            )
        t = _tensors(scores, alive, ignore)
        return t.pack(self._select(t, amount, scope))

    def keep_mask(self, scores: Any, amount: Any, *, alive: Any = None) -> np.ndarray:
        """Keep-mask of one tensor (layer and global scope coincide for a single tensor)."""
        if isinstance(scores, Mapping):
            raise TypeError("keep_mask takes one score array; use keep_masks for a mapping")
        return cast(np.ndarray, self.keep_masks(scores, amount, alive=alive, scope=self.scopes[0]))

    def count(self, amount: Any, n: int) -> int | None:
        """The integer the library derives from ``amount`` and ``n`` (see ``count_meaning``).

        None for libraries that never form a count (ShrinkBench thresholds a
        quantile directly).
        """
        return None if self._count is None else self._count(amount, n)

    def mask_mismatch(
        self, expected: Any, actual: Any, scores: Any, *, alive: Any = None
    ) -> str | None:
        """Why ``actual`` does not match ``expected`` under this profile, or None.

        Exact equality when ties are deterministic; ``tie_mismatch`` on the
        ranked scores (|score| for magnitude-ranking profiles) otherwise.
        """
        if self.deterministic_ties:
            e, a = _flat(expected, "expected", "b"), _flat(actual, "actual", "b")
            if e.shape != a.shape:
                raise ValueError(
                    f"expected and actual must have the same number of entries, "
                    f"got {e.size} and {a.size}"
                )
            diff = np.flatnonzero(e != a)
            if diff.size == 0:
                return None
            return (
                f"{diff.size} entries differ, first at flat index {diff[0]} "
                f"(expected {bool(e[diff[0]])}, got {bool(a[diff[0]])})"
            )
        ranked = scores
        if self.ranks_magnitude:
            ranked = (
                {k: np.abs(np.asarray(v)) for k, v in scores.items()}
                if isinstance(scores, Mapping)
                else np.abs(np.asarray(scores))
            )
        return tie_mismatch(expected, actual, ranked, alive)

    def masks_match(self, expected: Any, actual: Any, scores: Any, *, alive: Any = None) -> bool:
        """True when ``actual`` matches ``expected`` under this profile's tie rule."""
        return self.mask_mismatch(expected, actual, scores, alive=alive) is None


def _cite(rule: str, repo: str, commit: str, path: str, symbol: str) -> Citation:
    return Citation(rule=rule, repo=repo, path=path, commit=commit, symbol=symbol)


def reference_profile(rounding: str = "round-half-even") -> Profile:
    """This project's conventions, with the rounding of ``refprune.masks.fraction_to_count``.

    n_prune = fraction_to_count(fraction, n_alive, rounding); keep_top_k on the
    alive scores (signed, not |score|) with k = n_alive - n_prune; equal
    scores -> lower flat C-order index kept (global scope: index in the
    concatenation of the tensors' alive entries, in mapping order).
    """
    fraction_to_count(0.0, 0, rounding)  # validates ``rounding``
    return Profile(
        name="reference" if rounding == "round-half-even" else f"reference-{rounding}",
        description=(
            "refprune's own rule: prune rounding(fraction * n_alive) of the alive "
            f"weights ({rounding}), keep the highest scores, ties to the lower flat index"
        ),
        amount_meaning="fraction in [0, 1] of the alive weights to prune",
        count_meaning="weights pruned from n alive weights",
        scopes=SCOPES,
        deterministic_ties=True,
        ranks_magnitude=False,
        ignored_count_as_alive=False,
        citations=(
            Citation(
                "rounding, tie rule, alive-only selection, scopes",
                "refprune",
                "refprune/masks.py",
                "-",
                "fraction_to_count, keep_top_k, select_masks",
            ),
        ),
        _select=_reference_select(rounding),
        _count=lambda amount, n: fraction_to_count(amount, n, rounding),
        mask_at="update",
        generator="reference",
    )


TORCH = Profile(
    name="torch",
    description=(
        "torch.nn.utils.prune l1_unstructured / global_unstructured: prune "
        "round(amount * n_alive) (float64, half-even) of the alive weights, or amount "
        "weights when amount is an int; rank |score| with torch.topk (ties unspecified)"
    ),
    amount_meaning="float in [0, 1]: fraction of the alive weights to prune; int >= 0: a count",
    count_meaning="weights pruned from n alive weights",
    scopes=SCOPES,
    deterministic_ties=False,
    ranks_magnitude=True,
    ignored_count_as_alive=False,
    citations=(
        _cite(
            "n_prune = amount if int else round(amount * n) (Python float64, half-even)",
            TORCH_REPO,
            TORCH_COMMIT,
            TORCH_PRUNE,
            "_compute_nparams_toprune",
        ),
        _cite(
            "float amount in [0, 1], int amount >= 0",
            TORCH_REPO,
            TORCH_COMMIT,
            TORCH_PRUNE,
            "_validate_pruning_amount_init",
        ),
        _cite(
            "int amount > n refused",
            TORCH_REPO,
            TORCH_COMMIT,
            TORCH_PRUNE,
            "_validate_pruning_amount",
        ),
        _cite(
            "prune the n_prune smallest |score| with torch.topk(largest=False); k = 0 prunes "
            "nothing",
            TORCH_REPO,
            TORCH_COMMIT,
            TORCH_PRUNE,
            "L1Unstructured.compute_mask",
        ),
        _cite(
            "repeated pruning works on the alive slice t[mask == 1], so n = alive count",
            TORCH_REPO,
            TORCH_COMMIT,
            TORCH_PRUNE,
            "PruningContainer.compute_mask._combine_masks",
        ),
        _cite(
            "global: scores and masks of all parameters concatenated (parameters_to_vector), "
            "then the same container rule",
            TORCH_REPO,
            TORCH_COMMIT,
            TORCH_PRUNE,
            "global_unstructured",
        ),
        _cite(
            "the pruned tensor is weight_orig * weight_mask, so a pruned negative weight "
            "reads -0.0",
            TORCH_REPO,
            TORCH_COMMIT,
            TORCH_PRUNE,
            "BasePruningMethod.apply_mask",
        ),
        _cite(
            "training (mask_at 'gradient'): the parameter is re-registered as name_orig, the "
            "mask as the buffer name_mask, and a forward pre-hook recomputes name = "
            "name_orig * name_mask; name_orig is never zeroed, so autograd masks only its "
            "gradient",
            TORCH_REPO,
            TORCH_COMMIT,
            TORCH_PRUNE,
            "BasePruningMethod.apply, BasePruningMethod.apply_mask",
        ),
        _cite(
            "training: d_p = grad + weight_decay * param; buf = clone(d_p) at the first step, "
            "else buf * momentum + (1 - dampening) * d_p; nesterov: d_p = d_p + momentum * buf, "
            "else d_p = buf; param -= lr * d_p; the state (momentum_buffer) is keyed by the "
            "parameter object, which pruning keeps (renamed name_orig)",
            TORCH_REPO,
            TORCH_COMMIT,
            "torch/optim/sgd.py",
            "_single_tensor_sgd",
        ),
    ),
    _select=_torch_select,
    _count=_torch_count,
    signed_zeros=False,
    mask_at="gradient",
    generator="own",
)

TFMOT = Profile(
    name="tfmot",
    description=(
        "TF Model Optimization prune_low_magnitude: keep k = max(round(n * (1 - s)), 1) "
        "computed in float32 (half-even), keep every |w| >= the k-th largest |w| of the "
        "masked weights (ties kept; a threshold of 0 keeps everything, pruned entries too; "
        "a subnormal |w| counts as 0)"
    ),
    amount_meaning="sparsity s in [0, 1): target fraction of the whole tensor (pruned entries "
    "included) that is zero",
    count_meaning="weights kept (before ties) in a tensor of n weights",
    scopes=("layer",),
    deterministic_ties=True,
    ranks_magnitude=True,
    ignored_count_as_alive=False,
    citations=(
        _cite(
            "k = cast_int32(max(round(cast_f32(size) * (1 - sparsity)), 1)), float32",
            TFMOT_REPO,
            TFMOT_COMMIT,
            TFMOT_DIR + "pruning_impl.py",
            "Pruning._update_mask",
        ),
        _cite(
            "threshold = top_k(|w|, size).values[k - 1]; mask = |w| >= threshold "
            "(or the threshold's own position)",
            TFMOT_REPO,
            TFMOT_COMMIT,
            TFMOT_DIR + "pruning_impl.py",
            "Pruning._update_mask",
        ),
        _cite(
            "weights = weights * mask after every call; the next update reads these weights",
            TFMOT_REPO,
            TFMOT_COMMIT,
            TFMOT_DIR + "pruning_impl.py",
            "Pruning.weight_mask_op",
        ),
        _cite(
            "mask update only when the schedule says so; step counting",
            TFMOT_REPO,
            TFMOT_COMMIT,
            TFMOT_DIR + "pruning_wrapper.py",
            "PruneLowMagnitude.call",
        ),
        _cite(
            "sparsity is a float32 tensor; [0, 1) validated",
            TFMOT_REPO,
            TFMOT_COMMIT,
            TFMOT_DIR + "pruning_schedule.py",
            "ConstantSparsity, PolynomialDecay",
        ),
        Citation(
            "a subnormal |w| counts as 0: TensorFlow runs its CPU kernels with flush-to-zero "
            "and denormals-are-zero (0.1 * tiny evaluates to 0 in graph and eager modes)",
            "tensorflow/tensorflow",
            "tensorflow/core/platform/denormal.h; tensorflow/python/kernel_tests/denormal_test.py",
            "v2.21.0",
            "port::ScopedFlushDenormal; DenormalTest.testFlushDenormalsCPU",
        ),
        Citation(
            "tf.math.round rounds half to even",
            "tensorflow.org",
            "https://www.tensorflow.org/versions/r2.11/api_docs/python/tf/math/round",
            "docs r2.11",
            "tf.math.round",
        ),
    ),
    _select=_tfmot_select,
    _count=_tfmot_count,
    extras=MappingProxyType(
        {
            "constant_sparsity": tfmot_constant_sparsity,
            "polynomial_decay": tfmot_polynomial_decay,
            "should_prune": tfmot_should_prune,
            "keep_count": tfmot_keep_count,
        }
    ),
)

OPEN_LTH = Profile(
    name="open-lth",
    description=(
        "open_lth sparse_global: m = ceil(fraction * n_alive) over every prunable tensor "
        "(ignored ones counted), threshold = sort(|w_alive|)[m], keep |w| > threshold: "
        "m + 1 weights plus all ties go, one weight even at fraction 0"
    ),
    amount_meaning="fraction in [0, 1) of the alive weights to prune",
    count_meaning="index m into the sorted alive magnitudes; at least m + 1 weights are pruned",
    scopes=("global",),
    deterministic_ties=True,
    ranks_magnitude=True,
    ignored_count_as_alive=True,
    citations=(
        _cite(
            "n_alive = sum of every mask in current_mask (all prunable layers, ignored ones "
            "too); m = ceil(fraction * n_alive) (float64)",
            OPEN_LTH_REPO,
            OPEN_LTH_COMMIT,
            "pruning/sparse_global.py",
            "Strategy.prune",
        ),
        _cite(
            "candidates = |w| of alive entries of non-ignored tensors; threshold = "
            "np.sort(candidates)[m]; new mask = where(|w| > threshold, mask, 0)",
            OPEN_LTH_REPO,
            OPEN_LTH_COMMIT,
            "pruning/sparse_global.py",
            "Strategy.prune",
        ),
        _cite(
            "prunable tensors: weights of Conv2d and Linear (no biases)",
            OPEN_LTH_REPO,
            OPEN_LTH_COMMIT,
            "models/base.py",
            "Model.prunable_layer_names",
        ),
        _cite(
            "each level loads the previous level's saved integer mask (so the count is an "
            "integer and the product float64)",
            OPEN_LTH_REPO,
            OPEN_LTH_COMMIT,
            "lottery/runner.py",
            "LotteryRunner._prune_level",
        ),
        _cite("masks saved as int", OPEN_LTH_REPO, OPEN_LTH_COMMIT, "pruning/mask.py", "Mask.save"),
    ),
    _select=_open_lth_select,
    _count=_open_lth_count,
)

SHRINKBENCH = Profile(
    name="shrinkbench",
    description=(
        "ShrinkBench GlobalMagWeight / LayerMagWeight: the fraction is the fraction KEPT; "
        "threshold = np.quantile(|w|, 1 - fraction) (linear interpolation); prune "
        "|w| < threshold, ties kept, so the count is inexact; biases pruned too, the "
        "classifier module not at all"
    ),
    amount_meaning="fraction in (0, 1] of the weights to KEEP (all entries, pruned ones included)",
    count_meaning="none: the mask comes from a quantile threshold, not a count",
    scopes=SCOPES,
    deterministic_ties=True,
    ranks_magnitude=True,
    ignored_count_as_alive=False,
    citations=(
        _cite(
            "threshold = np.quantile(tensor, 1 - fraction); fraction = fraction kept",
            SHRINKBENCH_REPO,
            SHRINKBENCH_COMMIT,
            "strategies/utils.py",
            "fraction_threshold",
        ),
        _cite(
            "mask = 1 except where -threshold < importance < threshold",
            SHRINKBENCH_REPO,
            SHRINKBENCH_COMMIT,
            "strategies/utils.py",
            "threshold_mask",
        ),
        _cite(
            "global: importances = |w| of every parameter (weight and bias) of the prunable "
            "modules, one threshold; layer: one threshold per parameter tensor",
            SHRINKBENCH_REPO,
            SHRINKBENCH_COMMIT,
            "strategies/magnitude.py",
            "GlobalMagWeight, LayerMagWeight",
        ),
        _cite(
            "prunable modules: Linear/Conv2d unless is_classifier; fraction from compression",
            SHRINKBENCH_REPO,
            SHRINKBENCH_COMMIT,
            "pruning/vision.py",
            "VisionPruning",
        ),
        _cite(
            "fraction = 1/prunable * (total/compression - nonprunable), sizes with biases",
            SHRINKBENCH_REPO,
            SHRINKBENCH_COMMIT,
            "pruning/utils.py",
            "fraction_to_keep",
        ),
        _cite(
            "pruned weights are zeroed in place, so a later pruning reads 0 for them",
            SHRINKBENCH_REPO,
            SHRINKBENCH_COMMIT,
            "pruning/modules.py",
            "MaskedModule.set_masks",
        ),
        _cite(
            "linear quantile: h = (n-1) q; lerp x_j + (x_j+1 - x_j) g, from the upper end "
            "when g >= 0.5",
            NUMPY_REPO,
            NUMPY_COMMIT,
            "numpy/lib/_function_base_impl.py",
            "_QuantileMethods['linear'], _lerp",
        ),
    ),
    _select=_shrinkbench_select,
    _count=None,
    extras=MappingProxyType(
        {"fraction_to_keep": shrinkbench_fraction_to_keep, "threshold": shrinkbench_threshold}
    ),
)

REFERENCE = reference_profile()

PROFILES: dict[str, Profile] = {p.name: p for p in (REFERENCE, TORCH, TFMOT, OPEN_LTH, SHRINKBENCH)}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (one of ``PROFILES``)."""
    if not isinstance(name, str):
        raise TypeError(
            f"profile name must be a string, one of {sorted(PROFILES)}, got {type(name).__name__}"
        )
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[name]
