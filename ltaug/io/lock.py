"""One writer per output: an advisory lock held while a command writes an output folder or file.

:func:`output_lock` takes an exclusive ``flock`` on ``.NAME.lock`` beside the output ``NAME``
before anything is written, and records the holder's pid and start time in it. A second writer
is refused at once with one line naming them. The kernel releases the lock when its holder dies,
SIGKILL included, so a lock is never stale: the next writer takes it (a lock file of a dead
holder is reused, with a note naming the holder that died). The lock file is removed when the writer finishes; a writer that
acquired a lock file another one has just removed notices (the path no longer names the file it
locked) and locks the new one instead.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ltaug.errors import UsageError

_log = logging.getLogger(__name__)


def lock_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.parent / f".{output.name}.lock"


@contextlib.contextmanager
def output_lock(output: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of ``output`` inside the block; :class:`UsageError` if another writer has it."""
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UsageError(f"{output}: another ltaug command is writing it ({holder}); wait for it to "
                             f"finish, or stop it") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was removed by the writer we waited on: lock the new one
    try:
        previous = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if previous:  # a holder that died (SIGKILL, power cut): the kernel freed its lock
            _log.info("%s: took over the lock left by %s, no longer running", output, previous)
        started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {started}".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)
