"""Wrong backends of the profiles family: a library's mask rule rebuilt with one convention wrong.

Each class claims one profile (``profile``, as a backend claims it with
``--profile``) and rebuilds that library's selection from
``conformance.conventions`` with hooks. With every hook at its default the
rebuilt selection is the profile itself (``tests/test_wrong_backends.py``
checks it for each profile), so each class differs from the library it
claims by its one defect.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from conformance.conventions import (
    _check_real,
    _flush_subnormals,
    _groups,
    _keep_top_among_alive,
    _magnitudes,
    _Tensors,
    _tensors,
    _tfmot_sparsity,
    _torch_amount,
    get_profile,
    open_lth_prune_count,
    tfmot_keep_count,
    torch_nparams_toprune,
)

from .base import WrongBackend


class _ProfileBackend(WrongBackend):
    """``profile_mask`` of the claimed profile, rebuilt; subclasses override ``select``."""

    profile = "reference"

    def profile_mask(self, *, scores, amount, alive, scope, ignore):
        prof = get_profile(self.profile)
        if scope not in prof.scopes:
            raise ValueError(f"the {prof.name} profile has no {scope!r} scope")
        t = _tensors(scores, alive, ignore)
        return t.pack(self.select(t, amount, scope))

    def select(self, t: _Tensors, amount: Any, scope: str) -> list[np.ndarray]:
        raise NotImplementedError


# ------------------------------------------------------------------ TF-MOT
class _TfmotBackend(_ProfileBackend):
    """``_update_mask`` per tensor: k-th largest |masked w| as the threshold, ties kept."""

    profile = "tfmot"
    flush = True  # subnormal |w| read as 0 (TensorFlow's CPU kernels run with FTZ/DAZ)

    def keep_count(self, amount: Any, n: int) -> int:
        return tfmot_keep_count(amount, n)

    def select(self, t, amount, scope):
        _tfmot_sparsity(amount)  # the library's own checks of the sparsity
        mags = _magnitudes(t, masked=True)
        if self.flush:
            mags = [_flush_subnormals(m) for m in mags]
        out = [a.copy() for a in t.alive]
        for i in (i for i, p in enumerate(t.prunable) if p):
            v = mags[i]
            k = self.keep_count(amount, v.size)
            out[i] = v >= np.sort(v, axis=None)[v.size - k]
        return out


class TfmotWithoutFlushToZero(_TfmotBackend):
    """The tfmot profile with subnormal magnitudes ranked by their value.

    TensorFlow's CPU kernels run with flush-to-zero and denormals-are-zero, so
    TF-MOT reads |w| = 5e-324 as 0: where the threshold is 0 such a weight
    ties with the zeros and is kept with them, and where the threshold is
    subnormal every weight above 0 ties with it. Models a port of TF-MOT's
    rule to NumPy or PyTorch, whose CPU arithmetic keeps subnormals.
    """

    name = "tfmot without flush-to-zero"
    family = "profiles"
    flush = False


class TfmotCountInFloat64(_TfmotBackend):
    """The tfmot profile with k = max(round(n (1 - s)), 1) in float64, not float32.

    TF-MOT computes the count from float32 tensors: n = 10, s = 0.85 gives
    10 * (1 - 0.85f) = 1.4999998f, so k = 1, where float64 gives
    1.5000000000000002 and k = 2. Models a port that does the count in
    Python floats.
    """

    name = "tfmot count in float64"
    family = "profiles"

    def keep_count(self, amount, n):
        _tfmot_sparsity(amount)
        return max(round(n * (1.0 - float(amount))), 1)


# ------------------------------------------------------------------ torch.nn.utils.prune
class _TorchBackend(_ProfileBackend):
    """L1Unstructured / global_unstructured on the alive entries, |score| ranked."""

    profile = "torch"

    def prune_count(self, amount: Any, n_alive: int) -> int:
        return torch_nparams_toprune(amount, n_alive)

    def select(self, t, amount, scope):
        amount = _torch_amount(amount)
        mags = _magnitudes(t, masked=False)
        out = [a.copy() for a in t.alive]
        for group in _groups(t, scope):
            n_alive = sum(int(t.alive[i].sum()) for i in group)
            n_prune = self.prune_count(amount, n_alive)
            masks = _keep_top_among_alive(
                [mags[i] for i in group], [t.alive[i] for i in group], n_alive - n_prune
            )
            for i, m in zip(group, masks):
                out[i] = m
        return out


class TorchCountRoundHalfUp(_TorchBackend):
    """The torch profile with round(amount * n) rounded half up instead of half to even.

    torch rounds the number to prune with Python's ``round``, half to even:
    0.25 * 10 = 2.5 prunes 2, where half up prunes 3. Models a port to C++ or
    JavaScript, whose ``std::round`` and ``Math.round`` round halves up.
    """

    name = "torch count rounded half up"
    family = "profiles"

    def prune_count(self, amount, n_alive):
        if isinstance(amount, int):
            return super().prune_count(amount, n_alive)
        return int(math.floor(amount * n_alive + 0.5))


# ------------------------------------------------------------------ open_lth
class _OpenLthBackend(_ProfileBackend):
    """sparse_global: threshold = sorted alive |w| at index m, keep |w| > threshold."""

    profile = "open-lth"
    count_ignored = True  # the alive total includes tensors carried along unpruned

    def select(self, t, amount, scope):
        if scope != "global":
            raise ValueError("open-lth prunes globally; scope must be 'global'")
        counted = [a for a, p in zip(t.alive, t.prunable) if p or self.count_ignored]
        m = open_lth_prune_count(amount, sum(int(a.sum()) for a in counted))
        mags = _magnitudes(t, masked=False)
        candidates = np.concatenate(
            [mags[i][t.alive[i]] for i in range(len(mags)) if t.prunable[i]]
        )
        if m >= candidates.size:
            raise ValueError(f"open-lth would prune at index {m} of {candidates.size}")
        threshold = np.sort(candidates)[m]
        return [
            (mag > threshold) & a if p else a.copy() for mag, a, p in zip(mags, t.alive, t.prunable)
        ]


class OpenLthIgnoredNotCounted(_OpenLthBackend):
    """The open-lth profile without the ignored tensors in the alive total.

    open_lth's m = ceil(fraction * n) counts every weight alive in the mask,
    the tensors it leaves unpruned (the output layer, by default) included;
    counting only the prunable ones prunes fewer weights. Models reading
    "fraction of the prunable weights" into the library's documentation.
    """

    name = "open-lth ignored tensors not counted"
    family = "profiles"
    count_ignored = False


# ------------------------------------------------------------------ ShrinkBench
class _ShrinkbenchBackend(_ProfileBackend):
    """GlobalMagWeight / LayerMagWeight: prune where |w| < the quantile at 1 - fraction."""

    profile = "shrinkbench"

    def quantile_at(self, fraction: float) -> float:
        return 1 - fraction

    def select(self, t, amount, scope):
        fraction = _check_real(amount, "fraction", 0.0, 1.0, low_open=True)
        mags = _magnitudes(t, masked=True)
        out = [a.copy() for a in t.alive]
        for group in _groups(t, scope):
            flat = np.concatenate([mags[i].ravel() for i in group])
            threshold = np.quantile(flat, self.quantile_at(fraction))
            for i in group:
                out[i] = ~((mags[i] < threshold) & (mags[i] > -threshold))
        return out


class ShrinkbenchFractionPruned(_ShrinkbenchBackend):
    """The shrinkbench profile reading its fraction as the fraction pruned, not kept.

    ShrinkBench's ``fraction`` is what is KEPT (the threshold is the quantile
    at 1 - fraction); read as the pruned fraction, the quantile is taken at
    fraction and the complement of the intended weights survives. Models the
    convention of torch and TF-MOT, where the argument is the amount pruned.
    """

    name = "shrinkbench fraction read as pruned"
    family = "profiles"

    def quantile_at(self, fraction):
        return fraction
