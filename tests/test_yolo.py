"""YOLO-seg folders <-> COCO documents (ltaug.io.yolo)."""
from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ltaug import load_dataset
from ltaug.errors import InputError, SpecError, UsageError
from ltaug.io import geometry
from ltaug.io.dataset import Dataset
from ltaug.io.yolo import read_yolo
from ltaug.io.yolo_export import write_yolo

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-lt"
TRAIN_JSON = SHARED / "annotations" / "instances_train.json"
TRAIN_IMAGES = SHARED / "images" / "train2017"
needs_shared = pytest.mark.skipif(not TRAIN_JSON.is_file() or not TRAIN_IMAGES.is_dir(),
                                  reason=f"shared COCO-LT data not found at {SHARED}")

# A hand-made folder: two classes, polygons with exactly 6 decimals (so they survive a round
# trip verbatim), one image with no label file.
SIZES = {"a.png": (64, 48), "b.jpg": (80, 60), "c.png": (32, 32)}
LABELS = {
    "a": ["0 0.100000 0.200000 0.500000 0.200000 0.500000 0.700000 0.100000 0.700000",
          "1 0.600000 0.100000 0.900000 0.150000 0.750000 0.600000"],
    "b": ["1 0.000000 0.000000 1.000000 0.000000 1.000000 1.000000 0.000000 1.000000",
          "0 0.123456 0.234567 0.345678 0.456789 0.567891 0.678912 0.219876 0.654321"],
}


def make_folder(root: Path, *, names=("cat", "dog"), labels=None, sizes=None, yaml_extra=None,
                images_sub="images", labels_sub="labels") -> Path:
    """Write images (solid colour), label files and data.yaml under ``root``."""
    labels = LABELS if labels is None else labels
    sizes = SIZES if sizes is None else sizes
    for name, (w, h) in sizes.items():
        path = root / images_sub / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (120, 30, 200)).save(path)
    for stem, lines in labels.items():
        path = root / labels_sub / f"{stem}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{ln}\n" for ln in lines))
    config = {"names": list(names) if not isinstance(names, dict) else names, **(yaml_extra or {})}
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    return root


def label_values(path: Path) -> list[list[float]]:
    return [[float(v) for v in ln.split()] for ln in path.read_text().splitlines()]


# -- reading ---------------------------------------------------------------------------


def test_read_hand_made_folder(tmp_path):
    ds = read_yolo(make_folder(tmp_path / "y"))
    assert [im["file_name"] for im in ds.images] == ["a.png", "b.jpg", "c.png"]
    assert [im["id"] for im in ds.images] == [1, 2, 3]
    assert [(im["width"], im["height"]) for im in ds.images] == [(64, 48), (80, 60), (32, 32)]
    assert ds.categories == [{"id": 0, "name": "cat", "yolo_id": 0}, {"id": 1, "name": "dog", "yolo_id": 1}]
    assert [a["id"] for a in ds.annotations] == [1, 2, 3, 4]
    assert [a["image_id"] for a in ds.annotations] == [1, 1, 2, 2]
    first = ds.annotations[0]
    assert first["segmentation"][0] == pytest.approx([6.4, 9.6, 32.0, 9.6, 32.0, 33.6, 6.4, 33.6])
    assert first["bbox"] == pytest.approx([6.4, 9.6, 25.6, 24.0])
    assert first["area"] == geometry.mask_area(first["segmentation"], 48, 64)
    assert first["iscrowd"] == 0 and first["category_id"] == 0
    assert not ds.skipped


def test_load_dataset_routes_folders_to_read_yolo(tmp_path):
    ds = load_dataset(make_folder(tmp_path / "y"))
    assert len(ds.images) == 3 and len(ds.annotations) == 4 and ds.kind == "coco"
    assert read_yolo(tmp_path / "y" / "data.yaml").data == ds.data  # the yaml file itself works too


