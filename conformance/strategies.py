"""Public Hypothesis strategies for pruning backends: weights, scores with ties, masks, MLPs.

Use them to write your own properties::

    from hypothesis import given
    from conformance import strategies as cst

    @given(cst.scores(), cst.data())
    def test_keeps_k(s, data):
        k = data.draw(cst.counts(s.size))
        assert my_keep_top_k(s, k).sum() == k

Every strategy aims at the edges where implementations disagree: ties (values
drawn from a small pool), zeros and negative zero, single elements, all-equal
arrays, subnormal and huge magnitudes, half-way fractions. All arrays are
float64 (masks bool, labels int64) and finite.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refprune.activations import ACTIVATIONS as _ACTIVATIONS
from refprune.masks import ROUNDINGS
from refprune.mlp import LOSSES

data = st.data

ACTIVATIONS = tuple(_ACTIVATIONS)

#: Values that break implementations: signed zeros, the smallest subnormal, 1 and its neighbours.
EDGE_FLOATS = (
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    1.0,
    -1.0,
    0.5,
    1.0 + 2.0**-52,
    1.0 - 2.0**-53,
    1e-300,
    1e300,
)


def edge_floats(bound: float = 1e300) -> st.SearchStrategy[float]:
    """Finite floats in [-bound, bound], often one of ``EDGE_FLOATS``."""
    edges = [x for x in EDGE_FLOATS if abs(x) <= bound]
    return st.one_of(
        st.sampled_from(edges), st.floats(-bound, bound, allow_nan=False, allow_infinity=False)
    )


def shapes(
    min_dims: int = 1, max_dims: int = 2, min_side: int = 1, max_side: int = 6
) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes; single elements (all sides 1) included."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


@st.composite
def scores(
    draw,
    shape: tuple[int, ...] | st.SearchStrategy | None = None,
    *,
    ties: bool = True,
    bound: float = 1e300,
    nonnegative: bool = False,
) -> np.ndarray:
    """Float64 score arrays. With ``ties``, values often come from a pool of 1-4 values
    (all-equal arrays, many ties, -0.0 next to 0.0); otherwise any finite floats."""
    if shape is None:
        shape = shapes()
    if isinstance(shape, st.SearchStrategy):
        shape = cast("tuple[int, ...]", draw(shape))
    size = int(np.prod(shape))
    if ties and draw(st.booleans()):
        pool = draw(st.lists(edge_floats(bound), min_size=1, max_size=4))
        values = draw(st.lists(st.sampled_from(pool), min_size=size, max_size=size))
    else:
        values = draw(st.lists(edge_floats(bound), min_size=size, max_size=size))
    arr = np.array(values, dtype=np.float64).reshape(shape)
    return np.abs(arr) if nonnegative else arr


@st.composite
def distinct_scores(
    draw, shape: tuple[int, ...] | st.SearchStrategy | None = None, bound: float = 1e6
) -> np.ndarray:
    """Score arrays whose entries are pairwise distinct (no ties, and 0.0 appears at most once)."""
    if shape is None:
        shape = shapes()
    if isinstance(shape, st.SearchStrategy):
        shape = cast("tuple[int, ...]", draw(shape))
    size = int(np.prod(shape))
    values = draw(
        st.lists(
            st.floats(-bound, bound, allow_nan=False).map(lambda x: x + 0.0),
            min_size=size,
            max_size=size,
            unique=True,
        )
    )
    return np.array(values, dtype=np.float64).reshape(shape)


def weights(
    shape: tuple[int, ...] | st.SearchStrategy | None = None, bound: float = 10.0
) -> st.SearchStrategy[np.ndarray]:
    """Weight arrays: moderate magnitudes, with exact zeros, -0.0 and ties mixed in."""
    return scores(shape, ties=True, bound=bound)


@st.composite
def masks(draw, shape: tuple[int, ...] | st.SearchStrategy, *, min_alive: int = 0) -> np.ndarray:
    """Bool masks (True = alive) with at least ``min_alive`` alive entries: each entry alive
    with a probability of 1/2, 1 (all alive), 1/4, 3/4 or 0 (a seeded draw)."""
    if isinstance(shape, st.SearchStrategy):
        shape = cast("tuple[int, ...]", draw(shape))
    size = int(np.prod(shape))
    alive = draw(_ALIVE)
    arr = _rng(draw).random(size) < alive
    missing = max(0, min(min_alive, size) - int(arr.sum()))
    arr[np.flatnonzero(~arr)[:missing]] = True
    return arr.reshape(shape)


def counts(n: int) -> st.SearchStrategy[int]:
    """Counts k in [0, n], with 0, 1, n - 1 and n often."""
    edges = sorted({0, n, min(1, n), max(n - 1, 0)})
    return st.one_of(st.sampled_from(edges), st.integers(0, n))


def fractions() -> st.SearchStrategy[float]:
    """Fractions in [0, 1]: 0, 1, 1/2, decimal fractions whose float64 product is inexact
    (0.07, 0.1, 0.15, ...), half-way values k + 1/2 over small n, and any float in [0, 1]."""
    decimals = [0.0, 1.0, 0.5, 0.2, 0.25, 0.1, 0.07, 0.15, 0.35, 0.85, 0.9, 0.99, 0.01, 0.3]
    halfway = st.builds(
        lambda k, n: min(1.0, (2 * k + 1) / (2 * n)), st.integers(0, 20), st.integers(1, 21)
    )
    return st.one_of(st.sampled_from(decimals), halfway, st.floats(0.0, 1.0))


def roundings() -> st.SearchStrategy[str]:
    return st.sampled_from(ROUNDINGS)


@st.composite
def param_scores(
    draw, n_tensors: tuple[int, int] = (1, 3), *, ties: bool = True, max_side: int = 5
) -> dict[str, np.ndarray]:
    """Named score tensors ``{"layers.{l}.weight": array}`` (an ordered mapping, as for global scope)."""
    n = draw(st.integers(*n_tensors))
    out = {}
    for l in range(n):
        shape = draw(shapes(min_dims=2, max_dims=2, max_side=max_side))
        out[f"layers.{l}.weight"] = draw(scores(shape, ties=ties, bound=1e6))
    return out


@st.composite
def mlp_specs(
    draw, *, max_layers: int = 3, max_width: int = 4, activations=ACTIVATIONS, losses=LOSSES
) -> dict[str, Any]:
    """MLP descriptions ``{"sizes": [...], "activation": str, "loss": str}`` (1 to ``max_layers`` layers)."""
    n_layers = draw(st.integers(1, max_layers))
    sizes = draw(st.lists(st.integers(1, max_width), min_size=n_layers + 1, max_size=n_layers + 1))
    loss = draw(st.sampled_from(losses))
    if loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    return {"sizes": sizes, "activation": draw(st.sampled_from(activations)), "loss": loss}


#: Seeds of the NumPy generator that fills an array (one Hypothesis choice per array, however
#: large: drawing every entry through Hypothesis costs about 0.1 ms an entry).
_SEED = st.integers(0, 2**32 - 1)
_ALIVE = st.sampled_from((0.5, 1.0, 0.25, 0.75, 0.0))
#: How a float array's entries are spread over [-bound, bound]: on the grid of multiples of
#: bound/4 (exact cancellations, ties, pre-activations exactly at a kink), uniformly, or
#: uniformly times 10**-u for u uniform in [0, 12] (tiny and saturating magnitudes).
_SPREADS = st.sampled_from(("grid", "uniform", "scaled"))
#: The fraction of entries then replaced by a zero of random sign.
_ZEROS = st.sampled_from((0.0, 0.25, 0.5))


def _rng(draw: Any) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(draw(_SEED)))


def _fill(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    spread: str,
    zero_fraction: float,
    bound: float,
) -> np.ndarray:
    """One array of ``float_arrays``, its entries drawn from ``rng`` (values, zeros, signs)."""
    if spread == "grid":
        values = rng.integers(-4, 5, size=shape) * (bound / 4)
    else:
        values = rng.uniform(-bound, bound, size=shape)
        if spread == "scaled":
            values = values * 10.0 ** -rng.uniform(0.0, 12.0, size=shape)
    hit = rng.random(shape) < zero_fraction
    signs = rng.random(shape) < 0.5
    values = np.where(hit, np.where(signs, -0.0, 0.0), values)
    return np.asarray(values, dtype=np.float64).reshape(shape)


@st.composite
def float_arrays(
    draw, shapes: tuple[int, ...] | list[tuple[int, ...]], *, bound: float = 2.0, zeros: bool = True
) -> Any:
    """Float64 arrays in [-bound, bound]: a spread (grid, uniform or scaled), then with
    ``zeros`` a fraction (0, 1/4 or 1/2) of +0.0 and -0.0. Draw order: spread, zeros, seed;
    the entries come from ``numpy.random.Generator(PCG64(seed))`` in that order. Given a list
    of shapes, a list of arrays sharing the spread, the zeros and the generator."""
    spread = draw(_SPREADS)
    zero_fraction = draw(_ZEROS) if zeros else 0.0
    rng = _rng(draw)
    if isinstance(shapes, list):
        return [_fill(rng, shape, spread, zero_fraction, bound) for shape in shapes]
    return _fill(rng, shapes, spread, zero_fraction, bound)


@st.composite
def params(
    draw, sizes: list[int], *, bound: float = 2.0, zeros: bool = True
) -> dict[str, np.ndarray]:
    """Parameters of an MLP with layer widths ``sizes``, in the project's names and shapes
    (one ``float_arrays`` draw: weight then bias of each layer in turn)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"layers.{l}.weight"] = (fan_out, fan_in)
        shapes[f"layers.{l}.bias"] = (fan_out,)
    arrays = draw(float_arrays(list(shapes.values()), bound=bound, zeros=zeros))
    return dict(zip(shapes, arrays))


