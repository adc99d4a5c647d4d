#!/usr/bin/env python
"""Is ltaug's load + index fast at LVIS scale?  A benchmark, not a test.

1. Synthesises, deterministically (``numpy.random.default_rng(--seed)``), an LVIS-v1-sized
   annotation file with the real LVIS v1 class spread, read from
   ``../shared/data/lvis-meta/lvis_v1_train_cat_info.json``: the 1,203 category records with
   all their fields; ~100,170 images (640 x 330..480 or 330..480 x 640, with LVIS's
   ``coco_url``, ``flickr_url``, ``date_captured``, ``license``, ``neg_category_ids``,
   ``not_exhaustive_category_ids``); for every class exactly ``instance_count`` annotations
   spread over exactly ``image_count`` distinct images (1,270,141 annotations at --scale 1),
   each with a ``--points``-point polygon inside its image, its tight ``bbox`` and its
   shoelace ``area`` (no ``iscrowd``, as in LVIS). ``--scale`` shrinks images and per-class
   counts proportionally (each class keeps >= 1 instance in >= 1 image; the category
   records then carry the scaled counts, ``frequency`` stays the real one). The file is
   written with orjson and cached under ``$TMPDIR/ltaug-bench/`` keyed by seed, scale and
   points, so reruns skip the synthesis (``--regenerate`` forces it).
2. Times, in the same run, each loader in its own spawned process (so each one's peak RSS is
   its own, not cumulative):
   * pycocotools ``COCO(path)`` (``json.load`` + ``createIndex``; prints suppressed),
   * lvis-api ``LVIS(path)`` (``json.load`` + ``_create_index``),
   * ltaug ``load_dataset(path)`` (orjson ``read_json`` + ``check_document`` + ``build_index``,
     all inside it), then ``dataset_stats`` and ``ds.save`` (orjson + fsync).
   The json-parse part of each loader is timed by wrapping the function the library looks
   up (``pycocotools.coco.json.load``, ``lvis.lvis.json.load``, ``ltaug.io.dataset.read_json``
   / ``check_document``); nothing in the libraries is changed. Each timing is repeated
   ``--repeat`` times (a fresh process each time, loaders interleaved) and the best is kept.
3. Prints a table (best seconds, of which cyclic-GC seconds, peak RSS) and the ratios
   ltaug load+index / ``COCO()`` and / ``LVIS()``. ``--profile`` runs the loaders under
   cProfile in their processes and prints where the time goes (timings are then inflated).

Usage::

    .venv/bin/python benchmarks/bench_io.py --scale 0.1        # quick (~1 min)
    .venv/bin/python benchmarks/bench_io.py                    # LVIS v1 scale (minutes, ~6 GB RAM)
    .venv/bin/python benchmarks/bench_io.py --only ltaug coco --profile
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import hashlib
import io
import json
import math
import multiprocessing
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
LVIS_META = REPO.parent / "shared" / "data" / "lvis-meta"
CAT_INFO = LVIS_META / "lvis_v1_train_cat_info.json"
LVIS_V1_TRAIN_IMAGES = 100_170
LVIS_V1_TRAIN_ANNOTATIONS = 1_270_141
SYNTH_VERSION = 1  # bump whenever the synthesis changes, so stale cached files are not reused
LOADERS = ("coco", "lvis", "ltaug")
MIB = 1024 * 1024
TIME_KEYS = ("s", "user", "sys", "gc_s")


# -- measuring inside a worker process ---------------------------------------------------------
def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far (getrusage; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _GcClock:
    """Seconds spent in cyclic garbage collection, via ``gc.callbacks``."""

    def __init__(self):
        self.total = 0.0
        self._start = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase, info):
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


class _Steps:
    """Records seconds, GC seconds and peak RSS of named steps in a worker."""

    def __init__(self):
        self.gc = _GcClock()
        self.rows: dict[str, dict] = {}
        self.start_rss = _peak_rss_mib()

    @contextlib.contextmanager
    def step(self, name: str):
        gc0, r0, t0 = self.gc.total, resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        try:
            yield
        finally:
            t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            self.rows[name] = {"s": t1 - t0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                               "gc_s": self.gc.total - gc0, "rss": r1.ru_maxrss / 1024}

    def derive(self, name: str, a: str, b: str, sign: int) -> None:
        """Row ``name`` = row ``a`` + sign * row ``b`` (times); its peak RSS is the later one's."""
        ra, rb = self.rows[a], self.rows[b]
        row = {k: ra[k] + sign * rb[k] for k in TIME_KEYS}
        row["rss"] = max(ra["rss"], rb["rss"])
        self.rows[name] = row

    def wrap(self, module, attr: str, name: str):
        """Replace ``module.attr`` (a function the library looks up at call time) by a timed call."""
        inner = getattr(module, attr)

        def timed(*args, **kwargs):
            with self.step(name):
                return inner(*args, **kwargs)

        setattr(module, attr, timed)


