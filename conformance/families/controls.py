"""Family "controls": the random controls of lottery-ticket experiments -- random masks with
exact per-layer counts and random reinitialisation that keeps the mask (docs/controls.md).

Golden cases and the differential properties use the reference generator (NumPy's PCG64
stream, ``generator="reference"``); the other properties ask for the backend's own generator
(``generator="own"``) and check what any correct generator must satisfy: exact counts, nesting
in ``within``, the same answer for the same seed, and uniformity by a chi-square test whose
false-alarm probability is stated."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from . import EXACT, SIGNED_EXACT, CaseSpec, Family, Property
from .networks import network, random_masks

ALGORITHM = """\
random_masks(masks, names, seed, within, generator): for each name of names, k = alive count of
masks[name]; the new mask has exactly k alive entries, drawn uniformly among the candidates = the
alive entries of within[name] (within null: all entries); other masks are returned unchanged.
generator "reference" (refprune.lottery.random_masks_like): rng = Generator(PCG64(seed)); for each
name in order, c = flat C-order indices of the candidates, perm = rng.permutation(len(c)), alive =
c[perm[:k]]. generator "own": the backend's generator, seeded.
reinit(params, masks, init, sigma, seed, generator): fresh initial parameters of params'
architecture, then every entry pruned by masks set to 0.0 (the mask is kept). W_l ~ N(0, std_l^2),
std_l = sqrt(2 / in_l) (kaiming), sqrt(2 / (in_l + out_l)) (glorot) or sigma (normal); biases 0.
generator "reference" (refprune.mlp.MLP): rng = Generator(PCG64(seed)), W_l = std_l *
rng.standard_normal((out_l, in_l)) for l = 0 .. L-1 in order."""

NOTES = {
    "reference-stream": "NumPy's PCG64 stream reproduced exactly (generator 'reference')",
    "exact-counts": "the alive count of every mask is kept exactly (not Bernoulli draws)",
    "nested": "drawn among the alive entries of within: the new mask is nested in it",
    "several-layers": "several masks drawn from one generator, continued from name to name",
    "names-subset": "a mask not in names is returned unchanged",
    "all-or-nothing": "a mask with every entry alive, or none",
    "kaiming": "He (kaiming) normal initialisation, fan-in, ReLU gain",
    "glorot": "Glorot normal initialisation",
    "normal": "normal initialisation with a given sigma",
    "mask-kept": "pruned entries of the fresh weights are 0.0 (the random-reinit control)",
}


def _net_masks(seed: int, sizes: list[int], density: float) -> tuple[dict, dict]:
    net = network(seed, sizes, "relu", "cross_entropy", n=1)
    return net["params"], random_masks(net["params"], seed + 1, density)


def _cases() -> list[CaseSpec]:
    out = []
    params, masks = _net_masks(1701, [4, 5, 3], 0.4)
    weights = [n for n in params if n.endswith("weight")]
    within = {
        n: masks[n] | (np.random.Generator(np.random.PCG64(1702)).random(masks[n].shape) < 0.3)
        for n in weights
    }
    for key, names, w, seed, flags, comment in [
        (
            "layers",
            weights,
            None,
            0,
            ["several-layers"],
            "two weight masks at densities near 0.4, redrawn with their exact counts, seed 0",
        ),
        ("layers-seed-7", weights, None, 7, ["several-layers"], "the same masks, seed 7"),
        (
            "one-layer",
            [weights[1]],
            None,
            3,
            ["names-subset"],
            "only layers.1.weight redrawn; the other masks come back as given",
        ),
        (
            "within",
            weights,
            within,
            5,
            ["several-layers", "nested"],
            "redrawn among the alive entries of a larger mask (nested), seed 5",
        ),
    ]:
        out.append(
            CaseSpec(
                f"random_masks/{key}",
                "random_masks",
                comment,
                ["reference-stream", "exact-counts"] + flags,
                {
                    "masks": masks,
                    "names": names,
                    "seed": seed,
                    "within": w,
                    "generator": "reference",
                },
            )
        )
    edge = {
        "a": np.ones((3, 4), dtype=bool),
        "b": np.zeros((2, 5), dtype=bool),
        "c": np.eye(4, dtype=bool),
    }
    out.append(
        CaseSpec(
            "random_masks/all-or-nothing",
            "random_masks",
            "a full mask, an empty one and a diagonal one: only the diagonal moves",
            ["reference-stream", "exact-counts", "all-or-nothing", "several-layers"],
            {
                "masks": edge,
                "names": ["a", "b", "c"],
                "seed": 11,
                "within": None,
                "generator": "reference",
            },
        )
    )
    for key, init, sigma, seed in [
        ("kaiming", "kaiming", None, 0),
        ("glorot", "glorot", None, 4),
        ("normal", "normal", 0.05, 9),
    ]:
        out.append(
            CaseSpec(
                f"reinit/{key}",
                "reinit",
                f"fresh {init} weights for a 4-5-3 network, seed {seed}, pruned entries 0.0",
                ["reference-stream", init, "mask-kept"],
                {
                    "params": params,
                    "masks": masks,
                    "init": init,
                    "sigma": sigma,
                    "seed": seed,
                    "generator": "reference",
                },
            )
        )
    return out


def tolerance(op: str, expected: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """random_masks: exact. reinit: exact with signed zeros (+0.0 at pruned entries and biases);
    a draw times a correctly rounded standard deviation is one correctly rounded product."""
    return dict(EXACT) if op == "random_masks" else dict(SIGNED_EXACT)


# ----------------------------------------------------------------------------- properties
@st.composite
def _mask_example(draw, generator: str = "reference", nested: bool | None = None):
    """1-3 masks of drawn shapes and densities (arrays from a drawn seed), a subset of names,
    sometimes a larger ``within`` mask."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.Generator(np.random.PCG64(seed))
    masks, within = {}, {}
    for i in range(draw(st.integers(1, 3))):
        shape = draw(st.sampled_from([(1,), (5,), (2, 3), (4, 4), (3, 7)]))
        w = rng.random(shape) < draw(st.sampled_from([1.0, 0.8, 0.5]))
        m = w & (rng.random(shape) < draw(st.sampled_from([1.0, 0.6, 0.3, 0.0])))
        masks[f"layers.{i}.weight"], within[f"layers.{i}.weight"] = m, w
    names = draw(st.lists(st.sampled_from(sorted(masks)), unique=True, min_size=1))
    use_within = draw(st.booleans()) if nested is None else nested
    return {
        "masks": masks,
        "names": names,
        "seed": seed,
        "within": within if use_within else None,
        "generator": generator,
    }


