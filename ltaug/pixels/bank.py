"""Object bank: the non-crowd instances of a dataset cut out once, stored for fast pasting.

Copy-paste needs, for each object it pastes, the object's pixels and mask. Decoding a
whole source image (and rasterising its masks) for every paste is the slow part; the bank
does it once per image and keeps the cut-outs in two flat files, each object's crop and mask
compressed on its own (:mod:`ltaug.pixels.bank_codec`), so getting an object later is two
reads of a few kilobytes and the decoding of that one object (tens of microseconds).

Building: :func:`build_bank`. Reading: :class:`Bank`. What goes in (every class, or some:
``classes``; at most ``max_per_class`` objects of each, chosen by :mod:`ltaug.pixels.bank_select`)
and how it is stored (``codec``, ``quality``) are parameters, recorded in ``meta.json``.

On-disk format (version 2)
--------------------------
A bank is a folder of four files::

    BANK/
      meta.json     format name and version, source, parameters, codec, selection, categories, counts
      objects.npy   one row per object (numpy structured array, ``OBJECT_DTYPE``)
      pixels.bin    the crops, each encoded on its own by the bank's codec, concatenated
      masks.bin     the masks, each encoded on its own (packed bits, zlib-compressed unless the
                    codec is raw), concatenated

``objects.npy`` rows are in the annotation order of the source file, crowd annotations and
objects left out by the selection not included: ``objects["annotation_id"]`` is the file's
non-crowd annotation ids in order (less those of skipped images and unselected objects).
Fields, all little-endian and of fixed size:

==================  ==========  ==========================================================
field               type        meaning
==================  ==========  ==========================================================
pixel_offset        int64       byte offset of the encoded crop in ``pixels.bin``
pixel_size          int64       its length in bytes
mask_offset         int64       byte offset of the encoded mask in ``masks.bin``
mask_size           int64       its length in bytes
height, width       int32       crop size h x w (at least 1 x 1)
box                 int32[4]    x0, y0, x1, y1: the crop is ``image[y0:y1, x0:x1]``
bbox                float64[4]  the annotation's ``bbox`` [x, y, w, h], as in the file
image_id            int64       source image id
image_height/width  int32       source image size
annotation_id       int64       source annotation id
category_id         int64       class
area                int64       mask pixels inside the crop (rasterised, not the file's ``area``)
occlusion           float32     fraction of the mask's pixels that another annotation also covers
flags               uint16      bitfield of :class:`Flag`
==================  ==========  ==========================================================

The crop box is the annotation's ``bbox`` made integer outwards (floor of x and y, ceil of
x + w and y + h), clipped to the image, at least one pixel each way. The mask is the
pycocotools rasterisation of the segmentation (a box-only annotation: of its bbox) cut to
that box; should a mask reach outside its bbox, the outside pixels are lost and the object
is flagged ``CLIPPED``. The blobs are laid out in image order (images in file order, each
image's objects in annotation order), so offsets need not grow along the rows.

``meta.json``: ``format`` ("ltaug-object-bank"), ``format_version`` (2), ``ltaug_version``,
``source`` (annotation file path and sha256, image folder, dataset kind), ``params``
(min_area, border, occluded_fraction, on_error, seed), ``codec`` (:meth:`Codec.describe
<ltaug.pixels.bank_codec.Codec.describe>`: crops, quality and step, masks), ``selection``
(``classes`` and ``bins`` as asked, with the bins' thresholds; ``category_ids``, the classes
banked, null for all; ``max_per_class``; ``seed``; ``rule``, how the objects were chosen),
``categories`` (every category of the file, in file order: id, name, objects in the bank,
``source_objects``: non-crowd objects of the file), ``counts`` (objects, images read, images
skipped with id and reason, crowd annotations excluded, ``left_out`` by the selection
(``classes``, ``max_per_class``), unflagged objects, objects per flag), ``flags`` (name -> bit),
``files`` (name -> size in bytes), ``sha256`` (name -> checksum). No timestamps and no worker
count: the same inputs and parameters give byte-identical files.

Format 1 (ltaug 0.2 and earlier: raw BGR crops and packed-bit masks, no sizes in the table, no
codec or selection in ``meta.json``) is still read, as a ``raw`` bank of every class.

Pixels are what :func:`ltaug.pixels.imagefile.read_image` reads: 3-channel 8-bit BGR, upright
when the json has the EXIF-upright size and as stored when it has the stored one (the rule of
:mod:`ltaug.io.imagecheck`, the one ``ltaug validate`` checks).
"""
from __future__ import annotations

import enum
import functools
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from pycocotools import mask as mask_utils

