"""paste --backgrounds: new images of pasted objects on background photos (ltaug.pixels.backgrounds)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DEMO

from ltaug import load_dataset, run_steps
from ltaug.errors import UsageError
from ltaug.io.geometry import decode
from ltaug.ops import Paste
from ltaug.pixels.backgrounds import fit_background

VAL_IMAGES = DEMO / "images" / "val"
VAL_JSON = DEMO / "annotations" / "val.json"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Four demo val photos as a folder of backgrounds (one in a sub-folder)."""
    root = tmp_path_factory.mktemp("backgrounds")
    names = sorted(p.name for p in VAL_IMAGES.iterdir())[:4]
    for i, name in enumerate(names):
        target = root / ("sub" if i == 3 else "") / name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(VAL_IMAGES / name, target)
    return root


def digests(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "run.json"}


def new_images(out: Path) -> tuple[dict, list[dict], dict]:
    doc = json.loads((out / "annotations.json").read_text())
    by: dict = {}
    for a in doc["annotations"]:
        by.setdefault(a["image_id"], []).append(a)
    return doc, [im for im in doc["images"] if im.get("ltaug", {}).get("op") == "paste"], by


def test_new_images_on_backgrounds_are_added_and_the_dataset_stays(tmp_path, folder, demo_train_path,
                                                                    demo_train_images):
    spec = Paste(backgrounds=str(folder), background_ratio=0.5, objects=3, rotate=10, seed=3)
    run_steps(demo_train_path, demo_train_images, tmp_path / "a", [spec], workers=1)
    doc, new, by = new_images(tmp_path / "a")
    source = load_dataset(demo_train_path)
    assert len(doc["images"]) == 30 + len(new) and 10 <= len(new) <= 15  # 0.5 x 30, less those with no room
    assert doc["images"][:30] == source.images  # the dataset's own images and annotations as they were
    assert [a for a in doc["annotations"] if a["image_id"] in {im["id"] for im in source.images}] == source.annotations
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")}
    used = set()
    for im in new:
        params = im["ltaug"]["params"]
        assert params["background"] in names and params["fit"] == "keep" and im["ltaug"]["source_image_ids"] == []
        used.add(params["background"])
        photo = cv2.imread(str(folder / params["background"]))
        out = cv2.imread(str(tmp_path / "a" / "images" / im["file_name"]))
        assert out.shape == photo.shape == (im["height"], im["width"], 3)
        anns = by[im["id"]]
        assert anns and all(a["ltaug"]["op"] == "paste" for a in anns)  # no annotation of its own: only pasted
        placed = {o["annotation_id"] for o in params["objects"]}
        assert len(anns) <= len(params["objects"]) and {a["ltaug"]["source_annotation_id"] for a in anns} <= placed
    assert used == names  # every background used (each as often as the others)
    run_steps(demo_train_path, demo_train_images, tmp_path / "b", [spec], workers=2)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")  # same bytes for any worker count


def test_annotated_backgrounds_keep_their_objects_and_the_rules_see_them(tmp_path, demo_train_path,
                                                                         demo_train_images):
    spec = Paste(backgrounds=str(VAL_IMAGES), background_annotations=str(VAL_JSON), background_ratio=0.5,
                 classes=["cup", "knife", "book"], inside="person", region="mask", margin=1, objects=3, seed=0)
    run_steps(demo_train_path, demo_train_images, tmp_path / "o", [spec], workers=1)
    doc, new, by = new_images(tmp_path / "o")
    val = load_dataset(VAL_JSON)
    person = next(c["id"] for c in doc["categories"] if c["name"] == "person")
    kernel = np.ones((3, 3), np.uint8)
    pasted = 0
    assert new
    for im in new:
        anns = by[im["id"]]
        own = [a for a in anns if a["ltaug"]["op"] == "background"]
        src = next(v for v in val.images if v["file_name"] == im["ltaug"]["params"]["background"])
        src_ids = {a["id"] for a in val.annotations if a["image_id"] == src["id"]}
        assert own and {a["ltaug"]["source_annotation_id"] for a in own} <= src_ids  # carried, traced to the file
        hosts = [a for a in own if a["category_id"] == person]
        for a in anns:
            if a["ltaug"]["op"] != "paste":
                continue
            pasted += 1
            o = next(o for o in im["ltaug"]["params"]["objects"] if o["annotation_id"] == a["ltaug"]["source_annotation_id"])
            x0, y0, x1, y1 = o["x"], o["y"], o["x"] + o["w"], o["y"] + o["h"]
            host_masks = [decode(v["segmentation"], im["height"], im["width"])
                          for v in val.annotations if v["id"] in {h["ltaug"]["source_annotation_id"] for h in hosts}]
            assert any(cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)[y0:y1, x0:x1].all()
                       for m in host_masks)
    assert pasted >= 5