@contextlib.contextmanager
def _maybe_profile(enabled: bool, out: dict, top: int = 30):
    if not enabled:
        yield
        return
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        buf = io.StringIO()
        st = pstats.Stats(prof, stream=buf).strip_dirs()
        buf.write(f"--- top {top} by own time (tottime) ---\n")
        st.sort_stats("tottime").print_stats(top)
        buf.write(f"--- top {top} by cumulative time ---\n")
        st.sort_stats("cumulative").print_stats(top)
        out["profile"] = buf.getvalue()


def _timed_json_module(steps: _Steps, name: str):
    """A stand-in for the ``json`` module whose ``load`` is timed as step ``name``."""
    import types

    def load(fh, *args, **kwargs):
        with steps.step(name):
            return json.load(fh, *args, **kwargs)

    return types.SimpleNamespace(load=load, loads=json.loads, dump=json.dump, dumps=json.dumps)


def worker_coco(path: str, profile: bool) -> dict:
    import pycocotools.coco as pc

    steps, out = _Steps(), {}
    pc.json = _timed_json_module(steps, "json.load")
    with _maybe_profile(profile, out), steps.step("COCO(path)"), contextlib.redirect_stdout(io.StringIO()):
        coco = pc.COCO(path)
    steps.derive("createIndex", "COCO(path)", "json.load", -1)
    out.update(rows=steps.rows, start_rss=steps.start_rss, check={"annotations": len(coco.anns), "images": len(coco.imgs)})
    return out


def worker_lvis(path: str, profile: bool) -> dict:
    import logging

    import lvis.lvis as ll

    logging.getLogger(ll.__name__).setLevel(logging.WARNING)
    steps, out = _Steps(), {}
    ll.json = _timed_json_module(steps, "json.load")
    with _maybe_profile(profile, out), steps.step("LVIS(path)"):
        api = ll.LVIS(path)
    steps.derive("_create_index", "LVIS(path)", "json.load", -1)
    out.update(rows=steps.rows, start_rss=steps.start_rss, check={"annotations": len(api.anns), "images": len(api.imgs)})
    return out


def worker_ltaug(path: str, profile: bool) -> dict:
    import numpy as np

    import ltaug.io.dataset as ld
    from ltaug import load_dataset
    from ltaug.stats.summary import dataset_stats

    steps, out = _Steps(), {}
    steps.wrap(ld, "read_json", "read_json (orjson)")
    steps.wrap(ld, "check_document_columns", "check_document (+ columns)")
    steps.wrap(ld, "build_index", "build_index")
    save_dir = Path(tempfile.mkdtemp(prefix="ltaug-bench-save-"))
    try:
        with _maybe_profile(profile, out):
            with steps.step("load_dataset(path)"):
                ds = load_dataset(path)
            with steps.step(".index (built by load_dataset)"):
                ix = ds.index
            with steps.step("dataset_stats"):
                stats = dataset_stats(ds)
            with steps.step("ds.save (orjson + fsync)"):
                saved = ds.save(save_dir / "saved.json")
        saved_mib = saved.stat().st_size / MIB
        steps.derive("load+index", "load_dataset(path)", ".index (built by load_dataset)", +1)
    finally:
        shutil.rmtree(save_dir, ignore_errors=True)
    cats = ds.categories
    inst_ok = int(np.count_nonzero(ix.instance_counts == np.array([c["instance_count"] for c in cats])))
    img_ok = int(np.count_nonzero(ix.image_counts == np.array([c["image_count"] for c in cats])))
    s = stats["summary"]
    out.update(rows=steps.rows, start_rss=steps.start_rss, saved_mib=saved_mib, check={
        "annotations": ix.num_annotations, "images": ix.num_images, "categories": ix.num_categories,
        "instance_count_matches": inst_ok, "image_count_matches": img_ok, "kind": ds.kind,
        "images_without_annotations": s["images_without_annotations"], "gini": s["gini"],
        "imbalance_ratio": s["imbalance_ratio"], "bins": s["bins"]})
    return out