from ltaug.errors import InputError, SpecError, UsageError
from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import dumps, file_sha256, read_json
from ltaug.io.lock import output_lock
from ltaug.io.paths import checked_image_path, image_file_name, unsafe_file_name_reason
from ltaug.pixels import bank_codec
from ltaug.pixels.bank_codec import Codec
from ltaug.pixels.bank_select import RULE, choose, resolve_classes, split_names
from ltaug.pixels.imagefile import ImageFileError, read_image
from ltaug.pixels.masks import annotation_rle
from ltaug.pool import imap_ordered

FORMAT = "ltaug-object-bank"
FORMAT_VERSION = 2
READS = (1, 2)  # the format versions this ltaug reads
META, OBJECTS, PIXELS, MASKS = "meta.json", "objects.npy", "pixels.bin", "masks.bin"
ON_ERROR = ("raise", "skip")
_log = logging.getLogger(__name__)


class Flag(enum.IntFlag):
    """Quality flags of a bank object (bits of ``objects["flags"]``).

    * ``TOO_SMALL``: ``area`` < ``min_area`` pixels.
    * ``TRUNCATED``: the annotation's bbox comes within ``border`` px of an image edge
      (x <= border, y <= border, x + w >= W - border or y + h >= H - border): the frame
      probably cuts the object.
    * ``OCCLUDED``: ``occlusion`` > ``occluded_fraction``. Occlusion is the fraction of the
      object's own mask pixels that the mask of any other annotation of the same image also
      covers (crowd regions and box-only annotations included; each pixel counted once).
    * ``BOX_ONLY``: the annotation has no segmentation; its mask is its bbox rasterised
      (pycocotools ``frBbox``, as COCO evaluation does).
    * ``EMPTY``: the mask has no pixel in the crop.
    * ``CLIPPED``: the mask has pixels outside the crop box (the bbox disagrees with the
      segmentation); those pixels are not in the bank.
    """

    TOO_SMALL = 1
    TRUNCATED = 2
    OCCLUDED = 4
    BOX_ONLY = 8
    EMPTY = 16
    CLIPPED = 32


_FIELDS = [
    ("height", "<i4"), ("width", "<i4"),
    ("box", "<i4", (4,)), ("bbox", "<f8", (4,)),
    ("image_id", "<i8"), ("image_height", "<i4"), ("image_width", "<i4"),
    ("annotation_id", "<i8"), ("category_id", "<i8"),
    ("area", "<i8"), ("occlusion", "<f4"), ("flags", "<u2"),
]
OBJECT_DTYPE = np.dtype([("pixel_offset", "<i8"), ("pixel_size", "<i8"), ("mask_offset", "<i8"),
                         ("mask_size", "<i8"), *_FIELDS])
OBJECT_DTYPE_V1 = np.dtype([("pixel_offset", "<i8"), ("mask_offset", "<i8"), *_FIELDS])  # format 1: raw sizes


@dataclass(frozen=True)
class Params:
    """How objects are flagged (see :class:`Flag`)."""

    min_area: int = 32
    border: float = 1.0
    occluded_fraction: float = 0.5


def crop_boxes(bboxes: ArrayLike, heights: ArrayLike, widths: ArrayLike) -> np.ndarray:
    """(n, 4) int64 crop boxes x0, y0, x1, y1 of ``[x, y, w, h]`` rows in images of these sizes.

    Outward to integers (floor / ceil), clipped to the image, at least 1 x 1.
    """
    b = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    h, w = np.asarray(heights, np.int64), np.asarray(widths, np.int64)
    x0 = np.clip(np.floor(b[:, 0]).astype(np.int64), 0, w - 1)
    y0 = np.clip(np.floor(b[:, 1]).astype(np.int64), 0, h - 1)
    x1 = np.minimum(np.maximum(np.ceil(b[:, 0] + b[:, 2]).astype(np.int64), x0 + 1), w)
    y1 = np.minimum(np.maximum(np.ceil(b[:, 1] + b[:, 3]).astype(np.int64), y0 + 1), h)
    return np.stack([x0, y0, x1, y1], axis=1)


# -- the work for one image (runs in a worker process, or in this one) ------------------------

@dataclass(frozen=True)
class _ImageTask:
    """One source image and all its annotations (crowd and unselected ones too: they count for occlusion).

    ``anns``: ``(annotation_id, category_id, bbox, segmentation, row)`` in file order, ``row``
    being the object's row in the result (-1: not banked). ``boxes``: crop boxes of the banked
    ones, in the same order.
    """

    image_id: int
    path: str
    height: int
    width: int
    anns: tuple
    boxes: tuple


@dataclass(frozen=True)
class _Job:
    """What every task shares: the parameters and the codec."""

    params: Params
    on_error: str
    codec: Codec


