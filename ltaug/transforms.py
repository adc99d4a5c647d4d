"""Copy-paste, mosaic and mixup for online use: albumentations transforms over image, masks, boxes, labels.

The offline engine (``ltaug paste / mosaic / mixup``) writes a new dataset; these transforms do
the same operations inside your own data loader, one sample at a time::

    import albumentations as A
    from ltaug.transforms import CocoSource, CopyPaste, MixUp, Mosaic

    source = CocoSource("train.json", "images/train")           # the other images, for Mosaic / MixUp
    aug = A.Compose([
        CopyPaste("bank/", objects=(1, 3), weighting="inverse", p=0.5),
        Mosaic(source, size=(640, 640), p=0.3),
        A.HorizontalFlip(p=0.5),
    ], bbox_params=A.BboxParams(format="coco", label_fields=["labels"]), seed=0)
    out = aug(image=image, masks=masks, bboxes=bboxes, labels=labels)

Inputs and outputs
------------------
``image``: uint8 ``H x W x 3``, RGB (albumentations' convention; ``CopyPaste(rgb=False)`` and
``CocoSource(rgb=False)`` for BGR images, their default until they moved to RGB); ``masks``: one 0/1
(or bool) ``H x W`` mask per object, as a list or an ``N x H x W`` array (optional: without it
objects are their boxes); ``bboxes``: one box per object, in the ``BboxParams`` format;
``labels`` (any name listed in ``label_fields``): one label per object. Every transform keeps
``masks[i]``, ``bboxes[i]`` and ``labels[i]`` the same object: pasted / added objects are
appended (after the image's own, in order); an object of which less than ``min_visible`` stays
visible (covered by a paste, or cut by the mosaic's edge) is removed from all three; one partly
covered or cut keeps the visible part of its mask and gets that part's tight box; an object
nothing touches keeps its box as it was. An object with nothing left in the image (an empty
mask, or a box with no area inside the image) is removed from all three.

Called on its own (not inside ``A.Compose``) a transform runs in *plain mode*: ``bboxes`` are
COCO ``[x, y, w, h]`` pixels, ``labels`` (``label_field``) are passed and returned as they are,
and the call returns a dict with the same keys (and the same container types) as it was given.

Order in a Compose
------------------
albumentations filters boxes (with their label fields) but never masks: a crop or an affine
leaves the objects it moves out of the image as empty masks and boxes clipped to nothing, and
drops those boxes only when the Compose ends. A transform here, placed after such a transform,
removes those objects from masks, boxes and labels together and drops at once (masks with
them) every object the Compose's ``BboxParams`` filter would drop at its end, so the output's
masks, boxes and labels stay the same objects: spatial transforms *before* CopyPaste, Mosaic
and MixUp are handled (their boxes are kept as they made them: a crop's are clipped boxes).
A transform *after* them that can drop objects (a crop, an affine) drops boxes without their
masks, as it does without ltaug: put crops before these transforms. An earlier transform
that dropped boxes itself (``BboxParams(min_area=..., min_visibility=...)`` filter after every
transform) leaves more masks than boxes: refused, with what to do. Transforms before Mosaic
and MixUp change this image only; the other images come from ``source`` as it gives them.
Objects these transforms add get ``fill_labels`` (default 0) in label fields other than
``label_field``.

Serialisation
-------------
``A.to_dict`` / ``A.from_dict``, ``A.save`` / ``A.load`` (JSON and YAML; import
``ltaug.transforms`` before loading, which registers the classes), ``A.ReplayCompose`` and
``pickle`` work: a bank is written as its folder, a :class:`CocoSource` as its arguments (a
list source is written as it is: in memory only), the transform's own ``seed`` with it. A
replay records the transform's draws (``get_applied_params()``), not its output, and renders
them again on the data it is given: the same input gives the same output.

What each transform does
------------------------
* :class:`CopyPaste`: the engine's copy-paste (``ltaug paste``) on one sample, through the same
  core functions of :mod:`ltaug.pixels.copy_paste`: picks ``objects`` objects from an object bank
  (``ltaug bank``) by class (``inverse``: class c with probability proportional to n_c^-power,
  ``uniform``: as often as the bank holds them; :class:`~ltaug.pixels.copy_paste.ObjectPool`),
  places each (size relative to the target image kept from the source image, log-uniform
  ``scale`` jitter, optional flip, at most ``max_overlap`` of any box covered;
  :func:`~ltaug.pixels.copy_paste.place_objects`), pastes it (``hard`` / ``gaussian`` / ``poisson``
  blending; :func:`~ltaug.pixels.copy_paste.paste_objects`) and cuts what it covers
  (:class:`~ltaug.pixels.copy_paste.Occlusion`). Given the same image, objects, class counts,
  class order and generator state, it gives the engine's boxes, masks, labels and pixels. The
  bank's crops are BGR (as OpenCV decodes) and are pasted as RGB unless ``rgb=False``.
* :class:`Mosaic`: this image and three others in a 2 x 2 layout around a random centre, pixels by
  :func:`ltaug.pixels.mosaic.render_mosaic` (output ``size`` = (W, H), grey 114 where no image reaches);
  objects cut by the output keep their visible part and go when less than ``min_visible`` of
  them (or fewer than ``min_area`` pixels) remain. This image takes a random quadrant.
* :class:`MixUp`: ``lam * this + (1 - lam) * other`` with lam ~ Beta(alpha, alpha), the other
  image scaled to fit at the top-left corner (:func:`ltaug.pixels.mixup.render_mixup`); both images'
  objects are kept. ``weight_field`` (optional) receives each object's weight: lam times its old
  weight for this image's objects, 1 - lam times its weight (default 1) for the other's.

The other images (Mosaic, MixUp) come from ``source``: anything with ``len(source)`` and
``source[i]``, where an item is a dict ``{"image", "bboxes", <label fields>, optionally
"masks"}`` or a tuple ``(image, masks, bboxes, labels)``, boxes in the same format as the call's
(the ``BboxParams`` format in a Compose, COCO in plain mode). :class:`CocoSource` is one over a
COCO/LVIS file and its image folder; a list of such dicts is one too. With ``source=None`` the
items come from the call itself, ``data[metadata_key]`` (a list), as albumentations' own
``Mosaic`` takes them.

Randomness
----------
Every draw comes from the transform's numpy generator (``self.random_generator``), never from
global state: ``seed=s`` seeds it; ``A.Compose(..., seed=s)`` reseeds every transform in it
(and ``A.Compose(..., seed=None)``, the default, leaves a transform's own ``seed`` in force).
Same seed, same calls, same outputs. In DataLoader workers, which start from copies of one
generator, give each worker its own stream: ``compose.set_random_seed(base + worker_id)`` in a
``worker_init_fn`` (see ``examples/online_copy_paste.py``). ltaug imports no torch and works
without it (albumentations imports torch itself where it is installed).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import albumentations as A
import cv2
import numpy as np
from albumentations.core.bbox_utils import (
    convert_bboxes_from_albumentations,
    convert_bboxes_to_albumentations,
)

from ltaug import ops
from ltaug.errors import InputError
from ltaug.io.dataset import Dataset
from ltaug.io.geometry import xywh_to_xyxy
from ltaug.io.paths import image_file_name
from ltaug.io.read import load_dataset
from ltaug.pixels import masks as mask_ops
from ltaug.pixels.bank import Bank, Flag
from ltaug.pixels.copy_paste import (
    DEFAULT_EXCLUDE,
    ObjectPool,
    Occlusion,
    eligible_rows,
    is_box_only,
    paste_objects,
    place_objects,
)
from ltaug.pixels.functional import resize_mask
from ltaug.pixels.imagefile import read_image
from ltaug.pixels.mixup import render_mixup
from ltaug.pixels.mosaic import render_mosaic, tile_layout

if int(A.__version__.split(".")[0]) < 2:
    raise ImportError(f"ltaug.transforms needs albumentations >= 2.0 (found {A.__version__}): "
                      "pip install -U 'albumentations>=2'")

__all__ = ["CocoSource", "CopyPaste", "MixUp", "Mosaic", "Sample", "copy_paste", "mixup", "mosaic",
           "occlude", "resize_masks", "tight_box", "warp_objects"]


# -- pure functions ---------------------------------------------------------------------------

@dataclass
class Sample:
    """An image and its objects, as the pure functions here see them.

    ``boxes``: (N, 4) float64 x0, y0, x1, y1 pixels; ``rows``: (N, k) label columns carried
    along untouched (any dtype); ``masks``: (N, H, W) uint8 0/1, or None (objects are boxes).
    With ``window`` = (x0, y0, x1, y1), ``masks`` holds only that part of the image (the rest is
    0): :func:`concat` places it, so a mosaic tile's objects are written once.
    """

    image: np.ndarray | None
    boxes: np.ndarray
    rows: np.ndarray
    masks: np.ndarray | None = None
    window: tuple | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def take(self, keep: np.ndarray) -> Sample:
        """The objects where ``keep`` (bool, one per object) is true."""
        if keep.all():
            return self
        return replace(self, boxes=self.boxes[keep], rows=self.rows[keep],
                       masks=None if self.masks is None else self.masks[keep])


def _image(sample: Sample) -> np.ndarray:
    """The sample's pixels (samples of objects only, parts of a mosaic, have none)."""
    assert sample.image is not None, "a sample with pixels"
    return sample.image


