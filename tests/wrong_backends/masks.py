"""Wrong backends of the masks family: counts, top-k and ties, scopes, nesting, units, N:M."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

import numpy as np

from refprune.masks import fraction_to_count, keep_top_k, select_masks, select_masks_count

from .base import WrongBackend


class SelectionBackend(WrongBackend):
    """Mask selection rebuilt around three hooks: the count rule, the top-k rule, and how a
    group's new mask is chosen.

    ``fraction_to_count``, ``keep_top_k`` and ``select_masks`` all go through
    ``count`` and ``top_k`` (``select_masks`` through ``group_keep`` too), as a
    real library routes every selection through one rounding helper and one
    top-k helper. With the hooks at their defaults this class *is* the
    reference (``select_masks`` is then bit-for-bit
    ``refprune.masks.select_masks``); each subclass overrides one.
    """

    name = "selection with hooks"

    # ----------------------------------------------------------------- the hooks
    def count(self, fraction: float, n_alive: int, n_total: int, rounding: str) -> int:
        """Entries pruned from a group with ``n_alive`` alive of ``n_total``: rounding(f * n_alive)."""
        return fraction_to_count(fraction, n_alive, rounding)

    def top_k(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Keep the k highest scores; equal scores: the lower flat index kept."""
        return keep_top_k(scores, k)

    def group_keep(
        self, scores: list[np.ndarray], masks: list[np.ndarray], n_prune: int
    ) -> list[np.ndarray]:
        """New masks of one group: its alive scores in C order, tensor after tensor, lose the
        ``n_prune`` lowest; dead entries stay dead."""
        alive = np.concatenate([s[m] for s, m in zip(scores, masks)])
        keep = self.top_k(alive, alive.size - n_prune)
        out, start = [], 0
        for m in masks:
            new = m.copy()
            n = int(m.sum())
            new[m] = keep[start : start + n]
            start += n
            out.append(new)
        return out

    # ----------------------------------------------------------------- the operations
    def fraction_to_count(self, *, fraction, n, rounding):
        fraction_to_count(fraction, n, rounding)  # the reference's argument checks
        return self.count(fraction, n, n, rounding)

    def keep_top_k(self, *, scores, k):
        keep_top_k(scores, k)  # the reference's argument checks
        return self.top_k(np.asarray(scores, dtype=np.float64), k)

    def select_masks(self, *, scores, masks, fraction, scope, rate_multipliers, rounding):
        select_masks(
            scores,
            masks,
            fraction,
            scope=scope,
            rate_multipliers=rate_multipliers,
            rounding=rounding,
        )  # the reference's argument checks
        s = {n: np.asarray(v, dtype=np.float64) for n, v in scores.items()}
        m = {n: np.asarray(masks[n], dtype=bool) for n in s}
        mult = dict(rate_multipliers or {})
        if scope == "layer":
            groups = [([n], fraction * mult.get(n, 1.0)) for n in s]
        else:
            pool = [n for n in s if mult.get(n, 1.0) == 1.0]
            groups = ([(pool, fraction)] if pool else []) + [
                ([n], fraction * mult[n]) for n in s if n not in pool
            ]
        out = {}
        for names, f in groups:
            n_alive = sum(int(m[n].sum()) for n in names)
            n_total = sum(m[n].size for n in names)
            n_prune = self.count(f, n_alive, n_total, rounding)
            for n, new in zip(
                names, self.group_keep([s[n] for n in names], [m[n] for n in names], n_prune)
            ):
                out[n] = new
        return {n: out[n] for n in s}


class FloorForRoundHalfEven(SelectionBackend):
    """Counts truncated where round-half-even is documented: ``int(fraction * n)``.

    ``round-half-even`` is implemented as floor (floor and ceil are right), so
    0.35 * 10 = 3.5 gives 3 instead of 4, while 0.85 * 10 = 8.5 gives 8, right
    only because 8 is even.
    Models the most common hand-written count, ``int(amount * n)``, which
    truncates and so always prunes a little less than asked.
    """

    name = "floor for round-half-even"
    family = "masks"

    def count(self, fraction, n_alive, n_total, rounding):
        if rounding == "round-half-even":
            rounding = "floor"
        return fraction_to_count(fraction, n_alive, rounding)


