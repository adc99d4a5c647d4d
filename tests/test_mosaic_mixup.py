"""Mosaic layout and annotation carrying; mixup weights, sizes and the uncovered part of A."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from ltaug.io.geometry import decode
from ltaug.ops import Mixup, Mosaic
from ltaug.pixels.mixup import plan_mixup, render_mixup
from ltaug.pixels.mosaic import plan_mosaic, render_mosaic, tile_layout


def rle_json(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask))
    return {"size": r["size"], "counts": r["counts"].decode()}


def test_tiles_meet_at_the_centre_and_fit_a_quarter():
    size, centre = (640, 640), (300, 350)
    windows = []
    for k in range(4):
        (tw, th), (ox, oy), window = tile_layout((480, 640), size, centre, k)
        assert tw <= 320 and th <= 320 and max(tw / 640, th / 480) > 0.49
        corner = [(ox + tw, oy + th), (ox, oy + th), (ox + tw, oy), (ox, oy)][k]
        assert corner == centre
        windows.append(window)
    # the four windows do not overlap
    cover = np.zeros((640, 640), int)
    for x0, y0, x1, y1 in windows:
        cover[y0:y1, x0:x1] += 1
    assert cover.max() == 1


def test_mosaic_carries_masks_and_drops_remnants():
    img = np.full((400, 400, 3), 200, np.uint8)
    inside = {"id": 1, "image_id": 9, "category_id": 5, "iscrowd": 0, "bbox": [300.0, 300.0, 60.0, 60.0], "area": 3600.0,
              "segmentation": [[300.0, 300.0, 360.0, 300.0, 360.0, 360.0, 300.0, 360.0]]}
    far = {"id": 2, "image_id": 9, "category_id": 6, "iscrowd": 0, "bbox": [0.0, 0.0, 30.0, 30.0], "area": 900.0,
           "segmentation": [[0.0, 0.0, 30.0, 0.0, 30.0, 30.0, 0.0, 30.0]]}
    spec = Mosaic(size=(400, 400), min_visible=0.5)
    # centre near the top-left: tile 0 (top-left) shows only the bottom-right corner of its image
    recipe = {"centre": [100, 100]}
    sources = [(img, {"id": 9}, [inside, far])] + [(img, {"id": 8}, [])] * 3
    canvas, anns, dropped = render_mosaic(sources, recipe, spec)
    assert canvas.shape == (400, 400, 3)
    assert [a["category_id"] for a in anns] == [5] and dropped == [6]
    a = anns[0]
    m = decode(a["segmentation"], 400, 400)
    assert a["area"] == int(m.sum()) and abs(a["area"] - 3600 / 4) <= 40  # half size: a quarter of the area
    assert a["ltaug"] == {"op": "mosaic", "source_annotation_id": 1, "source_image_id": 9, "tile": 0}


def test_mixup_keeps_both_and_weights_them():
    a = np.full((640, 640, 3), 100, np.uint8)
    b = np.full((480, 640, 3), 200, np.uint8)  # fits without scaling: moved as it is
    mb = np.zeros((480, 640), np.uint8)
    mb[10:50, 10:60] = 1
    ann_b = {"id": 7, "image_id": 2, "category_id": 3, "bbox": [10.0, 10.0, 50.0, 40.0], "area": 2000, "iscrowd": 0,
             "segmentation": rle_json(mb)}
    ann_a = {"id": 6, "image_id": 1, "category_id": 4, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0,
             "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]}
    out, anns, dropped = render_mixup((a, {"id": 1}, [ann_a]), (b, {"id": 2}, [ann_b]), {"lam": 0.25}, Mixup())
    assert np.all(out[:480] == 175) and np.all(out[480:] == 100)  # 0.25 * 100 + 0.75 * 200; A alone below B
    assert [x["ltaug"]["mixup_weight"] for x in anns] == [0.25, 0.75] and not dropped
    assert anns[0]["segmentation"] == ann_a["segmentation"]
    assert anns[1]["segmentation"]["size"] == [640, 640]  # on the output's canvas, not B's
    assert np.array_equal(decode(anns[1]["segmentation"], 640, 640)[:480], mb)


def test_plans_are_seeded(demo_train_path):
    from ltaug import load_dataset

    ds = load_dataset(demo_train_path)
    assert plan_mosaic(ds, Mosaic(count=5, seed=1)) == plan_mosaic(ds, Mosaic(count=5, seed=1))
    assert plan_mosaic(ds, Mosaic(count=5, seed=1)) != plan_mosaic(ds, Mosaic(count=5, seed=2))
    lams = [r["lam"] for r in plan_mixup(ds, Mixup(count=400, alpha=1.5, seed=0))]
    assert abs(np.mean(lams) - 0.5) < 0.05 and 0 < min(lams) and max(lams) < 1
    assert all(len(set(r["sources"])) == 2 for r in plan_mixup(ds, Mixup(count=50, seed=0)))
