"""Paired bootstrap over validation images: is a method's AP difference to the baseline larger than the noise?

With a small validation set (COCO-LT-mini val: 158 images, rare classes with 1-3 instances)
which images happen to be in it moves AP by points. The paired bootstrap (Efron & Tibshirani,
"An Introduction to the Bootstrap", 1993, ch. 16; used for detection by e.g. Dror et al. 2018
for NLP systems) estimates that noise: draw the val images with replacement B times; on each
draw evaluate every run on the *same* drawn images; the 2.5th and 97.5th percentiles of
(method - baseline) over the draws give a 95% interval of the difference. A difference whose
interval excludes 0 is larger than the image-sampling noise.

With several seeds per method, each draw scores every seed's detections and averages them
per method before the difference, so the interval is about the images; the spread over seeds
is reported separately (mean +/- std).

A drawn image that appears k times becomes k images with fresh ids (annotations and
detections copied), so COCO evaluation sees a valid dataset. Frequency bins are fixed (given
by the caller, from the training file), not recomputed on each draw.
"""
from __future__ import annotations

import numpy as np

from ltaug import Dataset

from .evaluate import evaluate

METRICS = ("AP", "APr", "APc", "APf")


def resampled_gt(gt: Dataset, picks: np.ndarray) -> tuple[Dataset, list]:
    """The ground truth made of the images at positions ``picks`` (repeats allowed), each copy a
    new image id 1..len(picks); and, per copy, the original image id."""
    idx = gt.index
    anns_of: dict = {}
    for a in gt.annotations:
        anns_of.setdefault(a["image_id"], []).append(a)
    images, annotations, origin = [], [], []
    next_ann = 1
    for new_id, pos in enumerate(picks.tolist(), start=1):
        src = gt.images[pos]
        images.append({**src, "id": new_id})
        origin.append(int(idx.image_ids[pos]))
        for a in anns_of.get(src["id"], ()):
            annotations.append({**a, "id": next_ann, "image_id": new_id})
            next_ann += 1
    return gt.replace(images=images, annotations=annotations), origin


def resampled_detections(detections: list, origin: list) -> list:
    """Detections copied onto the resampled images (each copy of an image gets its detections)."""
    by_image: dict = {}
    for d in detections:
        by_image.setdefault(d["image_id"], []).append(d)
    return [{**d, "image_id": new_id} for new_id, old in enumerate(origin, start=1) for d in by_image.get(old, ())]


def _scores(gt, runs: dict, bins: dict, iou_type: str) -> dict:
    """Per method, the seed-mean of each metric (None where undefined for every seed)."""
    out = {}
    for method, seeds in runs.items():
        values = {m: [] for m in METRICS}
        for dets in seeds:
            r = evaluate(gt, dets, iou_types=(iou_type,), bins=bins)[iou_type]
            for m in METRICS:
                if r.get(m) is not None:
                    values[m].append(r[m])
        out[method] = {m: (float(np.mean(v)) if v else None) for m, v in values.items()}
    return out


def paired_bootstrap(gt: Dataset, runs: dict, baseline: str, *, bins: dict, iou_type: str = "bbox",
                     samples: int = 200, seed: int = 0, progress: bool = False) -> dict:
    """Differences to ``baseline`` with 95% paired-bootstrap intervals over val images.

    ``runs``: method name -> list of detection lists (one per seed). ``bins``: category id ->
    "r" / "c" / "f". Returns, per method other than the baseline and per metric:
    ``{"diff": full-set difference, "low": 2.5th pct, "high": 97.5th pct, "samples": draws
    where both were defined, "beyond_noise": the interval excludes 0}``.
    """
    from tqdm import tqdm

    if baseline not in runs:
        raise ValueError(f"baseline {baseline!r} is not among the runs ({', '.join(runs)})")
    rng = np.random.default_rng(seed)
    n = len(gt.images)
    full = _scores(gt, runs, bins, iou_type)
    draws = {method: {m: [] for m in METRICS} for method in runs if method != baseline}
    for _ in tqdm(range(samples), desc="bootstrap", disable=not progress, leave=False):
        sample, origin = resampled_gt(gt, rng.integers(0, n, size=n))
        sample_runs = {method: [resampled_detections(d, origin) for d in seeds] for method, seeds in runs.items()}
        scores = _scores(sample, sample_runs, bins, iou_type)
        for method in draws:
            for m in METRICS:
                a, b = scores[baseline][m], scores[method][m]
                if a is not None and b is not None:
                    draws[method][m].append(b - a)
    out = {}
    for method, per_metric in draws.items():
        out[method] = {}
        for m, diffs in per_metric.items():
            a, b = full[baseline][m], full[method][m]
            low, high = (np.percentile(diffs, [2.5, 97.5]).tolist() if diffs else (None, None))
            out[method][m] = {"diff": None if a is None or b is None else b - a, "low": low, "high": high,
                              "samples": len(diffs),
                              "beyond_noise": bool(diffs) and (low > 0 or high < 0)}
    return out
