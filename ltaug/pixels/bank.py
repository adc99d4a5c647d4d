"""Object bank: every non-crowd instance of a dataset cut out once, stored for fast pasting.

Copy-paste needs, for each object it pastes, the object's pixels and mask. Decoding a
whole source image (and rasterising its masks) for every paste is the slow part; the bank
does it once per image and keeps the cut-outs in flat, memory-mappable files, so getting an
object later is two slices of a memory map and one ``np.unpackbits``.

Building: :func:`build_bank`. Reading: :class:`Bank`.

On-disk format (version 1)
--------------------------
A bank is a folder of four files::

    BANK/
      meta.json     format name and version, source, parameters, categories, counts
      objects.npy   one row per object (numpy structured array, ``OBJECT_DTYPE``)
      pixels.bin    the crops' pixels: uint8 BGR, row-major (h, w, 3), concatenated
      masks.bin     the crops' masks: 1 bit per pixel, row-major (h, w), ``np.packbits``
                    (big bit order), each crop padded to whole bytes, concatenated

``objects.npy`` rows are in the annotation order of the source file, crowd annotations
left out: ``objects["annotation_id"]`` is the file's non-crowd annotation ids in order
(less those of skipped images). Fields, all little-endian and of fixed size:

==================  ==========  ==========================================================
field               type        meaning
==================  ==========  ==========================================================
pixel_offset        int64       byte offset of the crop in ``pixels.bin`` (h * w * 3 bytes)
mask_offset         int64       byte offset of the mask in ``masks.bin`` (ceil(h * w / 8) bytes)
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

``meta.json``: ``format`` ("ltaug-object-bank"), ``format_version`` (1), ``ltaug_version``,
``source`` (annotation file path and sha256, image folder, dataset kind), ``params``
(min_area, border, occluded_fraction, on_error, seed), ``categories`` (every category of
the file, in file order: id, name, objects in the bank), ``counts`` (objects, images read,
images skipped with id and reason, crowd annotations excluded, unflagged objects, objects
per flag), ``flags`` (name -> bit), ``files`` (name -> size in bytes). No timestamps and no
worker count: the same inputs and parameters give byte-identical files.

Pixels are what :func:`ltaug.pixels.imagefile.read_image` reads: 3-channel 8-bit BGR, upright
when the json has the EXIF-upright size and as stored when it has the stored one (the rule of
:mod:`ltaug.io.imagecheck`, the one ``ltaug validate`` checks).
"""
from __future__ import annotations

import enum
import functools
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from pycocotools import mask as mask_utils

from ltaug.errors import InputError, SpecError, UsageError
from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import dumps, file_sha256, read_json
from ltaug.io.lock import output_lock
from ltaug.io.paths import checked_image_path, image_file_name, unsafe_file_name_reason
from ltaug.pixels.imagefile import ImageFileError, read_image
from ltaug.pixels.masks import annotation_rle
from ltaug.pool import imap_ordered

FORMAT = "ltaug-object-bank"
FORMAT_VERSION = 1
META, OBJECTS, PIXELS, MASKS = "meta.json", "objects.npy", "pixels.bin", "masks.bin"
ON_ERROR = ("raise", "skip")


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


OBJECT_DTYPE = np.dtype([
    ("pixel_offset", "<i8"), ("mask_offset", "<i8"),
    ("height", "<i4"), ("width", "<i4"),
    ("box", "<i4", (4,)), ("bbox", "<f8", (4,)),
    ("image_id", "<i8"), ("image_height", "<i4"), ("image_width", "<i4"),
    ("annotation_id", "<i8"), ("category_id", "<i8"),
    ("area", "<i8"), ("occlusion", "<f4"), ("flags", "<u2"),
])


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
    """One source image and all its annotations (crowd too: they count for occlusion).

    ``anns``: ``(annotation_id, category_id, bbox, segmentation, row)`` in file order, ``row``
    being the object's row in ``objects.npy`` (-1: a crowd annotation, not banked).
    ``boxes``: crop boxes of the banked ones, in the same order. Their pixels go to
    ``pixels.bin`` from ``pixel_offset`` on, their masks to ``masks.bin`` from ``mask_offset``.
    """

    image_id: int
    path: str
    height: int
    width: int
    anns: tuple
    boxes: tuple
    pixel_offset: int
    mask_offset: int