def test_fits_resize_and_tile():
    img = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    tiled = fit_background(img, "tile", (70, 50))
    assert tiled.shape == (50, 70, 3) and np.array_equal(tiled[20:40, 30:60], img) and np.array_equal(tiled[:10, 60:], img[:10, :10])
    big = fit_background(img, "resize", (60, 60))
    assert big.shape == (60, 60, 3)  # covered (scaled by 3) and cut around the centre
    assert np.array_equal(big, cv2.resize(img, (90, 60), interpolation=cv2.INTER_LINEAR)[:, 15:75])
    assert fit_background(img, "keep", (1, 1)) is img


def test_resized_backgrounds_make_images_of_the_asked_size(tmp_path, folder, demo_train_path, demo_train_images):
    run_steps(demo_train_path, demo_train_images, tmp_path / "o",
              [Paste(backgrounds=str(folder), background_fit="resize", background_size=(320, 256), background_ratio=0.2)],
              workers=1)
    _, new, _ = new_images(tmp_path / "o")
    assert new and all((im["width"], im["height"]) == (320, 256) for im in new)
    assert all(cv2.imread(str(tmp_path / "o" / "images" / im["file_name"])).shape == (256, 320, 3) for im in new)


def test_budget_on_backgrounds_asks_the_deficits(tmp_path, folder, demo_train_path, demo_train_images):
    spec = Paste(backgrounds=str(folder), weighting="budget", target={"min_instances": 6, "max_factor": 3},
                 objects=4, background_ratio=0.3)
    result = run_steps(demo_train_path, demo_train_images, tmp_path / "o", [spec], workers=1)
    run = json.loads((tmp_path / "o" / "run.json").read_text())["steps_run"][0]
    asked = sum(c["asked"] for c in run["plan"]["classes"].values())
    assert asked > 9 * 4  # more than 9 new images (0.3 x 30) can take: the rest is counted, not silent
    assert run["plan"]["unplaced_budget"] > 0
    assert sum(c["missing"].get("too_few_images", 0) for c in run["plan"]["classes"].values()) == run["plan"]["unplaced_budget"]
    assert result.dataset.index.num_images <= 30 + 9


def test_lvis_input_gives_background_images_empty_lists(tmp_path, folder, demo_train_path, demo_train_images):
    from lvis import LVIS

    from ltaug.stats.frequency import to_lvis

    lvis = tmp_path / "lvis.json"
    to_lvis(load_dataset(demo_train_path), rare_max=2, common_max=5).save(lvis)
    run_steps(lvis, demo_train_images, tmp_path / "o", [Paste(backgrounds=str(folder), background_ratio=0.2)],
              workers=1)
    doc, new, _ = new_images(tmp_path / "o")
    assert new and all(im["neg_category_ids"] == [] and im["not_exhaustive_category_ids"] == [] for im in new)
    LVIS(str(tmp_path / "o" / "annotations.json"))  # lvis-api loads it


