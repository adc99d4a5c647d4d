#!/usr/bin/env python
"""How fast is pixel work against the JPEG codec floor and against the peers' copy-paste?  A benchmark, not a test.

On the shared COCO-LT train images (or ``--annotations`` / ``--images``), every image of the
annotation file goes through one worker job: read the file, decode, (an operation), encode,
write. Measured in one run, each with 1 and 2 worker processes (``--workers``):

* **(a) the floor**: the job with no operation: read + ``cv2.imdecode``
  (``IMREAD_COLOR | IMREAD_IGNORE_ORIENTATION``) + ``cv2.imencode`` at ltaug's JPEG quality
  (``ltaug.pixels.functional.JPEG_QUALITY``, the one ltaug's writer uses) + write (temporary file, then
  rename, as ``ltaug.pixels.imagefile.write_file_atomic``). Nothing that writes JPEGs can beat it
  with the same codec. (The same calls as ``ltaug.pixels.functional`` / ``ltaug.pixels.imagefile``, written out
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

* **ltaug**, in the same interleaved loop as the floor:

  - **(b) paste, gaussian**: the job with ``render_paste`` as the operation (``Paste(objects=5,
    blend="gaussian", weighting="uniform")``; recipes planned by ``plan_paste`` before the clock
    starts, from an object bank built once into a temporary folder by ``build_bank`` and opened
    in the parent, so the forked workers inherit its memory maps); **(c)** the same with
    ``blend="poisson"``. Pixels and annotations (occlusion) only: what the op costs on top of
    the codec.
  - **end to end**, what ``ltaug paste`` / ``ltaug mosaic`` do: ``run_pipeline`` (plan, render
    in the engine's pool, encode, write, shard files, merge) into a fresh temporary output:
    **(b')** ``(b)'s spec.replace(bank=...)``, **(c')** the same with poisson, **(d)**
    ``Mosaic(count=<number of images>)`` (each output reads and decodes 4
    images). Their images/s are the engine's own (``images_written / steps_run[0]["seconds"]``,
    the figure ``ltaug`` prints) and are compared with the floor *including* its pool's
    start-up, as the engine starts its pool inside the step. With 1 worker the engine runs in
    the calling process (no pool).

  The ratios to the floor are printed, the targets checked (gaussian paste at least 0.7 of
  the floor's images/s; 2 workers at least 1.8x one), and ltaug / peer = (ltaug / this
  process's floor) / (peer / the peer's own floor). ``--profile`` adds cProfile breakdowns
  (ms per image) of ``render_paste`` over every image and of ``run_pipeline`` with 1 worker.
  OpenCV runs one thread in every process, the parent included (1 worker = 1 core).

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
    .venv/bin/python benchmarks/bench_paste.py --repeat 1 --peers --profile   # where ltaug's time goes
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


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have been waited for."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def measure(paths: list[Path], workers: int, op=None, *, quality: int, out_dir: Path) -> dict:
    """Run ``image_job`` over every path with a fresh pool of ``workers`` processes, writing into
    ``out_dir`` emptied first (untimed).

    Returns seconds (pool already started), images/s, the pool's start-up seconds, the CPU
    milliseconds per image of every process (pool start-up included: load-independent, unlike
    the seconds), the mean milliseconds per image of each stage (summed over workers: CPU-like
    cost per image), and the op's ``info`` summed and divided by the number of images.
    """
    shutil.rmtree(out_dir, ignore_errors=True)  # an empty folder, as ltaug writes a new output: replacing
    out_dir.mkdir(parents=True)                 # the last run's files costs more (2-3x per write here)
    _STATE.update(paths=[str(p) for p in paths], op=op, quality=int(quality), out_dir=str(out_dir))
    n = len(paths)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
        pool.map(_started, range(4 * workers), chunksize=1)
        start = time.perf_counter()
        rows = pool.map(image_job, range(n), chunksize=4)
        seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0  # the pool's processes are reaped on leaving the block
    stages = np.sum([r[0] for r in rows], axis=0) / n * 1000
    info: dict[str, float] = {}
    for _, row_info in rows:
        for k, v in row_info.items():
            info[k] = info.get(k, 0.0) + v
    return {"seconds": seconds, "images_per_s": n / seconds, "startup_s": start - t0, "cpu_ms": cpu / n * 1000,
            "stage_ms": dict(zip(STAGES, np.round(stages, 3).tolist())),
            "per_image": {k: v / n for k, v in info.items()}}


class EndToEnd:
    """A variant timed as a whole, not per image: ``run(workers)`` returns a result like ``measure``'s."""

    def __init__(self, run):
        self.run = run


