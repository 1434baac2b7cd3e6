"""Running a sweep's runs on a ``concurrent.futures`` executor, resumably.

``run`` skips the runs whose checked file is already in the output directory,
submits the others to the executor (by default a local process pool with one
worker per core), stores each result as it arrives, and retries a run that
failed once before reporting it failed. Each executor task starts the run in
a fresh interpreter (``refprune.sweep.job``), so a run that crashes, calls
``os._exit`` or is killed for memory loses only itself, and a worker never
dies with it. If a pool that ``run`` made breaks (a worker killed from
outside), the runs it was running count one failed attempt each, the pool is
made again and those runs are retried one at a time, so that only the run
that breaks it again is reported failed.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

from .config import RunSpec, SweepConfig, as_config, expand
from .job import JOB_ENV, PARENT_ENV
from .store import RunStore, StoreError

JOB_COMMAND = (sys.executable, "-m", "refprune.sweep.job")


@dataclass(frozen=True)
class Outcome:
    """What an executor task returns for one attempt of one run."""

    run_id: str
    text: str | None  # the run file's text, None on failure
    error: str | None
    seconds: float  # wall time of the run's process, start to exit
    compute_seconds: float | None  # time inside the run (data, IMP, measurements)


def execute_in_process(run_id: str, config_json: str, command: Sequence[str]) -> Outcome:
    """The executor task: run one configuration in a fresh process (``command``, ``JOB_COMMAND``).

    The process gets this worker's environment plus ``JOB_ENV`` (one BLAS
    thread). Never raises for a failed run: the failure is in ``Outcome.error``.
    """
    request = json.dumps({"run_id": run_id, "config": json.loads(config_json)})
    env = {**os.environ, **JOB_ENV, PARENT_ENV: str(os.getpid())}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(
                list(command),
                input=request.encode("utf-8"),
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                check=False,
            )
        except OSError as exc:
            return Outcome(
                run_id, None, f"cannot start {command[0]}: {exc}", time.perf_counter() - t0, None
            )
        seconds = time.perf_counter() - t0
        err.seek(0)
        tail = err.read().decode("utf-8", "replace").strip().splitlines()[-12:]
    if proc.returncode != 0:
        how = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit status {proc.returncode}"
        )
        detail = "\n" + "\n".join(tail) if tail else ""
        return Outcome(run_id, None, f"run process {how}{detail}", seconds, None)
    try:
        reply = json.loads(proc.stdout)
        return Outcome(run_id, reply["file"], None, seconds, float(reply["compute_seconds"]))
    except (ValueError, KeyError, TypeError) as exc:
        return Outcome(run_id, None, f"run process wrote no result ({exc})", seconds, None)


@dataclass
class SweepSummary:
    """What ``run`` returns.

    total : runs in the plan; skipped : already finished before this call;
    completed : finished by this call; failed : run id -> last error;
    outcomes : every attempt of this call, in completion order; seconds : wall time.
    """

    out_dir: Path
    total: int
    skipped: int
    completed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.completed - len(self.failed)


class Progress:
    """One status line: runs done, failed and remaining, and the time left at this call's pace.

    On a terminal the line is redrawn in place; elsewhere a line is printed per change.
    """

    def __init__(self, total: int, done: int, stream: TextIO = sys.stderr, width: int = 24):
        self.total, self.done0, self.stream, self.width = total, done, stream, width
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.perf_counter()
        self.last = ""

    def line(self, done: int, failed: int) -> str:
        remaining = self.total - done - failed
        fill = 0 if self.total == 0 else round(self.width * (done + failed) / self.total)
        new = done - self.done0 + failed
        if new and remaining:
            eta = (time.perf_counter() - self.t0) / new * remaining
            left = f"~{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d} left"
        else:
            left = "time left: ..." if remaining else "finished"
        return (
            f"[{'#' * fill}{'.' * (self.width - fill)}] {done}/{self.total} done, "
            f"{failed} failed, {remaining} remaining, {left}"
        )

    def update(self, done: int, failed: int, force: bool = False) -> None:
        text = self.line(done, failed)
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self.last)))
            self.stream.flush()
        elif force or text.split(",")[:3] != self.last.split(",")[:3]:
            self.stream.write(text + "\n")
            self.stream.flush()
        self.last = text

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def default_executor(workers: int | None = None) -> cf.ProcessPoolExecutor:
    """The local process pool: ``workers`` processes (default: one per core), spawned."""
    n = workers or os.cpu_count() or 1
    # Workers ignore Ctrl-C, and so do the runs they start: the sweep's own process handles it by
    # killing the workers, and a run's process ends with its worker (``job.exit_with_parent``).
    return cf.ProcessPoolExecutor(
        max_workers=n,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=signal.signal,
        initargs=(signal.SIGINT, signal.SIG_IGN),
    )


def _stop_pool(pool: cf.Executor) -> None:
    """Kill a process pool's workers and cancel what waits (a run's process follows its worker)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # gone after shutdown()
    manager = getattr(pool, "_executor_manager_thread", None)
    for proc in procs:
        proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.join()
    # Let the pool's manager thread see its dead workers and close its wake-up pipe now: on
    # Python < 3.12 the exit hook of concurrent.futures can otherwise write to that pipe while
    # the thread closes it, and print an OSError traceback after a clean interrupt.
    if manager is not None:
        manager.join(timeout=30)


