"""``augment``: an albumentations pipeline file run on chosen images (repeats by default), with
boxes and masks moved by spatial transforms, the drawn parameters in each image's provenance, and
the same bytes for any worker count."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
from conftest import DEMO, ROOT
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from test_engine import same_tree

from ltaug import load_dataset
from ltaug.api import make_report, run_config, run_steps
from ltaug.cli.main import main
from ltaug.errors import InputError, UsageError
from ltaug.ops import Augment, Resample
from ltaug.pixels.augment import augment as augment_one
from ltaug.pixels.augment import build, image_seed, read_pipeline, seed_pipeline, spatial_names
from ltaug.run.engine import run_pipeline
from ltaug.stats.frequency import frequency_bins

IMAGES = DEMO / "images" / "train"
PHOTOMETRIC = ROOT / "examples" / "augment_photometric.yaml"


def _save(transforms, path: Path, data_format: str = "yaml") -> Path:
    A.save(A.Compose(transforms), str(path), data_format=data_format)
    return path


def _annotations(out: Path) -> dict:
    return json.loads((out / "annotations.json").read_text())


def _augmented(doc: dict) -> list[dict]:
    return [im for im in doc["images"] if im.get("ltaug", {}).get("op") == "augment"]


@pytest.fixture(scope="module")
def resampled_runs(tmp_path_factory, demo_train_path):
    """rfs then the example photometric pipeline, with 1 and with 2 workers; and rfs alone."""
    base = tmp_path_factory.mktemp("augment")
    steps = [Resample(method="rfs", threshold=0.1, seed=0), Augment(pipeline=str(PHOTOMETRIC), seed=1)]
    for workers in (1, 2):
        run_steps(demo_train_path, IMAGES, base / f"w{workers}", steps, workers=workers)
    run_steps(demo_train_path, IMAGES, base / "rfs", steps[:1], workers=1)
    return base


def test_same_bytes_with_one_and_two_workers(resampled_runs):
    assert same_tree(resampled_runs / "w1", resampled_runs / "w2")
    doc = _annotations(resampled_runs / "w1")
    assert _augmented(doc), "the demo's rfs makes repeats, so some images are augmented"


def test_repeats_are_augmented_by_default_and_annotations_stay_byte_identical(resampled_runs):
    out, rfs = _annotations(resampled_runs / "w1"), _annotations(resampled_runs / "rfs")
    repeats = {im["id"] for im in rfs["images"] if im["ltaug"]["repeat"] >= 1}
    augmented = _augmented(out)
    assert {im["id"] for im in augmented} == repeats and repeats
    for im in augmented:  # each names the repeat it was, its own seed, and a new file
        assert im["ltaug"]["params"]["before"]["repeat"] >= 1
        assert im["ltaug"]["params"]["image_seed"] == image_seed(1, im["id"])
        assert im["file_name"].startswith("ltaug/step1_augment_")
    by_id = {im["id"]: im for im in rfs["images"]}
    firsts = [im for im in out["images"] if im["id"] not in repeats]
    assert all(im == by_id[im["id"]] for im in firsts)  # first copies untouched
    # an image-only pipeline: every annotation as resample wrote it, byte for byte
    assert json.dumps(out["annotations"], sort_keys=True) == json.dumps(rfs["annotations"], sort_keys=True)
    # the repeats are no longer identical copies of their first copy
    differs = 0
    for im in augmented:
        first = by_id[im["ltaug"]["params"]["before"]["source_image_id"]]
        a = cv2.imread(str(resampled_runs / "w1" / "images" / im["file_name"])).astype(int)
        b = cv2.imread(str(resampled_runs / "w1" / "images" / first["file_name"])).astype(int)
        differs += np.abs(a - b).mean() > 1.0
    assert differs >= len(augmented) // 2


def test_provenance_holds_the_drawn_params_and_replays(resampled_runs):
    run = json.loads((resampled_runs / "w1" / "run.json").read_text())
    step = run["steps_run"][1]
    assert step["plan"]["pipeline"] == read_pipeline(str(PHOTOMETRIC)) and step["plan"]["spatial"] == []
    names = set()
    for im in _augmented(_annotations(resampled_runs / "w1")):
        for t in im["ltaug"]["params"]["applied"]:
            names.add(t["transform"])
            if t["transform"] == "RandomBrightnessContrast":
                assert 0.8 <= t["alpha"] <= 1.2 and isinstance(t["beta"], float)
            if t["transform"] == "GaussNoise":
                assert t["noise_map"]["array"] == [im["height"], im["width"], 3]
    assert {"RandomBrightnessContrast", "HueSaturationValue"} <= names
    # the record replays: A.load, seed_pipeline(image_seed), the RGB image -> the same pixels and draws
    ds = load_dataset(DEMO / "annotations" / "train.json")
    record = ds.images[0]
    bgr = cv2.imread(str(IMAGES / record["file_name"]))
    compose = build(read_pipeline(str(PHOTOMETRIC)))
    seed = image_seed(5, record["id"])
    img, kept, removed, applied = augment_one(bgr, record, [], compose, spatial_names(compose), seed)
    replay = A.load(str(PHOTOMETRIC), data_format="yaml")
    seed_pipeline(replay, seed)
    expected = replay(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))["image"]
    assert np.array_equal(img, cv2.cvtColor(expected, cv2.COLOR_RGB2BGR))
    again = augment_one(bgr, record, [], build(read_pipeline(str(PHOTOMETRIC))), spatial_names(compose), seed)
    assert np.array_equal(again[0], img) and again[3] == applied and kept == [] and removed == []


def test_bins_and_classes_narrow_the_images(tmp_path, demo_train_path):
    """--bins picks images with an object of the bins' classes (every demo image has a class seen in
    at most 2 images, so the 'c' bin of rare_max 2, common_max 5 is the one that leaves some out)."""
    ds = load_dataset(demo_train_path)
    ix = ds.index
    common = set(ix.category_ids[frequency_bins(ix.image_counts, rare_max=2, common_max=5) == "c"].tolist())
    with_common = {a["image_id"] for a in ds.annotations if a["category_id"] in common}
    assert 0 < len(with_common) < len(ds.images)
    res = run_steps(ds, IMAGES, tmp_path / "bins",
                    [Augment(pipeline=str(PHOTOMETRIC), select="all", bins=["c"], rare_max=2, common_max=5)], workers=1)
    assert {im["id"] for im in _augmented(_annotations(tmp_path / "bins"))} == with_common
    assert res.steps[0]["plan"]["category_ids"] == sorted(common)
    # repeats of those images only: rfs first; the bins counted on first copies are the input's
    run_steps(ds, IMAGES, tmp_path / "bins_repeats",
              [Resample(method="rfs", threshold=0.1), Augment(pipeline=str(PHOTOMETRIC), bins=["c"], rare_max=2,
                                                              common_max=5)], workers=1)
    out = _annotations(tmp_path / "bins_repeats")
    augmented = _augmented(out)
    assert augmented and all(im["ltaug"]["params"]["before"]["repeat"] >= 1 and
                             im["ltaug"]["params"]["before"]["source_image_id"] in with_common for im in augmented)
    left = [im for im in out["images"] if im.get("ltaug", {}).get("op") != "augment"]  # as resample wrote them
    assert any(im["ltaug"]["repeat"] >= 1 for im in left)  # repeats of other images stay copies
    assert not any(im["ltaug"]["repeat"] >= 1 and im["ltaug"]["source_image_id"] in with_common for im in left)
    name = ix.category_names[int(np.argmin(ix.image_counts + (ix.image_counts == 0) * 10**6))]
    cid = int(ix.category_ids[ix.category_names.index(name)])
    run_steps(ds, IMAGES, tmp_path / "named", [Augment(pipeline=str(PHOTOMETRIC), select="all", classes=[name])],
              workers=1)
    assert {im["id"] for im in _augmented(_annotations(tmp_path / "named"))} == \
        {a["image_id"] for a in ds.annotations if a["category_id"] == cid}


def _tiny_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """One 64 x 48 image with a polygon object, a box-only object and a crowd RLE region."""
    images = tmp_path / "images"
    images.mkdir()
    yy, xx = np.mgrid[0:48, 0:64]
    smooth = np.dstack([xx * 4, yy * 5, 255 - xx * 2]).astype(np.uint8)  # JPEG keeps gradients well
    cv2.imwrite(str(images / "a.png"), smooth)
    crowd = np.zeros((48, 64), np.uint8)
    crowd[30:40, 40:60] = 1
    rle = mask_utils.encode(np.asfortranarray(crowd))
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
           "categories": [{"id": 1, "name": "thing"}, {"id": 2, "name": "box"}],
           "annotations": [
               {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [4.0, 6.0, 16.0, 12.0], "area": 120.0,
                "segmentation": [[4.0, 6.0, 20.0, 6.0, 20.0, 18.0, 4.0, 12.0]]},
               {"id": 11, "image_id": 1, "category_id": 2, "iscrowd": 0, "bbox": [30.5, 2.0, 10.0, 7.5], "area": 75.0,
                "segmentation": []},
               {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [40.0, 30.0, 20.0, 10.0],
                "area": 200.0, "segmentation": {"size": [48, 64], "counts": rle["counts"].decode()}}]}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(doc))
    return path, images


def _mask(seg, height: int = 48, width: int = 64) -> np.ndarray:
    """pycocotools' mask of a polygon list or a compressed RLE (counts as json stores them)."""
    if isinstance(seg, list):
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, height, width)))
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})


