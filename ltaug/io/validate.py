"""Checks on COCO/LVIS documents and their image files.

Each check yields :class:`Problem` records naming the file, the section and the record
(image id / annotation id / category id) and what is wrong. ``check_document`` is cheap
(one pass over the records, no rasterisation) and runs whenever a dataset is loaded;
``check_masks`` rasterises segmentations (area consistency) and ``check_image_files`` opens
image headers; those two run in ``ltaug validate``.
"""
from __future__ import annotations

import itertools
import math
import numbers
from collections import Counter
from collections.abc import Iterable, Iterator
from operator import itemgetter

import numpy as np

from ltaug.io import geometry
from ltaug.io.imagecheck import check_image_files
from ltaug.io.index import AnnotationColumns, columns_from_lists
from ltaug.io.paths import image_file_name, unsafe_file_name_reason
from ltaug.io.policy import Problem, declare

# Problem kinds of a COCO/LVIS json (the policy table, :mod:`ltaug.io.policy`; image files:
# :mod:`ltaug.io.imagecheck`).
MALFORMED_JSON = declare("malformed-json", "json", "error", "file is not valid JSON", fatal=True)
BAD_STRUCTURE = declare("bad-structure", "json", "error", "top level is not a COCO/LVIS document", fatal=True)
BAD_CATEGORY = declare("bad-category", "json", "error", "category record invalid (missing or empty name, bad id, "
                       "id used twice, LVIS frequency not r/c/f)", fatal=True)
MISSING_KEY = declare("missing-key", "json", "error", "record lacks a required key")
BAD_VALUE = declare("bad-value", "json", "error", "value of the wrong type or range")
NON_INTEGER_ID = declare("non-integer-id", "json", "error", "image or annotation id is not an integer",
                         "new integer id (an image's annotations follow it); old -> new in the id map")
DUPLICATE_IMAGE_ID = declare("duplicate-image-id", "json", "error", "image id used by more than one image record "
                             "(pycocotools keeps the last one)")
DUPLICATE_ID = declare("duplicate-id", "json", "warning", "annotation id used by more than one annotation "
                       "(pycocotools loads both; its anns index keeps the last)",
                       "later ones renumbered after the largest id; old -> new in the id map")
UNKNOWN_IMAGE = declare("unknown-image", "json", "error", "annotation's image_id not among the images")
UNKNOWN_CATEGORY = declare("unknown-category", "json", "error", "category id not among the categories")
BAD_BBOX = declare("bad-bbox", "json", "warning", "box with zero or negative width or height (pycocotools "
                   "loads it; stats count it, the bank leaves out an object with no pixels)",
                   "box recomputed from the mask when there is one, else dropped")
BBOX_OUTSIDE = declare("bbox-outside-image", "json", "warning", "box extends more than 1 px outside the image",
                       "box clipped to the image (dropped if nothing is left)")
BAD_POLYGON = declare("bad-polygon", "json", "error", "polygon part with < 3 points or an odd coordinate count",
                      "bad parts removed; dropped if no part is left")
BAD_RLE = declare("bad-rle", "json", "error", "malformed RLE")
RLE_SIZE = declare("rle-size-mismatch", "json", "error", "RLE size differs from the image size")
CROWD_POLYGON = declare("crowd-polygon", "json", "warning", "crowd region given as polygons (COCO's are RLE; "
                        "pycocotools converts them)", "polygons turned into one RLE")
AREA_MISMATCH = declare("area-mismatch", "json", "warning", "area inconsistent with the mask (ltaug validate only)",
                        "area recomputed from the mask")
BBOX_MASK_MISMATCH = declare("bbox-mask-mismatch", "json", "warning", "box and mask disagree (IoU of the box with "
                             "the mask's box < 0.5; ltaug validate only)", "box recomputed from the mask")
