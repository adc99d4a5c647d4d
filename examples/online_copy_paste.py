"""Online copy-paste, mosaic and mixup inside your own data loader (ltaug.transforms).

    .venv/bin/python examples/online_copy_paste.py             # on the bundled demo data
    .venv/bin/python examples/online_copy_paste.py --epochs 2 --out out/online

What it does:

1. builds an object bank of the demo train set (what ``ltaug bank`` writes) unless ``--bank``
   names one;
2. wraps the demo set in a small map-style dataset, the kind you already have: item i is one
   image with its instance masks, COCO boxes and category ids, passed through an
   albumentations pipeline with ``CopyPaste`` (rare classes first), one of ``Mosaic`` /
   ``MixUp``, and a flip;
3. runs it with a plain Python loop (shuffle, batch, collate to a list: no torch), prints how
   many objects and how many rare-class objects the batches hold before and after, checks that
   every sample's masks, boxes and labels still line up, and that the same seed gives the same
   batches; writes a preview of the first batch with masks and boxes drawn;
4. if torch is installed, runs the same dataset under ``torch.utils.data.DataLoader`` with two
   worker processes, each reseeded from its worker seed. ltaug itself never imports torch:
   step 4 is skipped without it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from ltaug import load_dataset  # noqa: E402
from ltaug.pixels.bank import Bank, build_bank  # noqa: E402
from ltaug.pool import opencv_threads  # noqa: E402
from ltaug.transforms import CocoSource, CopyPaste, MixUp, Mosaic, tight_box  # noqa: E402

DATA = ROOT / "examples" / "data"
TRAIN, IMAGES = DATA / "annotations" / "train.json", DATA / "images" / "train"
RARE_MAX = 3  # a class with at most this many instances in the train set counts as rare here


class AugmentedImages:
    """A map-style dataset as you would write one: image i of a COCO file, augmented.

    ``self.images[i]`` reads the image, its masks (N x H x W), COCO boxes and category ids
    (any reader giving those would do); ``self.transform`` is an albumentations Compose.
    """

    def __init__(self, images: CocoSource, transform: A.Compose):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item = self.images[i]
        out = self.transform(image=item["image"], masks=list(item["masks"]), bboxes=item["bboxes"],
                             labels=item["labels"])
        out["objects_before"] = item["labels"]
        return out


def pipeline(bank: Bank, others: CocoSource, seed: int) -> A.Compose:
    return A.Compose([
        CopyPaste(bank, objects=(1, 3), weighting="inverse", blend="gaussian", p=0.8),
        A.OneOf([Mosaic(others, size=(640, 640)), MixUp(others)], p=0.3),
        A.HorizontalFlip(p=0.5),
    ], bbox_params=A.BboxParams(format="coco", label_fields=["labels"]), seed=seed)


def batches(dataset, batch_size: int, seed: int, epoch: int):
    """Shuffle (seeded per epoch), cut into batches, collate to a list of samples: no torch."""
    order = np.random.default_rng([seed, epoch]).permutation(len(dataset))
    for start in range(0, len(order), batch_size):
        yield [dataset[int(i)] for i in order[start:start + batch_size]]


def check(sample: dict) -> None:
    """Masks, boxes and labels describe the same objects: one of each per object, each box on its mask.

    A box the transforms made (pasted, cut, moved) is its mask's tight box; an untouched one is
    the file's float box, which in COCO can be off the rasterised mask by a few pixels: the
    check asks that each box's centre lie within 2 px of its mask's tight box, and the other way round.
    """
    masks, boxes, labels = sample["masks"], sample["bboxes"], sample["labels"]
    assert len(masks) == len(boxes) == len(labels), (len(masks), len(boxes), len(labels))
    for m, (x, y, w, h) in zip(masks, boxes):
        x0, y0, x1, y1 = tight_box(m)
        for (cx, cy), (a0, b0, a1, b1) in (((x + w / 2, y + h / 2), (x0, y0, x1, y1)),
                                           (((x0 + x1) / 2, (y0 + y1) / 2), (x, y, x + w, y + h))):
            assert a0 - 2 <= cx <= a1 + 2 and b0 - 2 <= cy <= b1 + 2, ((x, y, w, h), (x0, y0, x1, y1))


def preview(samples: list[dict], path: Path, names: dict) -> None:
    """The samples side by side (height 320), masks tinted, boxes and class names drawn."""
    tiles = []
    rng = np.random.default_rng(0)
    for s in samples:
        img = s["image"].copy()
        for m, (x, y, w, h), label in zip(s["masks"], s["bboxes"], s["labels"]):
            colour = rng.integers(64, 256, 3).tolist()
            img[m.astype(bool)] = (0.5 * img[m.astype(bool)] + 0.5 * np.array(colour)).astype(np.uint8)
            cv2.rectangle(img, (round(x), round(y)), (round(x + w), round(y + h)), colour, 2)
            cv2.putText(img, names.get(label, str(label)), (round(x), max(12, round(y) - 3)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        scale = 320 / img.shape[0]
        tiles.append(cv2.resize(img, (round(img.shape[1] * scale), 320)))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack(tiles), cv2.COLOR_RGB2BGR))  # the samples are RGB


def run_epoch(loader, rare: set) -> tuple[list, dict]:
    stats = {"samples": 0, "before": 0, "after": 0, "rare_before": 0, "rare_after": 0}
    first = None
    start = time.perf_counter()
    for batch in loader:
        first = first or batch
        for s in batch:
            check(s)
            stats["samples"] += 1
            stats["before"] += len(s["objects_before"])
            stats["after"] += len(s["labels"])
            stats["rare_before"] += sum(c in rare for c in s["objects_before"])
            stats["rare_after"] += sum(c in rare for c in s["labels"])
    stats["seconds"] = time.perf_counter() - start
    return first, stats


def report(what: str, st: dict) -> None:
    print(f"{what}: {st['samples']} samples in {st['seconds']:.2f} s "
          f"({1000 * st['seconds'] / max(1, st['samples']):.0f} ms each); objects {st['before']} -> {st['after']}, "
          f"rare-class objects {st['rare_before']} ({st['rare_before'] / max(1, st['before']):.0%}) -> "
          f"{st['rare_after']} ({st['rare_after'] / max(1, st['after']):.0%})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bank", type=Path, help="an object bank (default: build one of the demo set under --out)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "online")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    bank_dir = args.bank or args.out / "bank"
    if args.bank is None and not (bank_dir / "meta.json").is_file():
        build_bank(load_dataset(TRAIN), IMAGES, bank_dir, workers=1, progress=False)
    bank = Bank(bank_dir)
    counts = bank.class_counts()
    rare = {c for c, n in counts.items() if 0 < n <= RARE_MAX}
    names = {c["id"]: c["name"] for c in bank.meta["categories"]}
    source = CocoSource(TRAIN, IMAGES)
    print(f"{bank}; {len(rare)} rare classes (<= {RARE_MAX} instances); "
          f"CopyPaste picks a rare class with probability "
          f"{sum(p for c, p in CopyPaste(bank).class_probabilities().items() if c in rare):.2f}")

    # 3. a plain loop: no torch anywhere
    dataset = AugmentedImages(source, pipeline(bank, source, args.seed))
    for epoch in range(args.epochs):
        first, st = run_epoch(batches(dataset, args.batch_size, args.seed, epoch), rare)
        report(f"plain loop, epoch {epoch}", st)
        if epoch == 0:
            preview(first, args.out / "preview.jpg", names)
    a, b = (next(batches(AugmentedImages(source, pipeline(bank, source, args.seed)), 4, args.seed, 0))
            for _ in range(2))
    same = all(np.array_equal(x["image"], y["image"]) and x["labels"] == y["labels"] for x, y in zip(a, b))
    print(f"same seed, same first batch: {same}; preview of the first batch: {args.out / 'preview.jpg'}")
    if not same:
        return 1

    # 4. the same dataset under torch's DataLoader, when torch is installed (ltaug does not need it)
    try:
        import torch
        from torch.utils.data import DataLoader, get_worker_info
    except ImportError:
        print("torch is not installed: skipped the DataLoader run (ltaug itself needs no torch)")
        return 0

    def reseed(worker_id: int) -> None:  # workers start from copies of one generator: give each its own
        info = get_worker_info()
        info.dataset.transform.set_random_seed(info.seed % 2 ** 32)

    loader = DataLoader(AugmentedImages(source, pipeline(bank, source, args.seed)), batch_size=args.batch_size,
                        shuffle=True, num_workers=2, collate_fn=list, worker_init_fn=reseed,
                        generator=torch.Generator().manual_seed(args.seed))
    for epoch in range(args.epochs):
        with opencv_threads(1):  # workers fork here and inherit one OpenCV thread (see ltaug.pool)
            it = iter(loader)
        _, st = run_epoch(it, rare)
        report(f"torch DataLoader (2 workers), epoch {epoch}", st)
    return 0


if __name__ == "__main__":
    sys.exit(main())
