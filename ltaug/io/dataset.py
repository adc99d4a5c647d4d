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
from ltaug.io.policy import KINDS, Finding, Problem, severity
from ltaug.io.validate import check_document_columns

COCO, LVIS = "coco", "lvis"
ON_ERROR = ("raise", "skip", "fix")
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
                 skipped: Counter | None = None, columns: AnnotationColumns | None = None,
                 findings: list[Finding] | None = None) -> None:
        self.data = data
        self.findings: list[Finding] = findings if findings is not None else []
        """What the reader did about each problem (:class:`~ltaug.io.policy.Finding`): warned, fixed, skipped."""
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
        return Dataset(data, kind=self.kind, path=self.path, skipped=Counter(self.skipped), findings=list(self.findings))

    def __repr__(self) -> str:
        return (f"Dataset({self.kind}, {len(self.images)} images, {len(self.annotations)} annotations, "
                f"{len(self.categories)} categories, path={str(self.path)!r})")

    # -- I/O -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, *, source: str = "<memory>", on_error: str = "raise", strict: bool = False,
                  path: str | os.PathLike | None = None) -> Dataset:
        """Check a parsed document and build a dataset; see :func:`load_dataset` for ``on_error``
        and ``strict``."""
        if on_error not in ON_ERROR:
            raise UsageError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        problems, columns = check_document_columns(data)
        if not problems:
            return cls(data, path=path, columns=columns)
        fatal = [p for p in problems if p.fatal]
        errors = [p for p in problems if strict or severity(p.kind) == "error"]
        if fatal or (errors and on_error == "raise"):
            first = (fatal or errors)[0]
            parts = [f"{len(errors)} errors in all"] if len(errors) > 1 else []
            parts.append(f"`ltaug validate {source}` lists them" if len(errors) > 1 else "")
            if not fatal:
                parts.append("--on-error fix repairs what it can" if any(KINDS[p.kind].fix for p in errors
                                                                         if p.kind in KINDS) else "")
                parts.append("--on-error skip drops the bad records")
            if strict and not fatal and severity(first.kind) == "warning":
                parts.append("a warning, made an error by --strict")
            hints = "; ".join(h for h in parts if h)
            raise InputError(first.line(source) + (f" ({hints})" if hints else ""))
        if on_error == "fix":
            from ltaug.io.fix import fix_document

            fixed, findings = fix_document(data)
            ds = cls(fixed, path=path, findings=findings)
            ds.skipped.update(f.kind for f in findings if f.action == "skipped")
            return ds
        error_ids = set(map(id, errors))
        warned = [Finding(p.kind, "warned", p.message.split(":", 1)[0], p.message) for p in problems
                  if id(p) not in error_ids]
        if not errors:
            return cls(data, path=path, findings=warned)
        return _drop_bad_records(data, errors, path, warned)

    def save(self, path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
             indent: bool = False) -> Path:
        """Write the document atomically as json; refuses to overwrite any of ``inputs``."""
        refuse_overwriting_inputs(path, [self.path, *inputs])
        write_json_atomic(path, self.data, indent=indent)
        return Path(path)


def _drop_bad_records(data: dict, problems: list[Problem], path: str | os.PathLike | None,
                      findings: list[Finding]) -> Dataset:
    """Remove records named by non-fatal problems, and annotations of removed images; each is a
    skipped :class:`Finding` added to ``findings``."""
    skipped = Counter(p.kind for p in problems)
    for p in problems:
        assert p.section is not None and p.position is not None  # not fatal
        rec = data[p.section][p.position]
        findings.append(Finding(p.kind, "skipped", p.message.split(":", 1)[0], p.message, before=rec,
                                image_id=rec.get("image_id", rec.get("id")) if isinstance(rec, dict) else None,
                                annotation_id=rec.get("id") if p.section == "annotations" and isinstance(rec, dict)
                                else None))
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
            findings.append(Finding("annotation-of-skipped-image", "skipped", f"annotation id {ann.get('id')}",
                                    f"annotation id {ann.get('id')}: its image id {ann['image_id']} was dropped",
                                    image_id=ann["image_id"], annotation_id=ann.get("id"), before=ann))
            continue
        annotations.append(ann)
    if orphaned:
        skipped["annotation-of-skipped-image"] += orphaned
    out = dict(data)
    out["images"], out["annotations"] = images, annotations
    return Dataset(out, path=path, skipped=skipped, findings=findings)


def save_dataset(dataset: Dataset, path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                 indent: bool = False) -> Path:
    """Write ``dataset`` as COCO/LVIS json (the kind it was read as), atomically."""
    return dataset.save(path, inputs=inputs, indent=indent)
