"""One copy-paste core: the offline engine (plan_paste + render_paste) and the online CopyPaste agree.

Where their semantics agree (one image, the same class counts and class order, the engine's
generator state after its one ``prob`` draw for that image, no crowd regions), both paths
must give the same pixels and the same objects: categories, boxes, and masks.
"""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ltaug import load_dataset
from ltaug.io.dataset import Dataset
from ltaug.io.geometry import decode
from ltaug.io.paths import image_file_name
from ltaug.ops import Paste
from ltaug.pixels import masks as mask_ops
from ltaug.pixels.bank import Bank, build_bank
from ltaug.pixels.copy_paste import PLAN_STREAM, plan_paste, render_paste
from ltaug.pixels.imagefile import read_image
from ltaug.transforms import CopyPaste, Sample, copy_paste, tight_box


@pytest.fixture(scope="module")
def demo(demo_train_path):
    return load_dataset(demo_train_path)


@pytest.fixture(scope="module")
def boxes_only(tmp_path_factory, demo_train_path, demo_train_images):
    """The demo without segmentations, and its bank (every object box-only)."""
    doc = json.loads(demo_train_path.read_text())
    for a in doc["annotations"]:
        del a["segmentation"]
    ds = Dataset.from_dict(doc)
    path = tmp_path_factory.mktemp("box-only-bank") / "bank"
    build_bank(ds, demo_train_images, path, workers=1, progress=False)
    return ds, Bank(path)


def _images(ds, n):
    """The first ``n`` images without crowd regions, each as a dataset of its own (what `ltaug paste` sees)."""
    crowd = {a["image_id"] for a in ds.annotations if a.get("iscrowd")}
    out = []
    for im in ds.images:
        if im["id"] not in crowd and len(out) < n:
            out.append(ds.replace(images=[im], annotations=[a for a in ds.annotations if a["image_id"] == im["id"]]))
    return out


def _offline(one, bank, spec, image):
    """`ltaug paste`'s planner and renderer on a one-image dataset: pixels, annotations, counts."""
    out = image.copy()
    recipes, _ = plan_paste(one, bank, spec)
    if not recipes:
        return out, one.annotations, {"removed": [], "pasted_removed": []}
    kept, pasted, counts = render_paste(out, one.annotations, recipes[0], bank, spec)
    return out, kept + pasted, counts


def _objects(anns, hw):
    """(category, bbox, mask) of each annotation: its segmentation decoded, or its box."""
    return [(a["category_id"], a["bbox"], decode(a["segmentation"], *hw) if a.get("segmentation")
             else mask_ops.box_mask(a["bbox"], *hw)) for a in anns]


def _online(one, bank, spec, image, with_masks):
    """CopyPaste (plain mode) with the engine's class counts, class order and generator state for this image."""
    ix = one.index
    t = CopyPaste(bank, objects=spec.objects, weighting=spec.weighting, power=spec.power,
                  classes=ix.category_ids.tolist(), class_counts=dict(zip(ix.category_ids.tolist(),
                                                                          ix.instance_counts.tolist())),
                  blend=spec.blend, sigma=spec.sigma, scale=spec.scale, flip=spec.flip, max_overlap=spec.max_overlap,
                  min_visible=spec.min_visible, exclude_flags=spec.exclude_flags, box_only=spec.box_only, rgb=False,
                  p=1.0)  # the engine reads BGR
    rng = np.random.default_rng([spec.seed, PLAN_STREAM])  # the planner's generator ...
    rng.random(1)  # ... after its one draw for `prob` (the dataset has one image)
    t.set_random_state(rng, random.Random(0))
    H, W = image.shape[:2]
    data = {"image": image, "bboxes": [a["bbox"] for a in one.annotations],
            "labels": [a["category_id"] for a in one.annotations]}
    if with_masks:
        data["masks"] = [mask_ops.decode_rle(mask_ops.annotation_rle(a.get("segmentation"), a["bbox"], H, W)[0])
                         for a in one.annotations]
    out = t(**data)
    return out["image"], list(zip(out["labels"], out["bboxes"], out.get("masks") or [None] * len(out["labels"])))


def _read(one, images_dir):
    im = one.images[0]
    return read_image(images_dir / image_file_name(im), im["id"])


@pytest.mark.parametrize("weighting, blend, reverse", [("inverse", "gaussian", False), ("uniform", "poisson", False),
                                                       ("inverse", "hard", True)])
