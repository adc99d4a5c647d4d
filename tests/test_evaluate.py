"""trainer/evaluate.py against the reference evaluators on the same detections.

COCO rules against pycocotools ``COCOeval`` (bbox and segm) on COCO-LT-mini val; APr/APc/APf
and per-class AP against a slow reference computed here from pycocotools' precision array;
LVIS federated rules against lvis-api ``LVISEval`` on an LVIS-style file; the rules one by
one; empty and perfect detections; errors. Detections are synthetic and seeded: jittered
ground-truth boxes (masks shifted a few pixels) with random scores, some ground truth
missed, duplicates, false positives.
"""
from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faster_coco_eval")
from lvis_style import build_lvis_style
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ltaug import load_dataset
from ltaug.trainer.evaluate import METRICS, evaluate, format_eval_table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VAL = SHARED / "coco-lt" / "annotations" / "instances_val.json"
CAT_INFO = SHARED / "lvis-meta" / "lvis_v1_train_cat_info.json"
DEMO_TRAIN = ROOT / "examples" / "data" / "annotations" / "train.json"
OVERALL = ("AP", "AP50", "AP75", "APs", "APm", "APl")   # pycocotools' stats[0:6]
RARE_MAX, COMMON_MAX = 3, 10                             # val image counts: r=30, c=37, f=13 classes


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


