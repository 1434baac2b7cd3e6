"""Family "lottery": one IMP round (prune + rewind) and small deterministic IMP traces, one per
rewinding mode, with full-batch SGD so that no random stream has to be reproduced."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from .. import strategies as cst
from . import SIGNED_EXACT, CaseSpec, Family, Property, close
from .networks import network, quantize

ALGORITHM = """\
refprune.lottery with magnitude scores, weights pruned, biases never.
imp_round(trained, rewind_params, masks, fraction, scope, rate_multipliers, rounding):
new masks = select_masks(|trained * masks| of the weight matrices, masks, fraction, scope,
rate_multipliers, rounding); then every parameter = rewind_params * new mask (pruned entries
0.0).
imp(params, X, y, activation, loss, options): w0 = params. Round 0: train w0 for `epochs`
full-batch SGD updates. Round r = 1 .. R: prune a fraction alpha of the alive weights by |w| of the
trained weights (layer-wise or global, as imp_round), rewind, reset the momentum buffer, train.
SGD update t (t = 0, 1, ... counted from the start of the schedule): d = g; v = momentum * v + d
(v = d at the first update after a reset); w = w - lr_t * (v * M), lr_t = lr * gamma^#{m in
milestones : m <= t}; gradients are of the mean loss of the masked network.
Rewinding modes: "init" -> w0, training restarts at t = 0 (Frankle and Carbin 2019);
"step:K" -> the weights after K updates of round 0, training resumes at t = K (Frankle et al.
2020); "lr" -> keep the trained weights, replay the schedule from t = 0 (Renda et al. 2020);
"finetune" -> keep the trained weights, `epochs` more updates at the final rate lr_{T-1}.
Absolute schedule (option "sparsities" [s_1 .. s_R] instead of "rounds" and "alpha"): round r
prunes each group down to n - fraction_to_count(s_r * m, n) alive entries (n: all its entries;
m: its multiplier, 1 for the pool), the lowest |w| of its alive entries first; in global scope
the weight matrices with multiplier 1 form ONE group ranked together, whatever their scales.
trace: masks[r] and rewound[r] (the parameters round r starts training from; rewound[0] = w0),
final (the parameters after round R), train_loss[r] (mean training loss after round r)."""

NOTES = {
    "rewind-init": "rewinding to the initial weights w0",
    "rewind-step": "late rewinding to the weights after K updates of the dense run",
    "rewind-lr": "learning-rate rewinding: the trained weights are kept, the schedule replayed",
    "finetune": "fine-tuning: the trained weights are kept, training continues at the final rate",
    "rewind-trained": "imp_round with rewind_params = the trained weights (lr rewinding and fine-tuning)",
    "layer-scope": "each weight matrix pruned on its own",
    "global-scope": "one pool across the weight matrices",
    "multipliers": "the output layer pruned at half the rate (Frankle and Carbin 2019)",
    "nesting": "masks already hold pruned entries, which must stay pruned and zero",
    "momentum": "SGD with momentum 0.9, reset at every rewind",
    "lr-decay": "a step learning-rate decay (milestones), which the rewinding modes replay differently",
    "trace": "a multi-round IMP trace",
    "absolute-schedule": "absolute sparsity targets of the original sizes (one-shot, cubic)",
    "layer-scales": "weight matrices of very different scales: a global ranking and per-layer "
    "rankings keep different weights",
}


def _trained_pair(seed: int):
    net = network(seed, [3, 4, 2], "relu", "cross_entropy", n=1)
    init = net["params"]
    rng = np.random.Generator(np.random.PCG64(seed + 1))
    trained = {n: quantize(p + 0.5 * rng.standard_normal(p.shape)) for n, p in init.items()}
    return init, trained


def _all_alive(params):
    return {n: np.ones(p.shape, dtype=bool) for n, p in params.items()}


def _cases() -> list[CaseSpec]:
    out = []
    init, trained = _trained_pair(401)
    dead = _all_alive(init)
    dead["layers.0.weight"] = np.array(
        [[True, False, True], [True, True, True], [False, True, True], [True, True, False]]
    )
    dead["layers.1.weight"] = np.array([[True, True, False, True], [True, True, True, True]])
    trained_dead = {n: np.where(dead[n], p, 0.0) for n, p in trained.items()}
    mult = {"layers.1.weight": 0.5}
    for key, rewind, masks, fraction, scope, m, flags, comment in [
        (
            "init-layer-0.2",
            init,
            _all_alive(init),
            0.2,
            "layer",
            None,
            ["rewind-init", "layer-scope"],
            "20% of each weight matrix, rewound to w0",
        ),
        (
            "init-global-0.5",
            init,
            _all_alive(init),
            0.5,
            "global",
            None,
            ["rewind-init", "global-scope"],
            "half of the pooled weights, rewound to w0",
        ),
        (
            "init-layer-mult",
            init,
            _all_alive(init),
            0.5,
            "layer",
            mult,
            ["rewind-init", "layer-scope", "multipliers"],
            "half of layer 0, a quarter of the output layer",
        ),
        (
            "init-global-mult",
            init,
            _all_alive(init),
            0.4,
            "global",
            mult,
            ["rewind-init", "global-scope", "multipliers"],
            "pool of layer 0 at 0.4, output layer alone at 0.2",
        ),
        (
            "trained-dead-layer",
            trained_dead,
            dead,
            0.25,
            "layer",
            None,
            ["rewind-trained", "layer-scope", "nesting"],
            "a second round: a quarter of the alive weights, weights kept",
        ),
        (
            "init-dead-global",
            init,
            dead,
            0.5,
            "global",
            None,
            ["rewind-init", "global-scope", "nesting"],
            "a second round, global, rewound to w0: pruned entries stay 0",
        ),
    ]:
        src = trained_dead if masks is dead else trained
        out.append(
            CaseSpec(
                f"imp_round/{key}",
                "imp_round",
                comment,
                flags,
                {
                    "trained": src,
                    "rewind_params": rewind,
                    "masks": masks,
                    "fraction": fraction,
                    "scope": scope,
                    "rate_multipliers": m,
                    "rounding": "round-half-even",
                },
            )
        )
    net = network(411, [2, 4, 3], "relu", "cross_entropy", n=9, scale=1.0)
    base = {
        "rounds": 3,
        "alpha": 0.25,
        "epochs": 6,
        "lr": 0.5,
        "momentum": 0.9,
        "milestones": [4],
        "gamma": 0.1,
        "scope": "layer",
        "rate_multipliers": None,
    }
    for rewind, flag in [
        ("init", "rewind-init"),
        ("step:2", "rewind-step"),
        ("lr", "rewind-lr"),
        ("finetune", "finetune"),
    ]:
        options = dict(base, rewind=rewind)
        out.append(
            CaseSpec(
                f"imp/{rewind}",
                "imp",
                f"3 IMP rounds at alpha 0.25 with rewind {rewind}: 2-4-3 relu network, 9 samples, "
                "6 full-batch updates per round, lr 0.5 decayed x0.1 at update 4",
                [flag, "trace", "momentum", "lr-decay", "layer-scope"],
                dict(net, options=options),
            )
        )
    options = dict(base, rewind="init", scope="global", rate_multipliers={"layers.1.weight": 0.5})
    out.append(
        CaseSpec(
            "imp/init-global-mult",
            "imp",
            "3 IMP rounds, global pool with the output layer at half the rate, rewind to w0",
            ["rewind-init", "trace", "momentum", "lr-decay", "global-scope", "multipliers"],
            dict(net, options=options),
        )
    )
    out += _absolute_cases()
    return out


def _scaled_network(seed: int) -> dict[str, Any]:
    """A 3-5-4-2 relu network whose three weight matrices differ in scale (x4, x1, x1/4)."""
    net = network(seed, [3, 5, 4, 2], "relu", "cross_entropy", n=8, scale=1.0)
    for layer, scale in enumerate((4.0, 1.0, 0.25)):
        name = f"layers.{layer}.weight"
        net["params"][name] = quantize(scale * net["params"][name])
    return net


def _absolute_cases() -> list[CaseSpec]:
    """IMP with absolute targets in global scope: the pool must be ranked as one group."""
    net = _scaled_network(421)
    base = {
        "epochs": 4,
        "lr": 0.1,
        "momentum": 0.9,
        "milestones": [],
        "gamma": 0.1,
        "rate_multipliers": None,
        "rewind": "init",
    }
    cubic = [0.2, 0.6375, 0.7]  # refprune.schedules.cubic(0.2, 0.7, n_steps=2).values
    out = []
    for key, sparsities, scope, mult, comment in [
        (
            "one-shot-global",
            [0.5],
            "global",
            None,
            "one-shot to sparsity 0.5 over the pool of 3 matrices of scales 4, 1, 1/4: the global "
            "ranking prunes the small-scale layers first (per-layer pruning keeps half of each)",
        ),
        (
            "cubic-global",
            cubic,
            "global",
            None,
            "cubic schedule 0.2 -> 0.7 in 3 rounds, global pool of matrices of scales 4, 1, 1/4",
        ),
        (
            "cubic-global-mult",
            cubic,
            "global",
            {"layers.2.weight": 0.5},
            "cubic schedule, global pool of the two hidden matrices, output matrix alone at half "
            "the rate",
        ),
        (
            "one-shot-layer",
            [0.5],
            "layer",
            None,
            "one-shot to sparsity 0.5, each matrix on its own (the control for one-shot-global)",
        ),
    ]:
        options = dict(base, sparsities=sparsities, scope=scope, rate_multipliers=mult)
        flags = [
            "rewind-init",
            "trace",
            "momentum",
            "absolute-schedule",
            "layer-scales",
            f"{scope}-scope",
        ] + (["multipliers"] if mult else [])
        out.append(CaseSpec(f"imp/{key}", "imp", comment, flags, dict(net, options=options)))
    return out


def tolerance(op: str, expected: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """imp_round: exact, zeros signed (kept entries are bit-for-bit copies, pruned ones +0.0).
    imp: masks exact; weights and losses close (golden cases: per-entry scales), zeros signed."""
    if op == "imp_round":
        return dict(SIGNED_EXACT)
    return dict(close(expected, rel=1e-9), signed_zeros=True)


# ----------------------------------------------------------------------------- properties
@st.composite
def _round_example(draw):
    sizes = draw(st.lists(st.integers(1, 4), min_size=3, max_size=4))
    trained = draw(cst.params(sizes))
    rewind = draw(cst.params(sizes))
    masks = {
        n: draw(cst.masks(p.shape)) if n.endswith("weight") else np.ones(p.shape, bool)
        for n, p in trained.items()
    }
    trained = {n: np.where(masks[n], p, 0.0) for n, p in trained.items()}
    scope = draw(st.sampled_from(["layer", "global"]))
    mult = {f"layers.{len(sizes) - 2}.weight": 0.5} if draw(st.booleans()) else None
    return {
        "trained": trained,
        "rewind_params": rewind,
        "masks": masks,
        "fraction": draw(cst.fractions()),
        "scope": scope,
        "rate_multipliers": mult,
        "rounding": draw(cst.roundings()),
    }


def _round_differential(c, ex):
    """Equal to the reference's round; under a profile whose tie order is unspecified, masks
    are compared up to ties of |trained| within each pruning group, and the parameters must be
    the rewind values under the backend's own mask."""
    if c.tie_check is None or not _magnitude_ties(ex):
        c.agree("imp_round", **ex)
        return
    try:
        expected = c.ref("imp_round", **ex)
    except ValueError:
        from hypothesis import reject

        reject()
    actual = c.call("imp_round", **ex)
    masks = {n: np.asarray(actual["masks"][n]) for n in ex["masks"]}
    for names in _round_groups(ex):
        mags = {n: np.abs(ex["trained"][n]) for n in names}
        c.require(
            c.tie_check(
                {n: expected["masks"][n] for n in names},
                {n: masks[n] for n in names},
                mags,
                {n: ex["masks"][n] for n in names},
            ),
            lambda: f"{names}: masks differ beyond the order of equal |trained| weights",
        )
    for n, m in masks.items():
        if n not in _weights(ex):
            c.require(np.array_equal(m, expected["masks"][n]), f"{n}: a bias mask changed")
        want = np.where(m, ex["rewind_params"][n], 0.0)
        c.require(
            np.array_equal(np.asarray(actual["params"][n]), want),
            f"{n}: the parameters are not the rewind values under the returned mask",
        )