@dataclass(frozen=True)
class _Job:
    """What every task shares: the parameters and where the blobs go."""

    params: Params
    on_error: str
    pixels: str
    masks: str


@dataclass
class _ImageResult:
    image_id: int
    rows: np.ndarray | None = None      # rows of objects.npy filled by this image
    table: np.ndarray | None = None     # those rows (OBJECT_DTYPE)
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


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _crop_image(task: _ImageTask, job: _Job) -> _ImageResult:
    """Decode the image once; cut out, flag and write every non-crowd object in it."""
    img = read_image(task.path, task.image_id, task.height, task.width)
    H, W, params = task.height, task.width, job.params
    rles, box_only = zip(*(annotation_rle(a[3], a[2], H, W, a[0]) for a in task.anns))
    rles = list(rles)
    full_areas = mask_utils.area(rles)
    tight = mask_utils.toBbox(rles)
    tight[:, 2:] += tight[:, :2]  # x0, y0, x1, y1 (pycocotools' boxes are integers here)
    kept = [k for k, a in enumerate(task.anns) if a[4] >= 0]
    table = np.zeros(len(kept), OBJECT_DTYPE)
    pixels, masks = bytearray(), bytearray()
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
        t["pixel_offset"], t["mask_offset"] = task.pixel_offset + len(pixels), task.mask_offset + len(masks)
        t["height"], t["width"] = y1 - y0, x1 - x0
        t["box"], t["bbox"] = (x0, y0, x1, y1), bbox
        t["image_id"], t["image_height"], t["image_width"] = task.image_id, H, W
        t["annotation_id"], t["category_id"] = ann_id, cat_id
        t["area"], t["occlusion"], t["flags"] = area, occlusion, int(flags)
        pixels += np.ascontiguousarray(img[y0:y1, x0:x1]).data
        masks += np.packbits(crop_mask).data
    # this image's objects are contiguous in the blobs: one write each, at offsets planned up front
    for path, data, offset in ((job.pixels, pixels, task.pixel_offset), (job.masks, masks, task.mask_offset)):
        fd = os.open(path, os.O_WRONLY)
        try:
            _pwrite_all(fd, data, offset)
        finally:
            os.close(fd)
    rows = np.array([task.anns[k][4] for k in kept], dtype=np.int64)
    return _ImageResult(task.image_id, rows, table)


def _crop_chunk(tasks: list[_ImageTask], job: _Job) -> list[_ImageResult]:
    out = []
    for task in tasks:
        try:
            out.append(_crop_image(task, job))
        except ImageFileError as exc:  # annotation problems always raise: the file was loaded as valid
            if job.on_error == "raise":
                raise
            out.append(_ImageResult(task.image_id, problem=str(exc)))
    return out


# -- planning and running (the calling process) -----------------------------------------------

