"""Online transforms (ltaug.transforms): CopyPaste, Mosaic, MixUp inside A.Compose and plain."""
from __future__ import annotations

import json
import pickle

import albumentations as A
import cv2
import numpy as np
import pytest
from PIL import Image

from ltaug.pixels.bank import Bank
from ltaug.pixels.copy_paste import Occlusion
from ltaug.pixels.functional import mix, resize_object
from ltaug.pixels.masks import local_runs
from ltaug.pixels.mosaic import tile_layout
from ltaug.transforms import CocoSource, CopyPaste, MixUp, Mosaic, Sample, occlude, resize_masks, tight_box


@pytest.fixture(scope="module")
def source(demo_train_path, demo_train_images):
    return CocoSource(demo_train_path, demo_train_images)


@pytest.fixture(scope="module")
def items(source):
    """Demo images whose boxes are their masks' tight boxes (COCO's float boxes are not exactly)."""
    out = []
    for i in range(8):
        it = dict(source[i])
        it["bboxes"] = [_xywh(tight_box(m)) for m in it["masks"]]
        out.append(it)
    return out


def _xywh(box):
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _compose(*transforms, seed=0, fields=("labels",)):
    return A.Compose(list(transforms), bbox_params=A.BboxParams(format="coco", label_fields=list(fields)), seed=seed)


def _call(aug, it, **extra):
    return aug(image=it["image"], masks=list(it["masks"]), bboxes=it["bboxes"], labels=it["labels"], **extra)


def _check_consistent(out):
    """One mask, box and label per object; every box is its mask's tight box."""
    masks, boxes, labels = out["masks"], np.asarray(out["bboxes"], np.float64).reshape(-1, 4), out["labels"]
    assert len(masks) == len(boxes) == len(labels)
    H, W = out["image"].shape[:2]
    for m, b in zip(masks, boxes):
        assert m.shape == (H, W) and m.any()
        np.testing.assert_allclose(b, _xywh(tight_box(m)), atol=1e-3)


def _same(a, b):
    assert np.array_equal(a["image"], b["image"])
    assert np.array_equal(np.asarray(a["bboxes"]), np.asarray(b["bboxes"])) and list(a["labels"]) == list(b["labels"])
    assert len(a["masks"]) == len(b["masks"]) and all(np.array_equal(x, y) for x, y in zip(a["masks"], b["masks"]))


# -- pure pieces --------------------------------------------------------------------------------

def test_resize_masks_is_the_engine_rule(demo_bank):
    for row in (0, 7, 40):
        crop, mask = demo_bank.get(row)
        for w, h in ((crop.shape[1], crop.shape[0]), (31, 17), (3 * crop.shape[1], 2 * crop.shape[0])):
            _, expected = resize_object(crop, mask, w, h)
            assert np.array_equal(resize_masks(mask[None], w, h)[0], expected)


# -- CopyPaste -----------------------------------------------------------------------------------

def test_copy_paste_in_compose_keeps_masks_boxes_labels_together(demo_bank, items):
    aug = _compose(CopyPaste(demo_bank, objects=(2, 5), max_overlap=1.0, p=1.0), A.HorizontalFlip(p=0.5))
    grew = 0
    for it in items:
        out = _call(aug, it)
        _check_consistent(out)
        assert isinstance(out["masks"], list) and isinstance(out["labels"], list)
        grew += len(out["labels"]) > len(it["labels"])
    assert grew >= len(items) // 2