def _weights(ex) -> list[str]:
    return [n for n in ex["masks"] if n.endswith("weight")]


def _round_groups(ex) -> list[list[str]]:
    """The weight tensors pruned together: one group per layer, or the global pool plus each
    layer with a rate multiplier on its own."""
    names, mult = _weights(ex), ex["rate_multipliers"] or {}
    if ex["scope"] == "layer":
        return [[n] for n in names]
    pool = [n for n in names if mult.get(n, 1.0) == 1.0]
    return ([pool] if pool else []) + [[n] for n in names if n not in pool]


def _magnitude_ties(ex) -> bool:
    """True when two alive weights of one pruning group have the same |trained|."""
    for names in _round_groups(ex):
        alive = np.concatenate([np.abs(ex["trained"][n])[ex["masks"][n]] for n in names])
        if np.unique(alive).size < alive.size:
            return True
    return False


def _round_rewinds(c, ex):
    """Survivors take exactly the rewind values, pruned entries are 0.0, masks are nested, biases stay."""
    out = c.call("imp_round", **ex)
    for n, old in ex["masks"].items():
        m = np.asarray(out["masks"][n])
        p = np.asarray(out["params"][n])
        c.require(not np.any(m & ~old), lambda: f"{n}: a pruned entry came back")
        if n.endswith("bias"):
            c.require(np.array_equal(m, old), lambda: f"{n}: a bias was pruned")
        c.require(
            np.array_equal(p[m], ex["rewind_params"][n][m]),
            lambda: f"{n}: surviving entries do not hold the rewind values exactly",
        )
        c.require(np.all(p[~m] == 0.0), lambda: f"{n}: a pruned entry is not 0.0")


