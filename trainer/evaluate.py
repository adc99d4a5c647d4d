"""Evaluate detections against a COCO or LVIS ground truth: AP, AP50, AP75, APs/m/l, APr/c/f, per class.

Needs numpy and faster-coco-eval (the ``train`` extra), not torch, so saved detection files
can be scored anywhere.

Evaluator
---------
Matching and accumulation run in faster-coco-eval's ``COCOeval_faster`` (C++), whose
numbers equal the reference implementations (tests/test_evaluate.py checks both to 1e-6):

* **COCO rules** (pycocotools ``COCOeval``), for ground truth whose images carry no LVIS
  negative lists. Crowd regions are ignore regions. ``max_dets`` (default 100) is applied as
  pycocotools applies it: the top-scoring ``max_dets`` detections per image *and category*.
* **LVIS federated rules** (lvis-api ``LVISEval``; faster-coco-eval ``lvis_style=True``),
  for ground truth whose images carry ``neg_category_ids`` / ``not_exhaustive_category_ids``
  (or ``federated=True``). On each image, a detection of category c is

  - evaluated normally if c has a ground-truth instance there (a positive category);
  - a false positive if unmatched and c is in ``neg_category_ids`` (verified absent);
  - dropped if c is neither positive nor negative (nobody checked: not penalised);
  - ignored if unmatched and c is in ``not_exhaustive_category_ids`` (missing labels).

  ``max_dets`` (default 300) is applied as lvis-api applies it: the top-scoring 300
  detections per image over all categories (ties keep input order), before the rules above.
  Images missing the lists count as having empty ones. Crowd annotations (LVIS has none) are
  treated as ignore regions, as in COCO.

For segm, the detections' ``bbox`` is dropped before evaluation (as detectron2 does):
pycocotools and lvis-api take a result's area from its box when one is present, which would
make APs/APm/APl of masks depend on boxes. Inputs are never modified: the evaluator works on
shallow copies, with ground-truth annotation ids renumbered 1..N (an id of 0 would read as
"unmatched" inside both reference implementations).

Definitions
-----------
The evaluator fills P[t, r, k, a] (at the last ``max_dets``): the interpolated precision
(max precision at recall >= r) for IoU threshold t in 0.50:0.05:0.95, recall level r in
0:0.01:1, class k and area range a (all; small < 32^2 <= medium < 96^2 <= large, by
ground-truth area); -1 where class k has no non-ignored ground truth in range a.

* AP_k   = mean over t, r of P[t, r, k, all]      (per-class ``ap``; ``ap50``: t = 0.50 only)
* AP     = mean of AP_k over classes with ground truth (= mean of all entries != -1, as
  pycocotools' summarize); AP50, AP75 at one t; APs/APm/APl over range a.
* APr/APc/APf = mean of AP_k over the classes of bin r/c/f that have ground truth (the LVIS
  definition). Bins: the file's stored LVIS ``frequency`` when every category has one and
  ``use_stored_bins``; otherwise from the ground truth's own image counts: r if a class is in
  <= ``rare_max`` images, c if <= ``common_max``, f above (:func:`ltaug.stats.frequency.dataset_bins`).
  Pass ``bins`` (category id -> "r"/"c"/"f") to use other bins, e.g. the training set's.

segm needs a segmentation on every ground-truth annotation (the reference evaluators fail
otherwise): when some have none, segm is skipped and ``result["skipped"]["segm"]`` says why;
asking for segm alone on such ground truth is a ValueError.

A class with no non-crowd ground-truth instance has AP None and is left out of every mean; a
mean over no class (e.g. APs without small objects) is None. With no detections every
defined AP is 0.0.
"""
from __future__ import annotations

import logging
import math
import os

import numpy as np

from ltaug.io.dataset import Dataset
from ltaug.io.read import load_dataset
from ltaug.stats.frequency import BINS, COMMON_MAX, RARE_MAX, dataset_bins, uses_stored_frequency

__all__ = ["IOU_TYPES", "METRICS", "evaluate", "format_eval_table", "load_detections"]

IOU_TYPES = ("bbox", "segm")
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
COCO_MAX_DETS, LVIS_MAX_DETS = 100, 300
_log = logging.getLogger(__name__)