def test_a_spatial_pipeline_moves_boxes_and_masks(tmp_path):
    path, images = _tiny_dataset(tmp_path)
    flip = _save([A.HorizontalFlip(p=1.0)], tmp_path / "flip.json", "json")
    run_steps(path, images, tmp_path / "out", [Augment(pipeline=str(flip), select="all")], workers=1)
    out = _annotations(tmp_path / "out")
    src = json.loads(path.read_text())
    anns = {a["id"]: a for a in out["annotations"]}
    assert set(anns) == {10, 11, 12}
    x, y, w, h = src["annotations"][1]["bbox"]
    assert anns[11]["bbox"] == [64 - x - w, y, w, h] and anns[11]["area"] == w * h  # box-only: x mirrored exactly
    for a in src["annotations"][0], src["annotations"][2]:  # masks: the input's, mirrored, pixel for pixel
        before, after = _mask(a["segmentation"]), _mask(anns[a["id"]]["segmentation"])
        assert np.array_equal(after, before[:, ::-1])
        assert anns[a["id"]]["area"] == int(before.sum())
        cols = np.flatnonzero(after.any(0))
        assert anns[a["id"]]["bbox"][0] == cols[0] and anns[a["id"]]["bbox"][2] == cols[-1] + 1 - cols[0]
    pixels = cv2.imread(str(tmp_path / "out" / "images" / out["images"][0]["file_name"])).astype(int)
    source = cv2.imread(str(images / "a.png")).astype(int)
    assert np.abs(pixels - source[:, ::-1]).mean() < 3 < 30 < np.abs(pixels - source).mean()  # flipped (JPEG aside)
    coco = COCO(str(tmp_path / "out" / "annotations.json"))  # pycocotools loads it and decodes every mask
    assert all(coco.annToMask(a).shape == (48, 64) for a in coco.loadAnns([10, 12]))


