"""Every saliency rule, Optimal Brain Surgeon and iterative SynFlow, in mpmath.

With w = theta * M (the effective weights), g the gradient, h a Hessian
diagonal and H the Hessian of the mean loss (``curvature.py``):

    magnitude    |w|                       obd          1/2 h w^2
    gradient     |g|                       taylor2      -g w + 1/2 h w^2
    taylor1      |g w|                     taylor2_abs  |-g w + 1/2 h w^2|
    obs          w_q^2 / (2 [(H_FF + lambda I)^-1]_qq),  F = the alive parameters
    grasp        w (H g_S),  g_S = g on the scored names, 0 elsewhere
    synflow      |w| dR/d|w|,  R = 1^T |W_{L-1}| ... |W_0| 1   (= |dR/dw w|)

A pruned entry scores 0. ``random`` draws numbers rather than computing them and
has no truth to compare with.

Optimal Brain Surgeon (Hassibi and Stork 1993) in closed form: with the quadratic
model (w' - w)^T A (w' - w), A = H_FF + lambda I, removing the set Q from the free
parameters F leaves R = F \\ Q at its minimiser under w'_Q = 0,

    w'_R = w_R + A_RR^-1 A_RQ w_Q,

and the next weight to go is the q in R with the lowest w'_q^2 / (2 [A_RR^-1]_qq).
The reference reaches the same numbers by one-at-a-time updates and downdates of
A^-1 (the downdated inverse is A_RR^-1, a Schur complement); here every step is
computed afresh from A.
"""

from __future__ import annotations

from typing import Any

import mpmath
from mpmath import mpf

from . import curvature as cv
from .cases import Array
from .jets import Space
from .network import Net

AGREE = mpf(10) ** -25  # two mp numbers closer than this (relatively) are a tie


def _names(net: Net, options: dict[str, Any] | None) -> list[str]:
    names = (options or {}).get("names")
    return list(names) if names else [n for n in net.names if n.endswith(".weight")]


def _pick(net: Net, vector: list, names: list[str]) -> dict[str, Array]:
    tree = cv.unflat(net, vector)
    return {n: tree[n] for n in names}


def synflow_vector(net: Net) -> list[mpf]:
    """|w| dR/d|w| for every parameter (0 for biases): first-order jets in |w|."""
    space = Space(net.P)
    absolute = [
        space.variable(abs(t), {p: mpf(1)})
        if net.alive[p] and net.flat[p][0].endswith(".weight")
        else mpf(0)
        for p, t in enumerate(net.theta)
    ]
    r: list = [mpf(1)] * net.shapes["layers.0.weight"][1]
    for W, _ in net.layers(absolute):
        r = [sum((wij * rj for wij, rj in zip(row, r)), mpf(0)) for row in W]
    R = sum(r, mpf(0))
    dR = R.d if hasattr(R, "d") else [mpf(0)] * net.P
    return [abs(t) * d for t, d in zip(net.theta, dR)]


def damped_inverse(net: Net, X, y, loss: str, damping: mpf) -> tuple[list[int], Any]:
    """F (alive flat indices) and (H_FF + damping I)^-1 as an mpmath matrix."""
    H = cv.hessian(net, X, y, loss)
    F = [p for p in range(net.P) if net.alive[p]]
    A = mpmath.matrix(len(F), len(F))
    for a, i in enumerate(F):
        for b, j in enumerate(F):
            A[a, b] = H[i][j] + (damping if a == b else 0)
    return F, mpmath.inverse(A)


def rule_vector(
    rule: str, net: Net, X, y, loss: str, options: dict[str, Any], names: list[str]
) -> list[mpf]:
    w = net.theta
    if rule == "magnitude":
        return [abs(t) for t in w]
    if rule == "synflow":
        return synflow_vector(net)
    g = cv.gradient(net, X, y, loss)
    if rule == "gradient":
        return [abs(x) for x in g]
    if rule == "taylor1":
        return [abs(x * t) for x, t in zip(g, w)]
    if rule in ("obd", "taylor2", "taylor2_abs"):
        h = cv.DIAGONALS[options.get("hessian_method", "exact")](net, X, y, loss)
        if rule == "obd":
            return [x * t * t / 2 for x, t in zip(h, w)]
        t2 = [-x * t + hx * t * t / 2 for x, hx, t in zip(g, h, w)]
        return t2 if rule == "taylor2" else [abs(x) for x in t2]
    if rule == "grasp":
        scored = {p for p, (n, _) in enumerate(net.flat) if n in names}
        Hg = cv.hvp(net, X, y, loss, [g[p] if p in scored else mpf(0) for p in range(net.P)])
        return [t * x for t, x in zip(w, Hg)]
    if rule == "obs":
        damping = mpf(options.get("damping", 1e-4))
        F, Ainv = damped_inverse(net, X, y, loss, damping)
        out = [mpf(0)] * net.P
        for a, p in enumerate(F):
            out[p] = w[p] ** 2 / (2 * Ainv[a, a])
        return out
    raise KeyError(rule)


