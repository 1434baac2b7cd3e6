"""Wrong backends of the sparse_approx family: thresholding operators, ISTA, IHT."""

from __future__ import annotations

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