def test_objects_that_leave_the_image_are_dropped_and_counted(tmp_path):
    path, images = _tiny_dataset(tmp_path)
    crop = _save([A.Crop(x_min=0, y_min=0, x_max=32, y_max=24, p=1.0)], tmp_path / "crop.yaml")
    res = run_steps(path, images, tmp_path / "out", [Augment(pipeline=str(crop), select="all")], workers=1)
    out = _annotations(tmp_path / "out")
    assert (out["images"][0]["width"], out["images"][0]["height"]) == (32, 24)
    kept = {a["id"]: a for a in out["annotations"]}
    assert set(kept) == {10, 11}  # the crowd region lay wholly outside the crop
    assert res.steps[0]["removed_per_class"] == {1: 1}  # the crowd region, class 1
    assert kept[11]["bbox"] == [30.5, 2.0, 1.5, 7.5]  # box-only: clipped to the crop
    assert kept[10]["segmentation"]["size"] == [24, 32]
    COCO(str(tmp_path / "out" / "annotations.json"))


def test_an_image_on_which_no_spatial_transform_was_drawn_keeps_its_annotations(tmp_path):
    path, images = _tiny_dataset(tmp_path)
    never = _save([A.HorizontalFlip(p=0.0), A.RandomBrightnessContrast(p=1.0)], tmp_path / "never.yaml")
    run_steps(path, images, tmp_path / "out", [Augment(pipeline=str(never), select="all")], workers=1)
    assert _annotations(tmp_path / "out")["annotations"] == json.loads(path.read_text())["annotations"]
    assert [t["transform"] for t in _augmented(_annotations(tmp_path / "out"))[0]["ltaug"]["params"]["applied"]] \
        == ["RandomBrightnessContrast"]


