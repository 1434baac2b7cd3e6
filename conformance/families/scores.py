"""Family "scores": every saliency rule on small networks, Optimal Brain Surgeon with its
compensating updates, and iterative SynFlow."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from .. import strategies as cst
from . import EXACT, CaseSpec, Family, NotProvided, Property, close
from .networks import describe, network

RULES = (
    "magnitude",
    "random",
    "gradient",
    "taylor1",
    "obd",
    "taylor2",
    "taylor2_abs",
    "obs",
    "grasp",
    "synflow",
)

ALGORITHM = """\
refprune.scores.compute_scores on a network given by params and masks (w = params * masks;
g, h = diag H and H g are derivatives of the mean loss L(params * masks) in params).
Higher score = more important = kept; pruned entries score exactly 0.0 under every rule.
magnitude |w|; random U[0,1) from numpy.random.Generator(PCG64(seed)), one rng.random(shape) per
scored name; gradient |g|; taylor1 |g w|; obd 1/2 h w^2 (h from options.hessian_method);
taylor2 -g w + 1/2 h w^2 (signed); taylor2_abs its absolute value; obs w_q^2 / (2
[(H_FF + damping I)^-1]_qq) over the alive parameters F (weights and biases), H symmetrised;
grasp w (H g) with g restricted to the scored names (minus the GraSP paper's score);
synflow |dR/dw w| with R = 1^T prod |W_l M_l| 1 (one round, data-free).
options.names selects the scored parameters (default: the weight matrices).
obs_prune removes n_remove weights one at a time (lowest saliency, later candidate on ties),
each removal followed by the OBS update w <- w - (w_q / Hinv_qq) Hinv e_q and the downdate of
Hinv; the Hessian is computed once, at the start.
synflow_prune prunes globally over the weight matrices in `iterations` rounds, rescoring
each round, to fraction_to_count(1 - density^(k/n), n0) pruned after round k."""

NOTES = {
    "article-example": "w1 = 0.01 with h11 = 2000 and w2 = 0.08 in a flat direction: magnitude prunes "
    "w1, OBD prunes w2",
    "nesting": "some entries are already pruned: they score 0.0 and the derivatives are those of "
    "L(params * masks)",
    "numpy-rng": "the expected output is NumPy's PCG64 stream (rng.random); a backend that does not "
    "reproduce it should not provide the rule, or list these ids as expected failures",
    "biases": "biases are scored too (options.names includes them)",
    "signed": "a signed score: removal that lowers the loss scores below zero and goes first",
    "hessian-ggn": "the Hessian diagonal of the rule is the GGN diagonal",
    "hessian-obd": "the Hessian diagonal of the rule is the OBD recursion",
    "single-layer": "no hidden layer (a convex loss, so the damped Hessian of OBS is positive definite)",
    "relu": "relu hidden activation",
    "tanh": "tanh hidden activation",
    "sigmoid": "sigmoid hidden activation",
    "identity": "identity hidden activation",
    "cross-entropy": "cross-entropy loss",
    "mse": "mean-squared-error loss",
    "data-free": "a rule that reads no data (X and y are null)",
    "ties": "several candidates have equal scores",
    "layer-collapse": "a weight matrix is left with no alive entry",
}


def _act_flags(net: dict[str, Any]) -> list[str]:
    return [net["activation"], "cross-entropy" if net["loss"] == "cross_entropy" else "mse"]


def _article_network() -> dict[str, Any]:
    """One linear layer, 2 inputs -> 1 output, mse, N = 10 samples: h11 = 2/N sum x1^2 = 2000,
    x2 = 0 (a flat direction, h22 = 0), targets equal to the outputs (gradient 0)."""
    X = np.zeros((10, 2))
    X[0, 0] = 100.0
    params = {"layers.0.weight": np.array([[0.01, 0.08]]), "layers.0.bias": np.array([0.0])}
    y = X @ params["layers.0.weight"].T + params["layers.0.bias"]
    return {"params": params, "X": X, "y": y, "activation": "identity", "loss": "mse"}


def _cases() -> list[CaseSpec]:
    out = []
    nets = [
        ("relu-ce", network(301, [2, 3, 2], "relu", "cross_entropy", n=3)),
        ("tanh-mse", network(302, [2, 3, 2], "tanh", "mse", n=3)),
        ("sigmoid-ce-deep", network(303, [2, 2, 2, 2], "sigmoid", "cross_entropy", n=3)),
    ]
    dead = {n: np.ones(p.shape, dtype=bool) for n, p in nets[0][1]["params"].items()}
    dead["layers.0.weight"] = np.array([[True, False], [True, True], [False, True]])
    dead["layers.1.weight"] = np.array([[True, True, False], [True, True, True]])
    for key, net in nets:
        for rule in RULES:
            if rule == "obs":
                continue
            data_free = rule in ("magnitude", "random", "synflow")
            inputs = dict(
                net, rule=rule, masks=None, options={"seed": 5} if rule == "random" else {}
            )
            if data_free:
                inputs.update(X=None, y=None)
            flags = (
                _act_flags(net)
                + (["data-free"] if data_free else [])
                + (["numpy-rng"] if rule == "random" else [])
                + (["signed"] if rule in ("taylor2", "grasp") else [])
            )
            out.append(
                CaseSpec(
                    f"{key}/{rule}", "scores", f"{rule} scores of a {describe(net)}", flags, inputs
                )
            )
        for method in ("ggn", "obd"):
            for rule in ("obd", "taylor2"):
                inputs = dict(net, rule=rule, masks=None, options={"hessian_method": method})
                out.append(
                    CaseSpec(
                        f"{key}/{rule}/{method}",
                        "scores",
                        f"{rule} scores with the {method} Hessian diagonal, {describe(net)}",
                        _act_flags(net) + [f"hessian-{method}"],
                        inputs,
                    )
                )
    key, net = nets[0]
    for rule in ("magnitude", "gradient", "obd", "taylor2", "grasp", "synflow"):
        data_free = rule in ("magnitude", "synflow")
        inputs = dict(net, rule=rule, masks=dead, options={})
        if data_free:
            inputs.update(X=None, y=None)
        out.append(
            CaseSpec(
                f"{key}/masked/{rule}",
                "scores",
                f"{rule} scores of a {describe(net)} with three weights pruned",
                _act_flags(net) + ["nesting"] + (["data-free"] if data_free else []),
                inputs,
            )
        )
    out.append(
        CaseSpec(
            f"{key}/biases/taylor1",
            "scores",
            "taylor1 scores of weights and biases",
            _act_flags(net) + ["biases"],
            dict(
                net,
                rule="taylor1",
                masks=None,
                options={
                    "names": [
                        "layers.0.weight",
                        "layers.0.bias",
                        "layers.1.weight",
                        "layers.1.bias",
                    ]
                },
            ),
        )
    )
    art = _article_network()
    for rule in ("magnitude", "obd", "taylor2"):
        inputs = dict(art, rule=rule, masks=None, options={})
        if rule == "magnitude":
            inputs.update(X=None, y=None)
        out.append(
            CaseSpec(
                f"article/{rule}",
                "scores",
                f"{rule}: w = (0.01, 0.08), h = (2000, 0), g = 0; "
                + ("magnitude ranks w1 lowest" if rule == "magnitude" else "w2 scores 0, w1 0.1"),
                ["article-example", "identity", "mse", "single-layer"]
                + (["data-free"] if rule == "magnitude" else []),
                inputs,
            )
        )
    # OBS on convex single-layer networks (positive-definite damped Hessian)
    obs_nets = [
        ("obs-ce", network(311, [3, 3], "relu", "cross_entropy", n=6)),
        ("obs-mse", network(312, [3, 2], "identity", "mse", n=5)),
    ]
    for key, net in obs_nets:
        out.append(
            CaseSpec(
                f"{key}/obs",
                "scores",
                f"OBS saliencies, damping 1e-3, {describe(net)}",
                _act_flags(net) + ["single-layer"],
                dict(net, rule="obs", masks=None, options={"damping": 1e-3}),
            )
        )
        for n_remove in (1, 4):
            out.append(
                CaseSpec(
                    f"{key}/obs_prune/{n_remove}",
                    "obs_prune",
                    f"OBS removes {n_remove} weights one at a time with compensation, {describe(net)}",
                    _act_flags(net) + ["single-layer"],
                    dict(net, masks=None, n_remove=n_remove, damping=1e-3),
                )
            )
    sf = network(321, [3, 4, 3, 2], "relu", "mse", n=1)
    for density, iters, flags in [(0.5, 1, []), (0.25, 8, []), (0.1, 5, [])]:
        out.append(
            CaseSpec(
                f"synflow_prune/{density}/{iters}",
                "synflow_prune",
                f"iterative SynFlow to density {density} in {iters} rounds on a 3-4-3-2 network",
                ["data-free", "relu"] + flags,
                {
                    "params": sf["params"],
                    "masks": None,
                    "density": density,
                    "iterations": iters,
                    "rounding": "round-half-even",
                },
            )
        )
    return out


def tolerance(op: str, expected: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """synflow_prune exact; scores and obs_prune close (golden cases: per-entry scales);
    obs_prune's removed weights are +0.0 (zeros signed)."""
    if op == "synflow_prune":
        return dict(EXACT)
    if op == "obs_prune":
        return dict(close(expected, rel=1e-10), signed_zeros=True)
    return close(expected, rel=1e-10)


# ----------------------------------------------------------------------------- properties
DETERMINISTIC = (
    "magnitude",
    "gradient",
    "taylor1",
    "obd",
    "taylor2",
    "taylor2_abs",
    "grasp",
    "synflow",
)


@st.composite
def _scored(draw, rules=DETERMINISTIC):
    net = draw(cst.networks(max_layers=3))
    rule = draw(st.sampled_from(rules))
    masks = (
        {n: draw(cst.masks(p.shape)) for n, p in net["params"].items()}
        if draw(st.booleans())
        else None
    )
    options = {}
    if rule in ("obd", "taylor2", "taylor2_abs"):
        options["hessian_method"] = draw(st.sampled_from(["exact", "ggn", "obd"]))
    if rule == "synflow":
        net["params"] = {n: np.clip(p, -2, 2) for n, p in net["params"].items()}
    return dict(net, rule=rule, masks=masks, options=options)


@st.composite
def _network_for_every_rule(draw):
    net = draw(cst.networks(max_layers=2))
    net["params"] = {n: np.clip(p, -2, 2) for n, p in net["params"].items()}  # SynFlow's range
    masks = (
        {n: draw(cst.masks(p.shape)) for n, p in net["params"].items()}
        if draw(st.booleans())
        else None
    )
    return dict(net, masks=masks, method=draw(st.sampled_from(["exact", "ggn", "obd"])))


def _scores_differential(c, ex):
    """Every deterministic rule on the same network, the curvature rules under every Hessian
    method (a rule or method drawn at random per example would leave one unchecked in a short
    run)."""
    ex = dict(ex)
    ex.pop("method")
    provided = 0
    for rule in DETERMINISTIC:
        curvature = rule in ("obd", "taylor2", "taylor2_abs")
        for method in ("exact", "ggn", "obd") if curvature else (None,):
            options = {"hessian_method": method} if curvature else {}
            try:
                c.agree("scores", **ex, rule=rule, options=options)
            except NotProvided:  # a backend may provide some of the rules and methods
                continue
            provided += 1
    if not provided:
        raise NotProvided("scores provides none of the deterministic rules")


def _pruned_score_zero(c, ex):
    """Every rule scores a pruned entry exactly 0.0."""
    if ex["masks"] is None:
        return
    s = c.call("scores", **ex)
    for n, v in s.items():
        dead = ~ex["masks"][n]
        c.require(
            np.all(np.asarray(v)[dead] == 0.0),
            lambda: (
                f"{ex['rule']}: {n} scores a pruned entry {np.asarray(v)[dead][np.asarray(v)[dead] != 0][0]!r}"
            ),
        )


@st.composite
def _magnitude_scaled(draw):
    sizes = draw(st.lists(st.integers(1, 4), min_size=2, max_size=4))
    params = draw(cst.params(sizes, bound=10.0))
    return params, draw(st.sampled_from([2.0, 0.5, 8.0]))


def _magnitude_scaling(c, ex):
    params, factor = ex

    def magnitude(weights):
        return c.call(
            "scores",
            rule="magnitude",
            params=weights,
            X=None,
            y=None,
            activation="relu",
            loss="mse",
            masks=None,
            options={},
        )

    a = magnitude(params)
    b = magnitude({n: factor * p for n, p in params.items()})
    for n in a:
        c.require(
            np.array_equal(np.asarray(b[n]), factor * np.asarray(a[n])),
            lambda: f"magnitude({factor} w) != {factor} magnitude(w) for {n}",
        )


@st.composite
def _quadratic(draw):
    """One linear layer with mse: the loss is exactly quadratic in the parameters."""
    net = draw(cst.networks(max_layers=1, activations=("identity",), losses=("mse",)))
    P = net["params"]["layers.0.weight"].size
    return net, draw(st.integers(0, P - 1))


def _taylor2_exact_on_quadratic(c, ex):
    """On a quadratic loss, taylor2 of entry i is exactly the change of the loss when w_i is removed."""
    net, i = ex
    s = c.call("scores", **net, rule="taylor2", masks=None, options={"hessian_method": "exact"})
    w = net["params"]["layers.0.weight"]
    removed = dict(
        net["params"],
        **{"layers.0.weight": np.where(np.arange(w.size).reshape(w.shape) == i, 0.0, w)},
    )
    before = c.call(
        "loss_value",
        params=net["params"],
        X=net["X"],
        y=net["y"],
        activation=net["activation"],
        loss=net["loss"],
    )
    after = c.call(
        "loss_value",
        params=removed,
        X=net["X"],
        y=net["y"],
        activation=net["activation"],
        loss=net["loss"],
    )
    predicted = float(np.asarray(s["layers.0.weight"]).ravel()[i])
    scale = max(1.0, abs(before), abs(after))
    c.require(
        abs((after - before) - predicted) <= 1e-9 * scale,
        lambda: (
            f"taylor2 predicts a loss change of {predicted!r} for removing entry {i}, the loss "
            f"changed by {after - before!r}"
        ),
    )


@st.composite
def _permuted(draw):
    net = draw(cst.networks(max_layers=2))
    assume("layers.1.weight" in net["params"])
    width = net["params"]["layers.0.weight"].shape[0]
    perm = np.array(draw(st.permutations(range(width))))
    rule = draw(st.sampled_from(DETERMINISTIC))
    return net, perm, rule


def _permute(tree, perm):
    out = dict(tree)
    out["layers.0.weight"] = tree["layers.0.weight"][perm]
    if "layers.0.bias" in tree:
        out["layers.0.bias"] = tree["layers.0.bias"][perm]
    out["layers.1.weight"] = tree["layers.1.weight"][:, perm]
    return out


def _scores_permutation(c, ex):
    """Permuting hidden units permutes the scores of every deterministic rule."""
    net, perm, rule = ex
    a = c.call("scores", **net, rule=rule, masks=None, options={})
    b = c.call(
        "scores",
        **dict(net, params=_permute(net["params"], perm)),
        rule=rule,
        masks=None,
        options={},
    )
    want = _permute({n: np.asarray(v) for n, v in a.items()}, perm)
    scale = max(1.0, max(float(np.max(np.abs(v))) if np.size(v) else 0.0 for v in want.values()))
    for n in want:
        diff = float(np.max(np.abs(np.asarray(b[n]) - want[n]))) if np.size(want[n]) else 0.0
        c.require(
            diff <= 1e-9 * scale,
            lambda: (
                f"{rule}: permuting hidden units {perm.tolist()} did not permute "
                f"the scores of {n} (diff {diff:.3g})"
            ),
        )


PROPERTIES = [
    Property(
        "scores/differential",
        ("scores",),
        "every deterministic rule equals the reference on the same network (masked and "
        "unmasked networks)",
        _network_for_every_rule(),
        _scores_differential,
    ),
    Property(
        "scores/pruned-entries-score-zero",
        ("scores",),
        "a pruned entry scores exactly 0.0",
        _scored(),
        _pruned_score_zero,
    ),
    Property(
        "scores/magnitude-scaling",
        ("scores",),
        "magnitude(c w) = c magnitude(w) for c > 0",
        _magnitude_scaled(),
        _magnitude_scaling,
    ),
    Property(
        "scores/taylor2-exact-on-quadratic",
        ("scores", "loss_value"),
        "on a quadratic loss taylor2 is the exact loss change of removing the weight",
        _quadratic(),
        _taylor2_exact_on_quadratic,
    ),
    Property(
        "scores/permutation",
        ("scores",),
        "permuting hidden units permutes the scores",
        _permuted(),
        _scores_permutation,
    ),
]

FAMILY = Family(
    name="scores",
    algorithm=ALGORITHM,
    notes=NOTES,
    cases=_cases,
    tolerance=tolerance,
    properties=PROPERTIES,
)