def _quiet(fn, *args, **kwargs):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def synthetic_detections(doc: dict, ann_to_rle, seed: int, *, n_false: int = 250) -> list:
    """Seeded detections: 85% of GT found (box jittered ~8%, mask shifted <= 3 px, random score),
    10% of those duplicated at a lower score, ``n_false`` random boxes of random classes, and 120
    high-scoring (>= 0.8) false positives on the (image, class) pair with the most ground truth,
    so that the detection limit (100 per image and class under COCO rules) cuts true positives."""
    rng = np.random.default_rng(seed)
    images = {im["id"]: im for im in doc["images"]}
    cat_ids = [c["id"] for c in doc["categories"]]

    def rect(im, x, y, w, h, cat, score):
        poly = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        rle = mask_utils.merge(mask_utils.frPyObjects(poly, im["height"], im["width"]))
        return {"image_id": im["id"], "category_id": cat, "bbox": [x, y, w, h], "score": score, "segmentation": rle}

    dets = []
    for a in doc["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = a["bbox"]
        j = rng.normal(0.0, 0.08, 4)
        mask = mask_utils.decode(ann_to_rle(a))
        mask = np.roll(mask, tuple(int(v) for v in rng.integers(-3, 4, 2)), axis=(0, 1))
        det = {"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.random()),
               "bbox": [x + j[0] * w, y + j[1] * h, w * (1 + j[2]), h * (1 + j[3])],
               "segmentation": mask_utils.encode(np.asfortranarray(mask))}
        dets.append(det)
        if rng.random() < 0.1:
            dets.append({**det, "score": det["score"] * 0.5})
    ids = sorted(images)
    for _ in range(n_false):
        im = images[ids[int(rng.integers(len(ids)))]]
        w, h = rng.uniform(8, 150, 2)
        dets.append(rect(im, rng.uniform(0, im["width"] - w), rng.uniform(0, im["height"] - h), w, h,
                         int(rng.choice(cat_ids)), float(rng.random())))
    pairs = defaultdict(int)
    for a in doc["annotations"]:
        pairs[a["image_id"], a["category_id"]] += 1
    (image_id, cat), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
    for _ in range(120):
        im = images[image_id]
        w, h = rng.uniform(4, 20, 2)
        dets.append(rect(im, rng.uniform(0, im["width"] - w), rng.uniform(0, im["height"] - h), w, h,
                         cat, float(rng.uniform(0.8, 1.0))))
    return dets


def perfect_detections(doc: dict, ann_to_rle) -> list:
    """Every ground-truth object (crowd regions too) detected exactly, score 1."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0,
             "segmentation": ann_to_rle(a)} for a in doc["annotations"]]


def for_reference(dets: list, iou_type: str) -> list:
    """What the reference evaluators get: a copy; for segm without boxes (mask areas, as ours)."""
    dets = copy.deepcopy(dets)
    if iou_type == "segm":
        for d in dets:
            d.pop("bbox")
    return dets


# -- COCO rules: pycocotools ---------------------------------------------------------------
@pytest.fixture(scope="module")
def coco_gt() -> COCO:
    return _quiet(COCO, str(_require(VAL)))


@pytest.fixture(scope="module")
def coco_dets(coco_gt) -> list:
    return synthetic_detections(coco_gt.dataset, coco_gt.annToRLE, seed=0)


@pytest.fixture(scope="module")
def coco_result(coco_gt, coco_dets) -> dict:
    return evaluate(VAL, coco_dets, iou_types=("bbox", "segm"), rare_max=RARE_MAX, common_max=COMMON_MAX)


@pytest.fixture(scope="module", params=["bbox", "segm"])
def pycoco(request, coco_gt, coco_dets):
    ev = COCOeval(coco_gt, _quiet(coco_gt.loadRes, for_reference(coco_dets, request.param)), request.param)
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    return request.param, ev


def test_overall_metrics_equal_pycocotools(coco_result, pycoco):
    iou_type, ev = pycoco
    ours = coco_result[iou_type]
    for name, ref in zip(OVERALL, ev.stats[:6]):
        assert ours[name] == pytest.approx(ref, abs=1e-6), name
    assert 0.1 < ours["AP"] < 0.9  # the detections are neither empty nor perfect


def test_bins_and_per_class_equal_slow_reference(coco_gt, coco_result, pycoco):
    """APr/APc/APf = mean over the bin's classes of AP_k, AP_k = mean of P[:, :, k, all, maxDets=100]."""
    iou_type, ev = pycoco
    images_of = defaultdict(set)
    for a in coco_gt.dataset["annotations"]:
        images_of[a["category_id"]].add(a["image_id"])
    precision = ev.eval["precision"]
    by_bin = defaultdict(list)
    ours = coco_result[iou_type]["per_class"]
    for k, cid in enumerate(ev.params.catIds):
        n = len(images_of[cid])
        b = "r" if n <= RARE_MAX else "c" if n <= COMMON_MAX else "f"
        p = precision[:, :, k, 0, -1]
        assert ours[cid]["bin"] == b
        if (p == -1).all():
            assert ours[cid]["ap"] is None and ours[cid]["ap50"] is None
            continue
        ap, ap50 = float(np.mean(p)), float(np.mean(p[0]))
        assert ours[cid]["ap"] == pytest.approx(ap, abs=1e-6)
        assert ours[cid]["ap50"] == pytest.approx(ap50, abs=1e-6)
        by_bin[b].append(ap)
    for b in "rcf":
        assert by_bin[b], f"test data should fill bin {b}"
        assert coco_result[iou_type][f"AP{b}"] == pytest.approx(np.mean(by_bin[b]), abs=1e-6)
        assert coco_result[iou_type]["classes_per_bin"][b] == len(by_bin[b])


def test_max_dets_is_configurable_and_matches_pycocotools(coco_gt, coco_dets):
    ours = evaluate(VAL, coco_dets, max_dets=5)["bbox"]
    ev = COCOeval(coco_gt, _quiet(coco_gt.loadRes, for_reference(coco_dets, "bbox")), "bbox")
    ev.params.maxDets = [5]
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    p = ev.eval["precision"][:, :, :, 0, -1]
    assert ours["AP"] == pytest.approx(p[p > -1].mean(), abs=1e-6)
    assert ours["AP"] < evaluate(VAL, coco_dets)["bbox"]["AP"]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_perfect_detections_give_one(coco_gt, iou_type):
    """Crowd regions detected too: pycocotools matches them as ignore regions, so still 1.0."""
    result = evaluate(VAL, perfect_detections(coco_gt.dataset, coco_gt.annToRLE), iou_types=iou_type)[iou_type]
    for name in OVERALL + ("APr", "APc"):
        assert result[name] == 1.0, name
    assert result["APf"] is None  # with the default thresholds no val class is in > 100 images
    assert {c["ap"] for c in result["per_class"].values()} <= {1.0, None}


def test_empty_detections_give_zeros(coco_gt):
    result = evaluate(VAL, [], iou_types=("bbox", "segm"))
    for iou_type in ("bbox", "segm"):
        r = result[iou_type]
        assert all(r[m] == 0.0 for m in METRICS if m != "APf") and r["APf"] is None
        for c in r["per_class"].values():
            assert (c["ap"], c["ap50"]) == ((0.0, 0.0) if c["instances"] else (None, None))
    assert result["num_detections"] == 0


def test_result_is_json_and_table_is_ordered(coco_result):
    json.dumps(coco_result, allow_nan=False)
    table = format_eval_table(coco_result)
    lines = table.splitlines()
    assert any(line.startswith("APr") for line in lines) and "bbox" in lines[3] and "segm" in lines[3]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("id ")) + 2
    rows = [line.split() for line in lines[start:] if line.strip() and not line.startswith("(")]
    per_class = coco_result["bbox"]["per_class"]
    listed = [int(r[0]) for r in rows]
    assert len(listed) == sum(c["ap"] is not None for c in per_class.values())
    keys = [("rcf".index(per_class[c]["bin"]), -per_class[c]["ap"]) for c in listed]
    assert keys == sorted(keys)