def tight_box(mask: np.ndarray, x: int = 0, y: int = 0) -> np.ndarray:
    """x0, y0, x1, y1 of a mask's pixels (pixel corners, as pycocotools' ``toBbox``), moved by (x, y); zeros if empty."""
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    if cols.size == 0:
        return np.zeros(4)
    return np.array([cols[0] + x, rows[0] + y, cols[-1] + 1 + x, rows[-1] + 1 + y], np.float64)


def box_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, H, W) masks of x0, y0, x1, y1 boxes, rasterised by pycocotools (the engine's box-only convention)."""
    out = np.zeros((len(boxes), height, width), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64).tolist()):
        out[i] = mask_ops.box_mask([x0, y0, x1 - x0, y1 - y0], height, width)
    return out


def resize_masks(masks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, h, w) uint8 0/1 masks at ``width x height``: bilinear, then threshold at 0.5.

    :func:`ltaug.pixels.functional.resize_mask` per mask: stacking masks as channels needs a transpose that
    costs 3-4 times more than the calls it saves.
    """
    out = np.empty((masks.shape[0], int(height), int(width)), np.uint8)
    for m, o in zip(masks, out):
        o[...] = resize_mask(m, width, height)
    return out


def occlude(sample: Sample, occlusion: Occlusion, min_visible: float) -> Sample:
    """The sample's objects under the pasted pixels of ``occlusion``, by the engine's rule
    (:meth:`ltaug.pixels.copy_paste.Occlusion.cut`, every object non-crowd).

    An object nothing covers is kept as it is; one partly covered keeps its visible pixels and
    gets their tight box; one with nothing, or less than ``min_visible`` of its pixels, left is
    removed. Objects without masks are their boxes rasterised (and stay without masks).
    """
    H, W = occlusion.hw
    keep = np.ones(len(sample), bool)
    boxes, out = sample.boxes.copy(), sample.masks
    for i, (x0, y0, x1, y1) in enumerate(sample.boxes.tolist()):
        bbox = [x0, y0, x1 - x0, y1 - y0]
        if sample.masks is None:
            if not occlusion.meets(bbox):
                continue
            rle = mask_ops.box_rle(bbox, H, W)
        elif occlusion.meets_mask(sample.masks[i]):  # the mask, not its box: a box need not bound its mask here
            rle = mask_ops.rle_from_mask(sample.masks[i])
        else:
            continue
        left, hidden = occlusion.cut(rle, min_visible)
        if hidden == 0:
            continue
        if left is None:
            keep[i] = False
            continue
        boxes[i] = xywh_to_xyxy(np.array(mask_ops.tight_bbox(left)))
        if out is not None:
            if out is sample.masks:
                out = out.copy()
            out[i] = mask_ops.decode_rle(left)
    return Sample(sample.image, boxes, sample.rows, out).take(keep)


def concat(image: np.ndarray, parts: Sequence[Sample], k: int) -> Sample:
    """One sample with ``image`` and the objects of ``parts`` in order (``k`` label columns)."""
    H, W = image.shape[:2]
    rows = [p.rows for p in parts if len(p)]
    out = Sample(image, np.concatenate([p.boxes.reshape(-1, 4) for p in parts] + [np.zeros((0, 4))]),
                 np.concatenate(rows) if rows else np.zeros((0, k)))
    if any(p.masks is not None for p in parts):
        out.masks = np.zeros((len(out), H, W), np.uint8)  # calloc: pages no part writes stay untouched
        i = 0
        for p in parts:
            x0, y0, x1, y1 = p.window or (0, 0, W, H)
            out.masks[i:i + len(p), y0:y1, x0:x1] = p.masks
            i += len(p)
    return out


def copy_paste(sample: Sample, bank: Bank, placements: list[dict], spec: ops.Paste, new_rows: np.ndarray) -> Sample:
    """Paste bank objects into a copy of the sample's image and keep the objects right.

    The image's channels are in the order of the bank's crops: BGR (:class:`CopyPaste` passes
    a view of the bank whose crops are RGB when the images are).

    ``placements``: as :func:`ltaug.pixels.copy_paste.place_objects` gives them, pasted in order,
    later on top; ``new_rows``: their label columns. Pixels and the pasted objects' visible
    masks come from :func:`ltaug.pixels.copy_paste.paste_objects`, the sample's own objects are
    cut by :func:`occlude`: the engine's :func:`ltaug.pixels.copy_paste.render_paste` on arrays.
    A box-only object's mask (when the sample has masks) is its box, as in the engine's output.
    Returns the sample's surviving objects, then the pasted objects that stay visible.
    """
    image = _image(sample).copy()
    H, W = image.shape[:2]
    visible, occlusion, _ = paste_objects(image, placements, bank, spec)
    kept = occlude(replace(sample, image=image), occlusion, spec.min_visible)
    shown = [k for k, v in enumerate(visible) if v is not None]
    bboxes = [mask_ops.tight_bbox(visible[k][0]) for k in shown]
    new = Sample(image, xywh_to_xyxy(np.array(bboxes, np.float64).reshape(-1, 4)), new_rows[shown])
    if sample.masks is not None:
        new.masks = np.zeros((len(shown), H, W), np.uint8)
        for j, k in enumerate(shown):
            box_only = is_box_only(bank, placements[k]["row"])
            new.masks[j] = mask_ops.box_mask(bboxes[j], H, W) if box_only else mask_ops.decode_rle(visible[k][0])
    return concat(image, [kept, new], new_rows.shape[1])


def warp_objects(sample: Sample, size, offset, window, canvas_hw, min_visible: float, min_area: int) -> Sample:
    """The sample's objects scaled to ``size`` (tw, th), moved by ``offset`` and cut to ``window``.

    The geometry of :func:`ltaug.pixels.masks.warp_rle` on dense masks: a mask is resized (bilinear,
    threshold 0.5), cut to the window x0, y0, x1, y1 of a ``canvas_hw`` canvas, and given the
    tight box of what is left; a box-only object goes through ``warp_rle`` itself. An object
    goes when nothing, less than ``min_visible`` of it, or fewer than ``min_area`` pixels remain
    (the rule of :func:`ltaug.pixels.mosaic.warp_annotation`). Returns objects without an image, their
    masks as the window's part (``window`` set).
    """
    (tw, th), (ox, oy), (x0, y0, x1, y1), (H, W) = size, offset, window, canvas_hw
    h, w = _image(sample).shape[:2]
    if sample.masks is None:
        keep, kept_boxes = [], []
        for i, (a, b, c, d) in enumerate(sample.boxes.tolist()):
            _, box, visible = mask_ops.warp_rle(None, [a, b, c - a, d - b], (h, w), (tw / w, th / h), (ox, oy),
                                                window, (H, W))
            area = box[2] * box[3]
            if area > 0 and visible >= min_visible and area >= min_area:
                keep.append(i)
                kept_boxes.append(xywh_to_xyxy(np.array(box)))
        return Sample(None, np.array(kept_boxes, np.float64).reshape(-1, 4), sample.rows[keep])
    moved = resize_masks(sample.masks, tw, th)
    full = np.count_nonzero(moved, axis=(1, 2))
    cut = moved[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    area = np.count_nonzero(cut, axis=(1, 2))
    keep = (area > 0) & (area >= min_visible * full) & (area >= min_area)
    cut = cut[keep]
    boxes = np.array([tight_box(c, x0, y0) for c in cut], np.float64).reshape(-1, 4)
    return Sample(None, boxes, sample.rows[keep], cut, window=(x0, y0, x1, y1))


def mosaic(tiles: Sequence[Sample], centre, spec: ops.Mosaic) -> Sample:
    """Four samples in a 2 x 2 mosaic of ``spec.size`` around ``centre`` (tile k in quadrant k)."""
    W, H = spec.size
    canvas, _, _ = render_mosaic([(_image(t), {"id": None}, []) for t in tiles], {"centre": list(centre)}, spec)
    parts = []
    for k, t in enumerate(tiles):
        (tw, th), offset, (x0, y0, x1, y1) = tile_layout(_image(t).shape[:2], (W, H), centre, k)
        if x1 > x0 and y1 > y0:
            parts.append(warp_objects(t, (tw, th), offset, (x0, y0, x1, y1), (H, W), spec.min_visible, spec.min_area))
    return concat(canvas, parts, tiles[0].rows.shape[1])


def mixup(a: Sample, b: Sample, lam: float, weight_column: int | None = None) -> Sample:
    """``lam * a + (1 - lam) * b`` (b scaled to fit at the top-left), the objects of both; a's first.

    ``weight_column``: a label column multiplied by lam for a's objects and 1 - lam for b's.
    """
    image, _, _ = render_mixup((a.image, {"id": None}, []), (b.image, {"id": None}, []), {"lam": lam}, ops.Mixup())
    H, W = _image(a).shape[:2]
    h, w = _image(b).shape[:2]
    s = min(W / w, H / h)
    tw, th = max(1, min(W, round(w * s))), max(1, min(H, round(h * s)))  # as render_mixup scales b
    part_b = warp_objects(b, (tw, th), (0, 0), (0, 0, tw, th), (H, W), 0.0, 1)
    part_a = replace(a)
    if weight_column is not None:
        for part, weight in ((part_a, lam), (part_b, 1.0 - lam)):
            part.rows = part.rows.copy()
            part.rows[:, weight_column] = part.rows[:, weight_column] * weight
    return concat(image, [part_a, part_b], a.rows.shape[1])


# -- label columns: in a Compose, or plain ----------------------------------------------------

def _to_pixels(raw: np.ndarray, box_format: str, height: int, width: int) -> np.ndarray:
    """(n, 4) boxes in an albumentations format (coco, pascal_voc, yolo, albumentations) as x0, y0, x1, y1 pixels."""
    if len(raw) == 0:
        return np.zeros((0, 4))
    norm = raw if box_format == "albumentations" else convert_bboxes_to_albumentations(
        raw, box_format, {"height": height, "width": width}, check_validity=False)
    return np.asarray(norm, np.float64)[:, :4] * [width, height, width, height]


class _Columns:
    """The label columns of one call, and how objects from elsewhere get theirs.

    In a Compose: albumentations' encoded label fields (``processor`` given; they follow the 4
    normalised box coordinates); in plain mode: one object column per field.
    """

    def __init__(self, fields: list[str], label_field: str, fill: dict, box_format: str, processor=None):
        if label_field not in fields:
            raise ValueError(f"label field {label_field!r} is not among the label fields {fields}: pass "
                             f"BboxParams(label_fields=[{label_field!r}, ...]) or label_field=")
        self.fields, self.label_field, self.fill = fields, label_field, fill
        self.box_format, self.processor = box_format, processor

    def encode(self, values: dict, n: int) -> np.ndarray:
        """(n, k) label columns: ``values[field]`` (n values) where given, else the field's fill value (0)."""
        cols = []
        for f in self.fields:
            v = list(values[f]) if f in values else [self.fill.get(f, 0)] * n
            if len(v) != n:
                raise ValueError(f"{n} boxes but {len(v)} values of {f!r}")
            if self.processor is None:
                col = np.empty((n, 1), object)
                col[:, 0] = v
            else:  # albumentations encodes labels per field (numbers as they are, others by a shared encoder)
                col = np.asarray(self.processor.label_manager.process_field("bboxes", f, v), np.float64).reshape(n, 1)
            cols.append(col)
        return np.hstack(cols) if cols else np.zeros((n, 0))

    def item(self, item, want_masks: bool) -> Sample:
        """A source item (a dict, or ``(image, masks, bboxes, labels)``) as a sample."""
        if isinstance(item, (tuple, list)):
            image, masks, bboxes, labels = item
            item = {"image": image, "masks": masks, "bboxes": bboxes, self.label_field: labels}
        if self.label_field not in item:
            raise ValueError(f"a source item has no {self.label_field!r}; it has {sorted(item)}")
        image = item["image"]
        h, w = image.shape[:2]
        raw = np.asarray(item["bboxes"], np.float64)
        raw = raw.reshape(-1, raw.shape[-1]) if raw.size else np.zeros((0, 4))
        boxes = _to_pixels(raw[:, :4], self.box_format, h, w)
        rows = self.encode({f: item[f] for f in self.fields if f in item}, len(raw))
        masks = None
        if want_masks:
            given = item.get("masks")
            masks = _stack_masks(given, h, w, len(raw)) if given is not None else box_masks(boxes, h, w)
        return Sample(image, boxes, rows, masks)