UNSAFE_FILE_NAME = declare("unsafe-file-name", "json", "error", "file_name escapes the image root (absolute, '..')")
declare("image-without-annotations", "json", "fine", "an image with no objects: kept (a negative example)")
declare("unused-category", "json", "fine", "a category with no annotations: kept (stats shows it with 0)")
declare("file-name-subfolder", "json", "fine", "file_name with sub-folders below the image root: read there")

# A box may overshoot the image by this many pixels (float rounding in real COCO files).
BBOX_TOLERANCE_PX = 1.0
# ``area`` is consistent when within REL * reference + ABS of the rasterised mask area or of
# the polygon's shoelace area. COCO's own areas are shoelace areas, which differ from the
# raster area by up to ~50% for objects of a few pixels (measured on COCO-LT-mini train).
AREA_REL_TOLERANCE = 0.25
AREA_ABS_TOLERANCE_PX = 16.0
# A box and its mask's box disagree below this IoU (COCO's boxes are their polygons' extent: IoU 1).
BBOX_MASK_IOU = 0.5


def _is_int(v) -> bool:
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def _is_num(v) -> bool:
    if type(v) is float or type(v) is int:
        return math.isfinite(v)
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _finite_numbers(values: list) -> bool:
    """All items are finite numbers: one C-level ``math.fsum`` instead of a Python call per item.

    fsum raises TypeError on a non-number and returns inf/nan if any item is non-finite.
    Booleans pass as 0/1 (JSON ``true`` in a coordinate list is not worth a slower check).
    """
    try:
        return math.isfinite(math.fsum(values))
    except (TypeError, OverflowError):
        return False


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
    """All cheap checks of a parsed document; no pixels are touched.

    This runs on every load, so it is written for speed: a column-wise pass over the
    annotations (about 2 s per million on one core) and, only when that finds something, a
    per-record pass that names each offending record.
    """
    return check_document_columns(data)[0]


def check_document_columns(data) -> tuple[list[Problem], AnnotationColumns | None]:
    """:func:`check_document`, plus the annotation columns its fast pass built (None if it did not pass)."""
    problems = check_structure(data)
    if problems:
        return problems, None
    out: list[Problem] = []
    cat_ids = _check_records(data, "categories", out, _check_category)
    img_info: dict = {}

    def check_image(rec):
        problem = _check_image(rec, cat_ids)
        if problem is None or problem[0] not in ("bad-value", "missing-key"):
            img_info[rec["id"]] = (rec["width"], rec["height"])
        return problem

    image_ids = _check_records(data, "images", out, check_image)
    columns = _valid_annotation_columns(data["annotations"], img_info, cat_ids)
    if columns is None:
        _check_records(data, "annotations", out, lambda rec: _check_annotation(rec, img_info, image_ids, cat_ids))
    return out, columns


_NUMBER_TYPES = {int, float}
# What taking a column out of the records raises when a record is not as the fast pass expects
# (a missing key, a box that is not numbers, an int too large): the per-record pass names it.
_COLUMN_ERRORS = (KeyError, TypeError, ValueError, OverflowError)


def _valid_annotation_columns(anns: list, img_info: dict, cat_ids: set) -> AnnotationColumns | None:
    """Column-wise fast pass: the columns if no annotation has a problem ``_check_annotation`` finds, else None.

    It applies the same rules with C-level set/map/numpy operations over whole columns, so a
    clean file is checked in a fraction of the per-record time; the caller runs the
    per-record pass, which names each offending annotation, only when this returns None (it
    may return None for a file that has no problem, never columns for one that has).
    Each field is read out of the records once, as a list that both the checks and the
    columns use.
    """
    if set(map(type, anns)) - {dict}:
        return None
    try:
        return _checked_columns(anns, img_info, cat_ids)
    except _COLUMN_ERRORS:
        return None