def evaluate(gt, detections, *, iou_types=("bbox",), rare_max: int = RARE_MAX, common_max: int = COMMON_MAX,
             use_stored_bins: bool = True, bins: dict | None = None, max_dets: int | None = None,
             federated: bool | None = None) -> dict:
    """Score COCO-format ``detections`` against ``gt`` (an :class:`ltaug.Dataset` or a json path).

    ``detections``: a list of dicts (or the path of a COCO results json holding one) with
    ``image_id``, ``category_id``, ``score``, ``bbox`` [x, y, w, h] (for bbox) and/or
    ``segmentation`` as an RLE dict (for segm). ``federated``: None picks
    LVIS rules when the ground truth's images carry LVIS negative lists (module docstring).

    Returns a JSON-serialisable dict (NaN is never used: undefined values are None)::

        {"evaluator": str, "federated": bool, "max_dets": int, "bins_source": str,
         "num_images": int, "num_detections": int,
         "bbox": {"AP": float|None, ..., "APf": ..., "classes_per_bin": {"r": n, ...},
                  "per_class": {category_id: {"name", "bin", "ap", "ap50", "instances"}}},
         "segm": {...},
         "skipped": {"segm": reason}}      # only when an asked-for iou type was skipped

    ``instances`` counts a class's non-crowd ground-truth annotations; ``classes_per_bin`` the
    classes with such instances, i.e. those averaged. (``json.dumps`` turns the integer
    category ids into strings.) Raises ValueError for an unknown image or category id, a
    malformed detection, or bad arguments.
    """
    # the train extra; imported on use
    from faster_coco_eval import __version__ as fce_version

    ds = gt if isinstance(gt, Dataset) else load_dataset(gt)
    if isinstance(detections, (str, os.PathLike)):
        detections = load_detections(detections)
    iou_types = (iou_types,) if isinstance(iou_types, str) else tuple(iou_types)
    if not iou_types or any(t not in IOU_TYPES for t in iou_types):
        raise ValueError(f"iou_types must be a non-empty selection of {IOU_TYPES}, got {iou_types!r}")
    skipped = _skipped_iou_types(ds, iou_types)
    iou_types = tuple(t for t in iou_types if t not in skipped)
    if not iou_types:
        raise ValueError(f"segm needs a segmentation on every ground-truth annotation: {skipped['segm']}")
    if federated is None:
        federated = any("neg_category_ids" in im or "not_exhaustive_category_ids" in im for im in ds.images)
    if max_dets is None:
        max_dets = LVIS_MAX_DETS if federated else COCO_MAX_DETS
    if isinstance(max_dets, bool) or not isinstance(max_dets, (int, np.integer)) or max_dets < 1:
        raise ValueError(f"max_dets must be a positive integer, got {max_dets!r}")
    cat_bins, bins_source = _category_bins(ds, bins, rare_max, common_max, use_stored_bins)
    _check_detections(ds, detections, iou_types)
    num_given = len(detections)
    if federated:
        detections = _top_per_image(detections, max_dets)

    ix = ds.index
    instances = np.bincount(ix.ann_category_pos[~ix.ann_iscrowd], minlength=ix.num_categories)
    result = {"evaluator": f"faster-coco-eval {fce_version} COCOeval_faster"
                           + (" (lvis_style: LVIS federated rules)" if federated else " (COCO rules)"),
              "federated": bool(federated), "max_dets": int(max_dets), "bins_source": bins_source,
              "num_images": ix.num_images, "num_detections": num_given}
    if skipped:
        result["skipped"] = skipped
    for iou_type in iou_types:
        precision, params = _run_evaluator(ds, detections, iou_type, federated, max_dets, cat_bins)
        result[iou_type] = _summarise(ds, precision, params, cat_bins, instances)
    return result


# -- inputs ------------------------------------------------------------------------------
def _category_bins(ds: Dataset, bins, rare_max, common_max, use_stored_bins) -> tuple[list, str]:
    ids = ds.index.category_ids.tolist()
    if bins is not None:
        unknown = sorted(set(bins) - set(ids))
        if unknown:
            raise ValueError(f"bins: unknown category id {unknown[0]}")
        missing = [c for c in ids if c not in bins]
        if missing:
            raise ValueError(f"bins: no bin for category id {missing[0]}")
        bad = [c for c in ids if bins[c] not in BINS]
        if bad:
            raise ValueError(f"bins: category id {bad[0]} has bin {bins[bad[0]]!r}, not one of r, c, f")
        return [bins[c] for c in ids], "given"
    if use_stored_bins and uses_stored_frequency(ds):
        return dataset_bins(ds).tolist(), "stored LVIS frequency"
    out = dataset_bins(ds, rare_max=rare_max, common_max=common_max).tolist()
    return out, f"ground-truth image counts: r <= {rare_max} < c <= {common_max} < f"