WORKERS = {"coco": worker_coco, "lvis": worker_lvis, "ltaug": worker_ltaug}


# -- synthesis ---------------------------------------------------------------------------------
def cache_path(seed: int, scale: float, points: int) -> Path:
    return Path(tempfile.gettempdir()) / "ltaug-bench" / f"lvis_v1_synth_seed{seed}_scale{scale:g}_pts{points}_v{SYNTH_VERSION}.json"


def synthesize(seed: int, scale: float, points: int) -> dict:
    """The LVIS-style document (see the module docstring); deterministic in (seed, scale, points)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cats = sorted(json.loads(CAT_INFO.read_text()), key=lambda c: c["id"])
    n_c = len(cats)
    cat_ids = np.array([c["id"] for c in cats], dtype=np.int64)
    n_img = max(1, round(LVIS_V1_TRAIN_IMAGES * scale))
    inst = np.array([max(1, round(c["instance_count"] * scale)) for c in cats], dtype=np.int64)
    imgc = np.array([max(1, min(int(i), round(c["image_count"] * scale), n_img)) for c, i in zip(cats, inst)],
                    dtype=np.int64)

    # images: COCO-like sparse ids in random order, 640 on the long side
    image_ids = rng.choice(max(600_000, 6 * n_img), n_img, replace=False) + 1
    landscape = rng.random(n_img) < 0.75
    short = rng.integers(330, 481, n_img)
    widths = np.where(landscape, 640, short)
    heights = np.where(landscape, short, 640)

    # annotations: per class, image_count distinct images, each with >= 1 of its instance_count
    ann_pos, ann_cpos = [], []
    for k in range(n_c):
        chosen = rng.choice(n_img, int(imgc[k]), replace=False)
        extra = chosen[rng.integers(0, imgc[k], int(inst[k] - imgc[k]))]
        ann_pos += [chosen, extra]
        ann_cpos.append(np.full(int(inst[k]), k, dtype=np.int64))
    ann_pos, ann_cpos = np.concatenate(ann_pos), np.concatenate(ann_cpos)
    order = np.lexsort((ann_cpos, ann_pos))  # grouped by image (in image-list order), then class
    ann_pos, ann_cpos = ann_pos[order], ann_cpos[order]
    n_a = ann_pos.size

    # geometry: a star-shaped polygon with `points` vertices inside a box inside the image
    W, H = widths[ann_pos].astype(np.float64), heights[ann_pos].astype(np.float64)
    fw = np.exp(rng.uniform(math.log(0.02), math.log(0.6), n_a))
    fh = np.clip(fw * np.exp(rng.uniform(-0.7, 0.7, n_a)), 0.02, 0.95)
    bw, bh = fw * W, fh * H
    x0, y0 = rng.random(n_a) * (W - bw), rng.random(n_a) * (H - bh)
    step = 2 * math.pi / points
    ang = np.arange(points) * step + rng.uniform(-0.3, 0.3, (n_a, points)) * step
    rad = rng.uniform(0.55, 1.0, (n_a, points))
    px = np.round((x0 + bw / 2)[:, None] + (bw / 2)[:, None] * rad * np.cos(ang), 2)
    py = np.round((y0 + bh / 2)[:, None] + (bh / 2)[:, None] * rad * np.sin(ang), 2)
    del ang, rad, W, H, fw, fh, bw, bh, x0, y0
    area = 0.5 * np.abs(np.sum(px * np.roll(py, -1, 1) - np.roll(px, -1, 1) * py, axis=1))
    xmin, ymin = px.min(1), py.min(1)
    boxes = np.round(np.stack([xmin, ymin, px.max(1) - xmin, py.max(1) - ymin], 1), 2)
    seg = np.empty((n_a, 2 * points))
    seg[:, 0::2], seg[:, 1::2] = px, py
    del px, py, xmin, ymin

    ann_img_ids = image_ids[ann_pos].tolist()
    ann_cat_ids = cat_ids[ann_cpos].tolist()
    annotations = [
        {"area": a, "id": i, "segmentation": [s], "image_id": im, "bbox": b, "category_id": c}
        for i, (a, s, im, b, c) in enumerate(zip(np.round(area, 2).tolist(), seg.tolist(), ann_img_ids,
                                                boxes.tolist(), ann_cat_ids), start=1)
    ]
    del seg, boxes, area, ann_img_ids, ann_cat_ids

    # image records with LVIS negatives (absent classes) and not-exhaustive lists (present classes)
    pairs = np.unique(ann_pos * n_c + ann_cpos)
    pair_img, pair_cat = pairs // n_c, pairs % n_c
    bounds = np.searchsorted(pair_img, np.arange(n_img + 1))
    n_neg = rng.integers(0, 13, n_img)
    neg_draws = rng.integers(0, n_c, (n_img, 12))
    ne_pick = np.where(rng.random(n_img) < 0.15, rng.integers(0, 1 << 30, n_img), -1)
    day, hh, mm, ss = (rng.integers(1, 29, n_img), rng.integers(0, 24, n_img),
                       rng.integers(0, 60, n_img), rng.integers(0, 60, n_img))
    farm, server, secret = rng.integers(1, 10, n_img), rng.integers(1000, 9000, n_img), rng.integers(0, 1 << 40, n_img)
    licenses = rng.integers(1, 9, n_img)
    images = []
    for p in range(n_img):
        present = pair_cat[bounds[p]:bounds[p + 1]]
        pset = set(present.tolist())
        neg = sorted({int(cat_ids[k]) for k in neg_draws[p, :n_neg[p]].tolist() if k not in pset})
        not_exh = [int(cat_ids[present[ne_pick[p] % present.size]])] if ne_pick[p] >= 0 and present.size else []
        iid = int(image_ids[p])
        images.append({
            "date_captured": f"2013-11-{day[p]:02d} {hh[p]:02d}:{mm[p]:02d}:{ss[p]:02d}",
            "neg_category_ids": neg,
            "id": iid,
            "license": int(licenses[p]),
            "height": int(heights[p]),
            "width": int(widths[p]),
            "flickr_url": f"http://farm{farm[p]}.staticflickr.com/{server[p]}/{iid * 7919}_{secret[p]:010x}_z.jpg",
            "coco_url": f"http://images.cocodataset.org/train2017/{iid:012d}.jpg",
            "not_exhaustive_category_ids": not_exh,
        })

    categories = [dict(c) for c in cats]
    if scale != 1.0:  # keep the records consistent with the scaled file; frequency stays the real one
        for c, i, m in zip(categories, inst.tolist(), imgc.tolist()):
            c["instance_count"], c["image_count"] = i, m
    return {
        "info": {"description": f"synthetic LVIS v1 train (ltaug benchmark, seed {seed}, scale {scale:g})",
                 "version": "1.0", "year": 2024, "contributor": "ltaug benchmarks/bench_io.py",
                 "date_created": "2024-01-01"},
        "annotations": annotations,
        "images": images,
        "licenses": [{"url": f"http://creativecommons.org/licenses/{i}/2.0/", "id": i, "name": f"license {i}"}
                     for i in range(1, 9)],
        "categories": categories,
    }


def worker_synthesize(path: str, seed: int, scale: float, points: int) -> dict:
    import orjson

    t0 = time.perf_counter()
    doc = synthesize(seed, scale, points)
    t1 = time.perf_counter()
    raw = orjson.dumps(doc)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, out)  # a crashed run never leaves a half-written cache file
    return {"synth_s": t1 - t0, "write_s": time.perf_counter() - t1, "rss": _peak_rss_mib(),
            "images": len(doc["images"]), "annotations": len(doc["annotations"])}


# -- the driver (a lean parent: it never holds the dataset) ------------------------------------
def run_in_process(fn, *args):
    """Run ``fn(*args)`` in a fresh spawned interpreter; its peak RSS is its own."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:  # also warms the page cache before the first loader runs
        for chunk in iter(lambda: fh.read(16 * MIB), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _loadavg() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def print_table(best: dict, selected, start_rss: dict) -> None:
    # (label, loader, row key, indent)
    layout = [
        ("pycocotools COCO(path)", "coco", "COCO(path)", 0),
        ("json.load", "coco", "json.load", 1),
        ("createIndex", "coco", "createIndex", 1),
        ("lvis-api LVIS(path)", "lvis", "LVIS(path)", 0),
        ("json.load", "lvis", "json.load", 1),
        ("_create_index", "lvis", "_create_index", 1),
        ("ltaug load_dataset(path)", "ltaug", "load_dataset(path)", 0),
        ("read_json (orjson)", "ltaug", "read_json (orjson)", 1),
        ("check_document (+ columns)", "ltaug", "check_document (+ columns)", 1),
        ("build_index", "ltaug", "build_index", 1),
        ("ltaug load + index", "ltaug", "load+index", 0),
        ("ltaug dataset_stats", "ltaug", "dataset_stats", 0),
        ("ltaug ds.save (orjson + fsync)", "ltaug", "ds.save (orjson + fsync)", 0),
    ]
    w = 34
    print(f"{'step':<{w}} {'wall s':>7} {'user s':>7} {'sys s':>7} {'GC s':>7} {'peak RSS MiB':>13} {'above start':>12}")
    print("-" * (w + 59))
    for label, loader, key, indent in layout:
        if loader not in selected:
            continue
        r = best[loader][key]
        name = ("  " * indent + label)
        print(f"{name:<{w}} {r['s']:7.2f} {r['user']:7.2f} {r['sys']:7.2f} {r['gc_s']:7.2f} "
              f"{r['rss']:13.0f} {r['rss'] - start_rss[loader]:12.0f}")
    print("wall s: per step, the fastest of the repeats (user/sys, GC and RSS of that run); user/sys: getrusage CPU\n"
          "seconds of the step (sys is mostly page faults); GC s: time in Python's cyclic GC (gc.callbacks).\n"
          "peak RSS: getrusage ru_maxrss of the loader's own process at the end of that step; 'above start': minus\n"
          "the RSS of that process before loading (interpreter + imports: "
          + ", ".join(f"{n} {start_rss[n]:.0f}" for n in selected) + " MiB); the ltaug rows\n"
          "are cumulative within its process (load, then index, stats, save)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Example: .venv/bin/python benchmarks/bench_io.py --scale 0.1")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic file (default 0)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of LVIS v1 train: images and per-class counts (default 1.0)")
    ap.add_argument("--points", type=int, default=8, help="vertices per polygon (default 8)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs per loader, best kept (default 1 at --scale >= 1, else 3)")
    ap.add_argument("--only", nargs="+", choices=LOADERS, default=list(LOADERS), help="loaders to run")
    ap.add_argument("--profile", action="store_true", help="run the loaders under cProfile and print the hot spots")
    ap.add_argument("--regenerate", action="store_true", help="synthesise again even when a cached file exists")
    ap.add_argument("--file", type=Path, default=None, help="benchmark this annotation file instead of a synthetic one")
    args = ap.parse_args(argv)
    if args.scale <= 0 or args.points < 3:
        ap.error("--scale must be > 0 and --points >= 3")
    repeat = args.repeat or (1 if args.scale >= 1 else 3)
    selected = [name for name in LOADERS if name in args.only]

    print(f"bench_io: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {_loadavg()}, "
          f"repeat {repeat} (best kept), loaders {', '.join(selected)}")
    if args.file is not None:
        path = args.file
        print(f"file      {path} ({path.stat().st_size / MIB:.0f} MiB, given with --file)")
    else:
        path = cache_path(args.seed, args.scale, args.points)
        if path.exists() and not args.regenerate:
            print(f"file      {path}\n          reused from the cache (seed {args.seed}, scale {args.scale:g}, "
                  f"{args.points}-point polygons); --regenerate to synthesise it again")
        else:
            if not CAT_INFO.exists():
                print(f"bench_io: {CAT_INFO} not found (the real LVIS v1 class spread)", file=sys.stderr)
                return 2
            print(f"synthesising (seed {args.seed}, scale {args.scale:g}) from {CAT_INFO.name} ...", flush=True)
            r = run_in_process(worker_synthesize, str(path), args.seed, args.scale, args.points)
            print(f"file      {path}\n          synthesised in {r['synth_s']:.1f} s, written (orjson) in "
                  f"{r['write_s']:.1f} s, generator peak RSS {r['rss']:.0f} MiB; cached for reruns")
        print(f"          {path.stat().st_size / MIB:.0f} MiB, sha256 {file_digest(path)}")

    results = {name: [] for name in selected}
    for rep in range(repeat):
        for name in selected:
            print(f"  run {rep + 1}/{repeat}: {name} ...", end=" ", flush=True)
            res = run_in_process(WORKERS[name], str(path), args.profile)
            main_row = {"coco": "COCO(path)", "lvis": "LVIS(path)", "ltaug": "load_dataset(path)"}[name]
            print(f"{res['rows'][main_row]['s']:.2f} s", flush=True)
            results[name].append(res)

    # per step, the run with the best wall time (its CPU, GC and RSS figures go with it)
    best = {name: {key: min((r["rows"][key] for r in runs), key=lambda row: row["s"]) for key in runs[0]["rows"]}
            for name, runs in results.items()}

    print(f"\nload average at the end {_loadavg()} (other work on the machine inflates the timings)")
    if args.profile:
        print("NOTE: --profile: every step ran under cProfile, so these seconds are inflated; no ratios")
    start_rss = {n: max(r["start_rss"] for r in results[n]) for n in selected}
    print_table(best, selected, start_rss)

    if "ltaug" in best and not args.profile:
        lt = best["ltaug"]
        c, lv = best.get("coco"), best.get("lvis")
        ratios = []
        if c:
            ratios.append(("ltaug load+index / pycocotools COCO()", lt["load+index"]["s"], c["COCO(path)"]["s"]))
            ratios.append(("  same, user CPU seconds", lt["load+index"]["user"], c["COCO(path)"]["user"]))
        if lv:
            ratios.append(("ltaug load+index / lvis-api LVIS()", lt["load+index"]["s"], lv["LVIS(path)"]["s"]))
            ratios.append(("  same, user CPU seconds", lt["load+index"]["user"], lv["LVIS(path)"]["user"]))
        if c:
            ratios += [
                ("ltaug read_json (orjson) / json.load", lt["read_json (orjson)"]["s"], c["json.load"]["s"]),
                ("ltaug check_document + build_index / createIndex",
                 lt["check_document (+ columns)"]["s"] + lt["build_index"]["s"], c["createIndex"]["s"]),
                ("ltaug build_index / createIndex", lt["build_index"]["s"], c["createIndex"]["s"]),
                ("ltaug RSS above start, after index / COCO()'s",
                 lt["load_dataset(path)"]["rss"] - start_rss["ltaug"], c["COCO(path)"]["rss"] - start_rss["coco"]),
            ]
        if ratios:
            print("\nratios (< 1: ltaug is faster / smaller)")
            for label, a, b in ratios:
                print(f"  {label:<50} {a / b:6.2f}")

    if "ltaug" in results:
        ck = results["ltaug"][0]["check"]
        n_c = ck["categories"]
        real = " = the real LVIS v1 numbers" if args.file is None and args.scale == 1.0 else ""
        print(f"\ncheck: {ck['images']} images, {ck['annotations']} annotations, {n_c} categories ({ck['kind']}); "
              f"ltaug's index reproduces the category records' instance_count for {ck['instance_count_matches']}/{n_c} "
              f"and image_count for {ck['image_count_matches']}/{n_c} classes{real}")
        print(f"       {ck['images_without_annotations']} images without annotations, Gini {ck['gini']:.3f}, "
              f"imbalance ratio {ck['imbalance_ratio']:.0f}, stored bins {ck['bins']}; "
              f"ds.save wrote {results['ltaug'][0]['saved_mib']:.0f} MiB")
    for name in selected:
        if "profile" in results[name][-1]:
            print(f"\n===== cProfile: {name} =====\n{results[name][-1]['profile']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
