"""Read the Open Images detection format (v4-v7) as an LVIS document.

Files (names as Open Images publishes them; each one optional except the first three)
------------------------------------------------------------------------------------
* **boxes** (``oidv6-train-annotations-bbox.csv``): ``ImageID,Source,LabelName,Confidence,
  XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside``, coordinates
  normalised to the image (only ImageID, LabelName and the four coordinates are required; the
  ``Is*`` flags are 1, 0 or -1 for unknown).
* **classes** (``oidv6-class-descriptions-boxable.csv``): ``LabelName,DisplayName`` per line,
  no header in v6 (v7's header line is skipped). They are the categories, ids 1..K in file
  order, ``name`` the DisplayName, ``label_name`` the MID (``/m/0k4j``).
* **images**: a folder of ``<ImageID>.jpg`` (``.jpeg``, ``.png``). The images read are the files
  there; rows of the CSVs for other ImageIDs are skipped and counted (the published CSVs cover
  1.7 M images, a user's sample a few). Sizes come from the image header, upright (EXIF applied,
  as the trainers read the pixels). Image ids are 1..N in ImageID order; ``openimages_id`` keeps
  the ImageID.
* **hierarchy** (``bbox_labels_600_hierarchy.json``): ``{"LabelName": root, "Subcategory":
  [{"LabelName": ..., "Subcategory": [...]}, ...]}``. The root (``/m/0bl9f``, "Entity") is a
  virtual node and is skipped, as the challenge's ``oid_hierarchical_labels_expansion.py``
  does; a label may sit under several parents. ``Part`` lists (a face's eyes) are not is-a
  relations and are not followed. Each category records its direct parents as ``parent_ids``.
* **labels** (``oidv6-train-annotations-human-imagelabels.csv``, ``...-machine-imagelabels.csv``):
  ``ImageID,Source,LabelName,Confidence``. Labels of classes outside the class descriptions (the
  image-level files name 20 k classes, 600 of them boxable) are skipped and counted.
* **masks** (``train-annotations-object-segmentation.csv`` + the PNG folder): ``MaskPath,ImageID,
  LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,...``; a mask belongs to the box of its image
  with its label and the same four coordinates (within :data:`MASK_BOX_TOLERANCE`). The PNG
  (non-zero = object) is resized to the image with nearest-neighbour sampling and stored as
  compressed RLE; ``area`` is then the mask's pixel count. Boxes without a mask have no
  ``segmentation`` and ``area = w * h`` (box-only annotations, as YOLO box lines read here).

Hierarchy expansion, as the Open Images challenge does it
---------------------------------------------------------
* a box of class c is also a box of every ancestor of c (``expand_boxes_from_csv``);
* a positive image-level label is expanded to the ancestors, a negative one to the descendants
  (``expand_labels_from_csv``).

Multi-label objects
-------------------
Open Images lists one object under several labels as several rows with the same box (a toy car is
Toy and Car). **An object** here is one box of an image: the rows of one ImageID with the same
four coordinates. It becomes **one annotation per label** (its written labels first, in row
order, then the ancestors the hierarchy adds, by category id; a label at most once per object),
all sharing the same ``bbox`` and the annotation field ``object_id`` (1..O over the file), so
that :mod:`ltaug.stats.concurrence` can count which labels share an object. Each annotation also
carries ``openimages``: ``{"label": the MID, "from": "box" | "hierarchy", "source": the row's
Source, "is_occluded", "is_truncated", "is_group_of", "is_depiction", "is_inside"}`` (the flags
of the row it comes from). pycocotools and lvis-api ignore both fields; COCO/LVIS evaluation
then asks a detector for every label of the object, as the challenge's expanded ground truth does.
In ``ltaug train`` each RoI gets one label: torchvision's matcher takes the first of equal boxes,
so a RoI on the object learns its first written label, and concurrent softmax with the rates of
:mod:`ltaug.stats.concurrence` (``--concurrence``) keeps it from pushing the object's other labels down.

Image-level labels as LVIS lists (what LVIS evaluation does with them)
-----------------------------------------------------------------------
* ``neg_category_ids``: classes verified absent, a human-verified label (any Source but
  ``machine``) with Confidence 0, expanded to its descendants. A verified negative of a class
  that has a box in the image is dropped (the box wins) and counted.
* ``not_exhaustive_category_ids``: classes present but not exhaustively boxed: unverified labels
  (Source ``machine``, whatever their confidence: a model's guess that the class is there)
  and verified positives (Confidence 1) of a class with no box in the image, both expanded to
  the ancestors; and the class (and ancestors) of a group-of box (``IsGroupOf`` 1: one box over
  several instances, not each one boxed). A class verified absent is never in this list; a class
  with boxes is in it only through a group-of box.

Open Images' group-of boxes are kept as ordinary annotations (``iscrowd`` 0: LVIS has no crowd
regions, and Open Images trainers learn group-of boxes as boxes).

Bad input raises :class:`~ltaug.errors.InputError` in one line naming the file and line (a
missing column, a coordinate that is not a number in [0, 1] or an empty box, a label that is not
a category, a mask with no box, an unreadable image or mask).
"""
from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from ltaug.errors import InputError
from ltaug.io.dataset import Dataset
from ltaug.io.geometry import rle_to_json
from ltaug.io.imagecheck import upright_size

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
LABEL_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence")
MASK_COLUMNS = ("MaskPath", "ImageID", "LabelName", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax")
FLAGS = {"IsOccluded": "is_occluded", "IsTruncated": "is_truncated", "IsGroupOf": "is_group_of",
         "IsDepiction": "is_depiction", "IsInside": "is_inside"}
UNVERIFIED_SOURCES = frozenset({"machine"})
PathLike = str | os.PathLike
MASK_BOX_TOLERANCE = 1e-4
"""How far (normalised units) a mask's box coordinates may differ from its box's."""


@dataclass
class OpenImagesRead:
    """What :func:`read_openimages` made: the dataset and counts of what it skipped or changed."""

    dataset: Dataset
    counts: Counter = field(default_factory=Counter)


# -- small readers ---------------------------------------------------------------------------


def read_classes(path: PathLike) -> dict[str, str]:
    """MID -> DisplayName, in file order (a ``LabelName,DisplayName`` header line is skipped)."""
    out: dict[str, str] = {}
    for line, row in _csv_lines(path):
        if line == 1 and row == ["LabelName", "DisplayName"]:
            continue
        if len(row) != 2 or not row[0] or not row[1]:
            raise InputError(f"{path}:{line}: expected LabelName,DisplayName, got {','.join(row)!r}")
        if row[0] in out:
            raise InputError(f"{path}:{line}: class {row[0]} listed twice")
        out[row[0]] = row[1]
    if not out:
        raise InputError(f"{path}: no classes")
    return out


def read_hierarchy(path: PathLike) -> tuple[str, dict[str, list[str]]]:
    """(root MID, MID -> its direct parents below the root), from the hierarchy json."""
    try:
        tree = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable json file ({exc})") from None
    parents: dict[str, list[str]] = {}

    def walk(node, parent: str | None, trail: tuple[str, ...]) -> None:
        if not isinstance(node, dict) or not isinstance(node.get("LabelName"), str):
            raise InputError(f"{path}: a node under {trail[-1] if trail else 'the top'} has no LabelName")
        label = node["LabelName"]
        if label in trail:
            raise InputError(f"{path}: {label} is its own ancestor ({' > '.join((*trail, label))})")
        if parent is not None:
            seen = parents.setdefault(label, [])
            if parent not in seen:
                seen.append(parent)
        children = node.get("Subcategory", [])
        if not isinstance(children, list):
            raise InputError(f"{path}: Subcategory of {label} is not a list")
        for child in children:
            walk(child, label, (*trail, label))

    walk(tree, None, ())
    root = tree["LabelName"]
    return root, parents


def closure(parents: dict[str, list[str]]) -> dict[str, frozenset[str]]:
    """MID -> all its ancestors (transitive), from direct parents."""
    out: dict[str, frozenset[str]] = {}

    def up(label: str) -> frozenset[str]:
        if label not in out:
            found: set[str] = set()
            for p in parents.get(label, ()):
                found.add(p)
                found |= up(p)
            out[label] = frozenset(found)
        return out[label]

    for label in parents:
        up(label)
    return out


def _csv_lines(path: PathLike) -> Iterator[tuple[int, list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for line, row in enumerate(csv.reader(f), 1):
                if row:
                    yield line, row
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a CSV file ({exc})") from None


def _csv_records(path: PathLike, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: value}) for each row after the header; a missing column is an error."""
    lines = _csv_lines(path)
    first = next(lines, None)
    if first is None:
        raise InputError(f"{path}: empty file (no header line)")
    header = first[1]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}:1: no column {', '.join(missing)} in the header ({','.join(header)})")
    for line, row in lines:
        if len(row) != len(header):
            raise InputError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        yield line, dict(zip(header, row))


def _number(path, line: int, rec: dict, column: str, lo: float = 0.0, hi: float = 1.0) -> float:
    try:
        value = float(rec[column])
    except ValueError:
        raise InputError(f"{path}:{line}: {column} {rec[column]!r} is not a number") from None
    if not lo <= value <= hi:
        raise InputError(f"{path}:{line}: {column} {value} is outside [{lo:g}, {hi:g}]")
    return value


def _box(path, line: int, rec: dict, prefix: str = "") -> tuple[float, float, float, float]:
    x0, x1, y0, y1 = (_number(path, line, rec, prefix + c) for c in ("XMin", "XMax", "YMin", "YMax"))
    if not (x0 < x1 and y0 < y1):
        raise InputError(f"{path}:{line}: empty box (XMin {x0}, XMax {x1}, YMin {y0}, YMax {y1})")
    return x0, x1, y0, y1


def _flag(path, line: int, rec: dict, column: str) -> int | None:
    value = rec.get(column)
    if value is None or value == "":
        return None
    if value not in ("0", "1", "-1"):
        raise InputError(f"{path}:{line}: {column} {value!r} is not 1, 0 or -1")
    return int(value)


def find_images(folder: PathLike) -> dict[str, Path]:
    """ImageID -> file, for the images of the folder (``<ImageID>.jpg`` and the like)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: image folder not found")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            if p.stem in out:
                raise InputError(f"{p}: a second image for ImageID {p.stem} (also {out[p.stem].name})")
            out[p.stem] = p
    if not out:
        raise InputError(f"{folder}: no images (<ImageID>.jpg)")
    return out


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, upright."""
    try:
        with Image.open(path) as img:
            return upright_size(img)
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"{path}: unreadable image ({exc})") from None


# -- the reader ----------------------------------------------------------------------------------


@dataclass
class _Object:
    image: str
    box: tuple[float, float, float, float]
    rows: list[tuple[str, dict]]  # (MID, openimages record) per written label, in row order
    mask: dict | None = None


def read_openimages(boxes: PathLike, classes: PathLike, images: PathLike, *,
                    hierarchy: PathLike | None = None, labels: Sequence[PathLike] = (),
                    masks: PathLike | None = None, mask_dir: PathLike | None = None) -> OpenImagesRead:
    """The Open Images files as an LVIS :class:`~ltaug.io.dataset.Dataset` (see the module's
    docstring for every rule); ``mask_dir``: the PNG folder of ``masks`` (default: beside it)."""
    names = read_classes(classes)
    root, parents = ("", {}) if hierarchy is None else read_hierarchy(hierarchy)
    names.pop(root, None)  # the virtual root (Entity) is no category
    for label in parents:
        if label not in names:
            raise InputError(f"{hierarchy}: {label} is not among the classes of {classes}")
    parents = {c: [p for p in ps if p != root] for c, ps in parents.items()}
    ancestors = closure(parents)
    descendants: dict[str, set[str]] = {}
    for child, anc in ancestors.items():
        for a in anc:
            descendants.setdefault(a, set()).add(child)
    cat_id = {mid: i for i, mid in enumerate(names, 1)}
    files = find_images(images)
    counts: Counter = Counter()
    objects = _read_boxes(boxes, files, cat_id, counts)
    if masks is not None:
        _attach_masks(masks, Path(mask_dir) if mask_dir is not None else Path(masks).parent, objects, files, counts)
    image_ids = {image: i for i, image in enumerate(sorted(files), 1)}
    sizes = {image: image_size(files[image]) for image in image_ids}
    annotations, present, group_of = _annotations(objects, image_ids, sizes, cat_id, ancestors, counts)
    neg, unsure = _image_labels(labels, files, cat_id, ancestors, descendants, counts)
    image_records = []
    for image, i in image_ids.items():
        width, height = sizes[image]
        boxed = present.get(image, set())
        dropped = neg.get(image, set()) & boxed
        counts["negative label of a boxed class (dropped)"] += len(dropped)
        negatives = neg.get(image, set()) - boxed
        not_exhaustive = (unsure.get(image, set()) - boxed - negatives) | group_of.get(image, set())
        image_records.append({"id": i, "file_name": files[image].name, "width": width, "height": height,
                              "openimages_id": image, "neg_category_ids": sorted(negatives),
                              "not_exhaustive_category_ids": sorted(not_exhaustive)})
    categories = [{"id": cat_id[mid], "name": name, "label_name": mid,
                   "parent_ids": sorted(cat_id[p] for p in parents.get(mid, ()))} for mid, name in names.items()]
    doc = {"info": {"description": f"Open Images boxes {Path(boxes).name}, read by ltaug"},
           "images": image_records, "annotations": annotations, "categories": categories}
    return OpenImagesRead(Dataset.from_dict(doc, source=str(boxes)), counts)


def _read_boxes(path, files: dict[str, Path], cat_id: dict[str, int], counts: Counter) -> dict[tuple, _Object]:
    """(ImageID, box) -> the object, in row order, for the images in ``files``."""
    objects: dict[tuple, _Object] = {}
    for line, rec in _csv_records(path, BOX_COLUMNS):
        image = rec["ImageID"]
        if image not in files:
            counts["box rows of images not in the folder"] += 1
            continue
        label = rec["LabelName"]
        if label not in cat_id:
            raise InputError(f"{path}:{line}: LabelName {label} is not among the classes")
        box = _box(path, line, rec)
        info: dict[str, str | int | None] = {"label": label, "from": "box", "source": rec.get("Source", "")}
        info.update({key: _flag(path, line, rec, column) for column, key in FLAGS.items()})
        obj = objects.setdefault((image, box), _Object(image, box, []))
        if any(mid == label for mid, _ in obj.rows):
            counts["box rows repeating a label of their object"] += 1
            continue
        obj.rows.append((label, info))
    return objects


def _attach_masks(path, mask_dir: Path, objects: dict[tuple, _Object], files: dict[str, Path],
                  counts: Counter) -> None:
    by_image: dict[str, list[_Object]] = {}
    for obj in objects.values():
        by_image.setdefault(obj.image, []).append(obj)
    for line, rec in _csv_records(path, MASK_COLUMNS):
        image = rec["ImageID"]
        if image not in files:
            counts["mask rows of images not in the folder"] += 1
            continue
        box = np.asarray(_box(path, line, rec, "Box"))
        match = next((o for o in by_image.get(image, ()) if any(m == rec["LabelName"] for m, _ in o.rows)
                      and np.abs(np.asarray(o.box) - box).max() <= MASK_BOX_TOLERANCE), None)
        if match is None:
            raise InputError(f"{path}:{line}: no box of image {image} with label {rec['LabelName']} and this box "
                             f"in the boxes file")
        if match.mask is not None:
            counts["second masks of an object (first kept)"] += 1
            continue
        match.mask = {"file": mask_dir / rec["MaskPath"], "where": f"{path}:{line}"}


def _mask_rle(mask: dict, width: int, height: int) -> dict:
    pixels = cv2.imread(str(mask["file"]), cv2.IMREAD_GRAYSCALE)
    if pixels is None:
        raise InputError(f"{mask['where']}: mask {mask['file']} is missing or not an image")
    if pixels.shape != (height, width):
        pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_NEAREST)
    return mask_utils.encode(np.asfortranarray((pixels > 0).astype(np.uint8)))


def _annotations(objects: dict[tuple, _Object], image_ids: dict[str, int], sizes: dict[str, tuple[int, int]],
                 cat_id: dict[str, int], ancestors: dict[str, frozenset[str]], counts: Counter):
    """(annotations, image -> category ids boxed, image -> category ids of group-of boxes)."""
    annotations: list[dict] = []
    present: dict[str, set[int]] = {}
    group_of: dict[str, set[int]] = {}
    ordered = sorted(objects.values(), key=lambda o: image_ids[o.image])  # stable: row order within an image
    for object_id, obj in enumerate(ordered, 1):
        width, height = sizes[obj.image]
        x0, x1, y0, y1 = obj.box
        bbox = [x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height]
        extra: dict = {"area": bbox[2] * bbox[3]}
        if obj.mask is not None:
            rle = _mask_rle(obj.mask, width, height)
            extra = {"area": float(mask_utils.area(rle)), "segmentation": rle_to_json(rle)}
        labels = list(obj.rows)
        written = {mid for mid, _ in labels}
        added = sorted({a for mid, _ in obj.rows for a in ancestors.get(mid, ())} - written, key=cat_id.__getitem__)
        for a in added:
            info = next(info for mid, info in obj.rows if a in ancestors.get(mid, ()))
            labels.append((a, {**info, "label": a, "from": "hierarchy"}))
        counts["annotations added by the hierarchy"] += len(added)
        for mid, info in labels:
            annotations.append({"id": len(annotations) + 1, "image_id": image_ids[obj.image],
                                "category_id": cat_id[mid], "bbox": bbox, "iscrowd": 0, **extra,
                                "object_id": object_id, "openimages": info})
            present.setdefault(obj.image, set()).add(cat_id[mid])
            if info.get("is_group_of") == 1:
                group_of.setdefault(obj.image, set()).add(cat_id[mid])
    return annotations, present, group_of


def _image_labels(paths: Sequence[PathLike], files: dict[str, Path], cat_id: dict[str, int],
                  ancestors: dict[str, frozenset[str]], descendants: dict[str, set[str]], counts: Counter):
    """(image -> category ids verified absent, image -> category ids present but maybe not all
    boxed), each expanded over the hierarchy."""
    neg: dict[str, set[int]] = {}
    unsure: dict[str, set[int]] = {}
    for path in paths:
        for line, rec in _csv_records(path, LABEL_COLUMNS):
            image, label = rec["ImageID"], rec["LabelName"]
            if image not in files:
                counts["image-level labels of images not in the folder"] += 1
                continue
            if label not in cat_id:
                counts["image-level labels of classes not among the categories"] += 1
                continue
            confidence = _number(path, line, rec, "Confidence")
            verified = rec["Source"] not in UNVERIFIED_SOURCES
            if verified and confidence == 0:
                expanded = {label, *descendants.get(label, ())}
                neg.setdefault(image, set()).update(cat_id[m] for m in expanded)
            elif not verified or confidence == 1:
                expanded = {label, *ancestors.get(label, ())}
                unsure.setdefault(image, set()).update(cat_id[m] for m in expanded)
            else:
                raise InputError(f"{path}:{line}: a human-verified label (Source {rec['Source']}) with Confidence "
                                 f"{confidence}: verified labels have 0 or 1")
    return neg, unsure