def scores(inputs: dict[str, Any]) -> dict[str, Any]:
    net = Net(inputs["params"], inputs.get("masks"), inputs["activation"])
    X, y = cv._batch(inputs) if inputs.get("X") is not None else (None, None)
    options = inputs.get("options") or {}
    names = _names(net, options)
    vector = rule_vector(inputs["rule"], net, X, y, inputs["loss"], options, names)
    vector = [v if a else mpf(0) for v, a in zip(vector, net.alive)]
    return {"scores": _pick(net, vector, names)}


def _restricted(M: Any, rows: list[int], cols: list[int]) -> Any:
    return mpmath.matrix([[M[a, b] for b in cols] for a in rows])


def obs_after(A: Any, w: Any, Q: list[int]) -> tuple[list[int], Any, Any]:
    """R = F \\ Q, w'_R = w_R + A_RR^-1 A_RQ w_Q and A_RR^-1 (module docstring)."""
    R = [a for a in range(A.rows) if a not in Q]
    inv = mpmath.inverse(_restricted(A, R, R))
    w_R = mpmath.matrix([w[a] for a in R])
    if Q:
        w_R = w_R + inv * (_restricted(A, R, Q) * mpmath.matrix([w[q] for q in Q]))
    return R, w_R, inv


def _obs_setup(inputs: dict[str, Any]) -> tuple[Net, list[int], Any, Any, list[int]]:
    net = Net(inputs["params"], inputs.get("masks"), inputs["activation"])
    X, y = cv._batch(inputs)
    F, Ainv = damped_inverse(net, X, y, inputs["loss"], mpf(inputs["damping"]))
    A = mpmath.inverse(Ainv)
    w = mpmath.matrix([net.theta[p] for p in F])
    removed: list[int] = []
    candidates = [a for a, p in enumerate(F) if net.flat[p][0].endswith(".weight")]
    for _ in range(int(inputs["n_remove"])):
        R, w_R, inv = obs_after(A, w, removed)
        best, best_q = None, None
        for q in candidates:
            if q in removed:
                continue
            k = R.index(q)
            s = w_R[k] ** 2 / (2 * inv[k, k])
            if best is None or s < best or abs(s - best) <= AGREE * abs(best):
                best, best_q = s, q  # equal saliencies: the later goes
        removed.append(best_q)
    return net, F, A, w, removed


def obs_prune(inputs: dict[str, Any]) -> dict[str, Any]:
    net, F, A, w, removed = _obs_setup(inputs)
    R, w_R, _ = obs_after(A, w, removed)
    values = [mpf(0)] * net.P
    for k, a in enumerate(R):
        values[F[a]] = w_R[k]
    removed_flat = {F[a] for a in removed}
    masks = {}
    for p, (n, _) in enumerate(net.flat):
        masks.setdefault(n, Array("bool", net.shapes[n], [])).data.append(
            net.alive[p] and p not in removed_flat
        )
    return {"pruned": {"params": cv.unflat(net, values), "masks": masks}}


def _abs(M: Any) -> Any:
    return M.apply(abs)


def obs_prune_matrix_scale(inputs: dict[str, Any]) -> dict[str, Any]:
    """The share of S from entrywise relative perturbations of A = H_FF + lambda I.

    w'_R = w_R + X A_RQ w_Q with X = A_RR^-1, so sum_ab |A_ab dw'_i/dA_ab| =
    (|X| (|A_RQ| |w_Q| + |A_RR| |w'_R - w_R|))_i (Skeel's componentwise condition
    of the solve). Rounding the computed Hessian perturbs A in this unstructured
    way; perturbing the case's inputs keeps H's exact null space (the softmax's
    shift invariance) and would not see it.
    """
    net, F, A, w, removed = _obs_setup(inputs)
    R, w_R, X = obs_after(A, w, removed)
    scale = [mpf(0)] * net.P
    if removed:
        d = w_R - mpmath.matrix([w[a] for a in R])
        v = _abs(_restricted(A, R, removed)) * _abs(mpmath.matrix([w[q] for q in removed])) + _abs(
            _restricted(A, R, R)
        ) * _abs(d)
        t = _abs(X) * v
        for k, a in enumerate(R):
            scale[F[a]] = t[k]
    masks = {n: Array("bool", net.shapes[n], [True] * len(net.flat)) for n in net.names}
    return {"pruned": {"params": cv.unflat(net, scale), "masks": masks}}


