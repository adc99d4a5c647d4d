#!/usr/bin/env python
"""How fast is ``build_bank``, how big is the bank, and what does reading from it save?  A benchmark, not a test.

On the shared COCO-LT train set (or ``--annotations`` / ``--images``), in one run:

1. baseline: read + ``cv2.imdecode`` every image the bank reads (those with at least one
   non-crowd annotation), one process; images/s;
2. ``build_bank`` with 1 worker and with 2 workers (pool start-up included), each into a
   fresh temporary folder; images/s and the ratio to (1) (the bank also rasterises every
   mask, computes occlusion and writes the crops);
3. the bank's size on disk against the JPEGs it was cut from;
4. getting every object once in random order: ``Bank.get`` (two reads and the object's
   decoding) against what pasting would do without a bank (decode the source image, rasterise
   the mask, crop both).

The bank is built with the default codec (jpeg) unless ``--codec`` says otherwise;
``bench_bank_codec.py`` compares the codecs.

Each timing is the best of ``--repeat`` runs (the first build warms the page cache like
the baseline does). The load average is printed: other work on the machine inflates timings.

Usage::

    .venv/bin/python benchmarks/bench_bank.py
    .venv/bin/python benchmarks/bench_bank.py --repeat 5 --workers 1 2 4
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))
COCO_LT = REPO.parent / "shared" / "data" / "coco-lt"
MIB = 1024 * 1024


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    import cv2
    import numpy as np

    from ltaug import load_dataset
    from ltaug.io.geometry import decode
    from ltaug.io.paths import image_file_name
    from ltaug.pixels.bank import Bank, build_bank

    IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # how ltaug reads a JPEG without EXIF turns

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotations", type=Path, default=COCO_LT / "annotations" / "instances_train.json")
    ap.add_argument("--images", type=Path, default=COCO_LT / "images" / "train2017")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--codec", default="jpeg", help="jpeg (the default), png or raw")
    args = ap.parse_args()

    print(f"load average at start: {os.getloadavg()[0]:.2f}  (cpus: {os.cpu_count()})")
    ds = load_dataset(args.annotations)
    images = {im["id"]: im for im in ds.images}
    with_objects = sorted({a["image_id"] for a in ds.annotations if not a.get("iscrowd", 0)},
                          key=list(images).index)
    paths = [args.images / image_file_name(images[i]) for i in with_objects]
    jpeg_bytes = sum(p.stat().st_size for p in paths)
    n = len(paths)

    def plain_decode():
        for p in paths:
            cv2.imdecode(np.fromfile(p, np.uint8), IMREAD_FLAGS)

    plain_decode()  # warm the page cache
    t_plain, _ = best_of(args.repeat, plain_decode)
    print(f"\n{args.annotations.name}: {n} images with objects, {len(ds.annotations)} annotations")
    print(f"{'step':<42}{'s':>8}{'img/s':>9}{'x decode':>10}")
    print(f"{'read + imdecode (1 process)':<42}{t_plain:8.3f}{n / t_plain:9.1f}{1.0:10.2f}")

    with tempfile.TemporaryDirectory(prefix="ltaug-bench-bank-") as tmp:
        summary = None
        for w in args.workers:
            t = float("inf")
            for _ in range(args.repeat):
                if summary is not None:
                    shutil.rmtree(summary["path"])  # untimed: each build writes a fresh folder
                summary = build_bank(ds, args.images, Path(tmp) / "bank", workers=w, progress=False, codec=args.codec)
                t = min(t, summary["seconds"])
            print(f"{f'build_bank, {w} worker(s)':<42}{t:8.3f}{n / t:9.1f}{t / t_plain:10.2f}")
        out = Path(summary["path"])
        sizes = {f.name: f.stat().st_size for f in out.iterdir()}
        print(f"\nbank ({summary['codec']}): {summary['objects']} objects, {summary['bytes'] / MIB:.1f} MiB on disk "
              f"({summary['bytes'] / jpeg_bytes:.2f}x the {jpeg_bytes / MIB:.1f} MiB of JPEGs): "
              + ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in sorted(sizes.items())))
        print(f"flags: {summary['flags']}")

        bank = Bank(out)
        order = np.random.default_rng(0).permutation(len(bank))
        t_get, _ = best_of(args.repeat, lambda: [bank.get(int(i)) for i in order])
        anns = {a["id"]: a for a in ds.annotations}
        sample = order[: min(len(order), 300)]

        def without_bank():
            for i in sample:
                row = bank.objects[int(i)]
                im = images[int(row["image_id"])]
                img = cv2.imdecode(np.fromfile(args.images / image_file_name(im), np.uint8), IMREAD_FLAGS)
                mask = decode(anns[int(row["annotation_id"])]["segmentation"], im["height"], im["width"])
                x0, y0, x1, y1 = row["box"].tolist()
                img[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy()

        t_src, _ = best_of(args.repeat, without_bank)
        per_get, per_src = t_get / len(order) * 1e6, t_src / len(sample) * 1e6
        print(f"\nper object, random order: Bank.get {per_get:.1f} us; decode source + mask + crop "
              f"{per_src:.0f} us ({per_src / per_get:.0f}x)")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
