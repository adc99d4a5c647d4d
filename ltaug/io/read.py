"""Read a dataset: a COCO or LVIS json file, or a YOLO-seg folder (:func:`load_dataset`).

The one entry point that knows both formats, so that :mod:`ltaug.io.dataset` (the data model)
and :mod:`ltaug.io.yolo` (which builds a :class:`~ltaug.io.dataset.Dataset`) need not know
each other.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ltaug.errors import InputError, UsageError
from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import gc_paused, read_json
from ltaug.io.validate import Problem
from ltaug.io.yolo import read_yolo

YAML_SUFFIXES = (".yaml", ".yml")


def is_yolo_source(path: str | os.PathLike) -> bool:
    """A YOLO-seg folder, or its data.yaml (any ``*.yaml`` / ``*.yml`` file), not a json file."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in YAML_SUFFIXES


def load_dataset(path: str | os.PathLike, *, on_error: str = "raise", split: str = "train",
                 strict: bool = False, images: str | os.PathLike | None = None) -> Dataset:
    """Read a COCO or LVIS json file, or a YOLO-seg folder (one with a ``data.yaml``, or the
    ``*.yaml`` / ``*.yml`` file itself, read as YAML whatever its name: :func:`read_yolo`).

    Each problem has a severity in the policy table (:mod:`ltaug.io.policy`). Errors:
    ``on_error="raise"`` (default) refuses the file with a one-line :class:`InputError`;
    ``"skip"`` drops the invalid records (an image's annotations go with it), counted in
    ``Dataset.skipped``; ``"fix"`` repairs what the table says how (:mod:`ltaug.io.fix`; warnings
    too) and drops the rest. Warnings (files pycocotools loads) are processed as they are, each
    one a ``Dataset.findings`` entry; ``strict`` makes them errors. Problems with the file as a
    whole (bad JSON, missing top-level lists, bad categories) always raise. Loading runs the record checks of
    :func:`ltaug.io.validate.check_document`; mask areas and image files are checked only by
    ``ltaug validate`` (they need rasterising every mask or opening every image).
    ``split``: for a YOLO folder whose data.yaml names splits, the one to read; ``images``: a
    YOLO folder's images folder, read instead of the one data.yaml names.
    """
    path = Path(path)
    if is_yolo_source(path):
        return read_yolo(path, on_error=on_error, split=split, strict=strict, images=images)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with gc_paused():  # parse, check and index build millions of acyclic objects
        data = read_json(path)
        ds = Dataset.from_dict(data, source=str(path), on_error=on_error, strict=strict, path=path)
        ds.index  # noqa: B018 (built here, while the collector is paused)
    return ds


def read_document(path: str | os.PathLike) -> tuple[Any, list[Problem]]:
    """The document of a json file or YOLO-seg folder as it is, unchecked, for ``ltaug validate``:
    ``(data, problems)``.

    A YOLO folder (or its ``*.yaml`` / ``*.yml``) is read with ``on_error="skip"`` and each of
    its findings (a warning, a rejected label line) is one problem; a file that is not JSON gives ``(None, [its malformed-json problem])``. A path that
    does not exist is a :class:`UsageError`.
    """
    path = Path(path)
    if is_yolo_source(path):
        if not path.exists():
            raise UsageError(f"{path}: file not found")
        ds = read_yolo(path, on_error="skip")
        recorded = {f.kind for f in ds.findings}
        named = [f.message if f.message.startswith(f.where) else f"{f.where}: {f.message}" for f in ds.findings]
        return ds.data, [Problem(f.kind, m, "annotations", None) for f, m in zip(ds.findings, named)] + [
            Problem(kind, f"{n} label line(s) rejected: {kind}", "annotations", None)
            for kind, n in ds.skipped.items() if kind not in recorded]
    try:
        return read_json(path), []
    except InputError as exc:
        if not path.is_file():
            raise UsageError(str(exc)) from None
        return None, [Problem("malformed-json", str(exc).split(": ", 1)[-1])]


def policy_table(*, markdown: bool = False) -> str:
    """The policy table of every problem kind (:mod:`ltaug.io.policy`): json, YOLO and image files."""
    from ltaug.io import policy

    return policy.table(markdown=markdown)  # this module imported the declaring ones
