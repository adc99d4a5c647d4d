"""YOLO folders as they come (ltaug.io.yolo): dirty but loadable (fine, warning, fixed) and broken
(error), each made from the bundled demo data's YOLO export (``ltaug convert --to yolo``) by
mutating labels, moving folders or rewriting data.yaml, and held to the policy table."""
from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ltaug import load_dataset
from ltaug.api import class_stats, convert
from ltaug.cli.main import main
from ltaug.errors import InputError, SpecError
from ltaug.io.policy import KINDS
from ltaug.io.yolo import read_yolo

STEM = "000000000071"  # the first image (id 1): 16 polygons
N_STEM = 16
LONE = "000000000636"  # an image with one object


# -- the demo export and its mutations -------------------------------------------------


@pytest.fixture(scope="module")
def export(tmp_path_factory, demo_train_path, demo_train_images) -> Path:
    out = tmp_path_factory.mktemp("demo-yolo") / "yolo"
    convert(demo_train_path, out, to="yolo", images=demo_train_images)
    return out


@pytest.fixture(scope="module")
def base(export):
    """The export read as it was written: the reference every mutation is compared with."""
    ds = read_yolo(export)
    assert not ds.findings and not ds.skipped and len(ds.images) == 30
    return ds


@pytest.fixture
def folder(export, tmp_path) -> Path:
    """A copy of the export whose data.yaml's path names the copy, as an export there would."""
    dst = tmp_path / "yolo"
    shutil.copytree(export, dst)
    set_yaml(dst, path=str(dst))
    return dst


def set_yaml(root: Path, name: str = "data.yaml", **changes) -> dict:
    """Rewrite data.yaml with ``changes`` (a value None removes the key)."""
    config = yaml.safe_load((root / name).read_text())
    for key, value in changes.items():
        config.pop(key, None) if value is None else config.__setitem__(key, value)
    (root / name).write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def label(root: Path, stem: str = STEM, sub: str = "labels") -> Path:
    return root / sub / f"{stem}.txt"


def lines(root: Path, stem: str = STEM) -> list[str]:
    return label(root, stem).read_text().splitlines()


def set_line(root: Path, lineno: int, text: str, stem: str = STEM) -> None:
    old = lines(root, stem)
    old[lineno - 1] = text
    label(root, stem).write_text("".join(f"{ln}\n" for ln in old))


def kinds(ds) -> Counter:
    return Counter((f.kind, f.action) for f in ds.findings)


def by_image(ds) -> dict[str, list]:
    names = {im["id"]: im["file_name"] for im in ds.images}
    out: dict[str, list] = {name: [] for name in names.values()}
    for a in ds.annotations:
        out[names[a["image_id"]]].append((a["category_id"], a["bbox"]))
    return out


