"""A process pool that yields results in submission order, with a bounded queue of work in flight.

Used by the bank builder and the engine. ``workers <= 1`` runs in the calling process (no pool,
no pickling). Otherwise a :class:`concurrent.futures.ProcessPoolExecutor` of Python's default
start method (``fork`` on Linux: no ``if __name__ == "__main__":`` guard needed, notebooks
work). Each worker runs one item at a time, so OpenCV's own threads would only compete: the
workers must run OpenCV single-threaded. They cannot switch it themselves: after a fork, the
child's copy of a thread pool the parent has used is locked, and ``cv2.setNumThreads`` there
hangs (seen with OpenCV 5.0). So the parent switches to one thread while it starts the
workers, which inherit that, and switches back after. At most ``2 * workers`` items are in
flight. The first
items are submitted on entry, so the processes start before the caller's progress-bar thread.
On exit, queued items are cancelled and running ones waited for.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator


def init_worker(parent: int) -> None:
    """Ctrl-C is the parent's to handle (it stops the pool). A worker dies with its parent, even
    a parent killed with SIGKILL, which runs no clean-up: on Linux the kernel sends the worker
    SIGKILL when the parent's thread that forked it dies (``prctl(PR_SET_PDEATHSIG)``); if the
    parent died before that was set, the worker exits at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


@contextlib.contextmanager
def opencv_threads(n: int) -> Iterator[None]:
    """OpenCV's thread count set to ``n`` inside the block, restored after."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


@contextlib.contextmanager
def imap_ordered(fn: Callable, items: Iterable, workers: int) -> Iterator[Iterator]:
    """Context manager giving an iterator over ``fn(item)`` for each item, in order."""
    if workers <= 1:
        yield (fn(item) for item in items)
        return
    from concurrent.futures import ProcessPoolExecutor

    items = iter(items)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(), initializer=init_worker,
                               initargs=(os.getpid(),))
    try:
        with opencv_threads(1):  # all workers start at the first submit, and inherit one thread
            pending = deque(pool.submit(fn, item) for item in itertools.islice(items, 2 * workers))
        yield _drain(pool, fn, pending, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _drain(pool, fn, pending: deque, items: Iterator) -> Iterator:
    while pending:
        done = pending.popleft().result()
        nxt = next(items, _END)
        if nxt is not _END:
            pending.append(pool.submit(fn, nxt))
        yield done


_END = object()