@dataclass
class _ImageResult:
    image_id: int
    rows: np.ndarray | None = None      # result rows filled by this image
    table: np.ndarray | None = None     # those rows (OBJECT_DTYPE, offsets and sizes not yet set)
    blobs: list | None = None           # (encoded crop, encoded mask) per row
    problem: str | None = None          # why the image was skipped (on_error="skip")


def _covered_pixels(k: int, rles: list, tight: np.ndarray) -> int:
    """Pixels of mask ``k`` that at least one other mask also covers (RLE union + intersection).

    ``tight``: (n, 4) x0, y0, x1, y1 of each mask's pixels; only masks whose tight boxes meet
    mask ``k``'s can overlap it, so the others are never touched.
    """
    x0, y0, x1, y1 = tight.T
    meets = (x0 < x1[k]) & (x0[k] < x1) & (y0 < y1[k]) & (y0[k] < y1)
    meets[k] = False
    others = [rles[j] for j in np.flatnonzero(meets)]
    if not others:
        return 0
    union = mask_utils.merge(others) if len(others) > 1 else others[0]
    return int(mask_utils.area(mask_utils.merge([rles[k], union], intersect=True)))


def _measure(task: _ImageTask, params: Params) -> tuple[list[np.ndarray], np.ndarray]:
    """The banked objects of one image, from its annotations alone (no pixels): each one's crop
    mask and its table row (offsets and sizes left 0), in annotation order."""
    H, W = task.height, task.width
    rles, box_only = zip(*(annotation_rle(a[3], a[2], H, W, a[0]) for a in task.anns))
    rles = list(rles)
    full_areas = mask_utils.area(rles)
    tight = mask_utils.toBbox(rles)
    tight[:, 2:] += tight[:, :2]  # x0, y0, x1, y1 (pycocotools' boxes are integers here)
    kept = [k for k, a in enumerate(task.anns) if a[4] >= 0]
    table = np.zeros(len(kept), OBJECT_DTYPE)
    crop_masks = []
    for t, k, (x0, y0, x1, y1) in zip(table, kept, task.boxes):
        ann_id, cat_id, bbox, _, _ = task.anns[k]
        crop_mask = mask_utils.decode(rles[k])[y0:y1, x0:x1]
        area, full_area = int(np.count_nonzero(crop_mask)), int(full_areas[k])
        occlusion = np.float32(_covered_pixels(k, rles, tight) / full_area if full_area else 0.0)
        x, y, w, h = bbox
        b = params.border
        flags = ((Flag.TOO_SMALL if area < params.min_area else 0)
                 | (Flag.TRUNCATED if x <= b or y <= b or x + w >= W - b or y + h >= H - b else 0)
                 | (Flag.OCCLUDED if occlusion > params.occluded_fraction else 0)
                 | (Flag.BOX_ONLY if box_only[k] else 0)
                 | (Flag.EMPTY if area == 0 else 0)
                 | (Flag.CLIPPED if area != full_area else 0))
        t["height"], t["width"] = y1 - y0, x1 - x0
        t["box"], t["bbox"] = (x0, y0, x1, y1), bbox
        t["image_id"], t["image_height"], t["image_width"] = task.image_id, H, W
        t["annotation_id"], t["category_id"] = ann_id, cat_id
        t["area"], t["occlusion"], t["flags"] = area, occlusion, int(flags)
        crop_masks.append(crop_mask)
    return crop_masks, table


def _rows(task: _ImageTask) -> np.ndarray:
    return np.array([a[4] for a in task.anns if a[4] >= 0], dtype=np.int64)


def _measure_chunk(tasks: list[_ImageTask], params: Params) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Phase 1 of a build with ``max_per_class``: each image's rows and their area, occlusion, flags."""
    out = []
    for task in tasks:
        _, table = _measure(task, params)
        out.append((_rows(task), table["area"], table["occlusion"], table["flags"]))
    return out


def _cut_image(task: _ImageTask, job: _Job) -> _ImageResult:
    """Decode the image once; cut out, flag and encode every banked object in it."""
    img = read_image(task.path, task.image_id, task.height, task.width)
    crop_masks, table = _measure(task, job.params)
    blobs = []
    for (x0, y0, x1, y1), mask in zip(table["box"].tolist(), crop_masks):
        blobs.append((job.codec.encode_crop(img[y0:y1, x0:x1]), job.codec.encode_mask(mask)))
    return _ImageResult(task.image_id, _rows(task), table, blobs)


def _cut_chunk(tasks: list[_ImageTask], job: _Job) -> list[_ImageResult]:
    out = []
    for task in tasks:
        try:
            out.append(_cut_image(task, job))
        except ImageFileError as exc:  # annotation problems always raise: the file was loaded as valid
            if job.on_error == "raise":
                raise
            out.append(_ImageResult(task.image_id, problem=str(exc)))
    return out


