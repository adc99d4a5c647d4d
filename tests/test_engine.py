"""The offline engine end to end: valid output, same bytes for any worker count, resume after a kill."""
from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO, ROOT

from ltaug import InputError, UsageError, load_dataset
from ltaug.io.jsonio import file_sha256
from ltaug.io.paths import image_file_name
from ltaug.ops import Mixup, Mosaic, Paste, Resample
from ltaug.run.engine import partial_dir, run_pipeline
from ltaug.stats.frequency import to_lvis

IMAGES = DEMO / "images" / "train"
STEPS = [Resample(method="rfs", seed=0, threshold=0.1),
         Paste(objects=4, prob=0.7, seed=1),
         Mosaic(count=6, seed=2),
         Mixup(count=4, seed=3)]


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a if f.name != "run.json")


def linked_images(tmp_path: Path) -> Path:
    """A private copy (hard links) of the demo image folder, safe to break."""
    images = tmp_path / "images"
    images.mkdir()
    for p in IMAGES.iterdir():
        os.link(p, images / p.name)
    return images


@pytest.fixture(scope="module")
def runs(tmp_path_factory, demo_train_path):
    ds = load_dataset(demo_train_path)
    base = tmp_path_factory.mktemp("engine")
    run_pipeline(ds, IMAGES, base / "w1", STEPS, workers=1, progress=False)
    run_pipeline(ds, IMAGES, base / "w2", STEPS, workers=2, progress=False)
    return ds, base


def test_same_bytes_for_any_worker_count(runs):
    _, base = runs
    assert same_tree(base / "w1", base / "w2")


def test_an_output_run_again_keeps_every_file_it_did_not_change(runs, tmp_path):
    """An ltaug output as the input of the same steps: its images already live under ltaug/ with
    the names this run would give (step1_paste_ID), and a resampled repeat shares its original's
    file. New images go to ltaug2/, so a record this run leaves alone keeps its file's bytes."""
    _, base = runs
    first = load_dataset(base / "w1" / "annotations.json")
    run_pipeline(first, base / "w1" / "images", tmp_path / "again", STEPS[:2], workers=2, progress=False)
    again = load_dataset(tmp_path / "again" / "annotations.json")
    names = [image_file_name(im) for im in again.images]
    made = [n for n in names if n.startswith("ltaug2/")]
    kept = [n for n in names if not n.startswith("ltaug2/")]
    assert made and not set(made) & {image_file_name(im) for im in first.images}
    assert any(n.startswith("ltaug/step1_paste_") for n in kept)  # the case that could collide
    for name in set(kept):
        assert filecmp.cmp(base / "w1" / "images" / name, tmp_path / "again" / "images" / name, shallow=False), name


