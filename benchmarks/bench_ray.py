#!/usr/bin/env python
"""Is the Ray backend's overhead small?  The same copy-paste plan on ``local`` and on Ray.  A benchmark, not a test.

On the shared COCO-LT train set (or ``--annotations`` / ``--images``), one pipeline step,
``Paste(objects=5, blend="gaussian", weighting="uniform", seed=0, bank=...)``, runs through
:func:`ltaug.run.engine.run_pipeline` into a fresh temporary output,
on three executors:

* ``local 1``: the engine's local backend with 1 worker (in the calling process);
* ``local 2``: the local process pool with 2 workers;
* ``ray 2``: :func:`ltaug.run.ray_backend.ray_map_shards` on a local Ray instance started with
  ``ray.init(num_cpus=2)`` (one task per shard, one CPU per task).

The object bank is built once, before anything is timed, and passed to the step (the
engine would otherwise build one per run). Images/s is the engine's own figure, the one
``ltaug`` prints: ``images_written / steps_run[0]["seconds"]`` (plan, render in the
executor, encode, write, shard files, merge); the run's wall time (linking the originals
and writing ``annotations.json`` included) is printed beside it. Each executor lives in its
own server process (this script with ``--serve``), which loads the dataset once and then runs
what it is told, so that the local pool never forks a process that holds Ray's threads.
Ray's one-time costs are reported apart: ``import ray``, ``ray.init`` and the first run,
whose tasks wait for Ray to start its worker processes (Ray keeps them for later runs).
Every executor gets one untimed warm-up run; then the runs are interleaved (local 1,
local 2, ray 2, then again) ``--repeat`` times and the best of each is kept. OpenCV runs one
thread per worker (and in ``local 1``'s process). The load average is printed: other work on
the machine (2 cores here) inflates the timings, so read the ratios.

Target (issue 7): ray 2 at least 0.8 of local 2.

Usage::

    .venv/bin/python benchmarks/bench_ray.py                    # needs the ray extra
    .venv/bin/python benchmarks/bench_ray.py --repeat 5 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
COCO_LT = REPO.parent / "shared" / "data" / "coco-lt"
EXECUTORS = (("local", 1), ("local", 2), ("ray", 2))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- the server side: one executor, runs on request ------------------------------------------

def serve(args) -> None:
    """Load the dataset (and start Ray), then run one pipeline per line read on stdin."""
    import cv2

    cv2.setNumThreads(1)  # local 1 renders in this process: one core, as each pool worker
    from ltaug import load_dataset
    from ltaug.ops import Paste
    from ltaug.run.engine import run_pipeline

    ds = load_dataset(args.annotations)
    step = Paste(objects=args.objects, blend=args.blend, weighting="uniform", seed=0, bank=args.bank)
    kwargs, info = {}, {}
    if args.serve == "ray":
        t0 = time.perf_counter()
        import ray  # noqa: F401

        info["import_s"] = time.perf_counter() - t0
        from ltaug.run.ray_backend import init_ray, ray_map_shards

        t0 = time.perf_counter()
        init_ray(num_cpus=args.workers)
        info["init_s"] = time.perf_counter() - t0
        kwargs["map_shards"] = ray_map_shards()
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        out = Path(line.strip())
        t0 = time.perf_counter()
        s = run_pipeline(ds, args.images, out, [step], workers=args.workers, progress=False, **kwargs)
        wall = time.perf_counter() - t0
        r = s["steps_run"][0]
        print(json.dumps({"images": r["images_written"], "step_s": r["seconds"], "wall_s": wall}), flush=True)
        shutil.rmtree(out)


# -- the calling side ------------------------------------------------------------------------

class Server:
    def __init__(self, backend: str, workers: int, args, bank: Path):
        cmd = [sys.executable, __file__, "--serve", backend, "--workers", str(workers), "--bank", str(bank),
               "--annotations", str(args.annotations), "--images", str(args.images),
               "--objects", str(args.objects), "--blend", args.blend]
        env = dict(os.environ)
        env.pop("RAY_ADDRESS", None)  # a private local instance, never someone's cluster
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = json.loads(self.proc.stdout.readline())

    def run(self, out: Path) -> dict:
        self.proc.stdin.write(f"{out}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a server stopped (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--annotations", type=Path, default=COCO_LT / "annotations" / "instances_train.json")
    p.add_argument("--images", type=Path, default=COCO_LT / "images" / "train2017")
    p.add_argument("--repeat", type=int, default=3, help="interleaved timed runs per executor (best kept; default 3)")
    p.add_argument("--objects", type=int, default=5)
    p.add_argument("--blend", default="gaussian")
    p.add_argument("--json", metavar="FILE", help="also write the figures here")
    p.add_argument("--serve", choices=("local", "ray"), help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--bank", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args)
        return 0
    try:
        import ray  # noqa: F401
    except ImportError:
        print("the Ray backend needs the ray extra: pip install 'ltaug[ray]'", file=sys.stderr)
        return 2
    import cv2

    from ltaug import load_dataset
    from ltaug.pixels.bank import build_bank

    print(f"data: {args.annotations} ({args.images}); load average at start {load_average()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        cv2.setNumThreads(1)
        t0 = time.perf_counter()
        build_bank(load_dataset(args.annotations), args.images, tmp / "bank", workers=2, progress=False)
        print(f"bank built once in {time.perf_counter() - t0:.1f} s (not timed below)")
        servers, cold = {}, {}
        for backend, workers in EXECUTORS:
            t0 = time.perf_counter()
            servers[backend, workers] = Server(backend, workers, args, tmp / "bank")
            start = time.perf_counter() - t0
            cold[backend, workers] = servers[backend, workers].run(tmp / "warm")  # warm-up, untimed
            if backend == "ray":
                info = servers[backend, workers].info
                print(f"ray startup: import ray {info['import_s']:.2f} s, ray.init(num_cpus={workers}) "
                      f"{info['init_s']:.2f} s (server process up, dataset loaded: {start:.1f} s); first run with "
                      f"cold workers: {_rate(cold[backend, workers]):.1f} images/s, wall "
                      f"{cold[backend, workers]['wall_s']:.2f} s")
        runs = {key: [] for key in servers}
        for _ in range(args.repeat):
            for key, server in servers.items():
                runs[key].append(server.run(tmp / "out"))
        for server in servers.values():
            server.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = {key: max(rs, key=_rate) for key, rs in runs.items()}
    n = best["local", 2]["images"]
    print(f"\npaste (objects={args.objects}, {args.blend}, uniform) on {n} images, best of {args.repeat} "
          f"interleaved; load average at end {load_average()}")
    print(f"{'executor':<10}{'images/s':>10}{'wall s':>9}{'/ local 2':>11}   all runs (images/s)")
    ref = _rate(best["local", 2])
    for key, r in best.items():
        label = f"{key[0]} {key[1]}"
        all_runs = " ".join(f"{_rate(x):.1f}" for x in runs[key])
        print(f"{label:<10}{_rate(r):>10.1f}{r['wall_s']:>9.2f}{_rate(r) / ref:>11.2f}   {all_runs}")
    ratio = _rate(best["ray", 2]) / ref
    wall_ratio = best["local", 2]["wall_s"] / best["ray", 2]["wall_s"]
    print(f"\nray 2 / local 2: {ratio:.2f} (engine images/s), {wall_ratio:.2f} (wall); target >= 0.80: "
          f"{'met' if ratio >= 0.8 else 'NOT met'}; local 2 / local 1: "
          f"{ref / _rate(best['local', 1]):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "runs": {f"{k[0]} {k[1]}": v for k, v in runs.items()},
            "cold": {f"{k[0]} {k[1]}": v for k, v in cold.items()},
            "ray_startup": servers["ray", 2].info, "ratio_ray_local2": ratio}, indent=1))
    return 0


def _rate(r: dict) -> float:
    return r["images"] / r["step_s"] if r["step_s"] > 0 else float("inf")


if __name__ == "__main__":
    sys.exit(main())