def interleaved(paths: list[Path], variants: dict, workers: list[int], repeat: int, *,
                quality: int, out_dir: Path) -> dict[str, dict[int, dict]]:
    """``{variant: {workers: best run}}``: every (variant, workers) run once per repeat, in turn.

    A variant is an op for ``image_job`` (None: the floor) or an :class:`EndToEnd`.
    """
    best: dict[str, dict[int, dict]] = {name: {} for name in variants}
    for _ in range(repeat):
        for name, op in variants.items():
            for w in workers:
                if isinstance(op, EndToEnd):
                    r = op.run(w)
                else:
                    r = measure(paths, w, op, quality=quality, out_dir=out_dir)
                if w not in best[name] or r["seconds"] < best[name][w]["seconds"]:
                    best[name][w] = r
    return best


def coco_image_paths(annotations: Path, images_dir: Path) -> list[Path]:
    """The images of a COCO file, in its order (peers and ltaug process the same list)."""
    with open(annotations, "rb") as fh:
        return [images_dir / im["file_name"] for im in json.load(fh)["images"]]


# -- ltaug: render_paste as the job's op, and run_pipeline end to end --------------------------------
LTAUG_OPS = {"paste_gaussian": "(b) paste gaussian: render_paste in the job",
             "paste_poisson": "(c) paste poisson: render_paste in the job"}
LTAUG_E2E = {"e2e_paste_gaussian": "(b') ltaug paste gaussian, end to end",
             "e2e_paste_poisson": "(c') ltaug paste poisson, end to end",
             "e2e_mosaic": "(d) ltaug mosaic, end to end (4 decodes/image)"}


def setup_ltaug(args, paths: list[Path], tmp: Path) -> tuple[dict, dict, dict]:
    """ltaug's variants for :func:`interleaved`, what they need for ``--profile``, and facts to print.

    The bank is built once (2 workers) into ``tmp/bank`` and opened here, before any pool forks.
    """
    from ltaug.io.read import load_dataset
    from ltaug.ops import Mosaic, Paste
    from ltaug.pixels.bank import Bank, build_bank
    from ltaug.pixels.copy_paste import plan_paste, render_paste
    from ltaug.run.engine import run_pipeline

    ds = load_dataset(args.annotations)
    names = [args.images / im["file_name"] for im in ds.images]
    if names != list(paths):
        raise SystemExit("ltaug's dataset lists the images in another order than the annotation file")
    ids = [im["id"] for im in ds.images]
    anns_of: dict = {}
    for a in ds.annotations:
        anns_of.setdefault(a["image_id"], []).append(a)
    bank_dir = tmp / "bank"
    built = build_bank(ds, args.images, bank_dir, workers=2, progress=False)
    bank = Bank(bank_dir)
    facts = {"bank_objects": built["objects"], "bank_seconds": round(built["seconds"], 3)}
    specs, variants = {}, {}
    for blend in ("gaussian", "poisson"):
        spec = Paste(objects=args.objects, blend=blend, weighting="uniform", seed=args.seed)
        recipes, plan = plan_paste(ds, bank, spec)
        recipe_of = {r["image_id"]: r for r in recipes}
        if set(recipe_of) != set(ids):
            raise SystemExit(f"plan_paste ({blend}) has recipes for {len(recipe_of)} of {len(ids)} images")
        specs[blend] = (spec, recipe_of)
        facts[f"planned_{blend}"] = {"objects_per_image": sum(len(r["objects"]) for r in recipes) / len(ids),
                                     "no_room": plan["no_room"], "eligible_objects": plan["eligible_objects"]}

        def op(img, i, spec=spec, recipe_of=recipe_of):
            iid = ids[i]
            _, pasted, counts = render_paste(img, anns_of.get(iid, []), recipe_of[iid], bank, spec)
            return img, {"pasted": len(pasted), "poisson": counts["blend"].get("poisson", 0)}

        variants[f"paste_{blend}"] = op

    def end_to_end(make_step):
        def run(workers: int) -> dict:
            out = tmp / "e2e-out"
            shutil.rmtree(out, ignore_errors=True)
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            summary = run_pipeline(ds, args.images, out, [make_step()], workers=workers, progress=False)
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
            shutil.rmtree(out, ignore_errors=True)
            step = summary["steps_run"][0]
            n, sec = step["images_written"], step["seconds"]
            added = sum(step["added_per_class"].values()) / n
            per_image = {"pasted": added} if step["op"] == "paste" else {"annotations": added}
            if step.get("blend", {}).get("poisson"):
                per_image["poisson"] = step["blend"]["poisson"] / n
            return {"seconds": sec, "images_per_s": n / sec, "startup_s": 0.0, "images": n, "cpu_ms": cpu / n * 1000,
                    "run_s": summary["seconds"], "wall_s": round(wall, 3), "stage_ms": {}, "per_image": per_image}
        return EndToEnd(run)

    for blend in ("gaussian", "poisson"):
        variants[f"e2e_paste_{blend}"] = end_to_end(
            lambda spec=specs[blend][0]: spec.replace(bank=str(bank_dir)))
    variants["e2e_mosaic"] = end_to_end(
        lambda: Mosaic(count=len(paths), seed=args.seed))
    context = {"ds": ds, "ids": ids, "anns_of": anns_of, "bank": bank, "bank_dir": bank_dir,
               "spec": specs["gaussian"][0], "recipe_of": specs["gaussian"][1], "render_paste": render_paste,
               "run_pipeline": run_pipeline}
    return variants, context, facts


