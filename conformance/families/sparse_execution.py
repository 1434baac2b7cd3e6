"""Family "sparse_execution": the forward pass and one masked SGD step of a pruned MLP run in
the backend's own sparse format (CSR, COO, a GPU kernel), against the dense masked network."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .. import strategies as cst
from ..accuracy import EPS, pow2_ceil
from . import CaseSpec, Family, Property
from .networks import network, quantize, random_masks

ALGORITHM = """\
A pruned MLP: parameters theta (layers.l.weight W_l of shape (out_l, in_l), layers.l.bias b_l) and
a mask M of every parameter (True = alive). Its function is the dense masked network's:
z_{l+1} = a_l (W_l * M_l)^T + b_l * Mb_l, hidden layers apply the activation (ReLU'(0) = 0), the last
layer is linear. Whatever theta holds at a pruned entry is never read.
sparse_forward(params, masks, X, activation) = z_L, computed in the backend's sparse format.
sparse_train_step(params, masks, X, y, activation, loss, lr, weight_decay): with w = theta * M and
g the gradient of the mean loss of the masked network, d = g + weight_decay * w and
w' = w - lr * (d * M); returns {"params": w', "loss": the mean loss at w}. The pattern a sparse
format stores for training is the MASK, not the non-zeros: an alive weight equal to 0.0 or -0.0
has a gradient and moves; a pruned entry of w' is +0.0. Loss: cross_entropy = mean over the batch
of -log softmax(z_L)[y]; mse = mean over all N*K entries of (z_L - t)^2.
The reference runs refprune.sparse (SciPy CSR products, every layer sparse, one thread); a
sparse kernel sums each output over its stored weights in its own order, so results are
compared within a bound on reordered sums (docs/conformance.md, family sparse_execution)."""

NOTES = {
    "random-pattern": "about half of the weights pruned at random positions",
    "empty-row": "a weight row with no alive entry: the unit sees only its bias",
    "empty-column": "a weight column with no alive entry: an input or hidden unit feeds nothing",
    "fully-pruned-layer": "every weight of one layer pruned: a CSR matrix with no stored entry",
    "dense": "density 100 %: every weight alive (a full sparse matrix)",
    "batch-1": "a single sample",
    "alive-zero": "alive weights whose value is exactly 0.0: stored in the training pattern, "
    "they receive a gradient and move",
    "negative-zero": "weights and inputs equal to -0.0, alive and pruned",
    "pruned-garbage": "params hold large non-zero values at pruned entries, which must never "
    "be read (and are +0.0 after a step)",
    "pruned-bias": "some bias entries pruned",
    "square-layers": "square weight matrices: W and W^T have the same shape, so a transposed "
    "sparse matrix is not caught by a shape check",
    "wide": "a layer of fan-in 8: sums long enough for their order to matter",
    "full-mantissa": "parameters that use all 53 bits of the float64 mantissa: storing them "
    "in float32 loses about 1e-7 of each",
    "weight-decay": "coupled weight decay (L2 in the gradient)",
    "relu": "hidden activation relu",
    "tanh": "hidden activation tanh",
    "sigmoid": "hidden activation sigmoid",
    "identity": "hidden activation identity",
    "cross-entropy": "loss cross_entropy with int labels",
    "mse": "loss mse with float targets",
}


# ----------------------------------------------------------------------------- golden cases
def _garbage(params: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """params with large values (+-1e3 + the weight) written at the pruned entries."""
    out = {}
    for n, p in params.items():
        sign = np.where(np.arange(p.size).reshape(p.shape) % 2 == 0, 1.0, -1.0)
        out[n] = np.where(masks[n], p, quantize(sign * (1e3 + p)))
    return out


def _scenarios() -> list[tuple[str, str, dict[str, Any], dict[str, np.ndarray], list[str]]]:
    """(key, comment, network, masks, flags), each used by both operations."""
    out = []
    # 1. random pattern, square hidden layers, every activation
    for i, act in enumerate(("relu", "tanh", "sigmoid", "identity")):
        net = network(500 + i, [4, 4, 4, 3], act, "cross_entropy" if i % 2 == 0 else "mse", n=4)
        masks = random_masks(net["params"], 600 + i)
        out.append(
            (
                f"random-{act}",
                f"{act} 4-4-4-3, half of the weights pruned at random",
                net,
                masks,
                ["random-pattern", "square-layers", act],
            )
        )
    # 2. empty rows and columns
    net = network(510, [4, 4, 4, 3], "relu", "cross_entropy", n=4)
    masks = random_masks(net["params"], 610, density=0.7)
    masks["layers.0.weight"][1, :] = False  # hidden unit 1 sees only its bias
    masks["layers.0.weight"][:, 2] = False  # input 2 feeds nothing
    masks["layers.1.weight"][:, 3] = False  # hidden unit 3 feeds nothing
    masks["layers.2.weight"][0, :] = False  # output 0 is its bias
    out.append(
        (
            "empty-rows-columns",
            "relu 4-4-4-3: empty rows (units with only a bias) and "
            "empty columns (an input and a hidden unit feeding nothing)",
            net,
            masks,
            ["empty-row", "empty-column", "square-layers", "relu"],
        )
    )
    # 3. a fully pruned layer
    net = network(511, [3, 4, 4, 2], "tanh", "mse", n=3)
    masks = random_masks(net["params"], 611)
    masks["layers.1.weight"][:] = False
    out.append(
        (
            "fully-pruned-layer",
            "tanh 3-4-4-2 whose middle layer has no alive weight: the "
            "output depends on the input only through nothing; biases carry it",
            net,
            masks,
            ["fully-pruned-layer", "square-layers", "tanh"],
        )
    )
    # 4. density 100 %
    net = network(512, [4, 4, 4, 3], "sigmoid", "cross_entropy", n=4)
    masks = {n: np.ones(p.shape, dtype=bool) for n, p in net["params"].items()}
    out.append(
        (
            "dense",
            "sigmoid 4-4-4-3 with every weight alive",
            net,
            masks,
            ["dense", "square-layers", "sigmoid"],
        )
    )
    # 5. batch 1
    net = network(513, [4, 4, 4, 3], "relu", "mse", n=1)
    masks = random_masks(net["params"], 613)
    out.append(
        (
            "batch-1",
            "relu 4-4-4-3, half pruned, a single sample",
            net,
            masks,
            ["batch-1", "random-pattern", "square-layers", "relu"],
        )
    )
    # 6. alive zeros
    net = network(514, [4, 4, 4, 3], "tanh", "cross_entropy", n=4)
    masks = random_masks(net["params"], 614, density=0.7)
    for name in ("layers.0.weight", "layers.1.weight", "layers.2.weight"):
        alive = np.flatnonzero(masks[name])
        net["params"][name].ravel()[alive[::3]] = 0.0
    out.append(
        (
            "alive-zeros",
            "tanh 4-4-4-3: every third alive weight is exactly 0.0",
            net,
            masks,
            ["alive-zero", "random-pattern", "square-layers", "tanh"],
        )
    )
    # 7. negative zeros
    net = network(515, [4, 4, 4, 3], "relu", "mse", n=4)
    masks = random_masks(net["params"], 615, density=0.6)
    for name in ("layers.0.weight", "layers.1.weight"):
        w = net["params"][name].ravel()
        w[::4] = -0.0  # alive and pruned entries alike
    net["X"][:, 1] = -0.0
    net["params"]["layers.0.bias"][0] = -0.0
    out.append(
        (
            "negative-zeros",
            "relu 4-4-4-3: -0.0 weights (alive and pruned), an input column and a bias of -0.0",
            net,
            masks,
            ["negative-zero", "alive-zero", "random-pattern", "square-layers", "relu"],
        )
    )
    # 8. garbage at pruned entries, pruned biases
    net = network(516, [4, 4, 4, 3], "tanh", "mse", n=4)
    masks = random_masks(net["params"], 616, biases=True)
    net["params"] = _garbage(net["params"], masks)
    out.append(
        (
            "pruned-garbage",
            "tanh 4-4-4-3: params hold +-1e3 at every pruned entry, biases pruned too",
            net,
            masks,
            ["pruned-garbage", "pruned-bias", "random-pattern", "square-layers", "tanh"],
        )
    )
    # 9. a wide layer
    net = network(517, [8, 6, 3], "relu", "cross_entropy", n=6)
    masks = random_masks(net["params"], 617, density=0.75)
    out.append(
        (
            "wide",
            "relu 8-6-3, a quarter pruned, 6 samples",
            net,
            masks,
            ["wide", "random-pattern", "relu"],
        )
    )
    # 10. weights with every bit of a float64 mantissa
    net = network(518, [4, 4, 4, 3], "tanh", "cross_entropy", n=3)
    rng = np.random.Generator(np.random.PCG64(718))
    net["params"] = {
        n: p + rng.standard_normal(p.shape) * 2.0**-20 for n, p in net["params"].items()
    }
    masks = random_masks(net["params"], 618)
    out.append(
        (
            "full-mantissa",
            "tanh 4-4-4-3, half pruned, weights and biases carrying all "
            "53 bits (N(0, 1) noise of size 2^-20 added to multiples of 1/64)",
            net,
            masks,
            ["full-mantissa", "random-pattern", "square-layers", "tanh"],
        )
    )
    return out


def _cases() -> list[CaseSpec]:
    out = []
    for key, comment, net, masks, flags in _scenarios():
        out.append(
            CaseSpec(
                f"sparse_forward/{key}",
                "sparse_forward",
                comment,
                list(flags),
                {
                    "params": net["params"],
                    "masks": masks,
                    "X": net["X"],
                    "activation": net["activation"],
                },
            )
        )
    for key, comment, net, masks, flags in _scenarios():
        wd = 0.0625 if key in ("random-tanh", "random-identity", "pruned-garbage", "wide") else 0.0
        loss_flag = "cross-entropy" if net["loss"] == "cross_entropy" else "mse"
        extra = [loss_flag] + (["weight-decay"] if wd else [])
        out.append(
            CaseSpec(
                f"sparse_train_step/{key}",
                "sparse_train_step",
                f"one step at lr 0.5{', weight decay 1/16' if wd else ''}: {comment}",
                list(flags) + extra,
                {
                    "params": net["params"],
                    "masks": masks,
                    "X": net["X"],
                    "y": net["y"],
                    "activation": net["activation"],
                    "loss": net["loss"],
                    "lr": 0.5,
                    "weight_decay": wd,
                },
            )
        )
    return out


# ----------------------------------------------------------------------------- tolerance
# A sum of n terms in any order errs by at most (n - 1) u sum |terms| (u = 2^-53; Higham 2002,
# eq. 3.5). Carried through the network with the magnitudes of the terms (running error
# analysis, Wilkinson), this bounds what ANY summation order of a correct sparse kernel can
# give. ACTIVATION_ULPS is what NumPy-grade tanh / exp / division add per evaluation.
ACTIVATION_ULPS = 4.0
#: |sigma''| bounds: how far an error in z moves sigma'(z)
SECOND_BOUND = {"relu": 0.0, "identity": 0.0, "tanh": 0.77, "sigmoid": 0.1}
#: below the normal range rounding errs by an absolute 2^-1075 per operation, not u relative:
#: every alive entry's scale is at least the smallest normal number, so that R * scale allows
#: a few units of the smallest subnormal (pruned entries keep scale 0: exactly 0.0)
UNDERFLOW = 2.0**-1022
#: a computed bound is itself a float64 estimate of a first-order quantity: margin for both
SAFETY = 4.0


def _layers(params: dict[str, np.ndarray], masks: dict[str, np.ndarray]):
    L = sum(1 for n in params if n.endswith(".weight"))
    return [
        (
            np.asarray(params[f"layers.{l}.weight"], float) * masks[f"layers.{l}.weight"],
            np.asarray(params[f"layers.{l}.bias"], float) * masks[f"layers.{l}.bias"],
        )
        for l in range(L)
    ]


def running_bounds(params, masks, X, activation, loss=None, y=None, lr=None, weight_decay=0.0):
    """Error bounds, in units of u = 2^-53, that any summation order of a correct computation
    stays within: {"logits": (N, K)} and, when ``loss`` is given, {"params": per parameter,
    "loss": float} for one SGD step. Computed on the dense masked network in float64
    (magnitudes and bounds are upper estimates, not exact values)."""
    from refprune.activations import get_activation, softmax_parts

    act = get_activation(activation)
    layers = _layers(params, masks)
    a, A, Ea = np.asarray(X, float), np.abs(np.asarray(X, float)), np.zeros(np.shape(X))
    acts, mags, errs, zs, Ezs = [], [], [], [], []
    for l, (W, b) in enumerate(layers):
        n = W.shape[1] + 1  # fan-in and the bias
        z = a @ W.T + b
        Z = A @ np.abs(W).T + np.abs(b)  # sum of |terms|
        Ez = Ea @ np.abs(W).T + n * Z  # propagated + this sum's rounding
        acts.append((a, A, Ea))
        zs.append(z)
        Ezs.append(Ez)
        if l < len(layers) - 1:
            a = act.value(z)
            slope = np.ones_like(z) if activation != "sigmoid" else np.full_like(z, 0.25)
            A = np.abs(a)
            Ea = slope * Ez + ACTIVATION_ULPS * A
        mags.append(Z)
        errs.append(Ez)
    logits = zs[-1]
    out = {"logits": Ezs[-1] + np.abs(logits)}
    if loss is None:
        return out
    N, K = logits.shape
    Ef = Ezs[-1]
    if loss == "cross_entropy":
        logp, p, _ = softmax_parts(logits)
        onehot = np.zeros_like(p)
        onehot[np.arange(N), np.asarray(y, dtype=int)] = 1.0
        delta = (p - onehot) / N
        # softmax moves by at most p_k * 2 max_j |dz_j|; its own evaluation a few ulps
        Ed = (2.0 * p * Ef.max(axis=1, keepdims=True) + ACTIVATION_ULPS * (p + onehot)) / N
        picked = np.abs(logp[np.arange(N), np.asarray(y, dtype=int)])
        loss_bound = float((2.0 * Ef.max(axis=1).sum() + (ACTIVATION_ULPS + N) * picked.sum()) / N)
    else:
        t = np.asarray(y, float).reshape(N, K)
        r = logits - t
        delta = 2.0 * r / (N * K)
        Ed = 2.0 * (Ef + np.abs(r) + np.abs(t)) / (N * K)
        loss_bound = float((2 * np.abs(r) * Ef + (N * K + 2) * r * r).sum() / (N * K))
    grads, gbounds = {}, {}
    for l in range(len(layers) - 1, -1, -1):
        W, b = layers[l]
        a, A, Ea = acts[l]
        G = np.abs(delta).T @ A  # sum of |terms| of the sum over n
        Eg = Ed.T @ A + np.abs(delta).T @ Ea + N * G
        grads[l] = (delta.T @ a, delta.sum(axis=0))
        gbounds[l] = (Eg, Ed.sum(axis=0) + N * np.abs(delta).sum(axis=0))
        if l == 0:
            break
        zprev, Ezprev = zs[l - 1], Ezs[l - 1]
        back = delta @ W
        B = np.abs(delta) @ np.abs(W)
        Eback = Ed @ np.abs(W) + (W.shape[0] + 1) * B
        d1 = act.first(zprev)
        D1 = np.abs(d1)
        Ed_new = Eback * D1 + B * SECOND_BOUND[activation] * Ezprev + ACTIVATION_ULPS * B * D1
        if activation == "relu":  # a pre-activation within its own
            undecided = np.abs(zprev) <= Ezprev * 2.0**-53  # error bound may take either side
            Ed_new = np.where(undecided, B * 2.0**53, Ed_new)
        delta, Ed = back * d1, Ed_new
    new, bounds = {}, {}
    for l, (W, b) in enumerate(layers):
        for kind, w, g, eg in (
            ("weight", W, grads[l][0], gbounds[l][0]),
            ("bias", b, grads[l][1], gbounds[l][1]),
        ):
            name = f"layers.{l}.{kind}"
            m = masks[name]
            d = g + weight_decay * w
            w_new = np.where(m, w - lr * d, 0.0)
            Ed_ = eg + weight_decay * np.abs(w) * 2 + np.abs(d)
            bounds[name] = np.where(
                m, lr * (Ed_ + 2 * np.abs(d)) + 2 * np.abs(w_new) + np.abs(w), 0.0
            )
            new[name] = w_new
    out["params"] = bounds
    out["loss"] = loss_bound
    return out


def _reference_units(inputs: dict[str, Any]) -> float:
    """R in units of 2^-52 for the properties: two computations each within their bound."""
    return pow2_ceil(SAFETY * 2.0 * 0.5)  # |x - e| <= 2 * u * B = 2^-52 * B; times SAFETY


def tolerance(op: str, expected: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """'close' with the running error bound of reordered sums as each entry's scale.

    Golden cases replace it with per-entry sensitivity scales and R derived from
    ``conformance.accuracy`` (the generator does that for every family); properties use it
    as is: |x - e| <= R * max(|e|, B), B the bound of ``running_bounds`` (units of 2^-53),
    R = SAFETY * 2^-52 (two computations, each within u * B); the scale of an alive entry is
    at least UNDERFLOW, a pruned entry's scale is 0 (it must be exactly 0.0).
    """
    rel = _reference_units(inputs) * EPS
    if op == "sparse_forward":
        b = running_bounds(inputs["params"], inputs["masks"], inputs["X"], inputs["activation"])
        scale = np.maximum(np.abs(np.asarray(expected, float)), b["logits"])
        return {"kind": "close", "rel": rel, "scale": np.maximum(scale, UNDERFLOW)}
    b = running_bounds(
        inputs["params"],
        inputs["masks"],
        inputs["X"],
        inputs["activation"],
        inputs["loss"],
        inputs["y"],
        inputs["lr"],
        inputs["weight_decay"],
    )
    params = {
        n: np.where(
            inputs["masks"][n],
            np.maximum(
                np.maximum(np.abs(np.asarray(expected["params"][n], float)), b["params"][n]),
                UNDERFLOW,
            ),
            0.0,
        )
        for n in expected["params"]
    }
    loss = max(abs(float(expected["loss"])), b["loss"], UNDERFLOW)
    return {"kind": "close", "rel": rel, "scale": {"params": params, "loss": loss}}


# ----------------------------------------------------------------------------- properties
@st.composite
def _pruned_network(draw, train: bool = False, smooth: bool = False):
    """A small MLP with masks of every parameter: square layers often (width shared by the
    input and the hidden layers), alive zeros, -0.0, pruned biases, batches of 1 and more.
    ``smooth``: no ReLU (whose kink at 0 a subnormal perturbation may cross)."""
    n_layers = draw(st.integers(1, 3))
    if draw(st.booleans()):
        width = draw(st.integers(2, 5))
        sizes = [width] * n_layers + [draw(st.integers(2, 4))]
    else:
        sizes = draw(st.lists(st.integers(1, 6), min_size=n_layers + 1, max_size=n_layers + 1))
        sizes[-1] = max(sizes[-1], 2)
    loss = draw(st.sampled_from(cst.LOSSES))
    activation = draw(st.sampled_from([a for a in cst.ACTIVATIONS if not smooth or a != "relu"]))
    params = draw(cst.params(sizes))
    masks = {}
    for n, p in params.items():
        if n.endswith("weight"):
            masks[n] = draw(cst.masks(p.shape))
        else:
            masks[n] = draw(st.one_of(st.just(np.ones(p.shape, bool)), cst.masks(p.shape)))
    if draw(st.booleans()):  # a fully pruned layer
        name = f"layers.{draw(st.integers(0, n_layers - 1))}.weight"
        masks[name] = np.zeros(params[name].shape, bool)
    X, y = draw(cst.batches(sizes, loss, max_samples=4))
    out = {"params": params, "masks": masks, "X": X, "activation": activation}
    if train:
        out.update(
            y=y,
            loss=loss,
            lr=draw(st.sampled_from([0.5, 0.1, 1.0])),
            weight_decay=draw(st.sampled_from([0.0, 0.0, 0.0625])),
        )
    return out


def _dense_forward(ex: dict[str, Any]) -> np.ndarray:
    """The dense masked network of refprune.mlp (the definition the sparse path must meet)."""
    from ..backend import _masked_model

    return _masked_model(ex["params"], ex["masks"], ex["activation"], "mse").forward(ex["X"])


def _dense_step(ex: dict[str, Any]) -> dict[str, Any]:
    from refprune.train import SGD

    from ..backend import _masked_model

    model = _masked_model(ex["params"], ex["masks"], ex["activation"], ex["loss"])
    value, grads = model.loss_and_grads(ex["X"], ex["y"])
    SGD(lr=ex["lr"], weight_decay=ex["weight_decay"]).step(model, grads)
    return {"params": {n: p.copy() for n, p in model.params.items()}, "loss": value}


def _forward_differential(c, ex):
    c.agree("sparse_forward", **ex)


def _forward_dense(c, ex):
    """The backend's sparse forward equals the dense masked network (refprune.mlp)."""
    c.same("sparse_forward", _dense_forward(ex), c.call("sparse_forward", **ex), ex)


