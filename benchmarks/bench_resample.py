#!/usr/bin/env python
"""Is `ltaug resample --method rfs` fast and lean at LVIS scale?  A benchmark, not a test.

On the LVIS-v1-sized synthetic file of ``bench_io.py`` (the real LVIS v1 class spread:
1,203 classes, 1,270,141 instances over 100,170 images, 8-point polygons; cached under
``$TMPDIR/ltaug-bench/``), it times, in one run, each in its own fresh process:

(a) the floor: orjson load of the file + orjson dump of the parsed document + write;
(b) ``ltaug resample FILE --method rfs --threshold 0.001 --seed 0 -o OUT`` end to end
    (interpreter start, imports, load + checks, index, repeat factors, the rebalanced
    document with provenance, orjson dump, atomic write, the before/after table);

and prints both, the ratio (b)/(a), each one's peak RSS, and (b)'s peak RSS against the
memory the loaded json takes (peak RSS of (a) minus its interpreter's RSS before loading).
Targets (issue 3): ratio at most 1.5; peak memory at most 3x the loaded json.

Usage::

    .venv/bin/python benchmarks/bench_resample.py               # LVIS v1 scale (about a minute)
    .venv/bin/python benchmarks/bench_resample.py --scale 0.1   # quick
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_io import cache_path, run_in_process, worker_synthesize  # noqa: E402

POINTS = 8  # polygon vertices, as bench_io's default

FLOOR = r"""
import os, resource, sys, time
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
import orjson
raw = open(sys.argv[1], "rb").read()
doc = orjson.loads(raw)
out = orjson.dumps(doc)
with open(sys.argv[2], "wb") as fh:
    fh.write(out)
dt = time.perf_counter() - t0
print(dt, base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(out))
"""

LTAUG = r"""
import resource, sys, time, runpy
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
sys.argv = ["ltaug", "resample", sys.argv[1], "--method", "rfs", "--threshold", "0.001", "--seed", "0",
            "-o", sys.argv[2], "--top", "5"]
from ltaug.cli.main import main
with open(sys.argv[-3] + ".table.txt", "w") as table:
    sys.stdout = table
    rc = main(sys.argv[1:])
    sys.stdout = sys.__stdout__
dt = time.perf_counter() - t0
print(dt, base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc)
"""


def run_child(code: str, *args) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"child failed:\n{proc.stderr}")
    return proc.stdout.split()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of LVIS v1 size (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each, best kept (default 2)")
    args = ap.parse_args(argv)

    src = cache_path(args.seed, args.scale, POINTS)
    if not src.exists():
        print(f"synthesising {src} ...", flush=True)
        run_in_process(worker_synthesize, str(src), args.seed, args.scale, POINTS)
    size_mib = src.stat().st_size / 2**20
    print(f"file {src} ({size_mib:.0f} MiB)")
    with tempfile.TemporaryDirectory() as tmp:
        floor, ours = [], []
        for k in range(args.repeat):
            dt, base, peak, nbytes = run_child(FLOOR, src, Path(tmp) / "floor.json")
            floor.append((float(dt), int(base) / 1024, int(peak) / 1024))
            print(f"  run {k + 1}: floor (orjson load + dump) {float(dt):6.2f} s", flush=True)
            out = Path(tmp) / "rfs.json"
            dt, base, peak, rc = run_child(LTAUG, src, out)
            ours.append((float(dt), int(base) / 1024, int(peak) / 1024))
            out_mib = out.stat().st_size / 2**20
            print(f"  run {k + 1}: ltaug resample --method rfs {float(dt):6.2f} s (wrote {out_mib:.0f} MiB)", flush=True)
        table = (Path(tmp) / "rfs.json.table.txt").read_text()
    f_dt, f_base, f_peak = min(floor)
    o_dt, o_base, o_peak = min(ours)
    loaded = f_peak - f_base
    print()
    print(f"{'step':<40} {'wall s':>8} {'peak RSS MiB':>13}")
    print(f"{'(a) orjson load + dump + write':<40} {f_dt:>8.2f} {f_peak:>13.0f}")
    print(f"{'(b) ltaug resample --method rfs':<40} {o_dt:>8.2f} {o_peak:>13.0f}")
    print(f"\nratio (b)/(a) wall time                 {o_dt / f_dt:.2f}   (target <= 1.5)")
    print(f"loaded json in memory (a's peak - start)   {loaded:.0f} MiB  ({size_mib:.0f} MiB on disk)")
    print(f"(b) peak RSS / loaded json                 {o_peak / loaded:.2f}   (target <= 3)")
    print(f"output: {out_mib:.0f} MiB; rows of the before/after table:\n")
    print("\n".join(table.splitlines()[-9:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
