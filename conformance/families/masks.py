"""Family "masks": rounding a fraction into a count, top-k with ties, layer-wise and global
selection, nesting, structured (unit) and N:M masks."""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .. import strategies as cst
from . import EXACT, CaseSpec, Family, Property, is_half_way

ALGORITHM = """\
Mask selection, refprune.masks. Higher score = more important = kept.
fraction_to_count(fraction, n, rounding) = rounding(fraction * n), the product taken in IEEE-754
float64, rounding one of round-half-even (Python's round), floor, ceil.
keep_top_k(scores, k): the k highest scores are kept; equal scores are ordered by flat C-order
index, the lower index kept; -0.0 equals 0.0.
select_masks(scores, masks, fraction, scope, rate_multipliers, rounding): only alive entries
take part; a group with n alive entries loses fraction_to_count(f, n, rounding) of them and keeps
keep_top_k of its alive scores in C order. scope "layer": each tensor is a group with
f = fraction * multiplier; scope "global": the tensors with multiplier 1 form one pool (alive
entries concatenated in key order), a tensor with another multiplier is pruned on its own.
New masks are nested in the old ones.
prune_units: hidden unit i of layer l is scored by the l1 or l2 norm of its masked incoming row;
fraction_to_count(fraction, alive units) units with the lowest norms go (ties: lower index kept),
taking row i and bias i of layer l and column i of layer l+1 with them.
n_m_mask(scores, n, m, alive): in every run of m consecutive entries along the last axis the n
highest alive scores are kept (ties: lower index); dead entries stay dead."""

NOTES = {
    "baseline": "no particular edge: an ordinary input that any implementation should get right",
    "half-way": "fraction * n lands exactly on k + 1/2, where the rounding modes disagree",
    "float64-product": "the float64 product fraction * n differs from the exact decimal product "
    "(e.g. 0.07 * 100 = 7.000000000000001), which decides the count",
    "exact-product": "fraction * n is an integer, so every rounding mode agrees",
    "zero-count": "nothing is kept or pruned: k = 0, fraction = 0 or n = 0",
    "full-count": "everything is kept or pruned: k = n or fraction = 1",
    "ties": "equal scores straddle the threshold, so the tie rule decides the mask",
    "all-equal": "every score is equal",
    "negative-zero": "-0.0 and 0.0 both occur; they are equal scores",
    "single-element": "one entry only",
    "negative-scores": "signed scores below zero: the lowest (most negative) go first",
    "subnormal": "subnormal magnitudes, which flush-to-zero arithmetic would turn into ties",
    "near-threshold": "scores one ulp apart at the threshold",
    "multi-dim": "a 2-D array: ties are ordered by flat C-order index",
    "distinct": "all scores distinct: the answer does not depend on the tie rule",
    "layer-scope": "each tensor pruned on its own",
    "global-scope": "one pool across tensors; ties across tensors go to the earlier tensor",
    "nesting": "some entries are already pruned; they must stay pruned whatever their score, and the "
    "fraction is of the alive entries",
    "multipliers": "per-tensor rate multipliers (e.g. the output layer at half the rate)",
    "rounding-floor": "uses the floor rounding mode",
    "rounding-ceil": "uses the ceil rounding mode",
    "l1-norm": "units scored by the l1 norm of their incoming weights",
    "l2-norm": "units scored by the l2 norm of their incoming weights",
    "bias-not-in-norm": "a unit's bias would change the ranking if it were (wrongly) part of the norm",
    "layer-collapse": "a layer is left with no alive weight or unit",
    "alive-before-removal": "a unit emptied by the removals in the layer before still counts as "
    "alive: alive units, like norms, are read from the masks as given",
    "n-m": "N:M semi-structured pattern",
    "norm-disagreement": "the l1 and l2 norms (and mean |w|, which ranks as l1) rank the units "
    "differently at the cut, so the norm decides which unit goes",
    "both-axes": "both axes are multiples of m: grouping along the first axis instead of the last "
    "is possible and keeps other entries",
}


def _flags_for_count(fraction: float, n: int) -> list[str]:
    x = fraction * n
    flags = []
    if is_half_way(x):
        flags.append("half-way")
    if Fraction(x) != Fraction(repr(fraction)) * n:
        flags.append("float64-product")
    if x == int(x):
        flags.append("exact-product")
    if fraction == 0 or n == 0:
        flags.append("zero-count")
    if fraction == 1 and n > 0:
        flags.append("full-count")
    return flags


def _score_flags(s: np.ndarray, k: int) -> list[str]:
    flat = s.ravel()
    flags = []
    if flat.size == 1:
        flags.append("single-element")
    if flat.size > 1 and np.all(flat == flat[0]):
        flags.append("all-equal")
    if np.any(np.signbit(flat) & (flat == 0)) and np.any(~np.signbit(flat) & (flat == 0)):
        flags.append("negative-zero")
    if np.any(flat < 0):
        flags.append("negative-scores")
    if np.any((flat != 0) & (np.abs(flat) < np.finfo(np.float64).tiny)):
        flags.append("subnormal")
    if s.ndim > 1:
        flags.append("multi-dim")
    if np.unique(flat).size == flat.size:
        flags.append("distinct")
    if 0 < k < flat.size:
        thr = np.sort(flat)[::-1][k - 1]
        if np.sum(flat == thr) > 1 and np.sum(flat >= thr) > k:
            flags.append("ties")
        nxt = np.sort(flat)[::-1][k]
        if nxt != thr and np.nextafter(nxt, np.inf) == thr:
            flags.append("near-threshold")
    if k == 0:
        flags.append("zero-count")
    if k == flat.size:
        flags.append("full-count")
    return flags


