"""Masks of annotations as the engine sees them, and the RLE arithmetic of pasting.

One convention everywhere (bank, engine, trainer): an annotation's mask is the pycocotools
rasterisation of its segmentation, and a box-only annotation's mask is its bbox rasterised by
pycocotools (``frPyObjects`` of the box, which is what COCO evaluation uses for boxes given as
segmentations).
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from ltaug.errors import InputError
from ltaug.io import geometry
from ltaug.pixels.functional import resize_mask


def annotation_rle(seg, bbox, height: int, width: int, ann_id=None) -> tuple[dict, bool]:
    """An annotation's mask (its ``segmentation``, else its ``bbox``) as a compressed RLE of the
    image's size, and whether it is box-only.

    A segmentation that pycocotools cannot rasterise, or an RLE of another size, raises a
    one-line :class:`InputError` naming annotation ``ann_id``.
    """
    try:
        if geometry.segmentation_kind(seg) == geometry.NONE:
            return box_rle(bbox, height, width), True
        rle = geometry.to_rle(seg, height, width)
    except Exception as exc:  # noqa: BLE001 (pycocotools raises bare exceptions on corrupt input)
        raise InputError(f"annotation id {ann_id}: segmentation cannot be rasterised ({exc})") from None
    if [int(s) for s in rle["size"]] != [height, width]:
        raise InputError(f"annotation id {ann_id}: mask size {list(rle['size'])} differs from its image's "
                         f"[height, width] [{height}, {width}]")
    return rle, False


def box_rle(bbox, height: int, width: int) -> dict:
    """The ``[x, y, w, h]`` box rasterised by pycocotools, as a compressed RLE."""
    return mask_utils.frPyObjects(np.array([bbox], dtype=np.float64), height, width)[0]


def box_mask(bbox, height: int, width: int) -> np.ndarray:
    """The ``[x, y, w, h]`` box rasterised by pycocotools, as a uint8 ``height x width`` mask."""
    return mask_utils.decode(box_rle(bbox, height, width))


def local_rle(mask: np.ndarray, x: int, y: int, height: int, width: int) -> dict:
    """Compressed RLE of an image of ``height x width`` that is ``mask`` at (x, y) and 0 elsewhere."""
    return rle_from_runs(*local_runs(mask, x, y, height, width), height, width)


def local_runs(mask: np.ndarray, x: int, y: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The runs of 1s of ``mask`` placed at (x, y) in a ``height x width`` image, as column-major
    pixel indices: ``starts`` (first pixel of each run) and ``ends`` (one past its last), ascending.

    Built from the mask's column transitions (cost grows with the object, not the image): each
    column of the mask, with a 0 above and below it, changes value at the first row of each run
    and at the row after its last, so its transitions alternate start, end. Flattened column by
    column, transition t of the (w, h + 1) array lies at t = c * (h + 1) + r, that is at image
    pixel (c + x) * height + r + y = t + c * (height - h - 1) + x * height + y. A run that
    reaches a column's last image row and the next column's first (a mask as tall as the image)
    is one run.
    """
    h, w = mask.shape
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"mask {w}x{h} at ({x}, {y}) is not inside {width}x{height}")
    padded = np.zeros((w, h + 2), bool)
    padded[:, 1:-1] = np.asarray(mask).T
    at = np.flatnonzero(padded[:, 1:] != padded[:, :-1])
    at += at // (h + 1) * (height - h - 1) + (x * height + y)
    return join_runs(at[0::2], at[1::2])


