"""Columnar index over a COCO/LVIS document: numpy arrays, no per-annotation objects.

Built once from the json lists and then used by every hot path (statistics, sampling,
planning). Positions (``*_pos``) are row numbers into the image / category arrays, so
per-class or per-image reductions are ``np.bincount`` calls.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
from numpy.typing import ArrayLike


def _ints(values: Iterable[int], n: int) -> np.ndarray:
    return np.fromiter(values, dtype=np.int64, count=n)


@dataclass(frozen=True)
class DatasetIndex:
    """The columns of a dataset (:attr:`ltaug.io.dataset.Dataset.index`): one numpy array per field
    of the images, annotations and categories, in file order, plus per-class counts."""

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

    def category_positions(self, category_ids: ArrayLike) -> np.ndarray:
        """Rows of ``category_ids`` in this index; raises KeyError for an unknown id."""
        return _positions(self.category_ids, np.asarray(category_ids, dtype=np.int64), "category")

    def image_positions(self, image_ids: ArrayLike) -> np.ndarray:
        """Rows of ``image_ids`` in this index; raises KeyError for an unknown id."""
        return _positions(self.image_ids, np.asarray(image_ids, dtype=np.int64), "image")

    def annotations_per_image(self) -> np.ndarray:
        """(I,) number of annotations on each image."""
        return np.bincount(self.ann_image_pos, minlength=self.num_images)

    def annotations_by_image(self) -> tuple[np.ndarray, np.ndarray]:
        """``(order, bounds)``: annotation rows grouped by image, in file order within an image
        (a stable sort); image row ``p``'s annotations are ``order[bounds[p]:bounds[p + 1]]``."""
        order = np.argsort(self.ann_image_pos, kind="stable")
        return order, np.searchsorted(self.ann_image_pos[order], np.arange(self.num_images + 1))


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


@dataclass(frozen=True)
class AnnotationColumns:
    """The per-annotation columns of a document, in file order."""

    ids: np.ndarray            # int64
    image_ids: np.ndarray      # int64
    category_ids: np.ndarray   # int64
    boxes: np.ndarray          # (A, 4) float64
    areas: np.ndarray          # float64, NaN where absent (JSON has no NaN, so NaN means absent)
    iscrowd: np.ndarray        # bool


def annotation_columns(annotations: list) -> AnnotationColumns:
    """Columns of records that have ``id``, ``image_id``, ``category_id`` and a 4-number ``bbox``."""
    return columns_from_lists(list(map(itemgetter("id"), annotations)), list(map(itemgetter("image_id"), annotations)),
                              list(map(itemgetter("category_id"), annotations)),
                              list(map(itemgetter("bbox"), annotations)),
                              [a.get("area", np.nan) for a in annotations], [a.get("iscrowd", 0) for a in annotations])


def columns_from_lists(ids: list, image_ids: list, category_ids: list, boxes: list, areas: list,
                       iscrowd: list) -> AnnotationColumns:
    """:class:`AnnotationColumns` from each field's values, already taken out of the records (the
    validator's fast pass has them as lists: each column is read from the records once)."""
    n = len(ids)
    return AnnotationColumns(
        ids=_ints(ids, n),
        image_ids=_ints(image_ids, n),
        category_ids=_ints(category_ids, n),
        boxes=np.fromiter(itertools.chain.from_iterable(boxes), dtype=np.float64, count=4 * n).reshape(n, 4),
        areas=np.fromiter(areas, dtype=np.float64, count=n),
        iscrowd=_ints(iscrowd, n).astype(bool),
    )


def build_index(images: list, annotations: list, categories: list, *,
                columns: AnnotationColumns | None = None) -> DatasetIndex:
    """Index already-validated records (ids unique, references resolvable).

    ``columns``: the annotation columns, when the caller (the validator) already built them.
    """
    n_i, n_c = len(images), len(categories)
    cols = columns if columns is not None else annotation_columns(annotations)
    image_ids = _ints((im["id"] for im in images), n_i)
    cat_ids = _ints((c["id"] for c in categories), n_c)
    image_pos = _positions(image_ids, cols.image_ids, "image")
    cat_pos = _positions(cat_ids, cols.category_ids, "category")
    instance_counts = np.bincount(cat_pos, minlength=n_c).astype(np.int64)
    pairs = np.unique(image_pos * max(n_c, 1) + cat_pos)
    image_counts = np.bincount(pairs % max(n_c, 1), minlength=n_c).astype(np.int64) if n_c else np.zeros(0, np.int64)
    return DatasetIndex(
        image_ids=image_ids,
        image_widths=_ints((im["width"] for im in images), n_i),
        image_heights=_ints((im["height"] for im in images), n_i),
        ann_ids=cols.ids,
        ann_image_ids=cols.image_ids,
        ann_category_ids=cols.category_ids,
        ann_boxes=cols.boxes,
        ann_areas=cols.areas,
        ann_iscrowd=cols.iscrowd,
        ann_image_pos=image_pos,
        ann_category_pos=cat_pos,
        category_ids=cat_ids,
        category_names=tuple(str(c["name"]) for c in categories),
        instance_counts=instance_counts,
        image_counts=image_counts,
    )
