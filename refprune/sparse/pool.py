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
  lives (except in a forked child, below). Its size is fixed at creation (the
  cores this process may use, at least 1); a call asking for more threads
  than that gets at most that many helpers. Concurrent callers share the pool:
  each caller runs tasks itself and only waits for tasks a worker has already
  started, so no caller can wait on a queue behind another caller's work, and
  nothing can deadlock. A task that itself calls ``run_parallel`` (on a worker)
  runs its tasks inline.
* **Interrupts.** ``KeyboardInterrupt`` (Ctrl-C, a notebook's interrupt, any
  signal handler that raises) only ever reaches the main thread. If it
  arrives while the main thread is inside ``run_parallel``, the call stops
  handing out tasks, cancels the submitted tasks that have not started, waits
  for the started ones to finish (a further interrupt during that wait is held
  back and re-raised afterwards), and re-raises: the product is abandoned, no
  worker is left writing into memory the caller will see, and the pool stays
  usable. The pool's threads are started by a short-lived helper thread,
  which signals cannot reach, so an interrupt can never leave a half-started
  worker that would block the interpreter at exit; the waits here use
  ``Future.result`` on one future at a time (never ``concurrent.futures.wait``,
  whose multi-lock acquisition an interrupt can leave half done).
* **Fork.** ``os.register_at_fork`` gives a forked child a fresh state: the
  parent's workers do not exist in the child, so its first parallel call
  starts a pool of its own.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["available_cores", "pool_size", "run_parallel"]


def available_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity`` where it exists)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity
        return max(1, os.cpu_count() or 1)


class _State:
    """The process's pool and the locks that guard its creation (fresh in a forked child)."""

    def __init__(self) -> None:
        self.executor: ThreadPoolExecutor | None = None
        self.size = 0
        self.create_lock = threading.Lock()  # one creation attempt at a time (callers)
        self.install_lock = threading.Lock()  # held only by the helper thread that installs it


_STATE = _State()
_LOCAL = threading.local()  # .worker is True on the pool's own threads


def _reset_after_fork() -> None:
    global _STATE
    _STATE = _State()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _mark_worker() -> None:
    _LOCAL.worker = True


def _install(state: _State, size: int) -> None:
    """Create the executor and start all its threads (on a helper thread: never interrupted)."""
    with state.install_lock:
        if state.executor is not None:
            return
        executor = ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="refprune-sparse", initializer=_mark_worker
        )
        # every worker blocks on the barrier until all have started, so each submit
        # starts a new thread: the pool is complete before anyone uses it
        barrier = threading.Barrier(size + 1)
        for _ in range(size):
            executor.submit(barrier.wait, 60.0)
        barrier.wait(60.0)
        state.size = size
        state.executor = executor


def _executor(state: _State) -> ThreadPoolExecutor:
    """The process's pool, created on first use by a helper thread."""
    if state.executor is None:
        with state.create_lock:
            if state.executor is None:
                helper = threading.Thread(
                    target=_install,
                    args=(state, available_cores()),
                    name="refprune-sparse-start",
                    daemon=True,
                )
                helper.start()
                helper.join()  # if interrupted here, the helper still installs the pool
    executor = state.executor
    if executor is None:  # pragma: no cover - the helper failed to start threads
        raise RuntimeError("could not start the worker threads of refprune.sparse")
    return executor


def pool_size() -> int:
    """Worker threads of the process's pool (starts it if needed)."""
    state = _STATE
    _executor(state)
    return state.size


def _settle(futures: list[Future]) -> BaseException | None:
    """Cancel every future that has not started and wait for the others to finish.

    An exception raised meanwhile (an interrupt) does not cut the wait short:
    the first one is returned, for the caller to raise once nothing runs.
    """
    held: BaseException | None = None
    while futures:
        try:
            future = futures[-1]
            if not future.cancel():
                future.exception()  # waits; the task's own error is read later
            futures.pop()
        except BaseException as exc:  # noqa: BLE001 - an interrupt during the wait
            held = held if held is not None else exc
    return held


def run_parallel(task: Callable[[int], object], n: int, threads: int) -> None:
    """Run ``task(i)`` for i in 0 .. n-1 on the calling thread and up to ``threads - 1`` workers.

    Returns when every task has run; re-raises the first error of a task. With
    ``threads <= 1``, ``n <= 1``, or when called from a worker, the tasks run
    in order on the calling thread.
    """
    if threads <= 1 or n <= 1 or getattr(_LOCAL, "worker", False):
        for i in range(n):
            task(i)
        return
    claim = itertools.count()  # next() on it is atomic under the GIL
    stop = [False]
    running: list[int] = []  # one entry per drain in progress (list ops are atomic)

    def drain() -> None:
        token = threading.get_ident()
        running.append(token)
        try:
            while not stop[0]:
                i = next(claim)
                if i >= n:
                    return
                task(i)
        except BaseException:
            stop[0] = True  # no further tasks once one has failed
            raise
        finally:
            running.remove(token)

    state = _STATE
    futures: list[Future] = []
    try:
        executor = _executor(state)
        for _ in range(min(threads, n, state.size + 1) - 1):
            futures.append(executor.submit(drain))
        drain()
    except BaseException:
        stop[0] = True
        _settle(list(futures))
        _wait_until_empty(running)  # a drain whose future was lost to the interrupt
        raise
    held = _settle(list(futures))
    if held is not None:
        raise held
    for future in futures:
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]


def _wait_until_empty(running: list[int]) -> None:
    """Poll until no drain runs, holding back interrupts (only on the interrupted path)."""
    later: list[BaseException] = []  # further interrupts: dropped, one is propagating
    while running:
        try:
            time.sleep(1e-4)
        except BaseException as exc:  # noqa: BLE001 - keep waiting
            later.append(exc)
