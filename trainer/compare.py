"""`ltaug compare`: a matrix of data-side x loss-side experiments over seeds, run and reported.

A config (YAML; paths relative to it) names the data, the shared training settings and the
cells; every cell runs once per seed::

    train: ../data/coco-lt/annotations/instances_train.json
    images: ../data/coco-lt/images/train2017
    val: ../data/coco-lt/annotations/instances_val.json
    val_images: ../data/coco-lt/images/val2017
    out: ../out/study
    seeds: [0, 1, 2]
    jobs: 2                      # cells trained at once, each its own process
    threads: 1                   # torch threads per process
    bins: {rare_max: 5, common_max: 15}   # r/c/f by training images per class
    baseline: baseline
    bootstrap: {samples: 200}
    training: {epochs: 12, preset: cpu, backbone_weights: ../weights/mobilenetv2_imagenet_features.pt}
    cells:
      baseline: {}
      rfs: {sampler: rfs, rfs_threshold: 0.1}
      paste: {data: [{paste: {weighting: budget, target: {min_instances: 40}}}]}
      seesaw: {loss: seesaw}
      crt: {from: baseline, stage2: crt, sampler: cas, epochs: 2}
      tau: {from: baseline, tau: 1.0}

A cell holds :class:`~trainer.config.TrainConfig` fields (overriding ``training``) and
optionally ``data`` (pipeline steps as in ``ltaug run``: the engine writes that dataset once
per seed under ``OUT/data/CELL/seedS`` and the cell trains on it with plain sampling; class
frequencies still come from the original training file), ``from`` (another cell: stage 2
starts from its run of the same seed) and ``tau`` (no training: the ``from`` run's classifier
tau-normalised, Kang et al. ICLR 2020). A data pipeline whose first step is a resample with
``epochs: E`` already holds E epochs of samples, so the cell trains for epochs / E passes.

Resumable at two levels: a finished cell (``OUT/runs/CELL/seedS/result.json``) is never rerun;
an unfinished one restarts from its last epoch checkpoint. Output: ``OUT/results.md`` and
``OUT/results.csv`` (mean +/- std over seeds of AP, AP50, APr, APc, APf for bbox and segm,
training minutes; the difference to the baseline with a 95% paired-bootstrap interval over val
images), ``OUT/ap_by_bin.png`` and ``OUT/per_class_delta.png`` (:mod:`trainer.compare_report`).

Trainer numerics differ by CPU, so every run records the host that trained it
(``OUT/runs/CELL/seedS/host.json``, :mod:`trainer.host`: CPU, torch's kernel set and a numerics
probe). A run resumed on a host with another probe is named as it starts; the report says which
host each run came from whenever a table holds more than one.

The config is read and checked by :mod:`trainer.compare_config`.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from ltaug.errors import UsageError
from ltaug.io.jsonio import read_json, write_json_atomic

from .compare_config import CELL_KEYS, Compare, data_dir, run_dir
from .compare_report import write_report
from .host import host_label, host_record, record_run_host

# -- the parts of a cell ----------------------------------------------------------------------


def make_data(cmp: Compare, cell: str, seed: int, workers: int) -> tuple[Path, Path, int]:
    """The cell's dataset for ``seed`` (made once by the engine): annotations, images, epochs it holds."""
    from ltaug import load_dataset
    from ltaug.run.engine import partial_dir, run_pipeline
    from ltaug.run.pipeline import make_step

    steps = [make_step(op, params, seed + k) for k, item in enumerate(cmp.cells[cell]["data"])
             for op, params in item.items()]
    out = data_dir(cmp, cell, seed)
    if not (out / "run.json").is_file():
        run_pipeline(load_dataset(cmp.train), cmp.images, out, steps, workers=workers,
                     resume=partial_dir(out).exists(), progress=False)
    first = steps[0]
    epochs = first.epochs if first.name == "resample" else 1
    return out / "annotations.json", out / "images", epochs


