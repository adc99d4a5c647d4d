"""Read a dataset: a COCO or LVIS json file, or a YOLO-seg folder (:func:`load_dataset`).

The one entry point that knows both formats, so that :mod:`ltaug.io.dataset` (the data model)
and :mod:`ltaug.io.yolo` (which builds a :class:`~ltaug.io.dataset.Dataset`) need not know
each other.
"""
from __future__ import annotations

import os
from pathlib import Path

from ltaug.errors import InputError
from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import gc_paused, read_json
from ltaug.io.yolo import read_yolo


def load_dataset(path: str | os.PathLike, *, on_error: str = "raise", split: str = "train") -> Dataset:
    """Read a COCO or LVIS json file, or a YOLO-seg folder (one with a ``data.yaml``).

    ``on_error="raise"`` (default) refuses a file with any invalid record, with a one-line
    :class:`InputError`; ``"skip"`` drops the invalid records (an image's annotations go with
    it) and counts them in ``Dataset.skipped``. Problems with the file as a whole (bad JSON,
    missing top-level lists, bad categories) always raise. Loading runs the record checks of
    :func:`ltaug.io.validate.check_document`; mask areas and image files are checked only by
    ``ltaug validate`` (they need rasterising every mask or opening every image).
    ``split``: for a YOLO folder whose data.yaml names splits, the one to read.
    """
    path = Path(path)
    if path.is_dir():
        return read_yolo(path, on_error=on_error, split=split)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with gc_paused():  # parse, check and index build millions of acyclic objects
        data = read_json(path)
        ds = Dataset.from_dict(data, source=str(path), on_error=on_error, path=path)
        ds.index  # noqa: B018 (built here, while the collector is paused)
    return ds