def _stack_masks(masks, height: int, width: int, n: int) -> np.ndarray:
    """Masks (a list or an N x H x W array; nonzero = object) as N x H x W uint8 0/1, checked against n boxes.

    An array that is already uint8 0/1 (or bool) is used as it is, without a copy.
    """
    if isinstance(masks, np.ndarray):
        arr = masks
    else:
        arr = np.zeros((0, height, width), np.uint8) if len(masks) == 0 else np.stack(list(masks))
    if arr.shape != (n, height, width):
        raise ValueError(f"{n} boxes need {n} masks of {height} x {width}, got masks of shape {arr.shape}: "
                         "masks, bboxes and labels must describe the same objects (did an earlier transform drop "
                         "boxes, through BboxParams min_area / min_visibility or a crop?)")
    if arr.dtype == bool:
        return arr.view(np.uint8)
    if arr.dtype == np.uint8 and (arr.size == 0 or arr.max() <= 1):
        return arr
    return (arr != 0).astype(np.uint8)


def _like(values, template):
    """``values`` (a list) as the container ``template`` was: a list, or an array of its dtype."""
    if isinstance(template, np.ndarray):
        return np.asarray(values, dtype=template.dtype if template.size else None)
    return list(values)


# -- the objects a Compose's boxes describe ----------------------------------------------------

