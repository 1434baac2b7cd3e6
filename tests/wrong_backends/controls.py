"""Wrong backends of the controls family: random masks with the wrong counts or a biased draw,
and a random reinitialisation that forgets the mask."""

from __future__ import annotations

import numpy as np

from conformance.backend import _architecture, _model
from refprune.lottery import reinit_like
from refprune.rng import make_rng

from .base import WrongBackend


class BernoulliRandomMasks(WrongBackend):
    """Each entry is kept with probability k / n instead of exactly k entries being kept.

    The expected density is right, the count is not. Models
    ``mask = torch.rand_like(w) < density``, the commonest way to write a random
    mask, where the lottery-ticket control needs the exact per-layer counts of the
    pruned network it is compared with (Frankle and Carbin 2019).
    """

    name = "random masks with Bernoulli counts"
    family = "controls"

    def random_masks(self, *, masks, names, seed, within, generator):
        super().random_masks(
            masks=masks, names=names, seed=seed, within=within, generator=generator
        )  # argument checks
        rng = make_rng(seed)
        out = {n: np.asarray(m, dtype=bool).copy() for n, m in masks.items()}
        for name in names:
            m = out[name]
            cand = np.ones(m.shape, bool) if within is None else np.asarray(within[name], bool)
            p = m.sum() / max(int(cand.sum()), 1)
            out[name] = cand & (rng.random(m.shape) < p)
        return out


class CoarseRandomScoresTiesToFirst(WrongBackend):
    """Random masks from coarse random scores whose ties go to the lower index: not uniform.

    The k alive entries are the top k of scores drawn from {0, 1, 2, 3}, ties kept at
    the lower flat index, so early entries are kept more often than late ones. The
    counts are exact; only the distribution is wrong. Models random scores of low
    resolution (``torch.randint``, float16 noise) fed to a deterministic top-k.
    """

    name = "coarse random scores, ties to the first entries"
    family = "controls"

    def random_masks(self, *, masks, names, seed, within, generator):
        super().random_masks(
            masks=masks, names=names, seed=seed, within=within, generator=generator
        )  # argument checks
        rng = make_rng(seed)
        out = {n: np.asarray(m, dtype=bool).copy() for n, m in masks.items()}
        for name in names:
            m = out[name]
            cand = (
                np.arange(m.size)
                if within is None
                else np.flatnonzero(np.asarray(within[name], bool))
            )
            scores = rng.integers(0, 4, size=cand.size)
            order = np.argsort(-scores, kind="stable")  # equal scores: lower index first
            new = np.zeros(m.size, dtype=bool)
            new[cand[order[: int(m.sum())]]] = True
            out[name] = new.reshape(m.shape)
        return out


class ReinitDropsMask(WrongBackend):
    """Random reinitialisation returns the fresh weights without the mask: pruned entries revive.

    Models re-running the initialiser (``model.apply(init_weights)``,
    ``reset_parameters()``) on a pruned network whose masks live elsewhere, so the
    "reinitialised ticket" is in fact a dense random network.
    """

    name = "reinit drops the mask"
    family = "controls"

    def reinit(self, *, params, masks, init, sigma, seed, generator):
        super().reinit(
            params=params, masks=masks, init=init, sigma=sigma, seed=seed, generator=generator
        )  # argument checks
        model = _model(params, "relu", "mse")
        return {
            n: p.copy() for n, p in reinit_like(_architecture(model, init, sigma), seed).items()
        }