def test_bad_backgrounds_are_one_line(tmp_path, folder, demo_train_path, demo_train_images, capsys):
    from ltaug.cli.main import main

    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--backgrounds", str(empty)], "no background images"),
        (["--backgrounds", str(tmp_path / "nowhere")], "backgrounds folder not found"),
        (["--backgrounds", str(folder), "--background-annotations", str(VAL_JSON), "--background-fit", "tile"],
         "needs background_fit keep"),
        (["--background-annotations", str(VAL_JSON)], "is for backgrounds"),
        (["--backgrounds", str(folder), "--background-annotations", str(VAL_JSON)], "is not in the backgrounds folder"),
    ]
    for k, (flags, text) in enumerate(cases):
        code = main(["paste", str(demo_train_path), "--images", str(demo_train_images), "-o", str(tmp_path / f"o{k}"),
                     *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and text in err[0], (flags, err)
        assert not (tmp_path / f"o{k}").exists() and not (tmp_path / f".o{k}.partial").exists(), flags


def test_a_changed_background_is_refused_on_resume(tmp_path, folder, demo_train_path, demo_train_images):
    from ltaug.run import engine

    spec = Paste(backgrounds=str(folder))
    before = engine._fingerprints({}, [spec])["files"]
    assert set(before) == {str(p) for p in folder.rglob("*.jpg")}
    victim = sorted(folder.rglob("*.jpg"))[0]
    data = victim.read_bytes()
    try:
        victim.write_bytes(data + b"\0")
        after = engine._fingerprints({}, [spec])
        (tmp_path / "w").mkdir()
        (tmp_path / "w" / engine.INPUTS).write_text(json.dumps({"images": {}, "banks": {}, "files": before}))
        with pytest.raises(UsageError, match="file.*a step reads changed"):
            engine._check_inputs(tmp_path / "w", after)
    finally:
        victim.write_bytes(data)


def test_the_rare_case_example_runs_from_one_file(tmp_path):
    """examples/rare_case.yaml: resample, augment the repeats, paste the "defects" onto annotated
    backgrounds inside the "parts": one file, one archived COCO dataset."""
    from pycocotools.coco import COCO

    from ltaug.api import run_config

    res = run_config(DEMO.parent / "rare_case.yaml", tmp_path / "o", workers=1)
    resample, augment, paste = res.steps
    assert augment["images_written"] > 0 and paste["images_written"] > 0
    doc, new, by = new_images(tmp_path / "o")
    assert all(im["ltaug"]["params"]["background"] for im in new)
    names = {c["id"]: c["name"] for c in doc["categories"]}
    pasted = [a for im in new for a in by[im["id"]] if a["ltaug"]["op"] == "paste"]
    assert pasted and {names[a["category_id"]] for a in pasted} <= {"cup", "knife", "book"}
    augmented = [im for im in doc["images"] if im.get("ltaug", {}).get("op") == "augment"]
    drawn = [bool(im["ltaug"]["params"]["applied"]) for im in augmented]  # a few draw no transform at all
    assert augmented and sum(drawn) > len(drawn) / 2
    COCO(str(tmp_path / "o" / "annotations.json"))
    from ltaug.report.html import build_report

    page, _, _ = build_report(tmp_path / "o", samples=12)
    assert "on background " in page  # the samples name the background a new image was made on
    assert 'alt="blending modes"' in page and "(background " in page  # the blend grid drawn on a background


def test_scale_to_on_backgrounds_keeps_the_size_relative_to_the_reference_class(tmp_path, demo_train_path):
    """An object pasted on an annotated background is as large next to the background's people as
    it was next to the people of its source image (the dataset's mean where its source has none)."""
    import math

    from ltaug.pixels.backgrounds import iter_plan_backgrounds, read_backgrounds
    from ltaug.pixels.bank import Bank, build_bank
    from ltaug.pixels.placement import mean_areas

    demo = load_dataset(demo_train_path)
    build_bank(demo, DEMO / "images" / "train", tmp_path / "bank", workers=1, progress=False)
    bank = Bank(tmp_path / "bank")
    spec = Paste(backgrounds=str(VAL_IMAGES), background_annotations=str(VAL_JSON), background_ratio=0.5,
                 scale_to="person", scale=(1.0, 1.0), flip=False, max_overlap=1.0, objects=3, seed=0)
    recipes, _, _ = iter_plan_backgrounds(demo, bank, spec, read_backgrounds(VAL_IMAGES, demo, spec))
    person = next(c["id"] for c in demo.categories if c["name"] == "person")
    per_image, overall = mean_areas(demo.index, person)
    checked = 0
    for r in recipes:
        people = [a["bbox"][2] * a["bbox"][3] for a in r["annotations"]
                  if a["category_id"] == person and not a.get("iscrowd")]
        assert people  # backgrounds without the reference class get nothing
        for o in r["objects"]:
            rec = bank.record(o["row"])
            s = math.sqrt(float(np.mean(people)) / per_image.get(int(rec["image_id"]), overall))
            ow, oh = int(rec["width"]), int(rec["height"])
            if ow * s <= r["size"][0] and oh * s <= r["size"][1]:  # not shrunk to fit the image
                assert (o["w"], o["h"]) == (max(1, round(ow * s)), max(1, round(oh * s)))
                checked += 1
    assert checked >= 3