@pytest.mark.parametrize("names", [["cat", "dog"], {0: "cat", 1: "dog"}, {"0": "cat", "1": "dog"}])
def test_names_as_list_or_dict(tmp_path, names):
    ds = read_yolo(make_folder(tmp_path / "y", names=names))
    assert [(c["id"], c["name"]) for c in ds.categories] == [(0, "cat"), (1, "dog")]


def test_names_dict_with_gaps_are_read_and_written_as_0_to_k_minus_1(tmp_path):
    labels = {"a": ["3 0.1 0.1 0.4 0.1 0.4 0.4"], "b": ["7 0.5 0.5 0.9 0.5 0.9 0.9"]}
    ds = read_yolo(make_folder(tmp_path / "y", names={3: "cat", 7: "dog"}, labels=labels))
    assert [(c["id"], c["name"]) for c in ds.categories] == [(3, "cat"), (7, "dog")]
    assert [a["category_id"] for a in ds.annotations] == [3, 7]
    summary = write_yolo(ds, tmp_path / "out")  # ultralytics refuses ids other than 0..K-1
    written = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert written["names"] == {0: "cat", 1: "dog"} and written["ltaug_id_map"] == {3: 0, 7: 1}
    assert summary["id_map"] == {3: 0, 7: 1} and summary["ids_changed"] == 2
    assert label_values(tmp_path / "out" / "labels" / "b.txt")[0][0] == 1
    # --keep-ids: the ids stay, the gaps are placeholders that reading back leaves out
    summary = write_yolo(ds, tmp_path / "kept", images_dir=tmp_path / "y" / "images", keep_ids=True)
    kept = yaml.safe_load((tmp_path / "kept" / "data.yaml").read_text())
    assert kept["names"][3] == "cat" and kept["names"][0] == "unused_0" and kept["nc"] == 8
    assert kept["ltaug_placeholder_ids"] == [0, 1, 2, 4, 5, 6] and summary["placeholders"] == [0, 1, 2, 4, 5, 6]
    assert label_values(tmp_path / "kept" / "labels" / "b.txt")[0][0] == 7
    assert read_yolo(tmp_path / "kept").categories == ds.categories


def test_split_layout(tmp_path):
    root = tmp_path / "y"
    make_folder(root, images_sub="images/train", labels_sub="labels/train",
                yaml_extra={"path": "/somewhere/else", "train": "images/train", "val": "images/val"})
    make_folder(root, images_sub="images/val", labels_sub="labels/val", sizes={"v.png": (10, 10)},
                labels={"v": ["1 0.5 0.5 0.2 0.2"]},
                yaml_extra={"path": "/somewhere/else", "train": "images/train", "val": "images/val"})
    train, val = read_yolo(root), read_yolo(root, split="val")
    assert len(train.images) == 3 and len(train.annotations) == 4
    assert [im["file_name"] for im in val.images] == ["v.png"] and len(val.annotations) == 1
    with pytest.raises(InputError, match="no 'test' entry"):
        read_yolo(root, split="test")


def test_box_only_lines(tmp_path):
    labels = {"a": ["1 0.500000 0.500000 0.250000 0.500000"]}
    ds = read_yolo(make_folder(tmp_path / "y", labels=labels))
    (ann,) = ds.annotations
    assert "segmentation" not in ann
    assert ann["bbox"] == pytest.approx([24.0, 12.0, 16.0, 24.0])  # image a is 64 x 48
    assert ann["area"] == pytest.approx(16.0 * 24.0)
    summary = write_yolo(ds, tmp_path / "out")
    assert summary["box_as_polygon"] == 1
    (line,) = label_values(tmp_path / "out" / "labels" / "a.txt")
    assert line == pytest.approx([1, 0.375, 0.25, 0.625, 0.25, 0.625, 0.75, 0.375, 0.75], abs=1e-6)


def test_missing_label_file_is_an_image_without_objects(tmp_path):
    ds = read_yolo(make_folder(tmp_path / "y"))
    c = next(im for im in ds.images if im["file_name"] == "c.png")
    assert not [a for a in ds.annotations if a["image_id"] == c["id"]]


