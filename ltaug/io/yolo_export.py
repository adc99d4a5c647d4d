"""Write COCO documents as YOLO-seg (ultralytics) folders (:func:`write_yolo`); reading is
:mod:`ltaug.io.yolo`.

Writing: class ids are 0..K-1 (ultralytics refuses others: "80-class dataset requires class
indices 0-79"), in the order of the input's class ids (each category's ``yolo_id`` when all are
distinct, else its COCO id); when that changes any id, data.yaml's ``ltaug_id_map`` (a key
ultralytics ignores) maps input id -> written id. ``keep_ids=True`` writes the input's ids as
they are; ids with gaps get placeholder names (``unused_<id>``, listed in
``ltaug_placeholder_ids``, which :func:`ltaug.io.yolo.read_yolo` leaves out) so that ultralytics still accepts
the data.yaml. Multi-part polygons are joined with :func:`geometry.merge_polygon_parts`.
Non-crowd RLE masks are traced with :func:`geometry.mask_to_polygons`. Crowd regions are
skipped (YOLO has no crowd) and counted in the summary.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import yaml

from ltaug.errors import InputError, SpecError, UsageError
from ltaug.io import geometry
from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import atomic_path, remove_stale_temporaries_under, write_bytes_atomic
from ltaug.io.lock import output_lock
from ltaug.io.paths import image_file_name, refuse_overwriting_inputs, unsafe_file_name_reason
from ltaug.io.yolo import DECIMALS, LINKS, PLACEHOLDER

_log = logging.getLogger(__name__)


def write_yolo(dataset: Dataset, out_dir, *, images_dir=None, link: str = "copy", keep_ids: bool = False,
               val: Dataset | None = None, val_images=None) -> dict:
    """Write ``dataset`` as a YOLO-seg folder; return a summary of what was written.

    Writes ``out_dir/data.yaml``, one ``out_dir/labels/<stem>.txt`` per image (empty for an
    image with no objects) and, when ``images_dir`` is given, the images into
    ``out_dir/images/``. ``link`` is one of ``copy``, ``hardlink`` (falls back to a copy
    where the filesystem refuses the link), ``symlink`` (absolute targets) or ``none``.
    Every file is written atomically; the next export into ``out_dir`` removes the temporary
    files a killed one left, and a second export into it while one runs is refused. Two images
    whose label files would coincide raise :class:`InputError`; an image that repeats an earlier
    one's file (a resampled file) is written as ``STEM_repK``: its label file, and its image as a
    link to the first copy (a hard link, or a symlink with ``link="symlink"``; ``images_dir`` needed).

    Class ids are 0..K-1 in the order of the input's class ids, or with ``keep_ids`` the input's
    own (gaps filled with placeholder names; see the module docstring). The summary's ``id_map``
    maps each input class id to the id written, ``ids_changed`` counts those that differ, and
    ``placeholders`` lists the ids that ``keep_ids`` filled gaps with.

    ``val`` (a dataset with the same categories, its images under ``val_images``): written
    beside as the validation split, ``images/train`` + ``labels/train`` and ``images/val`` +
    ``labels/val``, with ``data.yaml`` naming both (its summary is the returned ``val``).
    Without it the one dataset goes to ``images/`` and ``labels/``, and ``val`` repeats ``train``.
    """
    if link not in LINKS:
        raise UsageError(f"link must be one of {', '.join(LINKS)}, got {link!r}")
    out_dir = Path(out_dir)
    refuse_overwriting_inputs(out_dir, [dataset.path])
    yolo_ids, placeholders = yolo_class_ids(dataset.categories, keep_ids=keep_ids)
    inputs = input_class_ids(dataset.categories)
    id_map = {inputs[c]: yolo_ids[c] for c in sorted(yolo_ids, key=yolo_ids.__getitem__)}
    splits = {"": (dataset, images_dir)} if val is None else {"train": (dataset, images_dir), "val": (val, val_images)}
    if val is not None:
        refuse_overwriting_inputs(out_dir, [val.path])
        _same_categories(dataset, val)
    stems = {}
    for split, (ds, images) in splits.items():
        stems[split] = _label_stems(ds.images)
        repeated = sum(s.rsplit("_rep", 1)[-1].isdigit() and "_rep" in s for s in stems[split])
        if repeated and (images is None or link == "none"):
            raise UsageError(f"{repeated} image(s) repeat an earlier one's file (a resampled file): YOLO names each "
                             f"repeat's image after its label file, so pass --images DIR to write them (as links)")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):  # one writer per folder; what a killed export left half-written goes
        if out_dir.is_dir():
            remove_stale_temporaries_under(out_dir)
        summaries = {split: _write_yolo_locked(ds, out_dir / "images" / split, out_dir / "labels" / split, images,
                                               link, yolo_ids, stems[split])
                     for split, (ds, images) in splits.items()}
        folders = {"train": "images", "val": "images"} if val is None else {s: f"images/{s}" for s in splits}
        write_bytes_atomic(out_dir / "data.yaml", data_yaml(dataset.categories, yolo_ids, out_dir, id_map=id_map,
                                                            placeholders=placeholders, folders=folders).encode())
    summary = summaries["" if val is None else "train"]
    return {**summary, "out_dir": str(out_dir), "id_map": id_map, "ids_changed": sum(k != v for k, v in id_map.items()),
            "placeholders": placeholders, **({"val": summaries["val"]} if val is not None else {})}


def _same_categories(train: Dataset, val: Dataset) -> None:
    """A train and a val split share one class list: the same ids with the same names."""
    a = {c["id"]: c["name"] for c in train.categories}
    b = {c["id"]: c["name"] for c in val.categories}
    if a != b:
        diff = next(i for i in sorted(a.keys() | b.keys()) if a.get(i) != b.get(i))
        raise InputError(f"the train and val files name their classes differently (category id {diff}: "
                         f"{a.get(diff)!r} vs {b.get(diff)!r}); one data.yaml needs one class list")


def _write_yolo_locked(dataset: Dataset, images_out: Path, labels_out: Path, images_dir, link: str,
                       yolo_ids: dict, stems: list[str]) -> dict:
    """One split's label files (and images) into ``labels_out`` (and ``images_out``); its summary."""
    by_image: defaultdict[int, list[dict]] = defaultdict(list)
    for ann in dataset.annotations:
        by_image[ann["image_id"]].append(ann)

    summary: Counter[str] = Counter()
    for image, stem in zip(dataset.images, stems):
        lines = []
        for ann in by_image.get(image["id"], ()):
            if ann.get("iscrowd", 0):
                summary["skipped_crowd"] += 1
                continue
            polygon, how = annotation_polygon(ann, image["width"], image["height"])
            summary[how] += 1
            lines.append(format_label_line(yolo_ids[ann["category_id"]], polygon, image["width"], image["height"]))
        write_bytes_atomic(labels_out / f"{stem}.txt", "".join(f"{ln}\n" for ln in lines).encode(), sweep=False)
        summary["objects"] += len(lines)
        summary["empty_labels"] += not lines

    if images_dir is not None and link != "none":
        first: dict[str, Path] = {}  # file name -> where its first copy was placed
        for image, stem in zip(dataset.images, stems):
            name = image_file_name(image)
            assert name is not None  # _label_stems refused images without one
            src = Path(images_dir) / name
            if not src.is_file():
                raise InputError(f"{src}: image file not found (image id {image['id']})")
            if name in first:  # a repeat: its own name, the first copy's bytes (a link, never a copy)
                dst = images_out / f"{stem}{PurePosixPath(name).suffix}"
                how = _place_image(first[name], dst, "symlink" if link == "symlink" else "hardlink")
                summary[f"repeats_{how}"] += 1
                continue
            first[name] = images_out / name
            summary[f"images_{_place_image(src, first[name], link)}"] += 1

    return {"images": len(dataset.images), "labels_written": len(dataset.images),
            "classes": len(yolo_ids), "link": link if images_dir is not None else "none",
            "skipped_crowd": 0, **summary}