def obs_scores_matrix_scale(inputs: dict[str, Any]) -> dict[str, Any]:
    """For rule "obs": s_q = w_q^2 / (2 X_qq), X = A^-1, dX = -X dA X, so the share of
    S from entrywise relative perturbations of A is s_q (|X| |A| |X|)_qq / X_qq.
    Other rules: nothing (their scale is the inputs' alone)."""
    net = Net(inputs["params"], inputs.get("masks"), inputs["activation"])
    names = _names(net, inputs.get("options"))
    scale = [mpf(0)] * net.P
    if inputs["rule"] == "obs":
        X, y = cv._batch(inputs)
        damping = mpf((inputs.get("options") or {}).get("damping", 1e-4))
        F, Ainv = damped_inverse(net, X, y, inputs["loss"], damping)
        A = mpmath.inverse(Ainv)
        M = _abs(Ainv) * _abs(A) * _abs(Ainv)
        for a, p in enumerate(F):
            scale[p] = net.theta[p] ** 2 / (2 * Ainv[a, a]) * M[a, a] / Ainv[a, a]
    return {"scores": _pick(net, scale, names)}


def _fraction_to_count(fraction: float, n: int, rounding: str) -> int:
    """The project's rounding rule, on the float64 product (a convention, not a truth)."""
    x = fraction * n
    if rounding == "floor":
        return int(x // 1)
    if rounding == "ceil":
        return int(-((-x) // 1))
    return round(x)


def keep_top(scores: dict[int, mpf], keep: int) -> set[int]:
    """The ``keep`` highest scores; equal scores (to ``AGREE``): the lower index kept."""
    if keep <= 0:
        return set()
    ranked = sorted(scores.values(), reverse=True)
    cut = ranked[min(keep, len(ranked)) - 1]
    above = {p for p, s in scores.items() if s > cut and abs(s - cut) > AGREE * abs(cut)}
    tied = sorted(
        p for p, s in scores.items() if p not in above and abs(s - cut) <= AGREE * abs(cut)
    )
    return above | set(tied[: keep - len(above)])


def synflow_prune(inputs: dict[str, Any]) -> dict[str, Any]:
    """Iterative SynFlow with the scores of every round computed exactly."""
    params = inputs["params"]
    masks = inputs.get("masks")
    base = Net(params, masks, "relu")
    weights = [p for p in range(base.P) if base.flat[p][0].endswith(".weight")]
    alive = {p for p in weights if base.alive[p]}
    n0 = len(alive)
    density, iterations = inputs["density"], int(inputs["iterations"])
    for k in range(1, iterations + 1):
        current = {n: Array("bool", base.shapes[n], []) for n in base.names}
        for p, (n, _) in enumerate(base.flat):
            current[n].data.append(p in alive or not n.endswith(".weight") and base.alive[p])
        s = synflow_vector(Net(params, current, "relu"))
        pruned = _fraction_to_count(1.0 - density ** (k / iterations), n0, inputs["rounding"])
        keep = n0 - pruned
        alive = keep_top({p: s[p] for p in alive}, keep)
    out = {}
    for p in weights:
        n = base.flat[p][0]
        out.setdefault(n, Array("bool", base.shapes[n], [])).data.append(p in alive)
    return {"masks": out}


def truth(op: str, inputs: dict[str, Any]) -> dict[str, Any]:
    if op == "scores":
        return scores(inputs)
    if op == "obs_prune":
        return obs_prune(inputs)
    if op == "synflow_prune":
        return synflow_prune(inputs)
    raise KeyError(op)


OPS = ("scores", "obs_prune", "synflow_prune")


def has_truth(op: str, inputs: dict[str, Any]) -> bool:
    return op != "scores" or inputs["rule"] != "random"
