#!/usr/bin/env python
"""Does ``ltaug paste`` read a bank lazily: is its peak memory the same for a bank 10x and 100x larger?  A benchmark, not a test.

On the shared COCO-LT train set (or ``--annotations`` / ``--images``), in one run:

1. the object bank of the train set is built once (default codec, jpeg), into a temporary folder;
2. it is replicated 10x and 100x: the blobs copied end to end that many times, the object table
   repeated with its offsets moved to each copy (so every row is a distinct object on disk,
   and a draw lands on any copy), ``meta.json`` recounted and its checksums recomputed;
3. the same paste step (``--objects`` objects per image, ``uniform`` weighting: every bank
   object equally likely, so a larger bank spreads the draws over more of its file) runs on the
   288 images with each bank, each run in a fresh Python process (``run_pipeline``, 1 worker in
   that process, then ``--workers`` in a pool), ``--repeat`` times, interleaved;
4. printed: each process's peak RSS (``getrusage`` ``ru_maxrss``: the process itself, and the
   largest of its pool workers), the ratio to the 1x bank's in the same run, images/s.

The peak includes the Python process with numpy, OpenCV and the dataset (the floor that a bank
of any size shares). What a bank adds: the planner (the run's own process) reads two columns of
the object table (``table``: 112 bytes per object, mapped; its columns are read whole, so this
part does grow with the bank, by at most the table's size); the renderers (the same process
with 1 worker, the pool's workers otherwise) read each object they paste, its table row and its
two blob spans, with ``os.pread`` (no memory map: a mapped file's pages count in RSS, and the
kernel maps 64 KiB around every page touched, so random reads of a mapped 2 GB bank added
about 130 KiB of RSS per object drawn).

Usage::

    .venv/bin/python benchmarks/bench_bank_memory.py                     # 1x, 10x, 100x (about 2 GB of disk)
    .venv/bin/python benchmarks/bench_bank_memory.py --scales 1 10 --repeat 3
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))
COCO_LT = REPO.parent / "shared" / "data" / "coco-lt"
MIB = 1024 * 1024


def replicate(src: Path, dst: Path, times: int) -> None:
    """``src`` bank copied ``times`` times into one bank at ``dst`` (distinct rows, distinct bytes)."""
    import numpy as np

    from ltaug.io.jsonio import dumps, file_sha256
    from ltaug.pixels.bank import MASKS, META, OBJECTS, PIXELS

    dst.mkdir(parents=True)
    table = np.load(src / OBJECTS)
    meta = json.loads((src / META).read_text())
    sizes = {name: (src / name).stat().st_size for name in (PIXELS, MASKS)}
    parts = []
    for k in range(times):
        t = table.copy()
        t["pixel_offset"] += k * sizes[PIXELS]
        t["mask_offset"] += k * sizes[MASKS]
        parts.append(t)
    np.save(dst / OBJECTS, np.concatenate(parts), allow_pickle=False)
    for name in (PIXELS, MASKS):
        with open(src / name, "rb") as fh:
            data = fh.read()
        with open(dst / name, "wb") as out:
            for _ in range(times):
                out.write(data)
    for c in meta["categories"]:
        c["objects"] *= times
    meta["counts"]["objects"] *= times
    meta["files"] = {n: (dst / n).stat().st_size for n in (OBJECTS, PIXELS, MASKS)}
    meta["sha256"] = {n: file_sha256(dst / n) for n in (OBJECTS, PIXELS, MASKS)}
    (dst / META).write_bytes(dumps(meta, indent=True))


def child(args) -> None:
    """One paste run in this fresh process; prints its figures as json."""
    from ltaug import load_dataset
    from ltaug.ops import Paste
    from ltaug.run.engine import run_pipeline

    ds = load_dataset(args.annotations)
    spec = Paste(objects=args.objects, weighting="uniform", blend="gaussian", seed=args.seed, bank=str(args.child))
    out = Path(args.out)
    start = time.perf_counter()
    summary = run_pipeline(ds, args.images, out, [spec], workers=args.workers, progress=False)
    wall = time.perf_counter() - start
    step = summary["steps_run"][0]
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "workers_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                      "images_per_s": step["images_written"] / step["seconds"], "wall_s": wall,
                      "pasted": sum(step["added_per_class"].values())}))


def run_child(args, bank: Path, workers: int, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", str(bank), "--workers", str(workers), "--out", str(out),
           "--annotations", str(args.annotations), "--images", str(args.images), "--objects", str(args.objects),
           "--seed", str(args.seed)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"child failed: {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotations", type=Path, default=COCO_LT / "annotations" / "instances_train.json")
    ap.add_argument("--images", type=Path, default=COCO_LT / "images" / "train2017")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--workers", type=int, default=2, help="the pool's size in the second run of each scale")
    ap.add_argument("--objects", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--codec", default="jpeg")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    from ltaug import load_dataset
    from ltaug.pixels.bank import build_bank

    print(f"load average at start: {os.getloadavg()[0]:.2f}  (cpus: {os.cpu_count()})")
    with tempfile.TemporaryDirectory(prefix="ltaug-bench-bank-memory-") as tmp_name:
        tmp = Path(tmp_name)
        s = build_bank(load_dataset(args.annotations), args.images, tmp / "x1", workers=2, progress=False,
                       codec=args.codec)
        banks = {1: tmp / "x1"}
        for n in args.scales:
            if n != 1:
                t0 = time.perf_counter()
                replicate(tmp / "x1", tmp / f"x{n}", n)
                print(f"replicated {n}x in {time.perf_counter() - t0:.1f} s")
                banks[n] = tmp / f"x{n}"
        runs: dict = {}
        for _ in range(args.repeat):
            for n in args.scales:
                for w in (1, args.workers):
                    runs.setdefault((n, w), []).append(run_child(args, banks[n], w, tmp / "out"))
        print(f"\nbank of {s['objects']} objects ({s['codec']}); paste uniform, {args.objects} objects per image, "
              f"{args.repeat} runs of each, peak of each run's process (best = lowest)")
        print(f"{'bank':>6}{'objects':>10}{'MiB':>9}{'table':>7}{'workers':>9}{'RSS MiB':>9}{'x 1x':>7}"
              f"{'pool RSS':>10}{'x 1x':>7}{'img/s':>8}")
        for w in (1, args.workers):
            base = min(r["rss_mib"] for r in runs[(args.scales[0], w)])
            base_pool = min(r["workers_rss_mib"] for r in runs[(args.scales[0], w)])
            for n in args.scales:
                rs = runs[(n, w)]
                rss, pool = min(r["rss_mib"] for r in rs), min(r["workers_rss_mib"] for r in rs)
                size = sum(f.stat().st_size for f in banks[n].iterdir()) / MIB
                table = (banks[n] / "objects.npy").stat().st_size / MIB
                pool_text = (f"{pool:10.0f}{pool / base_pool:7.2f}" if w > 1 else f"{'-':>10}{'':>7}")
                print(f"{n:>5}x{s['objects'] * n:>10}{size:9.0f}{table:7.1f}{w:>9}{rss:9.0f}{rss / base:7.2f}"
                      f"{pool_text}{max(r['images_per_s'] for r in rs):8.0f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