# -- planning and running (the calling process) -----------------------------------------------

def _tasks(dataset: Dataset, images_dir: Path, rows: np.ndarray) -> list[_ImageTask]:
    """Tasks for the images with at least one banked annotation (file order). ``rows``: per
    annotation (index order), its row in the result, -1 if it is not banked."""
    idx = dataset.index
    banked = rows >= 0
    boxes = crop_boxes(idx.ann_boxes, idx.image_heights[idx.ann_image_pos], idx.image_widths[idx.ann_image_pos])
    by_image, bounds = idx.annotations_by_image()  # the blob order: image, then annotation
    images, anns = dataset.images, dataset.annotations
    tasks = []
    for ip in np.flatnonzero(np.bincount(idx.ann_image_pos[banked], minlength=idx.num_images)).tolist():
        image = images[ip]
        name = image_file_name(image)
        reason = "is missing" if name is None else unsafe_file_name_reason(name)
        if reason or name is None:
            raise InputError(f"image id {image['id']}: file name {name!r} {reason}")
        pos = by_image[bounds[ip]:bounds[ip + 1]]
        tasks.append(_ImageTask(
            int(idx.image_ids[ip]), checked_image_path(images_dir, name, image["id"]), int(idx.image_heights[ip]),
            int(idx.image_widths[ip]),
            anns=tuple((int(idx.ann_ids[p]), int(idx.ann_category_ids[p]), tuple(idx.ann_boxes[p].tolist()),
                        anns[p].get("segmentation"), int(rows[p])) for p in pos.tolist()),
            boxes=tuple(tuple(b) for b in boxes[pos[banked[pos]]].tolist())))
    return tasks


def _numbered(keep: np.ndarray) -> np.ndarray:
    """Rows 0..n-1 for the True positions of ``keep`` (in order), -1 elsewhere."""
    rows = np.full(keep.size, -1, np.int64)
    rows[keep] = np.arange(int(keep.sum()))
    return rows