def test_hard_paste_shows_the_bank_pixels_and_masks(demo_bank, items):
    it = items[1]
    t = CopyPaste(demo_bank, objects=6, blend="hard", max_overlap=1.0, min_visible=0.0, seed=4, p=1.0)
    out = t(image=it["image"], masks=it["masks"], bboxes=it["bboxes"], labels=it["labels"])  # plain mode
    placed = t.get_applied_params()["objects"]
    assert placed
    H, W = it["image"].shape[:2]
    top = np.full((H, W), -1)  # which pasted object is on top, per pixel
    for k, o in enumerate(placed):
        _, mask = resize_object(*demo_bank.get(o["row"]), o["w"], o["h"], o["flip"])
        top[o["y"]:o["y"] + o["h"], o["x"]:o["x"] + o["w"]][mask == 1] = k
    shown = [k for k in range(len(placed)) if (top == k).any()]  # min_visible=0: those with a visible pixel stay
    n_own = len(out["labels"]) - len(shown)
    pasted_masks = out["masks"][n_own:]
    assert len(pasted_masks) == len(shown)
    for j, (m, label) in enumerate(zip(pasted_masks, out["labels"][n_own:])):
        k = shown[j]
        o = placed[k]
        crop, _ = resize_object(*demo_bank.get(o["row"]), o["w"], o["h"], o["flip"])
        on_top = (top == k)[o["y"]:o["y"] + o["h"], o["x"]:o["x"] + o["w"]]
        region = out["image"][o["y"]:o["y"] + o["h"], o["x"]:o["x"] + o["w"]]
        assert np.array_equal(region[on_top], crop[..., ::-1][on_top])  # the bank is BGR, the image RGB
        assert np.array_equal(m.astype(bool), top == k)
        assert out["bboxes"][n_own + j] == _xywh(tight_box(m))
        assert label == o["category_id"] == int(demo_bank.objects[o["row"]]["category_id"])
    # the image's own objects: what pastes cover is cut away
    for m_in, m_out in zip(it["masks"], out["masks"][:n_own]):
        assert not (m_out.astype(bool) & (top >= 0)).any()
        assert not (m_out.astype(bool) & ~m_in.astype(bool)).any()
    assert len(out["bboxes"]) == len(out["masks"]) == len(out["labels"])


def test_occluded_objects_are_cut_or_removed():
    """Pasted pixels over the image's objects: fully covered -> removed; half covered -> cut, with a new box."""
    H, W = 100, 100
    image = np.zeros((H, W, 3), np.uint8)
    masks = np.zeros((2, H, W), np.uint8)
    masks[0, 10:30, 10:30] = 1   # will be fully covered
    masks[1, 60:80, 40:80] = 1   # left half will be covered
    boxes = [(5, 5, 35, 35), (30, 55, 60, 85)]  # two pasted squares, x0, y0, x1, y1
    cover = np.zeros((H, W), np.uint8)
    for x0, y0, x1, y1 in boxes:
        cover[y0:y1, x0:x1] = 1
    occlusion = Occlusion((H, W), [local_runs(cover, 0, 0, H, W)], boxes)
    s = Sample(image, np.array([tight_box(m) for m in masks]), np.array([[1.0], [2.0]]), masks)
    out = occlude(s, occlusion, min_visible=0.25)
    assert out.rows.tolist() == [[2.0]]
    assert out.boxes.tolist() == [[60, 60, 80, 80]] and out.masks[0].sum() == 400
    assert occlude(s, occlusion, min_visible=0.6).rows.size == 0  # half left is under 0.6
    no_masks = occlude(Sample(image, s.boxes, s.rows), occlusion, min_visible=0.25)  # objects are their boxes
    assert no_masks.rows.tolist() == [[2.0]] and no_masks.boxes.tolist() == [[60, 60, 80, 80]] and no_masks.masks is None


def test_copy_paste_determinism(demo_bank, items):
    it = items[2]
    a = _call(_compose(CopyPaste(demo_bank, p=1.0), seed=7), it)
    b = _call(_compose(CopyPaste(demo_bank, p=1.0), seed=7), it)
    _same(a, b)
    c = _call(_compose(CopyPaste(demo_bank, p=1.0), seed=8), it)
    assert not np.array_equal(a["image"], c["image"])
    # the transform's own seed holds inside a Compose without one, and in plain mode
    d = _call(_compose(CopyPaste(demo_bank, seed=3, p=1.0), seed=None), it)
    e = _call(_compose(CopyPaste(demo_bank, seed=3, p=1.0), seed=None), it)
    _same(d, e)
    f = CopyPaste(demo_bank, seed=3, p=1.0)(**{k: it[k] for k in ("image", "masks", "bboxes", "labels")})
    g = CopyPaste(demo_bank, seed=3, p=1.0)(**{k: it[k] for k in ("image", "masks", "bboxes", "labels")})
    _same(f, g)