def test_online_transform_gives_the_engines_objects_and_pixels(demo, demo_bank, demo_train_images, weighting, blend,
                                                              reverse):
    """``reverse``: the categories listed in descending id order (classes are drawn in file order)."""
    if reverse:
        demo = demo.replace(categories=demo.categories[::-1])
    spec = Paste(weighting=weighting, blend=blend, objects=8, scale=(1.0, 3.0), max_overlap=1.0, seed=3)
    seen = {"pasted": 0, "cut": 0, "removed": 0, "hidden": 0}
    for one in _images(demo, 10):
        image = _read(one, demo_train_images)
        off_image, anns, counts = _offline(one, demo_bank, spec, image)
        off = _objects(anns, image.shape[:2])
        on_image, on = _online(one, demo_bank, spec, image, with_masks=True)
        assert np.array_equal(on_image, off_image)
        assert [c for c, _, _ in on] == [c for c, _, _ in off]
        for (_, box, mask), (_, off_box, off_mask) in zip(on, off):
            np.testing.assert_allclose(box, off_box, atol=1e-9)
            assert np.array_equal(mask, off_mask)
        seen["pasted"] += sum(a.get("ltaug", {}).get("op") == "paste" for a in anns)
        seen["cut"] += sum("occluded" in a.get("ltaug", {}) for a in anns)
        seen["removed"] += len(counts["removed"])
        seen["hidden"] += len(counts["pasted_removed"])
    assert all(seen.values()), seen  # the comparison reaches every rule


def test_online_transform_gives_the_engines_boxes_on_box_only_data(boxes_only, demo_train_images):
    ds, bank = boxes_only
    spec = Paste(objects=5, max_overlap=1.0, seed=1)
    removed = 0
    for one in _images(ds, 6):
        image = _read(one, demo_train_images)
        off_image, anns, counts = _offline(one, bank, spec, image)
        off = _objects(anns, image.shape[:2])
        removed += len(counts["removed"])
        for with_masks in (False, True):
            on_image, on = _online(one, bank, spec, image, with_masks)
            assert np.array_equal(on_image, off_image)
            assert [c for c, _, _ in on] == [c for c, _, _ in off]
            for (_, box, mask), (_, off_box, off_mask) in zip(on, off):
                np.testing.assert_allclose(box, off_box, atol=1e-9)
                if with_masks:  # a cut box keeps its shape as a mask online; its tight box is the engine's box
                    np.testing.assert_allclose(tight_box(mask), tight_box(off_mask))
                    assert not (mask & ~off_mask).any()
    assert removed


def test_a_box_only_paste_covers_its_whole_box_in_both_paths(boxes_only):
    """A box-only object is pasted as its whole crop, so all of the crop hides what is under it,
    also where its bank mask (its fractional bbox rasterised) is 0."""
    _, bank = boxes_only
    row = next(r for r in range(len(bank)) if min(bank.get(r)[1].shape) >= 8 and not bank.get(r)[1].all())
    h, w = bank.get(row)[1].shape
    H, W = h + 20, w + 20
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    seg = [[0, 0, 0, H, W, H, W, 0]]  # one object over the whole image
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, W, H], "area": H * W, "iscrowd": 0,
           "segmentation": seg}
    o = bank.objects[row]
    placement = {"row": row, "annotation_id": int(o["annotation_id"]), "category_id": int(o["category_id"]),
                 "x": 10, "y": 10, "w": w, "h": h, "flip": False}
    spec = Paste(blend="hard", min_visible=0.0)
    expected = decode(seg, H, W)
    expected[10:10 + h, 10:10 + w] = 0
    off_image = image.copy()
    kept, pasted, _ = render_paste(off_image, [ann], {"image_id": 1, "objects": [placement]}, bank, spec)
    assert np.array_equal(decode(kept[0]["segmentation"], H, W), expected)
    sample = Sample(image, np.array([[0.0, 0.0, W, H]]), np.array([[1]]), decode(seg, H, W)[None])
    out = copy_paste(sample, bank, [placement], spec, np.array([[placement["category_id"]]]))
    assert np.array_equal(out.image, off_image)
    assert np.array_equal(out.masks[0], expected)
    assert np.array_equal(out.masks[1], mask_ops.box_mask(pasted[0]["bbox"], H, W))
    xyxy = [[x, y, x + bw, y + bh] for x, y, bw, bh in (a["bbox"] for a in kept + pasted)]
    assert out.boxes.tolist() == xyxy
