"""Loss, gradient, H v, H, every Hessian diagonal and Hutchinson's estimate, in mpmath.

Derivatives come from forward-mode jets (``jets.py``) pushed through the forward
pass and the loss (``network.py``): nothing here restates backpropagation, so
these are a second, independent statement of what ``refprune.curvature``
computes. The approximate diagonals are written from their definitions
(docs/curvature.md):

    ggn   diag G,  G = sum_n J_n^T H_out,n J_n,  J_n = d f_n / d theta
    obd   h_L = diag(H_out);  h_l = sigma'(z_l)^2 (h_{l+1} W_l^2) + sigma''(z_l) (delta_{l+1} W_l);
          d2L/dW_l[i, j]^2 ~ sum_n a_l[n, j]^2 h_{l+1}[n, i],  d2L/db_l[i]^2 ~ sum_n h_{l+1}[n, i]
    hutchinson(probes v_s) = (1/S) sum_s v_s * (H v_s)

Every derivative is of L(theta * M) in theta: pruned entries are constants 0 and
their derivatives are exactly 0.
"""

from __future__ import annotations

from typing import Any

from mpmath import mpf

from .cases import Array, rows
from .jets import Space, value
from .network import Net, forward, loss, softmax


def _net(inputs: dict[str, Any], masks: Any = None) -> Net:
    return Net(inputs["params"], masks, inputs["activation"])


def _batch(inputs: dict[str, Any]) -> tuple[list[list[float]], list]:
    X = rows(inputs["X"])
    y = inputs["y"]
    targets = y.data if y.dtype != "float64" else rows(y)
    return X, targets


def unflat(net: Net, vector: list) -> dict[str, Array]:
    out: dict[str, Array] = {}
    for (name, _), x in zip(net.flat, vector):
        out.setdefault(name, Array("float64", net.shapes[name], [])).data.append(x)
    return out


def flat(net: Net, tree: dict[str, Array]) -> list[mpf]:
    return [mpf(tree[name].data[i]) for name, i in net.flat]


def _unit(net: Net) -> list[dict[int, mpf]]:
    return [{p: mpf(1)} for p in range(net.P)]


# ------------------------------------------------------------------ the jets' outputs
def loss_value(net: Net, X, y, loss_name: str) -> mpf:
    return loss(net, net.theta, X, y, loss_name)


def gradient(net: Net, X, y, loss_name: str) -> list[mpf]:
    space = Space(net.P)
    L = loss(net, net.jets(space, _unit(net)), X, y, loss_name)
    return [L.d[p] if net.alive[p] else mpf(0) for p in range(net.P)]


def hvp(net: Net, X, y, loss_name: str, v: list[mpf]) -> list[mpf]:
    """(H v)_i = d2 L(theta + r v) / (d theta_i d r): one extra direction r, pairs (i, r)."""
    r = net.P
    space = Space(net.P + 1, [(i, r) for i in range(net.P)])
    L = loss(net, net.jets(space, [{p: mpf(1), r: v[p]} for p in range(net.P)]), X, y, loss_name)
    return [L.h[p] if net.alive[p] else mpf(0) for p in range(net.P)]


def hessian(net: Net, X, y, loss_name: str) -> list[list[mpf]]:
    pairs = [(i, j) for i in range(net.P) for j in range(i, net.P)]
    space = Space(net.P, pairs)
    L = loss(net, net.jets(space, _unit(net)), X, y, loss_name)
    H = [[mpf(0)] * net.P for _ in range(net.P)]
    for (i, j), h in zip(pairs, L.h):
        if net.alive[i] and net.alive[j]:
            H[i][j] = H[j][i] = h
    return H


def exact_diag(net: Net, X, y, loss_name: str) -> list[mpf]:
    space = Space(net.P, [(i, i) for i in range(net.P)])
    L = loss(net, net.jets(space, _unit(net)), X, y, loss_name)
    return [L.h[p] if net.alive[p] else mpf(0) for p in range(net.P)]


# ------------------------------------------------------------------ output Hessian
def output_hessian(f: list[mpf], loss_name: str, N: int) -> list[list[mpf]]:
    """H_out = d2 L_n / df^2: (diag(p) - p p^T) / N, or 2 I / (N K)."""
    K = len(f)
    if loss_name == "cross_entropy":
        p = softmax(f)
        return [
            [(p[c] * (1 if c == k else 0) - p[c] * p[k]) / N for k in range(K)] for c in range(K)
        ]
    return [[mpf(2) / (N * K) if c == k else mpf(0) for k in range(K)] for c in range(K)]


def output_gradient(f: list[mpf], target: Any, loss_name: str, N: int) -> list[mpf]:
    """dL_n/df: (p - e_y) / N, or 2 (f - t) / (N K)."""
    K = len(f)
    if loss_name == "cross_entropy":
        p = softmax(f)
        return [(p[k] - (1 if k == int(target) else 0)) / N for k in range(K)]
    return [2 * (f[k] - mpf(target[k])) / (N * K) for k in range(K)]


