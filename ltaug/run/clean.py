"""What killed or interrupted writers leave beside an output, found and removed (``ltaug clean``).

Every writer works beside its target ``NAME`` under names that say what they are, and its next
run on the same target removes them itself; this module lists and removes them without running
anything, for a target a user gave up on. Found beside ``NAME``:

- ``.NAME.partial/``: an interrupted ``ltaug run`` (or paste, mosaic, mixup); ``--resume``
  finishes it, ``clean`` discards it;
- ``.NAME.old/``: the previous output, left by a run killed while replacing it;
- ``.NAME.XXXXXXXX.tmp/``: a bank build that was killed;
- ``.NAME.PID.XXXXXXXX.tmp``: a file write (annotation json, report) whose writer died;
- inside a folder ``NAME`` (a YOLO export): such temporary files of writers that died.

The target's lock (:mod:`ltaug.io.lock`) is taken first, so nothing is removed while a writer
is at work there.
"""
from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ltaug.io.jsonio import stale_temporaries, stale_temporaries_under
from ltaug.io.lock import output_lock
from ltaug.run.engine import partial_dir


@dataclass(frozen=True)
class Leftover:
    """One leftover: its path, what left it, and its size in bytes."""

    path: Path
    what: str
    bytes: int


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
               if not os.path.islink(os.path.join(root, f)))


def find_leftovers(target: str | os.PathLike) -> list[Leftover]:
    """The leftovers of writers of ``target`` (a folder or a file, present or not), sorted by path."""
    target = Path(target)
    found: list[tuple[Path, str]] = []
    if partial_dir(target).is_dir():
        found.append((partial_dir(target), "an interrupted run (--resume finishes it)"))
    old = target.parent / f".{target.name}.old"
    if old.is_dir():
        found.append((old, "the output a killed run was replacing"))
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        if tmp.is_dir():
            found.append((tmp, "a killed bank build"))
    found += [(tmp, "a killed file write") for tmp in stale_temporaries(target)]
    if target.is_dir():
        found += [(tmp, "a killed file write") for tmp in stale_temporaries_under(target)]
    return [Leftover(p, what, _size(p)) for p, what in sorted(found)]


def clean(target: str | os.PathLike, *, dry_run: bool = False) -> list[Leftover]:
    """Remove :func:`find_leftovers` of ``target`` (nothing with ``dry_run``) and return them.
    Refused (:class:`~ltaug.errors.UsageError`) while a writer holds the target's lock."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    with output_lock(target):
        found = find_leftovers(target)
        if not dry_run:
            for left in found:
                if left.path.is_dir():
                    shutil.rmtree(left.path)
                else:
                    left.path.unlink(missing_ok=True)
    return found
