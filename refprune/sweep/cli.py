"""The ``sweep`` and ``sweep-report`` commands of ``python -m refprune``.

Exit status: 0 when every run is finished, 1 when some run failed, 2 for a bad
argument or configuration (argparse's usage line and one message naming it),
130 after Ctrl-C or SIGTERM (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import signal
import sys
from pathlib import Path
from typing import Any

SCHEDULER = re.compile(r"^[a-z][a-z0-9+.-]*://[^\s/]+$")


def _at_least(minimum: int) -> Any:
    """An argparse type: integers >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}"
            ) from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {n}")
        return n

    return parse


_positive, _nonnegative = _at_least(1), _at_least(0)


def _confidence(text: str) -> float:
    try:
        c = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < c < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {c}")
    return c


def add_commands(sub: Any) -> None:
    """Register ``sweep`` and ``sweep-report`` on the subparsers of ``python -m refprune``."""
    sw = sub.add_parser(
        "sweep",
        help="run a grid of IMP runs with controls (resumable), locally or on Dask",
        description="Expand a TOML grid (seeds, data sets, architectures, rules, scope, "
        "rewinding, alpha) into IMP runs with their controls and run those not already "
        "in the output directory. Default: a local process pool with one worker per "
        "core. Ctrl-C stops; the same command resumes.",
    )
    sw.add_argument("config", help="the sweep's TOML file (docs/sweeps.md)")
    sw.add_argument(
        "--out",
        default=None,
        help="output directory (default: the file's 'out' key, else NAME-sweep in "
        "the current directory for CONFIG = NAME.toml)",
    )
    where = sw.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="processes of the local pool (default: one per core)",
    )
    where.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="a running Dask scheduler (extra 'sweep')",
    )
    where.add_argument(
        "--dask-local",
        type=_positive,
        default=None,
        metavar="N",
        help="start a distributed.LocalCluster of N one-thread workers (extra 'sweep')",
    )
    sw.add_argument(
        "--retries",
        type=_nonnegative,
        default=1,
        help="times a failed run is submitted again before it is reported failed (default 1)",
    )
    sw.add_argument(
        "--dry-run", action="store_true", help="list the runs and how many are done; run nothing"
    )
    sw.add_argument("--quiet", action="store_true", help="no progress line")
    sw.set_defaults(func=_sweep, parser=sw)

    rp = sub.add_parser(
        "sweep-report",
        help="merge a sweep's runs into a table, a summary and plots",
        description="Write table.csv, table.json, summary.json and PNGs (accuracy against density "
        "per rule, fairness, membership advantage, chance on random labels) for a "
        "sweep's output directory.",
    )
    rp.add_argument("out_dir", help="the sweep's output directory")
    rp.add_argument("--report-dir", default=None, help="where to write (default: OUT_DIR/report)")
    rp.add_argument(
        "--confidence",
        type=_confidence,
        default=0.99,
        help="of the binomial interval around 1/K on random labels (default 0.99)",
    )
    rp.add_argument("--no-plots", action="store_true", help="only the table and the summary")
    rp.set_defaults(func=_report, parser=rp)


def _default_out(config_path: str) -> str:
    """NAME-sweep in the current directory, for CONFIG = .../NAME.toml."""
    p = Path(config_path)
    return (p.stem if p.suffix == ".toml" else p.name) + "-sweep"


