#!/usr/bin/env python
"""How fast is pixel work against the JPEG codec floor and against the peers' copy-paste?  A benchmark, not a test.

On the shared COCO-LT train images (or ``--annotations`` / ``--images``), every image of the
annotation file goes through one worker job: read the file, decode, (an operation), encode,
write. Measured in one run, each with 1 and 2 worker processes (``--workers``):

* **(a) the floor**: the job with no operation: read + ``cv2.imdecode``
  (``IMREAD_COLOR | IMREAD_IGNORE_ORIENTATION``) + ``cv2.imencode`` at ltaug's JPEG quality
  (``ltaug.pixels.JPEG_QUALITY``, the one ltaug's writer uses) + write (temporary file, then
  rename, as ``ltaug.imagefile.write_file_atomic``). Nothing that writes JPEGs can beat it
  with the same codec. (The same calls as ``ltaug.pixels`` / ``ltaug.imagefile``, written out
  here because the peers' venv has no ltaug.)
* **the peers**: the copy-paste a user would pick instead of ltaug, each run by
  ``paste_peers.py`` under the benchmark-only environment that ``peers_env.sh`` makes
  (``/tmp/ltaug-bench-peers``, or ``$LTAUG_PEERS_VENV``; never ltaug's own ``.venv``):
  AlbumentationsX ``CopyAndPaste`` (gaussian blending, ``--objects`` objects from other
  images per image) and ultralytics ``CopyPaste`` (flip mode: mirrored copies of the image's
  own objects, up to ``--objects``, hard paste). Each peer process measures its own floor,
  interleaved with the peer, so that its ratio peer / floor holds even when the machine's
  load changes between processes. A peer that is not installed prints
  ``not available: <reason>``.

Every timed run uses a fresh process pool (``fork``; ``cv2.setNumThreads(1)`` in each
worker), started and warmed before the clock starts; its start-up is reported apart. Runs
are interleaved (floor 1 worker, floor 2 workers, ..., then again) ``--repeat`` times and the
best of each is kept. Outputs go to a temporary folder, deleted at the end. The load
average is printed: other work on the machine (2 cores here) inflates the timings, so read
the ratios, not the absolute images/s.

Usage::

    benchmarks/peers_env.sh                             # once: the peers' own venv (~2 min)
    .venv/bin/python benchmarks/bench_paste.py          # floor + peers, 1 and 2 workers
    .venv/bin/python benchmarks/bench_paste.py --repeat 7 --peers albumentationsx --json out.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
COCO_LT = REPO.parent / "shared" / "data" / "coco-lt"
PEERS = ("albumentationsx", "ultralytics")
PEERS_VENV = Path(os.environ.get("LTAUG_PEERS_VENV", "/tmp/ltaug-bench-peers"))
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
STAGES = ("read", "decode", "op", "encode", "write")


# -- one image in a worker: read -> decode -> op -> encode -> write ----------------------------
# ``_STATE`` is filled in before the pool forks, so the workers inherit the paths, the
# operation and whatever it closes over (annotations, donor crops) without pickling them.
# An operation is ``op(image, index) -> (image, info)``; ``info`` maps names to numbers that
# are summed over the images (sub-stage seconds, objects pasted).
_STATE: dict = {}


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _started(_) -> int:
    return os.getpid()


def image_job(i: int) -> tuple[list[float], dict]:
    st = _STATE
    t0 = time.perf_counter()
    buf = np.fromfile(st["paths"][i], np.uint8)
    t1 = time.perf_counter()
    img = cv2.imdecode(buf, IMREAD_FLAGS)
    t2 = time.perf_counter()
    info = {}
    if st["op"] is not None:
        img, info = st["op"](img, i)
    t3 = time.perf_counter()
    ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, st["quality"]])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {st['paths'][i]}")
    t4 = time.perf_counter()
    path = os.path.join(st["out_dir"], f"{i}.jpg")  # written as ltaug's writer does: temporary file, rename
    enc.tofile(path + ".tmp")
    os.replace(path + ".tmp", path)
    t5 = time.perf_counter()
    return [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4], info


def measure(paths: list[Path], workers: int, op=None, *, quality: int, out_dir: Path) -> dict:
    """Run ``image_job`` over every path with a fresh pool of ``workers`` processes.

    Returns seconds (pool already started), images/s, the pool's start-up seconds, the mean
    milliseconds per image of each stage (summed over workers: CPU-like cost per image), and
    the op's ``info`` summed and divided by the number of images.
    """
    _STATE.update(paths=[str(p) for p in paths], op=op, quality=int(quality), out_dir=str(out_dir))
    n = len(paths)
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
        pool.map(_started, range(4 * workers), chunksize=1)
        start = time.perf_counter()
        rows = pool.map(image_job, range(n), chunksize=4)
        seconds = time.perf_counter() - start
    stages = np.sum([r[0] for r in rows], axis=0) / n * 1000
    info: dict[str, float] = {}
    for _, row_info in rows:
        for k, v in row_info.items():
            info[k] = info.get(k, 0.0) + v
    return {"seconds": seconds, "images_per_s": n / seconds, "startup_s": start - t0,
            "stage_ms": dict(zip(STAGES, np.round(stages, 3).tolist())),
            "per_image": {k: v / n for k, v in info.items()}}


def interleaved(paths: list[Path], variants: dict, workers: list[int], repeat: int, *,
                quality: int, out_dir: Path) -> dict[str, dict[int, dict]]:
    """``{variant: {workers: best run}}``: every (variant, workers) run once per repeat, in turn."""
    best: dict[str, dict[int, dict]] = {name: {} for name in variants}
    for _ in range(repeat):
        for name, op in variants.items():
            for w in workers:
                r = measure(paths, w, op, quality=quality, out_dir=out_dir)
                if w not in best[name] or r["seconds"] < best[name][w]["seconds"]:
                    best[name][w] = r
    return best


def coco_image_paths(annotations: Path, images_dir: Path) -> list[Path]:
    """The images of a COCO file, in its order (peers and ltaug process the same list)."""
    with open(annotations, "rb") as fh:
        return [images_dir / im["file_name"] for im in json.load(fh)["images"]]


# -- the peers, each in its own process under the peers' venv -----------------------------------
def peer(name: str, args, quality: int) -> dict:
    """Run ``paste_peers.py --peer NAME`` under the peers' python; its last stdout line is json."""
    python = args.peers_python
    if not python.exists():
        return {"peer": name, "available": False,
                "reason": f"no peers venv at {python.parent.parent} (run benchmarks/peers_env.sh)"}
    env = dict(os.environ, ALBUMENTATIONS_OFFLINE="1", ALBUMENTATIONS_NO_TELEMETRY="1", YOLO_OFFLINE="1",
               YOLO_CONFIG_DIR=str(python.parent.parent / "ultralytics-config"))
    cmd = [str(python), str(BENCH / "paste_peers.py"), "--peer", name, "--quality", str(quality),
           "--annotations", str(args.annotations), "--images", str(args.images),
           "--workers", *map(str, args.workers), "--repeat", str(args.repeat),
           "--objects", str(args.objects), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"peer": name, "available": False, "reason": f"runner exited {proc.returncode}: {tail}"}
    out = json.loads(lines[-1])
    for step, by_workers in out.get("results", {}).items():  # json made the worker counts strings
        out["results"][step] = {int(w): r for w, r in by_workers.items()}
    return out


