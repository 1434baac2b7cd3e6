"""Shared timing helper for the benchmark scripts: interleaved repeats, medians."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int = 50, inner: int = 1, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per call of each function, timing them in turn (round robin).

    Interleaving makes a passing load on the machine hit every contender alike,
    so the ratios printed from one run stay meaningful on a shared machine.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}


def machine_note() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"cores={os.cpu_count()} load1={load:.2f}"