def test_label_without_image_is_counted(tmp_path):
    ds = read_yolo(make_folder(tmp_path / "y", labels={**LABELS, "ghost": ["0 0.1 0.1 0.2 0.1 0.2 0.2"]}))
    assert ds.skipped == Counter({"label-without-image": 1})


BAD_LINES = [
    ("0 0.1 0.1 zero 0.2 0.3 0.3", "non-numeric"),
    ("0 0.1 0.1 nan 0.2 0.3 0.3", "non-numeric"),
    ("0 0.1 0.2 0.3 0.4 0.5", "bad-coordinate-count"),
    ("0 0.1 0.2", "bad-coordinate-count"),
    ("1.5 0.1 0.1 0.2 0.1 0.2 0.2", "bad-class-id"),
    ("-1 0.1 0.1 0.2 0.1 0.2 0.2", "bad-class-id"),
    ("9 0.1 0.1 0.2 0.1 0.2 0.2", "unknown-class"),
    ("0 0.1 0.1 5.0 0.1 0.2 0.2", "coords-outside-image"),
    ("0 0.9 0.5 0.4 0.2", "coords-outside-image"),
    ("0 0.1 0.1 0.2 0.1 0.3 0.1", "degenerate-shape"),
    ("0 0.5 0.5 0.0 0.2", "degenerate-shape"),
]


@pytest.mark.parametrize("line,kind", BAD_LINES)
def test_bad_label_line_raises_naming_file_and_line(tmp_path, line, kind):
    root = make_folder(tmp_path / "y", labels={"a": [LABELS["a"][0], line, LABELS["a"][1]]})
    with pytest.raises(InputError) as exc:
        read_yolo(root)
    message = str(exc.value)
    assert f"{root / 'labels' / 'a.txt'}:2:" in message and "\n" not in message


@pytest.mark.parametrize("line,kind", BAD_LINES)
def test_bad_label_line_skipped_and_counted(tmp_path, line, kind):
    root = make_folder(tmp_path / "y", labels={"a": [LABELS["a"][0], line, LABELS["a"][1]]})
    ds = read_yolo(root, on_error="skip")
    assert ds.skipped == Counter({kind: 1})
    assert len(ds.annotations) == 2  # the good lines either side are kept


def test_slightly_outside_coordinates_are_clipped(tmp_path):
    ds = read_yolo(make_folder(tmp_path / "y", labels={"a": ["0 -0.005 0.0 1.005 0.0 1.0 1.0"]}))
    xs = ds.annotations[0]["segmentation"][0][0::2]
    assert min(xs) == 0.0 and max(xs) == 64.0


@pytest.mark.parametrize("make_bad,match", [
    (lambda r: (r / "data.yaml").unlink(), "data.yaml: file not found"),
    (lambda r: (r / "data.yaml").write_text("names: 3\n"), "'names' must be a list"),
    (lambda r: (r / "data.yaml").write_text("names: [a, b\n"), "cannot read YAML"),
    (lambda r: Image.new("RGB", (4, 4)).save(r / "images" / "a.jpg"), "share the label file a.txt"),
    (lambda r: (r / "images" / "b.jpg").write_bytes(b"not a jpeg"), "b.jpg: cannot be read as an image"),
])
def test_bad_folders_raise(tmp_path, make_bad, match):
    root = make_folder(tmp_path / "y")
    make_bad(root)
    with pytest.raises(InputError, match=match):
        read_yolo(root)


def test_unreadable_image_skipped(tmp_path):
    root = make_folder(tmp_path / "y")
    (root / "images" / "b.jpg").write_bytes(b"not a jpeg")
    ds = read_yolo(root, on_error="skip")
    assert [im["file_name"] for im in ds.images] == ["a.png", "c.png"]
    assert ds.skipped == Counter({"unreadable-image": 1}) and len(ds.annotations) == 2


def test_on_error_must_be_known(tmp_path):
    with pytest.raises(UsageError):
        read_yolo(make_folder(tmp_path / "y"), on_error="ignore")


