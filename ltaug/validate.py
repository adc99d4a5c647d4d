"""Checks on COCO/LVIS documents and their image files.

Each check yields :class:`Problem` records naming the file, the section and the record
(image id / annotation id / category id) and what is wrong. ``check_document`` is cheap
(one pass over the records, no rasterisation) and runs whenever a dataset is loaded;
``check_masks`` rasterises segmentations (area consistency) and ``check_image_files`` opens
image headers; those two run in ``ltaug validate``.
"""
from __future__ import annotations

import math
import numbers
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from PIL import Image, UnidentifiedImageError

from . import geometry
from .paths import image_file_name, unsafe_file_name_reason

# Problem kinds, in the order the summary table lists them.
KINDS = {
    "malformed-json": "file is not valid JSON",
    "bad-structure": "top level is not a COCO/LVIS document",
    "missing-key": "record lacks a required key",
    "bad-value": "value of the wrong type or range",
    "duplicate-id": "id used by more than one record",
    "unknown-image": "annotation's image_id not among the images",
    "unknown-category": "category id not among the categories",
    "bad-bbox": "box with non-positive width/height or non-finite values",
    "bbox-outside-image": "box extends outside the image",
    "bad-polygon": "polygon part with < 3 points or an odd coordinate count",
    "bad-rle": "malformed RLE",
    "rle-size-mismatch": "RLE size differs from the image size",
    "area-mismatch": "area inconsistent with the mask",
    "unsafe-file-name": "file_name escapes the image root",
    "missing-image-file": "image file not found",
    "unreadable-image": "image file cannot be read as an image",
    "image-size-mismatch": "image file size differs from the json",
}

# A box may overshoot the image by this many pixels (float rounding in real COCO files).
BBOX_TOLERANCE_PX = 1.0
# ``area`` is consistent when within REL * reference + ABS of the rasterised mask area or of
# the polygon's shoelace area. COCO's own areas are shoelace areas, which differ from the
# raster area by up to ~50% for objects of a few pixels (measured on COCO-LT-mini train).
AREA_REL_TOLERANCE = 0.25
AREA_ABS_TOLERANCE_PX = 16.0


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str                 # names the record: "annotation id 17: ..."
    section: str | None = None   # "images" | "annotations" | "categories" | None (whole file)
    position: int | None = None  # row in that section's list

    @property
    def fatal(self) -> bool:
        """A problem that cannot be skipped record by record."""
        return self.section in (None, "categories")

    def line(self, file) -> str:
        return f"{file}: {self.message}"


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _label(section: str, rec, pos: int) -> str:
    singular = {"images": "image", "annotations": "annotation", "categories": "category"}[section]
    rid = rec.get("id") if isinstance(rec, dict) else None
    return f"{singular} id {rid}" if _is_int(rid) else f"{singular} #{pos} (no valid id)"