def _profile_table(prof, n: int, title: str, sort: str, limit: int) -> None:
    """The top ``limit`` functions by ``sort`` (tottime / cumtime), in ms per image."""
    import pstats

    st = pstats.Stats(prof).stats
    rows = sorted(st.items(), key=lambda kv: kv[1][2 if sort == "tottime" else 3], reverse=True)[:limit]
    print(f"\n{title}: top {limit} by {sort}, ms per image ({n} images)")
    print(f"{'calls/img':>9} {'self ms':>8} {'cum ms':>8}  function")
    for (file, line, func), (_, ncalls, tt, ct, _) in rows:
        where = func if file == "~" else f"{Path(file).parent.name}/{Path(file).name}:{line} {func}"
        print(f"{ncalls / n:9.2f} {tt / n * 1000:8.3f} {ct / n * 1000:8.3f}  {where}")


def profile_ltaug(paths: list[Path], context: dict, tmp: Path) -> None:
    """cProfile of render_paste over every image (decoded beforehand) and of run_pipeline, 1 worker."""
    import cProfile

    n = len(paths)
    images = [cv2.imdecode(np.fromfile(p, np.uint8), IMREAD_FLAGS) for p in paths]
    render, bank, spec = context["render_paste"], context["bank"], context["spec"]
    ids, anns_of, recipe_of = context["ids"], context["anns_of"], context["recipe_of"]
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for img, iid in zip(images, ids):
        render(img, anns_of.get(iid, []), recipe_of[iid], bank, spec)
    prof.disable()
    print(f"\nprofile: render_paste (gaussian) over {n} images: {(time.perf_counter() - t0) / n * 1000:.2f} ms per "
          "image under cProfile")
    _profile_table(prof, n, "render_paste", "tottime", 22)

    out = tmp / "profile-out"
    shutil.rmtree(out, ignore_errors=True)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    summary = context["run_pipeline"](context["ds"], paths[0].parent, out,
                                      [spec.replace(bank=str(context["bank_dir"]))],
                                      workers=1, progress=False)
    prof.disable()
    wall = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    print(f"\nprofile: run_pipeline paste gaussian, 1 worker: {wall / n * 1000:.2f} ms per image under cProfile "
          f"(step {summary['steps_run'][0]['seconds'] / n * 1000:.2f}, run {summary['seconds'] / n * 1000:.2f})")
    _profile_table(prof, n, "run_pipeline", "cumtime", 40)
    _profile_table(prof, n, "run_pipeline", "tottime", 25)


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
    cpu = f"{r['cpu_ms']:8.2f}" if "cpu_ms" in r else " " * 8
    return f"{label:<52} {w:>3} {r['images_per_s']:9.1f} {ratio} {scale} {cpu}"