class Float32Count(SelectionBackend):
    """The product fraction * n taken in float32 instead of float64.

    float32(0.07) * 100 rounds to exactly 7.0 in float32, so ceil gives 7 where
    the float64 product 7.000000000000001 gives 8; likewise half-way points
    move. Models a count computed on the device in the weights' precision
    (``(amount * torch.tensor(n, dtype=torch.float32)).ceil()``, TF's float32
    sparsity tensor).
    """

    name = "count in float32"
    family = "masks"

    def count(self, fraction, n_alive, n_total, rounding):
        x = float(np.float32(fraction) * np.float32(n_alive))
        if rounding == "floor":
            return min(int(np.floor(x)), n_alive)
        if rounding == "ceil":
            return min(int(np.ceil(x)), n_alive)
        return min(int(round(x)), n_alive)


class FractionOfAllWeights(SelectionBackend):
    """The pruned fraction taken of all entries instead of the alive ones.

    A group with 9 of 12 entries alive pruned at 0.5 loses round(6) = 6 instead
    of round(4.5) = 4 (capped at the alive count). Models iterative pruning
    that recomputes ``amount * weight.numel()`` every round, forgetting that
    the previous rounds already removed part of the tensor; the density then
    falls faster than the schedule says.
    """

    name = "fraction of all weights"
    family = "masks"

    def count(self, fraction, n_alive, n_total, rounding):
        return min(fraction_to_count(fraction, n_total, rounding), n_alive)


class TiesToHigherIndex(SelectionBackend):
    """Equal scores broken the other way: the *higher* flat index is kept.

    Top-k by ``np.argsort(scores, kind="stable")[n - k:]``: a stable ascending
    sort puts the later of two equal scores later, so taking the tail keeps it.
    The documented rule keeps the lower index. Models the natural "sort
    ascending, keep the last k" implementation.
    """

    name = "ties to the higher index"
    family = "masks"

    def top_k(self, scores, k):
        flat = scores.ravel()
        keep = np.zeros(flat.size, dtype=bool)
        keep[np.argsort(flat, kind="stable")[flat.size - k :]] = True
        return keep.reshape(scores.shape)


class ThresholdAtSortedK(SelectionBackend):
    """The threshold taken at ``sorted[p]`` and everything at or below it pruned.

    To prune p of n, the backend sorts ascending, takes t = sorted[p] and keeps
    ``scores > t``: p + 1 entries go (more with ties), and one goes even when
    p = 0. Models the off-by-one of indexing the sorted array at the count
    instead of at count - 1 (open_lth's ``sparse_global`` does exactly this,
    which is why its profile documents it as a convention).
    """

    name = "threshold at sorted[k]"
    family = "masks"

    def top_k(self, scores, k):
        flat = scores.ravel()
        p = flat.size - k
        if p >= flat.size:
            return np.zeros(scores.shape, dtype=bool)
        return (flat > np.sort(flat)[p]).reshape(scores.shape)


class NegativeZeroBelowZero(SelectionBackend):
    """-0.0 ranked below +0.0, as IEEE-754 totalOrder (or a radix select on the bits) ranks it.

    Among scores that compare equal, -0.0 loses to 0.0 whatever their indices.
    Models a top-k that sorts the floats' bit patterns as integers (GPU radix
    select) or uses ``totalOrder``, where the project says -0.0 == 0.0 and the
    lower index wins.
    """

    name = "-0.0 below 0.0"
    family = "masks"

    def top_k(self, scores, k):
        flat = scores.ravel()
        # rank by (value, sign bit set last), then by index: -0.0 sorts below 0.0
        order = np.lexsort((np.arange(flat.size), np.signbit(flat), -flat))
        keep = np.zeros(flat.size, dtype=bool)
        keep[order[:k]] = True
        return keep.reshape(scores.shape)