def _skipped_iou_types(ds: Dataset, iou_types) -> dict:
    """{"segm": reason} when segm is asked for but some ground-truth annotations have no segmentation."""
    from ltaug.io.geometry import NONE, segmentation_kind

    if "segm" not in iou_types:
        return {}
    missing = sum(segmentation_kind(a.get("segmentation")) == NONE for a in ds.annotations)
    if not missing:
        return {}
    return {"segm": f"{missing} of {len(ds.annotations)} ground-truth annotations have no segmentation"}


def _check_detections(ds: Dataset, detections, iou_types) -> None:
    """One clear ValueError, naming the detection's position and the id, for the first bad record."""
    if not isinstance(detections, (list, tuple)):
        raise ValueError(f"detections must be a list of dicts, got {type(detections).__name__}")  # noqa: TRY004
    ix = ds.index
    sizes = dict(zip(ix.image_ids.tolist(), zip(ix.image_heights.tolist(), ix.image_widths.tolist())))
    cats = set(ix.category_ids.tolist())
    needed = ("image_id", "category_id", "score") + tuple("bbox" if t == "bbox" else "segmentation" for t in iou_types)
    for i, d in enumerate(detections):
        if not isinstance(d, dict):
            raise ValueError(f"detection {i}: not a dict")  # noqa: TRY004
        missing = [k for k in needed if k not in d]
        if missing:
            raise ValueError(f"detection {i}: missing {', '.join(missing)}")
        if d["image_id"] not in sizes:
            raise ValueError(f"detection {i}: unknown image id {d['image_id']!r} (not in the ground truth)")
        if d["category_id"] not in cats:
            raise ValueError(f"detection {i}: unknown category id {d['category_id']!r} (not in the ground truth)")
        if not _is_finite_number(d["score"]):
            raise ValueError(f"detection {i}: score {d['score']!r} is not finite")
        if "bbox" in iou_types and len(d["bbox"]) != 4:
            raise ValueError(f"detection {i}: bbox must be [x, y, w, h], got {d['bbox']!r}")
        if "segm" in iou_types:
            seg = d["segmentation"]
            if not (isinstance(seg, dict) and "counts" in seg and "size" in seg):
                raise ValueError(f"detection {i}: segmentation must be an RLE dict with 'size' and 'counts'")
            if tuple(seg["size"]) != sizes[d["image_id"]]:
                raise ValueError(f"detection {i}: segmentation size {list(seg['size'])} differs from image id "
                                 f"{d['image_id']} (height, width) {list(sizes[d['image_id']])}")


def _is_finite_number(x) -> bool:
    try:
        return not isinstance(x, bool) and math.isfinite(x)
    except TypeError:
        return False


def _top_per_image(detections: list, k: int) -> list:
    """The ``k`` highest-scoring detections of each image (ties: earlier first), in input order."""
    n = len(detections)
    if n == 0:
        return detections
    image = np.fromiter((d["image_id"] for d in detections), dtype=np.int64, count=n)
    score = np.fromiter((d["score"] for d in detections), dtype=np.float64, count=n)
    order = np.lexsort((np.arange(n), -score, image))          # by image, score desc, position
    sorted_image = image[order]
    starts = np.flatnonzero(np.r_[True, sorted_image[1:] != sorted_image[:-1]])
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    keep = np.zeros(n, dtype=bool)
    keep[order[rank < k]] = True
    return [d for d, kept in zip(detections, keep) if kept]


# -- evaluator ---------------------------------------------------------------------------
def _run_evaluator(ds: Dataset, detections, iou_type, federated, max_dets, cat_bins):
    """Run COCOeval_faster on copies; return P[t, r, k, a] at the last max_dets, and the params."""
    from faster_coco_eval import COCO, COCOeval_faster

    anns = []
    for i, a in enumerate(ds.annotations):
        a = {**a, "id": i + 1}
        if a.get("area") is None:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])
        anns.append(a)
    # lvis_style reads each category's frequency to group classes; give the bins we use.
    cats = [{**c, "frequency": b} for c, b in zip(ds.categories, cat_bins)]
    coco_gt = COCO({"images": list(ds.images), "annotations": anns, "categories": cats},
                   print_function=_log.debug)
    dets = []
    for d in detections:
        d = dict(d)
        if iou_type == "segm":
            d.pop("bbox", None)
            seg = d["segmentation"]
            if isinstance(seg["counts"], bytes):
                d["segmentation"] = {**seg, "counts": seg["counts"].decode("ascii")}
        else:
            d.pop("segmentation", None)
        dets.append(d)
    coco_dt = coco_gt.loadRes(dets)
    ev = COCOeval_faster(coco_gt, coco_dt, iouType=iou_type, lvis_style=federated, print_function=_log.debug)
    ev.params.maxDets = [int(max_dets)]                         # AP uses only the last value
    ev.evaluate()
    ev.accumulate()
    precision = np.asarray(ev.eval["precision"])[..., -1]     # [T, R, K, A] at maxDets[-1]
    return precision, ev.params