@pytest.mark.parametrize("content, words", [
    ("transform: [1, 2", "not valid YAML or JSON"),
    ("just: text", "not an albumentations pipeline"),
    ({"transform": {"__class_fullname__": "Compose", "transforms": [{"__class_fullname__": "NoSuchBlur"}]}},
     "transform 1: 'NoSuchBlur' is not an albumentations transform"),
    ({"transform": {"__class_fullname__": "Compose", "transforms": [{"__class_fullname__": "Blur", "p": 2}]}},
     "transform 1 (Blur): p: Input should be less than or equal to 1"),
    ({"transform": {"__class_fullname__": "Compose", "transforms": [{"__class_fullname__": "Blur", "blurr": 3}]}},
     "transform 1 (Blur) has no argument(s) blurr"),
    (None, "pipeline file not found"),
])
def test_a_bad_pipeline_file_is_refused_in_one_line(tmp_path, demo_train_path, capsys, content, words):
    bad = tmp_path / "bad.yaml"
    if content is not None:
        bad.write_text(content if isinstance(content, str) else json.dumps(content))
    code = main(["augment", str(demo_train_path), "--images", str(IMAGES), "-o", str(tmp_path / "o"),
                 "--pipeline", str(bad), "--workers", "1"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(bad) in err and words in err, err
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()


def test_no_repeats_is_said_in_one_line(tmp_path, demo_train_path, capsys):
    code = main(["augment", str(demo_train_path), "--images", str(IMAGES), "-o", str(tmp_path / "o"),
                 "--pipeline", str(PHOTOMETRIC), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 0
    assert "the input has no repeated images" in err and "resample first, or select 'all'" in err
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["steps_run"][0]["images_written"] == 0 and "no repeated images" in run["steps_run"][0]["plan"]["note"]


def test_the_example_pipeline_runs_with_its_relative_paths(tmp_path):
    res = run_config(ROOT / "examples" / "augment_repeats.yaml", tmp_path / "o", workers=1)
    assert res.steps[1]["images_written"] > 0
    assert res.steps[1]["plan"]["pipeline_file"] == str(ROOT / "examples" / "augment_photometric.yaml")
    COCO(str(tmp_path / "o" / "annotations.json"))


class _Stop(Exception):
    """Stands for a kill: the run stops after its first shard, leaving its work folder."""


@contextmanager
def _first_shard_then_stop(fn, shards, workers):
    def results():
        for i, shard in enumerate(shards):
            if i == 1:
                raise _Stop
            yield fn(shard)
    yield results()


def test_a_resume_refuses_a_changed_pipeline_file_and_finishes_on_the_same(tmp_path, resampled_runs,
                                                                           demo_train_path):
    pipeline = tmp_path / "photometric.yaml"
    pipeline.write_bytes(PHOTOMETRIC.read_bytes())
    steps = [Resample(method="rfs", threshold=0.1, seed=0), Augment(pipeline=str(pipeline), seed=1)]
    ds, out = load_dataset(demo_train_path), tmp_path / "out"
    with pytest.raises(_Stop):
        run_pipeline(ds, IMAGES, out, steps, workers=1, progress=False, map_shards=_first_shard_then_stop)
    assert list((tmp_path / ".out.partial").glob("step-1/shards/*.json"))
    before = pipeline.stat()
    _save([A.Blur(p=1.0)], pipeline)
    with pytest.raises(UsageError, match=f"file\\(s\\) a step reads changed .*{pipeline.name}"):
        run_pipeline(ds, IMAGES, out, steps, workers=1, progress=False, resume=True)
    pipeline.write_bytes(PHOTOMETRIC.read_bytes())
    os.utime(pipeline, ns=(before.st_atime_ns, before.st_mtime_ns))
    run_pipeline(ds, IMAGES, out, steps, workers=1, progress=False, resume=True)
    assert same_tree(out, resampled_runs / "w1")  # the uninterrupted run's bytes


def test_a_transform_refusing_an_image_names_it(tmp_path):
    path, images = _tiny_dataset(tmp_path)
    big = _save([A.RandomCrop(height=100, width=100, p=1.0)], tmp_path / "big.yaml")
    with pytest.raises(InputError, match=r"^image id 1: the pipeline .*big.yaml failed on it: "):
        run_steps(path, images, tmp_path / "out", [Augment(pipeline=str(big), select="all")], workers=1)


def test_the_transforms_of_a_pipeline_draw_independently():
    """One shared stream per image: two transforms of p = 0.5 are applied alone, each, about a
    quarter of the time (with albumentations' set_random_seed every transform would draw the same
    number, and they would always be applied together or not at all)."""
    compose = build({"transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": [
        {"__class_fullname__": "RandomBrightnessContrast", "p": 0.5}, {"__class_fullname__": "Blur", "p": 0.5}]}})
    image = np.full((16, 16, 3), 100, np.uint8)
    seen = {}
    for i in range(400):
        applied = augment_one(image, {"id": i}, [], compose, frozenset(), image_seed(0, i))[3]
        key = tuple(t["transform"] for t in applied)
        seen[key] = seen.get(key, 0) + 1
    assert set(seen) == {(), ("RandomBrightnessContrast",), ("Blur",), ("RandomBrightnessContrast", "Blur")}
    assert all(60 <= n <= 140 for n in seen.values()), seen  # 100 expected each; 4 sd is about 35


def test_the_report_shows_augmented_images(resampled_runs, tmp_path):
    make_report(resampled_runs / "w1", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "augment, step 1" in page  # a sample's caption names the step that made it
