"""Copy-paste planning (class weights, placement, budget) and rendering (masks, occlusion, provenance)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ltaug import load_dataset
from ltaug.io.geometry import decode
from ltaug.io.paths import image_file_name
from ltaug.ops import Paste
from ltaug.pixels.bank import Flag
from ltaug.pixels.copy_paste import class_weights, eligible_rows, plan_paste, render_paste
from ltaug.pixels.functional import resize_object
from ltaug.pixels.imagefile import read_image


@pytest.fixture(scope="module")
def demo(demo_train_path):
    return load_dataset(demo_train_path)


def test_class_weights():
    n = np.array([100, 10, 1, 5])
    avail = np.array([50, 5, 2, 0])
    assert np.allclose(class_weights(n, avail, "uniform", 1.0), avail / avail.sum())
    w = class_weights(n, avail, "inverse", 1.0)
    expected = np.array([1 / 100, 1 / 10, 1, 0])
    assert np.allclose(w, expected / expected.sum())
    w = class_weights(n, avail, "inverse", 0.5)
    expected = np.array([0.1, 10 ** -0.5, 1, 0])
    assert np.allclose(w, expected / expected.sum())


def test_eligible_rows_leave_out_flagged_objects(demo, demo_bank):
    rows, box_only = eligible_rows(demo_bank, demo.index.category_ids, Paste())
    flags = np.asarray(demo_bank.objects["flags"])
    assert not box_only and rows.size > 0
    assert np.all(flags[rows] & int(Paste().exclude_flags) == 0)
    everything, _ = eligible_rows(demo_bank, demo.index.category_ids, Paste(exclude=[]))
    assert everything.size == len(demo_bank)


def test_plan_is_seeded_and_objects_fit_with_limited_overlap(demo, demo_bank):
    spec = Paste(objects=5, seed=3, max_overlap=0.3)
    recipes, info = plan_paste(demo, demo_bank, spec)
    assert recipes == plan_paste(demo, demo_bank, spec)[0]
    assert recipes != plan_paste(demo, demo_bank, spec.replace(seed=4))[0]
    idx = demo.index
    for r in recipes:
        pos = int(idx.image_positions([r["image_id"]])[0])
        H, W = int(idx.image_heights[pos]), int(idx.image_widths[pos])
        boxes = [(x, y, x + w, y + h) for x, y, w, h in idx.ann_boxes[idx.ann_image_pos == pos].tolist()]
        for o in r["objects"]:
            new = (o["x"], o["y"], o["x"] + o["w"], o["y"] + o["h"])
            assert 0 <= new[0] and 0 <= new[1] and new[2] <= W and new[3] <= H
            for b in boxes:
                iw = min(b[2], new[2]) - max(b[0], new[0])
                ih = min(b[3], new[3]) - max(b[1], new[1])
                area = (b[2] - b[0]) * (b[3] - b[1])
                assert iw <= 0 or ih <= 0 or area == 0 or iw * ih / area <= 0.3 + 1e-9
            boxes.append(new)
    assert sum(len(r["objects"]) for r in recipes) + info["no_room"] == 5 * len(demo.images)


def test_inverse_weighting_pastes_rare_classes_more_than_uniform(demo, demo_bank):
    counts = dict(zip(demo.index.category_ids.tolist(), demo.index.instance_counts.tolist()))

    def rare_share(weighting):
        recipes, _ = plan_paste(demo, demo_bank, Paste(weighting=weighting, objects=20, max_overlap=1.0, seed=1))
        cats = [o["category_id"] for r in recipes for o in r["objects"]]
        return np.mean([counts[c] <= 3 for c in cats])

    uniform, inverse = rare_share("uniform"), rare_share("inverse")
    assert inverse > uniform + 0.3, (uniform, inverse)


def test_budget_asks_for_exactly_the_deficits(demo, demo_bank):
    spec = Paste(weighting="budget", target={"min_instances": 4}, objects=10, max_overlap=1.0, seed=0)
    recipes, info = plan_paste(demo, demo_bank, spec)
    idx = demo.index
    rows, _ = eligible_rows(demo_bank, idx.category_ids, spec)
    has_objects = set(np.asarray(demo_bank.objects["category_id"])[rows].tolist())
    expected = {c: 4 - n for c, n in zip(idx.category_ids.tolist(), idx.instance_counts.tolist()) if 0 < n < 4}
    assert {c: d["deficit"] for c, d in info["deficits"].items()} == expected
    planned = Counter(o["category_id"] for r in recipes for o in r["objects"])
    wanted = sum(d for c, d in expected.items() if c in has_objects)
    assert sum(planned.values()) + info["no_room"] + info["unplaced_budget"] == wanted
    assert all(planned[c] <= expected[c] for c in planned)


def _image(ds, image_id, images_dir):
    rec = next(im for im in ds.images if im["id"] == image_id)
    anns = [a for a in ds.annotations if a["image_id"] == image_id]
    return read_image(images_dir / image_file_name(rec), image_id), rec, anns


def test_render_hard_paste_pixels_masks_and_provenance(demo, demo_bank, demo_train_images):
    spec = Paste(objects=4, blend="hard", seed=5, min_visible=0.0)
    recipe = plan_paste(demo, demo_bank, spec)[0][0]
    img, rec, anns = _image(demo, recipe["image_id"], demo_train_images)
    out = img.copy()
    kept, pasted, counts = render_paste(out, anns, recipe, demo_bank, spec)
    assert counts["blend"] == {"hard": len(recipe["objects"])}
    assert len(pasted) == len(recipe["objects"]) - len(counts["pasted_removed"])
    top = np.zeros(img.shape[:2], np.int64) - 1  # which pasted object is on top, per pixel
    for k, o in enumerate(recipe["objects"]):
        crop, mask = resize_object(*demo_bank.get(o["row"]), o["w"], o["h"], o["flip"])
        region = top[o["y"]:o["y"] + o["h"], o["x"]:o["x"] + o["w"]]
        region[mask == 1] = k
        # every pixel of this object that nothing later covers shows the object's own pixels
    for k, o in enumerate(recipe["objects"]):
        crop, mask = resize_object(*demo_bank.get(o["row"]), o["w"], o["h"], o["flip"])
        sub = top[o["y"]:o["y"] + o["h"], o["x"]:o["x"] + o["w"]] == k
        assert np.array_equal(out[o["y"]:o["y"] + o["h"], o["x"]:o["x"] + o["w"]][sub], crop[sub])
    for a in pasted:
        m = decode(a["segmentation"], rec["height"], rec["width"])
        k = next(i for i, o in enumerate(recipe["objects"]) if o["annotation_id"] == a["ltaug"]["source_annotation_id"])
        assert np.array_equal(m.astype(bool), top == k)  # visible part = where it is on top
        assert a["area"] == int(m.sum())
        rle = mask_utils.encode(np.asfortranarray(m))
        assert a["bbox"] == [float(v) for v in mask_utils.toBbox(rle)]
        src = demo_bank.objects[recipe["objects"][k]["row"]]
        assert a["ltaug"]["source_image_id"] == int(src["image_id"]) and a["category_id"] == int(src["category_id"])


def test_occluded_objects_are_cut_or_removed(demo, demo_bank, demo_train_images):
    """Paste over an existing object on purpose: fully covered -> removed, half covered -> mask cut."""
    spec = Paste(blend="hard", min_visible=0.25)
    big = int(np.argmax(np.asarray(demo_bank.objects["area"]) * ((np.asarray(demo_bank.objects["flags"]) & Flag.BOX_ONLY) == 0)))
    o = demo_bank.objects[big]
    target = next(a for a in demo.annotations if not a.get("iscrowd") and 20 < a["bbox"][2] < 200 and 20 < a["bbox"][3] < 200)
    img, rec, anns = _image(demo, target["image_id"], demo_train_images)
    x, y, w, h = (int(v) for v in target["bbox"])
    # a solid object (mask all ones) exactly over the target's box hides all of it
    full_mask_row = dict(row=big, annotation_id=int(o["annotation_id"]), category_id=int(o["category_id"]),
                         x=max(0, x - 1), y=max(0, y - 1), w=min(w + 3, rec["width"] - max(0, x - 1)),
                         h=min(h + 3, rec["height"] - max(0, y - 1)), flip=False)

    class SolidBank:
        objects = demo_bank.objects

        @staticmethod
        def get(i):
            crop, mask = demo_bank.get(i)
            return crop, np.ones_like(mask)

    kept, pasted, counts = render_paste(img.copy(), anns, {"image_id": rec["id"], "objects": [full_mask_row]},
                                        SolidBank, spec)
    assert target["id"] not in {a["id"] for a in kept} and target["category_id"] in counts["removed"]
    untouched = [a for a in kept if "occluded" not in a.get("ltaug", {})]
    assert all(any(a is b for b in anns) for a in untouched)  # same records, not copies
    # cover only the left 40 %: the object stays, cut, with its box recomputed
    left = dict(full_mask_row, w=max(1, int(0.4 * w)) + 1)
    kept, pasted, counts = render_paste(img.copy(), anns, {"image_id": rec["id"], "objects": [left]}, SolidBank, spec)
    cut = next(a for a in kept if a["id"] == target["id"])
    full = decode(target["segmentation"], rec["height"], rec["width"]).astype(bool)
    cover = np.zeros_like(full)
    cover[left["y"]:left["y"] + left["h"], left["x"]:left["x"] + left["w"]] = True
    expected = full & ~cover
    got = decode(cut["segmentation"], rec["height"], rec["width"]).astype(bool)
    assert np.array_equal(got, expected) and cut["area"] == int(expected.sum())
    assert cut["ltaug"]["occluded"] == round(1 - expected.sum() / full.sum(), 4)
    assert cut["bbox"][0] >= left["x"] + left["w"] - 1e-9
