#!/usr/bin/env python
"""What does the compressed bank cost and keep: bytes per object, PSNR, and paste throughput against the raw bank.  A benchmark, not a test.

On the shared COCO-LT train set (or ``--annotations`` / ``--images``), in one run:

1. the object bank built with each codec (``raw``, the default ``jpeg`` at quality 91, ``png``;
   ``--qualities`` adds jpeg banks at other qualities), ``--workers`` processes: build seconds, and
   KB per object (the whole folder: crops, masks, object table, meta.json, over the objects);
2. fidelity of each lossy bank against the raw one (which holds the source pixels exactly):
   PSNR over every crop pixel (one MSE over all crops), over the mask pixels only (what a paste
   shows), and per crop (median, 5th percentile, worst); masks compared for equality. For
   context, the same crops through libjpeg's own quality tables (4:4:4, optimised, quality 93)
   and WebP (quality 95, OpenCV), crops only, not written as banks;
3. ``Bank.get`` per object, every object once in random order, in microseconds (the bank's
   files in the page cache);
4. ``ltaug paste`` end to end (``run_pipeline`` of one paste step, gaussian blending, the
   engine's images/s), raw bank against jpeg bank, for two specs: bench_paste's (``uniform``, 5
   objects per image) and the command's defaults (``inverse``, 3 objects), with 1 worker (in
   this process) and ``--workers`` workers; interleaved, best of ``--repeat``. The ratio jpeg /
   raw is the figure; CPU ms per image (this process and its workers) beside it. "warm": the
   bank's files in the page cache (a bank that fits in memory, as COCO-LT's does); "cold": its
   two blob files dropped from the page cache before each run (``posix_fadvise`` DONTNEED), so
   every object is read from the disk, as from a bank larger than memory (LVIS v1 raw: ~74 GB);
5. what the default codec changes in an output: the images written by the paste step of the
   two runs of (4) (same seed, same plan: only the crops' pixels differ), PSNR of the jpeg-bank
   run's images against the raw-bank run's, and whether the annotation files are identical.

Usage::

    .venv/bin/python benchmarks/bench_bank_codec.py                 # about 4 minutes
    .venv/bin/python benchmarks/bench_bank_codec.py --repeat 5 --qualities 85 95
    .venv/bin/python benchmarks/bench_bank_codec.py --paste-only --repeat 9        # (4) and (5) only
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))
COCO_LT = REPO.parent / "shared" / "data" / "coco-lt"


def psnr(err: float, n: float) -> float:
    return math.inf if err == 0 else 10 * math.log10(255 ** 2 * n / err)


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def fidelity(raw, bank) -> dict:
    import numpy as np

    err = n = err_in = n_in = 0.0
    per_crop, masks_equal = [], True
    for i in range(len(raw)):
        (a, ma), (b, mb) = raw.get(i), bank.get(i)
        sq = ((a.astype(np.float64) - b) ** 2).sum(axis=2)
        on = ma.astype(bool)
        err, n = err + sq.sum(), n + a.size
        err_in, n_in = err_in + sq[on].sum(), n_in + 3 * on.sum()
        per_crop.append(psnr(sq.sum(), a.size))
        masks_equal &= bool(np.array_equal(ma, mb))
    p = np.array(per_crop)
    if not np.isfinite(p).any():
        return {"psnr": math.inf, "masks_equal": masks_equal}
    p = p[np.isfinite(p)]  # a crop equal to its source (flat) has no PSNR
    return {"psnr": psnr(err, n), "psnr_mask": psnr(err_in, n_in), "median": float(np.median(p)),
            "p5": float(np.percentile(p, 5)), "worst": float(p.min()), "masks_equal": masks_equal}


def reference_codecs(raw) -> dict:
    """libjpeg's quality tables and WebP on the same crops (crops only)."""
    import cv2
    import numpy as np

    out = {}
    for name, ext, params in (
            ("libjpeg tables q93 4:4:4", ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 93, cv2.IMWRITE_JPEG_OPTIMIZE, 1,
                                                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
            ("WebP q95 (4:2:0)", ".webp", [cv2.IMWRITE_WEBP_QUALITY, 95])):
        size = err = n = 0.0
        t_dec = 0.0
        for i in range(len(raw)):
            crop = raw.get(i)[0]
            buf = cv2.imencode(ext, crop, params)[1]
            t0 = time.perf_counter()
            back = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            t_dec += time.perf_counter() - t0
            size, err, n = size + buf.size, err + ((crop.astype(np.float64) - back) ** 2).sum(), n + crop.size
        out[name] = {"kb": size / len(raw) / 1000, "psnr": psnr(err, n), "decode_us": t_dec / len(raw) * 1e6}
    return out


def time_get(bank, order) -> float:
    for i in order[:100]:  # warm
        bank.get(int(i))
    t0 = time.perf_counter()
    for i in order:
        bank.get(int(i))
    return (time.perf_counter() - t0) / len(order) * 1e6


def drop_from_page_cache(folder: Path) -> None:
    """The bank's blobs out of the page cache (their pages are clean: written and synced)."""
    for name in ("pixels.bin", "masks.bin"):
        fd = os.open(folder / name, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def paste_run(ds, images: Path, out: Path, spec, workers: int, cold: bool = False) -> dict:
    from ltaug.run.engine import run_pipeline

    shutil.rmtree(out, ignore_errors=True)
    if cold:
        drop_from_page_cache(Path(spec.bank))
    cpu0 = cpu_seconds()
    summary = run_pipeline(ds, images, out, [spec], workers=workers, progress=False)
    cpu = cpu_seconds() - cpu0
    step = summary["steps_run"][0]
    return {"images_per_s": step["images_written"] / step["seconds"], "cpu_ms": cpu / step["images_written"] * 1e3,
            "pasted": sum(step["added_per_class"].values()) / step["images_written"]}


def output_psnr(a: Path, b: Path) -> dict:
    """The images the two runs wrote (images/ltaug/), compared: PSNR over all, per image median / worst."""
    import cv2
    import numpy as np

    err = n = 0.0
    per = []
    files = sorted((a / "images" / "ltaug").iterdir())
    for f in files:
        x = cv2.imread(str(f)).astype(np.float64)
        y = cv2.imread(str(b / "images" / "ltaug" / f.name))
        e = ((x - y) ** 2).sum()
        err, n = err + e, n + x.size
        per.append(psnr(e, x.size))
    same_annotations = (a / "annotations.json").read_bytes() == (b / "annotations.json").read_bytes()
    return {"images": len(files), "psnr": psnr(err, n), "median": float(np.median(per)), "worst": float(min(per)),
            "annotations_identical": same_annotations}


def main() -> None:
    from ltaug import load_dataset
    from ltaug.pixels.bank import Bank, build_bank

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotations", type=Path, default=COCO_LT / "annotations" / "instances_train.json")
    ap.add_argument("--images", type=Path, default=COCO_LT / "images" / "train2017")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--qualities", type=int, nargs="*", default=[], help="extra jpeg banks at these qualities")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--paste-only", action="store_true", help="only (4): the raw and jpeg banks, paste runs")
    args = ap.parse_args()

    print(f"load average at start: {os.getloadavg()[0]:.2f}  (cpus: {os.cpu_count()})")
    ds = load_dataset(args.annotations)
    with tempfile.TemporaryDirectory(prefix="ltaug-bench-bank-codec-") as tmp_name:
        tmp = Path(tmp_name)
        kinds = {"raw": {"codec": "raw"}, "jpeg": {}, "png": {"codec": "png"},
                 **{f"jpeg{q}": {"codec": "jpeg", "quality": q} for q in args.qualities}}
        if args.paste_only:
            kinds = {"raw": {"codec": "raw"}, "jpeg": {}}
        built = {k: build_bank(ds, args.images, tmp / k, workers=args.workers, progress=False, **kw)
                 for k, kw in kinds.items()}
        banks = {k: Bank(tmp / k) for k in kinds}
        n = len(banks["raw"])
        print(f"\n(1) {args.annotations.name}: {n} objects; built with {args.workers} workers")
        print(f"{'bank':<22}{'build s':>9}{'KB/object':>11}{'x raw':>8}")
        for k, s in built.items():
            print(f"{k + ' (' + s['codec'] + ')':<22}{s['seconds']:9.2f}{s['bytes_per_object'] / 1000:11.2f}"
                  f"{built['raw']['bytes_per_object'] / s['bytes_per_object']:8.1f}")

        if not args.paste_only:
            report_banks(banks, kinds, n)
        paste_section(args, ds, tmp)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


def report_banks(banks: dict, kinds: dict, n: int) -> None:
    """(2) and (3)."""
    import numpy as np

    print("\n(2) against the raw crops: PSNR dB over all crop pixels, over mask pixels; per crop median, p5, worst")
    print(f"{'bank':<26}{'PSNR':>7}{'in mask':>9}{'median':>8}{'p5':>7}{'worst':>7}  masks")
    for k in kinds:
        if k == "raw":
            continue
        f = fidelity(banks["raw"], banks[k])
        if math.isinf(f["psnr"]):
            print(f"{k:<26}{'exact: every pixel equal':>38}  {'equal' if f['masks_equal'] else 'DIFFER'}")
            continue
        print(f"{k:<26}{f['psnr']:7.2f}{f['psnr_mask']:9.2f}{f['median']:8.2f}{f['p5']:7.2f}{f['worst']:7.2f}  "
              f"{'equal' if f['masks_equal'] else 'DIFFER'}")
    for name, r in reference_codecs(banks["raw"]).items():
        print(f"{name:<26}{r['psnr']:7.2f}   (crops only: {r['kb']:.2f} KB/object, decode {r['decode_us']:.0f} us)")

    order = np.random.default_rng(0).permutation(n)
    print("\n(3) Bank.get, every object once in random order, us per object")
    for k in kinds:
        print(f"{k:<12}{time_get(banks[k], order):8.1f}")


def paste_section(args, ds, tmp: Path) -> None:
    """(4) and (5)."""
    import numpy as np

    from ltaug.ops import Paste

    specs = {"uniform x5 (bench_paste)": dict(objects=5, weighting="uniform"),
             "inverse x3 (the defaults)": dict(objects=3, weighting="inverse")}
    variants = {"raw": ("raw", False), "jpeg": ("jpeg", False), "raw, cold": ("raw", True),
                "jpeg, cold": ("jpeg", True)}
    runs: dict = {}
    for _ in range(args.repeat):
        for sname, kw in specs.items():
            for w in (1, args.workers):
                for vname, (bank, cold) in variants.items():
                    spec = Paste(blend="gaussian", seed=args.seed, bank=str(tmp / bank), **kw)
                    runs.setdefault((sname, w, vname), []).append(
                        paste_run(ds, args.images, tmp / "out", spec, w, cold))
    print(f"\n(4) ltaug paste end to end, {len(ds.images)} images, {args.repeat} interleaved runs of each: best "
          "images/s (the engine's), CPU ms per image (all processes, lowest); ratio jpeg / raw of the best, and "
          "the median (and range) of the ratios of the runs made back to back")
    print(f"{'spec':<27}{'workers':>8}{'pages':>7}{'raw img/s':>10}{'jpeg':>8}{'best':>7}{'median':>8}"
          f"{'range':>13}{'CPU raw':>9}{'jpeg':>7}{'/ raw':>7}{'objects':>8}")
    for sname in specs:
        for w in (1, args.workers):
            for pages, (raw_v, jpeg_v) in (("warm", ("raw", "jpeg")), ("cold", ("raw, cold", "jpeg, cold"))):
                raw_runs, jpeg_runs = runs[(sname, w, raw_v)], runs[(sname, w, jpeg_v)]
                pairs = sorted(j["images_per_s"] / r["images_per_s"] for r, j in zip(raw_runs, jpeg_runs))
                best_raw = max(r["images_per_s"] for r in raw_runs)
                best_jpeg = max(r["images_per_s"] for r in jpeg_runs)
                cpu_raw, cpu_jpeg = min(r["cpu_ms"] for r in raw_runs), min(r["cpu_ms"] for r in jpeg_runs)
                print(f"{sname:<27}{w:>8}{pages:>7}{best_raw:10.1f}{best_jpeg:8.1f}{best_jpeg / best_raw:7.3f}"
                      f"{float(np.median(pairs)):8.3f}{f'{pairs[0]:.2f}-{pairs[-1]:.2f}':>13}{cpu_raw:9.2f}"
                      f"{cpu_jpeg:7.2f}{cpu_raw / cpu_jpeg:7.3f}{jpeg_runs[0]['pasted']:8.2f}")

    print("\n(5) what the default codec changes in an output (same seed: same plan, only the crops' pixels)")
    for sname, kw in specs.items():
        outs = {}
        for bank in ("raw", "jpeg"):
            outs[bank] = tmp / f"out-{bank}"
            paste_run(ds, args.images, outs[bank], Paste(blend="gaussian", seed=args.seed, bank=str(tmp / bank),
                                                         **kw), 1)
        r = output_psnr(outs["jpeg"], outs["raw"])
        print(f"{sname:<27} {r['images']} pasted images: PSNR {r['psnr']:.2f} dB over all, per image median "
              f"{r['median']:.2f}, worst {r['worst']:.2f}; annotations.json "
              f"{'identical' if r['annotations_identical'] else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