REQUIRED = {
    "images": ("id", "width", "height"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}


def check_structure(data) -> list[Problem]:
    """Top-level shape: an object with ``images``, ``annotations`` and ``categories`` lists."""
    if not isinstance(data, dict):
        return [Problem("bad-structure", f"top level is a JSON {type(data).__name__}, expected an object")]
    out = []
    for key in REQUIRED:
        if key not in data:
            out.append(Problem("bad-structure", f"missing top-level key '{key}'"))
        elif not isinstance(data[key], list):
            out.append(Problem("bad-structure", f"top-level '{key}' is a {type(data[key]).__name__}, expected a list"))
    return out


def check_document(data) -> list[Problem]:
    """All cheap checks of a parsed document; no pixels are touched."""
    problems = check_structure(data)
    if problems:
        return problems
    out: list[Problem] = []
    cat_ids = _check_records(data, "categories", out, _check_category)
    img_info = {}

    def remember_image(rec, label, pos, out_):
        _check_image(rec, label, pos, out_, cat_ids)
        w, h = rec.get("width"), rec.get("height")
        if _is_int(w) and _is_int(h) and w > 0 and h > 0:
            img_info[rec["id"]] = (rec["width"], rec["height"])

    image_ids = _check_records(data, "images", out, remember_image)

    def check_ann(rec, label, pos, out_):
        _check_annotation(rec, label, pos, out_, img_info, image_ids, cat_ids)

    _check_records(data, "annotations", out, check_ann)
    return out


def _check_records(data, section, out, check_one) -> set:
    seen: dict = {}
    for pos, rec in enumerate(data[section]):
        label = _label(section, rec, pos)
        if not isinstance(rec, dict):
            out.append(Problem("bad-value", f"{label}: is a JSON {type(rec).__name__}, expected an object", section, pos))
            continue
        missing = [k for k in REQUIRED[section] if k not in rec]
        if missing:
            out.append(Problem("missing-key", f"{label}: missing required key(s) {', '.join(missing)}", section, pos))
            continue
        rid = rec["id"]
        if not _is_int(rid):
            out.append(Problem("bad-value", f"{label}: id {rid!r} is not an integer", section, pos))
            continue
        if rid in seen:
            out.append(Problem("duplicate-id", f"{label}: id also used by {section} #{seen[rid]}", section, pos))
            continue
        seen[rid] = pos
        check_one(rec, label, pos, out)
    return set(seen)


def _check_category(rec, label, pos, out):
    if not isinstance(rec["name"], str) or not rec["name"]:
        out.append(Problem("bad-value", f"{label}: name must be a non-empty string", "categories", pos))
    freq = rec.get("frequency")
    if freq is not None and freq not in ("r", "c", "f"):
        out.append(Problem("bad-value", f"{label}: frequency {freq!r} is not one of r, c, f", "categories", pos))


def _check_image(rec, label, pos, out, cat_ids):
    w, h = rec["width"], rec["height"]
    if not (_is_int(w) and _is_int(h) and w > 0 and h > 0):
        out.append(Problem("bad-value", f"{label}: width/height must be positive integers, got {w!r} x {h!r}", "images", pos))
        return
    name = image_file_name(rec)
    if name is None:
        out.append(Problem("missing-key", f"{label}: missing required key file_name (or coco_url)", "images", pos))
        return
    reason = unsafe_file_name_reason(name)
    if reason:
        out.append(Problem("unsafe-file-name", f"{label}: file_name {name!r} {reason}", "images", pos))
    for key in ("neg_category_ids", "not_exhaustive_category_ids"):
        ids = rec.get(key)
        if ids is None:
            continue
        if not isinstance(ids, list) or not all(_is_int(i) for i in ids):
            out.append(Problem("bad-value", f"{label}: {key} must be a list of integers", "images", pos))
            continue
        unknown = [i for i in ids if i not in cat_ids]
        if unknown:
            out.append(Problem("unknown-category", f"{label}: {key} names unknown category id {unknown[0]}", "images", pos))


def _check_annotation(rec, label, pos, out, img_info, image_ids, cat_ids):
    sec = "annotations"
    image_id, cat_id = rec["image_id"], rec["category_id"]
    if image_id in image_ids and image_id not in img_info:
        return  # its image record is invalid and reported; the annotation goes with it
    if image_id not in img_info:
        out.append(Problem("unknown-image", f"{label}: image_id {image_id!r} is not among the images", sec, pos))
        return
    if cat_id not in cat_ids:
        out.append(Problem("unknown-category", f"{label}: category_id {cat_id!r} is not among the categories", sec, pos))
        return
    width, height = img_info[image_id]
    box = rec["bbox"]
    if not (isinstance(box, list) and len(box) == 4 and all(_is_num(v) for v in box)):
        out.append(Problem("bad-value", f"{label}: bbox must be 4 finite numbers [x, y, w, h], got {box!r}", sec, pos))
        return
    x, y, bw, bh = box
    if bw <= 0 or bh <= 0:
        out.append(Problem("bad-bbox", f"{label}: bbox {box} has non-positive width or height", sec, pos))
        return
    t = BBOX_TOLERANCE_PX
    if x < -t or y < -t or x + bw > width + t or y + bh > height + t:
        out.append(Problem("bbox-outside-image",
                           f"{label}: bbox {box} extends outside image id {image_id} ({width}x{height})", sec, pos))
        return
    crowd = rec.get("iscrowd", 0)
    if not _is_int(crowd) or crowd not in (0, 1):
        out.append(Problem("bad-value", f"{label}: iscrowd must be 0 or 1, got {crowd!r}", sec, pos))
        return
    area = rec.get("area")
    if area is not None and not (_is_num(area) and area >= 0):
        out.append(Problem("bad-value", f"{label}: area must be a non-negative number, got {area!r}", sec, pos))
        return
    seg = rec.get("segmentation")
    if seg is not None:
        msg = _segmentation_problem(seg, width, height)
        if msg:
            kind, text = msg
            out.append(Problem(kind, f"{label}: {text}", sec, pos))


def _segmentation_problem(seg, width, height) -> tuple[str, str] | None:
    if isinstance(seg, list):
        for k, part in enumerate(seg):
            if not isinstance(part, list) or not all(_is_num(v) for v in part):
                return "bad-polygon", f"polygon part {k} is not a list of finite numbers"
            if len(part) % 2:
                return "bad-polygon", f"polygon part {k} has an odd number of coordinates ({len(part)})"
            if len(part) < 6:
                return "bad-polygon", f"polygon part {k} has {len(part) // 2} point(s), needs at least 3"
        return None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(s) for s in size)):
            return "bad-rle", f"RLE size must be [height, width], got {size!r}"
        if size != [height, width]:
            return "rle-size-mismatch", f"RLE size {size} differs from the image's [height, width] [{height}, {width}]"
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts):
                return "bad-rle", "RLE counts must be non-negative integers"
            if sum(counts) != height * width:
                return "bad-rle", f"RLE counts sum to {sum(counts)}, expected height*width = {height * width}"
            return None
        if isinstance(counts, str):
            try:
                geometry.to_rle(seg, height, width)
                area = geometry.mask_area(seg, height, width)
            except Exception as exc:  # pycocotools raises bare exceptions on corrupt strings
                return "bad-rle", f"compressed RLE cannot be decoded ({exc})"
            if area > height * width:
                return "bad-rle", "compressed RLE decodes to more pixels than the image has"
            return None
        return "bad-rle", f"RLE counts must be a list or a string, got {type(counts).__name__}"
    return "bad-value", f"segmentation must be a polygon list or an RLE object, got {type(seg).__name__}"