def _chunks(tasks: list, workers: int) -> Iterator[list]:
    """About 4 chunks per worker, 1 to 16 images each: few round trips, balanced load."""
    size = max(1, min(16, len(tasks) // (4 * workers)))
    return (tasks[i:i + size] for i in range(0, len(tasks), size))


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False)


def _choose(dataset: Dataset, images_dir: Path, candidates: np.ndarray, max_per_class: int, seed: int,
            params: Params, workers: int, progress: bool) -> np.ndarray:
    """Phase 1 of a build with ``max_per_class``: measure every candidate (annotations only, no
    image is read) and keep at most ``max_per_class`` per class (:func:`ltaug.pixels.bank_select.choose`)."""
    rows = _numbered(candidates)
    n = int(candidates.sum())
    measured = np.zeros(n, [("area", "<i8"), ("occlusion", "<f4"), ("flags", "<u2")])
    tasks = _tasks(dataset, images_dir, rows)
    workers = min(workers, max(1, len(tasks)))
    with imap_ordered(functools.partial(_measure_chunk, params=params), _chunks(tasks, workers), workers) as chunks, \
            _bar(len(tasks), "bank: measuring", progress) as bar:
        for r, area, occlusion, flags in itertools.chain.from_iterable(chunks):
            bar.update(1)
            measured["area"][r], measured["occlusion"][r], measured["flags"][r] = area, occlusion, flags
    cats = dataset.index.ann_category_ids[candidates]
    keep = choose(cats, measured["area"], measured["occlusion"], measured["flags"], max_per_class, seed,
                  int(Flag.EMPTY))
    chosen = candidates.copy()
    chosen[np.flatnonzero(candidates)[~keep]] = False
    return chosen


def _write_blobs(tmp: Path, tasks: list, n_objects: int, job: _Job, workers: int,
                 progress: bool) -> tuple[np.ndarray, list[dict]]:
    """Cut and encode every task's objects (``workers`` processes) and append them to ``pixels.bin``
    / ``masks.bin`` here, in task order (so the files are the same for any worker count); the
    table and the skipped images."""
    table = np.zeros(n_objects, OBJECT_DTYPE)
    filled = np.zeros(n_objects, bool)
    skipped = []
    offsets = [0, 0]
    with open(tmp / PIXELS, "wb") as pix, open(tmp / MASKS, "wb") as msk, \
            imap_ordered(functools.partial(_cut_chunk, job=job), _chunks(tasks, workers), workers) as chunks, \
            _bar(len(tasks), "bank", progress) as bar:
        for res in itertools.chain.from_iterable(chunks):
            bar.update(1)
            if res.problem is not None:
                skipped.append({"image_id": res.image_id, "reason": res.problem})
                continue
            assert res.table is not None and res.rows is not None and res.blobs is not None
            for k, (fh, field) in enumerate(((pix, "pixel"), (msk, "mask"))):
                parts = [b[k] for b in res.blobs]
                sizes = np.array([len(p) for p in parts], np.int64)
                res.table[f"{field}_size"] = sizes
                res.table[f"{field}_offset"] = offsets[k] + np.cumsum(sizes) - sizes
                offsets[k] += int(sizes.sum())
                fh.write(b"".join(parts))
            table[res.rows] = res.table
            filled[res.rows] = True
        for fh in (pix, msk):
            fh.flush()
            os.fsync(fh.fileno())
    return table[filled], skipped


def _is_bank(path: Path) -> bool:
    try:
        meta = read_json(path / META)
    except InputError:
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def _check_output(out_dir: Path, images_dir: Path) -> None:
    """Refuse to replace anything but an existing bank or an empty folder."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UsageError(f"{out_dir}: exists and is not a folder; refusing to replace it with a bank")
        if out_dir.resolve() == images_dir.resolve():
            raise UsageError(f"{out_dir}: refusing to write the bank over the image folder")
        if any(out_dir.iterdir()) and not _is_bank(out_dir):
            raise UsageError(f"{out_dir}: folder exists and is not an object bank; refusing to replace it")


def _publish(tmp: Path, out_dir: Path) -> None:
    """Move the finished bank into place; an existing bank is replaced (two renames)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder the usual mode
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / "bank")
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
    fd = os.open(out_dir.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _Selection:
    """What goes in: ``category_ids`` (None: every class), ``max_per_class`` (None: all), and the
    record of it for ``meta.json``."""

    category_ids: tuple[int, ...] | None
    max_per_class: int | None
    seed: int
    record: dict


def _selection(dataset: Dataset, classes: Any, max_per_class: Any, seed: Any, asked: dict | None) -> _Selection:
    idx = dataset.index
    ids: tuple[int, ...] | None = None
    if classes is not None:
        position = dict(zip(idx.category_ids.tolist(), range(idx.num_categories)))
        ids = tuple(sorted(resolve_classes(idx.category_ids.tolist(), idx.category_names, classes),
                           key=position.__getitem__))  # file order
    if max_per_class is not None:
        if isinstance(max_per_class, bool) or not isinstance(max_per_class, (int, np.integer)) or max_per_class < 1:
            raise SpecError("max_per_class", f"must be an integer >= 1, got {max_per_class!r}")
        max_per_class = int(max_per_class)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError("seed", f"must be an integer >= 0, got {seed!r}")
    record = {"classes": split_names(classes), **(asked or {}), "category_ids": None if ids is None else list(ids),
              "max_per_class": max_per_class, "seed": int(seed), "rule": RULE if max_per_class is not None else None}
    return _Selection(ids, max_per_class, int(seed), record)


def build_bank(dataset: Dataset, images_dir: str | os.PathLike, out_dir: str | os.PathLike, *, workers: int | None = None,
               min_area: int = 32, border: float = 1.0, occluded_fraction: float = 0.5, on_error: str = "raise",
               progress: bool = True, seed: int = 0, classes: Sequence[int | str] | str | None = None,
               max_per_class: int | None = None, codec: str = bank_codec.DEFAULT_CODEC, quality: int | None = None,
               asked: dict | None = None) -> dict:
    """Cut the non-crowd annotations of ``dataset`` out of their images into a bank at ``out_dir``.

    What goes in: every object of the classes ``classes`` (names or ids; None: every class),
    and of each class at most ``max_per_class`` (None: all), chosen seeded by ``seed``
    (:data:`ltaug.pixels.bank_select.RULE`: unflagged objects first, larger and less occluded
    ones more likely). Choosing needs every candidate's area, occlusion and flags first: a
    first pass computes them from the annotations alone (no image is read). ``asked``: what
    the caller asked for beyond that (``bins`` and their thresholds, resolved into ``classes``
    by :func:`ltaug.api.build_bank`), recorded in ``meta.json``'s ``selection``.

    How: ``codec`` (:data:`ltaug.pixels.bank_codec.CODECS`; ``jpeg`` at ``quality``, default
    :data:`~ltaug.pixels.bank_codec.DEFAULT_QUALITY`; ``png`` lossless; ``raw``).

    Each source image with a banked object is decoded once and all its objects are cut,
    masked, flagged (:class:`Flag`) and encoded in one go by ``workers`` processes (default
    ``os.cpu_count()``; 1 runs in this process); this process writes them in image order, so
    the files are byte-identical whatever the count. The bank is built in a temporary folder
    beside ``out_dir`` and renamed into place when complete: a failed build removes it, and the
    next build removes what a killed one left (``.NAME.*.tmp``). One builder per bank: a second
    build of the same ``out_dir`` while one runs is refused (:mod:`ltaug.io.lock`). An existing
    bank at ``out_dir`` is replaced; any other non-empty folder is refused (:class:`UsageError`).

    ``on_error="raise"``: a missing, undecodable or wrongly sized image raises a one-line
    :class:`InputError` naming its id and path; ``"skip"`` leaves its objects out and lists
    it in ``meta.json`` (with ``max_per_class``, they are not replaced by others of the class).
    A segmentation that cannot be rasterised always raises.

    Returns a summary: ``path``, ``objects``, ``source_objects`` (non-crowd objects of the
    file), ``images`` (read), ``images_skipped``, ``crowd_excluded``, ``left_out`` (by the
    selection: ``classes``, ``max_per_class``), ``flags`` (objects per flag), ``codec`` (its
    name and quality, as text), ``bytes`` (the bank's size on disk), ``bytes_per_object``,
    ``seconds``, ``images_per_s``, ``workers`` (processes used).
    """
    if on_error not in ON_ERROR:
        raise UsageError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if min_area < 0 or border < 0 or not 0 <= occluded_fraction <= 1:
        raise UsageError(f"need min_area >= 0, border >= 0 and 0 <= occluded_fraction <= 1, "
                         f"got {min_area}, {border}, {occluded_fraction}")
    try:
        chosen_codec = Codec.of(codec, quality)
    except ValueError as exc:
        field, _, detail = str(exc).partition(" ")
        raise SpecError(field, detail) from None
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise SpecError("workers", f"must be >= 1, got {workers}")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: image folder not found")
    _check_output(out_dir, images_dir)
    selection = _selection(dataset, classes, max_per_class, seed, asked)
    params = Params(int(min_area), float(border), float(occluded_fraction))
    start = time.perf_counter()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):  # one builder per bank; the temporary folders of killed builds go
        for stale in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        return _build_locked(dataset, images_dir, out_dir, selection, params, _Job(params, on_error, chosen_codec),
                             workers, progress, start)