def test_inputs_are_not_modified_and_paths_work(coco_dets, tmp_path):
    ds = load_dataset(VAL)
    before_ann, before_det = copy.deepcopy(ds.annotations[:50]), copy.deepcopy(coco_dets[:50])
    boxes = [{k: d[k] for k in ("image_id", "category_id", "bbox", "score")} for d in coco_dets]
    from_memory = evaluate(ds, coco_dets, iou_types=("bbox", "segm"))
    assert ds.annotations[:50] == before_ann and coco_dets[:50] == before_det
    path = tmp_path / "results.json"
    path.write_text(json.dumps(boxes))
    assert evaluate(VAL, path)["bbox"] == from_memory["bbox"]


# -- LVIS rules: lvis-api ------------------------------------------------------------------
@pytest.fixture(scope="module")
def lvis_doc() -> dict:
    demo = json.loads(DEMO_TRAIN.read_text())
    return build_lvis_style(demo, _require(CAT_INFO))


@pytest.fixture(scope="module")
def lvis_gt_path(lvis_doc, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lvis") / "lvis_style.json"
    path.write_text(json.dumps(lvis_doc))
    return path


def _ann_to_rle(doc):
    sizes = {im["id"]: (im["height"], im["width"]) for im in doc["images"]}

    def convert(a):
        h, w = sizes[a["image_id"]]
        return mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w))
    return convert


@pytest.fixture(scope="module")
def lvis_dets(lvis_doc) -> list:
    """Synthetic detections plus, per image, detections of a negative, a not-exhaustive and an
    unverified class: 6 per image, and 310 high-scoring ones on the image with the most ground
    truth, so that LVIS's limit of 300 per image cuts true positives there."""
    dets = synthetic_detections(lvis_doc, _ann_to_rle(lvis_doc), seed=1, n_false=0)
    rng = np.random.default_rng(2)
    all_ids = [c["id"] for c in lvis_doc["categories"]]
    busiest = max(lvis_doc["images"], key=lambda im: sum(a["image_id"] == im["id"] for a in lvis_doc["annotations"]))
    for im in lvis_doc["images"]:
        unverified = sorted(set(all_ids) - set(im["neg_category_ids"]) - set(im["not_exhaustive_category_ids"]))
        flood = im is busiest
        for j in range(310 if flood else 6):
            pool = (im["neg_category_ids"], im["not_exhaustive_category_ids"], unverified)[j % 3]
            w, h = rng.uniform(8, 150, 2)
            x, y = rng.uniform(0, im["width"] - w), rng.uniform(0, im["height"] - h)
            rle = mask_utils.merge(mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]],
                                                          im["height"], im["width"]))
            dets.append({"image_id": im["id"], "category_id": int(rng.choice(pool)), "bbox": [x, y, w, h],
                         "score": float(rng.uniform(0.8, 1.0) if flood else rng.random()), "segmentation": rle})
    return dets


