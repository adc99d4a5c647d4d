"""Placement rules, affine objects and feathered box-only pastes (ltaug.pixels.placement)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ltaug import load_dataset
from ltaug.errors import SpecError
from ltaug.io.geometry import decode
from ltaug.ops import Paste
from ltaug.pixels.copy_paste import iter_plan_paste, plan_paste, render_paste
from ltaug.pixels.imagefile import read_image
from ltaug.pixels.placement import affine_matrix, feathered_rectangle, mean_areas, warp_object


@pytest.fixture(scope="module")
def demo(demo_train_path):
    return load_dataset(demo_train_path)


def ids(ds, *names):
    by = {c["name"]: c["id"] for c in ds.categories}
    return {by[n] for n in names}


def anns_of(ds, image_id):
    return [a for a in ds.annotations if a["image_id"] == image_id]


def objects(recipes):
    return [(r["image_id"], o) for r in recipes for o in r["objects"]]


def test_no_rule_plans_as_before_and_rules_are_recorded(demo, demo_bank):
    plain, info = plan_paste(demo, demo_bank, Paste(objects=3, seed=1))
    same, _ = plan_paste(demo, demo_bank, Paste(objects=3, seed=1, margin=5, region="mask"))  # no rule named
    assert plain == same and "rules" not in info
    _, ruled = plan_paste(demo, demo_bank, Paste(objects=3, seed=1, onto_classes=["car"]))
    assert ruled["rules"]["onto_classes"] == ["car"] and 0 < ruled["rules"]["images_allowed"] < len(demo.images)


def test_classes_onto_and_not_onto(demo, demo_bank):
    recipes, info = plan_paste(demo, demo_bank, Paste(objects=3, seed=0, classes=["person", "car"],
                                                      onto_classes=["chair"], not_onto_classes=["book"]))
    assert recipes
    for image_id, o in objects(recipes):
        assert o["category_id"] in ids(demo, "person", "car")
        held = {a["category_id"] for a in anns_of(demo, image_id)}
        assert held & ids(demo, "chair") and not held & ids(demo, "book")
    assert set(info["classes"]) <= ids(demo, "person", "car")


@pytest.mark.parametrize("region", ["box", "mask"])
def test_inside_keeps_every_pasted_box_in_a_host(demo, demo_bank, region):
    margin = 2
    recipes, info = plan_paste(demo, demo_bank, Paste(objects=4, seed=3, inside="person", region=region,
                                                      margin=margin, scale=(0.2, 0.5)))
    assert len(objects(recipes)) >= 5
    person = ids(demo, "person")
    for image_id, o in objects(recipes):
        im = next(i for i in demo.images if i["id"] == image_id)
        hosts = [a for a in anns_of(demo, image_id) if a["category_id"] in person and not a.get("iscrowd")]
        x0, y0, x1, y1 = o["x"], o["y"], o["x"] + o["w"], o["y"] + o["h"]
        if region == "box":
            assert any(x0 >= a["bbox"][0] + margin - 1 and y0 >= a["bbox"][1] + margin - 1
                       and x1 <= a["bbox"][0] + a["bbox"][2] - margin + 1 and y1 <= a["bbox"][1] + a["bbox"][3] - margin + 1
                       for a in hosts), (image_id, o)
        else:  # every pixel of the box inside one host's mask eroded by the margin
            kernel = np.ones((2 * margin + 1,) * 2, np.uint8)
            assert any(cv2.erode(decode(a["segmentation"], im["height"], im["width"]), kernel,
                                 borderType=cv2.BORDER_CONSTANT, borderValue=0)[y0:y1, x0:x1].all()
                       for a in hosts), (image_id, o)
    missing = {k for c in info["classes"].values() for k in c["missing"]}
    assert missing <= {"no_region", "no_room", "too_small"}


@pytest.mark.parametrize("region", ["box", "mask"])
def test_outside_keeps_pasted_boxes_off_a_class(demo, demo_bank, region):
    margin = 3
    recipes, _ = plan_paste(demo, demo_bank, Paste(objects=4, seed=2, outside=["person", "car"], region=region,
                                                   margin=margin))
    assert len(objects(recipes)) >= 5
    off = ids(demo, "person", "car")
    for image_id, o in objects(recipes):
        im = next(i for i in demo.images if i["id"] == image_id)
        for a in anns_of(demo, image_id):
            if a["category_id"] not in off or a.get("iscrowd"):
                continue
            x, y, w, h = a["bbox"]
            if region == "box":
                assert not (o["x"] < x + w + margin and x - margin < o["x"] + o["w"]
                            and o["y"] < y + h + margin and y - margin < o["y"] + o["h"]), (image_id, o, a["id"])
            else:
                kernel = np.ones((2 * margin + 1,) * 2, np.uint8)
                grown = cv2.dilate(decode(a["segmentation"], im["height"], im["width"]), kernel)
                assert not grown[o["y"]:o["y"] + o["h"], o["x"]:o["x"] + o["w"]].any(), (image_id, o, a["id"])


def test_scale_to_keeps_the_size_relative_to_the_reference_class(demo, demo_bank):
    spec = Paste(objects=3, seed=5, scale_to="person", scale=(1.0, 1.0), flip=False, max_overlap=1.0)
    recipes, _ = plan_paste(demo, demo_bank, spec)
    per_image, overall = mean_areas(demo.index, next(iter(ids(demo, "person"))))
    checked = 0
    for image_id, o in objects(recipes):
        rec = demo_bank.record(o["row"])
        s = math.sqrt(per_image[image_id] / per_image.get(int(rec["image_id"]), overall))
        ow, oh = int(rec["width"]), int(rec["height"])
        im = next(i for i in demo.images if i["id"] == image_id)
        if ow * s <= im["width"] and oh * s <= im["height"]:  # not shrunk to fit the image
            assert o["w"] == max(1, round(ow * s)) and o["h"] == max(1, round(oh * s))
            checked += 1
        held = {a["category_id"] for a in anns_of(demo, image_id)}
        assert held & ids(demo, "person")  # images without the reference class get nothing
    assert checked >= 3


def test_rules_that_no_image_meets_say_so(demo, demo_bank):
    recipes, info = plan_paste(demo, demo_bank, Paste(weighting="budget", target={"min_instances": 20}, seed=0,
                                                      onto_classes=["car"], not_onto_classes=["person"],
                                                      inside="boat"))
    assert info["rules"]["images_allowed"] == 0 and "no image meets" in info["note"]
    assert not recipes and all(set(c["missing"]) == {"no_target"} for c in info["classes"].values() if c["eligible"])


def test_an_unknown_class_or_a_contradiction_is_one_line(demo, demo_bank):
    with pytest.raises(SpecError, match="inside.*unicorn"):
        iter_plan_paste(demo, demo_bank, Paste(inside="unicorn"))
    with pytest.raises(SpecError, match="not_onto_classes"):
        iter_plan_paste(demo, demo_bank, Paste(onto_classes=["car"], not_onto_classes=["car"]))


def test_affine_matrix_maps_corners_into_its_box_and_a_quarter_turn_swaps_sides():
    for angle, shear in [(0, 0), (30, 0), (-75, 10), (90, 0), (12.5, -20)]:
        m, w, h = affine_matrix(40, 20, angle, shear)
        corners = np.array([[0, 0, 1], [40, 0, 1], [0, 20, 1], [40, 20, 1]], float) @ m.T
        assert corners.min() >= -1e-6 and (corners[:, 0].max() <= w + 1e-6) and (corners[:, 1].max() <= h + 1e-6)
    _, w, h = affine_matrix(40, 20, 90, 0)
    assert (w, h) == (20, 40)
    mask = np.zeros((20, 40), np.uint8)
    mask[:, :10] = 1  # the left quarter
    crop = np.dstack([mask * 200] * 3).astype(np.uint8)
    c2, m2 = warp_object(crop, mask, 90, 0)
    assert m2.shape == (40, 20) and abs(int(m2.sum()) - 200) <= 20
    assert m2[:10, :].sum() > 0.9 * m2.sum()  # +90 degrees turns clockwise on screen (y down): left goes up


def test_turned_objects_are_pasted_exactly_and_recorded(demo, demo_bank, demo_train_images):
    spec = Paste(objects=3, seed=4, rotate=45, shear=15)
    recipes, _ = plan_paste(demo, demo_bank, spec)
    turned = [o for _, o in objects(recipes)]
    assert turned and all(abs(o["angle"]) <= 45 and abs(o["shear"]) <= 15 for o in turned)
    assert any(abs(o["angle"]) > 5 for o in turned)
    r = recipes[0]
    im = next(i for i in demo.images if i["id"] == r["image_id"])
    img = read_image(demo_train_images / im["file_name"], im["id"], im["height"], im["width"])
    _, pasted, _ = render_paste(img, anns_of(demo, im["id"]), r, demo_bank, spec)
    assert pasted
    for a in pasted:
        m = decode(a["segmentation"], im["height"], im["width"])
        ys, xs = np.nonzero(m)
        assert [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)] \
            == a["bbox"]  # the box is the mask's
        o = next(o for o in r["objects"] if o["annotation_id"] == a["ltaug"]["source_annotation_id"])
        assert a["ltaug"]["angle"] == o["angle"] and a["ltaug"]["size_before_turning"] == o["size"]
        x, y, w, h = a["bbox"]
        assert o["x"] <= x and o["y"] <= y and x + w <= o["x"] + o["w"] and y + h <= o["y"] + o["h"]


def test_box_only_objects_get_a_feathered_rectangle():
    mask = np.ones((30, 60), np.uint8)
    alpha = feathered_rectangle(mask, 0.1)
    assert alpha[15, 30] > 0.99 and alpha[0, 0] < 0.35 and alpha[15, 0] < 0.6
    assert np.all(np.diff(alpha[15, :30]) >= -1e-6)  # rising from the edge inwards
    assert np.array_equal(feathered_rectangle(mask, 0.0), mask.astype(np.float32))


@pytest.fixture(scope="module")
def boxes_only(demo, demo_train_images, tmp_path_factory):
    """The demo set without masks, and its object bank (every object box-only)."""
    from ltaug.pixels.bank import Bank, build_bank

    ds = demo.replace(annotations=[{k: v for k, v in a.items() if k != "segmentation"} for a in demo.annotations])
    path = tmp_path_factory.mktemp("box-bank") / "bank"
    build_bank(ds, demo_train_images, path, workers=1, progress=False)
    return ds, Bank(path)


def test_box_only_paste_is_flagged_in_provenance(boxes_only, demo_train_images):
    demo, bank = boxes_only
    spec = Paste(objects=2, seed=0)
    recipes, info = plan_paste(demo, bank, spec)
    assert info["box_only"]
    r = recipes[0]
    im = next(i for i in demo.images if i["id"] == r["image_id"])
    img = read_image(demo_train_images / im["file_name"], im["id"], im["height"], im["width"])
    before = img.copy()
    _, pasted, counts = render_paste(img, anns_of(demo, im["id"]), r, bank, spec)
    assert pasted and all(a["ltaug"]["box_only"] == "feathered-rectangle" and "segmentation" not in a for a in pasted)
    assert counts["blend"] == {"feathered-rectangle": len(r["objects"])}
    hard = Paste(objects=2, seed=0, box_feather=0.0)
    img2 = before.copy()
    _, pasted2, counts2 = render_paste(img2, anns_of(demo, im["id"]), r, bank, hard)
    assert all(a["ltaug"]["box_only"] == "rectangle" for a in pasted2) and "feathered-rectangle" not in counts2["blend"]
    o = r["objects"][-1]  # on top of the others: inside, the object as the hard paste has it; at the edge, a blend
    x, y, w, h = o["x"], o["y"], o["w"], o["h"]
    assert np.array_equal(img[y + h // 2, x + w // 2], img2[y + h // 2, x + w // 2])
    edge, hard_edge, old = (a[y:y + h, x].astype(int) for a in (img, img2, before))
    assert np.abs(edge - hard_edge).sum() > 0 and np.abs(edge - old).sum() < np.abs(hard_edge - old).sum()


def test_the_command_line_takes_the_rules(tmp_path, demo_train_path, demo_train_images, capsys):
    from ltaug.cli.main import main

    out = tmp_path / "out"
    code = main(["paste", str(demo_train_path), "--images", str(demo_train_images), "-o", str(out),
                 "--classes", "car,boat", "--outside", "person", "--margin", "2", "--rotate", "20",
                 "--workers", "1"])
    assert code == 0
    import json

    run = json.loads((out / "run.json").read_text())
    assert run["steps_run"][0]["plan"]["rules"]["outside"] == ["person"]
    with pytest.raises(SystemExit):
        main(["paste", str(demo_train_path), "--images", str(demo_train_images), "-o", str(tmp_path / "x"),
              "--region", "polygon"])
    assert main(["paste", str(demo_train_path), "--images", str(demo_train_images), "-o", str(tmp_path / "y"),
                 "--rotate", "400"]) == 2
    assert "--rotate must be in [0, 180], got 400.0" in capsys.readouterr().err
    assert main(["paste", str(demo_train_path), "--images", str(demo_train_images), "-o", str(tmp_path / "z"),
                 "--inside", "unicorn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inside" in err[0] and "unicorn" in err[0]


def test_a_budget_for_some_classes_limits_only_those(tmp_path, demo_train_path, demo_train_images):
    import json

    from ltaug import run_steps

    run_steps(demo_train_path, demo_train_images, tmp_path / "o",
              [Paste(weighting="budget", target={"min_instances": 15}, classes=["boat", "cup", "knife"], seed=0)],
              workers=1)
    limits = json.loads((tmp_path / "o" / "run.json").read_text())["limits"]
    assert limits["checked"][0]["classes"] == 3  # the three named classes, not the dataset's 64
    assert {e["name"] for e in limits["not_held"]} <= {"boat", "cup", "knife"}