@st.composite
def _imp_example(draw):
    net = draw(cst.networks(max_layers=2, max_width=3, max_samples=4, activations=("relu", "tanh")))
    rewind = draw(st.sampled_from(["init", "step:1", "lr", "finetune"]))
    options = {
        "rounds": draw(st.integers(1, 2)),
        "alpha": draw(st.sampled_from([0.2, 0.5])),
        "epochs": 2,
        "lr": 0.1,
        "momentum": draw(st.sampled_from([0.0, 0.9])),
        "milestones": [1],
        "gamma": 0.5,
        "scope": draw(st.sampled_from(["layer", "global"])),
        "rate_multipliers": None,
        "rewind": rewind,
    }
    return dict(net, options=options)


def _imp_differential(c, ex):
    c.agree("imp", **ex)


def _imp_every_rewind(c, ex):
    """The same network and options under each rewinding mode: a mode run as another differs."""
    for rewind in ("init", "step:1", "lr", "finetune"):
        c.agree("imp", **dict(ex, options=dict(ex["options"], rewind=rewind)))


def _imp_invariants(c, ex):
    """Masks nested across rounds; rewind to init restores w0 on the survivors exactly."""
    out = c.call("imp", **ex)
    masks = out["masks"]
    for r in range(1, len(masks)):
        for n in masks[r]:
            c.require(
                not np.any(np.asarray(masks[r][n]) & ~np.asarray(masks[r - 1][n])),
                lambda: f"round {r}: {n} revived a weight pruned in round {r - 1}",
            )
    if ex["options"]["rewind"] == "init":
        for r in range(len(masks)):
            for n, w0 in ex["params"].items():
                m = np.asarray(masks[r][n])
                got = np.asarray(out["rewound"][r][n])
                c.require(
                    np.array_equal(got, np.where(m, w0, 0.0)),
                    lambda: f"round {r}: {n} after rewinding is not w0 * mask",
                )