COUNTS = ("pasted", "poisson", "annotations")  # per-image counts in ``per_image`` (the other keys are ms)


def _stage_line(r: dict) -> str:
    parts = [f"{k} {v:.2f}" for k, v in r["stage_ms"].items()]
    parts += [f"{k} {v:.2f}" + ("" if k in COUNTS else " ms") for k, v in r["per_image"].items()
              if k not in COUNTS or v]
    return "ms per image (1 worker): " + ", ".join(parts)


def with_startup(r: dict) -> float:
    """images/s of a pool run counting its pool's start-up (as the engine's step seconds do)."""
    return r["images_per_s"] * r["seconds"] / (r["seconds"] + r["startup_s"])


def report(n: int, floor: dict[int, dict], peers: list[dict], ltaug: dict | None = None,
           facts: dict | None = None) -> None:
    ltaug = ltaug or {}
    print(f"\n{'step':<52} {'wk':>3} {'images/s':>9} {'/ floor':>8} {'/ 1 wk':>7} {'CPU ms':>8}")
    for w, r in floor.items():
        print(_row("(a) floor: read + decode + encode + write", w, r, r["images_per_s"], floor.get(1)))
    print("    " + _stage_line(floor[min(floor)]))
    for w, r in floor.items():
        print(_row("(a+) floor incl. its pool's start-up", w, {"images_per_s": with_startup(r)},
                   None, {"images_per_s": with_startup(floor[1])} if 1 in floor else None))
    for key, label in LTAUG_OPS.items():
        if key in ltaug:
            for w, r in ltaug[key].items():
                print(_row(label, w, r, floor[w]["images_per_s"], ltaug[key].get(1)))
            print("    " + _stage_line(ltaug[key][min(ltaug[key])]))
    for key, label in LTAUG_E2E.items():
        if key in ltaug:
            for w, r in ltaug[key].items():
                print(_row(label, w, r, with_startup(floor[w]), ltaug[key].get(1)))
            r = ltaug[key][min(ltaug[key])]
            extra = ", ".join(f"{k} {v:.2f}" for k, v in r["per_image"].items())
            print(f"    {r['images']} images written; step {r['seconds']:.2f} s, whole run_pipeline "
                  f"{r['run_s']:.2f} s (+ links, annotations.json, run.json), wall {r['wall_s']:.2f} s "
                  f"(1 worker); per image: {extra}")
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
    print(f"\n{n} images; '/ floor' = images/s over the floor's measured in the same process (end-to-end "
          "rows: over (a+), the floor with its pool's start-up); '/ 1 wk' = over the same step with 1 worker; 'CPU ms' = CPU time of all its processes per image "
          "(load-independent)")
    if facts:
        print(f"bank: {facts['bank_objects']} objects, built in {facts['bank_seconds']:.2f} s (2 workers, untimed); "
              + "; ".join(f"{k}: {v['objects_per_image']:.2f} objects planned per image, {v['no_room']} without room"
                          for k, v in facts.items() if k.startswith("planned_")))
    if "e2e_paste_gaussian" in ltaug:
        _targets(floor, ltaug)
    if ltaug:
        _versus_peers(floor, ltaug, peers)


def _targets(floor: dict, ltaug: dict) -> None:
    print("\ntargets (issue): gaussian paste >= 0.70 of the floor's images/s; 2 workers >= 1.80x one worker")
    for key, ref in (("e2e_paste_gaussian", with_startup), ("paste_gaussian", lambda r: r["images_per_s"])):
        name = "end to end (b')/(a+)" if key.startswith("e2e") else "render_paste in the job (b)/(a)"
        for w, r in ltaug.get(key, {}).items():
            ratio = r["images_per_s"] / ref(floor[w])
            print(f"  {name}, {w} wk: {ratio:.2f}  {'met' if ratio >= 0.7 else 'NOT met'}  "
                  f"(in CPU time per image: {floor[w]['cpu_ms']:.2f} / {r['cpu_ms']:.2f} ms = "
                  f"{floor[w]['cpu_ms'] / r['cpu_ms']:.2f})")
        res = ltaug.get(key, {})
        if 1 in res and 2 in res:
            scale = res[2]["images_per_s"] / res[1]["images_per_s"]
            print(f"  {name}, 2 wk / 1 wk: {scale:.2f}  {'met' if scale >= 1.8 else 'NOT met'} "
                  f"(the floor's own: {floor[2]['images_per_s'] / floor[1]['images_per_s']:.2f})")


