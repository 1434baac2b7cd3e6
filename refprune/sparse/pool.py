"""The worker threads of the sparse path: one ``ThreadPoolExecutor`` for the process.

SciPy's sparse products and NumPy's array operations release the GIL, so the
chunks of a batch (or the row blocks of one product) can run on several cores
from Python threads. ``run_parallel(task, n, threads)`` runs ``task(0)`` ..
``task(n - 1)`` on the calling thread and up to ``threads - 1`` workers of one
process-wide ``concurrent.futures.ThreadPoolExecutor``; each thread takes the
next index not yet taken, so a thread the OS schedules late simply takes fewer.
Which thread runs a task never changes its result.

The rules that make this safe:

* **One pool, created lazily, never shut down or replaced** while the process
  lives (except in a forked child, below). Its size is fixed: the cores this
  process may use; a call asking for more threads gets at most that many
  helpers. Concurrent callers share the pool: each caller runs tasks itself
  and only waits for tasks a worker has already started (the others are
  cancelled), so no caller waits behind another caller's work and nothing can
  deadlock. A task that itself calls ``run_parallel`` (on a worker) runs its
  tasks inline.
* **Interrupts.** ``KeyboardInterrupt`` (Ctrl-C, ``_thread.interrupt_main``)
  reaches only the main thread, at any bytecode boundary, and the executor's
  own code is not written to survive that: an interrupt raised inside the
  Python-level ``__enter__`` of the ``threading.Semaphore`` that ``submit``
  consults, or of a ``Future``'s ``Condition``, leaves its lock taken forever,
  and every thread that touches it next hangs (observed: the main thread in
  ``submit``, both workers releasing the semaphore). So while the main thread
  is inside ``run_parallel``, a SIGINT handled in Python is *deferred*: the
  handler only records it and stops the handing out of tasks; the started
  tasks finish (each is a chunk or a row block, milliseconds), and then the
  original handler runs, raising ``KeyboardInterrupt`` (``_deferred_sigint``).
  The product is abandoned, no worker goes on writing into memory the caller
  will see, the pool stays usable and the process exits normally. Signals
  other than SIGINT whose handlers raise are not deferred.
* **Fork.** ``os.register_at_fork`` gives a forked child a fresh state: the
  parent's workers do not exist in the child, so its first parallel call
  starts a pool of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import FrameType

__all__ = ["available_cores", "pool_size", "run_parallel"]


def available_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity`` where it exists)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return max(1, os.cpu_count() or 1)


class _State:
    """The process's pool, its size and the lock that guards its creation (fresh after fork)."""

    def __init__(self) -> None:
        self.executor: ThreadPoolExecutor | None = None
        self.size = available_cores()
        self.lock = threading.Lock()


_STATE = _State()
_LOCAL = threading.local()  # .worker is True on the pool's own threads


def _reset_after_fork() -> None:
    global _STATE
    _STATE = _State()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _mark_worker() -> None:
    _LOCAL.worker = True


def _executor(state: _State) -> ThreadPoolExecutor:
    """The process's pool, created on first use (its threads start as tasks arrive)."""
    if state.executor is None:
        with state.lock:
            if state.executor is None:
                state.executor = ThreadPoolExecutor(
                    max_workers=state.size,
                    thread_name_prefix="refprune-sparse",
                    initializer=_mark_worker,
                )
    return state.executor


def pool_size() -> int:
    """Worker threads of the process's pool (the cores this process may use)."""
    return _STATE.size


@contextlib.contextmanager
def _deferred_sigint(on_interrupt: Callable[[], None]) -> Iterator[None]:
    """Within: a SIGINT handled in Python calls ``on_interrupt`` and is held; on exit the
    original handler runs for it (raising ``KeyboardInterrupt``, for the default handler).

    Only the main thread receives signals and may change handlers; elsewhere, or when
    SIGINT is not handled in Python (ignored, or the default action), this does nothing.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return
    held: list[tuple[int, FrameType | None]] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if not held:
            held.append((signum, frame))
        on_interrupt()

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            previous(*held[0])


def run_parallel(task: Callable[[int], object], n: int, threads: int) -> None:
    """Run ``task(i)`` for i in 0 .. n-1 on the calling thread and up to ``threads - 1`` workers.

    Returns when every task has run; re-raises the first error of a task (no task
    starts after one has failed). With ``threads <= 1``, ``n <= 1``, or when
    called from a worker, the tasks run in order on the calling thread. An
    interrupt stops the handing out of tasks and is raised once the started
    ones have finished.
    """
    if threads <= 1 or n <= 1 or getattr(_LOCAL, "worker", False):
        for i in range(n):
            task(i)
        return
    claim = itertools.count()  # next() on it is atomic under the GIL
    stop = [False]

    def drain() -> None:
        while not stop[0]:
            i = next(claim)
            if i >= n:
                return
            try:
                task(i)
            except BaseException:
                stop[0] = True  # no further tasks once one has failed
                raise

    def halt() -> None:
        stop[0] = True

    state = _STATE
    futures: list[Future[None]] = []
    error: BaseException | None = None
    with _deferred_sigint(halt):
        try:
            executor = _executor(state)
            for _ in range(min(threads, n, state.size + 1) - 1):
                futures.append(executor.submit(drain))
            drain()
        finally:
            for future in futures:  # cancel what has not started, wait for the rest
                if not future.cancel():
                    error = error or future.exception()
    if error is not None:
        raise error