def _is_class_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def input_class_ids(categories: list) -> dict:
    """COCO category id -> the input's class id: each category's ``yolo_id`` when all are distinct
    ints >= 0 (a dataset read from a YOLO folder), else the category id itself."""
    given = [c.get("yolo_id") for c in categories]
    if categories and len(set(given)) == len(given) and all(_is_class_id(g) for g in given):
        return {c["id"]: g for c, g in zip(categories, given)}
    return {c["id"]: c["id"] for c in categories}


def yolo_class_ids(categories: list, *, keep_ids: bool = False) -> tuple[dict, list[int]]:
    """COCO category id -> the YOLO class id written, and the placeholder ids filling gaps.

    Default: 0..K-1 in the order of the input's class ids (:func:`input_class_ids`; categories
    whose ids are not integers last, in list order), so input ids already 0..K-1 stay as they
    are. ``keep_ids``: the input's class ids; when they are not 0..K-1, each missing id below
    the largest becomes a placeholder class (ultralytics needs names for ids 0..nc-1); refused
    (a :class:`SpecError` of ``keep_ids``) when an id is not an int >= 0, or when the
    placeholders would outnumber the classes.
    """
    inputs = input_class_ids(categories)
    if not keep_ids:
        order = sorted(range(len(categories)), key=lambda i: (
            not _is_class_id(v := inputs[categories[i]["id"]]), v if _is_class_id(v) else 0, i))
        return {categories[i]["id"]: rank for rank, i in enumerate(order)}, []
    bad = next((v for v in inputs.values() if not _is_class_id(v)), None)
    if bad is not None:
        raise SpecError("keep_ids", f"cannot keep class id {bad!r}: a YOLO class id is an integer >= 0; "
                                    f"leave it off to write 0..{len(categories) - 1}")
    ids = sorted(inputs.values())
    placeholders = sorted(set(range(ids[-1] + 1)) - set(ids)) if ids else []
    if len(placeholders) > max(len(ids), 10):
        raise SpecError("keep_ids", f"cannot keep class ids {ids[0]}-{ids[-1]} of {len(ids)} classes: ultralytics "
                                    f"needs names for ids 0-{ids[-1]}, {len(placeholders)} of them placeholders; "
                                    f"leave it off to write 0..{len(ids) - 1}")
    if placeholders:
        shown = ", ".join(PLACEHOLDER.format(i) for i in placeholders[:4]) + (", ..." if len(placeholders) > 4 else "")
        _log.warning("keep_ids: class ids %d-%d of %d classes are not 0-%d: %d placeholder class(es) with no objects "
                     "(%s) fill the gaps so that ultralytics accepts data.yaml (nc %d)", ids[0], ids[-1], len(ids),
                     len(ids) - 1,
                     len(placeholders), shown, ids[-1] + 1)
    return inputs, placeholders


