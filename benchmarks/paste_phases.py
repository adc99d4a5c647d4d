"""Where copy-paste's time goes beyond the JPEG floor, phase by phase, in one process.

    .venv/bin/python benchmarks/paste_phases.py [--codec jpeg|raw] [--repeat 5]

Plans a gaussian paste (5 objects tried per image, uniform weighting: what bench_paste.py runs)
over the COCO-LT-mini train images with a bank built once (``--codec``), then times each phase
over all images, in turn, ``--repeat`` times, and keeps the best: the floor's parts (read, decode,
encode at quality 95, write as the engine writes: temporary file, rename), the header check
(``read_header``), the SHA-256 the engine records per image, and ``render_paste`` (minus the
copy of the decoded image it works on); then, in a second pass, the parts of ``render_paste``
by function. CPU time (``time.process_time``), so another process on the machine matters less
than for images/s (it still shares the caches). A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ltaug.io.imagecheck import read_header
from ltaug.io.read import load_dataset
from ltaug.ops import Paste
from ltaug.pixels import copy_paste, masks
from ltaug.pixels.bank import Bank, build_bank

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-lt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotations", type=Path, default=DATA / "annotations" / "instances_train.json")
    ap.add_argument("--images", type=Path, default=DATA / "images" / "train2017")
    ap.add_argument("--codec", default="jpeg", choices=("jpeg", "png", "raw"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    ds = load_dataset(args.annotations)
    with tempfile.TemporaryDirectory() as tmp:
        bank_dir, out = Path(tmp) / "bank", Path(tmp) / "out"
        build_bank(ds, args.images, bank_dir, workers=2, progress=False, codec=args.codec)
        bank = Bank(bank_dir)
        spec = Paste(objects=5, weighting="uniform", blend="gaussian")
        recipes, _, _ = spec.plan(ds, {"bank": str(bank_dir)})
        recipes = list(recipes)
        records = {im["id"]: im for im in ds.images}
        anns: dict = {}
        for a in ds.annotations:
            anns.setdefault(a["image_id"], []).append(a)
        files = [str(args.images / records[r["image_id"]]["file_name"]) for r in recipes]
        raw = [np.fromfile(f, np.uint8) for f in files]
        decoded = [cv2.imdecode(b, cv2.IMREAD_COLOR) for b in raw]
        encoded = [cv2.imencode(".jpg", d, [cv2.IMWRITE_JPEG_QUALITY, 95])[1] for d in decoded]

        def write() -> None:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            for i, e in enumerate(encoded):
                path = f"{out}/{i}.jpg"
                with open(path + ".tmp", "wb") as fh:
                    fh.write(e.data)
                os.replace(path + ".tmp", path)

        def paste() -> None:
            for r, d in zip(recipes, decoded):
                copy_paste.render_paste(d.copy(), anns.get(r["image_id"], []), r, bank, spec)

        phases = {"read": lambda: [np.fromfile(f, np.uint8) for f in files],
                  "decode": lambda: [cv2.imdecode(b, cv2.IMREAD_COLOR) for b in raw],
                  "encode": lambda: [cv2.imencode(".jpg", d, [cv2.IMWRITE_JPEG_QUALITY, 95]) for d in decoded],
                  "write": write, "header": lambda: [read_header(b.data) for b in raw],
                  "sha256": lambda: [hashlib.sha256(e.data).digest() for e in encoded],
                  "render_paste": paste, "copy": lambda: [d.copy() for d in decoded]}
        best = dict.fromkeys(phases, float("inf"))
        for _ in range(args.repeat):
            for name, fn in phases.items():
                t = time.process_time()
                fn()
                best[name] = min(best[name], time.process_time() - t)
        n = len(recipes)
        ms = {k: v / n * 1000 for k, v in best.items()}
        ms["paste_op"] = ms.pop("render_paste") - ms.pop("copy")
        floor = ms["read"] + ms["decode"] + ms["encode"] + ms["write"]
        extra = ms["paste_op"] + ms["header"] + ms["sha256"]
        print(json.dumps({k: round(v, 3) for k, v in ms.items()}))
        print(f"{n} images, {sum(len(r['objects']) for r in recipes) / n:.2f} objects each, bank codec {args.codec}: "
              f"floor {floor:.3f} ms, paste adds {extra:.3f} ms: floor / (floor + paste) = {floor / (floor + extra):.3f}")
        print("inside render_paste, ms per image (CPU):")
        for name, ms_ in _inside(paste, n, bank).items():
            print(f"  {name:16s} {ms_:.3f}")


def _inside(paste, n: int, bank: Bank) -> dict[str, float]:
    """CPU ms per image of render_paste's parts (wrapped for one pass; the wrappers cost a little)."""
    spent: dict[str, float] = {}

    def timed(owner, name: str, label: str):
        fn = getattr(owner, name)

        def wrapper(*a, **k):
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - t
        setattr(owner, name, wrapper)
        return fn

    saved = [(copy_paste, "resize_object", timed(copy_paste, "resize_object", "resize")),
             (copy_paste, "paste_object", timed(copy_paste, "paste_object", "blend")),
             (copy_paste, "_occlude", timed(copy_paste, "_occlude", "occlusion")),
             (masks, "local_runs", timed(masks, "local_runs", "visible runs")),
             (masks, "rle_from_runs", timed(masks, "rle_from_runs", "visible RLE")),
             (bank, "get", timed(bank, "get", "bank.get"))]
    try:
        paste()
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)
        bank.__dict__.pop("get", None)
    return {k: v / n * 1000 for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}


if __name__ == "__main__":
    main()
