"""The same small sweep on 1 and 2 local workers and on a 2-worker Dask LocalCluster.

Sweep: the sparse teacher, 4 seeds x 2 rules (magnitude, random), 3 rounds at
alpha = 0.2, controls random reinit and random masks, 4 epochs per round: 8 runs.
Each executor runs it into a fresh directory, in turn (round robin over
``--repeats``), and the script prints medians of:

* wall: the whole ``refprune.sweep.run`` call, executor start and shutdown
  included (for Dask, the cluster's start and close are timed apart);
* runs per minute: 8 / wall * 60;
* per run, split in three: compute (inside the run: data, IMP, measurements),
  process (the run's fresh interpreter: start, imports, the result's trip
  back), and executor overhead = (workers x wall - sum of the runs' process
  time) / runs, the worker time the executor spends beyond running processes.

It checks that every executor wrote the same bytes. Needs the ``sweep`` extra
for the Dask column. Run it on a quiet machine (it prints the load average
before and after; two shared cores make every number here depend on it):

    python benchmarks/bench_sweep.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine_note  # noqa: E402

from refprune import sweep  # noqa: E402

CONFIG = {
    "seeds": [0, 1, 2, 3],
    "rules": ["magnitude", "random"],
    "rounds": 3,
    "alphas": [0.2],
    "controls": ["reinit", "random_masks"],
    "train": {"epochs": 4},
}


def pool(workers: int):
    def go(out: Path) -> dict:
        t0 = time.perf_counter()
        s = sweep.run(CONFIG, out, workers=workers)
        return {"wall": time.perf_counter() - t0, "summary": s, "start": 0.0, "close": 0.0}

    return go


def dask_local(workers: int):
    def go(out: Path) -> dict:
        from distributed import Client, LocalCluster

        t0 = time.perf_counter()
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
        t1 = time.perf_counter()
        s = sweep.run(CONFIG, out, executor=client.get_executor(pure=False))
        t2 = time.perf_counter()
        client.close()
        cluster.close()
        return {"wall": t2 - t1, "summary": s, "start": t1 - t0, "close": time.perf_counter() - t2}

    return go


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    contenders = {"pool, 1 worker": (pool(1), 1), "pool, 2 workers": (pool(2), 2)}
    try:
        import distributed  # noqa: F401

        contenders["LocalCluster, 2 workers"] = (dask_local(2), 2)
    except ImportError:
        print("distributed is not installed: no Dask column (pip install 'refprune[sweep]')")
    print(f"before: {machine_note()}")
    samples: dict[str, list[dict]] = {k: [] for k in contenders}
    files: dict[str, dict[str, bytes]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, (go, _) in contenders.items():
                out = Path(tmp) / f"{name.replace(' ', '').replace(',', '_')}-{rep}"
                res = go(out)
                s = res["summary"]
                if s.failed or s.completed != s.total:
                    raise SystemExit(f"{name}: {len(s.failed)} runs failed")
                samples[name].append(res)
                got = {p.name: p.read_bytes() for p in sorted((out / "runs").glob("*.json"))}
                files.setdefault("first", got)
                if got != files["first"]:
                    raise SystemExit(f"{name} wrote different bytes")
    print(f"after:  {machine_note()}")
    n = len(files["first"])
    print(f"\n{n} runs, {args.repeats} repeats, medians; every executor wrote the same bytes\n")
    print(
        f"{'executor':<26s}{'wall s':>8s}{'runs/min':>10s}{'compute/run':>13s}"
        f"{'process/run':>13s}{'executor/run':>14s}{'start+close s':>15s}"
    )
    for name, (_, workers) in contenders.items():
        rows = samples[name]
        wall = statistics.median(r["wall"] for r in rows)
        compute = statistics.median(o.compute_seconds for r in rows for o in r["summary"].outcomes)
        process = statistics.median(
            o.seconds - o.compute_seconds for r in rows for o in r["summary"].outcomes
        )
        executor = statistics.median(
            (workers * r["wall"] - sum(o.seconds for o in r["summary"].outcomes)) / n for r in rows
        )
        setup = statistics.median(r["start"] + r["close"] for r in rows)
        print(
            f"{name:<26s}{wall:8.2f}{60 * n / wall:10.1f}{compute:13.3f}{process:13.3f}"
            f"{executor:14.3f}{setup:15.2f}"
        )
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5:
        print("\nthe machine was not quiet (load average above 0.5): these numbers are provisional")
    return 0


if __name__ == "__main__":
    sys.exit(main())
