"""A torch ``Dataset`` over any COCO/LVIS file that ltaug reads or writes, in torchvision's detection format.

Item ``i`` is image ``i`` of the file (``dataset.images[i]``, the row order of
:attr:`ltaug.io.dataset.Dataset.index`), returned as ``(image, target)``:

* ``image``: float32 tensor ``(3, H, W)`` in [0, 1], RGB (decoded with OpenCV, BGR -> RGB);
* ``target``: ``boxes`` (N, 4) float32 ``[x0, y0, x1, y1]`` pixels of the returned image,
  ``labels`` (N,) int64 in 1..K, ``masks`` (N, H, W) uint8 (only with ``masks=True``),
  ``image_id`` (int, the json image id), ``area`` (N,) float32 (the json ``area``, or the box
  area where the file has none, scaled by the resize), ``iscrowd`` (N,) int64 (all 0),
  ``orig_size`` (2,) int64 ``[height, width]`` of the file's image, and ``size`` (2,) int64 ``[H, W]``.

Labels are contiguous: category ``dataset.categories[k]`` is label ``k + 1``; 0 is background.
``label_to_category_id[label]`` maps back to json category ids (entry 0 is -1).
Crowd annotations are left out of the targets (as torchvision's references do). Images without
annotations are kept and give empty targets of the right shapes (torchvision's detectors train
on them as pure negatives). Rebalanced files written by ``ltaug resample`` (repeated image
entries that point to the same ``file_name``, ``ltaug`` provenance fields) need nothing special:
every entry is one item.

Augmentation (albumentations): a horizontal flip with probability ``hflip_prob`` at training time,
then a resize like torchvision's ``GeneralizedRCNNTransform``: scale = min(min_size / short side,
max_size / long side), done by ``SmallestMaxSize(min_size)`` when the short side decides and by
``LongestMaxSize(max_size)`` when the long side does. Boxes (``pascal_voc``) and masks (nearest
neighbour) follow the image. Boxes narrower or shorter than 1 px after the resize are dropped,
with their labels, masks, areas and crowd flags.

Determinism
-----------
The random draws (only the flip) come from a numpy / Python generator pair owned by the dataset
and shared by its albumentations pipelines, never from global state. It is seeded:

* in a DataLoader worker, from the worker's seed, ``get_worker_info().seed`` (= the loader's
  base seed + worker id; torch draws the base seed from the loader's ``generator``, or from
  torch's default generator when none is given, each time the workers start, i.e. every epoch
  unless ``persistent_workers``). This happens by itself on the first item a worker loads, so
  no ``worker_init_fn`` is needed (:func:`worker_init_fn` does the same eagerly);
* in the main process (``num_workers=0``), from ``torch.initial_seed()`` on first use, so
  ``torch.manual_seed(s)`` at start-up makes it reproducible; or explicitly by :meth:`reseed`.

So a loader with the same ``generator`` seed, sampler, batch size and ``num_workers`` yields
the same batches, bit for bit. Changing ``num_workers`` changes which worker stream serves an
image, so the flips change (as in torchvision's references).

OpenCV: do not call ``cv2.setNumThreads`` inside a forked worker once the main process has used
OpenCV: it waits for the parent's pool threads, which do not exist in the child, and hangs. Call
it in the main process before creating the loader if you want to limit OpenCV's threads.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import get_worker_info

from ltaug.io.dataset import Dataset
from ltaug.io.geometry import NONE as NO_SEGMENTATION
from ltaug.io.geometry import decode, segmentation_kind
from ltaug.io.paths import image_file_name
from ltaug.io.read import load_dataset
from ltaug.pixels.masks import box_mask

__all__ = ["DetectionDataset", "collate_fn", "worker_init_fn"]

MIN_BOX_SIDE = 1.0  # px, after the resize: narrower or shorter boxes are dropped


class DetectionDataset(torch.utils.data.Dataset):
    """Images and torchvision detection targets of a COCO/LVIS file (see the module docstring).

    ``dataset_or_path``: an :class:`ltaug.io.dataset.Dataset` or a path ``load_dataset`` reads;
    ``images_dir``: the folder ``file_name`` (or the last part of LVIS ``coco_url``) is relative to;
    ``masks``: also return instance masks (decoded by pycocotools; an annotation without a
    segmentation gets its box rasterised by pycocotools, as everywhere in ltaug); ``train``: apply the random flip; ``min_size``/``max_size``:
    the resize (``min_size=None``: no resize; ``max_size=None``: no cap on the long side).
    """

    def __init__(self, dataset_or_path, images_dir, *, masks: bool = False, train: bool = True,
                 min_size: int | None = 800, max_size: int | None = 1333, hflip_prob: float = 0.5):
        if not 0.0 <= hflip_prob <= 1.0:
            raise ValueError(f"hflip_prob must be in [0, 1], got {hflip_prob}")
        for name, v in (("min_size", min_size), ("max_size", max_size)):
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {v}")
        self.dataset: Dataset = (dataset_or_path if isinstance(dataset_or_path, Dataset)
                                 else load_dataset(dataset_or_path))
        self.images_dir = Path(images_dir)
        self.masks, self.train = masks, train
        self.min_size, self.max_size, self.hflip_prob = min_size, max_size, hflip_prob
        ix = self.index
        names = [image_file_name(im) for im in self.dataset.images]
        if None in names:
            raise ValueError(f"image id {int(ix.image_ids[names.index(None)])} has neither file_name nor coco_url")
        self.file_names = names
        # label k + 1 <-> category row k; entry 0 (background) maps to -1
        self.label_to_category_id = np.concatenate([[-1], ix.category_ids]).astype(np.int64)
        # non-crowd annotation rows grouped by image (CSR): rows of image i are _rows[_start[i]:_start[i+1]]
        keep = np.flatnonzero(~ix.ann_iscrowd)
        self._rows = keep[np.argsort(ix.ann_image_pos[keep], kind="stable")]
        self._start = np.searchsorted(ix.ann_image_pos[self._rows], np.arange(ix.num_images + 1))
        self._pipelines = self._build_pipelines()
        self._seeded_by = None  # who seeded the generators: ("main",) or ("worker", id, seed)

    # -- torch Dataset ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self.index.num_images

    def __getitem__(self, i: int):
        self._ensure_seeded()
        ix = self.index
        rows = self._rows[self._start[i]:self._start[i + 1]]
        image = self._read_image(i)
        h, w = image.shape[:2]
        boxes = ix.ann_boxes[rows].copy()
        boxes[:, 2:] += boxes[:, :2]                               # xywh -> xyxy
        np.clip(boxes, 0, [w, h, w, h], out=boxes)                 # COCO boxes may poke out by a pixel
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        rows, boxes = rows[valid], boxes[valid]
        data = {"image": image, "bboxes": boxes, "box_ids": np.arange(rows.size)}
        if self.masks and rows.size:
            data["masks"] = np.stack([self._mask(r, h, w) for r in rows.tolist()])
        pipeline = self._pipelines[self._resize_kind(h, w)]
        out = pipeline(**data) if pipeline is not None else data

        image = out["image"]
        new_h, new_w = image.shape[:2]
        boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        box_ids = np.asarray(out["box_ids"], dtype=np.int64)  # albumentations may drop boxes itself
        ok = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIDE)
        boxes, box_ids = boxes[ok], box_ids[ok]
        kept = rows[box_ids]

        areas = ix.ann_areas[kept]
        src = ix.ann_boxes[kept]
        areas = np.where(np.isnan(areas), src[:, 2] * src[:, 3], areas) * (new_w / w) * (new_h / h)
        target = {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.from_numpy(ix.ann_category_pos[kept] + 1),
            "image_id": int(ix.image_ids[i]),
            "area": torch.from_numpy(areas.astype(np.float32)),
            "iscrowd": torch.zeros(kept.size, dtype=torch.int64),
            "orig_size": torch.tensor([h, w], dtype=torch.int64),
            "size": torch.tensor([new_h, new_w], dtype=torch.int64),
        }
        if self.masks:
            masks = np.asarray(out["masks"])[box_ids] if box_ids.size else np.zeros((0, new_h, new_w), np.uint8)
            target["masks"] = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.uint8))
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        return tensor, target

    # -- the training file's class statistics (label order: entry c - 1 is label c) ----------
    @property
    def index(self):
        """The columnar index of the annotation file (:class:`ltaug.io.index.DatasetIndex`)."""
        return self.dataset.index

    @property
    def num_classes(self) -> int:
        """K, the number of foreground labels (categories); a model needs K + 1 outputs."""
        return self.index.num_categories

    def class_instance_counts(self) -> np.ndarray:
        """(K,) int64 training instances per label (crowd regions excluded, repeated entries counted)."""
        ix = self.index
        return np.bincount(ix.ann_category_pos[~ix.ann_iscrowd], minlength=ix.num_categories).astype(np.int64)

    def class_image_counts(self) -> np.ndarray:
        """(K,) int64 images (file entries) with at least one non-crowd instance of each label."""
        ix = self.index
        k = max(ix.num_categories, 1)
        pairs = np.unique(ix.ann_image_pos[~ix.ann_iscrowd] * k + ix.ann_category_pos[~ix.ann_iscrowd])
        return np.bincount(pairs % k, minlength=ix.num_categories).astype(np.int64)

    def image_path(self, i: int) -> Path:
        return self.images_dir / self.file_names[i]

    # -- randomness -------------------------------------------------------------------------
    def reseed(self, seed: int) -> None:
        """Seed the augmentation generators (done automatically; see the module docstring)."""
        rng, py_rng = np.random.default_rng(seed), random.Random(seed)
        for pipeline in self._pipelines.values():
            if pipeline is not None:
                pipeline.set_random_state(rng, py_rng)
        self._seeded_by = ("main",)

    def _ensure_seeded(self) -> None:
        info = get_worker_info()
        key = ("main",) if info is None else ("worker", info.id, info.seed)
        if self._seeded_by == key:
            return
        self.reseed(torch.initial_seed() if info is None else info.seed)
        self._seeded_by = key

    # -- helpers ----------------------------------------------------------------------------
    def _build_pipelines(self) -> dict:
        flip = [A.HorizontalFlip(p=self.hflip_prob)] if self.train and self.hflip_prob > 0 else []
        resizes = {"none": []}
        if self.min_size is not None:
            resizes["short"] = [A.SmallestMaxSize(max_size=self.min_size)]
        if self.max_size is not None:
            resizes["long"] = [A.LongestMaxSize(max_size=self.max_size)]
        bbox_params = A.BboxParams(format="pascal_voc", label_fields=["box_ids"])
        return {k: A.Compose(flip + r, bbox_params=bbox_params) if flip + r else None for k, r in resizes.items()}

    def _resize_kind(self, h: int, w: int) -> str:
        """Which side decides torchvision's scale min(min_size / short, max_size / long)."""
        if self.min_size is None:
            return "long" if self.max_size is not None and max(h, w) > self.max_size else "none"
        if self.max_size is None or self.min_size / min(h, w) <= self.max_size / max(h, w):
            return "short"
        return "long"

    def _read_image(self, i: int) -> np.ndarray:
        path = self.image_path(i)
        image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"{path}: missing or not a readable image (image id {int(self.index.image_ids[i])})")
        want = (int(self.index.image_heights[i]), int(self.index.image_widths[i]))
        if image.shape[:2] != want:
            raise ValueError(f"{path}: image is {image.shape[1]}x{image.shape[0]} but the annotation file "
                             f"says {want[1]}x{want[0]} (image id {int(self.index.image_ids[i])})")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def _mask(self, row: int, h: int, w: int) -> np.ndarray:
        seg = self.dataset.annotations[row].get("segmentation")
        if segmentation_kind(seg) != NO_SEGMENTATION:
            return decode(seg, h, w)
        return box_mask(self.index.ann_boxes[row].tolist(), h, w)  # box-only: the box as pycocotools rasterises it

    def __repr__(self) -> str:
        return (f"DetectionDataset({len(self)} images, {self.num_classes} classes, masks={self.masks}, "
                f"train={self.train}, min_size={self.min_size}, max_size={self.max_size}, "
                f"images_dir={str(self.images_dir)!r})")


def collate_fn(batch):
    """``[(image, target), ...]`` -> ``((image, ...), (target, ...))``: images differ in size."""
    return tuple(zip(*batch))


def batch_to(images, targets, device) -> tuple[list, list]:
    """A collated batch on ``device``: the images, and every tensor of each target dict."""
    return ([im.to(device) for im in images],
            [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets])


def worker_init_fn(worker_id: int) -> None:
    """Seed the worker's :class:`DetectionDataset` now rather than on its first item (optional)."""
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, DetectionDataset):
        info.dataset._ensure_seeded()