def _mean_valid(p: np.ndarray):
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else None


def _summarise(ds: Dataset, precision, params, cat_bins, instances) -> dict:
    ix = ds.index
    ids = ix.category_ids.tolist()
    if list(params.catIds) != sorted(ids):
        raise RuntimeError("evaluator category order differs from the ground truth's")  # never expected
    k_of = {c: k for k, c in enumerate(params.catIds)}               # evaluator's (sorted) order
    t50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
    t75 = int(np.argmin(np.abs(params.iouThrs - 0.75)))
    area = {lbl: i for i, lbl in enumerate(params.areaRngLbl)}
    p_all = precision[..., area["all"]]                               # [T, R, K]
    out = {"AP": _mean_valid(p_all), "AP50": _mean_valid(p_all[t50]), "AP75": _mean_valid(p_all[t75]),
           "APs": _mean_valid(precision[..., area["small"]]), "APm": _mean_valid(precision[..., area["medium"]]),
           "APl": _mean_valid(precision[..., area["large"]])}
    per_class = {}
    for pos, cid in enumerate(ids):
        p = p_all[:, :, k_of[cid]]
        per_class[cid] = {"name": ix.category_names[pos], "bin": cat_bins[pos], "ap": _mean_valid(p),
                          "ap50": _mean_valid(p[t50]), "instances": int(instances[pos])}
    for b in BINS:
        aps = [c["ap"] for c in per_class.values() if c["bin"] == b and c["ap"] is not None]
        out[f"AP{b}"] = float(np.mean(aps)) if aps else None
    out["classes_per_bin"] = {b: sum(1 for c in per_class.values() if c["bin"] == b and c["ap"] is not None)
                              for b in BINS}
    out["per_class"] = per_class
    return out


# -- table -------------------------------------------------------------------------------
def _fmt(v, width: int = 7) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.3f}"


def format_eval_table(result: dict) -> str:
    """Fixed-width text: overall metrics, then r/c/f, then one row per class (by bin r, c, f,
    then AP high to low), with AP / AP50 per iou type; classes without ground truth are counted,
    not listed."""
    types = [t for t in IOU_TYPES if t in result]
    lines = [f"evaluator  {result['evaluator']}, max {result['max_dets']} detections",
             f"bins       {result['bins_source']}"]
    lines += [f"{t:<10} skipped: {why}" for t, why in result.get("skipped", {}).items()]
    lines += ["", f"{'metric':<8}" + "".join(f"{t:>9}" for t in types), "-" * (8 + 9 * len(types))]
    for m in METRICS:
        if m == "APr":
            lines.append("")
        lines.append(f"{m:<8}" + "".join(f"  {_fmt(result[t][m])}" for t in types))
    first = result[types[0]]
    counts = "  ".join(f"{b}={first['classes_per_bin'][b]}" for b in BINS)
    lines += [f"classes with ground truth: {counts}", ""]

    head = f"{'id':>6}  {'name':<24} {'bin':>3} {'inst':>6}" + "".join(f"  {t + ' AP':>8} {'AP50':>7}" for t in types)
    lines += [head, "-" * len(head)]

    def key(item):
        cid, c = item
        return BINS.index(c["bin"]), -c["ap"], cid

    rows = [(cid, c) for cid, c in first["per_class"].items() if c["ap"] is not None]
    for cid, c in sorted(rows, key=key):
        row = f"{cid:>6}  {c['name'][:24]:<24} {c['bin']:>3} {c['instances']:>6}"
        for t in types:
            pc = result[t]["per_class"][cid]
            row += f"  {_fmt(pc['ap'], 8)} {_fmt(pc['ap50'])}"
        lines.append(row)
    if len(rows) < len(first["per_class"]):
        lines.append(f"({len(first['per_class']) - len(rows)} classes without ground truth not listed)")
    return "\n".join(lines)


def load_detections(path: str | os.PathLike) -> list:
    """Read a COCO results json (a list of detection dicts)."""
    from ltaug.io.jsonio import read_json

    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: a results file holds a list of detections, got {type(data).__name__}")  # noqa: TRY004
    return data