def test_inverse_weighting_pastes_rare_classes_more_than_uniform(demo_bank):
    counts = demo_bank.class_counts()
    blank = {"image": np.zeros((120, 160, 3), np.uint8), "masks": np.zeros((0, 120, 160), np.uint8),
             "bboxes": [], "labels": []}

    def rare_share(weighting):
        t = CopyPaste(demo_bank, objects=4, weighting=weighting, max_overlap=1.0, min_visible=0.0, blend="hard",
                      seed=1, p=1.0)
        cats = [o["category_id"] for _ in range(150) for o in (t(**blank), t.get_applied_params()["objects"])[1]]
        return np.mean([counts[c] <= 3 for c in cats]), t.class_probabilities()

    (uniform, pu), (inverse, pi) = rare_share("uniform"), rare_share("inverse")
    assert inverse > uniform + 0.3, (uniform, inverse)
    rare = [c for c in pi if counts[c] <= 3]
    assert sum(pi[c] for c in rare) > sum(pu[c] for c in rare)


def test_copy_paste_onto_an_image_without_objects_gives_it_masks(demo_bank, items):
    H, W = items[0]["image"].shape[:2]
    aug = _compose(CopyPaste(demo_bank, objects=3, p=1.0), seed=2)
    out = aug(image=items[0]["image"], masks=[], bboxes=[], labels=[])
    _check_consistent(out)
    assert len(out["labels"]) > 0


def test_copy_paste_without_masks_moves_boxes_only(demo_bank, items):
    it = items[3]
    out = _compose(CopyPaste(demo_bank, objects=3, p=1.0), seed=2)(image=it["image"], bboxes=it["bboxes"],
                                                                     labels=it["labels"])
    assert "masks" not in out and len(out["bboxes"]) == len(out["labels"]) > len(it["labels"]) - 3


def test_bgr_images_with_rgb_false_get_bgr_objects(demo_bank, items):
    it = items[4]
    kw = {k: it[k] for k in ("masks", "bboxes", "labels")}
    rgb = CopyPaste(demo_bank, seed=5, p=1.0)(image=it["image"], **kw)  # the default: RGB
    bgr = CopyPaste(demo_bank, seed=5, p=1.0, rgb=False)(image=np.ascontiguousarray(it["image"][..., ::-1]), **kw)
    assert np.array_equal(bgr["image"], rgb["image"][..., ::-1]) and bgr["labels"] == rgb["labels"]
    assert not np.array_equal(rgb["image"], CopyPaste(demo_bank, seed=5, p=1.0, rgb=False)(image=it["image"], **kw)["image"])


def test_pasted_pixels_have_the_source_objects_rgb_colours(demo_bank, demo_train_path, demo_train_images, source):
    """Read independently of ltaug (PIL decodes to RGB): a pasted object's pixels are its source image's."""
    doc = json.loads(demo_train_path.read_text())
    files = {im["id"]: im["file_name"] for im in doc["images"]}

    def rgb_file(image_id):
        return np.asarray(Image.open(demo_train_images / files[image_id]).convert("RGB"))

    i = next(i for i, im in enumerate(doc["images"]) if (im["height"], im["width"]) == (427, 640))
    it = source[i]
    assert np.array_equal(it["image"], rgb_file(doc["images"][i]["id"]))  # CocoSource gives RGB by default
    checked, coloured = 0, 0
    for seed in range(6):
        # scale 1 on a target of the source's area: each object keeps its bank size, so its pixels are the file's
        t = CopyPaste(demo_bank, objects=6, blend="hard", flip=False, scale=(1, 1), max_overlap=1.0, min_visible=0.0,
                      p=1.0)
        out = _call(_compose(t, seed=seed), it)
        placed = t.get_applied_params()["objects"]
        top = np.full(it["image"].shape[:2], -1)
        for k, o in enumerate(placed):
            _, mask = resize_object(*demo_bank.get(o["row"]), o["w"], o["h"])
            top[o["y"]:o["y"] + o["h"], o["x"]:o["x"] + o["w"]][mask == 1] = k
        for k, o in enumerate(placed):
            x0, y0, x1, y1 = (int(v) for v in demo_bank.objects[o["row"]]["box"])
            on = (top == k)[o["y"]:o["y"] + o["h"], o["x"]:o["x"] + o["w"]]
            if (o["w"], o["h"]) != (x1 - x0, y1 - y0) or on.sum() < 50:
                continue
            want = rgb_file(int(demo_bank.objects[o["row"]]["image_id"]))[y0:y1, x0:x1][on].astype(int)
            got = out["image"][o["y"]:o["y"] + o["h"], o["x"]:o["x"] + o["w"]][on].astype(int)
            assert np.abs(got - want).mean() < 4.0, (seed, o)  # the bank's jpeg crops: ~38 dB, mean error ~2.5
            if np.abs(want[:, 0] - want[:, 2]).mean() > 20:  # red and blue differ: swapped channels would show
                assert np.abs(got - want[:, ::-1]).mean() > 10
                coloured += 1
            checked += 1
    assert checked >= 6 and coloured >= 2, (checked, coloured)