def _label_stems(images: list) -> list[str]:
    """Each image's label path below ``labels/``, without ``.txt``; refuses collisions.

    An image that repeats an earlier one's file name (a resampled file: ``ltaug resample -o``)
    gets the stem ``STEM_repK`` (K = 1, 2, ... per repeat; its image is written under that name
    too); two different file names that share a stem (``a.jpg``, ``a.png``) are refused."""
    seen: dict[str, tuple[int, str]] = {}  # stem -> (image id, file name)
    repeats: Counter[str] = Counter()
    stems: list[str] = []
    for image in images:
        name = image_file_name(image)
        if name is None or unsafe_file_name_reason(name):
            raise InputError(f"image id {image.get('id')}: file name {name!r} cannot name a label file")
        stem = PurePosixPath(name.replace("\\", "/")).with_suffix("").as_posix()
        if stem in seen and seen[stem][1] == name:  # the same image again
            repeats[stem] += 1
            stem = f"{stem}_rep{repeats[stem]}"
        if stem in seen:
            raise InputError(f"image ids {seen[stem][0]} and {image['id']}: file names share the stem {stem!r}, "
                             f"and YOLO needs one label file {stem}.txt per image")
        seen[stem] = (image["id"], name)
        stems.append(stem)
    return stems


def annotation_polygon(ann: dict, width: int, height: int) -> tuple[list[float], str]:
    """One flat pixel polygon for a non-crowd annotation, and how it was obtained.

    ``how`` is ``polygon``, ``merged_parts`` (several parts joined), ``rle_traced`` (mask
    contours), ``box_as_polygon`` (no segmentation) or ``mask_fallback_to_box`` (an empty
    mask, or polygon parts all under 3 points: the bbox rectangle is written instead).
    """
    seg: Any = ann.get("segmentation")
    kind = geometry.segmentation_kind(seg)
    how = "polygon"
    if kind == geometry.POLYGON:
        parts = [p for p in seg if len(p) >= 6]
    elif kind == geometry.NONE:
        return box_polygon(ann["bbox"]), "box_as_polygon"
    else:
        parts, how = geometry.mask_to_polygons(geometry.decode(seg, height, width)), "rle_traced"
    if not parts:
        return box_polygon(ann["bbox"]), "mask_fallback_to_box"
    if len(parts) == 1:
        return [float(v) for v in parts[0]], how
    return geometry.merge_polygon_parts(parts), "merged_parts" if how == "polygon" else how