def _build_locked(dataset: Dataset, images_dir: Path, out_dir: Path, selection: _Selection, params: Params,
                  job: _Job, workers: int, progress: bool, start: float) -> dict:
    idx = dataset.index
    objects = ~idx.ann_iscrowd
    candidates = objects.copy()
    if selection.category_ids is not None:
        candidates &= np.isin(idx.ann_category_ids, np.asarray(selection.category_ids, np.int64))
    chosen = candidates
    if selection.max_per_class is not None and candidates.any():
        chosen = _choose(dataset, images_dir, candidates, selection.max_per_class, selection.seed, params, workers,
                         progress)
    tasks = _tasks(dataset, images_dir, _numbered(chosen))
    workers = min(workers, max(1, len(tasks)))
    left_out = {"classes": int((objects & ~candidates).sum()), "max_per_class": int((candidates & ~chosen).sum())}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        table, skipped = _write_blobs(tmp, tasks, int(chosen.sum()), job, workers, progress)
        np.save(tmp / OBJECTS, table, allow_pickle=False)
        meta = _meta(dataset, images_dir, table, tmp, params, job, selection,
                     images=len(tasks) - len(skipped), skipped=skipped, left_out=left_out)
        with open(tmp / META, "wb") as fh:
            fh.write(dumps(meta, indent=True))
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in out_dir.iterdir())
    return {"path": str(out_dir), "objects": int(table.size), "source_objects": int(objects.sum()),
            "images": len(tasks) - len(skipped), "images_skipped": len(skipped),
            "crowd_excluded": int(idx.ann_iscrowd.sum()), "left_out": left_out, "flags": meta["counts"]["flags"],
            "codec": str(job.codec), "bytes": size, "bytes_per_object": size / table.size if table.size else 0.0,
            "seconds": seconds, "images_per_s": len(tasks) / seconds if seconds > 0 else float("inf"),
            "workers": workers}


