#!/usr/bin/env python
"""An LVIS-sized run with pixels: every command a user runs, timed, with its peak memory and disk.  A benchmark, not a test.

**The data.** ``bench_io.synthesize``'s LVIS-v1-sized file (the real class spread of
``lvis_v1_train_cat_info.json``: 1,203 classes, 1,270,141 instances over 100,170 images,
8-point polygons), made to point at real photos: each image record gets one of the 288
COCO-LT-mini train photos (a seeded draw), its ``width`` / ``height`` become the photo's, its
polygons are scaled into the photo (x by the width ratio, y by the height ratio; ``bbox`` and
shoelace ``area`` recomputed from the scaled polygon), and the file its ``coco_url`` names
(``{id:012d}.jpg``) is a hard link to that photo in one folder (hard links: the image checks
refuse a symlink leading out of the image folder; a link costs an inode, no data). A slice,
the first ``--slice`` images of the file (in the file's order, which is random in the image
ids) with their annotations and the categories' counts recomputed on it, is the input of the
pixel steps. Everything is cached under ``$TMPDIR/ltaug-bench/`` keyed by seed, scale and
slice.

**The steps**, each a fresh process (its peak RSS its own), in this order:

=================  ============================================================================
json floor         orjson load + dump + write of the full file (the floor of ``resample``)
resample           ``ltaug resample FULL --method rfs --threshold 0.001 --seed 0 -o R``
                   (these two ``--repeat`` times, interleaved, the fastest run of each kept)
stats              ``ltaug stats FULL``
plan               ``ltaug plan FULL --min-instances 10 --max-factor 10 --plan-json P``
JPEG floor         the slice's images, each read + decoded + encoded (ltaug's JPEG quality) +
                   written (temporary name, rename), in a pool of ``--workers`` processes
bank               ``ltaug bank SLICE --images LINKS -o B --bins r,c``
run                ``ltaug run PIPE.yaml``: ``resample {rfs, threshold 0.001}`` then
                   ``paste {bank: B, objects: 4, blend: gaussian}`` on the slice
report             ``ltaug report RUN -o report.html``
run (ray)          with ``--ray``: the same ``ltaug run`` on a two-node local Ray cluster
                   (``ray start --head`` + a second ``ray start``, one CPU each, see
                   ``ray_local_cluster.py``), its output compared file by file with ``run``'s
=================  ============================================================================

For each: wall seconds (from the parent: process start to exit), peak RSS (``ru_maxrss`` from
``os.wait4``: the largest single process of its tree), the sampled peak of the tree's summed
PSS (``/proc/*/smaps_rollup`` twice a second: what a command with worker processes holds
in all, shared pages counted once), disk written (``ru_oublock``: bytes the tree wrote, temporary
files included) and the load average at its end. Ratios: resample / json floor (goal <= 1.2),
peak RSS / size of the json on disk (goal <= 2: resample), paste's images/s (the engine's
figure, ``images_written / seconds`` of the step in ``run.json``) / the JPEG floor's (pool
start-up included, as the engine's step includes its pool's).

Usage::

    .venv/bin/python benchmarks/bench_lvis_pixels.py --scale 0.02 --slice 500     # quick, ~1 min
    nohup .venv/bin/python benchmarks/bench_lvis_pixels.py --ray > /tmp/lvis_bench.log 2>&1 &   # full
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from bench_io import SYNTH_VERSION, run_in_process, synthesize  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "coco-lt" / "images" / "train2017"
LTAUG = [sys.executable, "-m", "ltaug.cli.main"]
MIB = 2**20
POINTS = 8
VERSION = 1  # bump when the photo mapping or the slice changes

JSON_FLOOR = r"""
import sys, orjson
doc = orjson.loads(open(sys.argv[1], "rb").read())
with open(sys.argv[2], "wb") as fh:
    fh.write(orjson.dumps(doc))
"""

JPEG_FLOOR = r"""
import json, multiprocessing, os, sys, time
import cv2, numpy as np
from ltaug.pixels.functional import JPEG_QUALITY

def init():
    cv2.setNumThreads(1)

