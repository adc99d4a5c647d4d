"""``--on-error fix``: a COCO/LVIS document repaired as the policy table says (:mod:`ltaug.io.policy`).

:func:`fix_document` works in rounds: first the ids (a non-integer image or annotation id gets a
new integer id, an image's annotations following it; a repeated annotation id is renumbered
after the largest id; a repeated image id drops the later record), then every problem
:func:`~ltaug.io.validate.check_document` (and, with ``masks``, :func:`~ltaug.io.validate.check_masks`)
finds is repaired where its kind has a fix and dropped where it has none, then the document is
checked again: what is still wrong is dropped. Every change is a :class:`~ltaug.io.policy.Finding`
with the record before and after; a changed record carries ``"ltaug_fix"``: the kinds fixed and
its old id where it changed. The input's records are never modified (changed ones are copies).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from ltaug.io import geometry
from ltaug.io import validate as v
from ltaug.io.policy import Finding, Problem


def _singular(section: str) -> str:
    return {"images": "image", "annotations": "annotation", "categories": "category"}[section]


def _where(section: str, rec: Any, pos: int) -> str:
    rid = rec.get("id") if isinstance(rec, dict) else None
    return f"{_singular(section)} id {rid}" if rid is not None else f"{_singular(section)} #{pos}"


def _mark(rec: dict, kind: str, old_id: Any = None) -> dict:
    """A copy of ``rec`` recording that ``kind`` was fixed (and its old id)."""
    out = dict(rec)
    note = dict(out.get("ltaug_fix", {}))
    note["kinds"] = [*note.get("kinds", []), kind]
    if old_id is not None:
        note.setdefault("old_id", old_id)
    out["ltaug_fix"] = note
    return out


class _Fixer:
    """One document being fixed: the sections as new lists, and what was done."""

    def __init__(self, data: dict) -> None:
        self.data = dict(data)
        self.data["images"] = list(data["images"])
        self.data["annotations"] = list(data["annotations"])
        self.findings: list[Finding] = []
        self.dropped_image_ids: set = set()

    def skip(self, kind: str, section: str, pos: int, message: str) -> None:
        rec = self.data[section][pos]
        if section == "images" and isinstance(rec, dict) and v._is_int(rec.get("id")):
            self.dropped_image_ids.add(rec["id"])
        self.findings.append(Finding(kind, "skipped", _where(section, rec, pos), message,
                                     image_id=rec.get("id") if section == "images" and isinstance(rec, dict) else
                                     (rec.get("image_id") if isinstance(rec, dict) else None),
                                     annotation_id=rec.get("id") if section == "annotations" and isinstance(rec, dict)
                                     else None, before=rec))
        self.data[section][pos] = None

    def fixed(self, kind: str, section: str, pos: int, new: dict, message: str, old_id: Any = None) -> None:
        old = self.data[section][pos]
        new = _mark(new, kind, old_id)
        self.findings.append(Finding(kind, "fixed", _where(section, old, pos), message,
                                     image_id=new.get("id") if section == "images" else new.get("image_id"),
                                     annotation_id=new.get("id") if section == "annotations" else None,
                                     before={k: val for k, val in old.items() if k != "ltaug_fix"},
                                     after={k: val for k, val in new.items() if k != "ltaug_fix"}))
        self.data[section][pos] = new

    def compact(self) -> None:
        """Drop the skipped records, and the annotations of dropped images."""
        self.data["images"] = [im for im in self.data["images"] if im is not None]
        kept = {im["id"] for im in self.data["images"] if isinstance(im, dict) and v._is_int(im.get("id"))}
        gone = self.dropped_image_ids - kept  # a repeated image id dropped: its annotations stay with the first
        for pos, ann in enumerate(self.data["annotations"]):
            if isinstance(ann, dict) and v._is_int(ann.get("image_id")) and ann["image_id"] in gone:
                self.skip("annotation-of-skipped-image", "annotations", pos,
                          f"annotation id {ann.get('id')}: its image id {ann['image_id']} was dropped")
        self.data["annotations"] = [a for a in self.data["annotations"] if a is not None]

    # -- round 1: ids ----------------------------------------------------------------------
    def ids(self) -> None:
        images, anns = self.data["images"], self.data["annotations"]
        next_image = itertools.count(_largest_id(images) + 1)
        seen: set = set()
        remap: dict = {}  # a non-integer image id -> its new id
        for pos, im in enumerate(images):
            if not isinstance(im, dict) or "id" not in im:
                continue
            rid = im["id"]
            if not v._is_int(rid):
                new = next(next_image)
                try:
                    remap[(type(rid), rid)] = new
                except TypeError:  # an unhashable id: no annotation can name it
                    pass
                self.fixed(v.NON_INTEGER_ID, "images", pos, {**im, "id": new},
                           f"image id {rid!r} is not an integer: now {new}", old_id=rid)
            elif rid in seen:
                self.skip(v.DUPLICATE_IMAGE_ID, "images", pos,
                          f"image id {rid}: used by an earlier image record; this one is dropped "
                          f"(annotations naming id {rid} stay with the first)")
            else:
                seen.add(rid)
        next_ann = itertools.count(_largest_id(anns) + 1)
        seen = set()
        for pos, ann in enumerate(anns):
            if not isinstance(ann, dict):
                continue
            image_id = ann.get("image_id")
            try:
                new_image = remap.get((type(image_id), image_id))
            except TypeError:
                new_image = None
            if new_image is not None:
                ann = {**ann, "image_id": new_image}
                anns[pos] = ann
            if "id" not in ann:
                continue
            rid = ann["id"]
            if not v._is_int(rid):
                new = next(next_ann)
                self.fixed(v.NON_INTEGER_ID, "annotations", pos, {**ann, "id": new},
                           f"annotation id {rid!r} is not an integer: now {new}", old_id=rid)
            elif rid in seen:
                new = next(next_ann)
                self.fixed(v.DUPLICATE_ID, "annotations", pos, {**ann, "id": new},
                           f"annotation id {rid}: used by an earlier annotation: now {new}", old_id=rid)
            else:
                seen.add(rid)
        self.compact()

    # -- round 2: the records --------------------------------------------------------------
    def records(self, problems: list[Problem]) -> None:
        sizes = {im["id"]: (im["height"], im["width"]) for im in self.data["images"]
                 if isinstance(im, dict) and v._is_int(im.get("id")) and v._is_int(im.get("width"))
                 and v._is_int(im.get("height"))}
        for p in problems:
            if p.section not in ("images", "annotations") or p.position is None:
                continue
            rec = self.data[p.section][p.position]
            if rec is None:
                continue
            image_id = rec.get("image_id") if p.section == "annotations" else None
            size = sizes.get(image_id) if v._is_int(image_id) else None
            new = _repair(p.kind, rec, size)
            if new is None:
                self.skip(p.kind, p.section, p.position, p.message)
            else:
                self.fixed(p.kind, p.section, p.position, new[0], f"{p.message}: {new[1]}")
        self.compact()


def _largest_id(records: list) -> int:
    ids: list[int] = [r["id"] for r in records if isinstance(r, dict) and v._is_int(r.get("id"))]
    return max(ids, default=0)


def _repair(kind: str, ann: dict, size: tuple[int, int] | None) -> tuple[dict, str] | None:
    """The repaired annotation and what was done, or None where ``kind`` has no repair."""
    if size is None:
        return None
    height, width = size
    seg = ann.get("segmentation")
    if kind == v.BBOX_OUTSIDE:
        x, y, w, h = ann["bbox"]
        x0, y0 = max(0.0, float(x)), max(0.0, float(y))
        x1, y1 = min(float(width), float(x) + float(w)), min(float(height), float(y) + float(h))
        if x1 <= x0 or y1 <= y0:
            return None
        box = [round(v, 6) for v in (x0, y0, x1 - x0, y1 - y0)]  # no float noise (104.46000000000004)
        return {**ann, "bbox": box}, f"clipped to {_fmt(box)}"
    if kind in (v.BAD_BBOX, v.BBOX_MASK_MISMATCH):
        mask_box = _mask_box(seg, height, width)
        if mask_box is None:
            return None
        return {**ann, "bbox": mask_box}, f"box recomputed from the mask: {_fmt(mask_box)}"
    if kind == v.BAD_POLYGON and isinstance(seg, list):
        parts = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and v._finite_numbers(p)]
        if not parts:
            return None
        return {**ann, "segmentation": parts}, f"{len(seg) - len(parts)} bad polygon part(s) removed"
    if kind == v.CROWD_POLYGON and isinstance(seg, list):
        rle = geometry.rle_to_json(geometry.to_rle(seg, height, width))
        return {**ann, "segmentation": rle}, "polygons turned into one RLE"
    if kind == v.AREA_MISMATCH:
        area = float(geometry.mask_area(seg, height, width))
        return {**ann, "area": area}, f"area recomputed from the mask: {area:g}"
    return None


def _mask_box(seg: Any, height: int, width: int) -> list[float] | None:
    try:
        box = geometry.segmentation_bbox(seg, height, width)
        return None if box is None else [round(v, 6) for v in box]
    except Exception:  # a mask that cannot be rasterised has no box to give
        return None


def _fmt(box: list[float]) -> str:
    return "[" + ", ".join(f"{b:g}" for b in box) + "]"


def fix_document(data: dict, *, masks: bool = False, extra: Sequence[Problem] = ()) -> tuple[dict, list[Finding]]:
    """``data`` repaired (a new document; the input untouched) and every :class:`Finding`.
    ``masks``: also fix areas and boxes that disagree with the masks (rasterises every mask);
    ``extra``: problems found elsewhere (image files: dropped) on the document as given."""
    fixer = _Fixer(data)
    for p in extra:  # positions refer to the input document: applied before anything moves
        if p.section in ("images", "annotations") and p.position is not None and \
                fixer.data[p.section][p.position] is not None:
            fixer.skip(p.kind, p.section, p.position, p.message)
    fixer.compact()
    fixer.ids()
    fixer.records(v.check_document(fixer.data))
    if masks:
        fixer.records(list(v.check_masks(fixer.data)))
    for p in v.check_document(fixer.data):  # what a repair could not settle
        if p.section in ("images", "annotations") and p.position is not None:
            fixer.skip(p.kind, p.section, p.position, p.message)
    fixer.compact()
    return fixer.data, fixer.findings