def run(
    config: SweepConfig | Mapping[str, Any] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    executor: cf.Executor | None = None,
    workers: int | None = None,
    retries: int = 1,
    progress: bool | Callable[[int, int, int], None] = False,
    job_command: Sequence[str] | None = None,
) -> SweepSummary:
    """Run every unfinished run of a sweep and store one checked JSON file per run.

    Parameters
    ----------
    config : SweepConfig, a parsed TOML document, or the path of a TOML file
    out_dir : path, optional
        Output directory (default: the configuration's ``out``). Runs already
        stored there are skipped (``RunStore``); a rerun of an interrupted
        sweep finishes it.
    executor : concurrent.futures.Executor, optional
        Where the runs go: e.g. ``distributed.Client(...).get_executor(pure=False)``
        for a Dask cluster. Default: a local process pool of ``workers``
        processes, made and shut down here (and made again if it breaks).
        An executor passed in is left running.
    workers : int, optional
        Size of the default pool (default: the machine's cores).
    retries : int >= 0
        How many times a failed run is submitted again before it is reported failed.
    progress : bool or callable
        True: a status line on stderr; a callable gets ``(done, failed, total)``.
    job_command : sequence of str, optional
        The command that runs one configuration (default
        ``python -m refprune.sweep.job``); it reads a request on stdin and
        writes a result on stdout (``refprune.sweep.job.main``).

    Returns
    -------
    SweepSummary

    Raises
    ------
    ConfigError for a bad configuration, StoreError for a damaged output
    directory, KeyboardInterrupt after cancelling what was left.
    """
    cfg = as_config(config)
    if out_dir is None:
        if cfg.out is None:
            raise ValueError("out_dir must be given when the configuration has no 'out'")
        out_dir = cfg.out
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if executor is not None and not isinstance(executor, cf.Executor):
        raise TypeError(
            f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}"
        )
    command = tuple(JOB_COMMAND if job_command is None else job_command)
    plan = expand(cfg)
    t0 = time.perf_counter()
    with RunStore(out_dir) as store:
        store.write_plan(cfg.to_dict(), [r.run_id for r in plan])
        todo = [r for r in plan if not store.has_run(r.run_id)]
        summary = SweepSummary(store.root, len(plan), len(plan) - len(todo))
        bar = Progress(len(plan), summary.skipped) if progress is True else None

        def report(force: bool = False) -> None:
            done = summary.skipped + summary.completed
            if bar is not None:
                bar.update(done, len(summary.failed), force)
            elif callable(progress):
                progress(done, len(summary.failed), len(plan))

        report(force=True)
        if todo:
            try:
                _submit_all(todo, store, summary, executor, workers, retries, command, report)
            finally:
                if bar is not None:
                    bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _submit_all(
    todo: list[RunSpec],
    store: RunStore,
    summary: SweepSummary,
    executor: cf.Executor | None,
    workers: int | None,
    retries: int,
    command: tuple[str, ...],
    report: Callable[..., Any],
) -> None:
    owned = executor is None
    pool = default_executor(workers) if owned else cast(cf.Executor, executor)
    by_id = {r.run_id: r for r in todo}
    attempts = dict.fromkeys(by_id, 0)
    pending: dict[cf.Future[Any], str] = {}
    # The local pool gets no more runs than it has workers, so that a broken pool (a worker
    # killed from outside) costs an attempt only to the runs that were running; those are then
    # retried one at a time, so the one that breaks it again is told from its bystanders.
    # Another executor gets every run at once and schedules them itself.
    waiting = collections.deque(by_id)
    window = (workers or os.cpu_count() or 1) if owned else len(todo)
    suspects: set[str] = set()

    def submit(rid: str) -> None:
        nonlocal pool
        attempts[rid] += 1
        args = (rid, json.dumps(by_id[rid].config), command)
        try:
            pending[pool.submit(execute_in_process, *args)] = rid
        except cf.BrokenExecutor:
            if not owned:
                raise
            _stop_pool(pool)
            pool = default_executor(workers)
            pending[pool.submit(execute_in_process, *args)] = rid

    def refill() -> None:
        if suspects:
            if not pending:
                rid = next(r for r in waiting if r in suspects)
                waiting.remove(rid)
                submit(rid)
            return
        while waiting and len(pending) < window:
            submit(waiting.popleft())

    try:
        refill()
        while pending:
            finished, _ = cf.wait(list(pending), timeout=1.0, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                rid = pending.pop(fut)
                try:
                    outcome = fut.result()
                except cf.CancelledError:
                    outcome = Outcome(rid, None, "cancelled by the executor", 0.0, None)
                except Exception as exc:  # noqa: BLE001 - whatever the executor raises, one attempt
                    error = f"executor: {type(exc).__name__}: {exc}"
                    outcome = Outcome(rid, None, error, 0.0, None)
                    if owned and isinstance(exc, cf.BrokenExecutor):
                        suspects.add(rid)
                else:
                    suspects.discard(rid)
                if outcome.text is not None:
                    try:
                        store.write_run(rid, outcome.text)
                    except StoreError as exc:  # a result that fails its checks
                        outcome = dataclasses.replace(outcome, text=None, error=str(exc))
                summary.outcomes.append(outcome)
                if outcome.text is not None:
                    summary.completed += 1
                elif attempts[rid] <= retries:
                    waiting.appendleft(rid)
                else:
                    summary.failed[rid] = outcome.error or "unknown error"
                    store.write_failure(rid, by_id[rid].label(), attempts[rid], summary.failed[rid])
                    suspects.discard(rid)
            refill()
            report()
    except BaseException:
        for fut in pending:
            fut.cancel()
        if owned:
            _stop_pool(pool)
        raise
    if owned:
        pool.shutdown(wait=True)