def _meta(dataset: Dataset, images_dir: Path, table: np.ndarray, folder: Path, params: Params, job: _Job,
          selection: _Selection, *, images: int, skipped: list, left_out: dict) -> dict:
    from ltaug import __version__

    src, idx = dataset.path, dataset.index
    per_class = np.bincount(idx.category_positions(table["category_id"]), minlength=idx.num_categories)
    in_source = np.bincount(idx.ann_category_pos[~idx.ann_iscrowd], minlength=idx.num_categories)
    flags = table["flags"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ltaug_version": __version__,
        "source": {"annotations": None if src is None else str(src),
                   "sha256": file_sha256(src) if src is not None and Path(src).is_file() else None,
                   "images": str(images_dir), "kind": dataset.kind},
        "params": {"min_area": params.min_area, "border": params.border,
                   "occluded_fraction": params.occluded_fraction, "on_error": job.on_error, "seed": selection.seed},
        "codec": job.codec.describe(),
        "selection": selection.record,
        "categories": [{"id": int(i), "name": n, "objects": int(c), "source_objects": int(s)}
                       for i, n, c, s in zip(idx.category_ids, idx.category_names, per_class, in_source)],
        "counts": {"objects": int(table.size), "images": images, "images_skipped": skipped,
                   "crowd_excluded": int(idx.ann_iscrowd.sum()), "left_out": left_out,
                   "unflagged": int(np.count_nonzero(flags == 0)),
                   "flags": {f.name: int(np.count_nonzero(flags & f.value)) for f in Flag}},
        "flags": {f.name: f.value for f in Flag},
        "files": {name: (folder / name).stat().st_size for name in (OBJECTS, PIXELS, MASKS)},
        "sha256": {name: file_sha256(folder / name) for name in (OBJECTS, PIXELS, MASKS)},
    }


# -- reading ----------------------------------------------------------------------------------

def _check_size(path: Path, size: int) -> None:
    actual = path.stat().st_size if path.is_file() else -1
    if actual != size:
        found = "missing" if actual < 0 else f"{actual} bytes"
        raise InputError(f"{path}: {found}, meta.json says {size} bytes; the bank is damaged, rebuild it")


class _Blob:
    """One of a bank's blob files, read a span at a time (``os.pread``: no memory map, so a process
    holds only what it reads, whatever the file's size; one descriptor per file, shared by forks)."""

    def __init__(self, path: Path, size: int) -> None:
        self._fd = -1
        _check_size(path, size)
        self.path, self.size = path, size
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def read(self, offset: int, size: int) -> np.ndarray:
        """``size`` bytes from ``offset``, a read-only uint8 array (shorter if the file is)."""
        if hasattr(os, "pread"):
            data = os.pread(self._fd, size, offset)
        else:  # pragma: no cover - no pread (Windows): seek and read, one reader at a time
            with _SEEK_LOCK:
                os.lseek(self._fd, offset, os.SEEK_SET)
                data = os.read(self._fd, size)
        return np.frombuffer(data, np.uint8)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


_SEEK_LOCK = threading.Lock()


