"""The recipes of docs/recipes/ run: each page's code blocks, as written, on the bundled demo data.

- torchvision: in this venv (quick).
- ultralytics and mmdetection: in throwaway venvs (slow; each made once per session under a
  temporary folder, or reused from ``LTAUG_ULTRALYTICS_VENV`` / ``LTAUG_MMDET_VENV``), since
  both pull in ``opencv-python``, which breaks this venv's ``opencv-python-headless``.
- detectron2: it does not install here (no wheel for this torch); what the recipe does outside
  detectron2 runs in this venv, against dataset dicts built the way detectron2's
  ``load_coco_json`` builds them.

The LVIS ``coco_url`` rule of the engine (ltaug/run/engine.py) is checked with each consumer's
own loader where it installs (mmdetection's ``LVISV1Dataset``, ultralytics' ``convert_coco``),
and with detectron2's two-line ``get_file_name`` re-implemented, since detectron2 does not.
"""
from __future__ import annotations

import json
import math
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, ROOT

from ltaug import load_dataset
from ltaug.io.paths import image_file_name

RECIPES = ROOT / "docs" / "recipes"
BIN = Path(sys.executable).parent  # this venv's ltaug command
COCO_URL = "http://images.cocodataset.org/"


def blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (RECIPES / page).read_text(encoding="utf-8"), re.S)


