"""LVIS frequency bins: rare / common / frequent by the number of training images per class.

Gupta et al., "LVIS: A Dataset for Large Vocabulary Instance Segmentation", CVPR 2019:
a category is *rare* if it appears in 1-10 training images, *common* in 11-100, *frequent*
in more than 100. APr/APc/APf average AP over these groups. The thresholds are arguments so
that small datasets (a few hundred images) can use proportionally smaller ones.
"""
from __future__ import annotations

import numpy as np

from ltaug.errors import SpecError
from ltaug.io.dataset import LVIS, Dataset

RARE_MAX, COMMON_MAX = 10, 100
BINS = ("r", "c", "f")


def frequency_bins(image_counts, *, rare_max: int = RARE_MAX, common_max: int = COMMON_MAX) -> np.ndarray:
    """Bin per class: ``r`` if images <= rare_max, ``c`` if <= common_max, else ``f``.

    A class with zero images is binned ``r`` (as LVIS does for classes absent from a split).
    """
    if not 0 <= rare_max < common_max:
        raise SpecError("rare_max", f"must satisfy 0 <= rare_max < common_max, got {rare_max} and {common_max}")
    counts = np.asarray(image_counts)
    return np.where(counts <= rare_max, "r", np.where(counts <= common_max, "c", "f"))


def uses_stored_frequency(dataset: Dataset, rare_max: int | None = None, common_max: int | None = None) -> bool:
    """True when :func:`dataset_bins` takes the file's stored LVIS ``frequency`` (no thresholds given)."""
    return (dataset.kind == LVIS and rare_max is None and common_max is None
            and all("frequency" in c for c in dataset.categories))


def dataset_bins(dataset: Dataset, *, rare_max: int | None = None, common_max: int | None = None) -> np.ndarray:
    """The r/c/f bin of each category (index order).

    For an LVIS file with no thresholds given, the stored ``frequency`` is used (evaluation
    groups classes by it); otherwise bins are computed from this file's image counts.
    """
    if uses_stored_frequency(dataset, rare_max, common_max):
        return np.array([c["frequency"] for c in dataset.categories])
    return frequency_bins(dataset.index.image_counts,
                          rare_max=RARE_MAX if rare_max is None else rare_max,
                          common_max=COMMON_MAX if common_max is None else common_max)


def recount(dataset: Dataset, *, rare_max: int = RARE_MAX, common_max: int = COMMON_MAX) -> Dataset:
    """A copy whose categories carry recomputed ``image_count``, ``instance_count`` and ``frequency``.

    Every other field of each category is kept; the result is an LVIS-kind dataset.
    """
    ix = dataset.index
    bins = frequency_bins(ix.image_counts, rare_max=rare_max, common_max=common_max)
    cats = []
    for c, n_img, n_inst, b in zip(dataset.categories, ix.image_counts, ix.instance_counts, bins):
        c = dict(c)
        c["image_count"], c["instance_count"], c["frequency"] = int(n_img), int(n_inst), str(b)
        cats.append(c)
    out = dataset.replace(categories=cats)
    out.kind = LVIS
    return out


def to_lvis(dataset: Dataset, *, rare_max: int = RARE_MAX, common_max: int = COMMON_MAX) -> Dataset:
    """Turn an exhaustively annotated COCO dataset into an LVIS-style one.

    Categories get ``image_count``, ``instance_count`` and ``frequency`` (see :func:`recount`).
    LVIS's federated evaluation needs, per image, the categories verified absent
    (``neg_category_ids``) and those not exhaustively annotated
    (``not_exhaustive_category_ids``). COCO annotates every category on every image, so each
    category absent from an image is a verified negative and none is non-exhaustive, except
    where COCO marks a crowd region: LVIS has no crowd notion (lvis-api would score a crowd
    region as one object a detector must find), so crowd regions are removed, and their class
    is not exhaustively annotated on that image (and not a negative). Fields the images
    already carry are kept.
    """
    ix = dataset.index
    present = np.zeros((ix.num_images, ix.num_categories), dtype=bool)
    present[ix.ann_image_pos, ix.ann_category_pos] = True
    crowded = np.zeros_like(present)
    crowded[ix.ann_image_pos[ix.ann_iscrowd], ix.ann_category_pos[ix.ann_iscrowd]] = True
    images = []
    for im, row, crowd_row in zip(dataset.images, present, crowded):
        im = dict(im)
        im.setdefault("neg_category_ids", ix.category_ids[~row].tolist())
        im.setdefault("not_exhaustive_category_ids", ix.category_ids[crowd_row].tolist())
        images.append(im)
    kept = [a for a, crowd in zip(dataset.annotations, ix.ann_iscrowd) if not crowd]
    out = recount(dataset.replace(annotations=kept), rare_max=rare_max, common_max=common_max)
    return out.replace(images=images)
