"""`ltaug openimages` (ltaug.io.openimages): the Open Images detection format read as LVIS, on a sample
built from the demo data (tests/openimages_sample.py) and on hand-written rows."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest
from conftest import DEMO
from openimages_sample import BOX_HEADER, build_sample, class_mid, image_id, super_mid, write_csv

import ltaug
from ltaug.cli.main import main
from ltaug.errors import InputError
from ltaug.io.geometry import decode
from ltaug.io.openimages import read_openimages

DEMO_DOC = json.loads((DEMO / "annotations" / "train.json").read_text())


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return build_sample(tmp_path_factory.mktemp("oi") / "sample")


@pytest.fixture(scope="module")
def read(sample):
    return read_openimages(sample["boxes"], sample["classes"], sample["images"], hierarchy=sample["hierarchy"],
                           labels=[sample["labels"]])


def by_object(ds):
    out = defaultdict(list)
    for a in ds.annotations:
        out[(a["image_id"], a["object_id"])].append(a)
    return out


def test_every_box_gets_its_supercategory_as_a_second_label_of_the_same_object(read):
    ds = read.dataset
    cats = {c["id"]: c for c in ds.categories}
    names = {c["label_name"]: c["id"] for c in ds.categories}
    assert "/m/0bl9f" not in names  # the hierarchy's virtual root is no category
    objects = by_object(ds)
    assert len(objects) == len(DEMO_DOC["annotations"]) and len(ds.annotations) == 2 * len(objects)
    for anns in objects.values():
        box, parent = anns
        assert box["openimages"]["from"] == "box" and parent["openimages"]["from"] == "hierarchy"
        assert parent["bbox"] == box["bbox"] and parent["area"] == box["area"]
        assert cats[box["category_id"]]["parent_ids"] == [parent["category_id"]]
        assert cats[parent["category_id"]]["name"].endswith("(supercategory)")
    assert read.counts["annotations added by the hierarchy"] == len(objects)


def test_boxes_come_back_in_pixels_on_the_right_image(read):
    ds = read.dataset
    by_oi = {im["openimages_id"]: im for im in ds.images}
    cat = {c["label_name"]: c["id"] for c in ds.categories}
    got = {(a["image_id"], a["category_id"], tuple(np.round(a["bbox"], 2))) for a in ds.annotations}
    for im in DEMO_DOC["images"]:
        mine = by_oi[image_id(im["id"])]
        assert (mine["width"], mine["height"]) == (im["width"], im["height"])
    for a in DEMO_DOC["annotations"]:
        im = by_oi[image_id(a["image_id"])]
        x, y, w, h = a["bbox"]
        clipped = [x, y, min(x + w, im["width"]) - x, min(y + h, im["height"]) - y]
        assert (im["id"], cat[class_mid(a["category_id"])], tuple(np.round(clipped, 2))) in got


def test_verified_negatives_go_down_the_hierarchy_and_crowds_are_not_exhaustive(read):
    ds = read.dataset
    cats = {c["id"]: c for c in ds.categories}
    sup_of = {c["id"]: c["supercategory"] for c in DEMO_DOC["categories"]}
    oi = {im["openimages_id"]: im for im in ds.images}
    for im in DEMO_DOC["images"]:
        mine = oi[image_id(im["id"])]
        present = {a["category_id"] for a in DEMO_DOC["annotations"] if a["image_id"] == im["id"]}
        absent_supers = {s for s in sup_of.values()} - {sup_of[c] for c in present}
        want = {cats_id for cats_id, c in cats.items() if c["label_name"] in {super_mid(s) for s in absent_supers}
                or (c["label_name"].startswith("/m/coco") and sup_of[int(c["label_name"][7:])] in absent_supers)}
        assert set(mine["neg_category_ids"]) == want
        crowd = {a["category_id"] for a in DEMO_DOC["annotations"] if a["image_id"] == im["id"] and a["iscrowd"]}
        crowd_ids = {c for c, rec in cats.items() if rec["label_name"] in {class_mid(k) for k in crowd}
                     | {super_mid(sup_of[k]) for k in crowd}}
        assert set(mine["not_exhaustive_category_ids"]) == crowd_ids
    assert any(im["not_exhaustive_category_ids"] for im in ds.images)  # the demo has crowd regions
    assert read.counts["image-level labels of classes not among the categories"] == 1


def test_unverified_and_unboxed_labels_are_not_exhaustive_and_a_box_beats_a_negative(tmp_path, sample):
    """Hand-written labels on the first two images: a machine label (any confidence) and a verified
    positive without a box are not exhaustive (with their ancestors); a verified negative of a boxed
    class is dropped; verified beats unverified."""
    ds0 = read_openimages(sample["boxes"], sample["classes"], sample["images"], hierarchy=sample["hierarchy"]).dataset
    first, second = ds0.images[0], ds0.images[1]
    boxed = {a["category_id"] for a in ds0.annotations if a["image_id"] == first["id"]}
    cat = {c["label_name"]: c["id"] for c in ds0.categories}
    a_boxed = next(m for m, i in cat.items() if i in boxed and m.startswith("/m/coco"))
    unboxed = [m for m, i in cat.items() if i not in boxed and m.startswith("/m/coco")]
    labels = write_csv(tmp_path / "labels.csv", [
        [first["openimages_id"], "machine", unboxed[0], "0.3"],
        [first["openimages_id"], "verification", unboxed[1], "1"],
        [first["openimages_id"], "verification", a_boxed, "0"],
        [first["openimages_id"], "crowdsource-verification", unboxed[2], "0"],
        [first["openimages_id"], "machine", unboxed[2], "0.8"],
        [second["openimages_id"], "machine", unboxed[0], "1"],
    ], ["ImageID", "Source", "LabelName", "Confidence"])
    got = read_openimages(sample["boxes"], sample["classes"], sample["images"], hierarchy=sample["hierarchy"],
                          labels=[labels])
    im = got.dataset.images[0]
    parent = {c["id"]: c["parent_ids"] for c in got.dataset.categories}
    expect = {cat[unboxed[0]], cat[unboxed[1]], *parent[cat[unboxed[0]]], *parent[cat[unboxed[1]]]} - boxed
    assert set(im["not_exhaustive_category_ids"]) == expect
    assert im["neg_category_ids"] == [cat[unboxed[2]]]
    assert got.counts["negative label of a boxed class (dropped)"] == 1
    assert cat[unboxed[0]] in got.dataset.images[1]["not_exhaustive_category_ids"]


def test_a_box_listed_under_two_labels_is_one_object(tmp_path, sample):
    rows = [r for r in (sample["boxes"].read_text().splitlines()[1:2])][0].split(",")
    twin = [*rows[:2], class_mid(90), *rows[3:]]  # the same box as a toothbrush too
    boxes = write_csv(tmp_path / "boxes.csv", [rows, twin], BOX_HEADER)
    ds = read_openimages(boxes, sample["classes"], sample["images"], hierarchy=sample["hierarchy"]).dataset
    assert {a["object_id"] for a in ds.annotations} == {1}
    labels = [a["openimages"]["label"] for a in ds.annotations]
    assert labels[:2] == [rows[2], class_mid(90)] and len(labels) == len(set(labels)) == 4  # + two supercategories


def test_masks_are_read_resized_and_shared_by_the_labels_of_the_object(tmp_path, sample):
    ds0 = read_openimages(sample["boxes"], sample["classes"], sample["images"]).dataset
    once = Counter((image_id(a["image_id"]), class_mid(a["category_id"])) for a in DEMO_DOC["annotations"])
    demo = {(image_id(a["image_id"]), class_mid(a["category_id"])): a for a in DEMO_DOC["annotations"]
            if not a["iscrowd"] and once[(image_id(a["image_id"]), class_mid(a["category_id"]))] == 1}
    oi_of = {im["id"]: im for im in ds0.images}
    rows, want = [], {}
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    for a in ds0.annotations:
        im = oi_of[a["image_id"]]
        key = (im["openimages_id"], a["openimages"]["label"])
        if key not in demo or len(want) == 4:
            continue
        full = decode(demo[key]["segmentation"], im["height"], im["width"])
        half = cv2.resize(full * 255, (im["width"] // 2, im["height"] // 2), interpolation=cv2.INTER_NEAREST)
        name = f"{key[0]}_{key[1].replace('/', '')}_{a['id']:08x}.png"
        cv2.imwrite(str(mask_dir / name), half)
        x, y, w, h = (a["bbox"][0] / im["width"], a["bbox"][1] / im["height"], a["bbox"][2] / im["width"],
                      a["bbox"][3] / im["height"])
        rows.append([name, key[0], key[1], f"{a['id']:08x}", f"{x:.6f}", f"{x + w:.6f}", f"{y:.6f}", f"{y + h:.6f}",
                     "0.9", ""])
        want[key] = full
    assert len(want) == 4
    masks = write_csv(tmp_path / "masks.csv", rows, ["MaskPath", "ImageID", "LabelName", "BoxID", "BoxXMin",
                                                     "BoxXMax", "BoxYMin", "BoxYMax", "PredictedIoU", "Clicks"])
    ds = read_openimages(sample["boxes"], sample["classes"], sample["images"], hierarchy=sample["hierarchy"],
                         masks=masks, mask_dir=mask_dir).dataset
    oi_of = {im["id"]: im for im in ds.images}
    seen = 0
    for anns in by_object(ds).values():
        im = oi_of[anns[0]["image_id"]]
        key = (im["openimages_id"], anns[0]["openimages"]["label"])
        if key not in want:
            assert all("segmentation" not in a for a in anns)
            continue
        seen += 1
        got = decode(anns[0]["segmentation"], im["height"], im["width"])
        iou = (got & want[key]).sum() / (got | want[key]).sum()
        assert iou > 0.9 and anns[0]["area"] == got.sum()
        assert all(a["segmentation"] == anns[0]["segmentation"] for a in anns)  # the supercategory's too
    assert seen == len(want)


def test_the_output_loads_in_lvis_api_and_ltaug(tmp_path, sample):
    from lvis import LVIS

    out = tmp_path / "oi.json"
    assert main(["openimages", "--boxes", str(sample["boxes"]), "--classes", str(sample["classes"]), "--images",
                 str(sample["images"]), "--hierarchy", str(sample["hierarchy"]), "--labels", str(sample["labels"]),
                 "-o", str(out)]) == 0
    lv = LVIS(str(out))
    assert len(lv.get_ann_ids()) == 2 * len(DEMO_DOC["annotations"])
    ds = ltaug.load_dataset(out)
    assert ds.kind == "lvis" and all("frequency" in c for c in ds.categories)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("XMax,", "XMaximum,", 1), "boxes.csv:1: no column XMax in the header"),
    (lambda t: _line(t, 3, 5, "1.5"), "boxes.csv:3: XMax 1.5 is outside [0, 1]"),
    (lambda t: _line(t, 2, 4, "abc"), "boxes.csv:2: XMin 'abc' is not a number"),
    (lambda t: _line(t, 4, 2, "/m/nothing"), "boxes.csv:4: LabelName /m/nothing is not among the classes"),
    (lambda t: _line(t, 2, 10, "2"), "boxes.csv:2: IsGroupOf '2' is not 1, 0 or -1"),
])
def test_bad_rows_are_named_by_file_and_line(tmp_path, sample, capsys, edit, message):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(edit(sample["boxes"].read_text()))
    with pytest.raises(InputError, match="^" + str(boxes).replace("\\", "\\\\") + ":"):
        read_openimages(boxes, sample["classes"], sample["images"])
    code = main(["openimages", "--boxes", str(boxes), "--classes", str(sample["classes"]), "--images",
                 str(sample["images"]), "-o", str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def _line(text: str, line: int, field: int, value: str) -> str:
    lines = text.splitlines()
    parts = lines[line - 1].split(",")
    parts[field] = value
    lines[line - 1] = ",".join(parts)
    return "\n".join(lines) + "\n"


def test_other_bad_files_are_named(tmp_path, sample):
    bad_tree = tmp_path / "tree.json"
    bad_tree.write_text(json.dumps({"LabelName": "/m/0bl9f", "Subcategory": [{"LabelName": "/m/unknown"}]}))
    with pytest.raises(InputError, match="tree.json: /m/unknown is not among the classes"):
        read_openimages(sample["boxes"], sample["classes"], sample["images"], hierarchy=bad_tree)
    masks = write_csv(tmp_path / "masks.csv", [["x.png", image_id(DEMO_DOC["images"][0]["id"]), class_mid(1), "ab",
                                                 "0.1", "0.2", "0.1", "0.2", "0.9", ""]],
                      ["MaskPath", "ImageID", "LabelName", "BoxID", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax",
                       "PredictedIoU", "Clicks"])
    with pytest.raises(InputError, match=r"masks.csv:2: no box of image \w+ with label /m/coco1"):
        read_openimages(sample["boxes"], sample["classes"], sample["images"], masks=masks)
    classes = tmp_path / "classes.csv"
    classes.write_text(sample["classes"].read_text() + "/m/coco1,again\n")
    with pytest.raises(InputError, match=r"classes.csv:\d+: class /m/coco1 listed twice"):
        read_openimages(sample["boxes"], classes, sample["images"])
    labels = write_csv(tmp_path / "labels.csv", [[image_id(DEMO_DOC["images"][0]["id"]), "verification",
                                                  class_mid(1), "0.5"]], ["ImageID", "Source", "LabelName",
                                                                          "Confidence"])
    with pytest.raises(InputError, match="labels.csv:2: a human-verified label"):
        read_openimages(sample["boxes"], sample["classes"], sample["images"], labels=[labels])


def test_rows_of_images_not_in_the_folder_are_skipped_and_counted(tmp_path, sample):
    img = tmp_path / "two"
    img.mkdir()
    kept = sorted(sample["images"].iterdir())[:2]
    for p in kept:
        (img / p.name).symlink_to(p.resolve())
    got = read_openimages(sample["boxes"], sample["classes"], img, labels=[sample["labels"]])
    assert [im["openimages_id"] for im in got.dataset.images] == [p.stem for p in kept]
    rows = len(sample["boxes"].read_text().splitlines()) - 1
    assert got.counts["box rows of images not in the folder"] + len(got.dataset.annotations) == rows


def test_v7_class_header_parts_and_a_label_under_two_parents(tmp_path, sample):
    classes = tmp_path / "classes.csv"
    classes.write_text("LabelName,DisplayName\n" + sample["classes"].read_text())  # v7 writes a header
    toy = "/m/super_toy"
    classes.write_text(classes.read_text() + f"{toy},Toy\n")
    tree = json.loads(sample["hierarchy"].read_text())
    car = {"LabelName": class_mid(3)}
    tree["Subcategory"].append({"LabelName": toy, "Subcategory": [car], "Part": [{"LabelName": class_mid(1)}]})
    (tmp_path / "tree.json").write_text(json.dumps(tree))
    ds = read_openimages(sample["boxes"], classes, sample["images"], hierarchy=tmp_path / "tree.json").dataset
    cat = {c["label_name"]: c for c in ds.categories}
    assert "LabelName" not in cat and cat[class_mid(1)]["parent_ids"] == [cat[super_mid("person")]["id"]]
    assert cat[class_mid(3)]["parent_ids"] == sorted([cat[super_mid("vehicle")]["id"], cat[toy]["id"]])
    cars = [anns for anns in by_object(ds).values() if anns[0]["category_id"] == cat[class_mid(3)]["id"]]
    assert cars and all(sorted(a["category_id"] for a in anns[1:]) == cat[class_mid(3)]["parent_ids"]
                        for anns in cars)