def test_output_is_a_valid_dataset_with_every_file(runs):
    from pycocotools.coco import COCO

    ds, base = runs
    out = base / "w1"
    assert sorted(p.name for p in out.iterdir()) == ["annotations.json", "images", "run.json"]
    result = load_dataset(out / "annotations.json")  # full record validation
    coco = COCO(str(out / "annotations.json"))
    for a in coco.dataset["annotations"][:400]:
        assert coco.annToMask(a).sum() > 0 or "segmentation" not in a
    referenced = {image_file_name(im) for im in result.images}
    on_disk = {p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*") if p.is_file()}
    assert referenced == on_disk  # every referenced file is there, and nothing else
    run = json.loads((out / "run.json").read_text())
    assert [s["op"] for s in run["steps"]] == ["resample", "paste", "mosaic", "mixup"]
    assert run["counts"]["images_after"] == len(result.images)
    for key in ("annotations", "images"):  # absolute, so readable from any working folder
        assert Path(run["input"][key]).is_absolute() and Path(run["input"][key]).exists()


def test_provenance_and_kept_originals(runs):
    ds, base = runs
    out = base / "w1"
    result = load_dataset(out / "annotations.json")
    ops = {}
    for im in result.images:
        ops.setdefault(im.get("ltaug", {}).get("op"), []).append(im)
    assert len(ops["mosaic"]) == 6 and len(ops["mixup"]) == 4 and ops["paste"]
    for im in ops["mosaic"]:
        assert len(im["ltaug"]["source_image_ids"]) == 4 and im["ltaug"]["seed"] == 2
    for im in ops["paste"]:
        assert im["file_name"].startswith("ltaug/") and im["ltaug"]["params"]["objects"]
    by_id = {a["id"]: a for a in ds.annotations}
    for a in result.annotations:
        p = a.get("ltaug", {})
        if p.get("op") == "paste":
            assert p["source_annotation_id"] in by_id
            assert by_id[p["source_annotation_id"]]["category_id"] == a["category_id"]
        if p.get("op") == "mixup":
            assert 0 < p["mixup_weight"] < 1
    # every annotation a step adds names its image's step, seed and sources
    images = {im["id"]: im for im in result.images}
    added = [a for a in result.annotations if a.get("ltaug", {}).get("op") in ("paste", "mosaic", "mixup")]
    assert {a["ltaug"]["op"] for a in added} == {"paste", "mosaic", "mixup"}
    for a in added:
        p, q = a["ltaug"], images[a["image_id"]]["ltaug"]
        assert (p["op"], p["step"], p["seed"]) == (q["op"], q["step"], q["seed"])
        assert p["source_annotation_id"] in q["source_annotation_ids"]
        if p["op"] == "paste":  # the image names the image pasted onto; each object, where it came from
            assert p["source_annotation_id"] in [o["annotation_id"] for o in q["params"]["objects"]]
        else:
            assert p["source_image_id"] in q["source_image_ids"]
    for im in ops["mosaic"] + ops["mixup"]:
        ids = im["ltaug"]["source_annotation_ids"]
        assert ids and sorted(ids) == sorted(a["ltaug"]["source_annotation_id"] for a in result.annotations
                                             if a["image_id"] == im["id"])
    # images nothing was pasted on are the input files themselves (hard links), not re-encoded
    kept = [im for im in result.images if im.get("ltaug", {}).get("op", "").startswith("resample")]
    assert kept
    for im in kept:
        assert os.path.samefile(out / "images" / im["file_name"], IMAGES / im["file_name"])


def test_lvis_input_gives_lvis_output(tmp_path, demo_train_path):
    from lvis import LVIS

    ds = to_lvis(load_dataset(demo_train_path), rare_max=2, common_max=5)
    for im in ds.images:
        im["neg_category_ids"] = [c["id"] for c in ds.categories[:3]]
        im["not_exhaustive_category_ids"] = []
    path = tmp_path / "train_lvis.json"
    ds.save(path)
    ds = load_dataset(path)
    out = tmp_path / "out"
    run_pipeline(ds, IMAGES, out, [Paste(weighting="uniform", objects=5, seed=0)], workers=1,
                 progress=False)
    lvis = LVIS(str(out / "annotations.json"))
    assert len(lvis.dataset["images"]) == len(ds.images)
    for im in lvis.dataset["images"]:
        present = {a["category_id"] for a in lvis.img_ann_map[im["id"]]}
        assert not present & set(im["neg_category_ids"])


COCO_URL = "http://images.cocodataset.org/"


def lvis_v1_style(demo_train_path: Path, path: Path) -> Path:
    """The demo as LVIS v1 stores its images: LVIS categories and image lists, and each image
    named by ``coco_url`` alone (``http://images.cocodataset.org/train2017/NAME``, no ``file_name``)."""
    ds = to_lvis(load_dataset(demo_train_path), rare_max=2, common_max=5)
    ds.save(path)
    doc = json.loads(path.read_text())
    for im in doc["images"]:
        assert im["coco_url"] == f"{COCO_URL}train2017/{im['file_name']}"
        del im["file_name"]
    path.write_text(json.dumps(doc))
    return path


def test_lvis_output_names_every_image_by_a_coco_url_into_the_output(tmp_path, demo_train_path):
    """The rule of the engine's docstring: every image record of an LVIS output, kept or new, has
    coco_url = http://images.cocodataset.org/ + its path under OUT/images/ (./NAME without a
    folder), and that file is there: the input's own file for a kept image, the image of the
    record's size for every one. (tests/test_recipes.py has mmdetection, ultralytics and
    detectron2's LVIS loaders resolve these URLs.)"""
    from lvis import LVIS
    from PIL import Image

    ds = load_dataset(lvis_v1_style(demo_train_path, tmp_path / "lvis_v1.json"))
    assert ds.kind == "lvis"
    input_records = json.loads(json.dumps(ds.images))
    out = tmp_path / "out"
    run_pipeline(ds, IMAGES, out, [Resample(method="rfs", seed=0, threshold=0.1),
                                   Paste(weighting="uniform", objects=3, prob=0.5, seed=1),
                                   Mosaic(count=3, seed=2), Mixup(count=2, seed=3)], workers=2, progress=False)
    assert ds.images == input_records  # the input's records are not changed
    doc = json.loads((out / "annotations.json").read_text())
    kinds = {"kept": 0, "paste": 0, "mosaic": 0, "mixup": 0}
    for im in doc["images"]:
        name = image_file_name(im)
        assert im["coco_url"] == COCO_URL + (name if "/" in name else "./" + name)
        path = out / "images" / im["coco_url"][len(COCO_URL):]
        with Image.open(path) as f:
            assert f.size == (im["width"], im["height"])
        op = im.get("ltaug", {}).get("op", "")
        if "file_name" in im:  # made by a pixel step
            assert name.startswith("ltaug/step") and op in ("paste", "mosaic", "mixup")
            kinds[op] += 1
        else:  # kept: the input file itself, linked
            assert os.path.samefile(path, IMAGES / name) and op.startswith("resample")
            kinds["kept"] += 1
    assert all(kinds.values()), kinds
    on_disk = {p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*") if p.is_file()}
    assert {os.path.normpath(im["coco_url"][len(COCO_URL):]) for im in doc["images"]} == on_disk
    lvis = LVIS(str(out / "annotations.json"))  # lvis-api loads it
    assert sorted(lvis.imgs) == sorted(im["id"] for im in doc["images"])
    again = load_dataset(out / "annotations.json")  # and ltaug reads the same files from it
    assert again.kind == "lvis" and [image_file_name(im) for im in again.images] == [
        image_file_name(im) for im in doc["images"]]
    # a pipeline of annotation steps only: its images too
    run_pipeline(ds, IMAGES, tmp_path / "resampled", [Resample(method="rfs", seed=0, threshold=0.1)], workers=1,
                 progress=False)
    doc = json.loads((tmp_path / "resampled" / "annotations.json").read_text())
    assert all(im["coco_url"] == COCO_URL + "./" + image_file_name(im) for im in doc["images"])
    assert all((tmp_path / "resampled" / "images" / image_file_name(im)).is_file() for im in doc["images"])


def test_coco_output_coco_urls_are_as_before(runs, demo_train_path):
    """A COCO output keeps the input's coco_url on a kept image, and has none on an image a
    pixel step made or replaced (the LVIS rule is for LVIS outputs only)."""
    ds, base = runs
    urls = {im["file_name"]: im["coco_url"] for im in ds.images}
    doc = json.loads((base / "w1" / "annotations.json").read_text())
    made = [im for im in doc["images"] if im["file_name"].startswith("ltaug/")]
    kept = [im for im in doc["images"] if not im["file_name"].startswith("ltaug/")]
    assert made and kept
    assert all("coco_url" not in im for im in made)
    assert all(im["coco_url"] == urls[im["file_name"]] for im in kept)


def test_errors_are_one_line_and_inputs_untouched(tmp_path, demo_train_path):
    ds = load_dataset(demo_train_path)
    before = file_sha256(demo_train_path)
    with pytest.raises(UsageError, match="over the input images"):
        run_pipeline(ds, IMAGES, IMAGES, STEPS[1:2], workers=1, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an ltaug output"):
        run_pipeline(ds, IMAGES, tmp_path / "busy", STEPS[1:2], workers=1, progress=False)
    # a missing image: one line naming it; with skip, counted
    images = linked_images(tmp_path)
    victim = ds.images[3]
    (images / victim["file_name"]).unlink()
    with pytest.raises(InputError, match=f"image id {victim['id']}: file .* not found"):
        run_pipeline(ds, images, tmp_path / "out", STEPS[1:2], workers=1, progress=False)
    assert file_sha256(demo_train_path) == before


def test_skip_unreadable_images(tmp_path, demo_train_path):
    ds = load_dataset(demo_train_path)
    images = linked_images(tmp_path)
    victim = ds.images[5]
    (images / victim["file_name"]).unlink()
    (images / victim["file_name"]).write_bytes(b"not an image")
    # the mosaic step reads through the work folder, where the broken file is linked too
    s = run_pipeline(ds, images, tmp_path / "out", [Mosaic(count=40, seed=0)], workers=1,
                     on_error="skip", progress=False)
    skipped = s["steps_run"][0]["images_skipped"]
    assert skipped and all(f"image id {victim['id']}" in r for r in skipped)
    assert s["counts"]["images_after"] == len(ds.images) + 40 - len(skipped)


def _ltaug(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_shards", [1, 4])
def test_killed_run_resumes_to_the_same_output(tmp_path, demo_train_path, kill_after_shards):
    """Kill a real run (SIGKILL, workers included) once some shards are written; --resume then
    gives the same bytes as a run that was never interrupted."""
    config = tmp_path / "pipe.yaml"
    config.write_text(f"""\
input: {demo_train_path}
images: {IMAGES}
output: out
seed: 7
steps:
  - resample: {{method: rfs, threshold: 0.5, epochs: 8}}
  - paste: {{objects: 5, blend: poisson}}
""")
    reference = tmp_path / "ref.yaml"
    reference.write_text(config.read_text().replace("output: out", "output: ref"))
    r = _ltaug("run", reference, "--workers", "2")
    assert r.returncode == 0, r.stderr
    shards = partial_dir(tmp_path / "out") / "step-1" / "shards"
    proc = subprocess.Popen([sys.executable, "-m", "ltaug.cli.main", "run", str(config), "--workers", "2"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if shards.is_dir() and len(list(shards.glob("*.json"))) >= kill_after_shards:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; give it more work"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out").exists() and partial_dir(tmp_path / "out").is_dir()
    r = _ltaug("run", config, "--workers", "1")
    lines = r.stderr.strip().splitlines()  # the error, after a note on the killed run's lock
    assert r.returncode == 2 and "--resume" in lines[-1] and len(lines) == 2, r.stderr
    assert "took over the lock left by pid" in lines[0] and "no longer running" in lines[0]
    # what a kill at another moment leaves: a bank folder being built, an image being written
    (partial_dir(tmp_path / "out") / ".bank.x1y2.tmp").mkdir()
    (partial_dir(tmp_path / "out") / ".bank.x1y2.tmp" / "pixels.bin").write_bytes(b"half")
    (shards.parent / "images").mkdir(exist_ok=True)
    (shards.parent / "images" / "half.jpg.tmp").write_bytes(b"half")
    r = _ltaug("run", config, "--workers", "1", "--resume")
    assert r.returncode == 0, r.stderr
    assert not partial_dir(tmp_path / "out").exists()
    assert same_tree(tmp_path / "ref", tmp_path / "out")


def test_stopped_after_two_shards_resumes_and_checks_its_shards(tmp_path, runs):
    """An executor that stops after two shards (in-process, no kill needed); --resume renders only
    the rest and gives the uninterrupted run's bytes; a shard file that holds other images than
    the plan (a work folder of another version) is refused, not merged; so is a work folder of
    another layout."""
    import contextlib

    from ltaug.pool import imap_ordered

    ds, base = runs

    @contextlib.contextmanager
    def stops_after_two(fn, shards, workers):
        def two():
            for k, shard in enumerate(shards):
                if k == 2:
                    raise KeyboardInterrupt
                yield fn(shard)
        yield two()

    rendered = []

    @contextlib.contextmanager
    def counting(fn, shards, workers):
        with imap_ordered(fn, shards, 1) as results:
            yield (rendered.append(r["images"] + r["skipped"]) or r for r in results)

    for name, tamper in (("out", False), ("bad", True), ("old", "work_format")):
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(ds, IMAGES, tmp_path / name, STEPS, workers=1, progress=False, map_shards=stops_after_two)
        shards = sorted((partial_dir(tmp_path / name) / "step-1" / "shards").glob("*.json"))
        assert len(shards) == 2
        if tamper == "work_format":  # a work folder laid out by an older ltaug (same version string)
            job = partial_dir(tmp_path / name) / "job.json"
            job.write_text(json.dumps({**json.loads(job.read_text()), "work_format": 1}))
            with pytest.raises(UsageError, match="or was made by another ltaug version"):
                run_pipeline(ds, IMAGES, tmp_path / name, STEPS, workers=1, resume=True, progress=False)
        elif tamper:
            doc = json.loads(shards[1].read_text())
            doc["image_ids"] = doc["image_ids"][::-1]
            shards[1].write_text(json.dumps(doc))
            with pytest.raises(UsageError, match="shard 1 holds other images than this run plans"):
                run_pipeline(ds, IMAGES, tmp_path / name, STEPS, workers=1, resume=True, progress=False)
        else:
            run_pipeline(ds, IMAGES, tmp_path / name, STEPS, workers=1, resume=True, progress=False,
                         map_shards=counting)
    assert same_tree(base / "w1", tmp_path / "out")
    # the resumed run rendered every recipe of the pixel steps except the two shards' images
    steps = json.loads((tmp_path / "out" / "run.json").read_text())["steps_run"]
    finished = [json.loads(p.read_text())["image_ids"] for p in shards]
    assert sum(rendered) == sum(st["recipes"] for st in steps[1:]) - sum(map(len, finished))


def test_pipeline_file_errors(tmp_path, demo_train_path):
    bad = tmp_path / "bad.yaml"
    for text, message in (("steps: [}", "not valid YAML"),
                          (f"input: {demo_train_path}\nimages: {IMAGES}\noutput: o\nsteps:\n  - blur: {{}}\n", "blur is not a known operation"),
                          (f"input: {demo_train_path}\nimages: {IMAGES}\noutput: o\nsteps:\n  - paste: {{objcts: 3}}\n", "objcts is not a parameter"),
                          (f"input: {demo_train_path}\nimages: {IMAGES}\nsteps: []\n", "missing key(s) output")):
        bad.write_text(text)
        r = _ltaug("run", bad)
        assert r.returncode in (1, 2) and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_box_only_dataset_pastes_rectangles(tmp_path, demo_doc):
    from pycocotools.coco import COCO

    for a in demo_doc["annotations"]:
        a.pop("segmentation", None)
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(demo_doc))
    ds = load_dataset(path)
    spec = Paste(objects=3, blend="hard", max_overlap=0.0, seed=0)  # no overlaps: whole rectangles
    s = run_pipeline(ds, IMAGES, tmp_path / "out", [spec],
                     workers=1, progress=False)
    assert s["steps_run"][0]["plan"]["box_only"]
    out = json.loads((tmp_path / "out" / "annotations.json").read_text())
    pasted = [a for a in out["annotations"] if a.get("ltaug", {}).get("op") == "paste"]
    assert pasted and all("segmentation" not in a for a in pasted)
    for a in pasted:  # a rectangle: its area is its box's
        assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
    COCO(str(tmp_path / "out" / "annotations.json"))
    load_dataset(tmp_path / "out" / "annotations.json")


def test_a_bank_rebuilt_at_the_same_path_is_read_afresh(tmp_path, demo_train_path):
    """Regression: opened banks were cached by path in the module for the life of the process,
    so a bank rebuilt at the same path (here from the input less its first five images: other
    objects at the same rows) rendered with the old objects. The second in-process run must equal
    a fresh process's output byte for byte."""
    from ltaug.pixels.bank import build_bank

    ds = load_dataset(demo_train_path)
    bank = tmp_path / "bank"
    steps = [Paste(objects=3, prob=1.0, seed=5, bank=str(bank))]
    build_bank(ds, IMAGES, bank, workers=1, min_area=32, progress=False)
    run_pipeline(ds, IMAGES, tmp_path / "first", steps, workers=1, progress=False)
    fewer = ds.replace(images=ds.images[5:], annotations=[a for a in ds.annotations
                                                          if a["image_id"] not in {im["id"] for im in ds.images[:5]}])
    build_bank(fewer, IMAGES, bank, workers=1, progress=False)
    run_pipeline(ds, IMAGES, tmp_path / "second", steps, workers=1, progress=False)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(json.dumps({"input": str(demo_train_path), "images": str(IMAGES), "output": str(tmp_path / "fresh"),
                                    "steps": [{"paste": {"objects": 3, "prob": 1.0, "seed": 5, "bank": str(bank)}}]}))
    proc = _ltaug("run", pipeline, "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert same_tree(tmp_path / "second", tmp_path / "fresh")
    assert not same_tree(tmp_path / "first", tmp_path / "second")  # the rebuilt bank does change the output


@pytest.mark.parametrize("link", ["hard", "symlink", "copy"])
def test_kept_originals_are_linked_as_asked(tmp_path, demo_train_path, link):
    """--link: hard links share the input files (same inode), symlinks point at them, copies are
    files of their own; the bytes are the input's in every case, and the made images are files."""
    ds = load_dataset(demo_train_path)
    run_pipeline(ds, IMAGES, tmp_path / "out", [Mosaic(count=2, seed=0)], workers=1, progress=False, link=link)
    out = load_dataset(tmp_path / "out" / "annotations.json")
    kept = [image_file_name(im) for im in out.images if "ltaug" not in im]
    assert kept
    for name in kept:
        made, source = tmp_path / "out" / "images" / name, IMAGES / name
        assert made.read_bytes() == source.read_bytes()
        assert made.is_symlink() == (link == "symlink")
        assert os.path.samefile(made, source) == (link != "copy")
    for im in out.images:
        if "ltaug" in im:
            assert not (tmp_path / "out" / "images" / image_file_name(im)).is_symlink()
    with pytest.raises(ValueError, match="link must be one of hard, symlink, copy"):
        run_pipeline(ds, IMAGES, tmp_path / "bad", [Mosaic(count=2)], workers=1, progress=False, link="soft")