def test_string_labels_and_a_second_label_field(demo_bank, items):
    names = {c["id"]: c["name"] for c in demo_bank.meta["categories"]}
    it = items[5]
    aug = _compose(CopyPaste(demo_bank, objects=3, label_map=names, fill_labels={"box_ids": -1}, p=1.0),
                   fields=("labels", "box_ids"), seed=1)
    out = aug(image=it["image"], masks=list(it["masks"]), bboxes=it["bboxes"],
              labels=[names[c] for c in it["labels"]], box_ids=list(range(len(it["labels"]))))
    _check_consistent(out)
    assert all(isinstance(x, str) for x in out["labels"]) and set(out["labels"]) <= set(names.values())
    new = [i for i, b in enumerate(out["box_ids"]) if b == -1]
    assert new and new == list(range(len(out["box_ids"]) - len(new), len(out["box_ids"])))


def test_errors(demo_bank, items):
    it = items[0]
    with pytest.raises(ValueError, match="budget"):
        CopyPaste(demo_bank, weighting="budget")
    with pytest.raises(ValueError, match="masks"):
        _compose(CopyPaste(demo_bank, p=1.0))(image=it["image"], masks=list(it["masks"])[1:], bboxes=it["bboxes"],
                                              labels=it["labels"])
    with pytest.raises(ValueError, match="BboxParams"):
        A.Compose([CopyPaste(demo_bank, p=1.0)])(image=it["image"], masks=list(it["masks"]))
    with pytest.raises(ValueError, match="other images"):
        Mosaic(p=1.0)(image=it["image"], bboxes=it["bboxes"], labels=it["labels"])


def test_copy_paste_pickles_and_reopens_its_bank(demo_bank, items):
    t = CopyPaste(demo_bank.path, seed=9, p=1.0)
    u = pickle.loads(pickle.dumps(t))
    assert isinstance(u.bank, Bank) and u.bank.path == demo_bank.path
    kw = {k: items[0][k] for k in ("image", "masks", "bboxes", "labels")}
    _same(t(**kw), u(**kw))


# -- Mosaic and MixUp -----------------------------------------------------------------------------

def test_mosaic_in_compose(items):
    aug = _compose(Mosaic(items, size=(320, 256), p=1.0), seed=3)
    for it in items[:4]:
        out = _call(aug, it)
        assert out["image"].shape == (256, 320, 3)
        _check_consistent(out)
    a = _call(_compose(Mosaic(items, size=(320, 256), p=1.0), seed=11), items[0])
    b = _call(_compose(Mosaic(items, size=(320, 256), p=1.0), seed=11), items[0])
    _same(a, b)