def box_polygon(bbox) -> list[float]:
    """``[x, y, w, h]`` -> the rectangle's corners, clockwise from the top left (in image axes)."""
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def format_label_line(cls: int, polygon, width: int, height: int) -> str:
    """``cls x1 y1 ...`` with coordinates normalised, clipped to [0, 1], :data:`DECIMALS` places."""
    xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2) / np.array([width, height], dtype=np.float64)
    xy = np.clip(xy, 0.0, 1.0) + 0.0  # + 0.0 turns -0.0 into 0.0
    return " ".join([str(cls), *(f"{v:.{DECIMALS}f}" for v in xy.reshape(-1))])


def data_yaml(categories: list, yolo_ids: dict, out_dir: Path, *, id_map: dict | None = None,
              placeholders=(), folders: dict | None = None) -> str:
    """The data.yaml text: absolute ``path``, the ``train``/``val`` ``folders`` (both ``images``
    by default), ``nc`` and ``names``;
    ``ltaug_id_map`` (input class id -> id written) when any id changed, and
    ``ltaug_placeholder_ids`` when ``placeholders`` fill gaps. ultralytics ignores both keys."""
    names = {yolo_ids[c["id"]]: str(c["name"]) for c in categories}
    names.update({i: PLACEHOLDER.format(i) for i in placeholders})
    folders = folders or {"train": "images", "val": "images"}
    body: dict[str, Any] = {"path": str(Path(out_dir).resolve()), **folders,
                            "nc": len(names), "names": dict(sorted(names.items()))}
    header = "# Written by ltaug.\n"
    if folders["train"] == folders["val"]:
        header = ("# Written by ltaug. One COCO file is one split, so 'val' repeats 'train': export the\n"
                  "# validation split with it (ltaug convert TRAIN --val VAL) or point 'val' at its folder.\n")
    if id_map and any(k != v for k, v in id_map.items()):
        body["ltaug_id_map"] = dict(id_map)
        header += "# ltaug_id_map: the input's class id -> the class id in these labels.\n"
    if placeholders:
        body["ltaug_placeholder_ids"] = list(placeholders)
        header += ("# ltaug_placeholder_ids: ids with no class in the input, named only so that the ids\n"
                   "# stay the input's (ltaug convert --keep-ids); ltaug leaves them out when reading.\n")
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def _place_image(src: Path, dst: Path, link: str) -> str:
    """Put ``src`` at ``dst`` atomically by ``link``; return the method used (or ``present``)."""
    if dst.exists() and os.path.samefile(src, dst):
        return "present"
    with atomic_path(dst, sweep=False) as tmp:
        if link == "copy":
            shutil.copy2(src, tmp)
            return "copied"
        tmp.unlink()
        if link == "symlink":
            os.symlink(src.resolve(), tmp)
            return "symlinked"
        try:
            os.link(src, tmp)
            return "hardlinked"
        except OSError as exc:  # another filesystem, or one (or a policy) that forbids the link
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EMLINK):
                raise
            shutil.copy2(src, tmp)
            return "copied"
