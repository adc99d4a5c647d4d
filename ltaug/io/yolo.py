"""Read and write YOLO-seg (ultralytics) folders as COCO documents.

Layout
------
``root/data.yaml`` names the classes (``names``: a list, or a dict ``{id: name}``). Images
are under ``root/images/``; or, when data.yaml names splits (``train: images/train``,
``val: images/val``), under that split's folder, taken relative to ``root``. The ``path``
key is ignored: it usually names a folder on the machine that wrote the file. Labels lie
where ultralytics looks for them, the image path with its last ``images`` component
replaced by ``labels`` and the suffix by ``.txt``. One object per line, coordinates
normalised to the image size:

* ``cls x1 y1 x2 y2 ... xn yn`` (n >= 3): a polygon;
* ``cls cx cy w h``: a box (a detection label, no mask).

A missing label file means an image with no objects.

Conventions chosen here
-----------------------
* **Category ids are the YOLO class ids, unchanged (0-based).** pycocotools' ``COCO`` and
  ``COCOeval`` (bbox and segm) accept category id 0. Each category also records its
  ``yolo_id``, which :func:`write_yolo` reuses, so YOLO -> COCO -> YOLO keeps every class
  id, gaps in ``names`` included. Trainers that use COCO category ids directly as labels
  with 0 reserved for background (the torchvision detection references) must remap.
* **A box line becomes a box-only annotation**: ``bbox`` and ``area = w * h``, and no
  ``segmentation`` key, because a rectangle is not a mask. :func:`write_yolo` writes
  box-only annotations as rectangle polygons, so a box line comes back as a 4-point polygon.
* Polygons are stored in pixels (normalised value times width or height). ``bbox`` is the
  tight box around the vertices, ``area`` is the pycocotools mask area, and ``iscrowd`` is 0.
  Coordinates may stray up to :data:`COORD_TOLERANCE` outside [0, 1] and are clipped to it.
  Anything further out is a bad line.
* Images get ids 1..N in sorted file-name order (the path relative to the images folder).
  Annotations get ids 1..M in image order, then line order. Sizes come from the image
  header (PIL, no decode). EXIF orientation is not applied.

Writing: categories map to YOLO ids 0..K-1 in the order of ``dataset.categories``, unless
every category carries a distinct ``yolo_id``. Multi-part polygons are joined with
:func:`geometry.merge_polygon_parts`. Non-crowd RLE masks are traced with
:func:`geometry.mask_to_polygons`. Crowd regions are skipped (YOLO has no crowd) and
counted in the summary.
"""
from __future__ import annotations

import errno
import math
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from ltaug.errors import InputError, UsageError
from ltaug.io import geometry
from ltaug.io.dataset import ON_ERROR, Dataset
from ltaug.io.jsonio import atomic_path, remove_stale_temporaries_under, write_bytes_atomic
from ltaug.io.lock import output_lock
from ltaug.io.paths import image_file_name, refuse_overwriting_inputs, unsafe_file_name_reason

IMAGE_SUFFIXES = frozenset(".bmp .dng .jpeg .jpg .mpo .png .tif .tiff .webp".split())
COORD_TOLERANCE = 0.01  # normalised coordinates in [-0.01, 1.01] are clipped, not refused
LINKS = ("copy", "hardlink", "symlink", "none")
DECIMALS = 6

# Kinds of bad label lines, as counted in ``Dataset.skipped``.
BAD_LINE_KINDS = {
    "non-numeric": "a value is not a finite number",
    "bad-class-id": "class is not a non-negative integer",
    "unknown-class": "class id not among data.yaml names",
    "bad-coordinate-count": "neither 4 box values nor >= 3 (x, y) pairs",
    "coords-outside-image": "a coordinate lies outside [0, 1] beyond the tolerance",
    "degenerate-shape": "polygon or box with zero width or height",
}