def cell_config(cmp: Compare, cell: str, seed: int, data=None) -> dict:
    """The TrainConfig fields of one run."""
    settings = {k: v for k, v in {**cmp.training, **cmp.cells[cell]}.items() if k not in CELL_KEYS}
    cfg = {**settings, "train": str(cmp.train), "images": str(cmp.images), "out": str(run_dir(cmp, cell, seed)),
           "seed": seed, "threads": cmp.threads}
    if data is not None:
        ann, images, data_epochs = data
        epochs = int(settings.get("epochs", 12))
        if epochs % data_epochs:
            raise UsageError(f"cell {cell}: training epochs {epochs} is not a multiple of the {data_epochs} "
                             f"epochs its data holds")
        cfg.update(train=str(ann), images=str(images), counts_from=settings.get("counts_from") or str(cmp.train),
                   sampler="plain", epochs=epochs // data_epochs)
    if "from" in cmp.cells[cell]:
        cfg["init_from"] = str(run_dir(cmp, cmp.cells[cell]["from"], seed))
    return cfg


def run_cell(spec: dict) -> dict:
    """Train one run (resuming from its checkpoint), predict on val, score it; writes result.json.

    Runs in its own process (``python -m trainer.compare RUN.json``)."""
    import torch

    from ltaug import load_dataset

    from .config import TrainConfig
    from .engine import train
    from .inference import evaluate_with_bins, load_run, predict, val_dataset

    torch.set_num_threads(spec["threads"])
    out = Path(spec["config"]["out"])
    device = TrainConfig(**spec["config"]).device  # predict where the run trained
    start = time.perf_counter()
    if spec.get("tau") is None:  # resume: a stopped study continues its runs
        train(TrainConfig(**{**spec["config"], "resume": True}), progress=False)
        run = load_run(out, device=device)
        tau = None
    else:
        run = load_run(spec["config"]["init_from"], device=device)
        tau = float(spec["tau"])
    val = load_dataset(spec["val"])
    dataset = val_dataset(val, spec["val_images"])
    if tau is None:
        dets = predict(run.model, dataset, device=device, label_to_category=run.label_to_category, progress=False)
    else:
        from .decouple import tau_normalization

        with tau_normalization(run.model, tau):
            dets = predict(run.model, dataset, device=device, label_to_category=run.label_to_category,
                           progress=False)
    iou_types = ("bbox", "segm") if run.model.roi_heads.has_mask() else ("bbox",)
    result = evaluate_with_bins(val, dets, iou_types=iou_types, train_ds=load_dataset(spec["bins_from"]),
                                rare_max=spec["bins"].get("rare_max"), common_max=spec["bins"].get("common_max"))
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] \
        if (out / "metrics.jsonl").is_file() else []
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "detections.json", dets)
    record = {"eval": result, "train_seconds": sum(h["seconds"] for h in history),
              "seconds": time.perf_counter() - start, "epochs": len(history)}
    write_json_atomic(out / "result.json", record, indent=True)
    return record


# -- the matrix -------------------------------------------------------------------------------


def _todo(cmp: Compare) -> list[tuple[str, int]]:
    """The (cell, seed) runs not finished yet, seed-major (a study stopped half-way has every cell
    at its first seeds), a cell after the cell it starts ``from``; a loop of ``from`` is refused."""
    order, done = [], set()
    left = list(cmp.cells)
    while left:
        ready = [c for c in left if cmp.cells[c].get("from") in (None, *done)]
        if not ready:
            raise UsageError(f"cells {', '.join(left)} depend on each other in a loop")
        order += ready
        done.update(ready)
        left = [c for c in left if c not in done]
    return [(cell, seed) for seed in cmp.seeds for cell in order
            if not (run_dir(cmp, cell, seed) / "result.json").is_file()]


def run_compare(cmp: Compare, *, jobs: int | None = None, log=print) -> dict:
    """Make the data, run every (cell, seed) not yet finished, then write the report.

    Up to ``jobs`` runs at once, in :func:`_todo`'s order; a run that starts ``from`` another
    starts as soon as that run of its seed has finished (not after every run of a wave), and
    is skipped, and named as failed, when that run failed. A data cell's dataset is made just
    before its run starts. Logs each run as it starts and ends, with the count done and a rough
    time left (the mean time of the runs done from scratch so far x the runs left / the runs at
    a time; a run that resumed from a checkpoint says little of a whole run's time). The
    summary's ``failed`` lists the runs whose process failed or could not start.

    Two ``ltaug compare`` on one output folder never train one run at once: a run's folder is
    locked (``.lock``, :func:`_claim`) while its process runs, and a run locked by another
    process is left to it, with its stage-2 runs, and listed in the summary's ``elsewhere``."""
    jobs = max(1, cmp.jobs if jobs is None else jobs)
    cmp.out.mkdir(parents=True, exist_ok=True)
    waiting = _todo(cmp)
    left = len(waiting)
    _check_stage1_checkpoints(cmp)
    log(f"{left} of {len(cmp.cells) * len(cmp.seeds)} runs to do, {jobs} at a time")
    host = host_record() if left else None  # trainer numerics differ by CPU: every run records its host
    if host:
        log(f"this host: {host_label(host)}")
    finished, timed, failed, elsewhere, busy = 0, 0, [], [], 0.0
    running: dict = {}
    with ThreadPoolExecutor(jobs) as pool:  # each thread waits on its own training process
        while waiting or running:
            for cell, seed in list(waiting):
                source = cmp.cells[cell].get("from")
                stage1 = f"{source}/seed{seed}" if source else None
                if stage1 in failed or stage1 in elsewhere:
                    waiting.remove((cell, seed))
                    (failed if stage1 in failed else elsewhere).append(f"{cell}/seed{seed}")
                    finished += 1
                    log(f"[{finished}/{left}] {cell} seed {seed}: skipped, its {source} run "
                        + ("failed" if stage1 in failed else "is being run by another ltaug compare"))
                elif len(running) < jobs and not (source and ((source, seed) in waiting
                                                              or (source, seed) in running.values())):
                    waiting.remove((cell, seed))
                    lock = _claim(run_dir(cmp, cell, seed))
                    if lock is None or (run_dir(cmp, cell, seed) / "result.json").is_file():
                        if lock is None:
                            elsewhere.append(f"{cell}/seed{seed}")
                        else:
                            lock.close()
                        finished += 1
                        log(f"[{finished}/{left}] {cell} seed {seed}: "
                            + ("being run by another ltaug compare (its folder is locked): left to it"
                               if lock is None else "finished by another ltaug compare"))
                        continue
                    data = make_data(cmp, cell, seed, workers=jobs) if "data" in cmp.cells[cell] else None
                    running[pool.submit(_spawn, cmp, cell, seed, data, lock=lock, host=host, log=log)] = (cell, seed)
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                del running[future]
                cell, seed, ok, seconds, resumed = future.result()
                finished += 1
                if ok and not resumed:
                    timed, busy = timed + 1, busy + seconds
                if not ok:
                    failed.append(f"{cell}/seed{seed}")
                rest = time_left(busy, timed, left - finished, jobs)
                log(f"[{finished}/{left}] {cell} seed {seed}: {'done' if ok else 'FAILED (see its log.txt)'} "
                    f"in {seconds / 60:.1f} min" + (" (resumed)" if resumed else "")
                    + (f"; about {rest / 60:.0f} min left" if rest else ""))
    return {**write_report(cmp), "failed": failed, "elsewhere": elsewhere}


