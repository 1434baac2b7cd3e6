"""Seeded sweeps: a grid of IMP runs with their controls, on a process pool or a Dask cluster.

    from refprune import sweep
    summary = sweep.run({"seeds": [0, 1], "rules": ["magnitude", "random"], "rounds": 2}, "out")
    sweep.report("out")

A sweep expands a grid (seeds, data sets, architectures, scoring rules,
scope, rewinding mode, pruning fraction; ``config``) into independent runs,
each one ``refprune.lottery.run_imp`` trace with its controls plus the
measurements of ``refprune.metrics`` (``job``), named by the SHA-256 of its
canonical configuration. ``run`` sends the unfinished ones to a
``concurrent.futures`` executor and stores one checked JSON file per run
(``store``); ``report`` merges them into a table and plots.

Nothing below ``refprune.sweep`` imports it. The command line:
``python -m refprune sweep CONFIG.toml`` and ``python -m refprune sweep-report OUT``.
Specification: ``docs/sweeps.md``.
"""

from .config import (
    DATASETS,
    GRID_AXES,
    ConfigError,
    RunSpec,
    SweepConfig,
    derived_seeds,
    expand,
    load_config,
    run_config,
    run_id,
)
from .job import execute, load_data
from .report import report
from .runner import Outcome, SweepSummary, default_executor, run
from .store import RunStore, StoreError

__all__ = [
    "DATASETS",
    "GRID_AXES",
    "ConfigError",
    "Outcome",
    "RunSpec",
    "RunStore",
    "StoreError",
    "SweepConfig",
    "SweepSummary",
    "default_executor",
    "derived_seeds",
    "execute",
    "expand",
    "load_config",
    "load_data",
    "report",
    "run",
    "run_config",
    "run_id",
]
