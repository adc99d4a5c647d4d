"""JSON reading with clear errors, and atomic writes (temporary file in the same folder, then rename)."""
from __future__ import annotations

import contextlib
import gc
import glob
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from ltaug.errors import InputError


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while building many small objects.

    Parsing a large json (or copying a million annotation dicts) allocates millions of
    containers; each allocation burst triggers collections that rescan everything built so
    far. On an LVIS-v1-sized file this cut orjson parsing from 9.3 s to 5.5 s. JSON data has
    no reference cycles, so nothing is left for the collector to find. Keep the whole burst
    inside (parse, check, index): re-enabling the collector between steps makes the next step
    pay for a full collection of everything parsed so far.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file with orjson; a missing or malformed file raises a one-line InputError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a JSON file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        with gc_paused():
            return loads_in_pieces(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


PIECE_BYTES = 16 << 20  # the text of the "annotations" list parsed this much at a time (see loads_in_pieces)


def loads_in_pieces(raw: bytes, piece: int = PIECE_BYTES) -> Any:
    """``orjson.loads(raw)``, with the top-level ``"annotations"`` list of a COCO/LVIS document
    parsed about ``piece`` bytes at a time, to bound the parser's own memory.

    orjson builds a parse tree of the whole text before it makes the Python objects: on an
    LVIS-v1-sized file (304 MiB) its peak is about 1 GiB above the document it returns. Cut
    between two records of the list (at ``},{`` or ``}, {``), each piece is parsed alone: the
    text up to the first cut closed by ``]}``, the records between two cuts in ``[...]``, and
    the rest after ``{"annotations":[``; the document is the first piece's keys, the list's
    records in order, then the last piece's other keys. A cut inside a string, inside a record
    or past the list's end leaves a piece that is not JSON (a first piece whose last key is
    not ``"annotations"``): a middle piece that does not parse ends the cutting there (the
    last piece starts at the cut before); a first or last piece that does not parse, the key
    found twice, or a text smaller than two pieces: the whole text is parsed at once, which
    also gives the position of a real syntax error.
    """
    found = _annotation_cuts(raw, piece)
    if found is None:
        return orjson.loads(raw)
    cuts, skip = found
    try:
        doc = orjson.loads(raw[:cuts[0] + 1] + b"]}")
    except orjson.JSONDecodeError:
        return orjson.loads(raw)
    if type(doc) is not dict or next(reversed(doc)) != "annotations" or type(doc["annotations"]) is not list:
        return orjson.loads(raw)
    records, last = doc["annotations"], cuts[0]
    for cut in cuts[1:]:
        try:
            records += orjson.loads(b"[" + raw[last + skip:cut + 1] + b"]")
        except orjson.JSONDecodeError:
            break  # a cut past the list's end (or a real error, which the last piece meets too)
        last = cut
    try:
        tail = orjson.loads(b'{"annotations":[' + raw[last + skip:])
    except orjson.JSONDecodeError:
        return orjson.loads(raw)
    records += tail.pop("annotations")
    doc.update(tail)
    return doc


def _annotation_cuts(raw: bytes, piece: int) -> tuple[list[int], int] | None:
    """Where :func:`loads_in_pieces` cuts the text: the positions of the ``}`` that ends a
    record, about ``piece`` bytes apart, and how far after one the next record starts; None
    when the text is not cut."""
    if len(raw) < 2 * piece:
        return None
    for key in (b'"annotations":[', b'"annotations": ['):  # compact (orjson, COCO's files), json.dump's spacing
        start = raw.find(key)
        if start >= 0:
            break
    else:
        return None
    sep = b"},{" if key.endswith(b":[") else b"}, {"
    if raw.find(b'"annotations"', start + len(key)) >= 0:
        return None
    cuts = []
    cut = raw.find(sep, start + len(key) + piece)
    while cut >= 0:
        cuts.append(cut)
        cut = raw.find(sep, cut + piece)
    return (cuts, len(sep) - 1) if cuts else None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, sweep: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    A reader never sees a half-written file: either the old file (or none) or the new one.
    On failure the temporary file is removed and ``path`` is untouched. The temporary name
    ``.NAME.PID.XXXXXXXX.tmp`` carries the writer's pid: the next write of ``path`` removes what
    a killed writer left (:func:`remove_stale_temporaries`; ``sweep=False`` for a writer of many
    files in one folder, which sweeps the folder once instead: :func:`remove_stale_temporaries_under`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:  # name the file the user asked for, not the temporary one
        if exc.filename is None or Path(exc.filename) == tmp_path:
            raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files of :func:`atomic_path` beside ``path`` whose writer is no longer running
    (a writer killed before its rename). A live writer's file is never listed."""
    path = Path(path)
    stale = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if _dead_writer(tmp, len(path.name)):
            stale.append(tmp)
    return sorted(stale)


def _dead_writer(tmp: Path, name_length: int) -> bool:
    """``tmp`` (``.NAME.PID.XXXXXXXX.tmp``, NAME of ``name_length`` characters) is a file whose writer is gone."""
    pid = tmp.name[name_length + 2:].split(".", 1)[0]
    return pid.isdigit() and tmp.is_file() and not pid_alive(int(pid))


def stale_temporaries_under(folder: str | os.PathLike) -> list[Path]:
    """The stale :func:`atomic_path` temporaries anywhere below ``folder`` (one walk)."""
    stale = []
    for root, _, files in os.walk(os.fspath(folder)):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 4:
                tmp = Path(root) / name
                # the file's own name is between the leading dot and ".PID.XXXXXXXX.tmp"
                if _dead_writer(tmp, len(name.rsplit(".", 3)[0]) - 1):
                    stale.append(tmp)
    return sorted(stale)


def remove_stale_temporaries_under(folder: str | os.PathLike) -> list[Path]:
    """Remove (and return) :func:`stale_temporaries_under` ``folder`` (for a writer of many files)."""
    removed = stale_temporaries_under(folder)
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove (and return) :func:`stale_temporaries` of ``path``."""
    removed = stale_temporaries(path)
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a pid the system has reused counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, sweep: bool = True) -> None:
    write_chunks_atomic(path, (data,), sweep=sweep)


def write_chunks_atomic(path: str | os.PathLike, chunks: Iterable[bytes | memoryview], *, sweep: bool = True) -> None:
    """Write the concatenation of ``chunks`` to ``path`` atomically (:func:`atomic_path`), each
    chunk as it comes: a producer of chunks never holds the whole file in memory."""
    with atomic_path(path, sweep=sweep) as tmp:
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dumps(obj: Any, *, indent: bool = False) -> bytes:
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(obj, option=option)


def document_chunks(data: dict, records: Mapping[str, Iterable[list]]) -> Iterator[bytes | memoryview]:
    """The bytes of ``dumps(data)`` in pieces, where each top-level key named in ``records``
    has for its value the records of an iterable of lists instead (a chunk of records at a
    time, consumed as the pieces are produced): the same bytes as ``dumps`` of the document
    with each such list concatenated, without that list or the whole text in memory. orjson's
    compact form has no whitespace, so a list's text is its chunks' texts without their
    brackets, joined by commas. Top-level keys must be strings (ValueError otherwise)."""
    yield b"{"
    for i, (key, value) in enumerate(data.items()):
        if type(key) is not str:
            raise ValueError(f"top-level key {key!r} is not a string")
        yield (b"," if i else b"") + dumps(key) + b":"
        if key not in records:
            yield dumps(value)
            continue
        yield b"["
        sep = b""
        for chunk in records[key]:
            if chunk:
                yield sep
                yield memoryview(dumps(chunk))[1:-1]
                sep = b","
        yield b"]"
    yield b"}"


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: bool = False) -> None:
    """Serialise ``obj`` with orjson (numpy scalars and arrays allowed) and write it atomically."""
    write_bytes_atomic(path, dumps(obj, indent=indent))