# -- writing ---------------------------------------------------------------------------


def test_yolo_coco_yolo_gives_the_same_label_lines(tmp_path):
    src = make_folder(tmp_path / "y")
    summary = write_yolo(read_yolo(src), tmp_path / "out", images_dir=src / "images")
    for stem in ("a", "b"):
        got, want = label_values(tmp_path / "out" / "labels" / f"{stem}.txt"), label_values(src / "labels" / f"{stem}.txt")
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g == pytest.approx(w, abs=1e-6)
    assert (tmp_path / "out" / "labels" / "c.txt").read_text() == ""  # no objects: empty file
    assert summary["images"] == 3 and summary["labels_written"] == 3 and summary["objects"] == 4
    assert summary["empty_labels"] == 1 and summary["skipped_crowd"] == 0 and summary["images_copied"] == 3
    again = read_yolo(tmp_path / "out")  # the written folder reads back the same
    assert again.categories == read_yolo(src).categories
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]


def test_written_json_loads_in_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds = read_yolo(make_folder(tmp_path / "y"))
    path = ds.save(tmp_path / "out.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        assert sorted(coco.getCatIds()) == [0, 1] and len(coco.getAnnIds(catIds=[0])) == 2
        dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                for a in ds.annotations]
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # category id 0 is evaluated like any other


def _tiny_dataset(images, annotations=(), categories=({"id": 5, "name": "thing"},)) -> Dataset:
    return Dataset.from_dict({"images": list(images), "annotations": list(annotations),
                              "categories": list(categories)})


def test_stem_collision_raises(tmp_path):
    ds = _tiny_dataset([{"id": 1, "file_name": "x.jpg", "width": 10, "height": 10},
                        {"id": 2, "file_name": "x.png", "width": 10, "height": 10}])
    with pytest.raises(InputError, match="share the stem 'x'"):
        write_yolo(ds, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_crowd_rle_and_multipart(tmp_path):
    from pycocotools import mask as mask_utils

    masks = np.zeros((3, 20, 30), np.uint8)
    masks[0, 5:15, 10:25] = 1
    masks[1, 2, 3] = 1  # one pixel: traced as the square around it
    # masks[2] stays empty: nothing to trace, so the box is written
    rle, dot, empty = (geometry.rle_to_json(mask_utils.encode(np.asfortranarray(m))) for m in masks)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 5, 15, 10], "iscrowd": 1, "segmentation": rle},
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [10, 5, 15, 10], "iscrowd": 0, "segmentation": rle},
        {"id": 3, "image_id": 1, "category_id": 7, "bbox": [0, 0, 20, 10], "iscrowd": 0,
         "segmentation": [[0, 0, 5, 0, 5, 5], [15, 5, 20, 5, 20, 10]]},
        {"id": 4, "image_id": 1, "category_id": 7, "bbox": [3, 2, 1, 1], "iscrowd": 0, "segmentation": dot},
        {"id": 5, "image_id": 1, "category_id": 7, "bbox": [6, 4, 2, 2], "iscrowd": 0, "segmentation": empty},
    ]
    ds = _tiny_dataset([{"id": 1, "file_name": "sub/im.jpg", "width": 30, "height": 20}], anns,
                       [{"id": 5, "name": "thing"}, {"id": 7, "name": "other"}])
    summary = write_yolo(ds, tmp_path / "out")
    assert summary["skipped_crowd"] == 1 and summary["objects"] == 4
    assert summary["rle_traced"] == 2 and summary["merged_parts"] == 1 and summary["mask_fallback_to_box"] == 1
    lines = label_values(tmp_path / "out" / "labels" / "sub" / "im.txt")
    assert [ln[0] for ln in lines] == [0, 1, 1, 1]  # category ids 5, 7 -> yolo ids 0, 1
    assert all(0.0 <= v <= 1.0 for ln in lines for v in ln[1:])
    assert len(lines[1]) == 1 + 2 * (3 + 1 + 3 + 1)  # two triangles and the bridge there and back
    square = [3 / 30, 2 / 20, 4 / 30, 2 / 20, 4 / 30, 3 / 20, 3 / 30, 3 / 20]
    assert lines[2][1:] == pytest.approx(square, abs=1e-6)
    assert lines[3][1:] == pytest.approx([6 / 30, 4 / 20, 8 / 30, 4 / 20, 8 / 30, 6 / 20, 6 / 30, 6 / 20], abs=1e-6)
    assert yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())["names"] == {0: "thing", 1: "other"}