def _starts(sizes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Offset of each item when the items are laid end to end in ``order``."""
    starts = np.empty_like(sizes)
    starts[order] = np.cumsum(sizes[order]) - sizes[order]
    return starts


def _plan(dataset: Dataset, images_dir: Path) -> tuple[list[_ImageTask], int, int, int, int]:
    """Tasks for the images with at least one non-crowd annotation (file order), each with its
    objects' crop boxes and blob offsets fixed here, so that workers write in place; then the
    number of objects, of crowd annotations left out, and the two blob sizes."""
    idx = dataset.index
    keep = ~idx.ann_iscrowd
    n_objects = int(keep.sum())
    rows = np.full(idx.num_annotations, -1, np.int64)
    rows[keep] = np.arange(n_objects)
    boxes = crop_boxes(idx.ann_boxes, idx.image_heights[idx.ann_image_pos], idx.image_widths[idx.ann_image_pos])
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    pixel_size, mask_size = np.where(keep, area * 3, 0), np.where(keep, (area + 7) // 8, 0)
    by_image, bounds = idx.annotations_by_image()  # the blob order: image, then annotation
    pixel_start, mask_start = _starts(pixel_size, by_image), _starts(mask_size, by_image)
    images, anns = dataset.images, dataset.annotations
    tasks = []
    for ip in np.flatnonzero(np.bincount(idx.ann_image_pos[keep], minlength=idx.num_images)).tolist():
        image = images[ip]
        name = image_file_name(image)
        reason = "is missing" if name is None else unsafe_file_name_reason(name)
        if reason or name is None:
            raise InputError(f"image id {image['id']}: file name {name!r} {reason}")
        pos = by_image[bounds[ip]:bounds[ip + 1]]
        first = pos[0]
        tasks.append(_ImageTask(
            int(idx.image_ids[ip]), checked_image_path(images_dir, name, image["id"]), int(idx.image_heights[ip]), int(idx.image_widths[ip]),
            anns=tuple((int(idx.ann_ids[p]), int(idx.ann_category_ids[p]), tuple(idx.ann_boxes[p].tolist()),
                        anns[p].get("segmentation"), int(rows[p])) for p in pos.tolist()),
            boxes=tuple(tuple(b) for b in boxes[pos[keep[pos]]].tolist()),
            pixel_offset=int(pixel_start[first]), mask_offset=int(mask_start[first])))
    return tasks, n_objects, int(idx.ann_iscrowd.sum()), int(pixel_size.sum()), int(mask_size.sum())


def _chunks(tasks: list, workers: int) -> Iterator[list]:
    """About 4 chunks per worker, 1 to 16 images each: few round trips, balanced load."""
    size = max(1, min(16, len(tasks) // (4 * workers)))
    return (tasks[i:i + size] for i in range(0, len(tasks), size))


def _compact(path: Path, offsets: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Close the gaps that skipped images left in a blob; the objects' new offsets."""
    order = np.argsort(offsets, kind="stable")
    new = _starts(sizes, order)
    fd = os.open(path, os.O_RDWR)
    try:
        for i in order.tolist():  # ascending, and new <= old: a move never overwrites unread data
            if new[i] != offsets[i]:
                _pwrite_all(fd, os.pread(fd, int(sizes[i]), int(offsets[i])), int(new[i]))
        os.ftruncate(fd, int(sizes.sum()))
    finally:
        os.close(fd)
    return new


def _write_blobs(tmp: Path, tasks: list, n_objects: int, sizes: tuple[int, int], job: _Job, workers: int,
                 progress: bool) -> tuple[np.ndarray, list[dict]]:
    """Fill ``pixels.bin`` / ``masks.bin`` (pre-sized; workers write in place); the table and skips."""
    from tqdm import tqdm

    for name, size in zip((PIXELS, MASKS), sizes):
        with open(tmp / name, "wb") as fh:
            fh.truncate(size)
    table = np.zeros(n_objects, OBJECT_DTYPE)
    filled = np.zeros(n_objects, bool)
    skipped = []
    with imap_ordered(functools.partial(_crop_chunk, job=job), _chunks(tasks, workers), workers) as chunks, \
            tqdm(total=len(tasks), desc="bank", unit="img", disable=not progress, leave=False) as bar:
        for res in itertools.chain.from_iterable(chunks):
            bar.update(1)
            if res.problem is not None:
                skipped.append({"image_id": res.image_id, "reason": res.problem})
                continue
            table[res.rows] = res.table
            filled[res.rows] = True
    table = table[filled]
    if skipped:
        hw = table["height"].astype(np.int64) * table["width"]
        table["pixel_offset"] = _compact(tmp / PIXELS, table["pixel_offset"], hw * 3)
        table["mask_offset"] = _compact(tmp / MASKS, table["mask_offset"], (hw + 7) // 8)
    for name in (PIXELS, MASKS):
        with open(tmp / name, "rb+") as fh:
            os.fsync(fh.fileno())
    return table, skipped


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


def build_bank(dataset: Dataset, images_dir: str | os.PathLike, out_dir: str | os.PathLike, *, workers: int | None = None, min_area: int = 32,
               border: float = 1.0, occluded_fraction: float = 0.5, on_error: str = "raise",
               progress: bool = True, seed: int | None = None) -> dict:
    """Cut every non-crowd annotation of ``dataset`` out of its image into a bank at ``out_dir``.

    Each source image is decoded once (only images with at least one non-crowd annotation
    are read) and all its objects are cut, masked and flagged (:class:`Flag`) in one go.
    ``workers`` processes (default ``os.cpu_count()``; 1 runs in this process) share the
    images and write their crops in place at offsets planned up front, so the files are
    byte-identical whatever the count. The bank is built in a temporary folder beside
    ``out_dir`` and renamed into place when complete: a failed build removes it, and the next
    build removes what a killed one left (``.NAME.*.tmp``). One builder per bank: a second
    build of the same ``out_dir`` while one runs is refused (:mod:`ltaug.io.lock`). An existing
    bank at ``out_dir`` is replaced; any other non-empty folder is refused (:class:`UsageError`).

    ``on_error="raise"``: a missing, undecodable or wrongly sized image raises a one-line
    :class:`InputError` naming its id and path; ``"skip"`` leaves its objects out and lists
    it in ``meta.json``. A segmentation that cannot be rasterised always raises. ``seed`` is
    only recorded: building involves no randomness.

    Returns a summary: ``path``, ``objects``, ``images`` (read), ``images_skipped``,
    ``crowd_excluded``, ``flags`` (objects per flag), ``bytes`` (the bank's size on disk),
    ``seconds``, ``images_per_s``, ``workers`` (processes used).
    """
    if on_error not in ON_ERROR:
        raise UsageError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if min_area < 0 or border < 0 or not 0 <= occluded_fraction <= 1:
        raise UsageError(f"need min_area >= 0, border >= 0 and 0 <= occluded_fraction <= 1, "
                         f"got {min_area}, {border}, {occluded_fraction}")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise SpecError("workers", f"must be >= 1, got {workers}")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: image folder not found")
    _check_output(out_dir, images_dir)
    params = Params(int(min_area), float(border), float(occluded_fraction))
    start = time.perf_counter()
    tasks, n_objects, n_crowd, pixel_bytes, mask_bytes = _plan(dataset, images_dir)
    workers = min(workers, max(1, len(tasks)))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):  # one builder per bank; the temporary folders of killed builds go
        for stale in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        return _build_locked(dataset, images_dir, out_dir, tasks, n_objects, n_crowd, (pixel_bytes, mask_bytes),
                             params, on_error, seed, workers, progress, start)


def _build_locked(dataset: Dataset, images_dir: Path, out_dir: Path, tasks: list, n_objects: int, n_crowd: int,
                  sizes: tuple[int, int], params: Params, on_error: str, seed: int | None, workers: int,
                  progress: bool, start: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        job = _Job(params, on_error, str(tmp / PIXELS), str(tmp / MASKS))
        table, skipped = _write_blobs(tmp, tasks, n_objects, sizes, job, workers, progress)
        np.save(tmp / OBJECTS, table, allow_pickle=False)
        meta = _meta(dataset, images_dir, table, tmp, params, on_error, seed,
                     images=len(tasks) - len(skipped), skipped=skipped, crowd=n_crowd)
        with open(tmp / META, "wb") as fh:
            fh.write(dumps(meta, indent=True))
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    return {"path": str(out_dir), "objects": int(table.size), "images": len(tasks) - len(skipped),
            "images_skipped": len(skipped), "crowd_excluded": n_crowd, "flags": meta["counts"]["flags"],
            "bytes": sum(f.stat().st_size for f in out_dir.iterdir()), "seconds": seconds,
            "images_per_s": len(tasks) / seconds if seconds > 0 else float("inf"), "workers": workers}


def _meta(dataset: Dataset, images_dir: Path, table: np.ndarray, folder: Path, params: Params, on_error: str,
          seed: int | None, *, images: int, skipped: list, crowd: int) -> dict:
    from ltaug import __version__

    src, idx = dataset.path, dataset.index
    per_class = np.bincount(idx.category_positions(table["category_id"]), minlength=idx.num_categories)
    flags = table["flags"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ltaug_version": __version__,
        "source": {"annotations": None if src is None else str(src),
                   "sha256": file_sha256(src) if src is not None and Path(src).is_file() else None,
                   "images": str(images_dir), "kind": dataset.kind},
        "params": {"min_area": params.min_area, "border": params.border,
                   "occluded_fraction": params.occluded_fraction, "on_error": on_error, "seed": seed},
        "categories": [{"id": int(i), "name": n, "objects": int(c)}
                       for i, n, c in zip(idx.category_ids, idx.category_names, per_class)],
        "counts": {"objects": int(table.size), "images": images, "images_skipped": skipped,
                   "crowd_excluded": crowd, "unflagged": int(np.count_nonzero(flags == 0)),
                   "flags": {f.name: int(np.count_nonzero(flags & f.value)) for f in Flag}},
        "flags": {f.name: f.value for f in Flag},
        "files": {name: (folder / name).stat().st_size for name in (OBJECTS, PIXELS, MASKS)},
        "sha256": {name: file_sha256(folder / name) for name in (OBJECTS, PIXELS, MASKS)},
    }


# -- reading ----------------------------------------------------------------------------------

def _map(path: Path, size: int) -> np.ndarray:
    """Read-only memory map of a blob of ``size`` bytes (checked; an empty array when 0), as a
    plain array over the map: slicing an ``np.memmap`` costs microseconds per slice more."""
    actual = path.stat().st_size if path.is_file() else -1
    if actual != size:
        found = "missing" if actual < 0 else f"{actual} bytes"
        raise InputError(f"{path}: {found}, meta.json says {size} bytes; the bank is damaged, rebuild it")
    return np.asarray(np.memmap(path, dtype=np.uint8, mode="r")) if size else np.zeros(0, np.uint8)


class Bank:
    """A bank written by :func:`build_bank`, memory-mapped: opening it reads no pixels.

    ``objects``: the object table (``OBJECT_DTYPE``, read-only memory map); ``meta``: the
    parsed ``meta.json``. ``get(i)`` is two slices of memory maps and an ``unpackbits``.
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
        if version != FORMAT_VERSION:
            raise InputError(f"{self.path}: object bank format version {version}, this ltaug reads version "
                             f"{FORMAT_VERSION}; rebuild it with `ltaug bank`")
        self.meta = meta
        files = meta["files"]
        _map(self.path / OBJECTS, files[OBJECTS])
        if check_table and "sha256" in meta and file_sha256(self.path / OBJECTS) != meta["sha256"][OBJECTS]:
            raise InputError(f"{self.path / OBJECTS}: does not match its checksum in meta.json; the bank is damaged, "
                             f"rebuild it")
        # a plain array over the map (np.memmap's indexing costs microseconds per row)
        self.objects = np.asarray(np.load(self.path / OBJECTS, mmap_mode="r", allow_pickle=False))
        if self.objects.dtype != OBJECT_DTYPE or self.objects.ndim != 1:
            raise InputError(f"{self.path / OBJECTS}: unexpected columns; the bank is damaged, rebuild it")
        self._pixels = _map(self.path / PIXELS, files[PIXELS])
        self._masks = _map(self.path / MASKS, files[MASKS])
        self._by_class: tuple[np.ndarray, np.ndarray] | None = None  # rows sorted by class, and their classes

    def verify(self) -> list[str]:
        """Every blob compared with its SHA-256 in ``meta.json``: one line per problem (none: intact)."""
        sums = self.meta.get("sha256")
        if not sums:
            return [f"{self.path / META}: records no checksums (a bank of an older ltaug): rebuild it to verify it"]
        return [f"{self.path / name}: does not match its checksum in meta.json (damaged); rebuild the bank"
                for name, digest in sums.items() if file_sha256(self.path / name) != digest]

    def __len__(self) -> int:
        return int(self.objects.shape[0])

    def __repr__(self) -> str:
        return f"Bank({str(self.path)!r}, {len(self)} objects, {len(self.meta['categories'])} categories)"

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Object ``i``'s crop (uint8 BGR, h x w x 3, a read-only view) and mask (uint8 0/1, h x w)."""
        row = self.objects[i]
        h, w = int(row["height"]), int(row["width"])
        p, m = int(row["pixel_offset"]), int(row["mask_offset"])
        crop = self._pixels[p:p + h * w * 3].reshape(h, w, 3)
        mask = np.unpackbits(self._masks[m:m + (h * w + 7) // 8], count=h * w).reshape(h, w)
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