def _masks_differential(c, ex):
    c.agree("random_masks", **ex)


def _counts_and_nesting(c, ex):
    """Own generator: exact alive count per name, nested in within, others unchanged, and the
    same masks for the same seed."""
    out = c.call("random_masks", **ex)
    again = c.call("random_masks", **ex)
    for n, m in ex["masks"].items():
        got = np.asarray(out[n])
        c.require(
            got.dtype == np.bool_ and got.shape == m.shape,
            lambda: f"{n}: a bool mask of shape {m.shape} expected, got {got.dtype} {got.shape}",
        )
        if n not in ex["names"]:
            c.require(np.array_equal(got, m), lambda: f"{n} is not in names but changed")
            continue
        c.require(
            int(got.sum()) == int(m.sum()),
            lambda: f"{n}: {int(got.sum())} alive entries, the mask given has {int(m.sum())}",
        )
        if ex["within"] is not None:
            c.require(
                not np.any(got & ~ex["within"][n]),
                lambda: f"{n}: an entry outside within is alive (not nested)",
            )
        c.require(
            np.array_equal(got, np.asarray(again[n])),
            lambda: f"{n}: the same seed gave two different masks",
        )


# Chi-square uniformity of the own generator, at a fixed seed. One call redraws DRAWS copies of
# one mask of n entries with k alive (names "w0", "w1", ...: the generator continues from copy to
# copy). Under uniformity the number of copies in which entry i is alive is Binomial(DRAWS, k / n);
# the statistic sum_i (c_i - DRAWS k / n)^2 / (DRAWS k / n) is compared with the chi-square
# quantile of n - 1 degrees of freedom at 1 - FALSE_ALARM. The entries of one draw are negatively
# correlated (exactly k alive): under uniformity the statistic is asymptotically
# (n - k) / (n - 1) * chi2(n - 1) (mean n - k), so the stated false-alarm probability is an upper
# bound. CHI2_SHAPES are CHI2_TESTS tests: a correct generator fails the property with probability
# at most CHI2_TESTS * FALSE_ALARM = 1e-6 (union bound).
DRAWS = 400
FALSE_ALARM = 2.5e-7
CHI2_SEED = 20261202
CHI2_SHAPES = [((4, 5), 5), ((3, 8), 12), ((10,), 3), ((2, 6), 11)]
CHI2_TESTS = len(CHI2_SHAPES)


def chi2_uniformity(
    counts: np.ndarray, draws: int, k: int, false_alarm: float = FALSE_ALARM
) -> tuple[float, float]:
    """(statistic, threshold) of the chi-square test that each of n entries is alive in a
    fraction k / n of ``draws`` draws; the test rejects when statistic > threshold."""
    n = counts.size
    expected = draws * k / n
    statistic = float(np.sum((counts - expected) ** 2) / expected)
    from scipy.special import chdtri  # the chi-square quantile: P(chi2(n-1) > x) = p

    return statistic, float(chdtri(n - 1, false_alarm))


