"""Rebalance a dataset by resampling its images, and write the result as a COCO/LVIS document.

``resample_counts`` turns a method and its parameters into how many times each image is
used over E epochs; ``expand_dataset`` writes those repeats out: every copy after the first
gets new image and annotation ids and points to the same ``file_name``, and every image and
annotation carries an ``ltaug`` provenance record. Category fields (LVIS ``frequency``,
``image_count``, ...) are left as in the source, so evaluation keeps the original r/c/f bins.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import gc_paused

_log = logging.getLogger(__name__)


@dataclass
class ResampleResult:
    counts: np.ndarray            # (I,) total uses of each image over all epochs
    expected_per_epoch: np.ndarray  # (I,) expected uses per epoch (the repeat factors for rfs)
    spec: Any                     # the ltaug.ops.Resample it was drawn for
    per_epoch: list = field(default_factory=list)  # (I,) counts of each epoch
    note: str | None = None       # one line when the parameters change (almost) nothing (also logged)


def resample_counts(dataset: Dataset, spec: Any) -> ResampleResult:
    """How many times each image is used in each of ``spec.epochs`` epochs, by the registered
    method ``spec.method`` (:mod:`ltaug.rebalance.methods`) with its parameters from ``spec``.
    Parameters that change nothing (or almost nothing) give a ``note`` (:meth:`ltaug.rebalance.methods.ResampleMethod.note`),
    also logged as a warning."""
    method = spec.method_spec()
    per_epoch, expected = method.draw(dataset.index, spec.epochs, spec.seed)
    counts = np.sum(per_epoch, axis=0).astype(np.int64)
    note = method.note(dataset.index, per_epoch, expected)
    if note:
        _log.warning("%s", note)
    return ResampleResult(counts=counts, expected_per_epoch=expected, spec=spec, per_epoch=per_epoch, note=note)


def expand_dataset(dataset: Dataset, counts: np.ndarray, *, op: str, params: dict) -> Dataset:
    """A dataset in which image i appears ``counts[i]`` times (0 drops it), with provenance.

    The first copy of an image keeps its image and annotation ids; further copies get new ids
    above the largest existing one, in output order. Copies of an image are consecutive.
    Each image gets ``"ltaug": {"source_image_id", "repeat", "op", "params"}`` and each
    annotation ``"ltaug": {"source_annotation_id", "repeat"}``.
    """
    ix = dataset.index
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (ix.num_images,) or (counts < 0).any():
        raise ValueError("counts must be one non-negative integer per image")
    anns_of, starts = ix.annotations_by_image()
    next_img = int(ix.image_ids.max(initial=0)) + 1
    next_ann = int(ix.ann_ids.max(initial=0)) + 1
    src_images, src_anns = dataset.images, dataset.annotations
    images, annotations = [], []
    with gc_paused():
        for pos in np.flatnonzero(counts).tolist():
            src = src_images[pos]
            ann_rows = [src_anns[row] for row in anns_of[starts[pos]:starts[pos + 1]].tolist()]
            for r in range(int(counts[pos])):
                if r == 0:
                    img_id = src["id"]
                else:
                    img_id, next_img = next_img, next_img + 1
                images.append({**src, "id": img_id, "ltaug": {"source_image_id": src["id"], "repeat": r,
                                                                "op": op, "params": params}})
                for a in ann_rows:
                    if r == 0:
                        ann_id = a["id"]
                    else:
                        ann_id, next_ann = next_ann, next_ann + 1
                    annotations.append({**a, "id": ann_id, "image_id": img_id,
                                        "ltaug": {"source_annotation_id": a["id"], "repeat": r}})
    return dataset.replace(images=images, annotations=annotations)


def resample(dataset: Dataset, spec) -> tuple[Dataset, ResampleResult]:
    """Resample ``dataset`` for ``spec.epochs`` epochs; returns the new dataset and the counts."""
    result = resample_counts(dataset, spec)
    out = expand_dataset(dataset, result.counts, op=f"resample:{spec.method}", params=spec.params())
    return out, result


def repeat_factor_document(dataset: Dataset, result: ResampleResult) -> dict:
    """Per-image expected uses per epoch, for an online sampler (the trainer reads this): the
    ``ltaug-repeat-factors/2`` document (:mod:`ltaug.rebalance.factors`).

    For ``rfs`` these are the repeat factors r(I); an online sampler rounds them
    stochastically each epoch. For the class-sampling methods they are the expected number
    of draws per epoch, S * sum_{c in I} p_c / n_c, which the same sampler can use.
    """
    from ltaug.rebalance.factors import factor_document

    return factor_document(dataset, result.expected_per_epoch, method=result.spec.method, params=result.spec.params())


__all__ = ["ResampleResult", "resample", "resample_counts", "expand_dataset",
           "repeat_factor_document"]
