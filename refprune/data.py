"""Seeded data sets: Gaussian blobs, a sparse teacher network, random labels, splits, and digits.

Every generator takes ``seed`` (int or Generator) and documents its draws in
order, so another backend can rebuild the same arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from ._checks import choice, float_array, positive_int, real_number
from .masks import fraction_to_count
from .mlp import MLP
from .rng import make_rng


def make_blobs(
    n_samples: int = 300,
    n_features: int = 2,
    n_classes: int = 3,
    *,
    center_scale: float = 4.0,
    spread: float = 1.0,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-blob classification: x = c_y + spread * e, e ~ N(0, I).

    Draws, in order: centres ``center_scale * rng.standard_normal((K, d))``;
    labels ``rng.permutation(np.arange(N) % K)`` (balanced classes);
    noise ``rng.standard_normal((N, d))``.

    Returns X (N, d) float64 and y (N,) int64.
    """
    n = positive_int(n_samples, "n_samples")
    d = positive_int(n_features, "n_features")
    k = positive_int(n_classes, "n_classes")
    center_scale = real_number(center_scale, "center_scale", low=0.0)
    spread = real_number(spread, "spread", low=0.0)
    rng = make_rng(seed)
    centers = center_scale * rng.standard_normal((k, d))
    y = rng.permutation(np.arange(n) % k).astype(np.int64)
    X = centers[y] + spread * rng.standard_normal((n, d))
    return X, y


def make_teacher_student(
    n_samples: int = 1000,
    sizes: Sequence[int] = (20, 32, 4),
    *,
    density: float = 0.2,
    activation: str = "relu",
    task: str = "classification",
    noise: float = 0.0,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, np.ndarray, MLP]:
    """Data labelled by a sparse random teacher MLP ("the true network is sparse").

    The teacher is ``MLP(sizes, activation, init="glorot", seed=rng)``; in each weight
    matrix exactly ``fraction_to_count(density, n_l)`` entries stay alive, chosen as the
    first ones of ``rng.permutation(n_l)`` (C-order indices); biases stay dense (zero).
    Inputs are x ~ N(0, I). Classification: y = argmax_k f(x)_k. Regression:
    y = f(x) + noise * e, e ~ N(0, I).

    Draws, in order: the teacher's weights (layer by layer), the permutation of each
    weight matrix (layer by layer), ``rng.standard_normal((N, sizes[0]))`` for X, and,
    for regression only, ``rng.standard_normal((N, sizes[-1]))`` for the noise.

    Returns X, y and the teacher.
    """
    n = positive_int(n_samples, "n_samples")
    density = real_number(density, "density", low=0.0, high=1.0)
    choice(task, "task", ("classification", "regression"))
    noise = real_number(noise, "noise", low=0.0)
    rng = make_rng(seed)
    teacher = MLP(
        sizes,
        activation,
        init="glorot",
        seed=rng,
        loss="cross_entropy" if task == "classification" else "mse",
    )
    masks = {}
    for name in teacher.weight_names():
        w = teacher.params[name]
        alive = rng.permutation(w.size)[: fraction_to_count(density, w.size)]
        m = np.zeros(w.size, dtype=bool)
        m[alive] = True
        masks[name] = m.reshape(w.shape)
    teacher.set_masks(masks)
    X = rng.standard_normal((n, teacher.sizes[0]))
    out = teacher.forward(X)
    if task == "classification":
        return X, np.argmax(out, axis=1).astype(np.int64), teacher
    return X, out + noise * rng.standard_normal(out.shape), teacher


def random_labels(y: Any, n_classes: int, *, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Labels uniform over {0, ..., K-1}, independent of the inputs: ``rng.integers(0, K, N)``.

    The length of ``y`` sets N; its values are not used (no information survives).
    """
    y = np.asarray(y)
    if y.ndim < 1 or y.shape[0] == 0:
        raise ValueError(f"y must be a non-empty array of labels, got shape {y.shape}")
    k = positive_int(n_classes, "n_classes")
    return cast(np.ndarray, make_rng(seed).integers(0, k, size=y.shape[0]).astype(np.int64))


def train_test_split(
    X: Any, y: Any, *, test_fraction: float = 0.25, seed: int | np.random.Generator = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split rows into train and test sets.

    n_test = fraction_to_count(test_fraction, N) (round-half-even); the draw is
    ``perm = rng.permutation(N)``; test rows are ``perm[:n_test]``, train rows the rest.
    Returns X_train, X_test, y_train, y_test (new arrays).
    """
    X = float_array(X, "X", ndim=2)
    y = np.asarray(y)
    if y.shape[:1] != X.shape[:1]:
        raise ValueError(f"y must have one entry per row of X ({X.shape[0]}), got shape {y.shape}")
    n_test = fraction_to_count(test_fraction, X.shape[0])
    perm = make_rng(seed).permutation(X.shape[0])
    test, tr = perm[:n_test], perm[n_test:]
    return X[tr], X[test], y[tr].copy(), y[test].copy()


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The handwritten-digits set scikit-learn ships (1797 8x8 images, 10 classes).

    Returns X (1797, 64) float64 scaled to [0, 1] (pixel / 16) and y (1797,) int64.
    Needs the ``experiments`` extra (scikit-learn).
    """
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_digits needs scikit-learn: pip install 'refprune[experiments]'"
        ) from exc
    d = _load()
    return np.asarray(d.data, dtype=np.float64) / 16.0, np.asarray(d.target, dtype=np.int64)


__all__ = ["make_blobs", "make_teacher_student", "random_labels", "train_test_split", "load_digits"]