def _present(sample: Sample) -> np.ndarray:
    """Which objects are still in the image: a box with area inside it and, with masks, a mask pixel.

    A spatial transform before this one in a Compose (a crop, an affine) leaves the objects it
    moved out of the image as empty masks and boxes clipped to nothing; albumentations drops such
    boxes (and their labels) only when the Compose ends, and never drops masks.
    """
    H, W = _image(sample).shape[:2]
    b = sample.boxes
    keep = ((np.minimum(b[:, 2], W) - np.maximum(b[:, 0], 0) > 0)
            & (np.minimum(b[:, 3], H) - np.maximum(b[:, 1], 0) > 0))
    if sample.masks is not None and len(sample):
        keep &= sample.masks.any(axis=(1, 2))
    return keep


def _kept_by(params, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Which x0, y0, x1, y1 pixel boxes albumentations' filter (``filter_bboxes`` with these
    ``BboxParams``) keeps, applied twice: as ``Compose`` filters after a transform and at its end."""
    eps = 1e-7
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0) * (y1 - y0)
    cw = np.clip(x1, 0, width) - np.clip(x0, 0, width)
    ch = np.clip(y1, 0, height) - np.clip(y0, 0, height)
    clipped = cw * ch
    keep = ((area >= eps) & (clipped >= eps) & (clipped >= params.min_area - eps)
            & (clipped / (area + eps) >= params.min_visibility)
            & (cw >= params.min_width - eps) & (ch >= params.min_height - eps))
    if params.max_accept_ratio is not None:
        keep &= np.maximum(cw / (ch + eps), ch / (cw + eps)) <= params.max_accept_ratio
    return keep


# -- serialisation ------------------------------------------------------------------------------

_COCO_SOURCE = f"{__name__}.CocoSource"  # how a serialised pipeline names a CocoSource


def _int_keys(mapping):
    """A {category id: value} dict back from JSON, whose keys are strings: the keys as ints (else as given)."""
    if isinstance(mapping, dict) and mapping and all(isinstance(k, str) and k.lstrip("-").isdigit() for k in mapping):
        return {int(k): v for k, v in mapping.items()}
    return mapping


def _written(value):
    """A constructor argument as ``A.to_dict`` writes it: a bank as its folder, a CocoSource as its arguments."""
    if isinstance(value, Bank):
        return str(value.path)
    if isinstance(value, CocoSource) and value.dataset.path is not None:
        return value.to_dict()
    if isinstance(value, tuple):
        return [_written(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _source(source):
    """``source`` as given, or the CocoSource a serialised pipeline describes."""
    if isinstance(source, dict) and source.get("__class_fullname__") == _COCO_SOURCE:
        return CocoSource(**{k: v for k, v in source.items() if k != "__class_fullname__"})
    return source


# -- the transforms ---------------------------------------------------------------------------

class _Transform(A.DualTransform):
    """Shared plumbing: Compose and plain mode, seeding, serialisation, one pure function for all targets.

    A subclass draws its parameters in ``_decide(sample, data, columns)`` -> a small dict (what
    ``get_applied_params()`` and ``A.ReplayCompose`` record), and computes every output from the
    input and those parameters in ``_render(sample, data, columns, params)`` -> a sample. Inside
    a Compose ``get_params_dependent_on_data`` decides, ``apply_with_params`` renders (so a replay,
    which calls only the latter with the recorded parameters, gives the same output for the
    same input), and every target reads its part of the rendered sample.
    """

    _init_args: tuple[str, ...] = ()  # the constructor's arguments (besides p), for to_dict / repr / replay

    def __init__(self, label_field: str, fill_labels: dict | None, seed: int | None, p: float,
                 extra_fields: tuple = ()):
        self._seed = seed  # before super().__init__, which seeds through set_random_seed
        super().__init__(p=p)
        self.label_field, self.fill_labels, self.seed = label_field, dict(fill_labels or {}), seed
        self._extra_fields = tuple(f for f in extra_fields if f)
        self._in_compose = False
        self._parsed: tuple | None = None  # the call's sample, from get_params_dependent_on_data to apply_with_params

    @property
    def targets(self):
        return {"image": self.apply, "masks": self.apply_to_masks, "bboxes": self.apply_to_bboxes}

    # -- serialisation: A.to_dict / from_dict / save / load, A.ReplayCompose, repr
    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return self._init_args

    def get_transform_init_args(self) -> dict:
        args = {name: getattr(self, name) for name in self._init_args}
        if "seed" in args:  # this transform's own seed, as given (A.Compose(seed=...) is the Compose's, not written)
            args["seed"] = self._seed
        return args

    def to_dict_private(self) -> dict:
        """What ``A.to_dict`` writes: plain values (a bank as its folder, a CocoSource as its arguments)."""
        return {k: _written(v) for k, v in super().to_dict_private().items()}

    def get_dict_with_id(self) -> dict:
        """What ``A.ReplayCompose`` records: the arguments as they are (a replay rebuilds the transform in
        this process from them, so the bank and source are not reopened)."""
        return {**super().to_dict_private(), "id": id(self)}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_parsed"] = None
        return state

    def set_processors(self, processors) -> None:
        super().set_processors(processors)
        self._in_compose = True  # A.Compose hands its processors (maybe none) to every transform in it

    def set_random_seed(self, seed: int | None) -> None:
        """Seed the generators; ``None`` (what ``A.Compose`` passes by default) keeps this transform's own ``seed``."""
        super().set_random_seed(getattr(self, "_seed", None) if seed is None else seed)

    # -- inside A.Compose
    def _compose_sample(self, data: dict) -> tuple[Sample, _Columns]:
        """The call's image and objects (boxes from the Compose's normalised format to pixels), without
        the objects an earlier transform moved out of the image."""
        name = type(self).__name__
        for key in ("mask", "keypoints", "images", "volume"):
            if data.get(key) is not None:
                raise ValueError(f"{name} works on image, masks, bboxes and label fields, not {key!r}")
        proc = self.get_processor("bboxes")
        if proc is None or "bboxes" not in data:
            raise ValueError(f"{name} inside A.Compose needs bboxes= and "
                             "bbox_params=A.BboxParams(format=..., label_fields=[...])")
        image = data["image"]
        H, W = image.shape[:2]
        fields = list(proc.params.label_fields or [])
        cols = _Columns(fields, self.label_field, self.fill_labels, proc.params.format, proc)
        bb = np.asarray(data["bboxes"], np.float64)
        bb = bb.reshape(-1, 4 + len(fields)) if bb.size else np.zeros((0, 4 + len(fields)))
        masks = None
        if "masks" in data:
            if len(data["masks"]) != len(bb):
                raise ValueError(f"{name} got {len(data['masks'])} masks but {len(bb)} boxes: they must be the same "
                                 "objects; a transform before it that drops boxes (BboxParams min_area / "
                                 "min_visibility / min_width / min_height) keeps their masks: put "
                                 f"{name} before that transform, or drop those limits")
            masks = _stack_masks(data["masks"], H, W, len(bb))
        sample = Sample(image, bb[:, :4] * [W, H, W, H], bb[:, 4:], masks)
        return sample.take(_present(sample)), cols

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        sample, cols = self._compose_sample(data)
        self._parsed = (data["image"], data.get("masks"), data["bboxes"], sample, cols)
        return self._decide(sample, data, cols)

    def apply_with_params(self, params: dict, **data) -> dict:
        parsed, self._parsed = self._parsed, None
        if parsed is not None and all(a is data.get(k) for a, k in zip(parsed, ("image", "masks", "bboxes"))):
            sample, cols = parsed[3], parsed[4]
        else:  # A.ReplayCompose: parameters recorded earlier, this call's data
            sample, cols = self._compose_sample(data)
        out = self._render(sample, data, cols, params)
        proc = cols.processor
        if proc is not None and len(out):  # what the Compose would drop at its end goes now, masks with it
            out = out.take(_kept_by(proc.params, out.boxes, *_image(out).shape[:2]))
        full = {**params, "ltaug": out}
        res = dict(data)
        for key, fn in self.targets.items():
            if key in data:  # an empty masks list too: pasted objects may give it masks
                res[key] = fn(data[key], **full)
        return res

    def apply(self, img, **params):
        return params["ltaug"].image

    def apply_to_masks(self, masks, **params):
        out = params["ltaug"]
        return out.masks.astype(np.asarray(masks).dtype if len(masks) else np.uint8, copy=False)

    def apply_to_bboxes(self, bboxes, **params):
        out = params["ltaug"]
        H, W = out.image.shape[:2]
        dtype = bboxes.dtype if isinstance(bboxes, np.ndarray) and bboxes.size else np.float32
        return np.hstack([out.boxes / [W, H, W, H], out.rows.astype(np.float64)]).astype(dtype)

    # -- plain mode
    def __call__(self, *args, force_apply: bool = False, **data):
        if self._in_compose or self.replay_mode:
            return super().__call__(*args, force_apply=force_apply, **data)
        if args:
            raise KeyError("pass data as named arguments: t(image=..., masks=..., bboxes=..., labels=...)")
        self.params: dict = {}
        if not self.should_apply(force_apply=force_apply):
            return data
        return self._plain(data)

    def _plain(self, data: dict) -> dict:
        """Plain mode: COCO boxes in pixels, labels as given; the same keys and container types back."""
        image = data["image"]
        H, W = image.shape[:2]
        fields = [self.label_field, *self._extra_fields]
        cols = _Columns(fields, self.label_field, self.fill_labels, "coco")
        bboxes = data.get("bboxes", [])
        bb = np.asarray(bboxes, np.float64).reshape(-1, 4)
        labels = data.get(self.label_field)
        if labels is None or len(labels) != len(bb):
            raise ValueError(f"need {self.label_field}= with one label per box ({len(bb)} boxes)")
        rows = cols.encode({f: data[f] for f in fields if f in data}, len(bb))
        masks = _stack_masks(data["masks"], H, W, len(bb)) if "masks" in data else None
        sample = Sample(image, xywh_to_xyxy(bb).reshape(-1, 4), rows, masks)
        sample = sample.take(_present(sample))
        params = self._decide(sample, data, cols)
        out = self._render(sample, data, cols, params)
        self.params = params
        res = dict(data)
        res["image"] = out.image
        xywh = out.boxes.copy()
        xywh[:, 2:] -= xywh[:, :2]
        res["bboxes"] = (xywh.astype(bboxes.dtype if bboxes.size else np.float32) if isinstance(bboxes, np.ndarray)
                         else xywh.tolist())
        for j, f in enumerate(fields):
            res[f] = _like(out.rows[:, j].tolist(), data.get(f))
        if masks is not None and out.masks is not None:
            given = data["masks"]
            dtype = np.asarray(given).dtype if len(given) else np.uint8
            res["masks"] = out.masks.astype(dtype, copy=False)
            if isinstance(given, (list, tuple)):
                res["masks"] = list(res["masks"])
        return res

    def _decide(self, sample: Sample, data: dict, cols: _Columns) -> dict:
        raise NotImplementedError

    def _render(self, sample: Sample, data: dict, cols: _Columns, params: dict) -> Sample:
        raise NotImplementedError


