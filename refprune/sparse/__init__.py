"""Pruned networks on SciPy sparse matrices: inference (``SparseMLP``) and training (``SparseSGD``).

Modules, each on top of the ones before it (and of ``refprune.mlp``; nothing
else in refprune imports this package):

    pool      the process's worker threads (safe under concurrent callers,
              interrupts and fork)
    products  CSR times dense (SciPy), the sampled product, transposes
    plan      chunks, the measured dense/sparse choice, when threads pay
    forward   SparseMLP, to_sparse
    train     SparseSGD

Spec and measurements: docs/sparse_execution.md.
"""

from .forward import SparseMLP, to_sparse
from .train import SparseSGD

__all__ = ["SparseMLP", "SparseSGD", "to_sparse"]