@st.composite
def _with_permutation(draw, train: bool = False):
    """A network and a permutation of the units of one hidden layer (or of the inputs)."""
    ex = draw(_pruned_network(train))
    L = sum(1 for n in ex["params"] if n.endswith(".weight"))
    layer = draw(st.integers(0, L - 1))  # permute the inputs of this layer
    width = ex["params"][f"layers.{layer}.weight"].shape[1]
    perm = np.asarray(draw(st.permutations(list(range(width)))), dtype=int)
    return ex, layer, perm


def _permuted(ex: dict[str, Any], layer: int, perm: np.ndarray) -> dict[str, Any]:
    """The same function with the inputs of ``layer`` permuted: columns of W_layer, and the
    rows and biases of layer - 1 (or the columns of X when layer is 0)."""
    out = dict(ex)
    params = {n: np.array(p) for n, p in ex["params"].items()}
    masks = {n: np.array(m) for n, m in ex["masks"].items()}
    for tree in (params, masks):
        tree[f"layers.{layer}.weight"] = tree[f"layers.{layer}.weight"][:, perm]
        if layer > 0:
            tree[f"layers.{layer - 1}.weight"] = tree[f"layers.{layer - 1}.weight"][perm, :]
            tree[f"layers.{layer - 1}.bias"] = tree[f"layers.{layer - 1}.bias"][perm]
    out["params"], out["masks"] = params, masks
    if layer == 0:
        out["X"] = np.array(ex["X"])[:, perm]
    return out


