"""refprune: a NumPy reference implementation of neural-network pruning.

One module per idea, layered one way (no module imports a later one):

    _checks, rng, activations -> autograd -> mlp -> train -> curvature -> scores
    -> masks -> rescoring (OBS, SynFlow) -> data, metrics, schedules, sparse_approx
    -> lottery -> theory;
    sparse/ (pool -> products -> plan -> forward -> train: the SciPy path, on top of mlp;
             nothing else imports it)
    and on top of them all, not imported here: sweep (grids of runs on a pool or Dask)
    (the order is checked by tests/test_layering.py)

Conventions (float64, seeds, the one rounding rule and the one tie rule,
"alive" = mask) are stated in docs/foundation.md and docs/masks.md.
Higher score = more important = kept, everywhere.
"""

from . import (
    activations,
    autograd,
    curvature,
    data,
    lottery,
    masks,
    metrics,
    mlp,
    rescoring,
    rng,
    schedules,
    scores,
    sparse,
    sparse_approx,
    theory,
    train,
)
from .masks import (
    PruneResult,
    fraction_to_count,
    keep_top_k,
    n_m_mask,
    prune,
    prune_count,
    prune_n_m,
    prune_units,
    select_masks,
)
from .mlp import MLP
from .rng import make_rng
from .scores import RULES, compute_scores
from .sparse import SparseMLP, SparseSGD, to_sparse
from .train import SGD, History

__version__ = "0.1.0"

__all__ = [
    "activations",
    "autograd",
    "curvature",
    "data",
    "lottery",
    "masks",
    "metrics",
    "mlp",
    "rescoring",
    "rng",
    "schedules",
    "scores",
    "sparse",
    "sparse_approx",
    "theory",
    "train",
    "SparseMLP",
    "to_sparse",
    "SparseSGD",
    "MLP",
    "SGD",
    "History",
    "make_rng",
    "RULES",
    "compute_scores",
    "PruneResult",
    "fraction_to_count",
    "keep_top_k",
    "select_masks",
    "prune",
    "prune_count",
    "prune_units",
    "n_m_mask",
    "prune_n_m",
]