@pytest.fixture(scope="module")
def lvis_result(lvis_gt_path, lvis_dets) -> dict:
    return evaluate(lvis_gt_path, lvis_dets, iou_types=("bbox", "segm"))


@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")  # lvis-api's logger.warn
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_lvis_metrics_equal_lvis_api(lvis_gt_path, lvis_dets, lvis_result, iou_type):
    lvis = pytest.importorskip("lvis")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(np, "float", float, raising=False)  # lvis-api 0.5.3 still uses np.float (gone in numpy 2)
        gt = lvis.LVIS(str(lvis_gt_path))
        ev = lvis.LVISEval(gt, lvis.LVISResults(gt, for_reference(lvis_dets, iou_type)), iou_type)
        ev.run()
    ref = ev.get_results()
    ours = lvis_result[iou_type]
    assert lvis_result["federated"] and lvis_result["max_dets"] == 300
    assert lvis_result["bins_source"] == "stored LVIS frequency"
    for name in METRICS:
        assert ours[name] == pytest.approx(ref[name], abs=1e-6), name
    assert 0.1 < ours["AP"] < 0.9


def _class_ap(gt_path, dets, category_id, **kw):
    return evaluate(gt_path, dets, **kw)["bbox"]["per_class"][category_id]["ap"]


def test_federated_rules_one_by_one(lvis_doc, lvis_gt_path):
    """On perfect detections add one unmatched, top-scoring box of a class with ground truth:
    a false positive on an image that lists the class as negative or that has it exhaustively
    annotated; dropped on an image that says nothing about it; ignored where the class is
    marked not exhaustive."""
    perfect = perfect_detections(lvis_doc, _ann_to_rle(lvis_doc))
    images = lvis_doc["images"]
    positive = defaultdict(set)
    for a in lvis_doc["annotations"]:
        positive[a["image_id"]].add(a["category_id"])
    with_gt = set().union(*positive.values())

    def image_where(test):
        return next((im, c) for im in images for c in sorted(with_gt) if test(im, c))

    def extra(im, c):
        return {"image_id": im["id"], "category_id": c, "bbox": [0.0, 0.0, 3.0, 3.0], "score": 2.0}

    neg_im, neg_c = image_where(lambda im, c: c in im["neg_category_ids"])
    silent_im, silent_c = image_where(lambda im, c: c not in positive[im["id"]] and c not in im["neg_category_ids"])
    nel_im, nel_c = image_where(lambda im, c: c in im["not_exhaustive_category_ids"])
    pos_im, pos_c = image_where(lambda im, c: c in positive[im["id"]] and c not in im["not_exhaustive_category_ids"])

    assert evaluate(lvis_gt_path, perfect)["bbox"]["AP"] == 1.0
    assert _class_ap(lvis_gt_path, perfect + [extra(neg_im, neg_c)], neg_c) < 1.0
    assert _class_ap(lvis_gt_path, perfect + [extra(silent_im, silent_c)], silent_c) == 1.0
    assert _class_ap(lvis_gt_path, perfect + [extra(nel_im, nel_c)], nel_c) == 1.0
    assert _class_ap(lvis_gt_path, perfect + [extra(pos_im, pos_c)], pos_c) < 1.0
    # the same file under COCO rules: every unmatched detection is a false positive
    assert _class_ap(lvis_gt_path, perfect + [extra(silent_im, silent_c)], silent_c, federated=False) < 1.0