def _checked_columns(anns: list, img_info: dict, cat_ids: set) -> AnnotationColumns | None:
    if not anns:
        return columns_from_lists([], [], [], [], [], [])
    ids = list(map(itemgetter("id"), anns))  # KeyError: a record without a required key
    image_ids = list(map(itemgetter("image_id"), anns))
    category_ids = list(map(itemgetter("category_id"), anns))
    boxes = list(map(itemgetter("bbox"), anns))
    if not (set(map(type, ids)) | set(map(type, image_ids)) | set(map(type, category_ids))) <= {int}:
        return None
    crowd = _column(anns, "iscrowd", 0)
    crowd_values = set(crowd)
    if set(map(type, crowd)) - {int} or crowd_values - {0, 1}:
        return None
    if set(map(type, boxes)) - {list} or set(map(len, boxes)) - {4}:
        return None
    sum(itertools.chain.from_iterable(boxes))  # TypeError unless numbers (booleans pass, as in _finite_numbers)
    areas = _column(anns, "area", math.nan)
    if set(map(type, areas)) - _NUMBER_TYPES:
        return None
    cols = columns_from_lists(ids, image_ids, category_ids, boxes, areas, crowd)  # OverflowError: an id over 64 bits
    sorted_ids = np.sort(cols.ids)
    if (sorted_ids[1:] == sorted_ids[:-1]).any():  # an annotation id used twice
        return None
    if not np.isin(cols.category_ids, np.fromiter(cat_ids, dtype=np.int64, count=len(cat_ids))).all():
        return None
    b, area = cols.boxes, cols.areas
    if not np.isfinite(b).all() or (area < 0).any() or np.isinf(area).any():
        return None
    image_ids_known = np.fromiter(img_info.keys(), dtype=np.int64, count=len(img_info))
    order = np.argsort(image_ids_known)
    known = image_ids_known[order]
    if not known.size:
        return None
    row = np.minimum(np.searchsorted(known, cols.image_ids), known.size - 1)
    if not (known[row] == cols.image_ids).all():  # an image_id not among the valid images
        return None
    sizes = np.array(list(img_info.values()), dtype=np.float64).reshape(-1, 2)[order]   # (width, height)
    size_of = sizes[row]
    t = BBOX_TOLERANCE_PX
    x, y, w, h = b.T
    if not ((w > 0) & (h > 0) & (x >= -t) & (y >= -t) & (x + w <= size_of[:, 0] + t)
            & (y + h <= size_of[:, 1] + t)).all():
        return None
    segs = _column(anns, "segmentation", None)
    seg_types = set(map(type, segs))
    polygons = segs if seg_types == {list} else [seg for seg in segs if type(seg) is list]
    if polygons and 1 in crowd_values and any(c and type(seg) is list for c, seg in zip(crowd, segs)):
        return None  # a crowd region as polygons: a warning, named by the per-record pass
    if not _valid_polygons(polygons):
        return None
    if seg_types - {list, type(None)}:
        for ann, seg in zip(anns, segs):
            if type(seg) is not list and seg is not None \
                    and _segmentation_problem(seg, *img_info[ann["image_id"]]) is not None:
                return None
    return cols


def _column(records: list, key: str, default) -> list:
    """``[r.get(key, default) for r in records]``, twice as fast when every record has ``key``."""
    try:
        return list(map(itemgetter(key), records))
    except KeyError:
        return [r.get(key, default) for r in records]


def _valid_polygons(segmentations: list) -> bool:
    """Every part of every polygon segmentation is a list of at least 6 coordinates, an even
    number of them, all finite numbers: ``_segmentation_problem``'s rule for polygons, over
    all parts at once. One sum over every coordinate checks their types (it raises TypeError
    on anything but a number; booleans pass, as in :func:`_finite_numbers`) and their
    finiteness (an inf or NaN makes it non-finite; so may an overflow of large finite
    numbers: then False, and the per-record pass finds nothing)."""
    parts = list(itertools.chain.from_iterable(segmentations))
    if set(map(type, parts)) - {list}:
        return False
    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    if (lengths % 2).any() or (lengths < 6).any():
        return False
    return math.isfinite(sum(itertools.chain.from_iterable(parts)))