def _chi2_example():
    return st.sampled_from(CHI2_SHAPES)


def _chi2_uniform(c, shape_k):
    """Own generator, one seed, DRAWS copies of a mask: every entry alive about equally often."""
    shape, k = shape_k
    n = int(np.prod(shape))
    mask = np.zeros(n, dtype=bool)
    mask[:k] = True
    masks = {f"w{i}": mask.reshape(shape) for i in range(DRAWS)}
    out = c.call(
        "random_masks", masks=masks, names=list(masks), seed=CHI2_SEED, within=None, generator="own"
    )
    counts = sum(np.asarray(out[name], dtype=np.float64) for name in masks)
    statistic, threshold = chi2_uniformity(np.ravel(counts), DRAWS, k)
    c.require(
        statistic <= threshold,
        lambda: (
            f"shape {shape}, k = {k}: chi-square {statistic:.1f} > {threshold:.1f} over "
            f"{DRAWS} draws (false-alarm probability {FALSE_ALARM:g}): not uniform; "
            f"counts per entry {np.ravel(counts).astype(int).tolist()}"
        ),
    )


@st.composite
def _reinit_example(draw, generator: str = "reference"):
    """A network of 1-3 layers (arrays from a drawn seed), masks of drawn densities, any init."""
    seed = draw(st.integers(0, 2**32 - 1))
    n_layers = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 5), min_size=n_layers + 1, max_size=n_layers + 1))
    params = network(seed, sizes, "relu", "mse", n=1)["params"]
    rng = np.random.Generator(np.random.PCG64(seed + 1))
    density = draw(st.sampled_from([1.0, 0.7, 0.3]))
    masks = {n: rng.random(p.shape) < density for n, p in params.items()}
    init = draw(st.sampled_from(["kaiming", "glorot", "normal"]))
    sigma = draw(st.sampled_from([0.01, 0.1, 1.0])) if init == "normal" else None
    return {
        "params": params,
        "masks": masks,
        "init": init,
        "sigma": sigma,
        "seed": draw(st.integers(0, 2**32 - 1)),
        "generator": generator,
    }


def _reinit_differential(c, ex):
    c.agree("reinit", **ex)


def _reinit_keeps_mask(c, ex):
    """Own generator: pruned entries exactly 0.0, alive weights drawn (nonzero, not the given
    values), biases 0.0, the same answer for the same seed."""
    out = c.call("reinit", **ex)
    again = c.call("reinit", **ex)
    for n, p in ex["params"].items():
        got, m = np.asarray(out[n]), ex["masks"][n]
        c.require(got.shape == p.shape, lambda: f"{n}: shape {got.shape}, expected {p.shape}")
        c.require(np.all(got[~m] == 0.0), lambda: f"{n}: a pruned entry is not 0.0 (mask dropped)")
        if n.endswith("bias"):
            c.require(np.all(got == 0.0), lambda: f"{n}: biases are initialised to 0.0")
        elif m.any():
            c.require(np.all(got[m] != 0.0), lambda: f"{n}: an alive weight is exactly 0.0")
            c.require(
                not np.array_equal(got[m], p[m]),
                lambda: f"{n}: the alive weights are the given ones, not fresh draws",
            )
        c.require(
            np.array_equal(got, np.asarray(again[n])),
            lambda: f"{n}: the same seed gave two different initialisations",
        )


PROPERTIES = [
    Property(
        "controls/random-masks-differential",
        ("random_masks",),
        "random masks from the reference stream equal the reference's",
        _mask_example(),
        _masks_differential,
    ),
    Property(
        "controls/random-masks-counts",
        ("random_masks",),
        "own generator: exact counts, nested in within, other masks unchanged, one answer per seed",
        _mask_example("own"),
        _counts_and_nesting,
    ),
    Property(
        "controls/random-masks-uniform",
        ("random_masks",),
        f"own generator: chi-square uniformity of {DRAWS} draws at a fixed seed "
        "(false alarm <= 1e-6 in all)",
        _chi2_example(),
        _chi2_uniform,
    ),
    Property(
        "controls/reinit-differential",
        ("reinit",),
        "reinitialisation from the reference stream equals the reference's",
        _reinit_example(),
        _reinit_differential,
    ),
    Property(
        "controls/reinit-keeps-mask",
        ("reinit",),
        "own generator: fresh weights, pruned entries exactly 0.0, one answer per seed",
        _reinit_example("own"),
        _reinit_keeps_mask,
    ),
]

FAMILY = Family(
    name="controls",
    algorithm=ALGORITHM,
    notes=NOTES,
    cases=_cases,
    tolerance=tolerance,
    properties=PROPERTIES,
)