class SubnormalsFlushedToZero(SelectionBackend):
    """Subnormal scores flushed to zero before ranking (FTZ/DAZ arithmetic).

    5e-324 and 0.0 become equal, so the tie rule, not the value, decides
    between them. Models kernels compiled with ``-ffast-math`` or run with the
    CPU's flush-to-zero / denormals-are-zero flags, as GPUs run by default.
    """

    name = "subnormals flushed to zero"
    family = "masks"

    def top_k(self, scores, k):
        tiny = np.finfo(np.float64).tiny
        flushed = np.where(np.abs(scores) < tiny, 0.0, scores)
        return keep_top_k(flushed, k)


class RevivesPrunedEntries(SelectionBackend):
    """Each step ranks *all* entries again, so a pruned entry with a high score comes back.

    The group's new mask keeps the (n_total - n_dead - n_prune) highest scores
    over every entry, dead ones included: the density is right, but masks are
    not nested. Models "prune to the target sparsity from scratch each step"
    (recomputing the mask from scores that are not zero at pruned entries,
    e.g. gradients of ``weight_orig``), where the project's masks only shrink.
    """

    name = "pruned entries revived"
    family = "masks"

    def group_keep(self, scores, masks, n_prune):
        flat = np.concatenate([s.ravel() for s in scores])
        n_alive = sum(int(m.sum()) for m in masks)
        keep = self.top_k(flat, n_alive - n_prune)
        out, start = [], 0
        for m in masks:
            out.append(keep[start : start + m.size].reshape(m.shape))
            start += m.size
        return out


class ScopesSwapped(WrongBackend):
    """Global and layer-wise selection mixed up: scope "layer" pools the tensors, "global" does not.

    Models a flag read the wrong way round (``if global_: prune each layer``),
    or a library whose "global" keyword means something else; every count
    still looks plausible, only which tensors lose weights changes.
    """

    name = "scopes swapped"
    family = "masks"

    def select_masks(self, *, scores, masks, fraction, scope, rate_multipliers, rounding):
        swapped = {"layer": "global", "global": "layer"}.get(scope, scope)
        return super().select_masks(
            scores=scores,
            masks=masks,
            fraction=fraction,
            scope=swapped,
            rate_multipliers=rate_multipliers,
            rounding=rounding,
        )


class NMIgnoresAlive(WrongBackend):
    """N:M pattern chosen on the raw scores, then multiplied by the old mask.

    A group whose highest scores are already pruned keeps fewer than n alive
    entries, although it has more alive ones to keep. Models
    ``mask = nm_pattern(w) & old_mask`` instead of choosing among the alive.
    """

    name = "N:M ignores the alive mask"
    family = "masks"

    def n_m_mask(self, *, scores, n, m, alive):
        mask = super().n_m_mask(scores=scores, n=n, m=m, alive=None)
        return mask if alive is None else mask & np.asarray(alive, dtype=bool)


def _prune_units(
    params: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    fraction: float,
    norm: str,
    rounding: str,
    *,
    with_bias: bool = False,
    unit_norm: str | None = None,
    masked_rows: bool = True,
    of_all_units: bool = False,
) -> dict[str, np.ndarray]:
    """Structured pruning of hidden units (``refprune.masks.prune_units`` rebuilt on its public
    parts) with four switches, each off by default: ``with_bias`` puts the unit's bias inside its
    norm; ``unit_norm`` replaces the norm asked for ("l1", "l2" or "mean_abs"); ``masked_rows=False``
    takes the norm of the whole incoming row, dead weights included; ``of_all_units`` counts the
    units to remove from every unit of the layer instead of the alive ones."""
    n_layers = sum(1 for n in params if n.endswith(".weight"))
    new = {n: np.asarray(masks[n], dtype=bool).copy() for n in params}
    old = {n: np.asarray(masks[n], dtype=bool) for n in params}
    scores, alive = {}, {}
    kind = unit_norm or norm
    for l in range(n_layers - 1):  # every layer scored before any removal
        rows = np.asarray(params[f"layers.{l}.weight"], dtype=np.float64)
        if masked_rows:
            rows = np.where(old[f"layers.{l}.weight"], rows, 0.0)
        if with_bias:
            b = np.where(old[f"layers.{l}.bias"], params[f"layers.{l}.bias"], 0.0)
            rows = np.concatenate([rows, b[:, None]], axis=1)
        if kind == "l1":
            scores[l] = np.abs(rows).sum(axis=1)
        elif kind == "mean_abs":
            scores[l] = np.abs(rows).mean(axis=1)
        else:
            scores[l] = np.sqrt((rows * rows).sum(axis=1))
        alive[l] = (
            old[f"layers.{l}.weight"].any(axis=1)
            | old[f"layers.{l}.bias"]
            | old[f"layers.{l + 1}.weight"].any(axis=0)
        )
    for l in scores:
        if of_all_units:
            n_prune = min(fraction_to_count(fraction, alive[l].size, rounding), int(alive[l].sum()))
            kept = select_masks_count({"u": scores[l]}, {"u": alive[l]}, n_prune)["u"]
        else:
            kept = select_masks({"u": scores[l]}, {"u": alive[l]}, fraction, rounding=rounding)["u"]
        removed = alive[l] & ~kept
        new[f"layers.{l}.weight"][removed, :] = False
        new[f"layers.{l}.bias"][removed] = False
        new[f"layers.{l + 1}.weight"][:, removed] = False
    return new


