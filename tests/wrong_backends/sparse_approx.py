"""Wrong backends of the sparse_approx family: thresholding operators, ISTA, IHT."""

from __future__ import annotations

import numpy as np

from .base import WrongBackend


class SoftHardSwapped(WrongBackend):
    """Soft and hard thresholding swapped: ``soft_threshold`` keeps survivors unshrunk.

    soft_threshold(w, lam) returns w * (|w| > sqrt(2 lam)) and
    hard_threshold_prox returns sign(w) max(|w| - lam, 0). Models the two
    proximal operators wired to each other's names, an easy slip since both
    "threshold" w.
    """

    name = "soft and hard thresholding swapped"
    family = "sparse_approx"

    def soft_threshold(self, *, w, lam):
        return super().hard_threshold_prox(w=w, lam=lam)

    def hard_threshold_prox(self, *, w, lam):
        return super().soft_threshold(w=w, lam=lam)


class HardThresholdProxAtLambda(WrongBackend):
    """The l0 proximal operator keeps |w_i| > lam instead of w_i**2 > 2 lam.

    The threshold of the prox of lam ||u||_0 is sqrt(2 lam), not lam: for
    lam < 2 too much is kept, for lam > 2 too little. Models reusing the soft
    threshold's comparison ``abs(w) > lam`` for the hard prox.
    """

    name = "hard prox at lambda"
    family = "sparse_approx"

    def hard_threshold_prox(self, *, w, lam):
        super().hard_threshold_prox(w=w, lam=lam)  # checks
        w = np.asarray(w, dtype=np.float64)
        return np.where(np.abs(w) > lam, w, 0.0)


class HardThresholdBySignedValue(WrongBackend):
    """The best k-term approximation keeps the k largest signed values instead of the k largest |w|.

    Large negative entries are dropped first. Models ``np.argsort(w)[-k:]``
    (or ``torch.topk(w, k)``) without ``abs``.
    """

    name = "hard threshold by signed value"
    family = "sparse_approx"

    def hard_threshold(self, *, w, k):
        from refprune.masks import keep_top_k

        super().hard_threshold(w=w, k=k)  # checks
        w = np.asarray(w, dtype=np.float64)
        return np.where(keep_top_k(w, k), w, 0.0)


def ista_rebuilt(
    A, y, lam: float, step: float | None, n_iter: int, *, shrink_by_step: bool = True
) -> np.ndarray:
    """ISTA (the protocol's ``ista``) rebuilt from ``soft_threshold``: from x = 0, x <-
    soft_threshold(x - step A^T (A x - y), step lam); ``shrink_by_step=False`` shrinks by lam."""
    from refprune.sparse_approx import soft_threshold

    A, y = np.asarray(A, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if step is None:
        step = 1.0 / np.linalg.norm(A, 2) ** 2
    x = np.zeros(A.shape[1])
    for _ in range(int(n_iter)):
        x = soft_threshold(x - step * (A.T @ (A @ x - y)), step * lam if shrink_by_step else lam)
    return x


class ISTAThresholdWithoutStep(WrongBackend):
    """ISTA's shrinkage at lam instead of step * lam.

    The prox of step * lam ||x||_1 shrinks by step * lam; shrinking by lam
    solves the problem with the penalty lam / step instead. Right only when
    step = 1. Models writing the proximal step as ``soft_threshold(z, lam)``
    after folding the step into the gradient step.
    """

    name = "ISTA threshold without the step"
    family = "sparse_approx"

    def ista(self, *, A, y, lam, step, n_iter):
        super().ista(A=A, y=y, lam=lam, step=step, n_iter=n_iter)  # checks
        return ista_rebuilt(A, y, lam, step, n_iter, shrink_by_step=False)