def _forward_permuted(c, arg):
    """Permuting the units of a hidden layer (or the input features, which reorders the
    column indices of every CSR row) leaves the outputs unchanged, up to summation order."""
    ex, layer, perm = arg
    base = c.call("sparse_forward", **ex)
    moved = c.call("sparse_forward", **_permuted(ex, layer, perm))
    c.same("sparse_forward", np.asarray(base), moved, ex)


@st.composite
def _with_garbage(draw, train: bool = False):
    ex = draw(_pruned_network(train))
    garbage = {}
    for n, p in ex["params"].items():
        values = draw(hnp.arrays(np.float64, p.shape, elements=st.floats(-1e3, 1e3)))
        garbage[n] = np.where(ex["masks"][n], p, values)
    return ex, garbage


def _forward_garbage(c, arg):
    """Values at pruned entries are never read: the outputs do not change with them."""
    ex, garbage = arg
    clean = {n: np.where(ex["masks"][n], p, 0.0) for n, p in ex["params"].items()}
    base = c.call("sparse_forward", **dict(ex, params=clean))
    dirty = c.call("sparse_forward", **dict(ex, params=garbage))
    c.same("sparse_forward", np.asarray(base), dirty, dict(ex, params=clean))


def _step_differential(c, ex):
    c.agree("sparse_train_step", **ex)


