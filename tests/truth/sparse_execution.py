"""The pruned network's outputs and one masked SGD step, in mpmath, from the dense definition.

sparse_forward is z_L of the masked network (theta * M; whatever theta holds at a pruned
entry is never read); sparse_train_step is w' = w - lr (g + weight_decay w) on the alive
entries and 0 on the pruned ones, with g from the same forward-mode jets as the curvature
family's gradient (``curvature.gradient``), and the loss at w. No sparse format appears
here: the truth is the dense masked computation the sparse kernels must meet.
"""

from __future__ import annotations

from typing import Any

from mpmath import mpf

from . import curvature
from .cases import Array, rows
from .network import Net, forward, loss


def truth(op: str, inputs: dict[str, Any]) -> dict[str, Any]:
    net = Net(inputs["params"], inputs["masks"], inputs["activation"])
    X = rows(inputs["X"])
    if op == "sparse_forward":
        layers = net.layers(net.theta)
        out = []
        for x in X:
            out += forward(layers, [mpf(v) for v in x], net.sigma)[2]
        return {"logits": Array("float64", (len(X), len(out) // max(len(X), 1)), out)}
    if op == "sparse_train_step":
        _, y = curvature._batch(inputs)
        lr, wd = mpf(inputs["lr"]), mpf(inputs["weight_decay"])
        g = curvature.gradient(net, X, y, inputs["loss"])
        new = [
            t - lr * (gp + wd * t) if alive else mpf(0)
            for t, gp, alive in zip(net.theta, g, net.alive)
        ]
        return {
            "step": {
                "params": curvature.unflat(net, new),
                "loss": loss(net, net.theta, X, y, inputs["loss"]),
            }
        }
    raise KeyError(op)


OPS = ("sparse_forward", "sparse_train_step")