def make_gapped(root: Path) -> dict[int, int]:
    """Relabel the export with COCO's own ids (1..90 for the demo's 66 classes), names a gapped
    mapping, as a YOLO folder made by a COCO tool has them; returns new id -> COCO id."""
    config = yaml.safe_load((root / "data.yaml").read_text())
    coco = {new: old for old, new in config.pop("ltaug_id_map").items()}
    config["names"] = {coco[k]: v for k, v in config["names"].items()}
    config.pop("nc")
    (root / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for path in (root / "labels").glob("*.txt"):
        text = "".join(f"{coco[int(ln.split()[0])]} {ln.split(' ', 1)[1]}\n" for ln in path.read_text().splitlines())
        path.write_text(text)
    return coco


def make_stale(root: Path, layout: str = "flat") -> None:
    """data.yaml as the machine that made it had it: an absolute path there and split folders
    (train2017) that are not here."""
    set_yaml(root, path="/content/datasets/coco-demo", train="images/train2017", val="images/val2017")


# -- fine: not a problem, read as ultralytics reads it, nothing recorded ---------------------


def test_the_policy_table_holds_every_yolo_kind():
    yolo = {k.name: k.severity for k in KINDS.values() if k.source == "yolo"}
    assert yolo == {
        "non-numeric": "error", "bad-class-id": "error", "unknown-class": "error", "bad-coordinate-count": "error",
        "coords-outside-image": "error", "degenerate-shape": "error", "unreadable-label-file": "error",
        "coords-slightly-outside": "warning", "label-without-image": "warning", "stale-split-path": "warning",
        "image-without-label": "fine", "empty-label-file": "fine", "crlf-line-endings": "fine",
        "byte-order-mark": "fine", "gapped-class-ids": "fine"}
    assert KINDS["unreadable-image"].source == "image"  # declared once, by ltaug.io.imagecheck
    assert KINDS["coords-outside-image"].fix and "ultralytics" in KINDS["coords-outside-image"].what


def test_crlf_line_endings_read_as_lf(folder, base):
    for path in (folder / "labels").glob("*.txt"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert b"\r\n" in label(folder).read_bytes()
    ds = read_yolo(folder)
    assert ds.data == base.data and not ds.findings and not ds.skipped


def test_byte_order_mark_in_labels_and_data_yaml(folder, base):
    for path in (label(folder), folder / "data.yaml"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    ds = read_yolo(folder)
    assert ds.data == base.data and not ds.findings


@pytest.mark.parametrize("how", ["empty", "missing"])
def test_empty_or_missing_label_file_is_a_background_image(folder, base, how):
    label(folder).write_text("") if how == "empty" else label(folder).unlink()
    ds = read_yolo(folder)
    got, want = by_image(ds), by_image(base)
    assert got[f"{STEM}.jpg"] == [] and len(want[f"{STEM}.jpg"]) == N_STEM
    assert all(got[k] == v for k, v in want.items() if k != f"{STEM}.jpg")
    assert len(ds.images) == 30 and not ds.findings and not ds.skipped


def test_names_as_a_list(folder, base):
    config = yaml.safe_load((folder / "data.yaml").read_text())
    set_yaml(folder, names=[config["names"][i] for i in range(len(config["names"]))])
    assert isinstance(yaml.safe_load((folder / "data.yaml").read_text())["names"], list)
    ds = read_yolo(folder)
    assert ds.categories == base.categories and ds.annotations == base.annotations


def test_gapped_names_are_read_with_their_ids(folder, base, demo_train_path):
    make_gapped(folder)
    ds = read_yolo(folder)
    coco = json.loads(demo_train_path.read_text())
    assert [(c["id"], c["name"]) for c in ds.categories] == [(c["id"], c["name"]) for c in coco["categories"]]
    assert max(c["id"] for c in ds.categories) == 90 and len(ds.categories) == 66
    name = {c["id"]: c["name"] for c in ds.categories}
    base_name = {c["id"]: c["name"] for c in base.categories}
    assert Counter(name[a["category_id"]] for a in ds.annotations) == \
        Counter(base_name[a["category_id"]] for a in base.annotations)
    assert not ds.findings


def test_roboflow_layout_with_relative_entries(folder, base):
    """Roboflow's data.yaml says train: ../train/images beside train/images: ultralytics' own rule
    (try it without ../) finds it, so nothing is wrong."""
    (folder / "train").mkdir()
    (folder / "images").rename(folder / "train" / "images")
    (folder / "labels").rename(folder / "train" / "labels")
    set_yaml(folder, path=None, train="../train/images", val="../valid/images")
    ds = read_yolo(folder)
    assert ds.annotations == base.annotations and not ds.findings


def test_yaml_passed_by_path_whatever_its_name(folder, base, capsys):
    (folder / "data.yaml").rename(folder / "custom.yml")
    ds = load_dataset(folder / "custom.yml")
    assert ds.data == base.data
    assert main(["stats", str(folder / "custom.yml")]) == 0
    assert main(["validate", str(folder / "custom.yml")]) == 0
    assert "malformed JSON" not in capsys.readouterr().err
    assert read_yolo(folder).data == base.data  # the folder's only YAML file, as ultralytics finds it


def test_validation_key_stands_for_val(folder, base):
    set_yaml(folder, val=None, validation="images")
    assert read_yolo(folder, split="val").annotations == base.annotations


def test_nc_without_names(folder, base):
    set_yaml(folder, names=None, nc=66)
    ds = read_yolo(folder)
    assert [c["name"] for c in ds.categories[:2]] == ["class_0", "class_1"] and len(ds.categories) == 66
    assert ds.annotations == base.annotations


def test_labels_beside_the_images(folder, base):
    """A folder with no 'images' component: ultralytics looks for the labels beside the images."""
    (folder / "images").rename(folder / "pics")
    for path in (folder / "labels").glob("*.txt"):
        path.rename(folder / "pics" / path.name)
    set_yaml(folder, train="pics", val="pics")
    ds = read_yolo(folder)
    assert ds.annotations == base.annotations and not ds.findings


def test_images_given_instead_of_data_yaml_folder(folder, base):
    make_stale(folder)
    ds = load_dataset(folder, images=folder / "images")
    assert ds.data == base.data and not ds.findings


# -- warnings: processed the way ultralytics does, recorded, one log line per kind -----------


def test_label_without_image_is_a_warning(folder, base):
    (folder / "images" / f"{STEM}.jpg").unlink()
    ds = read_yolo(folder)
    (f,) = ds.findings
    assert (f.kind, f.action, f.where) == ("label-without-image", "warned", f"labels/{STEM}.txt")
    assert "ultralytics" in f.message and ds.skipped == Counter({"label-without-image": 1})
    assert len(ds.images) == 29 and len(ds.annotations) == len(base.annotations) - N_STEM


def test_labels_without_images_are_logged_once(folder, caplog):
    stems = sorted(p.stem for p in (folder / "images").glob("*.jpg"))[:5]
    for stem in stems:
        (folder / "images" / f"{stem}.jpg").unlink()
    with caplog.at_level(logging.INFO, logger="ltaug"):
        class_stats(folder)
    records = [r for r in caplog.records if "label-without-image" in r.getMessage() and r.levelno >= logging.WARNING]
    assert len(records) == 1
    assert "5 record(s)" in records[0].getMessage() and f"labels/{stems[0]}.txt" in records[0].getMessage()


def test_polygon_slightly_outside_is_clipped_with_a_warning(folder, base):
    tokens = lines(folder)[1].split()
    set_line(folder, 2, " ".join([tokens[0], "-0.004000", *tokens[2:]]))
    ds = read_yolo(folder)
    (f,) = ds.findings
    assert (f.kind, f.action, f.where) == ("coords-slightly-outside", "warned", f"labels/{STEM}.txt:2")
    assert f.before["line"] == " ".join([tokens[0], "-0.004000", *tokens[2:]])
    assert f.after["line"] == " ".join([tokens[0], "0.000000", *tokens[2:]])
    ann = next(a for a in ds.annotations if a["id"] == f.annotation_id)
    assert ann["image_id"] == f.image_id == 1 and ann["segmentation"][0][0] == 0.0
    assert len(ds.annotations) == len(base.annotations) and not ds.skipped


def test_box_slightly_outside_is_clipped_with_a_warning(folder):
    label(folder, LONE).write_text("0 0.998000 0.500000 0.010000 0.200000\n")
    ds = read_yolo(folder)
    (f,) = ds.findings
    assert (f.kind, f.action, f.where) == ("coords-slightly-outside", "warned", f"labels/{LONE}.txt:1")
    assert f.after == {"line": "0 0.996500 0.500000 0.007000 0.200000"}
    ann = next(a for a in ds.annotations if a["id"] == f.annotation_id)
    image = next(im for im in ds.images if im["id"] == ann["image_id"])
    assert ann["bbox"][0] + ann["bbox"][2] == pytest.approx(image["width"])  # ends at the right edge
    assert ann["bbox"][2] == pytest.approx(0.007 * image["width"]) and "segmentation" not in ann


def test_stale_split_entry_falls_back_to_images_with_one_warning(folder, base, capsys, tmp_path):
    set_yaml(folder, train="images/train2017")
    ds = read_yolo(folder)
    (f,) = ds.findings
    assert (f.kind, f.action) == ("stale-split-path", "warned")
    assert f.where == "data.yaml: 'train' read from images/" and f.after == {"folder": str(folder / "images")}
    assert f"'train: images/train2017' not found at {folder / 'images' / 'train2017'}" in f.message
    assert ds.data == base.data
    assert main(["convert", str(folder), "-o", str(tmp_path / "out.json")]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "stale-split-path" in warnings[0] and f"{folder / 'images'} instead" in warnings[0]


def test_absolute_path_from_another_machine(folder, base):
    set_yaml(folder, path="/content/datasets/coco-demo")
    ds = read_yolo(folder)
    (f,) = ds.findings
    assert f.kind == "stale-split-path" and f.before == {"folder": "/content/datasets/coco-demo/images"}
    assert f.message.startswith("path '/content/datasets/coco-demo' not found: read 'train: images' beside data.yaml")
    assert ds.data == base.data


def test_absolute_split_entries_of_a_roboflow_export(folder, base):
    (folder / "train").mkdir()
    (folder / "images").rename(folder / "train" / "images")
    (folder / "labels").rename(folder / "train" / "labels")
    set_yaml(folder, path=None, train="/content/coco-demo-1/train/images", val="/content/coco-demo-1/valid/images")
    ds = read_yolo(folder)
    (f,) = ds.findings
    assert f.kind == "stale-split-path" and f.where == "data.yaml: 'train' read from train/images/"
    assert ds.annotations == base.annotations


def test_copied_folder_whose_path_names_the_original(folder, export, base):
    set_yaml(folder, path=str(export))  # what a plain copy of the export says
    label(folder).write_text("")  # edited in the copy only
    ds = read_yolo(folder)
    (f,) = ds.findings
    assert f.kind == "stale-split-path" and f"ultralytics would read {export / 'images'}" in f.message
    assert len(ds.annotations) == len(base.annotations) - N_STEM  # the copy was read, not the original


def test_stale_split_layout_falls_back_split_by_split(folder, base):
    images, labels = folder / "images", folder / "labels"
    val = sorted(images.glob("*.jpg"))[:4]
    (images / "train").mkdir(), (images / "val").mkdir(), (labels / "train").mkdir(), (labels / "val").mkdir()
    for p in sorted(images.glob("*.jpg")):
        split = "val" if p in val else "train"
        p.rename(images / split / p.name)
        (labels / f"{p.stem}.txt").rename(labels / split / f"{p.stem}.txt")
    make_stale(folder)
    train, valid = read_yolo(folder), read_yolo(folder, split="val")
    assert (len(train.images), len(valid.images)) == (26, 4)
    assert [f.where for f in train.findings] == ["data.yaml: 'train' read from images/train/"]
    assert [f.where for f in valid.findings] == ["data.yaml: 'val' read from images/val/"]
    assert "(path '/content/datasets/coco-demo' not found)" in train.findings[0].message


def test_strict_makes_warnings_errors(folder):
    tokens = lines(folder)[1].split()
    set_line(folder, 2, " ".join([tokens[0], "1.005000", *tokens[2:]]))
    with pytest.raises(InputError, match=r"000000000071\.txt:2: coordinates within 0\.01 .*made an error by --strict"):
        load_dataset(folder, strict=True)
    ds = read_yolo(folder, strict=True, on_error="skip")
    assert kinds(ds) == Counter({("coords-slightly-outside", "skipped"): 1})
    assert kinds(read_yolo(folder, strict=True, on_error="fix")) == Counter({("coords-slightly-outside", "fixed"): 1})
    set_yaml(folder, train="images/train2017")
    with pytest.raises(InputError, match=rf"^{folder / 'data.yaml'}: 'train: images/train2017' not found at .* "
                                         r"\(stale-split-path: a warning, made an error by --strict\)$"):
        read_yolo(folder, strict=True)


# -- fixed (on_error="fix"): the record before and after -----------------------------------


def test_polygon_outside_is_clipped_under_fix(folder, base):
    tokens = lines(folder)[1].split()
    set_line(folder, 2, " ".join([tokens[0], "1.300000", *tokens[2:]]))
    ds = read_yolo(folder, on_error="fix")
    (f,) = ds.findings
    assert (f.kind, f.action, f.where, f.image_id) == ("coords-outside-image", "fixed", f"labels/{STEM}.txt:2", 1)
    assert f.before["line"] == " ".join([tokens[0], "1.300000", *tokens[2:]])
    assert f.after["line"] == " ".join([tokens[0], "1.000000", *tokens[2:]])
    assert f.message == "coordinate 1.3 is outside [0, 1] (normalised): clipped to [0, 1]"
    ann = next(a for a in ds.annotations if a["id"] == f.annotation_id)
    width = ds.images[0]["width"]
    assert ann["segmentation"][0][0] == float(width) and len(ds.annotations) == len(base.annotations)


def test_box_outside_is_clipped_under_fix(folder):
    label(folder, LONE).write_text("0 0.950000 0.500000 0.200000 0.400000\n")
    ds = read_yolo(folder, on_error="fix")
    (f,) = ds.findings
    assert (f.kind, f.action) == ("coords-outside-image", "fixed")
    assert (f.before, f.after) == ({"line": "0 0.950000 0.500000 0.200000 0.400000"},
                                   {"line": "0 0.925000 0.500000 0.150000 0.400000"})


def test_polygon_wholly_outside_is_dropped_under_fix(folder, base):
    tokens = lines(folder)[1].split()
    set_line(folder, 2, " ".join([tokens[0], *(("1.500000" if i % 2 == 0 else t) for i, t in enumerate(tokens[1:]))]))
    ds = read_yolo(folder, on_error="fix")
    (f,) = ds.findings
    assert (f.kind, f.action, f.after) == ("coords-outside-image", "skipped", None)
    assert f.message == "polygon has zero width or height after clipping"
    assert len(ds.annotations) == len(base.annotations) - 1 and ds.skipped == Counter({"coords-outside-image": 1})


def test_fix_lists_what_it_did_in_fixes_json(folder, tmp_path):
    tokens = lines(folder)[1].split()
    set_line(folder, 2, " ".join([tokens[0], "1.300000", *tokens[2:]]))
    set_line(folder, 3, "66 " + lines(folder)[2].split(" ", 1)[1])
    out = tmp_path / "fixed.json"
    r = convert(folder, out, on_error="fix")
    doc = json.loads((tmp_path / "fixed.fixes.json").read_text())
    assert (doc["fixed"], doc["skipped"]) == (1, 1)
    assert [(x["kind"], x["action"], x["where"]) for x in doc["records"]] == [
        ("coords-outside-image", "fixed", f"labels/{STEM}.txt:2"), ("unknown-class", "skipped", f"labels/{STEM}.txt:3")]
    assert doc["records"][0]["after"] == {"line": " ".join([tokens[0], "1.000000", *tokens[2:]])}
    assert len(r.dataset.annotations) == len(load_dataset(out).annotations)


# -- errors: refused naming file and line; skip drops the line; fix repairs or drops it ------

BAD = [  # (kind, line 2 rewritten from its tokens, message)
    ("non-numeric", lambda t: [t[0], t[1], "zero", *t[3:]], "'zero' is not a number"),
    ("non-numeric", lambda t: [t[0], "nan", *t[2:]], "non-finite value"),
    ("bad-class-id", lambda t: ["1.5", *t[1:]], "class '1.5' is not a non-negative integer"),
    ("bad-class-id", lambda t: ["-1", *t[1:]], "class '-1' is not a non-negative integer"),
    ("unknown-class", lambda t: ["66", *t[1:]], "class 66 is not among data.yaml names (ids 0-65)"),
    ("bad-coordinate-count", lambda t: t[:-1], "29 coordinate values: expected 4 (cx cy w h) or an even number"),
    ("bad-coordinate-count", lambda t: t[:3], "2 coordinate values"),
    ("coords-outside-image", lambda t: [t[0], "1.300000", *t[2:]], "coordinate 1.3 is outside [0, 1] (normalised)"),
    ("degenerate-shape", lambda t: [t[0], "0.1", "0.5", "0.2", "0.5", "0.3", "0.5"], "polygon has zero width"),
    ("degenerate-shape", lambda t: [t[0], "0.5", "0.5", "0", "0.2"], "box with width 0 and height 0.2"),
]
BAD_IDS = [f"{kind}-{i}" for i, (kind, _, _) in enumerate(BAD)]


def _break(folder: Path, make) -> str:
    tokens = lines(folder)[1].split()
    assert len(tokens) == 31  # the line the cases were written for: class and 15 points
    text = " ".join(make(tokens))
    set_line(folder, 2, text)
    return text


@pytest.mark.parametrize("kind,make,message", BAD, ids=BAD_IDS)
def test_bad_line_is_refused_naming_file_and_line(folder, kind, make, message):
    _break(folder, make)
    with pytest.raises(InputError) as exc:
        read_yolo(folder)
    text = str(exc.value)
    assert text.startswith(f"{label(folder)}:2: {message}") and f"({kind}; --on-error " in text
    assert "\n" not in text and ("fix: coordinates clipped" in text) == (kind == "coords-outside-image")


@pytest.mark.parametrize("kind,make,message", BAD, ids=BAD_IDS)
def test_bad_line_is_dropped_under_skip(folder, base, kind, make, message):
    text = _break(folder, make)
    ds = read_yolo(folder, on_error="skip")
    (f,) = ds.findings
    assert (f.kind, f.action, f.where, f.before, f.image_id) == (kind, "skipped", f"labels/{STEM}.txt:2",
                                                                 {"line": text}, 1)
    assert f.message.startswith(message) and ds.skipped == Counter({kind: 1})
    assert len(ds.annotations) == len(base.annotations) - 1 and len(ds.images) == 30


@pytest.mark.parametrize("kind,make,message", BAD, ids=BAD_IDS)
def test_bad_line_under_fix_is_repaired_or_dropped(folder, base, kind, make, message):
    _break(folder, make)
    ds = read_yolo(folder, on_error="fix")
    (f,) = ds.findings
    fixable = KINDS[kind].fix is not None
    assert (f.kind, f.action) == (kind, "fixed" if fixable else "skipped")
    assert len(ds.annotations) == len(base.annotations) - (not fixable)


def test_unreadable_image(folder, base):
    (folder / "images" / f"{STEM}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(InputError, match=rf"{STEM}\.jpg: cannot be read as an image .*unreadable-image; "
                                         r"--on-error skip drops the image"):
        read_yolo(folder)
    ds = read_yolo(folder, on_error="skip")
    assert kinds(ds) == Counter({("unreadable-image", "skipped"): 1}) and ds.findings[0].where == f"images/{STEM}.jpg"
    assert len(ds.images) == 29 and len(ds.annotations) == len(base.annotations) - N_STEM


def test_unreadable_label_file(folder, base):
    label(folder).write_bytes(label(folder).read_bytes().replace(b"0.7", b"0\xe97", 1))
    with pytest.raises(InputError, match=rf"{STEM}\.txt: cannot read label file \(not UTF-8 text: byte 0xe9 "):
        read_yolo(folder)
    ds = read_yolo(folder, on_error="fix")  # not fixable: the image goes, as ultralytics drops it
    assert kinds(ds) == Counter({("unreadable-label-file", "skipped"): 1})
    assert len(ds.images) == 29 and len(ds.annotations) == len(base.annotations) - N_STEM


def test_stale_split_with_no_images_anywhere_names_what_was_tried(folder):
    (folder / "images").rename(folder / "elsewhere")
    set_yaml(folder, train="images/train2017")
    with pytest.raises(InputError) as exc:
        read_yolo(folder)
    text = str(exc.value)
    assert f"'train: images/train2017': image folder {folder / 'images' / 'train2017'} not found" in text
    assert "nor images in images/train/, train/images/, images/; pass the image folder (--images)" in text
    assert read_yolo(folder, images=folder / "elsewhere").findings == []


def test_empty_or_missing_split_is_a_usage_error(folder, tmp_path, capsys):
    with pytest.raises(SpecError, match=r"^split is empty: name the data\.yaml entry to read \(.* has: train, val\)"):
        read_yolo(folder, split="")
    assert main(["convert", str(folder), "--split", "", "-o", str(tmp_path / "x.json")]) == 2
    assert "error: --split is empty: name the data.yaml entry to read" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"data\.yaml: no 'test' entry \(it has: train, val\)$"):
        read_yolo(folder, split="test")


def test_malformed_yaml_passed_by_path_is_a_yaml_error(folder, capsys):
    bad = folder / "custom.yaml"
    bad.write_text("names: [person, bicycle\ntrain: images\n")
    with pytest.raises(InputError, match=r"custom\.yaml: cannot read YAML: "):
        load_dataset(bad)
    assert main(["stats", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "cannot read YAML" in err and "JSON" not in err


def test_several_yaml_files_and_no_data_yaml_is_refused(folder):
    (folder / "data.yaml").rename(folder / "a.yaml")
    shutil.copy(folder / "a.yaml", folder / "b.yaml")
    with pytest.raises(InputError, match=r"data\.yaml: file not found, and .* holds 2 other YAML files \(a\.yaml, "
                                         r"b\.yaml\); pass the one to read"):
        read_yolo(folder)


def test_images_sharing_a_label_file_are_refused(folder):
    Image.open(folder / "images" / f"{STEM}.jpg").save(folder / "images" / f"{STEM}.png")
    with pytest.raises(InputError, match=rf"would share the label file {STEM}\.txt"):
        read_yolo(folder, on_error="fix")


def test_keep_ids_refuses_ids_that_would_need_more_placeholders_than_classes(folder, tmp_path, capsys):
    ds = read_yolo(folder)
    far = ds.replace(categories=[{**c, "id": c["id"] * 1000, "yolo_id": c["id"] * 1000} for c in ds.categories],
                     annotations=[{**a, "category_id": a["category_id"] * 1000} for a in ds.annotations])
    with pytest.raises(SpecError, match=r"^keep_ids cannot keep class ids 0-65000 of 66 classes: .* 64935 of them "
                                        r"placeholders; leave it off to write 0\.\.65$"):
        convert(far, tmp_path / "out", keep_ids=True)
    assert not (tmp_path / "out").exists()


# -- a stale, gapped folder round trip, with no edits ------------------------------------------


def test_stale_gapped_folder_to_coco_and_back_gives_ids_0_to_k_minus_1(folder, export, base, tmp_path, capsys):
    coco_ids = make_gapped(folder)
    make_stale(folder)
    as_json, again = tmp_path / "coco.json", tmp_path / "again"
    assert main(["convert", str(folder / "data.yaml"), "-o", str(as_json)]) == 0
    assert main(["convert", str(as_json), "--images", str(folder / "images"), "-o", str(again)]) == 0
    err = capsys.readouterr().err
    assert err.count("stale-split-path") == 1 and "class ids renumbered to 0..65" in err and "1->0, 2->1" in err
    written = yaml.safe_load((again / "data.yaml").read_text())
    assert list(written["names"]) == list(range(66)) and written["nc"] == 66  # what ultralytics requires
    assert written["ltaug_id_map"] == {coco: new for new, coco in coco_ids.items()}
    assert set(written) >= {"path", "train", "val"} and isinstance(written["path"], str)
    back = read_yolo(again)
    assert back.categories == base.categories and not back.findings
    assert len(back.annotations) == len(base.annotations)
    for path in sorted((export / "labels").glob("*.txt")):  # every class id and vertex as first written
        assert lines(again, path.stem) == lines(export, path.stem), path.name


def test_validate_shows_a_yolo_folders_warnings_and_errors(folder, capsys):
    set_yaml(folder, train="images/train2017")
    label(folder, LONE).write_text("0 0.998000 0.500000 0.010000 0.200000\n0 1.5 0.5 0.1 0.1\n")
    assert main(["validate", str(folder), "--json"]) == 1  # the line 1.5 outside is an error
    problems = json.loads(capsys.readouterr().out)["problems"]
    got = {(p["kind"], p["severity"]) for p in problems}
    assert got == {("stale-split-path", "warning"), ("coords-slightly-outside", "warning"),
                   ("coords-outside-image", "error")}, problems
    assert any(f"labels/{LONE}.txt:2" in p["message"] for p in problems if p["kind"] == "coords-outside-image")


def test_an_exif_rotated_photo_is_sized_upright_as_ultralytics_reads_it(folder):
    """A photo stored landscape with EXIF orientation 6 (shown portrait): its labels are normalised
    to the upright image (ultralytics' exif_size), so the record has the upright size."""
    from ltaug.io.imagecheck import read_header

    image = sorted((folder / "images").iterdir())[0]
    with Image.open(image) as im:
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(image, exif=exif.tobytes())
        stored = im.size
    assert read_header(image.read_bytes()).orientation == 6
    ds = read_yolo(folder)
    record = next(im for im in ds.images if im["file_name"] == image.name)
    assert (record["width"], record["height"]) == (stored[1], stored[0])
