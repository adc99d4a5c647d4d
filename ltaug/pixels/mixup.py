"""Mixup of two images for detection: a Beta-weighted blend that keeps the objects of both.

Zhang et al., "mixup" (ICLR 2018) blends images and labels; for detection Zhang et al., "Bag
of Freebies for Training Object Detection Neural Networks" (2019) blend the images with
lambda ~ Beta(alpha, alpha) (they use alpha = 1.5) and keep both images' boxes, each weighted
by its image's share. Here image B is resized keeping its aspect ratio to fit inside image A
and placed at A's top-left corner; where B does not reach, the output is A itself. Output =
lambda * A + (1 - lambda) * B'. Every annotation records its weight (lambda for A's objects,
1 - lambda for B's) in ``ltaug.mixup_weight``, for a trainer that weights its loss by it.
"""
from __future__ import annotations

import cv2
import numpy as np

from ltaug.pixels.functional import mix
from ltaug.pixels.mosaic import warp_annotation


def plan_mixup(dataset, spec) -> list[dict]:
    """Recipes ``{"sources": [a, b], "lam": lambda}``: two distinct images (when there are two), lambda ~ Beta."""
    rng = np.random.default_rng([spec.seed, 0x313C0])
    ids = dataset.index.image_ids
    n = ids.size if spec.count is None else spec.count
    if ids.size == 0:
        return []
    a = rng.integers(0, ids.size, size=n)
    b = (a + rng.integers(1, ids.size, size=n)) % ids.size if ids.size > 1 else a
    lam = rng.beta(spec.alpha, spec.alpha, size=n)
    return [{"sources": [int(ids[i]), int(ids[j])], "lam": round(float(x), 6)} for i, j, x in zip(a, b, lam)]


def render_mixup(a, b, recipe: dict, spec) -> tuple[np.ndarray, list[dict], list]:
    """The mixed image and both images' annotations (no ids yet, with provenance and weights)."""
    (img_a, rec_a, anns_a), (img_b, rec_b, anns_b) = a, b
    lam = float(recipe["lam"])
    H, W = img_a.shape[:2]
    h, w = img_b.shape[:2]
    s = min(W / w, H / h)
    tw, th = max(1, min(W, round(w * s))), max(1, min(H, round(h * s)))
    under = img_a.copy()
    under[:th, :tw] = cv2.resize(img_b, (tw, th), interpolation=cv2.INTER_LINEAR)
    out = mix(img_a, under, lam)
    anns: list[dict] = []
    dropped: list[int] = []
    for weight, record, src_anns, moved in ((lam, rec_a, anns_a, False), (1 - lam, rec_b, anns_b, True)):
        for ann in src_anns:
            new: dict | None
            if not moved:  # A's objects stay where they are
                new = {k: v for k, v in ann.items() if k not in ("id", "image_id", "ltaug")}
            else:
                new = warp_annotation(ann, (h, w), (tw / w, th / h), (0, 0), (0, 0, tw, th), (H, W), spec)
                if new is None:
                    dropped.append(ann["category_id"])
                    continue
            new["ltaug"] = {"op": "mixup", "source_annotation_id": ann["id"], "source_image_id": record["id"],
                            "mixup_weight": round(weight, 6)}
            anns.append(new)
    return out, anns, dropped
