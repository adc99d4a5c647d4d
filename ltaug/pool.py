"""A process pool that yields results in submission order, with a bounded queue of work in flight.

Used by the bank builder and the engine. ``workers <= 1`` runs in the calling process (no pool,
no pickling). Otherwise a :class:`concurrent.futures.ProcessPoolExecutor` started by
``forkserver`` where the platform has it: forking a process whose OpenCV thread pool has run
(any earlier resize or blur) leaves the children's copy of that pool locked, and they hang on
their first parallel OpenCV call; a fork server is a fresh process, so its children are not.
The calling script must be importable (the usual ``if __name__ == "__main__":`` guard). At most
``2 * workers`` items are in flight. The first
items are submitted on entry, so the processes start before the caller's progress-bar thread.
On exit, queued items are cancelled and running ones waited for.
"""
from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator


def init_worker() -> None:
    """One item per process at a time: OpenCV's own threads would only compete; Ctrl-C is the parent's."""
    import cv2

    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def imap_ordered(fn: Callable, items: Iterable, workers: int) -> Iterator[Iterator]:
    """Context manager giving an iterator over ``fn(item)`` for each item, in order."""
    if workers <= 1:
        yield (fn(item) for item in items)
        return
    from concurrent.futures import ProcessPoolExecutor

    items = iter(items)
    pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=init_worker)
    try:
        pending = deque(pool.submit(fn, item) for item in itertools.islice(items, 2 * workers))
        yield _drain(pool, fn, pending, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _context():
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "cv2", "pycocotools.mask", "ltaug.engine"])  # imported once, not per worker
    return ctx


def _drain(pool, fn, pending: deque, items: Iterator) -> Iterator:
    while pending:
        done = pending.popleft().result()
        nxt = next(items, _END)
        if nxt is not _END:
            pending.append(pool.submit(fn, nxt))
        yield done


_END = object()