def shell(script: str, cwd: Path, *, path: Path = BIN, timeout: float = 900) -> str:
    """Run a shell block (``set -e``) with ``path`` first on PATH; its output, or a failure showing it."""
    env = {**os.environ, "PATH": f"{path}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{script}\n--- stdout\n{proc.stdout[-4000:]}\n" \
                                 f"--- stderr\n{proc.stderr[-6000:]}"
    return proc.stdout + proc.stderr


def workdir(tmp_path: Path) -> Path:
    """A folder to run a recipe in: the checkout's examples/ linked in, outputs written there."""
    os.symlink(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def lvis_v1_output(tmp_path: Path, steps: list | None = None) -> Path:
    """An LVIS output folder of the demo, its input named as LVIS v1 names images (``coco_url`` alone)."""
    from ltaug.ops import Mixup, Mosaic, Paste, Resample
    from ltaug.run.engine import run_pipeline
    from ltaug.stats.frequency import to_lvis

    path = tmp_path / "lvis_v1.json"
    to_lvis(load_dataset(DEMO / "annotations" / "train.json"), rare_max=2, common_max=5).save(path)
    doc = json.loads(path.read_text())
    for im in doc["images"]:
        del im["file_name"]  # its coco_url is http://images.cocodataset.org/train2017/NAME
    path.write_text(json.dumps(doc))
    out = tmp_path / "lvis_out"
    run_pipeline(load_dataset(path), DEMO / "images" / "train", out,
                 steps or [Resample(method="rfs", seed=0, threshold=0.1),
                           Paste(weighting="uniform", objects=3, prob=0.5, seed=1),
                           Mosaic(count=3, seed=2), Mixup(count=2, seed=3)], workers=2, progress=False)
    doc = json.loads((out / "annotations.json").read_text())
    assert any("file_name" not in im for im in doc["images"])  # kept images named by coco_url alone
    assert any(image_file_name(im).startswith("ltaug/") for im in doc["images"])  # and new ones
    return out


# -- torchvision: in this venv -----------------------------------------------------------------

def test_torchvision_recipe_runs(tmp_path, monkeypatch, capsys):
    work = workdir(tmp_path)
    for script in blocks("torchvision.md", "bash"):
        shell(script, work)
    code = blocks("torchvision.md", "python")
    assert len(code) == 4, "the recipe's python blocks changed: check what this test runs"
    (work / "recipe.py").write_text("\n".join(code))
    monkeypatch.chdir(work)
    runpy.run_path(str(work / "recipe.py"), run_name="__main__")
    printed = capsys.readouterr().out
    found = dict(re.findall(r"^(.*?):.*?loss (\S+)$", printed, re.M))
    assert sorted(found) == ["RepeatFactorSampler", "WeightedRandomSampler", "online transforms",
                             "pipeline output", "resampled file"], printed
    assert all(math.isfinite(float(v)) for v in found.values()), printed
    rf = json.loads((work / "out/demo/rf.json").read_text())
    assert f"WeightedRandomSampler: {round(rf['sum'])} draws per epoch over 30 images" in printed
    assert round(rf["sum"]) > 30  # the file repeats the rare images: more draws than images
    assert "pipeline output: 67 images" in printed and "resampled file: 52 images" in printed


# -- throwaway venvs (ultralytics, mmdetection) --------------------------------------------------

def _torch_distributions() -> list:
    """The distributions torch and torchvision need, as installed in this venv (extras followed)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: dict[str, frozenset] = {}
    todo = [("torch", frozenset()), ("torchvision", frozenset())]
    while todo:
        name, extras = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in ("pip", "setuptools", "wheel") or (key in seen and extras <= seen[key]):
            continue
        seen[key] = seen.get(key, frozenset()) | extras
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append((req.name, frozenset(req.extras)))
    return [metadata.distribution(name) for name in seen]


def throwaway_venv(env_var: str, default: Path, install: list[list[str]]) -> Path:
    """A venv at ``$env_var`` (made there if missing) or ``default``, with this venv's torch and
    torchvision (hard links of the installed files, so that 5 GB of CUDA libraries are neither
    copied nor downloaded again; copies across file systems) and then ``pip install`` of each of
    ``install``: the python of that venv."""
    venv = Path(os.environ.get(env_var) or default)
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
        for dist in _torch_distributions():
            base = Path(dist.locate_file(""))
            for f in dist.files or []:
                src, dst = base / f, site / f
                if ".." in Path(f).parts or not src.is_file() or dst.exists():
                    continue
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
    for args in install:
        proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args], capture_output=True, text=True)
        assert proc.returncode == 0, f"pip install {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-4000:]}"
    return python


@pytest.fixture(scope="session")
def ultralytics_python(tmp_path_factory) -> Path:
    """ultralytics, and ltaug's transforms beside it without opencv-python-headless (as the recipe installs them)."""
    return throwaway_venv("LTAUG_ULTRALYTICS_VENV", tmp_path_factory.mktemp("ultralytics") / "venv", [
        ["ultralytics"],
        ["--no-deps", str(ROOT), "albumentations==2.0.8", "albucore==0.0.24"],
        ["orjson", "pycocotools", "pydantic", "scipy", "simsimd", "stringzilla", "faster-coco-eval"],
    ])


def yolo_counts(log: str) -> list[tuple[str, int, int]]:
    """(split, images, corrupt) of each dataset scan ultralytics printed."""
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", log)  # its colours
    return [(split, int(n), int(bad)) for split, n, bad in
            re.findall(r"(train|val): Scanning .*? (\d+) images, \d+ backgrounds, (\d+) corrupt", plain)]


@pytest.mark.slow
def test_ultralytics_recipe_trains_on_every_ltaug_output(tmp_path, ultralytics_python):
    work = workdir(tmp_path)
    path = Path(f"{BIN}{os.pathsep}{ultralytics_python.parent}")  # ltaug from this venv, yolo from that one
    scripts = blocks("ultralytics.md", "bash")
    assert len(scripts) == 2, "the recipe's shell blocks changed: check what this test runs"
    first = shell(scripts[0], work, path=path)
    # the export with its val split, trained one epoch: every image found, none corrupt
    assert sorted(set(yolo_counts(first))) == [("train", 30, 0), ("val", 10, 0)], first[-3000:]
    rest = shell(scripts[1], work, path=path)
    runs = yolo_counts(rest)
    train = [n for split, n, bad in runs if split == "train"]
    assert train == [67, 52] and all(bad == 0 for _, _, bad in runs), rest[-3000:]

    code = blocks("ultralytics.md", "python")
    assert len(code) == 3, "the recipe's python blocks changed: check what this test runs"
    (work / "recipe.py").write_text("\n".join(code))
    log = shell(f"{ultralytics_python} recipe.py", work, path=path)
    rf = json.loads((work / "out/demo/rf.json").read_text())
    assert f"repeat factors: {round(rf['sum'])} draws per epoch over 30 images" in log, log[-3000:]
    before, after = map(int, re.search(r"online CopyPaste: (\d+) objects in the first 8 images, (\d+) with", log).groups())
    assert after > before, log[-3000:]
    # the LVIS output through convert_coco(lvis=True): every image the list names is found, none corrupt
    listed = (work / "out/demo/yolo-lvis/annotations.txt").read_text().split()
    assert len(listed) == 30 and all((work / "out/demo/yolo-lvis" / p).is_file() for p in listed)
    assert ("train", 30, 0) in yolo_counts(log), log[-3000:]


ULTRALYTICS_LVIS = """
import json, sys
from pathlib import Path
from ultralytics.data.converter import convert_coco
from ultralytics.data.utils import img2label_paths
out, save = Path(sys.argv[1]), Path(sys.argv[2])
(save.parent / "json").mkdir()
(save.parent / "json" / "annotations.json").write_bytes((out / "annotations.json").read_bytes())
convert_coco(str(save.parent / "json"), str(save), use_segments=True, cls91to80=False, lvis=True)
for entry in (out / "images").iterdir():
    (save / "images" / entry.name).symlink_to(entry.resolve())
images = [str((save / p).resolve()) for p in (save / "annotations.txt").read_text().split()]
print(json.dumps({"images": images, "labels": img2label_paths([str(save / p) for p in
                  (save / "annotations.txt").read_text().split()])}))
"""


@pytest.mark.slow
def test_lvis_output_urls_resolve_in_ultralytics_convert_coco(tmp_path, ultralytics_python):
    """ultralytics' convert_coco(lvis=True) on an LVIS output whose kept images have only coco_url:
    the list file names each output image (the output's own file, through the images linked
    where convert_coco puts them), and the label file it wrote for each is where ultralytics
    looks for it."""
    out = lvis_v1_output(tmp_path)
    doc = json.loads((out / "annotations.json").read_text())
    proc = subprocess.run([str(ultralytics_python), "-c", ULTRALYTICS_LVIS, str(out), str(tmp_path / "yolo")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = sorted({os.path.realpath(out / "images" / image_file_name(im)) for im in doc["images"]})
    assert sorted(set(got["images"])) == expected  # every image, each the output's own file
    annotated = {im["id"] for im in doc["images"]} & {a["image_id"] for a in doc["annotations"]}
    assert len(annotated) == len(doc["images"])
    assert all(Path(p).is_file() for p in got["labels"])  # each image's label file where ultralytics reads it


@pytest.fixture(scope="session")
def mmdet_python(tmp_path_factory) -> Path:
    """mmdet 3.3.0 with mmcv-lite (no wheel of the full mmcv for this torch: see the recipe), lvis-api, and
    ltaug's transforms without opencv-python-headless."""
    return throwaway_venv("LTAUG_MMDET_VENV", tmp_path_factory.mktemp("mmdet") / "venv", [
        ["mmengine==0.10.7", "mmdet==3.3.0", "mmcv-lite==2.1.0"],
        ["--no-deps", "lvis", str(ROOT), "albumentations==2.0.8", "albucore==0.0.24"],
        ["orjson", "pydantic", "simsimd", "stringzilla"],
    ])


@pytest.mark.slow
def test_mmdetection_recipe_loads_every_ltaug_output(tmp_path, mmdet_python):
    work = workdir(tmp_path)
    (script,) = blocks("mmdetection.md", "bash")
    shell(script, work)
    code = blocks("mmdetection.md", "python")
    assert len(code) == 5, "the recipe's python blocks changed: check what this test runs"
    (work / "recipe.py").write_text("\n".join(code))
    log = shell(f"{mmdet_python} recipe.py", work)
    doc = json.loads((work / "out/demo/augmented/annotations.json").read_text())
    assert re.search(r"CocoDataset: 67 images; sample 0: \(3, \d+, \d+\), [1-9]\d* objects", log), log[-3000:]
    assert "resampled file: 52 images" in log, log[-3000:]
    rf = json.loads((work / "out/demo/rf.json").read_text())
    assert f"repeat factors: {round(rf['sum'])} draws per epoch over 30 images" in log, log[-3000:]
    before, after = map(int, re.search(r"online CopyPaste: (\d+) objects in the first 8 images, (\d+) with", log).groups())
    assert after > before, log[-3000:]
    assert "LVISV1Dataset: 30 images, 0 missing" in log, log[-3000:]
    assert len(doc["images"]) == 67


MMDET_LVIS = """
import json, os, sys, types
stand_in = types.ModuleType("mmcv._ext")  # mmcv-lite: no compiled ops (none is called here)
def _missing(name):
    if name.startswith("_"):
        raise AttributeError(name)
    return lambda *a, **k: (_ for _ in ()).throw(RuntimeError(name))
stand_in.__getattr__ = _missing
sys.modules["mmcv._ext"] = stand_in
from mmdet.registry import DATASETS
from mmdet.utils import register_all_modules
register_all_modules()
out = sys.argv[1]
classes = tuple(c["name"] for c in json.load(open(os.path.join(out, "annotations.json")))["categories"])
ds = DATASETS.build(dict(type="LVISV1Dataset", data_root=out, ann_file="annotations.json",
                         data_prefix=dict(img="images/"), metainfo=dict(classes=classes), filter_cfg=None,
                         pipeline=[dict(type="LoadImageFromFile")]))
rows = []
for i in range(len(ds)):
    sample = ds[i]
    rows.append([sample["img_id"], sample["img_path"], list(sample["img"].shape[:2])])
print(json.dumps(rows))
"""


@pytest.mark.slow
def test_lvis_output_urls_resolve_in_mmdetection_lvisv1dataset(tmp_path, mmdet_python):
    """mmdetection's LVISV1Dataset on an LVIS output whose kept images have only coco_url, with the
    output's images/ as its image folder: every image path it derives is the output's file, and
    LoadImageFromFile reads it at the record's size."""
    out = lvis_v1_output(tmp_path)
    doc = json.loads((out / "annotations.json").read_text())
    proc = subprocess.run([str(mmdet_python), "-c", MMDET_LVIS, str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    records = {im["id"]: im for im in doc["images"]}
    assert sorted(r[0] for r in rows) == sorted(records)
    for image_id, path, (h, w) in rows:
        im = records[image_id]
        assert os.path.samefile(path, out / "images" / image_file_name(im))
        assert (h, w) == (im["height"], im["width"])


def test_detectron2_lvis_loader_finds_lvis_output_files(tmp_path):
    """detectron2's load_lvis_json (detectron2/data/datasets/lvis.py) derives each image's path from
    coco_url alone: ``split_folder, file_name = img_dict["coco_url"].split("/")[-2:]`` and
    ``os.path.join(image_root + split_folder, file_name)``. detectron2 does not install here (no
    wheel for this torch), so those two lines are re-implemented: with image_root = OUT/images/,
    every image of an LVIS output, kept (./NAME) or new (ltaug/NAME), is the output's file."""
    out = lvis_v1_output(tmp_path)
    image_root = str(out / "images") + "/"
    doc = json.loads((out / "annotations.json").read_text())
    for im in doc["images"]:
        split_folder, file_name = im["coco_url"].split("/")[-2:]
        path = os.path.join(image_root + split_folder, file_name)
        assert os.path.samefile(path, out / "images" / image_file_name(im)), im["coco_url"]


# -- detectron2: not installable here; what is not a detectron2 call runs -------------------------

def detectron2_dataset_dicts(json_file: Path, image_root: Path) -> list[dict]:
    """Dataset dicts as detectron2's ``load_coco_json(json_file, image_root, dataset_name)`` builds them
    (images sorted by id; category ids made contiguous in sorted order; polygons under 3 points
    dropped), then filtered as ``get_detection_dataset_dicts(filter_empty=True)`` does (images
    whose annotations are all crowd, or none, are left out). bbox_mode: 1 is BoxMode.XYWH_ABS."""
    doc = json.loads(json_file.read_text())
    id_map = {c: k for k, c in enumerate(sorted(c["id"] for c in doc["categories"]))}
    anns: dict[int, list] = {}
    for a in doc["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    dicts = []
    for im in sorted(doc["images"], key=lambda im: im["id"]):
        objs = []
        for a in anns.get(im["id"], []):
            obj = {k: a[k] for k in ("iscrowd", "bbox", "keypoints", "category_id") if k in a}
            segm = a.get("segmentation")
            if segm:
                if not isinstance(segm, dict):
                    segm = [p for p in segm if len(p) % 2 == 0 and len(p) >= 6]
                    if not segm:
                        continue
                obj["segmentation"] = segm
            obj["bbox_mode"] = 1
            obj["category_id"] = id_map[obj["category_id"]]
            objs.append(obj)
        dicts.append({"file_name": os.path.join(image_root, im["file_name"]), "height": im["height"],
                      "width": im["width"], "image_id": im["id"], "annotations": objs})
    return [d for d in dicts if any(a.get("iscrowd", 0) == 0 for a in d["annotations"])]


def test_detectron2_recipe_parts_that_run_here(tmp_path):
    from PIL import Image

    from ltaug.errors import InputError
    from ltaug.rebalance.factors import detectron2_factors

    work = workdir(tmp_path)
    (script,) = blocks("detectron2.md", "bash")
    shell(script, work)
    # detectron2_factors: aligned to detectron2's list (sorted ids, an image without objects left out)
    doc = json.loads((DEMO / "annotations" / "train.json").read_text())
    gone = doc["images"][4]["id"]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != gone]  # as if all its objects were crowd
    (work / "train.json").write_text(json.dumps(doc))
    dicts = detectron2_dataset_dicts(work / "train.json", DEMO / "images" / "train")
    assert gone not in {d["image_id"] for d in dicts} and len(dicts) == 29
    rf = json.loads((work / "out/demo/rf.json").read_text())
    by_id = dict(zip(rf["image_ids"], rf["repeat_factors"]))
    factors = detectron2_factors(work / "out/demo/rf.json", dicts)
    assert factors == [by_id[d["image_id"]] for d in dicts] and max(factors) > 1
    with pytest.raises(InputError, match="not in the file"):
        detectron2_factors(work / "out/demo/rf.json", dicts + [{**dicts[0], "image_id": 10**9}])

    # the recipe's code that is not a detectron2 call: copy_paste on detectron2 dataset dicts
    code = [b for b in blocks("detectron2.md", "python") if not re.search(r"^\s*(from|import) detectron2", b, re.M)]
    assert len(code) == 1 and "def copy_paste" in code[0], "the recipe's python blocks changed"
    ns: dict = {}
    os.chdir(work)
    try:
        exec(compile(code[0], "detectron2.md", "exec"), ns)
        augment = ns["copy_paste_augment"]("out/demo/bank", [c["id"] for c in doc["categories"]])
        before = after = 0
        for record in dicts[:10]:
            image = np.asarray(Image.open(record["file_name"]).convert("RGB"))
            out, boxes, classes, masks = ns["copy_paste"](record, image, augment)
            h, w = image.shape[:2]
            assert out.shape == image.shape and masks.shape == (len(classes), h, w) and boxes.shape == (len(classes), 4)
            assert classes.min() >= 0 and classes.max() < len(doc["categories"])
            for box, mask in zip(boxes, masks):  # each box on its mask
                ys, xs = np.nonzero(mask)
                assert xs.min() >= box[0] - 2 and xs.max() + 1 <= box[2] + 2 and ys.min() >= box[1] - 2
            before += sum(not a.get("iscrowd", 0) for a in record["annotations"])
            after += len(classes)
    finally:
        os.chdir(ROOT)
    assert after > before


SUPERVISION_LOAD = """
import json, sys
import supervision as sv
out = sys.argv[1]
ds = sv.DetectionDataset.from_yolo(images_directory_path=f"{out}/images", annotations_directory_path=f"{out}/labels",
                                   data_yaml_path=f"{out}/data.yaml", force_masks=True)
print(json.dumps({"images": len(ds), "classes": len(ds.classes), "objects": sum(len(d) for _, _, d in ds)}))
"""


@pytest.mark.slow
def test_supervision_loads_the_yolo_export_of_a_resampled_file(tmp_path, ultralytics_python):
    """supervision refuses a COCO file that names one image twice (a resampled file); its YOLO export
    (each repeat under its own name, STEP_repK) loads, every repeat with its objects and masks."""
    python = ultralytics_python  # supervision beside ultralytics: both need opencv-python
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "supervision"], check=True, capture_output=True)
    rs = tmp_path / "rfs.json"
    shell(f"ltaug resample {DEMO / 'annotations' / 'train.json'} --method rfs --threshold 0.3 -o {rs}", tmp_path)
    out = tmp_path / "yolo"
    shell(f"ltaug convert {rs} --to yolo --images {DEMO / 'images' / 'train'} -o {out}", tmp_path)
    proc = subprocess.run([str(python), "-c", SUPERVISION_LOAD, str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    doc = json.loads(rs.read_text())
    assert got == {"images": len(doc["images"]), "classes": len(doc["categories"]),
                   "objects": sum(not a.get("iscrowd") for a in doc["annotations"])}