def _step_dense(c, ex):
    """The backend's sparse step equals refprune.train.SGD's step on the dense masked network."""
    c.same("sparse_train_step", _dense_step(ex), c.call("sparse_train_step", **ex), ex)


def _step_pruned_stay_zero(c, arg):
    """After a step every pruned entry is +0.0, whatever params held there (0.0 of either
    sign under a profile that does not promise the sign of zero, as torch's w * mask)."""
    ex, garbage = arg
    signed = getattr(c.profile, "signed_zeros", True)
    out = c.call("sparse_train_step", **dict(ex, params=garbage))
    for n, m in ex["masks"].items():
        p = np.asarray(out["params"][n], dtype=np.float64)
        dead = p[~m]
        c.require(
            np.all((dead == 0) & (~np.signbit(dead) | (not signed))),
            lambda: (
                f"{n}: pruned entries after the step are {dead.tolist()}, not "
                f"{'+0.0' if signed else '0.0'}"
            ),
        )


@st.composite
def _with_alive_zeros(draw):
    """A network whose alive weights include some set to 0.0 or -0.0, and where they are."""
    ex = draw(_pruned_network(train=True, smooth=True))
    params = {n: np.array(p) for n, p in ex["params"].items()}
    chosen = {}
    for n, m in ex["masks"].items():
        if not n.endswith("weight") or not m.any():
            continue
        pick = np.asarray(draw(hnp.arrays(bool, m.shape)), dtype=bool) & m
        params[n][pick] = draw(st.sampled_from([0.0, -0.0]))
        chosen[n] = pick
    return dict(ex, params=params), chosen