class BadLine(ValueError):
    """A label line that cannot become an annotation; ``kind`` is one of BAD_LINE_KINDS."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# -- reading ---------------------------------------------------------------------------


def read_yolo(root, *, on_error: str = "raise", split: str = "train") -> Dataset:
    """Read a YOLO-seg folder (``root`` or its ``data.yaml``) as a COCO-kind :class:`Dataset`.

    ``on_error="raise"`` refuses the first bad label line or unreadable image with an
    :class:`InputError` naming the file and line. ``"skip"`` drops them and counts them by
    kind in ``Dataset.skipped``. Label files with no image are always ignored and counted
    as ``label-without-image``. Problems with the folder itself (no data.yaml, bad names,
    no images, two images sharing a label file) always raise.
    """
    if on_error not in ON_ERROR:
        raise UsageError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    root = Path(root)
    yaml_path = root if root.is_file() else root / "data.yaml"
    root = yaml_path.parent
    config = _read_data_yaml(yaml_path)
    names = parse_names(config.get("names"), yaml_path)
    images_dir = _split_images_dir(config, root, split, yaml_path)
    labels_dir = labels_dir_for(images_dir)
    image_paths = _list_images(images_dir)

    skipped: Counter = Counter()
    images: list[dict] = []
    annotations: list[dict] = []
    label_files = set()
    for path in image_paths:
        rel = path.relative_to(images_dir)
        label_path = labels_dir / rel.with_suffix(".txt")
        label_files.add(label_path)
        try:
            with Image.open(path) as im:
                width, height = im.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            if on_error == "raise":
                raise InputError(f"{path}: cannot be read as an image ({exc})") from None
            skipped["unreadable-image"] += 1
            continue
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": rel.as_posix(), "width": width, "height": height})
        for lineno, cls, xy in _read_label_file(label_path, names, on_error, skipped):
            try:
                ann = annotation_from_yolo(cls, xy, width, height)
            except BadLine as exc:
                if on_error == "raise":
                    raise InputError(f"{label_path}:{lineno}: {exc}") from None
                skipped[exc.kind] += 1
                continue
            ann.update(id=len(annotations) + 1, image_id=image_id)
            annotations.append(ann)
    if labels_dir.is_dir():
        orphans = sum(1 for p in labels_dir.rglob("*.txt") if p not in label_files)
        if orphans:
            skipped["label-without-image"] += orphans

    categories = [{"id": k, "name": n, "yolo_id": k} for k, n in sorted(names.items())]
    data = {"images": images, "annotations": annotations, "categories": categories}
    dataset = Dataset.from_dict(data, source=str(yaml_path), on_error=on_error, path=root)
    dataset.skipped.update(skipped)
    return dataset


def _read_data_yaml(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: file not found (a YOLO folder needs a data.yaml)")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a mapping with 'names', got a {type(config).__name__}")
    return config


def parse_names(names, source) -> dict[int, str]:
    """data.yaml ``names`` (a list, or a dict ``{id: name}``) -> ``{class id: name}``."""
    if isinstance(names, list):
        items = list(enumerate(names))
    elif isinstance(names, dict):
        items = list(names.items())
    else:
        raise InputError(f"{source}: 'names' must be a list or a mapping of class id to name, "
                         f"got {type(names).__name__}")
    out = {}
    for key, name in items:
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key)
        if not isinstance(key, int) or isinstance(key, bool) or key < 0:
            raise InputError(f"{source}: class id {key!r} in 'names' is not a non-negative integer")
        if name is None or str(name).strip() == "":
            raise InputError(f"{source}: class {key} has an empty name")
        out[key] = str(name)
    if not out:
        raise InputError(f"{source}: 'names' is empty")
    return out


def _split_images_dir(config: dict, root: Path, split: str, source) -> Path:
    """The images folder: data.yaml's entry for ``split``, else ``root/images`` for train."""
    entry = config.get(split)
    if entry is None:
        if split != "train":
            raise InputError(f"{source}: no '{split}' entry")
        return root / "images"
    if not isinstance(entry, str):
        raise InputError(f"{source}: '{split}' must be one folder; lists of folders are not supported")
    folder = root / entry
    if folder.suffix == ".txt":
        raise InputError(f"{source}: '{split}: {entry}' is an image list file; only folders are supported")
    return folder


def labels_dir_for(images_dir: Path) -> Path:
    """The labels folder ultralytics pairs with ``images_dir``: last ``images`` -> ``labels``."""
    parts = list(Path(images_dir).parts)
    if "images" not in parts:
        raise InputError(f"{images_dir}: image folder path has no 'images' component to pair a 'labels' folder with")
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts)