def join_runs(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, disjoint runs with each run that ends where the next starts merged into one."""
    if starts.size > 1:
        join = starts[1:] == ends[:-1]
        if join.any():
            return starts[np.concatenate([[True], ~join])], ends[np.concatenate([~join, [True]])]
    return starts, ends


def union_runs(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The runs of the union of masks whose pixels do not overlap (each given as ``(starts, ends)``)."""
    starts = np.concatenate([r[0] for r in runs])
    ends = np.concatenate([r[1] for r in runs])
    order = np.argsort(starts, kind="stable")
    return join_runs(starts[order], ends[order])


def complement_runs(starts: np.ndarray, ends: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The runs of the pixels (of ``size`` in all) that are in none of the sorted, disjoint runs."""
    gap_starts = np.concatenate([[0], ends])
    gap_ends = np.concatenate([starts, [size]])
    keep = gap_ends > gap_starts
    return gap_starts[keep], gap_ends[keep]


def rle_from_runs(starts: np.ndarray, ends: np.ndarray, height: int, width: int) -> dict:
    """Compressed RLE of a ``height x width`` mask from its sorted, disjoint, joined runs of 1s.

    COCO's counts alternate 0s and 1s, beginning with 0s: the gap before each run, the run; the
    zeros after the last run end the list when there are any (as pycocotools writes it).
    """
    size = height * width
    if starts.size == 0:
        counts = np.array([size], np.int64)
    else:
        counts = np.empty(2 * starts.size + 1, np.int64)
        counts[0:-1:2] = starts
        counts[2:-1:2] -= ends[:-1]
        counts[1:-1:2] = ends - starts
        counts[-1] = size - ends[-1]
        if counts[-1] == 0:
            counts = counts[:-1]
    return mask_utils.frPyObjects({"counts": counts, "size": [height, width]}, height, width)


def decode_rle(rle: dict) -> np.ndarray:
    """uint8 0/1 mask of an RLE."""
    return mask_utils.decode(rle)


def rle_from_mask(mask: np.ndarray) -> dict:
    """Compressed RLE of a full-size binary mask (fastest when it is already Fortran-ordered)."""
    if mask.dtype == bool and mask.flags.f_contiguous:
        return mask_utils.encode(mask.view(np.uint8))
    return mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))


def area(rle: dict) -> int:
    return int(mask_utils.area(rle))


def tight_bbox(rle: dict) -> list[float]:
    """``[x, y, w, h]`` of the mask's pixels (pixel corners), zeros for an empty mask."""
    return [float(v) for v in mask_utils.toBbox(rle)]


def warp_rle(seg, bbox, src_hw, scale_xy, offset_xy, window, canvas_hw, ann_id=None) -> tuple[dict | None, list, float]:
    """An annotation moved by ``x' = sx * x + ox, y' = sy * y + oy`` onto a canvas and cut to ``window``.

    ``src_hw``: the source image (h, w); ``window``: x0, y0, x1, y1 (integers) of the canvas
    that shows this source (pixels outside it belong to other sources); ``canvas_hw``: (H, W).
    Returns ``(rle, bbox, visible)``: the mask on the canvas as a compressed RLE (None for a
    box-only annotation), its ``[x, y, w, h]``, and the fraction of the moved object that lies
    in the window (0 when nothing does).

    Polygons are moved exactly and rasterised by pycocotools on the canvas; an RLE is decoded,
    resized (bilinear, threshold 0.5) and cut; a box is moved and clipped.
    """
    (sh, sw), (sx, sy), (ox, oy), (H, W) = src_hw, scale_xy, offset_xy, canvas_hw
    x0, y0, x1, y1 = window
    kind = geometry.segmentation_kind(seg)
    if kind == geometry.NONE:
        bx, by, bw, bh = bbox
        nx0, ny0 = max(x0, bx * sx + ox), max(y0, by * sy + oy)
        nx1, ny1 = min(x1, (bx + bw) * sx + ox), min(y1, (by + bh) * sy + oy)
        full = bw * sx * bh * sy
        if nx1 <= nx0 or ny1 <= ny0 or full <= 0:
            return None, [0.0, 0.0, 0.0, 0.0], 0.0
        return None, [nx0, ny0, nx1 - nx0, ny1 - ny0], (nx1 - nx0) * (ny1 - ny0) / full
    if kind == geometry.POLYGON:
        parts = []
        for p in seg:
            xy = np.asarray(p, dtype=np.float64).reshape(-1, 2) * (sx, sy) + (ox, oy)
            parts.append(xy.reshape(-1).tolist())
        whole = mask_utils.merge(mask_utils.frPyObjects(parts, H, W))
        full_area = geometry.polygons_area(seg) * sx * sy
        if (x0, y0, x1, y1) == (0, 0, W, H):
            rle = whole
        else:
            rle = mask_utils.merge([whole, box_rle([x0, y0, x1 - x0, y1 - y0], H, W)], intersect=True)
    else:
        try:
            src = mask_utils.decode(geometry.to_rle(seg, sh, sw))
        except Exception as exc:  # noqa: BLE001 (pycocotools raises bare exceptions on corrupt input)
            raise InputError(f"annotation id {ann_id}: segmentation cannot be rasterised ({exc})") from None
        tw, th = round(sw * sx), round(sh * sy)
        moved = resize_mask(src, tw, th)
        full_area = float(np.count_nonzero(moved))
        # the part of the moved mask inside the window and the canvas
        cx0, cy0 = max(x0, ox, 0), max(y0, oy, 0)
        cx1, cy1 = min(x1, ox + tw, W), min(y1, oy + th, H)
        if cx1 <= cx0 or cy1 <= cy0:
            return _empty(H, W), [0.0, 0.0, 0.0, 0.0], 0.0
        rle = local_rle(moved[cy0 - oy:cy1 - oy, cx0 - ox:cx1 - ox], cx0, cy0, H, W)
    left = area(rle)
    return rle, tight_bbox(rle), (left / full_area if full_area > 0 else 0.0)


def _empty(height: int, width: int) -> dict:
    return mask_utils.frPyObjects({"counts": [height * width], "size": [height, width]}, height, width)