def test_mosaic_from_metadata_and_plain(items):
    meta = [{k: it[k] for k in ("image", "masks", "bboxes", "labels")} for it in items[1:4]]
    out = _call(_compose(Mosaic(size=(256, 256), p=1.0), seed=1), items[0], mosaic_metadata=meta)
    _check_consistent(out)
    t = Mosaic(items, size=(256, 256), seed=1, p=1.0)
    plain = t(**{k: items[0][k] for k in ("image", "masks", "bboxes", "labels")})
    assert isinstance(plain["masks"], np.ndarray) and isinstance(plain["bboxes"], list)
    _check_consistent(plain)
    # this image fills its quadrant: resized to fit a quarter, its corner at the centre
    q, centre = t.get_applied_params()["quadrant"], t.get_applied_params()["centre"]
    (tw, th), (ox, oy), (x0, y0, x1, y1) = tile_layout(items[0]["image"].shape[:2], (256, 256), centre, q)
    resized = cv2.resize(items[0]["image"], (tw, th), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(plain["image"][y0:y1, x0:x1], resized[y0 - oy:y1 - oy, x0 - ox:x1 - ox])


def test_mosaic_boxes_only(items):
    out = _compose(Mosaic(items, size=(256, 256), p=1.0), seed=2)(
        image=items[0]["image"], bboxes=items[0]["bboxes"], labels=items[0]["labels"])
    boxes = np.asarray(out["bboxes"]).reshape(-1, 4)
    assert "masks" not in out and len(boxes) == len(out["labels"]) > 0
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 256 + 1e-3).all()


def test_mixup_keeps_both_images_objects_with_weights(items):
    a, b = next((x, y) for x in items for y in items if x is not y and x["image"].shape == y["image"].shape)
    t = MixUp([b], weight_field="weights", p=1.0, seed=4)
    aug = _compose(t, fields=("labels", "weights"), seed=4)
    out = _call(aug, a, weights=[1.0] * len(a["labels"]))
    _check_consistent(out)
    lam = t.get_applied_params()["lam"]
    n = len(a["labels"])
    assert out["labels"][:n] == a["labels"] and out["labels"][n:] == b["labels"][:len(out["labels"]) - n]
    np.testing.assert_allclose(out["weights"][:n], lam, rtol=1e-6)
    np.testing.assert_allclose(out["weights"][n:], 1 - lam, rtol=1e-6)
    assert np.array_equal(out["image"], mix(a["image"], b["image"], lam))  # same size: b is not resized
    for m_in, m_out in zip(a["masks"], out["masks"][:n]):
        assert np.array_equal(m_in, m_out)


def test_plain_mode_and_compose_give_the_same_result(demo_bank, items):
    it = items[6]
    kw = {k: it[k] for k in ("image", "masks", "bboxes", "labels")}
    plain = CopyPaste(demo_bank, seed=12, p=1.0)(**kw)
    inside = _call(_compose(CopyPaste(demo_bank, p=1.0), seed=12), it)
    assert np.array_equal(plain["image"], inside["image"]) and plain["labels"] == inside["labels"]
    np.testing.assert_allclose(plain["bboxes"], inside["bboxes"], atol=1e-3)
    assert all(np.array_equal(a, b) for a, b in zip(plain["masks"], inside["masks"]))
    assert "CopyPaste(" in repr(_compose(CopyPaste(demo_bank), Mosaic(items)))


def test_other_box_formats(demo_train_path, demo_train_images, items):
    voc = CocoSource(demo_train_path, demo_train_images, bbox_format="pascal_voc")
    it = voc[0]
    aug = A.Compose([Mosaic(voc, size=(256, 256), p=1.0)],
                    bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]), seed=5)
    out = aug(image=it["image"], masks=list(it["masks"]), bboxes=it["bboxes"], labels=it["labels"])
    assert len(out["masks"]) == len(out["bboxes"]) == len(out["labels"]) > 0
    for m, b in zip(out["masks"], out["bboxes"]):  # the mosaic moves every object: each box is its mask's
        np.testing.assert_allclose(b, tight_box(m), atol=1e-3)