def test_bin_sources(lvis_gt_path, lvis_doc):
    stored = {c["id"]: c["frequency"] for c in lvis_doc["categories"]}
    per_class = evaluate(lvis_gt_path, [])["bbox"]["per_class"]
    assert {cid: c["bin"] for cid, c in per_class.items()} == stored
    recomputed = evaluate(lvis_gt_path, [], use_stored_bins=False, rare_max=1, common_max=3)
    assert recomputed["bins_source"].startswith("ground-truth image counts")
    images_of = defaultdict(set)
    for a in lvis_doc["annotations"]:
        images_of[a["category_id"]].add(a["image_id"])
    for cid, c in recomputed["bbox"]["per_class"].items():
        n = len(images_of[cid])
        assert c["bin"] == ("r" if n <= 1 else "c" if n <= 3 else "f")
    given = {cid: "f" for cid in stored}
    assert evaluate(lvis_gt_path, [], bins=given)["bbox"]["classes_per_bin"]["r"] == 0


# -- errors --------------------------------------------------------------------------------
DROP = object()


@pytest.fixture(scope="module")
def val_ds():
    return load_dataset(_require(VAL))


@pytest.mark.parametrize("change, kwargs, message", [
    ({"image_id": 999999999}, {}, "detection 1: unknown image id 999999999"),
    ({"category_id": 12}, {}, "detection 1: unknown category id 12"),
    ({"bbox": [1, 2, 3]}, {}, r"detection 1: bbox must be \[x, y, w, h\]"),
    ({"score": float("nan")}, {}, "detection 1: score nan is not finite"),
    ({"score": "high"}, {}, "detection 1: score 'high' is not finite"),
    ({"segmentation": DROP}, {"iou_types": "segm"}, "detection 1: missing segmentation"),
    ({"segmentation": [[1, 1, 5, 1, 5, 5]]}, {"iou_types": "segm"}, "detection 1: segmentation must be an RLE dict"),
    ({"segmentation": {"size": [3, 3], "counts": "9"}}, {"iou_types": "segm"},
     r"detection 1: segmentation size \[3, 3\] differs from image id"),
    ({}, {"iou_types": ("bbox", "keypoints")}, "iou_types must be"),
    ({}, {"max_dets": 0}, "max_dets must be a positive integer"),
    ({}, {"bins": {12: "r"}}, "bins: unknown category id 12"),
    ({}, {"bins": {1: "r"}}, "bins: no bin for category id"),
])
def test_errors(val_ds, change, kwargs, message):
    a = val_ds.annotations[0]
    im = next(im for im in val_ds.images if im["id"] == a["image_id"])
    rle = mask_utils.merge(mask_utils.frPyObjects([[1, 1, 6, 1, 6, 6, 1, 6]], im["height"], im["width"]))
    good = {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [1.0, 1.0, 5.0, 5.0],
            "score": 0.5, "segmentation": rle}
    bad = {k: v for k, v in {**good, **change}.items() if v is not DROP}
    dets = [good, bad]
    with pytest.raises(ValueError, match=message):
        evaluate(val_ds, dets, **kwargs)


@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")  # lvis-api's logger.warn
def test_a_converted_coco_file_scores_the_same_in_lvis_api(tmp_path):
    """The README's "equal to lvis-api" on `ltaug convert --to lvis` output of a COCO file with crowd
    regions (the demo has 6): the conversion removes them (LVIS has none), so ltaug's LVIS rules and
    lvis-api agree on the same detections."""
    lvis = pytest.importorskip("lvis")
    from ltaug.stats.frequency import to_lvis

    coco = load_dataset(DEMO_TRAIN)
    assert coco.index.ann_iscrowd.sum() == 6
    converted = to_lvis(coco, rare_max=2, common_max=5).save(tmp_path / "lvis.json")
    doc = json.loads(converted.read_text())
    dets = synthetic_detections(doc, _ann_to_rle(doc), seed=3)
    ours = evaluate(converted, dets, iou_types=("bbox",))["bbox"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(np, "float", float, raising=False)  # lvis-api 0.5.3 still uses np.float (gone in numpy 2)
        gt = lvis.LVIS(str(converted))
        ev = lvis.LVISEval(gt, lvis.LVISResults(gt, for_reference(dets, "bbox")), "bbox")
        ev.run()
    ref = ev.get_results()
    for name in METRICS:
        assert ours[name] == pytest.approx(ref[name], abs=1e-6), name