class _UnitsBackend(WrongBackend):
    """``prune_units`` through ``_prune_units`` with the switches set by the class attributes."""

    switches: dict = {}

    def prune_units(self, *, params, masks, fraction, norm, rounding):
        super().prune_units(
            params=params, masks=masks, fraction=fraction, norm=norm, rounding=rounding
        )  # the reference's argument checks
        return _prune_units(params, masks, fraction, norm, rounding, **self.switches)


class UnitNormWithBias(_UnitsBackend):
    """Structured pruning scores each unit by the norm of its incoming weights *and its bias*.

    The documented unit score is the norm of the masked incoming row only.
    Models ranking a unit by the norm of all its parameters (``torch.norm``
    over ``[weight, bias]``, or a flattened per-unit parameter group), which
    reorders units whose biases are large next to their weights.
    """

    name = "unit norm includes the bias"
    family = "masks"
    switches = {"with_bias": True}


class UnitNormL1ForL2(_UnitsBackend):
    """Units always ranked by the l1 norm of their incoming weights, whatever norm is asked for.

    Right for ``norm="l1"``; for "l2" a unit with one large weight and one with
    many small ones swap places. Models a hard-coded ``p=1`` (as in
    ``torch.nn.utils.prune.ln_structured(module, "weight", amount, n=1, dim=0)``
    copied from an example) where the norm is a parameter.
    """

    name = "unit norm l1 for l2"
    family = "masks"
    switches = {"unit_norm": "l1"}


class UnitNormMeanAbsForL2(_UnitsBackend):
    """The unit norm computed as the mean |w| of the incoming row, whatever norm is asked for.

    Mean |w| ranks units as the l1 norm does (every row has the same length),
    so for "l2" it disagrees wherever l1 and l2 disagree. Models
    ``w.abs().mean(dim=1)``, the "average magnitude" filter criterion common in
    channel-pruning code, used for an l2 ranking.
    """

    name = "unit norm mean |w| for l2"
    family = "masks"
    switches = {"unit_norm": "mean_abs"}


class UnitNormOfDeadWeights(_UnitsBackend):
    """A unit's norm taken over its whole incoming row, pruned weights included.

    The documented norm is of the masked row, so a unit whose large weights
    were already pruned ranks as if they were alive. Models scoring
    ``weight_orig`` (``torch.nn.utils.prune`` keeps the unpruned values there)
    instead of the effective ``weight``.
    """

    name = "unit norm of dead weights"
    family = "masks"
    switches = {"masked_rows": False}


class UnitFractionOfAllUnits(_UnitsBackend):
    """The number of units to remove taken as a fraction of every unit of the layer, not of the
    alive ones.

    A layer with 3 of 5 units alive pruned at 0.4 loses round(2.0) = 2 units
    instead of round(1.2) = 1. Models
    ``int(amount * layer.out_features)`` recomputed every round, as
    ``FractionOfAllWeights`` does for weights.
    """

    name = "unit fraction of all units"
    family = "masks"
    switches = {"of_all_units": True}


