"""Cost of running a backend in a process: the conformance run in-process against over the wire.

Runs ``python -m conformance run`` as a subprocess, interleaving the variants,
and prints for each the median wall time, the median CPU time (the runner and
its backend process together), the golden and the properties parts, and their
ratios to the in-process run (of the medians, and the median of each repeat's
ratio, the paired one):

* ``in-process``: the reference called directly (``--in-process``);
* ``worker``: the default, the reference served by ``python -m conformance serve``;
* ``command``: the reference behind a hand-written wire-protocol process
  (``tests/wire_fake_backend.py``), standing for a backend in another language;
* ``node``: a backend in another language, ``tests/backends/node/masks_backend.js``
  (Node.js), when the selection is ``--family masks`` and ``node`` is on PATH.

Targets: the default run under 15 s on a quiet 2-core machine, its golden part
under 2 s; a process backend's masks run within 3x the in-process one.

    python benchmarks/bench_conformance.py [--repeats 3] [--family masks] [--max-examples 25]
    python benchmarks/bench_conformance.py --family masks --repeats 5   # with the Node.js backend

Check that nothing else holds a core while measuring (``uptime``): every call is
a round trip between two processes, and a busy machine delays each of them.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "wire_fake_backend.py"
NODE = ROOT / "tests" / "backends" / "node" / "masks_backend.js"


def variants(family: list[str]) -> dict[str, list[str]]:
    base = [sys.executable, "-m", "conformance", "run"] + family
    out = {"in-process": base + ["--in-process"], "worker": base}
    if FAKE.exists():
        out["command"] = base + ["--backend-cmd", f"{sys.executable} {FAKE} ok"]
    if (
        NODE.exists()
        and shutil.which("node")
        and "--family=masks" in family
        and sum(a.startswith("--family=") for a in family) == 1
    ):
        out["node"] = base + ["--backend-cmd", f"node {NODE}"]
    return out


def measure(argv: list[str]) -> tuple[float, float, float, float]:
    """(wall, CPU of the run and its children, golden part, properties part) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    parts = re.search(r"time: golden ([0-9.]+) s, properties ([0-9.]+) s", proc.stdout)
    return wall, cpu, float(parts.group(1)), float(parts.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--family", action="append", default=[])
    parser.add_argument("--max-examples", type=int, default=None)
    args = parser.parse_args()
    selection = [f"--family={f}" for f in args.family]
    if args.max_examples:
        selection.append(f"--max-examples={args.max_examples}")
    runs = variants(selection)
    times: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, argv in runs.items():
            times[name].append(measure(argv))
    print(
        f"load average before the last run: {os.getloadavg()[0]:.2f}; "
        f"{args.repeats} repeats, medians; selection: {' '.join(selection) or 'everything'}"
    )
    print(
        f"{'variant':<12} {'wall s':>8} {'CPU s':>8} {'golden s':>9} {'props s':>8} "
        f"{'wall x':>7} {'CPU x':>7} {'paired x':>9}"
    )
    base_rows = times["in-process"]
    base = [statistics.median(col) for col in zip(*base_rows)]
    for name, rows in times.items():
        wall, cpu, golden, props = (statistics.median(col) for col in zip(*rows))
        # each repeat's wall time over the in-process run's of the same repeat (run back to back)
        paired = statistics.median(r[0] / b[0] for r, b in zip(rows, base_rows))
        print(
            f"{name:<12} {wall:>8.2f} {cpu:>8.2f} {golden:>9.2f} {props:>8.2f} "
            f"{wall / base[0]:>7.2f} {cpu / base[1]:>7.2f} {paired:>9.2f}"
        )


if __name__ == "__main__":
    main()