def _check_stage1_checkpoints(cmp: Compare) -> None:
    """A stage-2 run still to do whose stage-1 run has finished but kept no ``checkpoint.pt``
    (checkpoints are large and often not kept, e.g. not committed) cannot start: say so before
    any run starts rather than fail it with a traceback in its log.txt."""
    for cell, settings in cmp.cells.items():
        source = settings.get("from")
        for seed in cmp.seeds if source else ():
            stage1 = run_dir(cmp, source, seed)
            if (not (run_dir(cmp, cell, seed) / "result.json").is_file()
                    and (stage1 / "result.json").is_file() and not (stage1 / "checkpoint.pt").is_file()):
                raise UsageError(
                    f"{cell} seed {seed} starts from {stage1}, a finished run without its checkpoint.pt: copy it "
                    f"back, or remake it (runs are reproducible) with --cells {source} --seeds {seed} --out OTHER "
                    f"and copy OTHER/runs/{source}/seed{seed}/checkpoint.pt there")


def time_left(busy: float, timed: int, rest: int, jobs: int) -> float:
    """Rough seconds until the ``rest`` runs left are done: the mean time of the ``timed`` runs
    (``busy`` seconds in all) x ``rest``, over the runs at a time; 0 when nothing is known yet."""
    return busy / timed * rest / max(1, min(jobs, rest)) if timed and rest > 0 else 0.0


def _claim(folder: Path):
    """The run folder's lock (an open ``.lock`` under an exclusive ``flock``, released when closed
    or when this process ends, however it ends), or None while another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lock", "ab")  # held while the run's process runs
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _spawn(cmp: Compare, cell: str, seed: int, data, *, lock, host: dict, log=print) -> tuple:
    """Train one run in its own process while holding its folder's ``lock`` (released at the end)."""
    with lock:
        folder = run_dir(cmp, cell, seed)
        resumed = (folder / "checkpoint.pt").is_file()
        log(f"{cell} seed {seed}: {'resumed' if resumed else 'started'} ({folder / 'log.txt'})")
        folder.mkdir(parents=True, exist_ok=True)
        hosts = record_run_host(folder, host)
        if len(hosts) > 1:
            log(f"{cell} seed {seed}: resumed on a host whose numbers differ from the one it started on "
                f"({host_label(hosts[-2])}, now {host_label(host)}): its result mixes hosts, and the report says so")
        spec = {"config": cell_config(cmp, cell, seed, data), "tau": cmp.cells[cell].get("tau"),
                "val": str(cmp.val), "val_images": str(cmp.val_images), "bins": cmp.bins,
                "bins_from": str(cmp.train), "threads": cmp.threads}
        write_json_atomic(folder / "spec.json", spec, indent=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(cmp.threads), "MKL_NUM_THREADS": str(cmp.threads)}
        start = time.perf_counter()
        with open(folder / "log.txt", "ab") as log_file:
            code = subprocess.call([sys.executable, "-m", "trainer.compare", str(folder / "spec.json")],
                                   stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                   cwd=Path(__file__).resolve().parents[1])
        return cell, seed, code == 0, time.perf_counter() - start, resumed


if __name__ == "__main__":
    run_cell(read_json(sys.argv[1]))