@st.composite
def _imp_absolute_example(draw):
    """IMP with absolute targets, mostly in global scope, on layers of drawn scales."""
    net = draw(cst.networks(max_layers=3, max_width=3, max_samples=4, activations=("relu", "tanh")))
    weights = [n for n in net["params"] if n.endswith(".weight")]
    for n in weights:
        net["params"][n] = net["params"][n] * draw(st.sampled_from([0.25, 1.0, 4.0]))
    sparsities = sorted(
        draw(st.lists(st.sampled_from([0.2, 0.25, 0.5, 0.6, 0.75]), min_size=1, max_size=3))
    )
    mult = {weights[-1]: 0.5} if len(weights) > 2 and draw(st.booleans()) else None
    options = {
        "sparsities": sparsities,
        "epochs": 2,
        "lr": 0.1,
        "momentum": draw(st.sampled_from([0.0, 0.9])),
        "milestones": [],
        "gamma": 0.5,
        "scope": draw(st.sampled_from(["global", "global", "layer"])),
        "rate_multipliers": mult,
        "rewind": draw(st.sampled_from(["init", "lr"])),
    }
    return dict(net, options=options)


def _imp_absolute_counts(c, ex):
    """After round r each group holds min(alive before, n - fraction_to_count(s_r * m, n))."""
    from refprune.masks import fraction_to_count

    o = ex["options"]
    out = c.call("imp", **ex)
    masks = out["masks"]
    weights = [n for n in ex["params"] if n.endswith(".weight")]
    mult = o["rate_multipliers"] or {}
    pool = [n for n in weights if mult.get(n, 1.0) == 1.0] if o["scope"] == "global" else []
    groups = ([(pool, 1.0)] if pool else []) + [
        ([n], mult.get(n, 1.0)) for n in weights if n not in pool
    ]
    c.require(
        len(masks) == len(o["sparsities"]) + 1,
        lambda: f"{len(masks)} rounds of masks for {len(o['sparsities'])} targets",
    )
    for r, s in enumerate(o["sparsities"], start=1):
        for names, m in groups:
            size = sum(np.asarray(masks[0][n]).size for n in names)
            before = sum(int(np.sum(masks[r - 1][n])) for n in names)
            alive = sum(int(np.sum(masks[r][n])) for n in names)
            want = min(before, size - fraction_to_count(s * m, size))
            c.require(
                alive == want,
                lambda: (
                    f"round {r}: {names} keep {alive} weights, the "
                    f"target s = {s} (x {m}) keeps {want}"
                ),
            )