class _FromSource(_Transform):
    """A transform that draws other images: from ``source``, or from ``data[metadata_key]``."""

    source = None
    metadata_key = ""

    @property
    def targets_as_params(self) -> list[str]:
        return [self.metadata_key] if self.source is None else []

    def _items(self, data: dict):
        items = self.source if self.source is not None else data.get(self.metadata_key)
        if items is None or len(items) == 0:
            raise ValueError(f"{type(self).__name__} needs other images: give source= or a non-empty "
                             f"{self.metadata_key}= list in the call")
        return items

    def _draw_items(self, data: dict, k: int) -> list[int]:
        """The positions of k other images in the source (or the call's list), drawn with replacement."""
        return [int(i) for i in self.random_generator.integers(0, len(self._items(data)), size=k)]


class _RgbCrops:
    """A bank whose crops come out RGB: only the objects pasted are converted, not the image."""

    def __init__(self, bank: Bank):
        self._bank = bank

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        crop, mask = self._bank.get(i)
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), mask

    def __getattr__(self, name: str):
        return getattr(self._bank, name)


class CopyPaste(_Transform):
    """Paste objects of an object bank into the image, rarest classes first (see the module docstring).

    ``bank``: a :class:`ltaug.pixels.bank.Bank` or its folder. ``objects``: objects tried per image, or
    (low, high) drawn uniformly; an object that finds no room (``max_overlap``) is not pasted.
    ``weighting``: ``inverse`` (class c with probability ∝ n_c^-``power``) or ``uniform``; n_c
    comes from ``class_counts`` ({category id: instances}; default: the bank's objects per
    class). ``classes``: category ids that may be pasted (default: all the bank holds).
    ``label_map``: the label of a pasted object from its category id (dict or callable; default:
    the id itself). ``blend``, ``sigma``, ``scale``, ``flip``, ``max_overlap``, ``min_visible``,
    ``exclude`` (bank quality flags by name: ``["truncated", "occluded"]``), ``box_only``: as
    :class:`ltaug.ops.Paste`; ``exclude_flags``: the same as :class:`~ltaug.pixels.bank.Flag` bits
    (used when ``exclude`` is not given).
    ``rgb``: the images are RGB (the default, albumentations' convention; the bank's crops, which
    are BGR as OpenCV decodes, are pasted as RGB); ``rgb=False`` for BGR images (the default
    until CopyPaste moved to RGB). After a call, ``get_applied_params()["objects"]`` lists what was placed
    (bank ``row``, source ``annotation_id``, ``category_id``, ``x``, ``y``, ``w``, ``h``, ``flip``):
    ``A.ReplayCompose`` replays those placements.

    Per call, from the transform's generator: the number of objects (uniform in ``objects``),
    then their classes and bank objects (:meth:`ltaug.pixels.copy_paste.ObjectPool.draw`), then
    each one's size, flip and position (:func:`ltaug.pixels.copy_paste.place_objects`): the
    draws ``ltaug paste`` makes for one image after its ``prob`` draw. What differs from the
    engine is the caller's: n_c from the bank (or ``class_counts``) rather than the dataset,
    classes in the bank's (or ``classes``') order, a number of objects per sample, no crowd flags.
    """

    _init_args = ("bank", "objects", "weighting", "power", "classes", "class_counts", "blend", "sigma", "scale",
                  "flip", "max_overlap", "min_visible", "exclude", "box_only", "rgb", "label_field",
                  "label_map", "fill_labels", "seed")

    def __init__(self, bank, objects=3, weighting: str = "inverse", power: float = 1.0, classes=None,
                 class_counts: dict | None = None, blend: str = "gaussian", sigma: float = 1.0,
                 scale=(0.5, 1.5), flip: bool = True, max_overlap: float = 0.3, min_visible: float = 0.25,
                 exclude_flags: int = int(DEFAULT_EXCLUDE), box_only: bool = False, rgb: bool = True,
                 label_field: str = "labels", label_map=None, fill_labels: dict | None = None,
                 seed: int | None = None, p: float = 0.5, exclude=None):
        super().__init__(label_field, fill_labels, seed, p)
        if weighting == "budget":
            raise ValueError("weighting 'budget' needs the whole dataset's deficits: use `ltaug paste` offline, "
                             "or 'inverse' / 'uniform' here")
        lo, hi = (objects, objects) if np.isscalar(objects) else tuple(objects)
        if not 1 <= int(lo) <= int(hi):
            raise ValueError(f"objects must be >= 1, or (low, high) with 1 <= low <= high; got {objects!r}")
        self.bank = bank if isinstance(bank, Bank) else Bank(bank)
        self.objects = objects if np.isscalar(objects) else tuple(objects)
        self.weighting, self.power, self.classes = weighting, power, classes
        self.class_counts, self.label_map = _int_keys(class_counts), _int_keys(label_map)  # JSON writes keys as text
        self.blend, self.sigma, self.scale, self.flip = blend, sigma, tuple(scale), flip
        if exclude is None:
            exclude = [str(f.name).lower() for f in Flag if int(exclude_flags) & f]
        self.max_overlap, self.min_visible, self.exclude = max_overlap, min_visible, list(exclude)
        self.box_only, self.rgb = box_only, bool(rgb)
        self._range = (int(lo), int(hi))
        self._spec = ops.Paste(weighting=weighting, power=power, objects=int(hi), blend=blend, sigma=sigma,
                               scale=tuple(scale), flip=flip, max_overlap=max_overlap, min_visible=min_visible,
                               exclude=self.exclude, box_only=box_only)
        self._tables()

    def _tables(self) -> None:
        """The eligible bank objects by class and the class probabilities (:class:`ltaug.pixels.copy_paste.ObjectPool`)."""
        bank = self.bank
        ids = self.classes if self.classes is not None else [c["id"] for c in bank.meta["categories"]]
        cats = np.asarray(list(dict.fromkeys(int(c) for c in ids)), np.int64)  # in the order given, as the engine's
        rows, _ = eligible_rows(bank, cats, self._spec)
        if rows.size == 0:
            raise ValueError(f"{bank.path}: every object of these classes is flagged {', '.join(self.exclude)} "
                             f"(exclude); nothing to paste")
        counts = self.class_counts if self.class_counts is not None else bank.class_counts()
        instances = np.array([counts.get(int(c), 0) for c in cats], np.float64)
        self._cats = cats
        self._pool = ObjectPool.build(bank, rows, cats, instances, self.weighting, self.power)

    def class_probabilities(self) -> dict[int, float]:
        """{category id: probability that a drawn object is of that class} (classes with objects to paste)."""
        return {int(c): float(p) for c, p in zip(self._cats, self._pool.p) if p > 0}

    def _label(self, category_id: int):
        m = self.label_map
        return category_id if m is None else (m(category_id) if callable(m) else m[category_id])

    def _decide(self, sample, data, cols):
        image = _image(sample)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"CopyPaste needs a uint8 H x W x 3 image, got {image.dtype} {image.shape}")
        rng = self.random_generator
        n = int(rng.integers(self._range[0], self._range[1] + 1))
        boxes = [tuple(b) for b in sample.boxes.tolist()]
        objects, _ = place_objects(self.bank, self._pool.draw(rng, n).tolist(), image.shape[:2], boxes, self._spec, rng)
        return {"objects": objects}

    def _render(self, sample, data, cols, params):
        objects = params["objects"]
        new_rows = cols.encode({self.label_field: [self._label(o["category_id"]) for o in objects]}, len(objects))
        bank = cast(Bank, _RgbCrops(self.bank)) if self.rgb else self.bank  # the bank is BGR
        return copy_paste(sample, bank, objects, self._spec, new_rows)

    def __getstate__(self):  # a spawned worker reopens the bank (memory maps do not pickle as maps)
        state = super().__getstate__()
        state["bank"] = str(self.bank.path)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.bank = Bank(state["bank"])