def test_runs_without_torch(tmp_path, demo_bank, demo_train_path, demo_train_images):
    """ltaug needs no torch (albumentations imports it only when it is installed)."""
    import subprocess
    import sys

    code = f"""
import sys
sys.modules["torch"] = None  # `import torch` fails, as where it is not installed
import albumentations as A
from ltaug.transforms import CocoSource, CopyPaste, MixUp, Mosaic
src = CocoSource({str(demo_train_path)!r}, {str(demo_train_images)!r})
it = src[0]
aug = A.Compose([CopyPaste({str(demo_bank.path)!r}, p=1.0), Mosaic(src, p=1.0), MixUp(src, p=1.0)],
                bbox_params=A.BboxParams(format="coco", label_fields=["labels"]), seed=0)
out = aug(image=it["image"], masks=list(it["masks"]), bboxes=it["bboxes"], labels=it["labels"])
assert len(out["masks"]) == len(out["bboxes"]) == len(out["labels"]) > 0
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


# -- other albumentations transforms before and after ----------------------------------------------

SPATIAL = {"crop": lambda: A.RandomCrop(240, 240, p=1.0), "resize": lambda: A.Resize(320, 400, p=1.0),
           "flip": lambda: A.HorizontalFlip(p=1.0)}


def _ltaug(kind, bank, items):
    if kind == "copy_paste":
        return CopyPaste(bank, objects=(2, 4), max_overlap=1.0, fill_labels={"box_ids": -1}, p=1.0)
    if kind == "mosaic":
        return Mosaic(items, size=(320, 256), fill_labels={"box_ids": -1}, p=1.0)
    return MixUp(items, fill_labels={"box_ids": -1}, p=1.0)


def _with_ids(aug, it):
    return aug(image=it["image"], masks=list(it["masks"]), bboxes=it["bboxes"], labels=it["labels"],
               box_ids=list(range(len(it["labels"]))))


def _inside(box, mask, tol=1.0):
    """The mask's pixels lie in the box (COCO x, y, w, h), to ``tol`` px."""
    x0, y0, x1, y1 = tight_box(mask)
    x, y, w, h = box
    return x0 >= x - tol and y0 >= y - tol and x1 <= x + w + tol and y1 <= y + h + tol


@pytest.mark.parametrize("kind", ["copy_paste", "mosaic", "mixup"])
@pytest.mark.parametrize("spatial", sorted(SPATIAL))
def test_a_spatial_transform_before_keeps_masks_boxes_labels_together(demo_bank, items, kind, spatial):
    """A crop / resize / flip, then CopyPaste, Mosaic or MixUp: one mask, box and label per object, on the same object.

    albumentations alone (``before``: the same spatial transform, same seed) drops the boxes of objects a crop
    removed and keeps their masks; the ltaug transform after it drops both. An object the ltaug transform left
    alone has the box and mask the spatial transform gave it; one it made or cut has its mask's tight box.
    """
    fields = ("labels", "box_ids")
    dropped = 0
    for seed in range(3):
        for it in items[:5]:
            before = _with_ids(_compose(SPATIAL[spatial](), seed=seed, fields=fields), it)
            out = _with_ids(_compose(SPATIAL[spatial](), _ltaug(kind, demo_bank, items), seed=seed, fields=fields), it)
            dropped += len(before["masks"]) > len(before["bboxes"])
            masks, boxes = out["masks"], out["bboxes"]
            assert len(masks) == len(boxes) == len(out["labels"]) == len(out["box_ids"])
            box_of = dict(zip(map(int, before["box_ids"]), before["bboxes"]))  # before: masks[i] is object i
            for m, b, i in zip(masks, boxes, map(int, out["box_ids"])):
                assert m.shape == out["image"].shape[:2] and m.any() and _inside(b, m)
                if i >= 0 and kind != "mosaic" and np.array_equal(m, before["masks"][i]):
                    np.testing.assert_allclose(b, box_of[i], atol=1e-3)  # untouched: as the spatial transform left it
                else:
                    np.testing.assert_allclose(b, _xywh(tight_box(m)), atol=1e-3)
                    if i >= 0 and kind == "copy_paste":
                        assert not (m.astype(bool) & ~before["masks"][i].astype(bool)).any()  # only cut
    if spatial == "crop":
        assert dropped > 0  # the case that went wrong: albumentations left masks of objects the crop removed