class RoundHalfUpForRoundHalfEven(SelectionBackend):
    """round-half-even implemented as floor(x + 1/2), rounding every half-way count up.

    0.5 * 5 = 2.5 gives 3 instead of 2; 0.35 * 10 = 3.5 gives 4, right by luck.
    Models ``int(x + 0.5)`` (or JavaScript's ``Math.round``), the schoolbook
    rounding, where Python's ``round`` rounds half to even.
    """

    name = "round half up for round-half-even"
    family = "masks"

    def count(self, fraction, n_alive, n_total, rounding):
        if rounding != "round-half-even":
            return fraction_to_count(fraction, n_alive, rounding)
        return min(int(math.floor(fraction * n_alive + 0.5)), n_alive)


class CeilForRoundHalfEven(SelectionBackend):
    """round-half-even implemented as ceil: every fractional count rounds up.

    0.25 * 10 = 2.5 gives 3 instead of 2, and 0.3 * 10 = 3.0000000000000004
    gives 4. Models ``math.ceil(amount * n)``, the rule of libraries that
    never want to prune less than asked, used where round-half-even is
    documented.
    """

    name = "ceil for round-half-even"
    family = "masks"

    def count(self, fraction, n_alive, n_total, rounding):
        if rounding == "round-half-even":
            rounding = "ceil"
        return fraction_to_count(fraction, n_alive, rounding)


class CountFromExactDecimalProduct(SelectionBackend):
    """The product fraction * n taken exactly, as decimals, instead of in float64.

    0.07 * 100 is exactly 7 as decimals but 7.000000000000001 in float64, so
    ceil gives 7 where the reference gives 8; 0.1 * 35 and similar products
    move across half-way points too. Models computing the count with
    ``Decimal(str(amount)) * n`` or ``Fraction``, "more exact" than the float64
    product the specification fixes.
    """

    name = "count from the exact decimal product"
    family = "masks"

    def count(self, fraction, n_alive, n_total, rounding):
        x = Fraction(repr(float(fraction))) * n_alive
        if rounding == "floor":
            c = math.floor(x)
        elif rounding == "ceil":
            c = math.ceil(x)
        else:
            c = round(x)  # Fraction rounds half to even
        return min(int(c), n_alive)


class GlobalScopeIgnoresMultipliers(WrongBackend):
    """Under global scope every tensor joins the pool; the rate multipliers are ignored.

    A tensor asked to be pruned at half the rate (or not at all, multiplier 0)
    competes in the global pool like the others. Models
    ``torch.nn.utils.prune.global_unstructured``, which has no per-tensor
    rates, used for a "global, output layer at half rate" recipe.
    """

    name = "global scope ignores the multipliers"
    family = "masks"

    def select_masks(self, *, scores, masks, fraction, scope, rate_multipliers, rounding):
        super().select_masks(
            scores=scores,
            masks=masks,
            fraction=fraction,
            scope=scope,
            rate_multipliers=rate_multipliers,
            rounding=rounding,
        )  # checks
        if scope == "global":
            rate_multipliers = None
        return super().select_masks(
            scores=scores,
            masks=masks,
            fraction=fraction,
            scope=scope,
            rate_multipliers=rate_multipliers,
            rounding=rounding,
        )


class NMGroupsAlongFirstAxis(WrongBackend):
    """N:M groups formed along the first axis (down the columns) instead of the last.

    Where the row count is a multiple of m, the groups are m consecutive rows of
    one column. Models the layout mix-up between PyTorch's (out, in) weights,
    grouped along the input dimension, and a TensorFlow (in, out) kernel
    grouped the same way without transposing.
    """

    name = "N:M groups along the first axis"
    family = "masks"

    def n_m_mask(self, *, scores, n, m, alive):
        s = np.asarray(scores)
        if s.ndim != 2 or s.shape[0] % m:
            return super().n_m_mask(scores=scores, n=n, m=m, alive=alive)
        a = None if alive is None else np.asarray(alive).T
        return np.ascontiguousarray(super().n_m_mask(scores=s.T, n=n, m=m, alive=a).T)