class Bank:
    """A bank written by :func:`build_bank`: opening it reads no pixels.

    ``objects``: the object table (read-only memory map, mapped on first use); ``record(i)``: one
    row of it, read on its own; ``meta``: the parsed ``meta.json``; ``codec``: how its crops are
    stored. ``get(i)`` reads that one object's row and two spans of the blobs (``os.pread``, never
    a whole file, and no memory map: what a process that pastes holds does not grow with the
    bank) and decodes them. Reads format 1 and 2 banks.
    """

    def __init__(self, path: str | os.PathLike, *, check_table: bool = True) -> None:
        """``check_table``: compare the object table with its SHA-256 in ``meta.json`` (cheap: the
        table is small; the engine's workers, which reopen a bank the planner has checked, skip
        it). The pixel and mask blobs are checked by :meth:`verify` (``ltaug bank --verify``)."""
        self.path = Path(path)
        if not (self.path / META).is_file():
            raise InputError(f"{self.path}: not an object bank (no {META})")
        meta = read_json(self.path / META)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(f"{self.path / META}: not an object bank (format is not {FORMAT!r})")
        version = meta.get("format_version")
        if version not in READS:
            raise InputError(f"{self.path}: object bank format version {version}, this ltaug reads versions "
                             f"{' and '.join(map(str, READS))}; rebuild it with `ltaug bank` (or read it with the "
                             f"ltaug that wrote it, {meta.get('ltaug_version', 'unknown')})")
        self.meta = meta
        self.format_version = int(version)
        try:
            self.codec = Codec.from_meta(meta)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{self.path / META}: unreadable codec ({exc}); the bank is damaged, rebuild it") from None
        files = meta["files"]
        _check_size(self.path / OBJECTS, files[OBJECTS])
        if check_table and "sha256" in meta and file_sha256(self.path / OBJECTS) != meta["sha256"][OBJECTS]:
            raise InputError(f"{self.path / OBJECTS}: does not match its checksum in meta.json; the bank is damaged, "
                             f"rebuild it")
        dtype = OBJECT_DTYPE if self.format_version == 2 else OBJECT_DTYPE_V1
        try:
            with open(self.path / OBJECTS, "rb") as fh:
                major, _ = np.lib.format.read_magic(fh)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, fortran, found = read_header(fh)
                start = fh.tell()
        except ValueError:
            shape, fortran, found, start = (), False, None, 0
        if found != dtype or len(shape) != 1 or fortran or start + shape[0] * dtype.itemsize != files[OBJECTS]:
            raise InputError(f"{self.path / OBJECTS}: unexpected columns; the bank is damaged, rebuild it")
        self._length, self._table_start = int(shape[0]), start
        self._table = _Blob(self.path / OBJECTS, files[OBJECTS])
        self._pixels = _Blob(self.path / PIXELS, files[PIXELS])
        self._masks = _Blob(self.path / MASKS, files[MASKS])
        self._by_class: tuple[np.ndarray, np.ndarray] | None = None  # rows sorted by class, and their classes

    def verify(self) -> list[str]:
        """Every blob compared with its SHA-256 in ``meta.json``: one line per problem (none: intact)."""
        sums = self.meta.get("sha256")
        if not sums:
            return [f"{self.path / META}: records no checksums (a bank of an older ltaug): rebuild it to verify it"]
        return [f"{self.path / name}: does not match its checksum in meta.json (damaged); rebuild the bank"
                for name, digest in sums.items() if file_sha256(self.path / name) != digest]

    @functools.cached_property
    def objects(self) -> np.ndarray:
        """The object table (``OBJECT_DTYPE``), a read-only memory map, mapped on first use (a plain
        array over the map: np.memmap's indexing costs microseconds per row). Reading a column
        touches the whole table (about 120 bytes per object); :meth:`record` reads one row."""
        return np.asarray(np.load(self.path / OBJECTS, mmap_mode="r", allow_pickle=False))

    def record(self, i: int) -> np.void:
        """Row ``i`` of the object table, read on its own (no map of the table: a process that reads
        a few objects of a large bank holds only those rows)."""
        n = self._length
        if not -n <= i < n:
            raise IndexError(f"object {i} is out of range: the bank holds {n}")
        size = self._table_dtype.itemsize
        return np.frombuffer(self._table.read(self._table_start + (i % n) * size, size), self._table_dtype)[0]

    @property
    def _table_dtype(self) -> np.dtype:
        return OBJECT_DTYPE if self.format_version == 2 else OBJECT_DTYPE_V1

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return (f"Bank({str(self.path)!r}, {len(self)} objects, {len(self.meta['categories'])} categories, "
                f"{self.codec})")

    @property
    def selected_classes(self) -> frozenset[int] | None:
        """The category ids the bank was built for (``selection.category_ids``); None: every class."""
        ids = (self.meta.get("selection") or {}).get("category_ids")
        return None if ids is None else frozenset(int(i) for i in ids)

    def _spans(self, i: int) -> tuple[int, int, int, int, int, int]:
        row = self.record(i)
        h, w = int(row["height"]), int(row["width"])
        if self.format_version == 1:
            return h, w, int(row["pixel_offset"]), h * w * 3, int(row["mask_offset"]), (h * w + 7) // 8
        return h, w, int(row["pixel_offset"]), int(row["pixel_size"]), int(row["mask_offset"]), int(row["mask_size"])

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Object ``i``'s crop (uint8 BGR, h x w x 3) and mask (uint8 0/1, h x w), both read-only."""
        h, w, p, ps, m, ms = self._spans(i)
        crop = self.codec.decode_crop(self._pixels.read(p, ps), h, w)
        mask = self.codec.decode_mask(self._masks.read(m, ms), h, w)
        if crop is None or mask is None:
            what = PIXELS if crop is None else MASKS
            raise InputError(f"{self.path / what}: object {i} (annotation id {int(self.record(i)['annotation_id'])}) "
                             f"does not decode; the bank is damaged (`ltaug bank --verify {self.path}`), rebuild it")
        crop.flags.writeable = mask.flags.writeable = False
        return crop, mask

    def by_class(self, category_id: int, *, exclude: int = 0) -> np.ndarray:
        """Rows of class ``category_id``, ascending; ``exclude``: drop rows with any of these flags."""
        if self._by_class is None:
            cats = np.asarray(self.objects["category_id"])
            order = np.argsort(cats, kind="stable")
            self._by_class = (order, cats[order])
        order, sorted_cats = self._by_class
        lo, hi = np.searchsorted(sorted_cats, [category_id, category_id + 1])
        rows = order[lo:hi]
        if exclude:
            rows = rows[(np.asarray(self.objects["flags"])[rows] & int(exclude)) == 0]
        return rows

    def class_counts(self) -> dict[int, int]:
        """Objects per category id: every category of the source file (zeros included), file order."""
        counts = dict.fromkeys((c["id"] for c in self.meta["categories"]), 0)
        ids, n = np.unique(np.asarray(self.objects["category_id"]), return_counts=True)
        counts.update(zip(ids.tolist(), n.tolist()))
        return counts
