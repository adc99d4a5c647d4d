#!/usr/bin/env python
"""The peers' copy-paste, timed for ``bench_paste.py``; runs under the peers' venv (``peers_env.sh``).

Prints one json line: ``{"peer", "available", "label", "what", "versions", "results":
{"floor": {workers: run}, PEER: {workers: run}}}``, or ``"available": false`` with a
``"reason"``. The floor (read + decode + encode + write) is measured here too, interleaved
with the peer, with the same job and pool as ``bench_paste.py``.

Per image, the peer's operation (timed as the job's ``op`` stage) does what a user's dataset
would do between decode and encode:

* ``albumentationsx``: rasterise the image's non-crowd annotations (``COCO.annToMask``) into
  the ``(N, H, W)`` masks ``CopyAndPaste`` needs to drop occluded objects ("prepare"), then
  ``A.Compose([A.CopyAndPaste(blend_mode="gaussian", p=1)], bbox_params=coco boxes)`` with
  ``--objects`` donors ("paste"). The donors are objects of other images (non-crowd, area at
  least ``MIN_AREA`` px, as ltaug's bank's default ``min_area``), drawn uniformly with a
  seeded generator per image, and cut out before the clock starts (image crop + mask crop
  around the mask's box: a bank, as ltaug pastes from one).
* ``ultralytics``: build the ``Instances`` (boxes, polygons resampled to 1,000 points as
  ``YOLODataset.update_labels_info`` does per image) from labels converted before the clock
  starts as ``convert_coco`` does ("prepare"), then ``CopyPaste(mode="flip")`` with ``p`` set
  per image so that ``min(--objects, eligible)`` of the image's own objects are pasted
  ("paste").
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_paste import interleaved

MIN_AREA = 32  # px, ltaug's bank's default min_area


def load_coco(path: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _objects(coco, image_id: int) -> list[dict]:
    return [a for a in coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]


def setup_albumentationsx(coco, image_ids: list[int], paths: list[Path], objects: int, seed: int):
    """The timed op, its label, and what it pastes."""
    import albumentations as A
    import cv2
    from bench_paste import IMREAD_FLAGS

    pool = [a for a in coco.dataset["annotations"] if not a.get("iscrowd", 0) and a["area"] >= MIN_AREA]
    plan = []
    for i, image_id in enumerate(image_ids):
        others = [a for a in pool if a["image_id"] != image_id]
        rng = np.random.default_rng([seed, i])
        plan.append([others[j] for j in rng.choice(len(others), size=min(objects, len(others)), replace=False)])
    donors = {}  # annotation id -> (image crop, mask crop, category): cut once, before timing
    index = {image_id: i for i, image_id in enumerate(image_ids)}
    needed = sorted({a["id"]: a for row in plan for a in row}.values(), key=lambda a: a["image_id"])
    for k, a in enumerate(needed):
        if k == 0 or needed[k - 1]["image_id"] != a["image_id"]:
            img = cv2.imdecode(np.fromfile(paths[index[a["image_id"]]], np.uint8), IMREAD_FLAGS)
        mask = coco.annToMask(a)
        ys, xs = np.nonzero(mask)
        if len(ys):
            box = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            donors[a["id"]] = (img[box].copy(), mask[box].copy(), a["category_id"])

    transform = A.Compose([A.CopyAndPaste(blend_mode="gaussian", p=1.0)],
                          bbox_params=A.BboxParams(coord_format="coco", label_fields=["category_id"],
                                                   clip_bboxes_on_input=True),
                          seed=seed, telemetry=False)

    def op(img, i):
        t0 = time.perf_counter()
        h, w = img.shape[:2]
        anns = _objects(coco, image_ids[i])
        masks = np.stack([coco.annToMask(a) for a in anns]) if anns else np.zeros((0, h, w), np.uint8)
        bboxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        meta = [{"image": donors[a["id"]][0], "mask": donors[a["id"]][1],
                 "bbox_labels": {"category_id": donors[a["id"]][2]}} for a in plan[i] if a["id"] in donors]
        t1 = time.perf_counter()
        out = transform(image=img, masks=masks, bboxes=bboxes, category_id=[a["category_id"] for a in anns],
                        copy_paste_metadata=meta)
        t2 = time.perf_counter()
        return out["image"], {"prepare": (t1 - t0) * 1000, "paste": (t2 - t1) * 1000, "pasted": len(meta)}

    what = ("A.CopyAndPaste(blend_mode='gaussian', blend_sigma_range=(1, 3), p=1): objects of OTHER images "
            "(pre-cut crops + masks), shrunk to fit, uniform position, alpha = whole-image GaussianBlur of the "
            "union mask; occluded targets dropped via (N,H,W) masks")
    return op, "albumentationsx CopyAndPaste (gaussian)", what


def setup_ultralytics(coco, image_ids: list[int], paths: list[Path], objects: int, seed: int):
    from ultralytics.data.augment import CopyPaste
    from ultralytics.data.converter import merge_multi_segment
    from ultralytics.utils.instance import Instances
    from ultralytics.utils.metrics import bbox_ioa
    from ultralytics.utils.ops import resample_segments

    labels = []  # per image: cls (N, 1), xyxy boxes (N, 4), polygons [(K, 2)], p; as convert_coco + cache
    for image_id in image_ids:
        w = coco.imgs[image_id]["width"]
        anns = [a for a in _objects(coco, image_id) if isinstance(a["segmentation"], list) and a["segmentation"]]
        boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        segs = [np.concatenate(merge_multi_segment(a["segmentation"]), axis=0).astype(np.float32)
                if len(a["segmentation"]) > 1 else np.array(a["segmentation"][0], np.float32).reshape(-1, 2)
                for a in anns]
        flipped = boxes.copy()
        flipped[:, [0, 2]] = w - boxes[:, [2, 0]]
        eligible = int((bbox_ioa(flipped, boxes) < 0.30).all(1).sum()) if len(boxes) else 0
        p = min(1.0, objects / eligible) if eligible else 0.0
        cls = np.array([[a["category_id"]] for a in anns], np.float32).reshape(-1, 1)
        labels.append((cls, boxes, segs, p))
    transform = CopyPaste(p=1.0, mode="flip")

    def op(img, i):
        t0 = time.perf_counter()
        cls, boxes, segs, p = labels[i]
        if not segs:
            return img, {}
        n_points = max(1000, max(len(s) for s in segs) + 1)
        segments = np.stack(resample_segments(list(segs), n=n_points), axis=0)
        sample = {"img": img, "cls": cls, "instances": Instances(boxes.copy(), segments, bbox_format="xyxy",
                                                                 normalized=False)}
        t1 = time.perf_counter()
        transform.p = p
        out = transform(sample)
        t2 = time.perf_counter()
        return out["img"], {"prepare": (t1 - t0) * 1000, "paste": (t2 - t1) * 1000,
                            "pasted": len(out["cls"]) - len(cls)}

    what = ("CopyPaste(p, mode='flip'): mirrored copies of the SAME image's objects whose flipped box covers "
            "< 0.30 of every box (ioa), hard paste (cv2.drawContours mask + cv2.copyTo), no blending; p set per "
            "image to paste min(objects, eligible)")
    return op, "ultralytics CopyPaste (flip, hard)", what


SETUPS = {"albumentationsx": (setup_albumentationsx, ("albumentationsx", "pycocotools")),
          "ultralytics": (setup_ultralytics, ("ultralytics", "torch", "pycocotools"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", choices=sorted(SETUPS), required=True)
    ap.add_argument("--quality", type=int, required=True)
    ap.add_argument("--annotations", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--objects", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import importlib.metadata as md

    import cv2

    setup, packages = SETUPS[args.peer]
    try:
        versions = ", ".join(f"{p} {md.version(p)}" for p in packages) + f", OpenCV {cv2.__version__}"
        coco = load_coco(args.annotations)
        image_ids = [im["id"] for im in coco.dataset["images"]]
        paths = [args.images / coco.imgs[i]["file_name"] for i in image_ids]
        op, label, what = setup(coco, image_ids, paths, args.objects, args.seed)
    except (ImportError, md.PackageNotFoundError) as e:
        print(json.dumps({"peer": args.peer, "available": False, "reason": f"{type(e).__name__}: {e}"}))
        return
    out_dir = Path(tempfile.mkdtemp(prefix=f"ltaug-bench-{args.peer}-"))
    try:
        results = interleaved(paths, {"floor": None, args.peer: op}, args.workers, args.repeat,
                              quality=args.quality, out_dir=out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    print(json.dumps({"peer": args.peer, "available": True, "label": label, "what": what, "versions": versions,
                      "results": results}))


if __name__ == "__main__":
    sys.exit(main())
