"""Small deterministic networks and data for the golden cases (stored in the files, so any
backend reads them rather than regenerating them)."""

from __future__ import annotations

from typing import Any

import numpy as np


def quantize(x: Any) -> np.ndarray:
    """Round to a multiple of 1/64: exact in binary, so the stored hex floats stay short."""
    return np.round(np.asarray(x, dtype=np.float64) * 64.0) / 64.0


def network(
    seed: int, sizes: list[int], activation: str, loss: str, n: int = 4, scale: float = 1.0
) -> dict[str, Any]:
    """Keyword arguments (params, X, y, activation, loss) of a small MLP and batch.

    Weights ~ scale * N(0, 1), biases ~ 0.5 * N(0, 1), inputs ~ N(0, 1), all rounded to
    multiples of 1/64; labels uniform (cross-entropy) or targets ~ N(0, 1) (mse).
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    params = {}
    for l, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"layers.{l}.weight"] = quantize(scale * rng.standard_normal((fo, fi)))
        params[f"layers.{l}.bias"] = quantize(0.5 * rng.standard_normal(fo))
    X = quantize(rng.standard_normal((n, sizes[0])))
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], size=n).astype(np.int64)
    else:
        y = quantize(rng.standard_normal((n, sizes[-1])))
    return {"params": params, "X": X, "y": y, "activation": activation, "loss": loss}


def random_masks(
    params: dict[str, np.ndarray], seed: int, density: float = 0.5, biases: bool = False
) -> dict[str, np.ndarray]:
    """Weight masks drawn uniformly at ``density`` (biases all alive unless ``biases``).

    One PCG64 stream seeded with ``seed``, drawn tensor by tensor in the order of ``params``.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    out = {}
    for n, p in params.items():
        if n.endswith("weight") or biases:
            out[n] = rng.random(p.shape) < density
        else:
            out[n] = np.ones(p.shape, dtype=bool)
    return out


def sizes_of(params: dict[str, np.ndarray]) -> list[int]:
    n_layers = sum(1 for k in params if k.endswith(".weight"))
    return [params["layers.0.weight"].shape[1]] + [
        params[f"layers.{l}.weight"].shape[0] for l in range(n_layers)
    ]


def describe(net: dict[str, Any]) -> str:
    return (
        f"{net['activation']} {'-'.join(map(str, sizes_of(net['params'])))} MLP, {net['loss']}, "
        f"N = {len(net['X'])}"
    )