def _step_alive_zeros(c, arg):
    """An alive weight at 0.0 (or -0.0) trains as one at the smallest subnormal does: it is in
    the pattern, gets its gradient and moves (the two forward passes differ by < 1e-320)."""
    ex, chosen = arg
    tiny = {
        n: np.where(chosen.get(n, np.zeros(p.shape, bool)), 5e-324, p)
        for n, p in ex["params"].items()
    }
    zero = c.call("sparse_train_step", **ex)
    sub = c.call("sparse_train_step", **dict(ex, params=tiny))
    expected = {
        "params": {
            n: np.where(chosen.get(n, False), np.asarray(p) - 5e-324, p)
            for n, p in sub["params"].items()
        },
        "loss": float(sub["loss"]),
    }
    inputs = dict(ex, params=tiny)
    tol = tolerance("sparse_train_step", expected, inputs)
    # What the perturbation itself moves: a few units of the smallest subnormal (< 1e-320).
    reach = 1e-320 / tol["rel"]
    tol["scale"]["params"] = {
        n: np.where(s > 0, np.maximum(s, reach), 0.0) for n, s in tol["scale"]["params"].items()
    }
    c.same("sparse_train_step", expected, zero, inputs, tol)


def _step_permuted(c, arg):
    """Permuting hidden units (or inputs) permutes the step's result the same way."""
    ex, layer, perm = arg
    base = c.call("sparse_train_step", **ex)
    moved = c.call("sparse_train_step", **_permuted(ex, layer, perm))
    back = np.argsort(perm)
    unpermuted = {n: np.asarray(p) for n, p in moved["params"].items()}
    w = f"layers.{layer}.weight"
    unpermuted[w] = unpermuted[w][:, back]
    if layer > 0:
        unpermuted[f"layers.{layer - 1}.weight"] = unpermuted[f"layers.{layer - 1}.weight"][back, :]
        unpermuted[f"layers.{layer - 1}.bias"] = unpermuted[f"layers.{layer - 1}.bias"][back]
    expected = {
        "params": {n: np.asarray(p) for n, p in base["params"].items()},
        "loss": float(base["loss"]),
    }
    c.same("sparse_train_step", expected, {"params": unpermuted, "loss": moved["loss"]}, ex)