def ggn_diag(net: Net, X, y, loss_name: str) -> list[mpf]:
    """diag sum_n J_n^T H_out,n J_n, J_n[k, i] = d f_nk / d theta_i (first-order jets)."""
    space = Space(net.P)
    layers = net.layers(net.jets(space, _unit(net)))
    N = len(X)
    diag = [mpf(0)] * net.P
    for x in X:
        _, _, f = forward(layers, [mpf(v) for v in x], net.sigma)
        J = [fk.d if hasattr(fk, "d") else [mpf(0)] * net.P for fk in f]
        H = output_hessian([value(fk) for fk in f], loss_name, N)
        K = len(f)
        for i in range(net.P):
            diag[i] += sum(J[c][i] * H[c][k] * J[k][i] for c in range(K) for k in range(K))
    return [d if a else mpf(0) for d, a in zip(diag, net.alive)]


def obd_diag(net: Net, X, y, loss_name: str) -> list[mpf]:
    """The Becker-LeCun recursion, one sample at a time, as written in docs/curvature.md."""
    layers = net.layers(net.theta)
    L, N = net.L, len(X)
    sums = {n: [mpf(0)] * _size(net, n) for n in net.names}
    for x, t in zip(X, y):
        z, a, f = forward(layers, [mpf(v) for v in x], net.sigma)  # z[l-1] = z_l, a[l] = a_l
        H_out = output_hessian(f, loss_name, N)
        delta = output_gradient(f, t, loss_name, N)  # delta_L
        h = [H_out[k][k] for k in range(len(f))]  # h_L = diag(H_out)
        for l in range(L - 1, -1, -1):
            W, _ = layers[l]
            for i in range(len(h)):  # the layer's own entries
                for j, aj in enumerate(a[l]):
                    sums[f"layers.{l}.weight"][i * len(a[l]) + j] += aj * aj * h[i]
                sums[f"layers.{l}.bias"][i] += h[i]
            if l == 0:
                break
            back = [sum(delta[k] * W[k][j] for k in range(len(W))) for j in range(len(W[0]))]
            s = [net.sigma(zj) for zj in z[l - 1]]  # (sigma, sigma', sigma'')
            h = [
                s[j][1] ** 2 * sum(h[k] * W[k][j] ** 2 for k in range(len(W))) + s[j][2] * back[j]
                for j in range(len(W[0]))
            ]
            delta = [back[j] * s[j][1] for j in range(len(W[0]))]
    out = [mpf(0)] * net.P
    for p, (n, i) in enumerate(net.flat):
        out[p] = sums[n][i] if net.alive[p] else mpf(0)
    return out


def _size(net: Net, name: str) -> int:
    shape = net.shapes[name]
    size = 1
    for s in shape:
        size *= s
    return size


def hutchinson(net: Net, X, y, loss_name: str, probes: Array) -> list[mpf]:
    """(1/S) sum_s v_s * (H v_s), with H the exact Hessian and the given probes."""
    H = hessian(net, X, y, loss_name)
    S = probes.shape[0]
    V = [[mpf(x) for x in row] for row in rows(probes)]
    out = []
    for i in range(net.P):
        total = mpf(0)
        for v in V:
            total += v[i] * sum(H[i][j] * v[j] for j in range(net.P))
        out.append(total / S)
    return out


def probe_scale(inputs: dict[str, Any]) -> dict[str, Any]:
    """The probes' share of S for Hutchinson's estimate, in closed form.

    d_i = (1/S) sum_s v_si (H v_s)_i, so v_sk dd_i/dv_sk = (1/S) (1[i = k] v_si (H v_s)_i
    + v_si H_ik v_sk), and the share is the sum over s and k of its absolute value.
    """
    net = _net(inputs)
    X, y = _batch(inputs)
    H = hessian(net, X, y, inputs["loss"])
    V = [[mpf(x) for x in row] for row in rows(inputs["probes"])]
    out = []
    for i in range(net.P):
        total = mpf(0)
        for v in V:
            Hv_i = sum(H[i][j] * v[j] for j in range(net.P))
            total += abs(v[i] * Hv_i + v[i] * H[i][i] * v[i])
            total += sum(abs(v[i] * H[i][k] * v[k]) for k in range(net.P) if k != i)
        out.append(total / len(V))
    return {"diag": unflat(net, out)}


DIAGONALS = {"exact": exact_diag, "ggn": ggn_diag, "obd": obd_diag}


# ------------------------------------------------------------------ golden operations
def truth(op: str, inputs: dict[str, Any]) -> dict[str, Any]:
    net = _net(inputs)
    X, y = _batch(inputs)
    loss_name = inputs["loss"]
    if op == "loss_value":
        return {"loss": loss_value(net, X, y, loss_name)}
    if op == "gradient":
        return {"gradient": unflat(net, gradient(net, X, y, loss_name))}
    if op == "hvp":
        return {"hvp": unflat(net, hvp(net, X, y, loss_name, flat(net, inputs["v"])))}
    if op == "full_hessian":
        H = hessian(net, X, y, loss_name)
        return {"hessian": Array("float64", (net.P, net.P), [x for row in H for x in row])}
    if op == "hessian_diag":
        return {"diag": unflat(net, DIAGONALS[inputs["method"]](net, X, y, loss_name))}
    if op == "hutchinson_diag":
        return {"diag": unflat(net, hutchinson(net, X, y, loss_name, inputs["probes"]))}
    raise KeyError(op)


OPS = ("loss_value", "gradient", "hvp", "full_hessian", "hessian_diag", "hutchinson_diag")