@pytest.mark.parametrize("kind", ["copy_paste", "mosaic", "mixup"])
def test_both_orders_keep_each_box_on_its_mask(demo_bank, items, kind):
    """A flip or pad before or after: each box is its mask's tight box to within 1 px (the demo's boxes are)."""
    for first in (True, False):
        for spatial in (lambda: A.HorizontalFlip(p=1.0), lambda: A.PadIfNeeded(700, 700, p=1.0)):
            pair = [spatial(), _ltaug(kind, demo_bank, items)]
            aug = _compose(*(pair if first else pair[::-1]), seed=4, fields=("labels", "box_ids"))
            for it in items[:4]:
                out = _with_ids(aug, it)
                assert len(out["masks"]) == len(out["bboxes"]) == len(out["labels"]) > 0
                for m, b in zip(out["masks"], out["bboxes"]):
                    np.testing.assert_allclose(b, _xywh(tight_box(m)), atol=1.0)


def test_boxes_dropped_before_but_not_masks_are_refused_in_one_line(demo_bank, items):
    aug = A.Compose([A.RandomCrop(200, 200, p=1.0), CopyPaste(demo_bank, p=1.0)],
                    bbox_params=A.BboxParams(format="coco", label_fields=["labels"], min_visibility=0.5), seed=0)
    with pytest.raises(ValueError, match=r"^CopyPaste got \d+ masks but \d+ boxes: .*put CopyPaste before") as e:
        _call(aug, items[0])
    assert "\n" not in str(e.value)


def test_the_compose_filter_drops_masks_with_their_boxes(demo_bank, items):
    """BboxParams(min_area=...) at the Compose's end would drop small boxes only: the transform drops their masks too."""
    aug = A.Compose([CopyPaste(demo_bank, objects=(3, 6), max_overlap=1.0, p=1.0)],
                    bbox_params=A.BboxParams(format="coco", label_fields=["labels"], min_area=900), seed=1)
    small = 0
    for it in items:
        out = _call(aug, it)
        _check_consistent(out)
        assert all(w * h >= 900 - 1e-3 for _, _, w, h in out["bboxes"])
        small += any(w * h < 900 for _, _, w, h in it["bboxes"])
    assert small > 0


# -- serialisation: to_dict / from_dict, save / load, ReplayCompose, pickle ------------------------

def _pipeline(bank_path, train_path, images_dir, names, compose=A.Compose):
    others = CocoSource(train_path, images_dir, label_map=names)
    return compose([
        A.HorizontalFlip(p=0.5),
        CopyPaste(bank_path, objects=(1, 3), label_map=names, class_counts={1: 10, 18: 2}, p=0.8),
        A.OneOf([Mosaic(others, size=(320, 256)), MixUp(others, weight_field="weights")], p=0.7),
    ], bbox_params=A.BboxParams(format="coco", label_fields=["labels", "weights"]))


def _named(it, names):
    return {"image": it["image"], "masks": list(it["masks"]), "bboxes": it["bboxes"],
            "labels": [names[c] for c in it["labels"]], "weights": [1.0] * len(it["labels"])}


@pytest.fixture(scope="module")
def names(demo_bank):
    return {c["id"]: c["name"] for c in demo_bank.meta["categories"]}


def test_to_dict_from_dict_save_load_round_trip(tmp_path, demo_bank, demo_train_path, demo_train_images, items,
                                                names):
    aug = _pipeline(demo_bank.path, demo_train_path, demo_train_images, names)
    written = json.loads(json.dumps(A.to_dict(aug)))  # plain JSON: int keys come back as text
    cp = written["transform"]["transforms"][1]
    assert cp["__class_fullname__"] == "ltaug.transforms.CopyPaste" and cp["bank"] == str(demo_bank.path)
    assert cp["rgb"] is True and cp["class_counts"] == {"1": 10, "18": 2}
    A.save(aug, tmp_path / "aug.json")
    A.save(aug, tmp_path / "aug.yaml", data_format="yaml")
    copies = [A.from_dict(written), A.load(tmp_path / "aug.json"), A.load(tmp_path / "aug.yaml", data_format="yaml")]
    for copy in copies:
        assert repr(copy) == repr(aug)
        assert copy.transforms[1].class_counts == {1: 10, 18: 2} and copy.transforms[1].label_map == names
    runs = 0
    for seed in (0, 1):
        aug.set_random_seed(seed)
        for copy in copies:
            copy.set_random_seed(seed)
        for it in items[:4]:
            want = aug(**_named(it, names))
            for copy in copies:
                _same(copy(**_named(it, names)), want)
            runs += len(want["labels"]) != len(it["labels"])
    assert runs > 0  # the transforms did something