def _alive(tree: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {n: np.ones(np.shape(v), dtype=bool) for n, v in tree.items()}


def _cases() -> list[CaseSpec]:
    out: list[CaseSpec] = []

    # fraction_to_count -------------------------------------------------------
    pairs = [
        (0.5, 5),
        (0.5, 3),
        (0.25, 10),
        (0.35, 10),
        (0.07, 100),
        (0.1, 30),
        (0.15, 10),
        (0.85, 10),
        (0.2, 7),
        (0.99, 1000),
        (0.5, 1),
        (0.0, 0),
        (1.0, 0),
        (0.0, 17),
        (1.0, 17),
        (0.2, 1_000_000_007),
        (0.375, 4),
        (1 / 3, 3),
        (2 / 3, 9),
    ]
    for fraction, n in pairs:
        for rounding in ("round-half-even", "floor", "ceil"):
            flags = _flags_for_count(fraction, n)
            if rounding != "round-half-even":
                flags.append(f"rounding-{rounding}")
            if not flags:
                flags = ["baseline"]
            x = fraction * n
            out.append(
                CaseSpec(
                    key=f"fraction_to_count/{fraction!r}/{n}/{rounding}",
                    op="fraction_to_count",
                    comment=f"{rounding}({fraction!r} * {n}); the float64 product is {x!r}",
                    flags=flags,
                    inputs={"fraction": fraction, "n": n, "rounding": rounding},
                )
            )

    # keep_top_k ----------------------------------------------------------------
    tiny = 5e-324
    one_up = float(np.nextafter(1.0, 2.0))
    arrays = {
        "distinct": np.array([0.3, -1.2, 2.5, 0.0, 1.1, -0.4]),
        "ties-middle": np.array([0.5, 0.2, 0.5, 0.9, 0.5, 0.1]),
        "all-equal": np.full(7, 0.25),
        "all-zero-signed": np.array([0.0, -0.0, 0.0, -0.0, -0.0]),
        "negzero-vs-zero": np.array([-0.0, 1.0, 0.0, -1.0]),
        "single": np.array([3.5]),
        "negative": np.array([-3.0, -1.0, -2.0, -1.0, -5.0]),
        "subnormal": np.array([tiny, 0.0, 2 * tiny, tiny, -tiny]),
        "near-threshold": np.array([1.0, one_up, 1.0, float(np.nextafter(1.0, 0.0)), 2.0]),
        "matrix-ties": np.array([[0.1, 0.7, 0.7], [0.7, 0.2, 0.1]]),
        "matrix-distinct": np.array([[4.0, -1.0], [2.5, 3.0], [0.5, -2.0]]),
        "huge": np.array([1e308, -1e308, 1e308, 1.0]),
        "two-values": np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]),
    }
    for name, s in arrays.items():
        n = s.size
        for k in sorted({0, 1, n // 2, max(n - 1, 0), n, min(3, n)}):
            flags = _score_flags(s, k) or ["baseline"]
            out.append(
                CaseSpec(
                    key=f"keep_top_k/{name}/k={k}",
                    op="keep_top_k",
                    comment=f"keep the {k} highest of {n} scores ({name.replace('-', ' ')})",
                    flags=flags,
                    inputs={"scores": s, "k": k},
                )
            )

    # select_masks ----------------------------------------------------------------
    s2 = {
        "layers.0.weight": np.array([[0.4, 0.1, 0.3], [0.1, 0.8, 0.2]]),
        "layers.1.weight": np.array([[0.1, 0.9], [0.5, 0.1], [0.1, 0.3]]),
    }
    dead = {
        "layers.0.weight": np.array([[True, True, False], [True, False, True]]),
        "layers.1.weight": np.array([[True, True], [False, True], [True, True]]),
    }
    distinct = {
        "layers.0.weight": np.array([[0.41, 0.12, 0.33], [0.15, 0.86, 0.27]]),
        "layers.1.weight": np.array([[0.11, 0.94], [0.52, 0.18], [0.07, 0.31]]),
    }
    sel = [
        ("tied-layer-half", s2, None, 0.5, "layer", None, "round-half-even", "half of each tensor"),
        (
            "tied-global-half",
            s2,
            None,
            0.5,
            "global",
            None,
            "round-half-even",
            "half of the pool; the 0.1 ties span both tensors",
        ),
        (
            "tied-global-third",
            s2,
            None,
            1 / 3,
            "global",
            None,
            "round-half-even",
            "a third of the pool of 12",
        ),
        (
            "distinct-layer-0.25",
            distinct,
            None,
            0.25,
            "layer",
            None,
            "round-half-even",
            "a quarter of each tensor: 1.5 -> 2 and 1.5 -> 2 (half-even)",
        ),
        (
            "distinct-global-0.25",
            distinct,
            None,
            0.25,
            "global",
            None,
            "round-half-even",
            "a quarter of the pool of 12",
        ),
        (
            "dead-layer-half",
            s2,
            dead,
            0.5,
            "layer",
            None,
            "round-half-even",
            "half of the alive entries; dead 0.3 and 0.8 stay dead",
        ),
        (
            "dead-global-half",
            s2,
            dead,
            0.5,
            "global",
            None,
            "round-half-even",
            "half of the 9 alive entries of the pool",
        ),
        ("dead-global-floor", s2, dead, 0.5, "global", None, "floor", "floor(4.5) = 4"),
        ("dead-global-ceil", s2, dead, 0.5, "global", None, "ceil", "ceil(4.5) = 5"),
        (
            "multipliers-layer",
            distinct,
            None,
            0.5,
            "layer",
            {"layers.1.weight": 0.5},
            "round-half-even",
            "the second tensor at half the rate (0.25)",
        ),
        (
            "multipliers-global",
            distinct,
            None,
            0.5,
            "global",
            {"layers.1.weight": 0.5},
            "round-half-even",
            "the first tensor alone in the pool, the second on its own at 0.25",
        ),
        (
            "multiplier-zero-global",
            distinct,
            None,
            0.5,
            "global",
            {"layers.1.weight": 0.0},
            "round-half-even",
            "a zero multiplier leaves the second tensor untouched",
        ),
        ("fraction-zero", s2, dead, 0.0, "global", None, "round-half-even", "nothing pruned"),
        (
            "fraction-one",
            s2,
            dead,
            1.0,
            "layer",
            None,
            "round-half-even",
            "everything alive pruned: every layer collapses",
        ),
        (
            "signed-global",
            {
                "layers.0.weight": np.array([[-0.0, 0.0], [-1.0, 2.0]]),
                "layers.1.weight": np.array([[0.0, -0.0, -1.0]]),
            },
            None,
            0.5,
            "global",
            None,
            "round-half-even",
            "signed scores with -0.0/0.0 ties across tensors",
        ),
    ]
    for key, scores, masks, fraction, scope, mult, rounding, comment in sel:
        masks = masks if masks is not None else _alive(scores)
        flags = [f"{scope}-scope"]
        if masks is not None and not all(m.all() for m in masks.values()):
            flags.append("nesting")
        if mult:
            flags.append("multipliers")
        if rounding != "round-half-even":
            flags.append(f"rounding-{rounding}")
        pooled = np.concatenate([v[masks[n]] for n, v in scores.items()])
        if np.unique(pooled).size < pooled.size:
            flags.append("ties")
        else:
            flags.append("distinct")
        if fraction == 0:
            flags.append("zero-count")
        if fraction == 1:
            flags += ["full-count", "layer-collapse"]
        if np.any(np.signbit(pooled) & (pooled == 0)):
            flags.append("negative-zero")
        out.append(
            CaseSpec(
                key=f"select_masks/{key}",
                op="select_masks",
                comment=comment,
                flags=flags,
                inputs={
                    "scores": scores,
                    "masks": masks,
                    "fraction": fraction,
                    "scope": scope,
                    "rate_multipliers": mult,
                    "rounding": rounding,
                },
            )
        )

    # prune_units -----------------------------------------------------------------
    p = {
        "layers.0.weight": np.array([[1.0, -2.0], [0.5, 0.5], [-3.0, 0.0], [1.5, -1.5]]),
        "layers.0.bias": np.array([0.1, -0.2, 0.3, 0.0]),
        "layers.1.weight": np.array(
            [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.0, 1.0, 0.5], [0.2, 0.2, 0.2, 0.2]]
        ),
        "layers.1.bias": np.array([0.0, 0.5, -0.5]),
        "layers.2.weight": np.array([[1.0, -1.0, 2.0], [0.0, 3.0, -1.0]]),
        "layers.2.bias": np.array([0.0, 0.0]),
    }
    # layer 0 unit norms: l1 = 3, 1, 3, 3 (ties); l2 = sqrt5, sqrt.5, 3, sqrt4.5
    masked = _alive(p)
    masked["layers.0.weight"] = masked["layers.0.weight"].copy()
    masked["layers.0.weight"][2, 0] = False  # unit 2's l1 drops from 3 to 0
    for key, masks, fraction, norm, rounding, comment, flags in [
        (
            "l1-half",
            _alive(p),
            0.5,
            "l1",
            "round-half-even",
            "half the units of each hidden layer by l1 norm; three units of layer 0 tie at 3",
            ["ties"],
        ),
        (
            "l2-half",
            _alive(p),
            0.5,
            "l2",
            "round-half-even",
            "half the units by l2 norm",
            ["distinct"],
        ),
        (
            "l1-quarter-ceil",
            _alive(p),
            0.25,
            "l1",
            "ceil",
            "ceil(0.25 * 4) = 1, ceil(0.75) = 1",
            ["rounding-ceil", "ties"],
        ),
        (
            "l1-masked-row",
            masked,
            0.25,
            "l1",
            "round-half-even",
            "the norm is of the masked row: unit 2 of layer 0 scores 0",
            ["nesting"],
        ),
        (
            "l2-all",
            _alive(p),
            1.0,
            "l2",
            "round-half-even",
            "every hidden unit removed",
            ["full-count", "layer-collapse"],
        ),
        ("l1-none", _alive(p), 0.0, "l1", "round-half-even", "nothing removed", ["zero-count"]),
    ]:
        out.append(
            CaseSpec(
                key=f"prune_units/{key}",
                op="prune_units",
                comment=comment,
                flags=sorted(
                    set(
                        flags
                        + [f"{norm}-norm"]
                        + ([f"rounding-{rounding}"] if rounding != "round-half-even" else [])
                    )
                ),
                inputs={
                    "params": p,
                    "masks": masks,
                    "fraction": fraction,
                    "norm": norm,
                    "rounding": rounding,
                },
            )
        )

    big_bias = {
        "layers.0.weight": np.array([[0.5, -0.5], [1.0, 0.5]]),
        "layers.0.bias": np.array([2.0, 0.0]),
        "layers.1.weight": np.array([[1.0, -1.0]]),
        "layers.1.bias": np.array([0.25]),
    }
    out.append(
        CaseSpec(
            key="prune_units/bias-not-in-norm",
            op="prune_units",
            comment="unit 0 has the smaller incoming l1 norm (1 < 1.5) but the larger bias: the bias is not "
            "part of the norm, so unit 0 goes",
            flags=["l1-norm", "bias-not-in-norm"],
            inputs={
                "params": big_bias,
                "masks": _alive(big_bias),
                "fraction": 0.5,
                "norm": "l1",
                "rounding": "round-half-even",
            },
        )
    )

    # l1 and l2 rank the units of layer 0 differently at the cut: l1 = 3, 4.5, 8, 7;
    # l2 = 3, 2.598, 5.657, 5.196 (mean |w| ranks as l1: every row has three entries)
    against = {
        "layers.0.weight": np.array(
            [[3.0, 0.0, 0.0], [1.5, -1.5, 1.5], [4.0, 4.0, 0.0], [-5.0, 1.0, 1.0]]
        ),
        "layers.0.bias": np.array([0.0, 0.5, -0.5, 0.25]),
        "layers.1.weight": np.array([[1.0, -1.0, 0.5, 2.0], [0.5, 1.0, -2.0, 1.0]]),
        "layers.1.bias": np.array([0.0, 0.1]),
    }
    for norm, gone, other in [("l2", 1, 0), ("l1", 0, 1)]:
        out.append(
            CaseSpec(
                key=f"prune_units/{norm}-ranks-against-{'l1' if norm == 'l2' else 'l2'}",
                op="prune_units",
                comment=f"one unit of four goes: by the {norm} norm unit {gone}, by the other norm (or by "
                f"mean |w|{' for l2' if norm == 'l2' else ''}) unit {other} would",
                flags=[f"{norm}-norm", "norm-disagreement", "distinct"],
                inputs={
                    "params": against,
                    "masks": _alive(against),
                    "fraction": 0.25,
                    "norm": norm,
                    "rounding": "round-half-even",
                },
            )
        )

    # Unit 0 of layer 1 has one alive incoming weight, from unit 0 of layer 0, and no alive
    # bias or outgoing weight. Removing unit 0 of layer 0 empties its row; it still counts
    # as alive in layer 1, because alive units, like norms, are read before anything goes.
    chain = {
        "layers.0.weight": np.array([[0.1, 0.1], [1.0, 1.0]]),
        "layers.0.bias": np.zeros(2),
        "layers.1.weight": np.array([[0.5, 0.0], [1.0, 1.0], [1.5, 1.5]]),
        "layers.1.bias": np.zeros(3),
        "layers.2.weight": np.array([[1.0, 1.0, 1.0]]),
        "layers.2.bias": np.zeros(1),
    }
    chain_masks = _alive(chain)
    chain_masks["layers.1.weight"] = np.array([[True, False], [True, True], [True, True]])
    chain_masks["layers.1.bias"] = np.array([False, True, True])
    chain_masks["layers.2.weight"] = np.array([[False, True, True]])
    out.append(
        CaseSpec(
            key="prune_units/alive-before-removal",
            op="prune_units",
            comment="unit 0 of layer 1 loses its only alive weight when unit 0 of layer 0 goes, but "
            "alive units are read before anything is removed: layer 1 has 3 alive units and "
            "floor(0.5 * 3) = 1 goes, unit 0 (norm 0.5); read after, unit 1 would go",
            flags=["alive-before-removal", "l1-norm", "nesting", "rounding-floor"],
            inputs={
                "params": chain,
                "masks": chain_masks,
                "fraction": 0.5,
                "norm": "l1",
                "rounding": "floor",
            },
        )
    )

    # n_m_mask ----------------------------------------------------------------------
    w = np.array(
        [[0.1, -0.9, 0.5, 0.3, 0.0, 0.2, 0.2, 0.2], [1.0, 1.0, 1.0, 1.0, -0.5, 0.7, -0.0, 0.0]]
    )
    alive = np.ones(w.shape, dtype=bool)
    alive[0, 1] = alive[0, 2] = alive[1, 4] = alive[1, 5] = alive[1, 6] = False
    for key, n, m, al, comment, flags in [
        (
            "2of4",
            2,
            4,
            None,
            "2:4 with ties inside groups (0.2 x 3, 1.0 x 4)",
            ["ties", "negative-zero"],
        ),
        ("1of4", 1, 4, None, "1:4", ["ties"]),
        ("2of2", 2, 2, None, "keep everything", ["full-count"]),
        ("0of4", 0, 4, None, "keep nothing", ["zero-count", "layer-collapse"]),
        ("1of8", 1, 8, None, "one group per row", ["ties"]),
        (
            "2of4-alive",
            2,
            4,
            alive,
            "dead entries stay dead; a group with one alive keeps it",
            ["nesting", "ties"],
        ),
        ("3of4-alive", 3, 4, alive, "3:4 with dead entries", ["nesting", "ties"]),
    ]:
        out.append(
            CaseSpec(
                key=f"n_m_mask/{key}",
                op="n_m_mask",
                comment=comment,
                flags=sorted(set(flags + ["n-m", "multi-dim"])),
                inputs={"scores": w, "n": n, "m": m, "alive": al},
            )
        )
    square = np.array(
        [
            [0.9, 0.1, 0.8, 0.2],
            [0.7, 0.6, 0.3, 0.4],
            [0.5, 0.95, 0.15, 0.05],
            [0.25, 0.35, 0.45, 0.55],
        ]
    )
    out.append(
        CaseSpec(
            key="n_m_mask/2of4-both-axes",
            op="n_m_mask",
            comment="2:4 on a 4 x 4 array: groups run along the last axis (rows); "
            "groups down the columns would keep other entries",
            flags=["n-m", "multi-dim", "both-axes", "distinct"],
            inputs={"scores": square, "n": 2, "m": 4, "alive": None},
        )
    )
    return out


def tolerance(op: str, expected: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Exact, with what "up to ties" means for each mask operation (used only under a
    profile whose ties are unspecified)."""
    if op == "keep_top_k":
        return dict(EXACT, up_to_ties={"scores": "scores"})
    if op == "n_m_mask":
        return dict(EXACT, up_to_ties={"scores": "scores", "alive": "alive"})
    if op == "select_masks":
        pooled = inputs["scope"] == "global" and not inputs.get("rate_multipliers")
        return dict(EXACT, up_to_ties={"scores": "scores", "alive": "masks", "pooled": pooled})
    if op == "prune_units":  # computed only when a comparison needs them (see compare)
        return dict(
            EXACT, tie_alternatives=functools.partial(unit_tie_alternatives, inputs, expected)
        )
    return dict(EXACT)


def _unit_norms(params, masks, layer: int, norm: str) -> np.ndarray:
    w = np.where(masks[f"layers.{layer}.weight"], params[f"layers.{layer}.weight"], 0.0)
    return np.abs(w).sum(axis=1) if norm == "l1" else np.sqrt((w * w).sum(axis=1))


def _permute_unit(
    tree: dict[str, np.ndarray], layer: int, perm: np.ndarray
) -> dict[str, np.ndarray]:
    out = dict(tree)
    out[f"layers.{layer}.weight"] = tree[f"layers.{layer}.weight"][perm]
    out[f"layers.{layer}.bias"] = tree[f"layers.{layer}.bias"][perm]
    out[f"layers.{layer + 1}.weight"] = tree[f"layers.{layer + 1}.weight"][:, perm]
    return out


def unit_tie_alternatives(inputs: dict[str, Any], expected: Any, cap: int = 120) -> list[Any]:
    """The reference's answers when tied hidden units (equal norms) are taken in other orders.

    Units of equal norm are permuted among themselves, the reference prunes the permuted
    network, and the result is permuted back. Empty when there are no ties, or more than
    ``cap`` orders to try.
    """
    import itertools

    from ..backend import ReferenceBackend

    params, masks = inputs["params"], inputs["masks"]
    n_layers = sum(1 for n in params if n.endswith(".weight"))
    per_layer = []
    for l in range(n_layers - 1):
        norms = _unit_norms(params, masks, l, inputs["norm"])
        groups = [np.flatnonzero(norms == v) for v in np.unique(norms)]
        groups = [g for g in groups if g.size > 1]
        orders = []
        for combo in itertools.product(*[itertools.permutations(g) for g in groups]):
            perm = np.arange(norms.size)
            for g, order in zip(groups, combo):
                perm[g] = order
            orders.append(perm)
        per_layer.append(orders)
    if all(len(o) <= 1 for o in per_layer) or np.prod([len(o) for o in per_layer]) > cap:
        return []
    ref = ReferenceBackend()
    seen, out = [], []
    for perms in itertools.product(*per_layer):
        p, m = dict(params), dict(masks)
        for l, perm in enumerate(perms):
            p, m = _permute_unit(p, l, perm), _permute_unit(m, l, perm)
        got = ref.prune_units(**dict(inputs, params=p, masks=m))
        for l, perm in reversed(list(enumerate(perms))):
            got = _permute_unit(got, l, np.argsort(perm))
        key = b"".join(np.packbits(got[n]).tobytes() for n in sorted(got))
        if key not in seen and not all(np.array_equal(got[n], expected[n]) for n in got):
            seen.append(key)
            out.append(got)
    return out


# ----------------------------------------------------------------------------- properties
def _fraction_to_count_differential(c, ex):
    fraction, n = ex
    for rounding in cst.ROUNDINGS:
        c.agree("fraction_to_count", fraction=fraction, n=n, rounding=rounding)


def _fraction_to_count_order(c, ex):
    fraction, n = ex
    lo = c.call("fraction_to_count", fraction=fraction, n=n, rounding="floor")
    mid = c.call("fraction_to_count", fraction=fraction, n=n, rounding="round-half-even")
    hi = c.call("fraction_to_count", fraction=fraction, n=n, rounding="ceil")
    c.require(
        0 <= lo <= mid <= hi <= n and hi - lo <= 1,
        f"expected 0 <= floor <= round <= ceil <= n and ceil - floor <= 1, got {lo}, {mid}, {hi} "
        f"for n = {n}",
    )


def _top_k_example():
    return st.tuples(cst.scores(), st.data())


def _keep_top_k_differential(c, ex):
    s, data = ex
    c.agree("keep_top_k", scores=s, k=data.draw(cst.counts(s.size), label="k"))


def _keep_top_k_count(c, ex):
    s, data = ex
    k = data.draw(cst.counts(s.size), label="k")
    mask = np.asarray(c.call("keep_top_k", scores=s, k=k))
    c.require(
        mask.shape == s.shape and mask.dtype == np.bool_,
        f"expected a bool mask of shape {s.shape}, got {mask.dtype} {mask.shape}",
    )
    c.require(int(mask.sum()) == k, f"expected {k} kept, got {int(mask.sum())}")
    if 0 < k < s.size:
        c.require(
            s[mask].min() >= s[~mask].max(),
            lambda: f"a kept score {s[mask].min()!r} is below a pruned one {s[~mask].max()!r}",
        )


def _keep_top_k_scaling(c, ex):
    s, data = ex
    k = data.draw(cst.counts(s.size), label="k")
    factor = data.draw(st.sampled_from([2.0, 4.0, 1024.0, 1.0]), label="factor")
    a = np.asarray(c.call("keep_top_k", scores=s, k=k))
    b = np.asarray(c.call("keep_top_k", scores=s * factor, k=k))
    c.require(
        np.array_equal(a, b) or (c.tie_check is not None and c.tie_check(a, b, s, None)),
        f"scaling the scores by {factor} changed the mask: {a.astype(int).tolist()} -> "
        f"{b.astype(int).tolist()}",
    )


def _keep_top_k_permutation(c, ex):
    s, data = ex
    k = data.draw(cst.counts(s.size), label="k")
    perm = np.array(data.draw(st.permutations(range(s.size)), label="perm"))
    flat = s.ravel()
    a = np.asarray(c.call("keep_top_k", scores=flat, k=k))
    b = np.asarray(c.call("keep_top_k", scores=flat[perm], k=k))
    c.require(
        np.array_equal(a[perm], b),
        f"permuting distinct scores by {perm.tolist()} did not permute the mask: "
        f"mask(s)[perm] = {a[perm].astype(int).tolist()}, mask(s[perm]) = {b.astype(int).tolist()}",
    )


@st.composite
def _edge_pool_scores(draw):
    """Small arrays whose values come from a pool holding 0.0 and -0.0 and up to two of the
    smallest subnormals and +-1: every threshold lands on a tie of such values."""
    pool = [0.0, -0.0] + draw(
        st.lists(st.sampled_from([5e-324, -5e-324, 1.0, -1.0]), max_size=2, unique=True)
    )
    shape = draw(cst.shapes(max_side=4))
    values = draw(
        st.lists(st.sampled_from(pool), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
    )
    return np.array(values, dtype=np.float64).reshape(shape)


def _keep_top_k_every_k(c, s):
    for k in range(s.size + 1):
        c.agree("keep_top_k", scores=s, k=k)


@st.composite
def _selection(draw, ties: bool = True):
    scores = draw(cst.param_scores(ties=ties))
    masks = {n: draw(cst.masks(v.shape)) for n, v in scores.items()}
    scope = draw(st.sampled_from(["layer", "global"]))
    mult = None
    if draw(st.booleans()) and len(scores) > 1:
        last = list(scores)[-1]
        mult = {last: draw(st.sampled_from([0.0, 0.5, 2.0]))}
    fraction = draw(cst.fractions())
    if mult:
        fraction = min(fraction, 1.0 / max(mult.values())) if max(mult.values()) > 0 else fraction
    return {
        "scores": scores,
        "masks": masks,
        "fraction": fraction,
        "scope": scope,
        "rate_multipliers": mult,
        "rounding": draw(cst.roundings()),
    }


def _select_differential(c, ex):
    c.agree("select_masks", **ex)


@st.composite
def _global_with_multiplier(draw):
    scores = draw(cst.param_scores(n_tensors=(2, 3)))
    masks = {n: draw(cst.masks(v.shape)) for n, v in scores.items()}
    last = list(scores)[-1]
    return {
        "scores": scores,
        "masks": masks,
        "fraction": draw(st.sampled_from([0.2, 0.25, 0.4, 0.5])),
        "scope": "global",
        "rate_multipliers": {last: draw(st.sampled_from([0.0, 0.5, 2.0]))},
        "rounding": draw(cst.roundings()),
    }


def _select_every_scope(c, ex):
    """The same tensors under layer scope, global scope, and global scope with a multiplier."""
    for scope, mult in (("layer", None), ("global", None), ("global", ex["rate_multipliers"])):
        c.agree("select_masks", **dict(ex, scope=scope, rate_multipliers=mult))


def _select_nesting_counts(c, ex):
    new = c.call("select_masks", **ex)
    c.require(
        set(new) == set(ex["scores"]),
        f"expected masks for {sorted(ex['scores'])}, got {sorted(new)}",
    )
    for n, old in ex["masks"].items():
        m = np.asarray(new[n])
        c.require(
            m.dtype == np.bool_ and m.shape == old.shape,
            f"{n}: expected a bool mask of shape {old.shape}",
        )
        c.require(
            not np.any(m & ~old),
            lambda: f"{n}: a pruned entry came back at {np.argwhere(m & ~old)[0].tolist()}",
        )
    mult = ex["rate_multipliers"] or {}
    if ex["scope"] == "layer":
        groups = [([n], ex["fraction"] * mult.get(n, 1.0)) for n in ex["scores"]]
    else:
        pool = [n for n in ex["scores"] if mult.get(n, 1.0) == 1.0]
        groups = ([(pool, ex["fraction"])] if pool else []) + [
            ([n], ex["fraction"] * mult[n]) for n in ex["scores"] if n not in pool
        ]
    for names, f in groups:
        alive = sum(int(ex["masks"][n].sum()) for n in names)
        after = sum(int(np.asarray(new[n]).sum()) for n in names)
        want = c.ref("fraction_to_count", fraction=f, n=alive, rounding=ex["rounding"])
        c.require(
            alive - after == want,
            f"{names}: pruned {alive - after} of {alive} alive entries, expected "
            f"{ex['rounding']}({f!r} * {alive}) = {want}",
        )


def _select_twice_nested(c, ex):
    first = c.call("select_masks", **ex)
    second = c.call("select_masks", **dict(ex, masks={n: np.asarray(m) for n, m in first.items()}))
    for n in first:
        c.require(
            not np.any(np.asarray(second[n]) & ~np.asarray(first[n])),
            f"{n}: a second pruning step revived an entry the first had pruned",
        )


@st.composite
def _n_m_example(draw):
    m = draw(st.sampled_from([1, 2, 4, 8]))
    rows = draw(st.sampled_from([1, 2, 3, m]))  # m rows: groups along either axis fit
    groups = draw(st.integers(1, 3))
    s = draw(cst.scores((rows, m * groups)))
    n = draw(st.integers(0, m))
    alive = draw(cst.masks(s.shape)) if draw(st.booleans()) else None
    return {"scores": s, "n": n, "m": m, "alive": alive}


def _n_m_differential(c, ex):
    c.agree("n_m_mask", **ex)


def _n_m_counts(c, ex):
    mask = np.asarray(c.call("n_m_mask", **ex))
    m, n = ex["m"], ex["n"]
    alive = np.ones(ex["scores"].shape, bool) if ex["alive"] is None else ex["alive"]
    kept = mask.reshape(-1, m).sum(axis=1)
    want = np.minimum(n, alive.reshape(-1, m).sum(axis=1))
    c.require(
        np.array_equal(kept, want), f"kept per group {kept.tolist()}, expected {want.tolist()}"
    )
    c.require(not np.any(mask & ~alive), "a dead entry was kept")


@st.composite
def _units_example(draw):
    sizes = draw(st.lists(st.integers(1, 5), min_size=3, max_size=4))
    p = draw(cst.params(sizes))
    masks = {n: draw(cst.masks(v.shape)) for n, v in p.items()}
    return {
        "params": p,
        "masks": masks,
        "fraction": draw(cst.fractions()),
        "norm": draw(st.sampled_from(["l1", "l2"])),
        "rounding": draw(cst.roundings()),
    }


def _units_differential(c, ex):
    c.agree("prune_units", **ex)


@st.composite
def _units_wide_example(draw):
    """Networks whose hidden units have at least two incoming weights and whose hidden layers
    have at least three units, so the two norms can rank them differently."""
    sizes = (
        [draw(st.integers(2, 5))]
        + draw(st.lists(st.integers(3, 5), min_size=1, max_size=2))
        + [draw(st.integers(1, 4))]
    )
    p = draw(cst.params(sizes, zeros=False))
    masks = {n: draw(cst.masks(v.shape)) for n, v in p.items()}
    return {
        "params": p,
        "masks": masks,
        "fraction": 0.5,
        "norm": "l2",
        "rounding": "round-half-even",
    }


def _units_every_norm_and_cut(c, ex):
    """Both norms, and cuts at several fractions, on the same network: the unit that goes
    differs between l1 and l2 only at some cuts."""
    for norm in ("l1", "l2"):
        for fraction in (0.25, 0.5, 0.75):
            c.agree(
                "prune_units", **dict(ex, norm=norm, fraction=fraction, rounding="round-half-even")
            )


def _fraction_to_count_decimal(c, ex):
    fraction, n = ex
    for rounding in cst.ROUNDINGS:
        c.agree("fraction_to_count", fraction=fraction, n=n, rounding=rounding)


PROPERTIES = [
    Property(
        "masks/fraction-to-count-differential",
        ("fraction_to_count",),
        "fraction_to_count equals the reference for every rounding mode",
        st.tuples(cst.fractions(), st.integers(0, 10**6)),
        _fraction_to_count_differential,
    ),
    Property(
        "masks/fraction-to-count-decimal-products",
        ("fraction_to_count",),
        "fraction_to_count equals the reference for every rounding mode on k/100 times a "
        "multiple of 100, whose float64 product is often an ulp off the integer k n / 100",
        st.tuples(
            st.integers(1, 99).map(lambda k: k / 100), st.integers(1, 50).map(lambda m: 100 * m)
        ),
        _fraction_to_count_decimal,
    ),
    Property(
        "masks/fraction-to-count-order",
        ("fraction_to_count",),
        "0 <= floor <= round-half-even <= ceil <= n, and ceil - floor <= 1",
        st.tuples(cst.fractions(), st.integers(0, 10**6)),
        _fraction_to_count_order,
    ),
    Property(
        "masks/keep-top-k-differential",
        ("keep_top_k",),
        "keep_top_k equals the reference on scores with ties",
        _top_k_example(),
        _keep_top_k_differential,
    ),
    Property(
        "masks/keep-top-k-edge-ties",
        ("keep_top_k",),
        "keep_top_k equals the reference for every k on arrays of signed zeros, subnormals "
        "and +-1, where only the tie rule decides",
        _edge_pool_scores(),
        _keep_top_k_every_k,
    ),
    Property(
        "masks/keep-top-k-count",
        ("keep_top_k",),
        "keep_top_k keeps exactly k, and no pruned score exceeds a kept one",
        _top_k_example(),
        _keep_top_k_count,
    ),
    Property(
        "masks/keep-top-k-scaling",
        ("keep_top_k",),
        "scaling the scores by a positive power of two leaves the mask unchanged",
        st.tuples(cst.scores(bound=1e300), st.data()),
        _keep_top_k_scaling,
    ),
    Property(
        "masks/keep-top-k-permutation",
        ("keep_top_k",),
        "with distinct scores the mask permutes with its input",
        st.tuples(cst.distinct_scores(), st.data()),
        _keep_top_k_permutation,
    ),
    Property(
        "masks/select-differential",
        ("select_masks",),
        "select_masks equals the reference (layer and global scope, multipliers, dead entries)",
        _selection(),
        _select_differential,
    ),
    Property(
        "masks/select-every-scope-differential",
        ("select_masks",),
        "select_masks equals the reference on the same tensors under layer scope, global "
        "scope, and global scope with a rate multiplier on the last tensor (pruned on its "
        "own, outside the pool)",
        _global_with_multiplier(),
        _select_every_scope,
    ),
    Property(
        "masks/select-nesting-counts",
        ("select_masks",),
        "new masks are nested in the old and each group loses fraction_to_count of its alive entries",
        _selection(),
        _select_nesting_counts,
    ),
    Property(
        "masks/select-twice-nested",
        ("select_masks",),
        "a second pruning step never revives what the first pruned",
        _selection(),
        _select_twice_nested,
    ),
    Property(
        "masks/n-m-differential",
        ("n_m_mask",),
        "n_m_mask equals the reference",
        _n_m_example(),
        _n_m_differential,
    ),
    Property(
        "masks/n-m-counts",
        ("n_m_mask",),
        "every group of m keeps min(n, alive in the group) entries, never a dead one",
        _n_m_example(),
        _n_m_counts,
    ),
    Property(
        "masks/prune-units-differential",
        ("prune_units",),
        "prune_units equals the reference",
        _units_example(),
        _units_differential,
    ),
    Property(
        "masks/prune-units-every-norm-and-cut",
        ("prune_units",),
        "prune_units equals the reference for both norms at three fractions of one network",
        _units_wide_example(),
        _units_every_norm_and_cut,
    ),
]

FAMILY = Family(
    name="masks",
    algorithm=ALGORITHM,
    notes=NOTES,
    cases=_cases,
    tolerance=tolerance,
    properties=PROPERTIES,
)