def _versus_peers(floor: dict, ltaug: dict, peers: list[dict]) -> None:
    """ltaug / peer, each over its own floor; and raw images/s."""
    lines = []
    for p in peers:
        if not p.get("available"):
            continue
        own_floor, result = p["results"]["floor"], p["results"][p["peer"]]
        for key, ref in (("paste_gaussian", lambda r: r["images_per_s"]), ("e2e_paste_gaussian", with_startup)):
            for w, r in ltaug.get(key, {}).items():
                if w not in result:
                    continue
                peer_rel = result[w]["images_per_s"] / own_floor[w]["images_per_s"]
                ours = r["images_per_s"] / ref(floor[w])
                lines.append(f"  {LTAUG_OPS.get(key) or LTAUG_E2E[key]:<44} / {p['peer']:<15} {w:>2} wk: "
                             f"{ours / peer_rel:5.2f} over floors ({ours:.2f} / {peer_rel:.2f}), raw "
                             f"{r['images_per_s'] / result[w]['images_per_s']:5.2f} "
                             f"({r['images_per_s']:.1f} / {result[w]['images_per_s']:.1f} images/s)")
    if lines:
        print("\nltaug / peer (above 1: ltaug faster):")
        print("\n".join(lines))


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
    ap.add_argument("--no-ltaug", dest="ltaug", action="store_false", help="only the floor and the peers")
    ap.add_argument("--profile", action="store_true",
                    help="also profile ltaug's gaussian paste (cProfile, 1 worker, after the timings)")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    args = ap.parse_args()
    if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, str(REPO))
    from ltaug.pixels.functional import JPEG_QUALITY

    # One OpenCV thread here too: 1 worker = 1 core, and a parent that never started OpenCV's
    # thread pool can fork children that call cv2.setNumThreads (see ltaug.pool).
    cv2.setNumThreads(1)
    paths = coco_image_paths(args.annotations, args.images)
    build = cv2.getBuildInformation()
    jpeg = next((ln.split(":", 1)[1].strip() for ln in build.splitlines() if ln.strip().startswith("JPEG:")), "?")
    print(f"load average at start: {os.getloadavg()[0]:.2f}  (cpus: {os.cpu_count()})")
    print(f"{len(paths)} images from {args.annotations}; OpenCV {cv2.__version__} ({jpeg}), "
          f"JPEG quality {JPEG_QUALITY}; best of {args.repeat} interleaved repeats")

    out_dir = Path(tempfile.mkdtemp(prefix="ltaug-bench-paste-"))
    facts: dict = {}
    try:
        for p in paths:  # warm the page cache, as every later run finds it
            p.read_bytes()
        variants: dict = {"floor": None}
        if args.ltaug:
            more, context, facts = setup_ltaug(args, paths, out_dir)
            variants.update(more)
        t0 = time.perf_counter()
        results = interleaved(paths, variants, args.workers, args.repeat, quality=JPEG_QUALITY,
                              out_dir=out_dir / "jobs")
        print(f"timed runs: {time.perf_counter() - t0:.0f} s")
        if args.ltaug and args.profile:
            profile_ltaug(paths, context, out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    peers = [peer(name, args, JPEG_QUALITY) for name in args.peers]
    ltaug = {k: v for k, v in results.items() if k != "floor"}
    report(len(paths), results["floor"], peers, ltaug, facts)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"images": len(paths), "quality": JPEG_QUALITY, "results": results,
                                         "ltaug_facts": facts, "peers": peers}, indent=1))


if __name__ == "__main__":
    main()