PROPERTIES = [
    Property(
        "sparse_execution/forward-differential",
        ("sparse_forward",),
        "the sparse forward pass equals the reference's",
        _pruned_network(),
        _forward_differential,
    ),
    Property(
        "sparse_execution/forward-equals-dense",
        ("sparse_forward",),
        "the sparse forward pass equals the dense masked network's (refprune.mlp)",
        _pruned_network(),
        _forward_dense,
    ),
    Property(
        "sparse_execution/forward-permutation-invariant",
        ("sparse_forward",),
        "permuting hidden units or input features leaves the outputs unchanged",
        _with_permutation(),
        _forward_permuted,
    ),
    Property(
        "sparse_execution/forward-ignores-pruned-values",
        ("sparse_forward",),
        "values held at pruned entries do not change the outputs",
        _with_garbage(),
        _forward_garbage,
    ),
    Property(
        "sparse_execution/step-differential",
        ("sparse_train_step",),
        "one sparse SGD step equals the reference's",
        _pruned_network(train=True),
        _step_differential,
    ),
    Property(
        "sparse_execution/step-equals-dense",
        ("sparse_train_step",),
        "one sparse SGD step equals refprune.train.SGD on the dense masked network",
        _pruned_network(train=True),
        _step_dense,
    ),
    Property(
        "sparse_execution/step-pruned-stay-zero",
        ("sparse_train_step",),
        "after a step every pruned entry is +0.0, whatever params held there",
        _with_garbage(train=True),
        _step_pruned_stay_zero,
    ),
    Property(
        "sparse_execution/step-alive-zeros-train",
        ("sparse_train_step",),
        "alive weights at 0.0 or -0.0 train like alive weights at the smallest subnormal",
        _with_alive_zeros(),
        _step_alive_zeros,
    ),
    Property(
        "sparse_execution/step-permutation-equivariant",
        ("sparse_train_step",),
        "permuting hidden units or inputs permutes the step's result",
        _with_permutation(train=True),
        _step_permuted,
    ),
]

FAMILY = Family(
    name="sparse_execution",
    algorithm=ALGORITHM,
    notes=NOTES,
    cases=_cases,
    tolerance=tolerance,
    properties=PROPERTIES,
)

__all__ = ["FAMILY", "running_bounds"]
