"""Rebalance a dataset by resampling its images, and write the result as a COCO/LVIS document.

``resample_counts`` turns a method and its parameters into how many times each image is
used over E epochs; ``expand_dataset`` writes those repeats out: every copy after the first
gets new image and annotation ids and points to the same ``file_name``, and every image and
annotation carries an ``ltaug`` provenance record. Category fields (LVIS ``frequency``,
``image_count``, ...) are left as in the source, so evaluation keeps the original r/c/f bins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import gc_paused
from ltaug.rebalance import sampling

METHODS = ("rfs", "cas", "sqrt", "soft")
ROUNDINGS = ("stochastic", "ceil")


@dataclass
class ResampleResult:
    counts: np.ndarray            # (I,) total uses of each image over all epochs
    expected_per_epoch: np.ndarray  # (I,) expected uses per epoch (the repeat factors for rfs)
    spec: Any                     # the ltaug.ops.Resample it was drawn for
    per_epoch: list = field(default_factory=list)  # (I,) counts of each epoch


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch: independent streams, the same whatever the number of epochs."""
    return np.random.default_rng([int(seed), int(epoch)])


def resample_counts(dataset: Dataset, spec) -> ResampleResult:
    """How many times each image is used in each of ``spec.epochs`` epochs."""
    ix = dataset.index
    per_epoch = []
    if spec.method == "rfs":
        factors = sampling.repeat_factors(ix, threshold=spec.threshold, sqrt=spec.sqrt)
        for e in range(spec.epochs):
            per_epoch.append(sampling.round_repeats(factors, epoch_rng(spec.seed, e), rounding=spec.rounding))
        expected = factors if spec.rounding == "stochastic" else np.ceil(factors)
    else:
        table = sampling.ClassImages.from_index(ix)
        n = spec.samples_per_epoch or ix.num_images
        lams = sampling.soft_lambda_schedule(spec.epochs, start=spec.lam,
                                             end=spec.lam if spec.lam_end is None else spec.lam_end)
        expected = np.zeros(ix.num_images)
        for e in range(spec.epochs):
            probs = sampling.class_probabilities(ix.image_counts, spec.method, lam=float(lams[e]))
            draws = sampling.draw_class_then_image(table, probs, n, epoch_rng(spec.seed, e))
            per_epoch.append(np.bincount(draws, minlength=ix.num_images).astype(np.int64))
            expected += sampling.expected_draws(table, probs, n, ix.num_images) / spec.epochs
    counts = np.sum(per_epoch, axis=0).astype(np.int64)
    return ResampleResult(counts=counts, expected_per_epoch=expected, spec=spec, per_epoch=per_epoch)


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
    """Per-image expected uses per epoch, for an online sampler (the trainer reads this).

    For ``rfs`` these are the repeat factors r(I); an online sampler rounds them
    stochastically each epoch. For the class-sampling methods they are the expected number
    of draws per epoch, S * sum_{c in I} p_c / n_c, which the same sampler can use.
    """
    return {
        "format": "ltaug-repeat-factors/1",
        "method": result.spec.method,
        "params": result.spec.params(),
        "image_ids": dataset.index.image_ids,
        "repeat_factors": np.round(result.expected_per_epoch, 9),
    }


__all__ = ["METHODS", "ResampleResult", "resample", "resample_counts", "expand_dataset",
           "repeat_factor_document"]