def job(item):
    src, dst = item
    img = cv2.imdecode(np.fromfile(src, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    with open(dst + ".tmp", "wb") as fh:
        fh.write(enc.tobytes())
    os.replace(dst + ".tmp", dst)
    return 1

if __name__ == "__main__":
    paths, out, workers = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    items = [(p, os.path.join(out, os.path.basename(p))) for p in paths]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers, initializer=init) as pool:
        n = sum(pool.imap_unordered(job, items, chunksize=32))
    print(json.dumps({"images": n, "seconds": time.perf_counter() - t0}))
"""


# -- the data -----------------------------------------------------------------------------------
def data_dir(seed: int, scale: float, slice_n: int) -> Path:
    return (Path(tempfile.gettempdir()) / "ltaug-bench"
            / f"lvis_pixels_seed{seed}_scale{scale:g}_slice{slice_n}_pts{POINTS}_v{SYNTH_VERSION}.{VERSION}")


def photo_sizes() -> list[tuple[str, int, int]]:
    """(path, width, height) of each COCO-LT-mini train photo, sorted by name (header only)."""
    from PIL import Image

    out = []
    for p in sorted(PHOTOS.glob("*.jpg")):
        with Image.open(p) as im:
            out.append((str(p), *im.size))
    return out


def fit_to_photos(doc: dict, photos: list[tuple[str, int, int]], seed: int) -> list[str]:
    """Give each image record a photo (seeded draw), its size, and scale its annotations into it.

    Returns the photo path of each image record, in order. Polygons: x * (W_photo / W), y *
    (H_photo / H), rounded to 2 decimals and clipped into the photo; ``bbox`` is the scaled
    polygon's tight box, ``area`` its shoelace area."""
    import numpy as np

    rng = np.random.default_rng([seed, 288])
    pick = rng.integers(0, len(photos), len(doc["images"]))
    pos_of = {}
    sx, sy, pw, ph = (np.empty(len(doc["images"])) for _ in range(4))
    for p, (im, k) in enumerate(zip(doc["images"], pick.tolist())):
        _, w, h = photos[k]
        sx[p], sy[p], pw[p], ph[p] = w / im["width"], h / im["height"], w, h
        im["width"], im["height"] = w, h
        pos_of[im["id"]] = p
    anns = doc["annotations"]
    pos = np.fromiter((pos_of[a["image_id"]] for a in anns), np.int64, len(anns))
    seg = np.array([a["segmentation"][0] for a in anns], dtype=np.float64)
    px = np.clip(np.round(seg[:, 0::2] * sx[pos, None], 2), 0, pw[pos, None])
    py = np.clip(np.round(seg[:, 1::2] * sy[pos, None], 2), 0, ph[pos, None])
    area = np.round(0.5 * np.abs(np.sum(px * np.roll(py, -1, 1) - np.roll(px, -1, 1) * py, axis=1)), 2)
    x0, y0 = px.min(1), py.min(1)
    boxes = np.round(np.stack([x0, y0, px.max(1) - x0, py.max(1) - y0], 1), 2)
    seg[:, 0::2], seg[:, 1::2] = px, py
    for a, s, b, ar in zip(anns, seg.tolist(), boxes.tolist(), area.tolist()):
        a["segmentation"], a["bbox"], a["area"] = [s], b, ar
    return [photos[k][0] for k in pick.tolist()]


def slice_of(doc: dict, n: int) -> dict:
    """The first ``n`` image records, their annotations, the categories' counts recomputed."""
    from collections import Counter

    images = doc["images"][:n]
    ids = {im["id"] for im in images}
    anns = [a for a in doc["annotations"] if a["image_id"] in ids]
    inst = Counter(a["category_id"] for a in anns)
    imgs = Counter(c for c, _ in {(a["category_id"], a["image_id"]) for a in anns})
    cats = [{**c, "instance_count": inst[c["id"]], "image_count": imgs[c["id"]]} for c in doc["categories"]]
    info = {**doc["info"], "description": doc["info"]["description"] + f", first {n} images"}
    return {**doc, "info": info, "images": images, "annotations": anns, "categories": cats}


def worker_make_data(folder: str, seed: int, scale: float, slice_n: int) -> dict:
    """Synthesise, fit to the photos, link the images, write full.json and slice.json (in a
    spawned process: the parent never holds the document)."""
    import orjson

    t0 = time.perf_counter()
    out = Path(folder)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    doc = synthesize(seed, scale, POINTS)
    for im, src in zip(doc["images"], fit_to_photos(doc, photo_sizes(), seed)):
        os.link(src, tmp / "images" / im["coco_url"].rsplit("/", 1)[1])
    doc["info"]["description"] += ", on COCO-LT-mini photos (ltaug benchmarks/bench_lvis_pixels.py)"
    (tmp / "full.json").write_bytes(orjson.dumps(doc))
    (tmp / "slice.json").write_bytes(orjson.dumps(slice_of(doc, slice_n)))
    os.replace(tmp, out)  # a killed run never leaves a half-made cache
    return {"seconds": time.perf_counter() - t0, "images": len(doc["images"]),
            "annotations": len(doc["annotations"])}


# -- measuring one step -------------------------------------------------------------------------
def _tree_pss_kib(root: int) -> int:
    """Summed PSS of ``root`` and its descendants (0 where /proc cannot be read)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                total += next(int(ln.split()[1]) for ln in fh if ln.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            pass
    return total


def measure(name: str, cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` (stdout and stderr to ``log``); wall s, peak RSS, sampled tree PSS, disk written."""
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            peak[0] = max(peak[0], _tree_pss_kib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{name}: exit {proc.returncode}; its output ({log}):\n"
                 + "\n".join(log.read_text(errors="replace").splitlines()[-20:]))
    row = {"step": name, "wall_s": wall, "rss_mib": ru.ru_maxrss / 1024, "pss_mib": peak[0] / 1024,
           "written_mib": ru.ru_oublock * 512 / MIB, "load": os.getloadavg()[0]}
    print(f"  {name:<12} {wall:8.1f} s  peak RSS {row['rss_mib']:6.0f} MiB  tree PSS {row['pss_mib']:6.0f} MiB  "
          f"wrote {row['written_mib']:7.0f} MiB  load {row['load']:.2f}", flush=True)
    return row


def same_output(a: Path, b: Path) -> list[str]:
    """Differences between two run outputs: every file byte for byte, except ``run.json``, compared
    as json without its ``seconds`` (timings)."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "seconds"}
        return [strip(v) for v in x] if isinstance(x, list) else x

    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    diffs = [f"only in one: {sorted(set(map(str, fa)) ^ set(map(str, fb)))[:5]}"] if fa != fb else []
    for f in sorted(set(fa) & set(fb)):
        if f.name == "run.json":
            ra, rb = strip(json.loads((a / f).read_text())), strip(json.loads((b / f).read_text()))
            if ra != rb:
                keys = sorted(k for k in ra.keys() | rb.keys() if ra.get(k) != rb.get(k))
                diffs.append(f"{f} (its {', '.join(keys)})")
        elif (a / f).stat().st_size != (b / f).stat().st_size or (a / f).read_bytes() != (b / f).read_bytes():
            diffs.append(str(f))
    return diffs


# -- the run ------------------------------------------------------------------------------------
def pipeline(path: Path, data: Path, bank: Path, out: Path) -> Path:
    path.write_text(f"input: {data / 'slice.json'}\nimages: {data / 'images'}\noutput: {out}\nseed: 0\nsteps:\n"
                    f"  - resample: {{method: rfs, threshold: 0.001}}\n"
                    f"  - paste: {{bank: {bank}, objects: 4, blend: gaussian}}\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of LVIS v1 train (default 1)")
    ap.add_argument("--slice", type=int, default=10_000, help="images of the pixel steps' slice (default 10000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes of bank, run and the "
                    "JPEG floor (default: all cores)")
    ap.add_argument("--ray", action="store_true", help="also run the pipeline on a two-node local Ray cluster "
                    "and compare its output with the local backend's")
    ap.add_argument("--repeat", type=int, default=1, help="runs of json floor and resample, interleaved, the "
                    "fastest of each kept (default 1)")
    ap.add_argument("--keep", type=Path, help="keep the outputs in this folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)

    print(f"bench_lvis_pixels {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    data = data_dir(args.seed, args.scale, args.slice)
    if not data.is_dir():
        print(f"making {data} (seed {args.seed}, scale {args.scale:g}) ...", flush=True)
        r = run_in_process(worker_make_data, str(data), args.seed, args.scale, args.slice)
        print(f"  {r['images']} images, {r['annotations']} annotations in {r['seconds']:.0f} s", flush=True)
    full, sliced = data / "full.json", data / "slice.json"
    full_mib, slice_mib = full.stat().st_size / MIB, sliced.stat().st_size / MIB
    print(f"data {data}\n  full.json {full_mib:.0f} MiB, slice.json {slice_mib:.1f} MiB, images/: hard links to "
          f"{len(list(PHOTOS.glob('*.jpg')))} photos")

    out = args.keep or Path(tempfile.mkdtemp(prefix="lvis-pixels-"))
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    py, rows = sys.executable, {}
    try:
        def step(name, cmd, env=None, best=False):
            row = measure(name, cmd, logs / f"{name.replace(' ', '_')}.log", env)
            if not best or row["wall_s"] < rows[name]["wall_s"]:
                rows[name] = row

        for k in range(args.repeat):  # the pair whose ratio is a goal: interleaved, best of each kept
            step("json floor", [py, "-c", JSON_FLOOR, str(full), str(out / "floor.json")], best=k > 0)
            (out / "floor.json").unlink()
            step("resample", [*LTAUG, "resample", str(full), "--method", "rfs", "--threshold", "0.001", "--seed",
                              "0", "-o", str(out / "rfs.json"), "--top", "5"], best=k > 0)
            resampled_mib = (out / "rfs.json").stat().st_size / MIB
            (out / "rfs.json").unlink()
        step("stats", [*LTAUG, "stats", str(full)])
        step("plan", [*LTAUG, "plan", str(full), "--min-instances", "10", "--max-factor", "10", "--plan-json",
                      str(out / "plan.json"), "--top", "5"])
        slice_doc = json.loads(sliced.read_text())
        paths = [str(data / "images" / im["coco_url"].rsplit("/", 1)[1]) for im in slice_doc["images"]]
        n_slice, n_slice_anns = len(paths), len(slice_doc["annotations"])
        del slice_doc
        (out / "paths.json").write_text(json.dumps(paths))
        step("JPEG floor", [py, "-c", JPEG_FLOOR, str(out / "paths.json"), str(out / "floor"), str(args.workers)])
        floor = json.loads((logs / "JPEG_floor.log").read_text().splitlines()[-1])
        shutil.rmtree(out / "floor")
        step("bank", [*LTAUG, "bank", str(sliced), "--images", str(data / "images"), "-o", str(out / "bank"),
                      "--bins", "r,c", "--workers", str(args.workers)])
        pipe = pipeline(out / "pipe.yaml", data, out / "bank", out / "run")
        step("run", [*LTAUG, "run", str(pipe), "--workers", str(args.workers)])
        step("report", [*LTAUG, "report", str(out / "run"), "-o", str(out / "report.html")])
        same = None
        if args.ray:
            from ray_local_cluster import local_ray_cluster, tasks_per_node

            t0 = time.perf_counter()
            with local_ray_cluster() as cluster:
                print(f"  ray cluster at {cluster.address}: {cluster.nodes} nodes up in "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
                step("run (ray)", [*LTAUG, "run", str(pipe), "--backend", "ray", "--address", cluster.address,
                                   "-o", str(out / "run_ray")], env=cluster.env)
                per_node = tasks_per_node(cluster, "run_shard")
            same = same_output(out / "run", out / "run_ray")
        run = json.loads((out / "run" / "run.json").read_text())
        paste = next(s for s in run["steps_run"] if s.get("op", s.get("name")) == "paste")
        bank_meta = json.loads((out / "bank" / "meta.json").read_text())
        report_mib = (out / "report.html").stat().st_size / MIB
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)

    json_of = {"json floor": full_mib, "stats": full_mib, "plan": full_mib, "resample": full_mib}
    print(f"\n{'step':<12} {'wall s':>8} {'peak RSS MiB':>13} {'/ json':>7} {'tree PSS MiB':>13} "
          f"{'written MiB':>12} {'load':>5}")
    for name, r in rows.items():
        ratio = f"{r['rss_mib'] / json_of.get(name, slice_mib):7.2f}"
        print(f"{name:<12} {r['wall_s']:8.1f} {r['rss_mib']:13.0f} {ratio} {r['pss_mib']:13.0f} "
              f"{r['written_mib']:12.0f} {r['load']:5.2f}")
    ratio = rows["resample"]["wall_s"] / rows["json floor"]["wall_s"]
    rss_ratio = rows["resample"]["rss_mib"] / full_mib
    paste_ips = paste["images_written"] / paste["seconds"]
    floor_ips = floor["images"] / floor["seconds"]
    print(f"\n'/ json': peak RSS over the json the step reads, on disk (full.json {full_mib:.0f} MiB for json floor, "
          f"stats, plan, resample; slice.json {slice_mib:.1f} MiB for the rest)")
    print(f"resample / json floor (wall)        {ratio:6.2f}   goal <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'}"
          f"   (resample wrote {resampled_mib:.0f} MiB)")
    print(f"resample peak RSS / full.json       {rss_ratio:6.2f}   goal <= 2: {'met' if rss_ratio <= 2 else 'NOT met'}")
    print(f"paste images/s / JPEG floor's       {paste_ips / floor_ips:6.2f}   (paste {paste['images_written']} images "
          f"in {paste['seconds']:.1f} s = {paste_ips:.1f}/s; floor {floor['images']} in {floor['seconds']:.1f} s = "
          f"{floor_ips:.1f}/s, {args.workers} workers each)")
    c = run["counts"]
    print(f"slice: {n_slice} images, {n_slice_anns} annotations; bank --bins r,c: {bank_meta['counts']['objects']} "
          f"objects; run: {c['images_after']} images ({c['images_written']} written), {c['annotations_after']} "
          f"annotations; report.html {report_mib:.1f} MiB")
    if same is not None:
        print(f"ray (2 nodes, 1 CPU each): run_shard tasks per node {sorted(per_node.values())}; output vs local: "
              + ("the same bytes (every file; run.json without its timings)" if not same else f"DIFFERS: {same[:10]}"))
        if rows.get("run (ray)"):
            print(f"ray run / local run (wall): {rows['run (ray)']['wall_s'] / rows['run']['wall_s']:.2f}")
    if "run (ray)" in rows:
        print("run (ray): peak RSS, tree PSS and written are the driver's (ltaug run) alone: the tasks run in the "
              "cluster's worker processes, which are not its children")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if same else 0


if __name__ == "__main__":
    sys.exit(main())
