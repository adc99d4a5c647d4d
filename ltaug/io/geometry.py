"""Pure helpers for COCO geometry: boxes, polygons, run-length encoded (RLE) masks.

COCO stores a segmentation in one of three forms:

* polygons: a list of flat ``[x1, y1, x2, y2, ...]`` lists, one per part, in pixel units;
* uncompressed RLE: ``{"counts": [n0, n1, ...], "size": [h, w]}``, runs of 0s and 1s in
  column-major (Fortran) order, starting with a run of 0s (used for ``iscrowd=1``);
* compressed RLE: the same with ``counts`` as pycocotools' LEB128-like ASCII string.

Rasterisation and RLE arithmetic are delegated to pycocotools (``pycocotools.mask``), so a
mask here is bit-identical to the one COCO evaluation uses. Boxes are ``[x, y, w, h]``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

POLYGON, RLE, COMPRESSED_RLE, NONE = "polygon", "rle", "compressed-rle", "none"


def segmentation_kind(seg: Any) -> str:
    """Return which of the three COCO forms ``seg`` is (``none`` for a missing/empty one)."""
    if seg is None or (isinstance(seg, list) and len(seg) == 0):
        return NONE
    if isinstance(seg, list):
        return POLYGON
    if isinstance(seg, dict) and "counts" in seg:
        return RLE if isinstance(seg["counts"], list) else COMPRESSED_RLE
    raise ValueError(f"unrecognised segmentation of type {type(seg).__name__}")


def to_rle(seg: Any, height: int, width: int) -> dict:
    """Any COCO segmentation -> one compressed RLE (``counts`` as bytes) of size ``height x width``.

    Polygon parts are rasterised by pycocotools and merged (union) into one mask.
    """
    kind = segmentation_kind(seg)
    if kind == POLYGON:
        parts = [list(map(float, p)) for p in seg]
        return mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
    if kind == RLE:
        h, w = seg["size"]
        return mask_utils.frPyObjects(seg, int(h), int(w))
    if kind == COMPRESSED_RLE:
        counts = seg["counts"]
        return {"size": [int(s) for s in seg["size"]],
                "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    raise ValueError("empty segmentation has no mask")


def rle_to_json(rle: dict) -> dict:
    """A compressed RLE with ``counts`` as str, as COCO json stores it."""
    counts = rle["counts"]
    return {"size": [int(s) for s in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def decode(seg: Any, height: int, width: int) -> np.ndarray:
    """Binary mask (uint8, ``height x width``) of any COCO segmentation."""
    return mask_utils.decode(to_rle(seg, height, width))


def mask_area(seg: Any, height: int, width: int) -> int:
    """Number of foreground pixels of the rasterised segmentation."""
    return int(mask_utils.area(to_rle(seg, height, width)))


def polygons_area(polygons: Sequence[Sequence[float]]) -> float:
    """Sum of the parts' shoelace areas, |sum(x_i y_{i+1} - x_{i+1} y_i)| / 2 (overlaps counted twice)."""
    total = 0.0
    for p in polygons:
        xy = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1]
        total += abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2.0
    return total


def polygons_bbox(polygons: Sequence[Sequence[float]]) -> list[float]:
    """Tight ``[x, y, w, h]`` around all polygon vertices."""
    xy = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def segmentation_bbox(seg: Any, height: int, width: int) -> list[float] | None:
    """The box of a segmentation as COCO computes it: the polygon vertices' extent, or the RLE
    mask's (pycocotools ``toBbox``); None for an empty one."""
    kind = segmentation_kind(seg)
    if kind == NONE:
        return None
    box = polygons_bbox(seg) if kind == POLYGON else [float(b) for b in mask_utils.toBbox(to_rle(seg, height, width))]
    return box if box[2] > 0 and box[3] > 0 else None


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x, y, w, h]`` boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer contours of a binary mask as COCO polygons, one per connected part.

    ``cv2.findContours`` returns the centres of the boundary pixels (the convention of
    COCO's own tools and of ultralytics), so the rasterised polygon loses at most the outer
    half-pixel ring. A part too thin for that (its contour encloses less than one pixel, or
    pycocotools rasterises it to no pixel: a single pixel, a one-pixel line, a line with a
    one-pixel spur) becomes instead one rectangle around the corners of each horizontal run of
    its pixels, which rasterises to exactly those pixels, so no object is lost or grown.
    """
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    height, width = mask.shape[:2]
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        flat = c.reshape(-1).astype(np.float64).tolist()
        if len(flat) >= 6 and polygons_area([flat]) >= 1.0 and mask_area([flat], height, width) > 0:
            out.append(flat)
        else:
            out.extend(_run_rectangles(c))
    return out


def _run_rectangles(contour: np.ndarray) -> list[list[float]]:
    """Corner-aligned rectangles, one per horizontal run of the pixels the contour bounds."""
    x, y, w, h = cv2.boundingRect(contour)
    part = np.zeros((h, w), np.uint8)  # the part's box only, the contour shifted into it
    cv2.drawContours(part, [contour], -1, 1, thickness=cv2.FILLED, offset=(-x, -y))
    edges = np.diff(np.pad(part.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rects = []
    for r, row in enumerate(edges):
        for s, e in zip(np.flatnonzero(row == 1).tolist(), np.flatnonzero(row == -1).tolist()):
            x0, x1, y0, y1 = float(x + s), float(x + e), float(y + r), float(y + r + 1)
            rects.append([x0, y0, x1, y0, x1, y1, x0, y1])
    return rects


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``[x, y, w, h]`` rows -> ``[x0, y0, x1, y1]`` rows."""
    boxes = np.asarray(boxes, dtype=np.float64)
    out = boxes.copy()
    out[..., 2:] = boxes[..., :2] + boxes[..., 2:]
    return out


def merge_polygon_parts(parts: Sequence[Sequence[float]]) -> list[float]:
    """Join several polygon parts into one closed polygon with zero-width bridges.

    YOLO-seg stores one polygon per object. Each part after the first is entered from the
    vertex of the running polygon nearest to it and left back along the same bridge, so the
    bridges enclose no area and the rasterised mask is the union of the parts (up to the
    one-pixel-wide bridge lines). This is the approach of ultralytics' ``merge_multi_segment``,
    written here for our flat-list polygons.
    """
    polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in parts if len(p) >= 6]
    if not polys:
        raise ValueError("no polygon part with at least 3 points")
    merged = polys[0]
    for part in polys[1:]:
        d = ((merged[:, None, :] - part[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        # walk: merged[..i], part[j..], part[..j], back to merged[i..]
        rolled = np.roll(part, -j, axis=0)
        loop = np.concatenate([rolled, rolled[:1]])
        merged = np.concatenate([merged[: i + 1], loop, merged[i:]])
    return merged.reshape(-1).tolist()
