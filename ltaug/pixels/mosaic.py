"""Mosaic: four images in a 2 x 2 layout around a random centre, masks and boxes carried along.

Bochkovskiy et al., "YOLOv4" (2020) introduced it; mmdetection's ``Mosaic`` carries boxes only,
ultralytics' carries polygons. Here every kind of annotation comes along: polygons are moved
exactly and rasterised on the output, RLE masks are resized with the image, boxes are moved.

Geometry (as mmdetection's, on an output of ``size`` = (W, H) instead of a 2W x 2H canvas):
the centre (cx, cy) is uniform in [W/4, 3W/4] x [H/4, 3H/4]; each image of w x h is resized keeping its
aspect ratio by s = min(W / 2w, H / 2h), so that it fits a quarter of the output; image k sits in quadrant k (top-left, top-right, bottom-left,
bottom-right) with its corner at the centre, and what falls outside the output is cut. An
object cut by the output edge keeps its visible part; it is dropped when less than
``min_visible`` of it (or less than ``min_area`` pixels) remains. Empty canvas is grey 114.
"""
from __future__ import annotations

import cv2
import numpy as np

from ltaug.io.geometry import rle_to_json
from ltaug.pixels import masks
from ltaug.pixels.functional import PAD_VALUE


def plan_mosaic(dataset, spec) -> list[dict]:
    """Recipes ``{"sources": [4 image ids], "centre": [cx, cy]}``; sources uniform with replacement."""
    rng = np.random.default_rng([spec.seed, 0x305A1C])
    ids = dataset.index.image_ids
    n = ids.size if spec.count is None else spec.count
    if ids.size == 0:
        return []
    W, H = spec.size
    src = rng.integers(0, ids.size, size=(n, 4))
    cx = rng.integers(W // 4, 3 * W // 4 + 1, size=n)
    cy = rng.integers(H // 4, 3 * H // 4 + 1, size=n)
    return [{"sources": ids[s].tolist(), "centre": [int(x), int(y)]} for s, x, y in zip(src, cx, cy)]


def tile_layout(src_hw, size, centre, k: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    """Where source k of (h, w) goes: its resized (tw, th), offset (ox, oy) and the visible window."""
    (h, w), (W, H), (cx, cy) = src_hw, size, centre
    s = min(W / (2 * w), H / (2 * h))
    tw, th = max(1, round(w * s)), max(1, round(h * s))
    ox = cx - tw if k in (0, 2) else cx
    oy = cy - th if k in (0, 1) else cy
    window = (max(0, ox), max(0, oy), min(W, ox + tw), min(H, oy + th))
    return (tw, th), (ox, oy), window


def render_mosaic(sources: list[tuple[np.ndarray, dict, list]], recipe: dict, spec) -> tuple[np.ndarray, list[dict], list]:
    """The mosaic image and its annotations (no ids yet, with provenance); category ids of dropped remnants.

    ``sources``: four (pixels, image record, annotations) in quadrant order.
    """
    W, H = spec.size
    canvas = np.full((H, W, 3), PAD_VALUE, np.uint8)
    anns: list[dict] = []
    dropped: list[int] = []
    for k, (img, record, src_anns) in enumerate(sources):
        h, w = img.shape[:2]
        (tw, th), (ox, oy), (x0, y0, x1, y1) = tile_layout((h, w), (W, H), recipe["centre"], k)
        if x1 <= x0 or y1 <= y0:
            dropped.extend(a["category_id"] for a in src_anns)
            continue
        resized = cv2.resize(img, (tw, th), interpolation=cv2.INTER_LINEAR)
        canvas[y0:y1, x0:x1] = resized[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        for a in src_anns:
            out = warp_annotation(a, (h, w), (tw / w, th / h), (ox, oy), (x0, y0, x1, y1), (H, W), spec)
            if out is None:
                dropped.append(a["category_id"])
                continue
            out["ltaug"] = {"op": "mosaic", "source_annotation_id": a["id"], "source_image_id": record["id"],
                            "tile": k}
            anns.append(out)
    return canvas, anns, dropped


def warp_annotation(ann: dict, src_hw, scale_xy, offset_xy, window, canvas_hw, spec) -> dict | None:
    """A copy of ``ann`` moved onto the canvas (mask as RLE, bbox, area), or None if too little remains.

    Crowd regions are kept while any pixel remains (they only tell evaluation what to ignore).
    """
    rle, bbox, visible = masks.warp_rle(ann.get("segmentation"), ann["bbox"], src_hw, scale_xy, offset_xy,
                                        window, canvas_hw, ann.get("id"))
    area = masks.area(rle) if rle is not None else bbox[2] * bbox[3]
    if area <= 0 or (not ann.get("iscrowd") and (visible < spec.min_visible or area < spec.min_area)):
        return None
    out = {k: v for k, v in ann.items() if k not in ("id", "image_id", "segmentation", "ltaug")}
    out["bbox"], out["area"] = bbox, area
    if rle is not None:
        out["segmentation"] = rle_to_json(rle)
    return out