@pytest.mark.parametrize("link", ["copy", "hardlink", "symlink", "none"])
def test_image_links(tmp_path, link):
    src = make_folder(tmp_path / "y")
    summary = write_yolo(read_yolo(src), tmp_path / "out", images_dir=src / "images", link=link)
    placed = tmp_path / "out" / "images" / "a.png"
    if link == "none":
        assert not placed.exists() and summary["link"] == "none"
        return
    assert placed.read_bytes() == (src / "images" / "a.png").read_bytes()
    assert placed.is_symlink() == (link == "symlink")
    if link == "hardlink":
        assert os.path.samefile(placed, src / "images" / "a.png")
    # writing again over the same output is fine, and never replaces a file with a link to itself
    write_yolo(read_yolo(src), tmp_path / "out", images_dir=src / "images", link=link)
    assert placed.read_bytes() == (src / "images" / "a.png").read_bytes()


def test_missing_image_file_raises(tmp_path):
    ds = _tiny_dataset([{"id": 1, "file_name": "nope.jpg", "width": 10, "height": 10}])
    with pytest.raises(InputError, match="nope.jpg: image file not found"):
        write_yolo(ds, tmp_path / "out", images_dir=tmp_path)


def test_bad_link_and_output_over_input(tmp_path):
    src = make_folder(tmp_path / "y")
    with pytest.raises(UsageError):
        write_yolo(read_yolo(src), tmp_path / "out", link="move")
    with pytest.raises(UsageError):
        write_yolo(read_yolo(src), src)


# -- the shared COCO-LT train set ------------------------------------------------------


@pytest.fixture(scope="module")
def coco_round_trip(tmp_path_factory):
    """COCO-LT train -> YOLO (images symlinked) -> COCO."""
    original = load_dataset(TRAIN_JSON)
    out = tmp_path_factory.mktemp("yolo") / "coco-lt"
    summary = write_yolo(original, out, images_dir=TRAIN_IMAGES, link="symlink")
    return original, summary, read_yolo(out)


def _by_file_name(ds: Dataset, *, crowd: bool = False) -> dict:
    names = {im["id"]: im["file_name"] for im in ds.images}
    out = defaultdict(list)
    for a in ds.annotations:
        if crowd or not a.get("iscrowd", 0):
            out[names[a["image_id"]]].append(a)
    return out


@needs_shared
def test_coco_yolo_coco_keeps_names_and_counts(coco_round_trip):
    original, summary, back = coco_round_trip
    assert [c["name"] for c in back.categories] == [c["name"] for c in original.categories]
    assert [c["id"] for c in back.categories] == list(range(len(original.categories)))
    assert sorted(im["file_name"] for im in back.images) == sorted(im["file_name"] for im in original.images)
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in original.images}
    assert all(sizes[im["file_name"]] == (im["width"], im["height"]) for im in back.images)
    cat_name = {c["id"]: c["name"] for c in original.categories}
    crowd = sum(bool(a.get("iscrowd", 0)) for a in original.annotations)
    assert crowd > 0 and summary["skipped_crowd"] == crowd
    want = Counter(cat_name[a["category_id"]] for a in original.annotations if not a.get("iscrowd", 0))
    got = Counter(c["name"] for a in back.annotations for c in [back.categories[a["category_id"]]])
    assert got == want and summary["objects"] == sum(want.values())
    assert not back.skipped