def _sweep(args: argparse.Namespace) -> int:
    from .config import DATASETS, ConfigError, expand, load_config
    from .store import RunStore, StoreError

    parser = args.parser
    if args.scheduler is not None and not SCHEDULER.match(args.scheduler):
        parser.error(
            f"argument --scheduler: expected an address such as tcp://HOST:8786, "
            f"got {args.scheduler!r}"
        )
    try:
        cfg = load_config(args.config)
        plan = expand(cfg)
    except ConfigError as exc:
        named = str(exc).startswith(("cannot read", args.config))
        parser.error(str(exc) if named else f"{args.config}: {exc}")
    if args.scheduler is None:  # local workers: their packages are ours
        for name in cfg.datasets:
            needs = DATASETS[name].needs
            if name == "random_labels" and cfg.data.get(name, {}).get("base") == "digits":
                needs = DATASETS["digits"].needs
            if needs is not None and importlib.util.find_spec(needs[1]) is None:
                parser.error(
                    f"{args.config}: datasets: {name!r} needs {needs[0]}: "
                    "pip install 'refprune[sweep]'"
                )
    out = args.out or cfg.out or _default_out(args.config)
    if args.dry_run:
        store = RunStore(out)
        try:
            done = sum(store.has_run(r.run_id) for r in plan) if store.runs.exists() else 0
        except StoreError as exc:
            print(f"refprune sweep: error: {exc}", file=sys.stderr)
            return 1
        for r in plan:
            print(f"{r.run_id[:12]}  {r.label()}")
        print(f"{len(plan)} runs, {done} already in {out}, {len(plan) - done} to run")
        return 0
    executor, closers = None, []
    if args.scheduler is not None or args.dask_local is not None:
        try:
            import distributed
        except ImportError:
            opt = "--scheduler" if args.scheduler is not None else "--dask-local"
            parser.error(f"argument {opt}: needs dask.distributed: pip install 'refprune[sweep]'")
        dist: Any = distributed  # an untyped library: its calls go through Any
        if args.scheduler is not None:
            try:
                client = dist.Client(args.scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                print(
                    f"refprune sweep: error: cannot reach the scheduler {args.scheduler}: {exc}",
                    file=sys.stderr,
                )
                return 2
            closers = [client.close]
        else:
            cluster = dist.LocalCluster(
                n_workers=args.dask_local,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            client = dist.Client(cluster)
            closers = [client.close, cluster.close]
        executor = client.get_executor(pure=False)
        where = args.scheduler or f"a LocalCluster of {args.dask_local} workers"
    else:
        import os

        where = f"a local pool of {args.workers or os.cpu_count()} processes"
    return _run(args, cfg, out, executor, where, closers)


def _run(
    args: argparse.Namespace, cfg: Any, out: str, executor: Any, where: str, closers: list[Any]
) -> int:
    from .runner import run
    from .store import StoreError

    print(f"sweep {args.config}: {cfg.size} runs on {where}, results in {out}", file=sys.stderr)
    term = signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops a sweep as Ctrl-C does
    try:
        summary = run(
            cfg,
            out,
            executor=executor,
            workers=args.workers,
            retries=args.retries,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished runs are kept in {out}; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except StoreError as exc:
        print(f"refprune sweep: error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, term)
        for close in closers:
            close()
    print(
        f"{summary.total} runs: {summary.skipped} were already done, {summary.completed} ran "
        f"now, {len(summary.failed)} failed ({summary.seconds:.1f} s)",
        file=sys.stderr,
    )
    for rid, err in summary.failed.items():
        first = err.splitlines()[0] if err else "unknown error"
        print(f"failed: {rid[:12]}: {first} (details in {out}/failed/{rid}.json)", file=sys.stderr)
    return 1 if summary.failed else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _report(args: argparse.Namespace) -> int:
    from .report import report
    from .store import StoreError

    if not Path(args.out_dir).is_dir():
        args.parser.error(f"argument out_dir: {args.out_dir} is not a directory")
    try:
        summary = report(
            args.out_dir, args.report_dir, confidence=args.confidence, plots=not args.no_plots
        )
    except StoreError as exc:
        print(f"refprune sweep-report: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        args.parser.error(str(exc))
    except ValueError as exc:
        print(f"refprune sweep-report: error: {exc}", file=sys.stderr)
        return 1
    from .report import digest

    print("\n".join(digest(summary)))
    runs = summary["runs"]
    print(
        f"{runs['finished']} of {runs['planned']} runs reported ({len(runs['failed'])} failed, "
        f"{runs['missing']} not run); files in {summary['report_dir']}:"
    )
    for name in summary["files"]:
        print(f"  {name}")
    return 0
