"""Paired bootstrap over val images: resampling is exact, equal runs differ by 0, a better run is seen."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import DEMO

from ltaug import load_dataset

pytest.importorskip("faster_coco_eval")
from ltaug.trainer.bootstrap import paired_bootstrap, resampled_detections, resampled_gt  # noqa: E402

VAL = DEMO / "annotations" / "val.json"


@pytest.fixture(scope="module")
def val():
    return load_dataset(VAL)


def perfect(ds, keep=1.0, seed=0):
    """Ground-truth boxes as detections (score 1), keeping a fraction of them."""
    rng = np.random.default_rng(seed)
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in ds.annotations if not a.get("iscrowd") and rng.random() < keep]


def bins_of(ds):
    return {c["id"]: "rfc"[i % 3] for i, c in enumerate(ds.categories)}


def test_resampled_images_and_detections(val):
    picks = np.array([0, 0, 3])
    gt, origin = resampled_gt(val, picks)
    ids = [im["id"] for im in val.images]
    assert [im["id"] for im in gt.images] == [1, 2, 3] and origin == [ids[0], ids[0], ids[3]]
    n0 = sum(a["image_id"] == ids[0] for a in val.annotations)
    n3 = sum(a["image_id"] == ids[3] for a in val.annotations)
    assert len(gt.annotations) == 2 * n0 + n3
    assert len({a["id"] for a in gt.annotations}) == len(gt.annotations)
    dets = perfect(val)
    moved = resampled_detections(dets, origin)
    assert len(moved) == sum(d["image_id"] == ids[0] for d in dets) * 2 + sum(d["image_id"] == ids[3] for d in dets)


def test_equal_runs_differ_by_zero_and_a_better_run_is_beyond_noise(val):
    half = perfect(val, keep=0.5)
    runs = {"base": [half], "same": [half], "better": [perfect(val)]}
    out = paired_bootstrap(val, runs, "base", bins=bins_of(val), samples=30, seed=0)
    same = out["same"]["AP"]
    assert same["diff"] == 0 and same["low"] == 0 and same["high"] == 0 and not same["beyond_noise"]
    better = out["better"]["AP"]
    assert better["diff"] > 0.2 and better["low"] > 0 and better["beyond_noise"]
    assert better["samples"] == 30
    with pytest.raises(ValueError, match="baseline"):
        paired_bootstrap(val, runs, "nope", bins=bins_of(val), samples=2)
