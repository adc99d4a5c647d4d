#!/usr/bin/env python
"""Is `ltaug resample --method rfs` fast and lean at LVIS scale?  A benchmark, not a test.

On the LVIS-v1-sized synthetic file of ``bench_io.py`` (the real LVIS v1 class spread:
1,203 classes, 1,270,141 instances over 100,170 images, 8-point polygons; cached under
``$TMPDIR/ltaug-bench/``), it times, each in its own fresh process, interleaved (the order
alternates from run to run) and best of ``--repeat`` kept:

(a) the floor: orjson load of the file + orjson dump of the parsed document + write, a plain
    script (Python's cyclic garbage collector on, as it is by default);
(a') the same with the collector paused (gc.disable), for reference: ltaug pauses it while it
    builds its millions of acyclic objects, so (a) pays for collections that (b) does not;
(b) ``ltaug resample FILE --method rfs --threshold 0.001 --seed 0 -o OUT`` end to end
    (imports, load + checks, index, repeat factors, the rebalanced document with provenance
    built, dumped and written a chunk at a time, fsync and rename, the before/after table,
    and the freeing of the loaded document when the command returns);

and prints each one's wall time and CPU time (user + system: on a machine shared with other
work, CPU time moves less than wall time), peak RSS, the ratios (b)/(a), and (b)'s peak RSS
against the memory the loaded json takes (a's peak RSS minus its interpreter's) and against
the file's size on disk. Targets: issue 3, ratio at most 1.5 and memory at most 3x the
loaded json; issue 21, ratio at most 1.2 and peak RSS at most 2x the file's size.

Usage::

    .venv/bin/python benchmarks/bench_resample.py               # LVIS v1 scale (about 2 minutes)
    .venv/bin/python benchmarks/bench_resample.py --scale 0.1   # quick
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_io import cache_path, run_in_process, worker_synthesize  # noqa: E402

POINTS = 8  # polygon vertices, as bench_io's default

FLOOR = r"""
import gc, resource, sys, time
if sys.argv[3] == "paused":
    gc.disable()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
u = resource.getrusage(resource.RUSAGE_SELF)
c0, t0 = u.ru_utime + u.ru_stime, time.perf_counter()
import orjson
raw = open(sys.argv[1], "rb").read()
doc = orjson.loads(raw)
out = orjson.dumps(doc)
with open(sys.argv[2], "wb") as fh:
    fh.write(out)
dt = time.perf_counter() - t0
u = resource.getrusage(resource.RUSAGE_SELF)
print(dt, u.ru_utime + u.ru_stime - c0, base, u.ru_maxrss)
"""

LTAUG = r"""
import resource, sys, time
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
u = resource.getrusage(resource.RUSAGE_SELF)
c0, t0 = u.ru_utime + u.ru_stime, time.perf_counter()
sys.argv = ["ltaug", "resample", sys.argv[1], "--method", "rfs", "--threshold", "0.001", "--seed", "0",
            "-o", sys.argv[2], "--top", "5"]
from ltaug.cli.main import main
with open(sys.argv[-3] + ".table.txt", "w") as table:
    sys.stdout = table
    rc = main(sys.argv[1:])
    sys.stdout = sys.__stdout__
dt = time.perf_counter() - t0
u = resource.getrusage(resource.RUSAGE_SELF)
assert rc == 0, rc
print(dt, u.ru_utime + u.ru_stime - c0, base, u.ru_maxrss)
"""

STEPS = {"a": ("(a) orjson load + dump + write", FLOOR, ("on",)),
         "a'": ("(a') the same, collector paused", FLOOR, ("paused",)),
         "b": ("(b) ltaug resample --method rfs", LTAUG, ())}


def run_child(code: str, *args) -> tuple[float, float, float, float]:
    """(wall s, CPU s, RSS at start MiB, peak RSS MiB) of ``code`` run in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"child failed:\n{proc.stderr}")
    dt, cpu, base, peak = map(float, proc.stdout.split())
    return dt, cpu, base / 1024, peak / 1024


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
    print(f"file {src} ({size_mib:.0f} MiB); load average {os.getloadavg()[0]:.1f}")
    runs: dict[str, list] = {k: [] for k in STEPS}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        for k in range(args.repeat):
            for key in (list(STEPS) if k % 2 == 0 else list(STEPS)[::-1]):
                name, code, extra = STEPS[key]
                runs[key].append(run_child(code, src, out, *extra))
                dt, cpu, _, peak = runs[key][-1]
                print(f"  run {k + 1}: {name:<36} {dt:6.2f} s wall {cpu:6.2f} s CPU  "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
                if key == "b":
                    out_mib = out.stat().st_size / 2**20
                out.unlink()
        table = (Path(tmp) / "out.json.table.txt").read_text()
    best = {key: (min(r[0] for r in rs), min(r[1] for r in rs), min(r[3] for r in rs), rs[0][2])
            for key, rs in runs.items()}
    print()
    print(f"{'step':<40} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13}")
    for key, (name, _, _) in STEPS.items():
        print(f"{name:<40} {best[key][0]:>8.2f} {best[key][1]:>8.2f} {best[key][2]:>13.0f}")
    (a_dt, a_cpu, a_peak, a_base), (b_dt, b_cpu, b_peak, _) = best["a"], best["b"]
    loaded = a_peak - a_base
    print(f"\nratio (b)/(a) wall time, best of each    {b_dt / a_dt:.2f}   (targets <= 1.5, issue 21 <= 1.2)")
    print(f"ratio (b)/(a) CPU time, best of each     {b_cpu / a_cpu:.2f}")
    ref_dt = best["a'"][0]
    print(f"ratio (b)/(a') wall time                 {b_dt / ref_dt:.2f}   (for reference)")
    print(f"loaded json in memory (a's peak - start)   {loaded:.0f} MiB  ({size_mib:.0f} MiB on disk)")
    print(f"(b) peak RSS / loaded json                 {b_peak / loaded:.2f}   (target <= 3)")
    print(f"(b) peak RSS / the file's size             {b_peak / size_mib:.2f}   (issue 21 target <= 2)")
    print(f"output: {out_mib:.0f} MiB; rows of the before/after table:\n")
    print("\n".join(table.splitlines()[-9:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
