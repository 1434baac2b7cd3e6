"""Family "curvature": the MLP's loss, gradient, Hessian-vector products, full Hessian and
Hessian diagonals (exact, GGN, OBD, Hutchinson) on small networks of every activation."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from .. import strategies as cst
from ..backend import flatten
from . import CaseSpec, Family, NotProvided, Property, close
from .networks import describe
from .networks import network as _network
from .networks import quantize as _q

ALGORITHM = """\
refprune.curvature on an MLP given by its parameters: layer l maps a_l to z_{l+1} = a_l W_l^T + b_l,
hidden layers apply the activation (ReLU'(0) = 0), the last layer is linear. Loss: cross_entropy
= mean over the batch of -log softmax(z_L)[y]; mse = mean over all N*K entries of (z_L - t)^2.
gradient: dL/dtheta by backpropagation. hvp: H v by Pearlmutter's R-operator (exact).
full_hessian: P x P, columns H e_j, rows and columns in the flat parameter order (layers.0.weight,
layers.0.bias, layers.1.weight, ... each in C order).
hessian_diag(method): exact = diag(H); ggn = diagonal of the generalised Gauss-Newton matrix
J^T H_out J (the sigma'' terms dropped; equals exact for relu and identity); obd = the
Becker-LeCun recursion h_l = sigma'(z_l)^2 (h_{l+1} W_l^2) + sigma''(z_l) (delta_{l+1} W_l) that
keeps only diagonal terms (an approximation, exact for a single layer).
hutchinson_diag(probes) = (1/S) sum_s v_s * (H v_s), summed in probe order. The probes stored
here are the reference's Rademacher draws for the seed in the comment: with rng =
numpy.random.Generator(PCG64(seed)), v_s = rng.integers(0, 2, size=P) * 2 - 1 for s = 0 .. S-1,
so refprune.curvature.hessian_diag(method="hutchinson", n_samples=S, seed=seed) gives the same
numbers. Biases are included everywhere."""

NOTES = {
    "relu": "hidden activation relu (piecewise linear: sigma'' = 0)",
    "tanh": "hidden activation tanh (smooth: the sigma'' terms matter)",
    "sigmoid": "hidden activation sigmoid (smooth: the sigma'' terms matter)",
    "identity": "hidden activation identity (a linear network)",
    "cross-entropy": "loss cross_entropy with int labels",
    "mse": "loss mse with float targets (mean over all N*K entries)",
    "single-layer": "no hidden layer: OBD and GGN are exact",
    "deep": "two hidden layers: the OBD recursion differs from the exact diagonal",
    "relu-kink": "some pre-activations are exactly 0, where ReLU'(0) = 0 by convention",
    "large-logits": "logits of order 100: log-softmax must be computed stably",
    "saturated": "hidden units far in their flat tails (sigmoid or tanh): sigma' and sigma'' "
    "must not be formed by subtracting from 1 (1 - tanh^2, s (1 - s))",
    "saturated-softmax": "the labelled class has 1 - p from 1e-17 to 1e-9 (p rounds to 1.0 "
    "below 1.1e-16): 1 - p, p (1 - p) and p_y - 1 must not be formed by "
    "subtracting p from 1",
    "zero-weights": "some weights and biases are exactly 0.0 (or -0.0)",
    "ggn-differs": "smooth activation: this approximate diagonal (GGN or OBD) differs from the exact one",
    "numpy-rng": "the probes are NumPy PCG64 draws (given as inputs, so any backend can use them)",
}

_ACTS = ("relu", "tanh", "sigmoid", "identity")


def _networks() -> list[tuple[str, dict[str, Any], list[str]]]:
    nets = []
    seed = 100
    for act in _ACTS:
        for loss in ("cross_entropy", "mse"):
            seed += 1
            flags = [act, "cross-entropy" if loss == "cross_entropy" else "mse"]
            if act in ("tanh", "sigmoid"):
                flags.append("ggn-differs")
            nets.append((f"{act}-{loss}-2-2-2", _network(seed, [2, 2, 2], act, loss, n=3), flags))
        seed += 1
        flags = [act, "cross-entropy", "deep"] + (
            ["ggn-differs"] if act in ("tanh", "sigmoid") else []
        )
        nets.append(
            (
                f"{act}-cross_entropy-2-2-2-2",
                _network(seed, [2, 2, 2, 2], act, "cross_entropy", n=3),
                flags,
            )
        )
    nets.append(
        (
            "single-layer-cross_entropy",
            _network(200, [3, 2], "relu", "cross_entropy", n=3),
            ["single-layer", "cross-entropy"],
        )
    )
    nets.append(
        ("single-layer-mse", _network(201, [2, 3], "tanh", "mse", n=3), ["single-layer", "mse"])
    )
    kink = _network(202, [2, 3, 2], "relu", "cross_entropy")
    kink["X"][0] = [1.0, -1.0]
    kink["params"]["layers.0.weight"][0] = [1.0, 1.0]
    kink["params"]["layers.0.bias"][0] = 0.0  # z = 0 for sample 0, unit 0
    kink["params"]["layers.0.weight"][1] = [0.0, -0.0]
    kink["params"]["layers.0.bias"][1] = 0.0  # z = 0 for every sample, unit 1
    nets.append(("relu-kink", kink, ["relu", "cross-entropy", "relu-kink", "zero-weights"]))
    big = _network(203, [2, 2, 3], "tanh", "cross_entropy", n=3)
    big["params"]["layers.1.weight"] = big["params"]["layers.1.weight"] * 60.0
    nets.append(("large-logits", big, ["tanh", "cross-entropy", "large-logits", "ggn-differs"]))
    sat = _network(204, [2, 2, 2], "sigmoid", "mse", n=3, scale=12.0)
    nets.append(("sigmoid-saturated", sat, ["sigmoid", "mse", "saturated", "ggn-differs"]))
    top = _network(208, [2, 2, 3], "tanh", "cross_entropy", n=3)
    top["params"]["layers.1.weight"] = top["params"]["layers.1.weight"] * 32.0
    hidden = np.tanh(top["X"] @ top["params"]["layers.0.weight"].T + top["params"]["layers.0.bias"])
    logits = hidden @ top["params"]["layers.1.weight"].T + top["params"]["layers.1.bias"]
    top["y"] = np.argmax(logits, axis=1).astype(np.int64)  # the label is the dominant class
    nets.append(
        ("saturated-softmax", top, ["tanh", "cross-entropy", "saturated-softmax", "ggn-differs"])
    )
    flat = _network(219, [2, 2, 2], "tanh", "mse", n=3, scale=16.0)  # |z| from 4.5 to 46
    nets.append(("tanh-saturated", flat, ["tanh", "mse", "saturated", "ggn-differs"]))
    return nets


def _probes(seed: int, P: int, S: int) -> np.ndarray:
    """The reference's Rademacher draws (refprune.curvature.hessian_diag, method 'hutchinson')."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return np.stack([rng.integers(0, 2, size=P) * 2 - 1 for _ in range(S)]).astype(np.float64)


def _cases() -> list[CaseSpec]:
    out = []
    for i, (key, net, net_flags) in enumerate(_networks()):
        what = describe(net)
        smooth = "ggn-differs" in net_flags
        flags = [f for f in net_flags if f != "ggn-differs"]
        base = dict(net)
        if "deep" not in flags:
            out.append(
                CaseSpec(f"{key}/loss_value", "loss_value", f"mean loss of a {what}", flags, base)
            )
        out.append(CaseSpec(f"{key}/gradient", "gradient", f"gradient of a {what}", flags, base))
        rng = np.random.Generator(np.random.PCG64(1000 + i))
        v = {n: _q(rng.standard_normal(p.shape)) for n, p in net["params"].items()}
        out.append(
            CaseSpec(
                f"{key}/hvp",
                "hvp",
                f"H v for a {what}, v a rounded normal draw",
                flags,
                dict(base, v=v),
            )
        )
        for method in ("exact", "ggn", "obd"):
            extra = ["ggn-differs"] if smooth and method != "exact" else []
            out.append(
                CaseSpec(
                    f"{key}/hessian_diag/{method}",
                    "hessian_diag",
                    f"{method} Hessian diagonal of a {what}",
                    flags + extra,
                    dict(base, method=method),
                )
            )
        P = flatten(net["params"]).size
        seed = 7 + i
        if "deep" in flags or "single-layer" in flags:
            out.append(
                CaseSpec(
                    f"{key}/hutchinson",
                    "hutchinson_diag",
                    f"Hutchinson with S = 3 probes drawn from seed {seed} ({P} parameters), {what}",
                    sorted(set(flags + ["numpy-rng"])),
                    dict(base, probes=_probes(seed, P, 3)),
                )
            )
        if "deep" in flags and net["activation"] in ("relu", "tanh"):
            out.append(
                CaseSpec(
                    f"{key}/full_hessian",
                    "full_hessian",
                    f"full {P} x {P} Hessian of a {what}",
                    flags,
                    base,
                )
            )
    return out


def tolerance(op: str, expected: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Relative 1e-10 of the output's largest magnitude (at least 1), or 64 ulp."""
    return close(expected, rel=1e-10)


# ----------------------------------------------------------------------------- properties
def _nets(**kw):
    return cst.networks(**kw)


def _differential(op: str, **extra):
    def check(c, net):
        c.agree(op, **net, **extra)

    return check


def _diag_differential(c, ex):
    net, method = ex
    c.agree("hessian_diag", **net, method=method)


@st.composite
def _smooth_deep_nets(draw):
    """Networks with one or two hidden layers of tanh or sigmoid units, where the three
    diagonals differ (sigma'' != 0)."""
    sizes = draw(st.lists(st.integers(1, 4), min_size=3, max_size=4))
    loss = draw(st.sampled_from(cst.LOSSES))
    if loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    X, y = draw(cst.batches(sizes, loss))
    return {
        "params": draw(cst.params(sizes)),
        "X": X,
        "y": y,
        "activation": draw(st.sampled_from(["tanh", "sigmoid"])),
        "loss": loss,
    }


def _every_diag_differential(c, net):
    provided = 0
    for method in ("exact", "ggn", "obd"):
        try:
            c.agree("hessian_diag", **net, method=method)
        except NotProvided:  # a backend may provide some of the methods
            continue
        provided += 1
    if not provided:
        raise NotProvided("hessian_diag provides none of exact, ggn, obd")


@st.composite
def _with_vector(draw):
    net = draw(cst.networks())
    return net, draw(cst.like(net["params"])), draw(cst.like(net["params"]))


def _require_close(c, a, b, scale, says):
    """Require max |a - b| <= 1e-9 * max(1, max |scale|), else fail: ``says`` and that maximum."""
    tol = 1e-9 * max(1.0, float(np.max(np.abs(scale))))
    diff = np.max(np.abs(a - b))
    c.require(diff <= tol, lambda: f"{says} {diff:.3g}")


def _hvp_differential(c, ex):
    net, v, _ = ex
    c.agree("hvp", **net, v=v)


def _hvp_linear_symmetric(c, ex):
    """H(2v) = 2 Hv, H(u + v) = Hu + Hv and u.Hv = v.Hu, within the tolerance."""
    net, v, u = ex
    hv = flatten(c.call("hvp", **net, v=v))
    hu = flatten(c.call("hvp", **net, v=u))
    h2v = flatten(c.call("hvp", **net, v={n: 2.0 * a for n, a in v.items()}))
    huv = flatten(c.call("hvp", **net, v={n: u[n] + v[n] for n in v}))
    scale = np.concatenate([hv, hu])
    _require_close(c, h2v, 2 * hv, scale=scale, says="H(2v) != 2 Hv: max diff")
    _require_close(c, huv - hu, hv, scale=scale, says="H(u+v) != Hu + Hv: max diff")
    fu, fv = flatten(u), flatten(v)
    a, b = float(fu @ hv), float(fv @ hu)
    bound = 1e-9 * max(1.0, float(np.abs(fu) @ np.abs(hv)), float(np.abs(fv) @ np.abs(hu)))
    c.require(
        abs(a - b) <= bound, lambda: f"u.Hv = {a!r} but v.Hu = {b!r}: the Hessian is not symmetric"
    )


def _exact_is_diag_of_full(c, net):
    d = flatten(c.call("hessian_diag", **net, method="exact"))
    H = np.asarray(c.call("full_hessian", **net))
    P = d.size
    c.require(H.shape == (P, P), lambda: f"full_hessian has shape {H.shape}, expected {(P, P)}")
    _require_close(
        c, np.diag(H), d, scale=H, says="hessian_diag(exact) differs from diag(full_hessian) by"
    )
    _require_close(c, H, H.T, scale=H, says="full_hessian is not symmetric:")


def _ggn_is_exact_piecewise_linear(c, net):
    g = flatten(c.call("hessian_diag", **net, method="ggn"))
    e = flatten(c.call("hessian_diag", **net, method="exact"))
    _require_close(c, g, e, scale=e, says=f"{net['activation']}: ggn and exact diagonals differ by")


def _single_layer_obd_exact(c, net):
    o = flatten(c.call("hessian_diag", **net, method="obd"))
    e = flatten(c.call("hessian_diag", **net, method="exact"))
    _require_close(c, o, e, scale=e, says="one layer: obd and exact differ by")


@st.composite
def _with_probes(draw):
    net = draw(cst.networks(max_layers=2))
    P = flatten(net["params"]).size
    S = draw(st.integers(1, 3))
    signs = draw(
        st.lists(
            st.lists(st.sampled_from([-1.0, 1.0]), min_size=P, max_size=P), min_size=S, max_size=S
        )
    )
    return net, np.array(signs)


def _hutchinson_differential(c, ex):
    net, probes = ex
    c.agree("hutchinson_diag", **net, probes=probes)


def _hutchinson_sign_invariant(c, ex):
    """Flipping the sign of every probe changes nothing: (-v) * H(-v) = v * Hv."""
    net, probes = ex
    a = flatten(c.call("hutchinson_diag", **net, probes=probes))
    b = flatten(c.call("hutchinson_diag", **net, probes=-probes))
    _require_close(c, a, b, scale=a, says="negated probes changed the estimate by")


@st.composite
def _permuted(draw):
    net = draw(cst.networks(max_layers=2))
    width = net["params"]["layers.0.weight"].shape[0]
    perm = np.array(draw(st.permutations(range(width))))
    batch = np.array(draw(st.permutations(range(net["X"].shape[0]))))
    return net, perm, batch


def _permute_units(params: dict[str, np.ndarray], perm: np.ndarray) -> dict[str, np.ndarray]:
    """Reorder the units of the first hidden layer (rows of W_0 and b_0, columns of W_1)."""
    out = {n: a.copy() for n, a in params.items()}
    if "layers.1.weight" not in params:
        return out
    out["layers.0.weight"] = params["layers.0.weight"][perm]
    out["layers.0.bias"] = params["layers.0.bias"][perm]
    out["layers.1.weight"] = params["layers.1.weight"][:, perm]
    return out


def _gradient_permutation(c, ex):
    """Permuting hidden units permutes the gradient; permuting the batch leaves it unchanged."""
    net, perm, batch = ex
    g = c.call("gradient", **net)
    gp = c.call("gradient", **dict(net, params=_permute_units(net["params"], perm)))
    gb = c.call("gradient", **dict(net, X=net["X"][batch], y=net["y"][batch]))
    want = _permute_units(g, perm)
    tol = 1e-9 * max(1.0, float(np.max(np.abs(flatten(g)))))
    d1 = np.max(np.abs(flatten(gp) - flatten(want)))
    d2 = np.max(np.abs(flatten(gb) - flatten(g)))
    c.require(
        d1 <= tol,
        lambda: (
            f"permuting hidden units {perm.tolist()} did not permute the gradient (diff {d1:.3g})"
        ),
    )
    c.require(
        d2 <= tol,
        lambda: f"permuting the batch by {batch.tolist()} changed the gradient (diff {d2:.3g})",
    )


def _diag_permutation(c, ex):
    net, perm, _ = ex
    for method in ("exact", "ggn", "obd"):
        d = c.call("hessian_diag", **net, method=method)
        dp = c.call(
            "hessian_diag", **dict(net, params=_permute_units(net["params"], perm)), method=method
        )
        want = flatten(_permute_units(d, perm))
        tol = 1e-9 * max(1.0, float(np.max(np.abs(want))))
        diff = np.max(np.abs(flatten(dp) - want))
        c.require(
            diff <= tol,
            lambda: (
                f"{method}: permuting hidden units {perm.tolist()} did not permute "
                f"the diagonal (diff {diff:.3g})"
            ),
        )


PROPERTIES = [
    Property(
        "curvature/loss-differential",
        ("loss_value",),
        "the mean loss equals the reference's",
        _nets(),
        _differential("loss_value"),
    ),
    Property(
        "curvature/gradient-differential",
        ("gradient",),
        "the gradient equals the reference's",
        _nets(),
        _differential("gradient"),
    ),
    Property(
        "curvature/gradient-permutation",
        ("gradient",),
        "permuting hidden units permutes the gradient; permuting the batch changes nothing",
        _permuted(),
        _gradient_permutation,
    ),
    Property(
        "curvature/hvp-differential",
        ("hvp",),
        "H v equals the reference's",
        _with_vector(),
        _hvp_differential,
    ),
    Property(
        "curvature/hvp-linear-symmetric",
        ("hvp",),
        "H v is linear in v and u.Hv = v.Hu",
        _with_vector(),
        _hvp_linear_symmetric,
    ),
    Property(
        "curvature/full-hessian-differential",
        ("full_hessian",),
        "the full Hessian equals the reference's",
        cst.networks(max_layers=2, max_width=3),
        _differential("full_hessian"),
    ),
    Property(
        "curvature/hessian-diag-differential",
        ("hessian_diag",),
        "every Hessian-diagonal method equals the reference's",
        st.tuples(_nets(), st.sampled_from(["exact", "ggn", "obd"])),
        _diag_differential,
    ),
    Property(
        "curvature/hessian-diag-smooth-differential",
        ("hessian_diag",),
        "on deep tanh and sigmoid networks, where they differ, each of the three diagonals "
        "equals the reference's",
        _smooth_deep_nets(),
        _every_diag_differential,
    ),
    Property(
        "curvature/exact-diag-is-diag-of-full",
        ("hessian_diag", "full_hessian"),
        "the exact diagonal is the diagonal of the (symmetric) full Hessian",
        cst.networks(max_layers=2, max_width=3),
        _exact_is_diag_of_full,
    ),
    Property(
        "curvature/ggn-exact-for-piecewise-linear",
        ("hessian_diag",),
        "for relu and identity networks the GGN diagonal is the exact diagonal",
        cst.networks(activations=("relu", "identity")),
        _ggn_is_exact_piecewise_linear,
    ),
    Property(
        "curvature/obd-exact-for-one-layer",
        ("hessian_diag",),
        "with no hidden layer the OBD recursion is exact",
        cst.networks(max_layers=1),
        _single_layer_obd_exact,
    ),
    Property(
        "curvature/hessian-diag-permutation",
        ("hessian_diag",),
        "permuting hidden units permutes every diagonal",
        _permuted(),
        _diag_permutation,
    ),
    Property(
        "curvature/hutchinson-differential",
        ("hutchinson_diag",),
        "the Hutchinson estimate for given probes equals the reference's",
        _with_probes(),
        _hutchinson_differential,
    ),
    Property(
        "curvature/hutchinson-sign-invariant",
        ("hutchinson_diag",),
        "negating every probe leaves the estimate unchanged",
        _with_probes(),
        _hutchinson_sign_invariant,
    ),
]

FAMILY = Family(
    name="curvature",
    algorithm=ALGORITHM,
    notes=NOTES,
    cases=_cases,
    tolerance=tolerance,
    properties=PROPERTIES,
)
