"""Family "profiles": keep-masks computed the way popular pruning libraries compute them.

A backend claims one profile (``--profile``); only that profile's cases run for it.
The expected masks come from ``conformance.conventions`` (each rule cited there and in
docs/profiles.md), and masks are compared with the profile's own tie rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from .. import strategies as cst
from ..conventions import get_profile, tfmot_keep_count
from . import EXACT, CaseSpec, Family, Property

ALGORITHM = """\
profile_mask(scores, amount, alive, scope, ignore) = conformance.conventions.get_profile(P)
.keep_masks(scores, amount, alive=alive, scope=scope, ignore=ignore) for the profile P named by
the case's profile:P flag. Each case runs only for a backend that claims profile P.
reference: prune fraction_to_count(amount, n_alive) of the alive entries, keep the highest signed
scores, ties to the lower flat index.
torch (torch.nn.utils.prune): prune round-half-even(amount * n_alive) in float64, an int amount is
a count, rank |score|, ties unspecified (masks compared up to ties).
tfmot (TF-MOT prune_low_magnitude): keep k = max(round-half-even(n * (1 - s)), 1) in float32, keep
every |w| >= the k-th largest |w| of the masked tensor (ties kept; a subnormal |w| reads as 0, as
TensorFlow's CPU kernels flush it), layer scope only.
open-lth (sparse_global): m = ceil(fraction * n_alive) counting ignored tensors too, threshold =
sorted alive |w| at index m, keep |w| > threshold (m + 1 plus all ties go), global scope only.
shrinkbench: amount is the fraction KEPT, threshold = numpy linear quantile of |w| at
1 - amount, keep |w| >= threshold (ties kept)."""

NOTES = {
    "profile:reference": "expected masks under the reference profile (this project's rule)",
    "profile:torch": "expected masks under the torch profile (torch.nn.utils.prune)",
    "profile:tfmot": "expected masks under the tfmot profile (TF Model Optimization)",
    "profile:open-lth": "expected masks under the open-lth profile (facebookresearch/open_lth)",
    "profile:shrinkbench": "expected masks under the shrinkbench profile (JJGO/shrinkbench)",
    "layer-scope": "each tensor pruned on its own",
    "global-scope": "one threshold or count across the tensors",
    "ties": "equal (magnitudes of) scores straddle the threshold",
    "half-way": "amount * n lands on k + 1/2",
    "float32-count": "the count computed in float32 differs from the float64 one (n = 10, s = 0.85)",
    "count-amount": "an integer amount, which torch reads as a count",
    "zero-amount": "amount 0 (open-lth still prunes one weight)",
    "nesting": "some entries are already pruned (alive mask given)",
    "ignore": "a tensor is carried along unpruned (open-lth still counts it as alive)",
    "negative-scores": "signed scores: libraries rank |score|, the reference the signed score",
    "all-equal": "every score equal",
    "baseline": "an ordinary input",
    "subnormal": "subnormal scores, which TensorFlow's CPU kernels read as 0 (the tfmot profile)",
}

_S = {
    "layers.0.weight": np.array([[0.3, -0.1, 0.25], [0.1, 0.0, -0.7]]),
    "layers.1.weight": np.array([[0.2, 0.2, -0.5, 0.05], [0.1, -0.2, 0.9, 0.3]]),
}
_DISTINCT = {
    "layers.0.weight": np.array([[0.31, 0.12, 0.25], [0.18, 0.04, 0.7]]),
    "layers.1.weight": np.array([[0.22, 0.27, 0.5, 0.05], [0.11, 0.29, 0.9, 0.33]]),
}
_EQUAL = {"layers.0.weight": np.full((2, 3), 0.5), "layers.1.weight": np.full((2, 4), 0.5)}
_TEN = {"layers.0.weight": np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.4, 0.3, 0.2, 0.1, 0.05]])}
# 5e-324 and 1e-310 are subnormal: under flush-to-zero the 3rd largest |w| is 0, so all are kept
_SUBNORMAL = {"layers.0.weight": np.array([[0.5, 0.0, 0.0], [0.0, 5e-324, 1e-310]])}
_DEAD = {
    "layers.0.weight": np.array([[True, False, True], [True, True, False]]),
    "layers.1.weight": np.array([[True, True, False, True], [True, True, True, False]]),
}


def _flags(name: str, scope: str, scores, amount, alive, ignore) -> list[str]:
    flags = [f"profile:{name}", f"{scope}-scope"]
    allv = np.concatenate([v.ravel() for v in scores.values()])
    mags = np.abs(allv)
    if np.unique(mags).size < mags.size:
        flags.append("ties")
    if np.all(allv == allv[0]):
        flags.append("all-equal")
    if np.any(allv < 0):
        flags.append("negative-scores")
    if isinstance(amount, int):
        flags.append("count-amount")
    elif amount == 0:
        flags.append("zero-amount")
    if np.any((mags > 0) & (mags < np.finfo(mags.dtype).tiny)):
        flags.append("subnormal")
    if name == "tfmot" and not isinstance(amount, int):
        sizes = [v.size for v in scores.values()]
        if any(tfmot_keep_count(amount, n) != max(round(n * (1 - amount)), 1) for n in sizes):
            flags.append("float32-count")
    if alive is not None:
        flags.append("nesting")
    if ignore:
        flags.append("ignore")
    if not isinstance(amount, int) and name in ("reference", "torch"):
        alive = alive or {n: np.ones(v.shape, bool) for n, v in scores.items()}
        groups = [list(scores)] if scope == "global" else [[n] for n in scores]
        if any((amount * sum(int(alive[n].sum()) for n in g)) % 1 == 0.5 for g in groups):
            flags.append("half-way")
    return flags


def _cases() -> list[CaseSpec]:
    out = []
    scenarios: dict[str, list[tuple[Any, ...]]] = {
        "reference": [
            ("signed", _S, 0.5, None, ()),
            ("dead", _S, 0.5, _DEAD, ()),
            ("distinct-quarter", _DISTINCT, 0.25, None, ()),
            ("equal", _EQUAL, 0.25, None, ()),
        ],
        "torch": [
            ("signed-half", _S, 0.5, None, ()),
            ("half-way-0.25", _TEN, 0.25, None, ()),
            ("half-way-0.35", _TEN, 0.35, None, ()),
            ("count-3", _S, 3, None, ()),
            ("dead", _S, 0.5, _DEAD, ()),
            ("equal", _EQUAL, 0.25, None, ()),
            ("zero", _S, 0.0, None, ()),
        ],
        "tfmot": [
            ("float32-0.85", _TEN, 0.85, None, ()),
            ("signed-half", _S, 0.5, None, ()),
            ("ties-kept", _EQUAL, 0.5, None, ()),
            ("zero-threshold", _S, 0.9, None, ()),
            ("dead", _S, 0.5, _DEAD, ()),
            ("zero", _DISTINCT, 0.0, None, ()),
            ("subnormal", _SUBNORMAL, 0.5, None, ()),
        ],
        "open-lth": [
            ("zero-prunes-one", _DISTINCT, 0.0, None, ()),
            ("signed-0.2", _S, 0.2, None, ()),
            ("ties-all-go", _EQUAL, 0.25, None, ()),
            ("dead", _S, 0.5, _DEAD, ()),
            ("ignore-counts", _DISTINCT, 0.2, None, ("layers.1.weight",)),
        ],
        "shrinkbench": [
            ("keep-half", _S, 0.5, None, ()),
            ("keep-0.3-distinct", _DISTINCT, 0.3, None, ()),
            ("ties-kept", _EQUAL, 0.25, None, ()),
            ("keep-all", _S, 1.0, None, ()),
        ],
    }
    for name, items in scenarios.items():
        profile = get_profile(name)
        for key, scores, amount, alive, ignore in items:
            for scope in profile.scopes:
                flags = _flags(name, scope, scores, amount, alive, ignore)
                inputs = {
                    "scores": scores,
                    "amount": amount,
                    "alive": alive,
                    "scope": scope,
                    "ignore": list(ignore),
                }
                expected = profile.keep_masks(
                    scores, amount, alive=alive, scope=scope, ignore=ignore
                )
                tol = {
                    "masks": dict(
                        EXACT,
                        up_to_ties={
                            "scores": "scores",
                            "alive": "alive",
                            "pooled": scope == "global",
                        },
                    )
                }
                if len(flags) == 2:
                    flags.append("baseline")
                out.append(
                    CaseSpec(
                        key=f"{name}/{key}/{scope}",
                        op="profile_mask",
                        flags=flags,
                        comment=f"{name}, {scope} scope, amount {amount!r}: {profile.amount_meaning}",
                        inputs=inputs,
                        expected={"masks": expected},
                        tolerance=tol,
                    )
                )
    return out


def tolerance(op: str, expected: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    return dict(EXACT)


#: Magnitudes around the smallest normal float64, where flush-to-zero arithmetic reads 0.
_SUBNORMAL_POOL = (0.0, -0.0, 5e-324, -5e-324, 1e-310, 2.3e-308, 0.5, -0.25)


@st.composite
def _subnormal_scores(draw) -> dict[str, np.ndarray]:
    shapes = draw(st.lists(cst.shapes(min_dims=2, max_dims=2, max_side=4), min_size=1, max_size=3))
    return {
        f"layers.{l}.weight": np.array(
            draw(st.lists(st.sampled_from(_SUBNORMAL_POOL), min_size=n, max_size=n))
        ).reshape(shape)
        for l, shape in enumerate(shapes)
        for n in [int(np.prod(shape))]
    }


@st.composite
def _profile_example(draw):
    scores = draw(st.one_of(cst.param_scores(ties=True), _subnormal_scores()))
    alive = (
        {n: draw(cst.masks(v.shape)) for n, v in scores.items()} if draw(st.booleans()) else None
    )
    return {
        "scores": scores,
        "alive": alive,
        "amount_draw": draw(st.floats(0.0, 1.0)),
        # half the time an amount at the profile's rounding edge (``_edge_amount``)
        "edge_draw": draw(st.one_of(st.none(), st.integers(0, 2**16))),
        "scope_draw": draw(st.integers(0, 1)),
        # tensor i is carried along unpruned when bit i is set (never all of them)
        "ignore_draw": draw(st.sampled_from((0, 0, 1, 2, 4, 3, 5, 6))),
    }


def _edge_amount(name: str, j: int, scores, alive, scope: str, ignore: list[str]) -> float | None:
    """An amount at which the profile's count rule decides a rounding, for the first group.

    With n the count the profile rounds (ALGORITHM): reference and torch prune
    round(amount * n_alive), so amount = (i + 1/2) / n_alive lands on a half;
    tfmot keeps round(n (1 - s)) in float32 over the whole tensor, so
    s = 1 - (i + 1/2) / n; open-lth prunes ceil(fraction * n_alive) with the
    ignored tensors counted, so fraction = i / n_alive, whose float64 product
    may exceed i; shrinkbench keeps the fraction (i + 1) / n of the group's
    entries. i = j mod n. None where the group is empty.
    """
    prunable = [k for k in scores if k not in ignore]
    group = prunable if scope == "global" else prunable[:1]

    def n_alive(names):
        return sum(
            int(np.asarray(alive[k]).sum()) if alive is not None else scores[k].size for k in names
        )

    if name == "tfmot":
        n = scores[group[0]].size
        return 1.0 - (j % n + 0.5) / n
    if name == "shrinkbench":
        n = sum(scores[k].size for k in group)
        return (j % n + 1) / n
    n = n_alive(list(scores)) if name == "open-lth" else n_alive(group)
    if n == 0:
        return None
    return (j % n) / n if name == "open-lth" else (j % n + 0.5) / n


def _profile_differential(c, ex):
    """The backend's profile_mask equals the claimed profile's keep_masks, under its tie rule.

    Amounts are drawn at random and at the profile's rounding edges
    (``_edge_amount``); some tensors are carried along unpruned (``ignore``)."""
    profile = c.profile
    names = list(ex["scores"])
    ignore = [k for i, k in enumerate(names) if ex["ignore_draw"] >> i & 1]
    if len(ignore) == len(names):
        ignore = []
    scope = profile.scopes[ex["scope_draw"] % len(profile.scopes)]
    amount = ex["amount_draw"]
    if profile.name == "shrinkbench":
        amount = max(amount, 1e-3)
    elif profile.name in ("tfmot", "open-lth"):
        amount = min(amount, 0.999)
    if ex["edge_draw"] is not None:
        edge = _edge_amount(profile.name, ex["edge_draw"], ex["scores"], ex["alive"], scope, ignore)
        amount = amount if edge is None else edge
    kwargs = {
        "scores": ex["scores"],
        "amount": amount,
        "alive": ex["alive"],
        "scope": scope,
        "ignore": ignore,
    }
    try:
        expected = profile.keep_masks(
            ex["scores"], amount, alive=ex["alive"], scope=scope, ignore=ignore
        )
    except ValueError:
        return  # the library itself refuses this input
    actual = c.call("profile_mask", **kwargs)
    c.require(
        isinstance(actual, dict) and set(actual) == set(expected),
        lambda: f"expected masks for {sorted(expected)}, got {actual!r}",
    )
    groups = [[k for k in expected if k not in ignore]] if scope == "global" else []
    groups += [[k] for k in expected if scope != "global" or k in ignore]
    for group in groups:
        e = {n: expected[n] for n in group}
        a = {n: np.asarray(actual[n]) for n in group}
        s = {n: ex["scores"][n] for n in group}
        al = None if ex["alive"] is None else {n: ex["alive"][n] for n in group}
        why = profile.mask_mismatch(e, a, s, alive=al)
        c.require(
            why is None,
            lambda: (
                f"{profile.name} profile, {scope} scope, amount {amount!r}, ignore {ignore}, "
                f"tensors {group}: {why}"
            ),
        )


@st.composite
def _count_edge_example(draw):
    """Pairwise distinct magnitudes (so a count off by one changes the mask), one or two
    tensors, the second sometimes ignored, an amount always at the rounding edge."""
    sides = draw(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=2))
    sizes = [a * b for a, b in sides]
    rng = np.random.Generator(np.random.PCG64(draw(st.integers(0, 2**32 - 1))))
    values = (rng.permutation(sum(sizes)) + 1.0) * rng.choice([-0.125, 0.125], sum(sizes))
    ends = np.cumsum(sizes)
    scores = {
        f"layers.{l}.weight": values[end - size : end].reshape(side)
        for l, (side, size, end) in enumerate(zip(sides, sizes, ends))
    }
    alive = (
        {n: draw(cst.masks(v.shape)) for n, v in scores.items()} if draw(st.booleans()) else None
    )
    return {
        "scores": scores,
        "alive": alive,
        "amount_draw": 0.5,
        "edge_draw": draw(st.integers(0, 2**16)),
        "scope_draw": draw(st.integers(0, 1)),
        "ignore_draw": draw(st.sampled_from((0, 2, 2))),
    }


PROPERTIES = [
    Property(
        "profiles/count-edges",
        ("profile_mask",),
        "profile_mask equals the claimed profile's keep_masks at the amounts where its count "
        "rule rounds (half-way products, float32 against float64, ceil of inexact products), "
        "on distinct magnitudes, the alive total counting ignored tensors where the library does",
        _count_edge_example(),
        _profile_differential,
    ),
    Property(
        "profiles/profile-mask-differential",
        ("profile_mask",),
        "profile_mask equals the claimed profile's keep_masks (compared with its tie rule), "
        "at random amounts and at the profile's rounding edges, some tensors ignored",
        _profile_example(),
        _profile_differential,
    ),
]

FAMILY = Family(
    name="profiles",
    algorithm=ALGORITHM,
    notes=NOTES,
    cases=_cases,
    tolerance=tolerance,
    properties=PROPERTIES,
)
