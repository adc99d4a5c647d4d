#!/usr/bin/env python
"""What does a sample cost in CopyPaste, Mosaic and MixUp, against albumentations' HorizontalFlip?  A benchmark, not a test.

On the bundled demo train set (examples/data: 30 real COCO images with their instance masks),
in one process:

1. every image, its masks (N x H x W uint8), COCO boxes and category ids are read once,
   as RGB (``CocoSource``); an object bank of the same set is built into a temporary folder
   (or ``--bank``);
2. each transform runs alone in ``A.Compose([t], bbox_params=coco + labels, seed=0)`` with
   ``p=1``, called on every image in turn with ``image``, ``masks``, ``bboxes``, ``labels``:
   ``HorizontalFlip`` (the baseline: one flip of the image and of every mask), ``CopyPaste``
   (1 to 3 objects, gaussian blending, the defaults otherwise), ``Mosaic`` (640 x 640) and
   ``MixUp``, their other images from an in-memory list of the same samples (the transform's
   own cost), and ``Mosaic`` / ``MixUp`` again with a ``CocoSource`` (each call also reads
   and decodes the other images and their masks, as a data loader without a cache would);
3. one round is one pass over the 30 images per transform, the transforms interleaved; the
   best of ``--repeat`` rounds is reported as ms per sample, with its ratio to HorizontalFlip
   in the same run. OpenCV keeps its default threads (``--threads`` to set them; a DataLoader
   worker usually runs with 1).

The load average is printed at the start and at the end: other work on the machine inflates
the timings (the ratios less than the milliseconds).

Usage::

    .venv/bin/python benchmarks/bench_transforms.py
    .venv/bin/python benchmarks/bench_transforms.py --repeat 20 --threads 1
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))
DEMO = REPO / "examples" / "data"


def main() -> None:
    import albumentations as A
    import cv2

    from ltaug import load_dataset
    from ltaug.pixels.bank import Bank, build_bank
    from ltaug.transforms import CocoSource, CopyPaste, MixUp, Mosaic

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotations", type=Path, default=DEMO / "annotations" / "train.json")
    ap.add_argument("--images", type=Path, default=DEMO / "images" / "train")
    ap.add_argument("--bank", type=Path, help="an object bank of --annotations (default: build one in a temp folder)")
    ap.add_argument("--repeat", type=int, default=10, help="rounds; the best is reported (default 10)")
    ap.add_argument("--threads", type=int, help="cv2.setNumThreads (default: OpenCV's own)")
    args = ap.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    print(f"load average at start: {os.getloadavg()[0]:.2f}  (cpus: {os.cpu_count()}, "
          f"OpenCV threads: {cv2.getNumThreads()}, albumentations {A.__version__})")

    source = CocoSource(args.annotations, args.images)  # RGB, as albumentations expects
    samples = [source[i] for i in range(len(source))]
    objects = sum(len(s["labels"]) for s in samples)
    pixels = sum(s["image"].shape[0] * s["image"].shape[1] for s in samples) / len(samples)
    print(f"{args.annotations}: {len(samples)} images (mean {pixels / 1e3:.0f} kpx), {objects} objects with masks")

    with tempfile.TemporaryDirectory() as tmp:
        bank_dir = args.bank
        if bank_dir is None:
            bank_dir = Path(tmp) / "bank"
            build_bank(load_dataset(args.annotations), args.images, bank_dir, workers=1, progress=False)
        bank = Bank(bank_dir)
        transforms = {
            "HorizontalFlip": A.HorizontalFlip(p=1.0),
            "CopyPaste (1-3 objects, gaussian)": CopyPaste(bank, objects=(1, 3), p=1.0),
            "Mosaic 640x640 (in-memory source)": Mosaic(samples, size=(640, 640), p=1.0),
            "MixUp (in-memory source)": MixUp(samples, p=1.0),
            "Mosaic 640x640 (CocoSource: reads 3)": Mosaic(source, size=(640, 640), p=1.0),
            "MixUp (CocoSource: reads 1)": MixUp(source, p=1.0),
        }
        pipelines = {name: A.Compose([t], bbox_params=A.BboxParams(format="coco", label_fields=["labels"]), seed=0)
                     for name, t in transforms.items()}
        best = dict.fromkeys(pipelines, float("inf"))
        for _ in range(args.repeat):
            for name, aug in pipelines.items():
                start = time.perf_counter()
                for s in samples:
                    aug(image=s["image"], masks=s["masks"], bboxes=s["bboxes"], labels=s["labels"])
                best[name] = min(best[name], (time.perf_counter() - start) / len(samples))

    base = best["HorizontalFlip"]
    print(f"\nbest of {args.repeat} rounds, per sample:")
    print(f"{'transform':<40}{'ms/sample':>10}{'x HorizontalFlip':>18}")
    for name, t in best.items():
        print(f"{name:<40}{1e3 * t:10.2f}{t / base:18.1f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