@st.composite
def batches(
    draw, sizes: list[int], loss: str, *, max_samples: int = 5, bound: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """A batch (X, y) for an MLP: int64 labels for cross-entropy, float64 targets for mse."""
    n = draw(st.integers(1, max_samples))
    X = draw(float_arrays((n, sizes[0]), bound=bound, zeros=False))
    if loss == "cross_entropy":
        y = _rng(draw).integers(0, sizes[-1], size=n).astype(np.int64)
    else:
        y = draw(float_arrays((n, sizes[-1]), bound=bound, zeros=False))
    return X, y


@st.composite
def networks(
    draw,
    *,
    max_layers: int = 3,
    max_width: int = 4,
    activations=ACTIVATIONS,
    losses=LOSSES,
    max_samples: int = 5,
) -> dict[str, Any]:
    """Keyword arguments for the curvature operations: params, X, y, activation, loss."""
    spec = draw(
        mlp_specs(
            max_layers=max_layers, max_width=max_width, activations=activations, losses=losses
        )
    )
    X, y = draw(batches(spec["sizes"], spec["loss"], max_samples=max_samples))
    return {
        "params": draw(params(spec["sizes"])),
        "X": X,
        "y": y,
        "activation": spec["activation"],
        "loss": spec["loss"],
    }


def like(
    tree: dict[str, np.ndarray], bound: float = 2.0
) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """A dict of arrays with the names and shapes of ``tree`` (e.g. a direction for an HVP)."""
    names = list(tree)
    shapes = [tuple(np.shape(tree[n])) for n in names]
    return float_arrays(shapes, bound=bound, zeros=False).map(
        lambda arrays: dict(zip(names, arrays))
    )