@needs_shared
def test_coco_yolo_coco_keeps_geometry(coco_round_trip):
    original, _, back = coco_round_trip
    sizes = {im["file_name"]: (im["height"], im["width"]) for im in original.images}
    before, after = _by_file_name(original), _by_file_name(back)
    singles = multis = 0
    for name, anns in before.items():
        h, w = sizes[name]
        assert len(after[name]) == len(anns)
        for a, b in zip(anns, after[name]):
            if len(a["segmentation"]) == 1:
                diff = np.abs(np.asarray(a["segmentation"][0]) - np.asarray(b["segmentation"][0]))
                assert diff.max() <= 1.0, (name, a["id"])
                singles += 1
            else:
                m1, m2 = geometry.decode(a["segmentation"], h, w), geometry.decode(b["segmentation"], h, w)
                iou = (m1 & m2).sum() / (m1 | m2).sum()
                assert iou > 0.95, (name, a["id"], iou)
                multis += 1
    assert singles > 1000 and multis > 100


def test_a_resampled_file_exports_each_repeat_under_its_own_name_as_a_link(tmp_path, demo_train_path,
                                                                           demo_train_images):
    """`ltaug resample -o` repeats images (same file name, new ids): each repeat gets its own label
    file and image name (STEM_repK), the image a hard link to the first copy; reading the folder back
    gives every repeat with its objects. (ultralytics' check_det_dataset and verify_image_label accept
    this folder: checked by hand in a throwaway venv, 90 images, 0 corrupt.)"""
    from ltaug.api import resample

    rs = resample(demo_train_path, "rfs", threshold=0.3, seed=0).dataset
    names = Counter(im["file_name"] for im in rs.images)
    assert max(names.values()) > 1
    with pytest.raises(UsageError, match="pass --images DIR"):
        write_yolo(rs, tmp_path / "labels_only")
    out = tmp_path / "yolo"
    summary = write_yolo(rs, out, images_dir=demo_train_images, link="copy")
    assert summary["images_copied"] == len(names) and summary["repeats_hardlinked"] == len(rs.images) - len(names)
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert len(labels) == len(rs.images)
    for name, n in names.items():
        stem, suffix = name.rsplit(".", 1)
        first = out / "images" / name
        for k in range(1, n):
            repeat = out / "images" / f"{stem}_rep{k}.{suffix}"
            assert os.path.samefile(first, repeat)  # a link, not a copy
            assert (out / "labels" / f"{stem}_rep{k}.txt").read_text() == (out / "labels" / f"{stem}.txt").read_text()
    back = read_yolo(out)
    assert len(back.images) == len(rs.images)
    assert len(back.annotations) == sum(not a.get("iscrowd") for a in rs.annotations)


def test_train_and_val_export_together_and_read_back_by_split(tmp_path, demo_train_path, demo_train_images):
    from ltaug.api import convert

    val_path = demo_train_path.parent / "val.json"
    val_images = demo_train_images.parent / "val"
    out = tmp_path / "yolo"
    r = convert(demo_train_path, out, images=demo_train_images, val=val_path, val_images=val_images)
    config = yaml.safe_load((out / "data.yaml").read_text())
    assert (config["train"], config["val"]) == ("images/train", "images/val")
    train, val = load_dataset(demo_train_path), load_dataset(val_path)
    for split, ds in (("train", train), ("val", val)):
        back = read_yolo(out, split=split)
        assert len(back.images) == len(ds.images) == len(list((out / "labels" / split).iterdir()))
        assert len(back.annotations) == sum(not a.get("iscrowd") for a in ds.annotations)
    assert r.yolo["val"]["images"] == len(val.images)
    other = json.loads(val_path.read_text())
    other["categories"][0]["name"] = "not a person"
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(InputError, match="name their classes differently .*'person' vs 'not a person'"):
        convert(demo_train_path, tmp_path / "y2", val=tmp_path / "other.json")
    with pytest.raises(SpecError, match="is for a YOLO output"):
        convert(demo_train_path, tmp_path / "x.json", val=val_path)