PROPERTIES = [
    Property(
        "lottery/imp-round-differential",
        ("imp_round",),
        "one IMP round equals the reference's",
        _round_example(),
        _round_differential,
    ),
    Property(
        "lottery/imp-round-rewinds",
        ("imp_round",),
        "survivors hold the rewind values exactly, pruned entries are 0, masks nested, biases kept",
        _round_example(),
        _round_rewinds,
    ),
    Property(
        "lottery/imp-differential",
        ("imp",),
        "a short IMP trace equals the reference's",
        _imp_example(),
        _imp_differential,
    ),
    Property(
        "lottery/imp-every-rewind-differential",
        ("imp",),
        "a short IMP trace equals the reference's under every rewinding mode, on the same network",
        _imp_example(),
        _imp_every_rewind,
    ),
    Property(
        "lottery/imp-nested-and-rewound",
        ("imp",),
        "masks are nested across rounds and rewinding to init restores w0 exactly",
        _imp_example(),
        _imp_invariants,
    ),
    Property(
        "lottery/imp-absolute-differential",
        ("imp",),
        "an IMP trace with absolute targets (one pool in global scope) equals the reference's",
        _imp_absolute_example(),
        _imp_differential,
    ),
    Property(
        "lottery/imp-absolute-counts",
        ("imp",),
        "absolute targets: each group (the global pool as one) keeps exactly its target count",
        _imp_absolute_example(),
        _imp_absolute_counts,
    ),
]

FAMILY = Family(
    name="lottery",
    algorithm=ALGORITHM,
    notes=NOTES,
    cases=_cases,
    tolerance=tolerance,
    properties=PROPERTIES,
)