def _check_records(data, section, out, check_one) -> set:
    """Per record: object, required keys, integer unique id, then ``check_one(rec) -> (kind, text) | None``."""
    seen: dict = {}
    required = set(REQUIRED[section])
    for pos, rec in enumerate(data[section]):
        if type(rec) is not dict:
            out.append(Problem(BAD_CATEGORY if section == "categories" else BAD_VALUE,
                               f"{_label(section, rec, pos)}: is a JSON {type(rec).__name__}, expected an object",
                               section, pos))
            continue
        if not rec.keys() >= required:
            missing = [k for k in REQUIRED[section] if k not in rec]
            out.append(Problem(BAD_CATEGORY if section == "categories" else MISSING_KEY,
                               f"{_label(section, rec, pos)}: missing required key(s) {', '.join(missing)}",
                               section, pos))
            continue
        rid = rec["id"]
        if not _is_int(rid):
            kind = BAD_CATEGORY if section == "categories" else NON_INTEGER_ID
            out.append(Problem(kind, f"{_label(section, rec, pos)}: id {rid!r} is not an integer", section, pos))
            continue
        if rid in seen:
            kind = {"images": DUPLICATE_IMAGE_ID, "annotations": DUPLICATE_ID}.get(section, BAD_CATEGORY)
            out.append(Problem(kind, f"{_label(section, rec, pos)}: id also used by {section} #{seen[rid]}",
                               section, pos))
            if section != "annotations":  # a repeated annotation id is a warning: its record is still checked
                continue
        else:
            seen[rid] = pos
        problem = check_one(rec)
        if problem is not None:
            kind = BAD_CATEGORY if section == "categories" else problem[0]
            out.append(Problem(kind, f"{_label(section, rec, pos)}: {problem[1]}", section, pos))
    return set(seen)


def _check_category(rec):
    if not isinstance(rec["name"], str) or not rec["name"]:
        return "bad-value", "name must be a non-empty string"
    freq = rec.get("frequency")
    if freq is not None and freq not in ("r", "c", "f"):
        return "bad-value", f"frequency {freq!r} is not one of r, c, f"
    return None


def _check_image(rec, cat_ids):
    w, h = rec["width"], rec["height"]
    if not (_is_int(w) and _is_int(h) and w > 0 and h > 0):
        return "bad-value", f"width/height must be positive integers, got {w!r} x {h!r}"
    name = image_file_name(rec)
    if name is None:
        return "missing-key", "missing required key file_name (or coco_url)"
    reason = unsafe_file_name_reason(name)
    if reason:
        return "unsafe-file-name", f"file_name {name!r} {reason}"
    for key in ("neg_category_ids", "not_exhaustive_category_ids"):
        ids = rec.get(key)
        if ids is None:
            continue
        if type(ids) is not list or not set(map(type, ids)) <= {int}:
            return "bad-value", f"{key} must be a list of integers"
        if not cat_ids.issuperset(ids):
            unknown = next(i for i in ids if i not in cat_ids)
            return "unknown-category", f"{key} names unknown category id {unknown}"
    return None


def _check_annotation(rec, img_info, image_ids, cat_ids):
    image_id, cat_id = rec["image_id"], rec["category_id"]
    try:
        size = img_info.get(image_id)
        known_category = cat_id in cat_ids
    except TypeError:  # an unhashable id (a list, an object) matches nothing
        size, known_category = None, False
    if size is None:
        if type(image_id) is int and image_id in image_ids:
            return None  # its image record is invalid and reported; the annotation goes with it
        return "unknown-image", f"image_id {image_id!r} is not among the images"
    if not known_category:
        return "unknown-category", f"category_id {cat_id!r} is not among the categories"
    width, height = size
    box = rec["bbox"]
    if type(box) is not list or len(box) != 4 or not _finite_numbers(box):
        return "bad-value", f"bbox must be 4 finite numbers [x, y, w, h], got {box!r}"
    x, y, bw, bh = box
    if bw <= 0 or bh <= 0:
        return BAD_BBOX, f"bbox {box} has non-positive width or height"
    t = BBOX_TOLERANCE_PX
    warning = None  # returned only when no error is found: a warned record is processed, so all of it is checked
    if x < -t or y < -t or x + bw > width + t or y + bh > height + t:
        warning = BBOX_OUTSIDE, f"bbox {box} extends outside image id {image_id} ({width}x{height})"
    crowd = rec.get("iscrowd", 0)
    if not (_is_int(crowd) and crowd in (0, 1)):
        return "bad-value", f"iscrowd must be 0 or 1, got {crowd!r}"
    area = rec.get("area")
    if area is not None and not (_is_num(area) and area >= 0):
        return "bad-value", f"area must be a non-negative number, got {area!r}"
    seg = rec.get("segmentation")
    if seg is not None:
        problem = _segmentation_problem(seg, width, height)
        if problem is not None:
            return problem
        if crowd and type(seg) is list:
            return CROWD_POLYGON, "crowd region given as polygons (COCO's crowd regions are RLE)"
    return warning