class Mosaic(_FromSource):
    """This image and three from ``source`` in a 2 x 2 mosaic of ``size`` = (W, H) (see the module docstring).

    ``get_applied_params()``: ``centre`` (x, y), ``quadrant`` (this image's, 0-3) and ``items`` (the
    positions of the three others in the source, or in the call's ``metadata_key`` list).
    """

    _init_args = ("source", "size", "min_visible", "min_area", "metadata_key", "label_field", "fill_labels", "seed")

    def __init__(self, source=None, size=(640, 640), min_visible: float = 0.25, min_area: int = 4,
                 metadata_key: str = "mosaic_metadata", label_field: str = "labels",
                 fill_labels: dict | None = None, seed: int | None = None, p: float = 0.5):
        super().__init__(label_field, fill_labels, seed, p)
        self.source, self.metadata_key = _source(source), metadata_key
        self.size, self.min_visible, self.min_area = tuple(size), min_visible, min_area
        self._spec = ops.Mosaic(size=tuple(int(v) for v in size), min_visible=min_visible, min_area=min_area)

    def _decide(self, sample, data, cols):
        rng = self.random_generator
        W, H = self._spec.size
        centre = (int(rng.integers(W // 4, 3 * W // 4 + 1)), int(rng.integers(H // 4, 3 * H // 4 + 1)))
        items = self._draw_items(data, 3)
        return {"centre": centre, "quadrant": int(rng.integers(0, 4)), "items": items}

    def _render(self, sample, data, cols, params):
        source = self._items(data)
        tiles = [cols.item(source[i], sample.masks is not None) for i in params["items"]]
        tiles.insert(int(params["quadrant"]), sample)
        return mosaic(tiles, tuple(params["centre"]), self._spec)


class MixUp(_FromSource):
    """``lam * this + (1 - lam) * other``, lam ~ Beta(``alpha``, ``alpha``), other from ``source`` (module docstring).

    ``get_applied_params()``: ``lam`` and ``items`` (the other image's position in the source).
    """

    _init_args = ("source", "alpha", "weight_field", "metadata_key", "label_field", "fill_labels", "seed")

    def __init__(self, source=None, alpha: float = 1.5, weight_field: str | None = None,
                 metadata_key: str = "mixup_metadata", label_field: str = "labels",
                 fill_labels: dict | None = None, seed: int | None = None, p: float = 0.5):
        fill = {**({weight_field: 1.0} if weight_field else {}), **(fill_labels or {})}
        super().__init__(label_field, fill, seed, p, extra_fields=(weight_field,))
        ops.Mixup(alpha=alpha)  # validates alpha
        self.source, self.metadata_key = _source(source), metadata_key
        self.alpha, self.weight_field = alpha, weight_field

    def _decide(self, sample, data, cols):
        items = self._draw_items(data, 1)
        return {"items": items, "lam": float(self.random_generator.beta(self.alpha, self.alpha))}

    def _render(self, sample, data, cols, params):
        other = cols.item(self._items(data)[params["items"][0]], sample.masks is not None)
        column = cols.fields.index(self.weight_field) if self.weight_field else None
        return mixup(sample, other, float(params["lam"]), column)


# -- a source over a COCO / LVIS file ---------------------------------------------------------

class CocoSource:
    """The images of a COCO/LVIS file with their objects, as Mosaic and MixUp draw them.

    ``source[i]`` is image ``i`` (file order): ``{"image", "masks" (N x H x W uint8), "bboxes"
    (N x 4 in ``bbox_format``), "labels" (category ids, or ``label_map`` of them)}``; crowd
    regions are left out; an object without a segmentation gets its box as mask. ``rgb``: give
    RGB images (the default, albumentations' convention); ``rgb=False``: BGR, as OpenCV decodes
    (the default until CocoSource moved to RGB). ``masks=False``: no masks (faster).
    """

    def __init__(self, annotations, images_dir, *, rgb: bool = True, masks: bool = True,
                 bbox_format: str = "coco", label_map=None, label_field: str = "labels"):
        self.dataset = annotations if isinstance(annotations, Dataset) else load_dataset(annotations)
        self.images_dir = Path(images_dir)
        self.rgb, self.masks, self.bbox_format = bool(rgb), masks, bbox_format
        self.label_map, self.label_field = _int_keys(label_map), label_field
        ix = self.dataset.index
        keep = np.flatnonzero(~ix.ann_iscrowd)
        self._rows = keep[np.argsort(ix.ann_image_pos[keep], kind="stable")]
        self._start = np.searchsorted(ix.ann_image_pos[self._rows], np.arange(ix.num_images + 1))

    def to_dict(self) -> dict:
        """The arguments that rebuild this source: how ``A.to_dict`` writes a Mosaic's or MixUp's ``source``
        (one over a :class:`~ltaug.io.dataset.Dataset` without a file is left as it is: ``A.save`` cannot write it)."""
        return {"__class_fullname__": _COCO_SOURCE, "annotations": str(self.dataset.path),
                "images_dir": str(self.images_dir), "rgb": self.rgb, "masks": self.masks,
                "bbox_format": self.bbox_format, "label_map": self.label_map, "label_field": self.label_field}

    def __repr__(self) -> str:
        return f"CocoSource({str(self.dataset.path)!r}, {str(self.images_dir)!r}, {len(self)} images, rgb={self.rgb})"

    def __len__(self) -> int:
        return self.dataset.index.num_images

    def __getitem__(self, i: int) -> dict:
        ix = self.dataset.index
        record = self.dataset.images[i]
        H, W = int(ix.image_heights[i]), int(ix.image_widths[i])
        name = image_file_name(record)
        if name is None:
            raise InputError(f"image id {record['id']}: no file_name (or coco_url) to read it from")
        image = read_image(os.fspath(self.images_dir / name), record["id"], H, W)
        if self.rgb:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        rows = self._rows[self._start[i]:self._start[i + 1]].tolist()
        boxes = ix.ann_boxes[rows].astype(np.float64).reshape(-1, 4)
        m = self.label_map
        labels = [c if m is None else (m(c) if callable(m) else m[c]) for c in ix.ann_category_ids[rows].tolist()]
        if self.bbox_format != "coco" and rows:
            norm = convert_bboxes_to_albumentations(boxes, "coco", {"height": H, "width": W}, check_validity=False)
            boxes = (norm if self.bbox_format == "albumentations" else
                     convert_bboxes_from_albumentations(norm, self.bbox_format, {"height": H, "width": W}))
        item = {"image": image, "bboxes": boxes, self.label_field: labels}
        if self.masks:
            anns = self.dataset.annotations
            item["masks"] = np.zeros((len(rows), H, W), np.uint8)
            for j, r in enumerate(rows):
                a = anns[r]
                rle, _ = mask_ops.annotation_rle(a.get("segmentation"), a["bbox"], H, W, a.get("id"))
                item["masks"][j] = mask_ops.decode_rle(rle)
        return item