def test_replay_compose_replays_the_same_output(demo_bank, demo_train_path, demo_train_images, items, names):
    aug = _pipeline(demo_bank, demo_train_path, demo_train_images, names, compose=A.ReplayCompose)
    aug.set_random_seed(2)
    applied = set()
    for it in items + items:
        out = aug(**_named(it, names))
        record = out["replay"]
        again = A.ReplayCompose.replay(record, **_named(it, names))
        _same(again, out)
        assert again["weights"] == out["weights"]
        flat = [record["transforms"][1], *record["transforms"][2]["transforms"]]
        applied |= {t["__class_fullname__"].rsplit(".", 1)[1] for t in flat if t["applied"]}
        json.dumps([t["params"] for t in flat])  # the draws (small, plain), not the output, are recorded
    assert applied == {"CopyPaste", "Mosaic", "MixUp"}


def test_replay_renders_the_recorded_draws_on_the_data_it_is_given(demo_bank, items):
    aug = A.ReplayCompose([CopyPaste(demo_bank, objects=3, blend="hard", max_overlap=1.0, min_visible=0.0, p=1.0)],
                          bbox_params=A.BboxParams(format="coco", label_fields=["labels"]))
    aug.set_random_seed(0)
    a, b = next((x, y) for x in items for y in items if x is not y and x["image"].shape == y["image"].shape)
    out = _call(aug, a)
    placed = out["replay"]["transforms"][0]["params"]["objects"]
    other = A.ReplayCompose.replay(out["replay"], image=b["image"], masks=list(b["masks"]), bboxes=b["bboxes"],
                                   labels=b["labels"])
    n = len(placed)
    assert other["labels"][-n:] == out["labels"][-n:] == [o["category_id"] for o in placed]
    for m_a, m_b in zip(out["masks"][-n:], other["masks"][-n:]):  # same objects, same places
        assert np.array_equal(m_a, m_b)
    assert not np.array_equal(other["image"], out["image"])


def test_a_pickled_pipeline_gives_the_same_output(demo_bank, demo_train_path, demo_train_images, items, names):
    aug = _pipeline(demo_bank, demo_train_path, demo_train_images, names)
    aug.set_random_seed(7)
    copy = pickle.loads(pickle.dumps(aug))  # the generators' state travels with it
    for it in items[:3]:
        _same(copy(**_named(it, names)), aug(**_named(it, names)))
    aug.set_random_seed(11)
    copy.set_random_seed(11)
    for it in items[3:6]:
        _same(copy(**_named(it, names)), aug(**_named(it, names)))


def test_copy_paste_takes_quality_flags_by_name_as_ltaug_paste_does(demo_bank):
    from ltaug.pixels.bank import Flag

    by_name = CopyPaste(demo_bank, exclude=["truncated", "occluded"], seed=0, p=1.0)
    by_bits = CopyPaste(demo_bank, exclude_flags=int(Flag.TRUNCATED | Flag.OCCLUDED), seed=0, p=1.0)
    assert by_name.class_probabilities() == by_bits.class_probabilities()
    assert A.to_dict(by_name)["transform"]["exclude"] == ["truncated", "occluded"]
    flagged = [c for c in demo_bank.class_counts() if not _unflagged(demo_bank, c)]
    assert flagged  # the demo has classes whose only objects are truncated or occluded
    with pytest.raises(ValueError, match="every object of these classes is flagged truncated, occluded"):
        CopyPaste(demo_bank, classes=flagged[:1], exclude=["truncated", "occluded"])


def _unflagged(bank, category_id):
    """Whether the bank holds an object of ``category_id`` with neither flag."""
    from ltaug.pixels.bank import Flag

    objects = bank.objects
    rows = objects["category_id"] == category_id
    return bool(((objects["flags"][rows] & int(Flag.TRUNCATED | Flag.OCCLUDED)) == 0).any())