def _segmentation_problem(seg, width, height) -> tuple[str, str] | None:
    if type(seg) is list:
        for k, part in enumerate(seg):
            if type(part) is not list or not _finite_numbers(part):
                return "bad-polygon", f"polygon part {k} is not a list of finite numbers"
            n = len(part)
            if n % 2:
                return "bad-polygon", f"polygon part {k} has an odd number of coordinates ({n})"
            if n < 6:
                return "bad-polygon", f"polygon part {k} has {n // 2} point(s), needs at least 3"
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
                area = geometry.mask_area(seg, height, width)
            except Exception as exc:  # pycocotools raises bare exceptions on corrupt strings
                return "bad-rle", f"compressed RLE cannot be decoded ({exc})"
            if area > height * width:
                return "bad-rle", "compressed RLE decodes to more pixels than the image has"
            return None
        return "bad-rle", f"RLE counts must be a list or a string, got {type(counts).__name__}"
    return "bad-value", f"segmentation must be a polygon list or an RLE object, got {type(seg).__name__}"


def check_masks(data, *, skip=frozenset(), skip_images=frozenset(), progress: bool = False) -> Iterator[Problem]:
    """Area and box consistency of every non-crowd annotation with its segmentation (pycocotools
    raster; a box whose IoU with the mask's box is under :data:`BBOX_MASK_IOU`).

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
        refs: list[float] = [geometry.mask_area(seg, h, w)]
        if isinstance(seg, list):
            refs.append(geometry.polygons_area(seg))
        if not any(abs(area - r) <= AREA_REL_TOLERANCE * r + AREA_ABS_TOLERANCE_PX for r in refs):
            yield Problem(AREA_MISMATCH,
                          f"annotation id {ann['id']}: area {area:g} but the mask covers {refs[0]} pixels",
                          "annotations", pos)
        box = geometry.segmentation_bbox(seg, h, w)
        if box is not None and geometry.box_iou(ann["bbox"], box) < BBOX_MASK_IOU:
            yield Problem(BBOX_MASK_MISMATCH, f"annotation id {ann['id']}: bbox {ann['bbox']} but the mask's box is "
                                              f"[{', '.join(f'{b:g}' for b in box)}]", "annotations", pos)


def summarize(problems: Iterable[Problem]) -> Counter:
    return Counter(p.kind for p in problems)


def validate_document(data, *, images_dir=None, masks: bool = True, progress: bool = False) -> list[Problem]:
    """Every check: records, then (on the records that passed) mask areas and image files."""
    problems = check_document(data)
    if any(p.section is None for p in problems):
        return problems  # not a COCO document at all: nothing more can be checked
    bad: dict[str | None, set[int | None]] = {"images": set(), "annotations": set(), "categories": set()}
    for p in problems:
        bad[p.section].add(p.position)
    if masks:
        problems += check_masks(data, skip=bad["annotations"], skip_images=bad["images"], progress=progress)
    if images_dir is not None:
        problems += check_image_files(data, images_dir, skip=bad["images"], progress=progress)
    return problems
