"""Columnar index over a COCO/LVIS document: numpy arrays, no per-annotation objects.

Built once from the json lists and then used by every hot path (statistics, sampling,
planning). Positions (``*_pos``) are row numbers into the image / category arrays, so
per-class or per-image reductions are ``np.bincount`` calls.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _ints(values, n: int) -> np.ndarray:
    return np.fromiter(values, dtype=np.int64, count=n)


@dataclass(frozen=True)
class DatasetIndex:
    image_ids: np.ndarray          # (I,) int64, in file order
    image_widths: np.ndarray       # (I,) int64
    image_heights: np.ndarray      # (I,) int64
    ann_ids: np.ndarray            # (A,) int64, in file order
    ann_image_ids: np.ndarray      # (A,) int64
    ann_category_ids: np.ndarray   # (A,) int64
    ann_boxes: np.ndarray          # (A, 4) float64, [x, y, w, h]
    ann_areas: np.ndarray          # (A,) float64 (NaN where the file has no area)
    ann_iscrowd: np.ndarray        # (A,) bool
    ann_image_pos: np.ndarray      # (A,) int64 row into image_ids
    ann_category_pos: np.ndarray   # (A,) int64 row into category_ids
    category_ids: np.ndarray       # (C,) int64, in file order
    category_names: tuple          # (C,) str
    instance_counts: np.ndarray    # (C,) int64: annotations per class (crowd included)
    image_counts: np.ndarray       # (C,) int64: images containing the class

    @property
    def num_images(self) -> int:
        return int(self.image_ids.size)

    @property
    def num_annotations(self) -> int:
        return int(self.ann_ids.size)

    @property
    def num_categories(self) -> int:
        return int(self.category_ids.size)

    def category_positions(self, category_ids) -> np.ndarray:
        """Rows of ``category_ids`` in this index; raises KeyError for an unknown id."""
        return _positions(self.category_ids, np.asarray(category_ids, dtype=np.int64), "category")

    def image_positions(self, image_ids) -> np.ndarray:
        """Rows of ``image_ids`` in this index; raises KeyError for an unknown id."""
        return _positions(self.image_ids, np.asarray(image_ids, dtype=np.int64), "image")

    def annotations_per_image(self) -> np.ndarray:
        """(I,) number of annotations on each image."""
        return np.bincount(self.ann_image_pos, minlength=self.num_images)


def _positions(keys: np.ndarray, query: np.ndarray, what: str) -> np.ndarray:
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pos = np.searchsorted(sorted_keys, query)
    pos_clipped = np.minimum(pos, max(sorted_keys.size - 1, 0))
    found = (sorted_keys.size > 0) & (sorted_keys[pos_clipped] == query) if query.size else np.ones(0, bool)
    if not np.all(found):
        missing = query[~found][0]
        raise KeyError(f"unknown {what} id {int(missing)}")
    return order[pos_clipped]


def build_index(images: list, annotations: list, categories: list) -> DatasetIndex:
    """Index already-validated records (ids unique, references resolvable)."""
    n_i, n_a, n_c = len(images), len(annotations), len(categories)
    image_ids = _ints((im["id"] for im in images), n_i)
    cat_ids = _ints((c["id"] for c in categories), n_c)
    ann_boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(n_a, 4)
    ann_areas = np.fromiter((a.get("area", np.nan) for a in annotations), dtype=np.float64, count=n_a)
    ann_image_ids = _ints((a["image_id"] for a in annotations), n_a)
    ann_cat_ids = _ints((a["category_id"] for a in annotations), n_a)
    image_pos = _positions(image_ids, ann_image_ids, "image")
    cat_pos = _positions(cat_ids, ann_cat_ids, "category")
    instance_counts = np.bincount(cat_pos, minlength=n_c).astype(np.int64)
    pairs = np.unique(image_pos * max(n_c, 1) + cat_pos)
    image_counts = np.bincount(pairs % max(n_c, 1), minlength=n_c).astype(np.int64) if n_c else np.zeros(0, np.int64)
    return DatasetIndex(
        image_ids=image_ids,
        image_widths=_ints((im["width"] for im in images), n_i),
        image_heights=_ints((im["height"] for im in images), n_i),
        ann_ids=_ints((a["id"] for a in annotations), n_a),
        ann_image_ids=ann_image_ids,
        ann_category_ids=ann_cat_ids,
        ann_boxes=ann_boxes,
        ann_areas=ann_areas,
        ann_iscrowd=np.fromiter((bool(a.get("iscrowd", 0)) for a in annotations), dtype=bool, count=n_a),
        ann_image_pos=image_pos,
        ann_category_pos=cat_pos,
        category_ids=cat_ids,
        category_names=tuple(str(c["name"]) for c in categories),
        instance_counts=instance_counts,
        image_counts=image_counts,
    )