def _list_images(images_dir: Path) -> list[Path]:
    """Image files under ``images_dir``, sorted by relative path; refuses shared label stems."""
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: image folder not found")
    paths = sorted((p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(images_dir).as_posix())
    if not paths:
        raise InputError(f"{images_dir}: no image files found")
    seen: dict[str, Path] = {}
    for p in paths:
        stem = p.relative_to(images_dir).with_suffix("").as_posix()
        if stem in seen:
            raise InputError(f"{images_dir}: images {seen[stem].name} and {p.name} would share the label file {stem}.txt")
        seen[stem] = p
    return paths


def _read_label_file(path: Path, names: dict, on_error: str, skipped: Counter):
    """Yield ``(line number, class id, values)`` per good line of ``path`` (none if it is missing)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read label file ({exc})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cls, xy = parse_label_line(line, names)
        except BadLine as exc:
            if on_error == "raise":
                raise InputError(f"{path}:{lineno}: {exc}") from None
            skipped[exc.kind] += 1
            continue
        yield lineno, cls, xy


def parse_label_line(line: str, names) -> tuple[int, np.ndarray]:
    """``cls v1 v2 ...`` -> ``(class id, values)``; values has 4 (a box) or 2n >= 6 entries.

    Raises :class:`BadLine` naming what is wrong. Values are checked against [0, 1] with
    :data:`COORD_TOLERANCE` but not yet clipped.
    """
    tokens = line.split()
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise BadLine("non-numeric", f"{bad!r} is not a number") from None
    if not all(math.isfinite(v) for v in values):
        raise BadLine("non-numeric", "non-finite value")
    cls, coords = values[0], np.asarray(values[1:], dtype=np.float64)
    if not cls.is_integer() or cls < 0:
        raise BadLine("bad-class-id", f"class {tokens[0]!r} is not a non-negative integer")
    cls = int(cls)
    if cls not in names:
        raise BadLine("unknown-class", f"class {cls} is not among data.yaml names ({_id_range(names)})")
    n = coords.size
    if n != 4 and (n % 2 or n < 6):
        raise BadLine("bad-coordinate-count",
                      f"{n} coordinate values: expected 4 (cx cy w h) or an even number >= 6 (polygon)")
    if n == 4:
        cx, cy, w, h = coords
        corners = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        if w <= 0 or h <= 0:
            raise BadLine("degenerate-shape", f"box with width {w:g} and height {h:g}")
        _check_range(corners)
    else:
        _check_range(coords)
    return cls, coords


def _check_range(values: np.ndarray) -> None:
    lo, hi = float(values.min()), float(values.max())
    if lo < -COORD_TOLERANCE or hi > 1 + COORD_TOLERANCE:
        worst = lo if -lo > hi - 1 else hi
        raise BadLine("coords-outside-image", f"coordinate {worst:g} is outside [0, 1] (normalised)")


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _id_range(names) -> str:
    ids = sorted(names)
    return f"ids {ids[0]}-{ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) else f"ids {ids}"


def annotation_from_yolo(cls: int, values: np.ndarray, width: int, height: int) -> dict:
    """One parsed label line -> a COCO annotation (pixels), without ``id`` and ``image_id``."""
    scale = np.array([width, height], dtype=np.float64)
    if values.size == 4:
        cx, cy, w, h = values
        x0, y0 = np.clip([cx - w / 2, cy - h / 2], 0, 1) * scale
        x1, y1 = np.clip([cx + w / 2, cy + h / 2], 0, 1) * scale
        bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise BadLine("degenerate-shape", "box has no extent inside the image")
        return {"category_id": cls, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0}
    xy = np.clip(values.reshape(-1, 2), 0, 1) * scale
    polygon = [xy.reshape(-1).tolist()]
    bbox = geometry.polygons_bbox(polygon)
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise BadLine("degenerate-shape", "polygon has zero width or height")
    return {"category_id": cls, "segmentation": polygon, "bbox": bbox,
            "area": float(geometry.mask_area(polygon, height, width)), "iscrowd": 0}


# -- writing ---------------------------------------------------------------------------


def write_yolo(dataset: Dataset, out_dir, *, images_dir=None, link: str = "copy") -> dict:
    """Write ``dataset`` as a YOLO-seg folder; return a summary of what was written.

    Writes ``out_dir/data.yaml``, one ``out_dir/labels/<stem>.txt`` per image (empty for an
    image with no objects) and, when ``images_dir`` is given, the images into
    ``out_dir/images/``. ``link`` is one of ``copy``, ``hardlink`` (falls back to a copy
    where the filesystem refuses the link), ``symlink`` (absolute targets) or ``none``.
    Every file is written atomically; the next export into ``out_dir`` removes the temporary
    files a killed one left, and a second export into it while one runs is refused. Two images
    whose label files would coincide raise :class:`InputError`.
    """
    if link not in LINKS:
        raise UsageError(f"link must be one of {', '.join(LINKS)}, got {link!r}")
    out_dir = Path(out_dir)
    refuse_overwriting_inputs(out_dir, [dataset.path])
    yolo_ids = yolo_class_ids(dataset.categories)
    stems = _label_stems(dataset.images)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):  # one writer per folder; what a killed export left half-written goes
        if out_dir.is_dir():
            remove_stale_temporaries_under(out_dir)
        return _write_yolo_locked(dataset, out_dir, images_dir, link, yolo_ids, stems)


def _write_yolo_locked(dataset: Dataset, out_dir: Path, images_dir, link: str, yolo_ids: dict,
                       stems: list[str]) -> dict:
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
        write_bytes_atomic(out_dir / "labels" / f"{stem}.txt", "".join(f"{ln}\n" for ln in lines).encode(),
                           sweep=False)
        summary["objects"] += len(lines)
        summary["empty_labels"] += not lines

    if images_dir is not None and link != "none":
        for image in dataset.images:
            name = image_file_name(image)
            assert name is not None  # _label_stems refused images without one
            src = Path(images_dir) / name
            if not src.is_file():
                raise InputError(f"{src}: image file not found (image id {image['id']})")
            summary[f"images_{_place_image(src, out_dir / 'images' / name, link)}"] += 1

    write_bytes_atomic(out_dir / "data.yaml", data_yaml(dataset.categories, yolo_ids, out_dir).encode())
    return {"out_dir": str(out_dir), "images": len(dataset.images), "labels_written": len(dataset.images),
            "classes": len(yolo_ids), "link": link if images_dir is not None else "none",
            "skipped_crowd": 0, **summary}


def yolo_class_ids(categories: list) -> dict[int, int]:
    """COCO category id -> YOLO class id: each ``yolo_id`` if all are distinct ints >= 0, else 0..K-1."""
    given = [c.get("yolo_id") for c in categories]
    if categories and len(set(given)) == len(given) and all(
            isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in given):
        return {c["id"]: g for c, g in zip(categories, given)}
    return {c["id"]: i for i, c in enumerate(categories)}


def _label_stems(images: list) -> list[str]:
    """Each image's label path below ``labels/``, without ``.txt``; refuses collisions."""
    seen: dict[str, int] = {}
    stems: list[str] = []
    for image in images:
        name = image_file_name(image)
        if name is None or unsafe_file_name_reason(name):
            raise InputError(f"image id {image.get('id')}: file name {name!r} cannot name a label file")
        stem = PurePosixPath(name.replace("\\", "/")).with_suffix("").as_posix()
        if stem in seen:
            raise InputError(f"image ids {seen[stem]} and {image['id']}: file names share the stem {stem!r}, "
                             f"and YOLO needs one label file {stem}.txt per image")
        seen[stem] = image["id"]
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


def data_yaml(categories: list, yolo_ids: dict, out_dir: Path) -> str:
    """The data.yaml text: absolute ``path``, ``train``/``val`` folders, ``nc`` and ``names``."""
    names = {yolo_ids[c["id"]]: str(c["name"]) for c in categories}
    body = {"path": str(Path(out_dir).resolve()), "train": "images", "val": "images",
            "nc": len(names), "names": dict(sorted(names.items()))}
    header = ("# Written by ltaug. One COCO file is one split, so 'val' repeats 'train':\n"
              "# point it at the folder written from the validation split before training.\n")
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