def check_masks(data, *, skip=frozenset(), skip_images=frozenset(), progress: bool = False) -> Iterator[Problem]:
    """Area consistency of every non-crowd annotation with its segmentation (pycocotools raster).

    Crowd regions are not checked: in official COCO 2017 some crowd areas disagree with their
    own RLE by 25-45% (3 of 24 crowd regions in COCO-LT-mini train, 1 of its val), and
    COCO evaluation ignores crowd regions anyway. ``skip``: annotation positions that
    ``check_document`` already rejected (their fields cannot be trusted); ``skip_images``:
    image positions it rejected (their annotations are not checked).
    """
    from tqdm import tqdm

    sizes = {im["id"]: (im["height"], im["width"]) for pos, im in enumerate(data["images"])
             if pos not in skip_images}
    anns = data["annotations"]
    for pos, ann in enumerate(tqdm(anns, desc="masks", unit="ann", disable=not progress, leave=False)):
        if pos in skip or ann["image_id"] not in sizes:
            continue
        seg, area = ann.get("segmentation"), ann.get("area")
        if area is None or ann.get("iscrowd", 0) or geometry.segmentation_kind(seg) == geometry.NONE:
            continue
        h, w = sizes[ann["image_id"]]
        refs = [geometry.mask_area(seg, h, w)]
        if isinstance(seg, list):
            refs.append(geometry.polygons_area(seg))
        if not any(abs(area - r) <= AREA_REL_TOLERANCE * r + AREA_ABS_TOLERANCE_PX for r in refs):
            yield Problem("area-mismatch",
                          f"annotation id {ann['id']}: area {area:g} but the mask covers {refs[0]} pixels",
                          "annotations", pos)


def check_image_files(data, images_dir, *, skip=frozenset(), progress: bool = False) -> Iterator[Problem]:
    """Existence, readability (full decode) and size of every image file under ``images_dir``.

    ``skip``: image positions that ``check_document`` already rejected.
    """
    from tqdm import tqdm

    root = Path(images_dir)
    for pos, im in enumerate(tqdm(data["images"], desc="images", unit="img", disable=not progress, leave=False)):
        if pos in skip:
            continue
        name = image_file_name(im)
        label = f"image id {im['id']}"
        if unsafe_file_name_reason(name):
            continue  # reported by check_document, and never opened
        path = root / name
        if not path.is_file():
            yield Problem("missing-image-file", f"{label}: file {path} not found", "images", pos)
            continue
        try:
            with Image.open(path) as img:
                size = img.size
                img.load()  # full decode: catches truncated files, which a header read misses
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            yield Problem("unreadable-image", f"{label}: file {path} cannot be read as an image ({exc})", "images", pos)
            continue
        if size != (im["width"], im["height"]):
            yield Problem("image-size-mismatch",
                          f"{label}: file {path} is {size[0]}x{size[1]} but the json says {im['width']}x{im['height']}",
                          "images", pos)


def summarize(problems: Iterable[Problem]) -> Counter:
    return Counter(p.kind for p in problems)


def validate_document(data, *, images_dir=None, masks: bool = True, progress: bool = False) -> list[Problem]:
    """Every check: records, then (on the records that passed) mask areas and image files."""
    problems = check_document(data)
    if any(p.section is None for p in problems):
        return problems  # not a COCO document at all: nothing more can be checked
    bad = {"images": set(), "annotations": set(), "categories": set()}
    for p in problems:
        bad[p.section].add(p.position)
    if masks:
        problems += check_masks(data, skip=bad["annotations"], skip_images=bad["images"], progress=progress)
    if images_dir is not None:
        problems += check_image_files(data, images_dir, skip=bad["images"], progress=progress)
    return problems