# -- report --------------------------------------------------------------------------------------
def _row(label: str, w: int, r: dict, floor_ips: float | None, one_worker: dict | None) -> str:
    ratio = f"{r['images_per_s'] / floor_ips:8.2f}" if floor_ips else " " * 8
    scale = f"{r['images_per_s'] / one_worker['images_per_s']:7.2f}" if one_worker and w != 1 else " " * 7
    return f"{label:<52} {w:>3} {r['images_per_s']:9.1f} {ratio} {scale}"


def _stage_line(r: dict) -> str:
    parts = [f"{k} {v:.2f}" for k, v in r["stage_ms"].items()]
    parts += [f"{k} {v:.2f}" + ("" if k == "pasted" else " ms") for k, v in r["per_image"].items()
              if k != "pasted" or v]
    return "ms per image (1 worker): " + ", ".join(parts)


def report(n: int, floor: dict[int, dict], peers: list[dict]) -> None:
    print(f"\n{'step':<52} {'wk':>3} {'images/s':>9} {'/ floor':>8} {'/ 1 wk':>7}")
    for w, r in floor.items():
        print(_row("(a) floor: read + decode + encode + write", w, r, r["images_per_s"], floor.get(1)))
    print("    " + _stage_line(floor[min(floor)]))
    for p in peers:
        if not p.get("available"):
            print(f"peer {p['peer']}: not available: {p['reason']}")
            continue
        res = p["results"]
        own_floor, result = res["floor"], res[p["peer"]]
        for w, r in result.items():
            print(_row(f"peer {p['label']}", w, r, own_floor[w]["images_per_s"], result.get(1)))
        for w, r in own_floor.items():
            print(_row("    its own floor, same process, interleaved", w, r, None, own_floor.get(1)))
        print("    " + _stage_line(result[min(result)]))
        print(f"    {p['versions']}; {p['what']}")
    print(f"\n{n} images; '/ floor' = images/s over the floor's measured in the same process; "
          "'/ 1 wk' = over the same step with 1 worker")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotations", type=Path, default=COCO_LT / "annotations" / "instances_train.json")
    ap.add_argument("--images", type=Path, default=COCO_LT / "images" / "train2017")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=5, help="interleaved repeats; the best of each is kept")
    ap.add_argument("--objects", type=int, default=5, help="objects pasted per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peers", nargs="*", choices=PEERS, default=list(PEERS))
    ap.add_argument("--peers-python", type=Path, default=PEERS_VENV / "bin" / "python")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    args = ap.parse_args()
    if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, str(REPO))
    from ltaug.pixels import JPEG_QUALITY

    paths = coco_image_paths(args.annotations, args.images)
    build = cv2.getBuildInformation()
    jpeg = next((ln.split(":", 1)[1].strip() for ln in build.splitlines() if ln.strip().startswith("JPEG:")), "?")
    print(f"load average at start: {os.getloadavg()[0]:.2f}  (cpus: {os.cpu_count()})")
    print(f"{len(paths)} images from {args.annotations}; OpenCV {cv2.__version__} ({jpeg}), "
          f"JPEG quality {JPEG_QUALITY}; best of {args.repeat} interleaved repeats")

    out_dir = Path(tempfile.mkdtemp(prefix="ltaug-bench-paste-"))
    try:
        for p in paths:  # warm the page cache, as every later run finds it
            p.read_bytes()
        results = interleaved(paths, {"floor": None}, args.workers, args.repeat,
                              quality=JPEG_QUALITY, out_dir=out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    peers = [peer(name, args, JPEG_QUALITY) for name in args.peers]
    report(len(paths), results["floor"], peers)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"images": len(paths), "quality": JPEG_QUALITY, "results": results,
                                         "peers": peers}, indent=1))


if __name__ == "__main__":
    main()
