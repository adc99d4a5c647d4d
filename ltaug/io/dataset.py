"""A COCO / LVIS dataset in memory: the json document, kept whole, plus a columnar index.

The document is kept as parsed (orjson), so every field we do not know about, at every
level, is written back unchanged: load then save is lossless. Hot paths use
:attr:`Dataset.index` (numpy arrays), never per-annotation Python objects.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

from ltaug.errors import InputError, UsageError
from ltaug.io.index import AnnotationColumns, DatasetIndex, build_index
from ltaug.io.jsonio import write_json_atomic
from ltaug.io.paths import refuse_overwriting_inputs
from ltaug.io.validate import Problem, check_document_columns

COCO, LVIS = "coco", "lvis"
ON_ERROR = ("raise", "skip")
LVIS_IMAGE_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")
LVIS_CATEGORY_KEYS = ("frequency", "image_count", "instance_count")


def detect_kind(data: dict) -> str:
    """``lvis`` when categories carry LVIS statistics or images carry LVIS negative lists."""
    if any(isinstance(c, dict) and "frequency" in c for c in data.get("categories", ())[:50]):
        return LVIS
    if any(isinstance(im, dict) and any(k in im for k in LVIS_IMAGE_KEYS) for im in data.get("images", ())[:50]):
        return LVIS
    return COCO


class Dataset:
    """A COCO/LVIS document. Treat ``data`` as read-only; derive new datasets with :meth:`replace`."""

    def __init__(self, data: dict, *, kind: str | None = None, path: str | os.PathLike | None = None,
                 skipped: Counter | None = None, columns: AnnotationColumns | None = None) -> None:
        self.data = data
        self._columns = columns  # annotation columns the validator built, handed to the index
        self.kind = kind or detect_kind(data)
        self.path = Path(path) if path is not None else None
        self.skipped = skipped if skipped is not None else Counter()

    # -- records -------------------------------------------------------------------------
    @property
    def images(self) -> list:
        return self.data["images"]

    @property
    def annotations(self) -> list:
        return self.data["annotations"]

    @property
    def categories(self) -> list:
        return self.data["categories"]

    @cached_property
    def index(self) -> DatasetIndex:
        columns, self._columns = self._columns, None
        return build_index(self.images, self.annotations, self.categories, columns=columns)

    def replace(self, **sections: Any) -> Dataset:
        """A new dataset with some top-level sections replaced; all other fields shared."""
        data = dict(self.data)
        data.update(sections)
        return Dataset(data, kind=self.kind, path=self.path, skipped=Counter(self.skipped))

    def __repr__(self) -> str:
        return (f"Dataset({self.kind}, {len(self.images)} images, {len(self.annotations)} annotations, "
                f"{len(self.categories)} categories, path={str(self.path)!r})")

    # -- I/O -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, *, source: str = "<memory>", on_error: str = "raise",
                  path: str | os.PathLike | None = None) -> Dataset:
        """Check a parsed document and build a dataset; see :func:`load_dataset` for ``on_error``."""
        if on_error not in ON_ERROR:
            raise UsageError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        problems, columns = check_document_columns(data)
        if not problems:
            return cls(data, path=path, columns=columns)
        fatal = [p for p in problems if p.fatal]
        if fatal or on_error == "raise":
            first = (fatal or problems)[0]
            parts = [f"{len(problems)} problems in all"] if len(problems) > 1 else []
            parts.append(f"`ltaug validate {source}` lists them" if len(problems) > 1 else "")
            if not fatal:
                parts.append("--on-error skip drops the bad records")
            hints = "; ".join(h for h in parts if h)
            raise InputError(first.line(source) + (f" ({hints})" if hints else ""))
        return _drop_bad_records(data, problems, path)

    def save(self, path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
             indent: bool = False) -> Path:
        """Write the document atomically as json; refuses to overwrite any of ``inputs``."""
        refuse_overwriting_inputs(path, [self.path, *inputs])
        write_json_atomic(path, self.data, indent=indent)
        return Path(path)


def _drop_bad_records(data: dict, problems: list[Problem], path: str | os.PathLike | None) -> Dataset:
    """Remove records named by non-fatal problems, and annotations of removed images."""
    skipped = Counter(p.kind for p in problems)
    bad: dict[str | None, set[int | None]] = {"images": set(), "annotations": set()}
    for p in problems:
        bad[p.section].add(p.position)
    images = [im for i, im in enumerate(data["images"]) if i not in bad["images"]]
    kept_ids = {im["id"] for im in images}
    annotations = []
    orphaned = 0
    for i, ann in enumerate(data["annotations"]):
        if i in bad["annotations"]:
            continue
        if ann["image_id"] not in kept_ids:
            orphaned += 1
            continue
        annotations.append(ann)
    if orphaned:
        skipped["annotation-of-skipped-image"] += orphaned
    out = dict(data)
    out["images"], out["annotations"] = images, annotations
    return Dataset(out, path=path, skipped=skipped)


def save_dataset(dataset: Dataset, path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                 indent: bool = False) -> Path:
    """Write ``dataset`` as COCO/LVIS json (the kind it was read as), atomically."""
    return dataset.save(path, inputs=inputs, indent=indent)
