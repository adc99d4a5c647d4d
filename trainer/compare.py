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

A cell holds :class:`~trainer.engine.TrainConfig` fields (overriding ``training``) and
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
images), ``OUT/ap_by_bin.png`` and ``OUT/per_class_delta.png``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from ltaug.errors import InputError, UsageError
from ltaug.jsonio import read_json, write_json_atomic

TOP_KEYS = ("train", "images", "val", "val_images", "out", "seeds", "jobs", "threads", "bins", "baseline",
            "bootstrap", "training", "cells")
CELL_KEYS = ("data", "from", "tau")
METRICS = ("AP", "AP50", "APr", "APc", "APf")


@dataclasses.dataclass
class Compare:
    train: Path
    images: Path
    val: Path
    val_images: Path
    out: Path
    seeds: list
    cells: dict
    training: dict
    jobs: int = 1
    threads: int = 1
    bins: dict = dataclasses.field(default_factory=dict)
    baseline: str = "baseline"
    bootstrap: dict = dataclasses.field(default_factory=dict)


def load_compare(path) -> Compare:
    """Read and check a compare config; one-line errors naming the file and key."""
    import yaml

    from .engine import TrainConfig

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a mapping")
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(TOP_KEYS)})")
    missing = [k for k in ("train", "images", "val", "val_images", "out", "cells") if k not in doc]
    if missing:
        raise UsageError(f"{path}: missing key(s) {', '.join(missing)}")
    base = path.parent
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"train", "images", "out", "val", "val_images",
                                                                 "seed", "init_from", "resume"}
    training = dict(doc.get("training") or {})
    for key in ("backbone_weights", "counts_from"):
        if training.get(key):
            training[key] = str(_relative_to(base, training[key]))
    cells = doc["cells"]
    if not isinstance(cells, dict) or not cells:
        raise UsageError(f"{path}: cells must be a non-empty mapping of name -> settings")
    for name, cell in cells.items():
        cell = cells[name] = dict(cell or {})
        bad = sorted(set(cell) - fields - set(CELL_KEYS))
        if bad:
            raise UsageError(f"{path}: cell {name}: unknown setting(s) {', '.join(bad)}")
        if "from" in cell and cell["from"] not in cells:
            raise UsageError(f"{path}: cell {name}: from: {cell['from']} is not a cell")
        if ("tau" in cell or "stage2" in cell) and "from" not in cell:
            raise UsageError(f"{path}: cell {name}: tau / stage2 need from: (the stage-1 cell)")
        if "data" in cell:
            _check_data(path, name, cell["data"])
        _check_training(path, name, {**training, **cell})
    baseline = doc.get("baseline", "baseline")
    if baseline not in cells:
        raise UsageError(f"{path}: baseline {baseline!r} is not a cell")
    seeds = doc.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise UsageError(f"{path}: seeds must be a list of integers")
    at = {k: _relative_to(base, doc[k]) for k in ("train", "images", "val", "val_images", "out")}
    return Compare(**at, seeds=seeds, cells=cells,
                   training=training, jobs=int(doc.get("jobs", 1)), threads=int(doc.get("threads", 1)),
                   bins=dict(doc.get("bins") or {}), baseline=baseline, bootstrap=dict(doc.get("bootstrap") or {}))


def _relative_to(base: Path, value) -> Path:
    """A path of the config, relative to the config's folder, without ``..`` parts where it can."""
    return Path(os.path.normpath(base / value))


def _check_training(path, name, settings: dict) -> None:
    """The cell's trainer settings checked now, not when its run starts hours later: the
    TrainConfig rules, and the loss built once for two classes (its name and parameters)."""
    from .engine import TrainConfig
    from .losses import build_loss

    fields = {k: v for k, v in settings.items() if k not in CELL_KEYS}
    if "from" in settings and "stage2" in settings:
        fields["init_from"] = "stage-1 run"
    try:
        cfg = TrainConfig(train="", images="", out="", **fields)
        cfg.validate()
        params = dict(cfg.loss_params)
        if cfg.loss in ("eql", "eql_softmax"):
            params.setdefault("num_images", 10)
        build_loss(cfg.loss, num_classes=2, class_instance_counts=[10, 1], class_image_counts=[10, 1], **params)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: cell {name}: {exc}") from None


def _check_data(path, name, steps) -> None:
    from ltaug.pipeline import make_step

    if not isinstance(steps, list) or not steps:
        raise UsageError(f"{path}: cell {name}: data must be a list of steps")
    for k, item in enumerate(steps):
        if not isinstance(item, dict) or len(item) != 1:
            raise UsageError(f"{path}: cell {name}: data step {k + 1} must be a one-key mapping")
        (op, params), = item.items()
        try:
            make_step(op, params, 0)
        except ValueError as exc:
            raise UsageError(f"{path}: cell {name}: data step {k + 1}: {exc}") from None


# -- the parts of a cell ----------------------------------------------------------------------

def run_dir(cmp: Compare, cell: str, seed: int) -> Path:
    return cmp.out / "runs" / cell / f"seed{seed}"


def data_dir(cmp: Compare, cell: str, seed: int) -> Path:
    return cmp.out / "data" / cell / f"seed{seed}"


def make_data(cmp: Compare, cell: str, seed: int, workers: int) -> tuple[Path, Path, int]:
    """The cell's dataset for ``seed`` (made once by the engine): annotations, images, epochs it holds."""
    from ltaug import load_dataset
    from ltaug.engine import partial_dir, run_pipeline
    from ltaug.pipeline import make_step

    steps = [make_step(op, params, seed + k) for k, item in enumerate(cmp.cells[cell]["data"])
             for op, params in item.items()]
    out = data_dir(cmp, cell, seed)
    if not (out / "run.json").is_file():
        run_pipeline(load_dataset(cmp.train), cmp.images, out, steps, workers=workers,
                     resume=partial_dir(out).exists(), progress=False)
    first = steps[0]
    epochs = first.spec.epochs if first.op == "resample" else 1
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

    from .engine import TrainConfig, train
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

def select(cmp: Compare, *, cells=None, seeds=None, out=None) -> Compare:
    """The study restricted to some cells (with the cells they start ``from``) and seeds, or
    written elsewhere; one-line errors for names that are not in it."""
    chosen = list(cmp.cells) if cells is None else list(cells)
    unknown = [c for c in chosen if c not in cmp.cells]
    if unknown:
        raise UsageError(f"no cell {', '.join(unknown)} in the config (cells: {', '.join(cmp.cells)})")
    for cell in chosen:  # a stage-2 cell needs its stage-1 cell
        source = cmp.cells[cell].get("from")
        if source is not None and source not in chosen:
            chosen.append(source)
    seeds = cmp.seeds if seeds is None else list(seeds)
    baseline = cmp.baseline if cmp.baseline in chosen else chosen[0]
    return dataclasses.replace(cmp, cells={c: v for c, v in cmp.cells.items() if c in chosen}, seeds=seeds,
                               out=cmp.out if out is None else Path(out), baseline=baseline)


def _order(cmp: Compare) -> list[list[str]]:
    """Cells in waves: a cell runs after the cell it starts ``from``."""
    waves, done = [], set()
    left = list(cmp.cells)
    while left:
        wave = [c for c in left if cmp.cells[c].get("from") in (None, *done)]
        if not wave:
            raise UsageError(f"cells {', '.join(left)} depend on each other in a loop")
        waves.append(wave)
        done.update(wave)
        left = [c for c in left if c not in done]
    return waves


def run_compare(cmp: Compare, *, jobs: int | None = None, log=print) -> dict:
    """Make the data, run every (cell, seed) not yet finished, then write the report.

    Logs each run as it starts and ends, with the count done and a rough time left (the mean
    time of the runs done from scratch so far x the runs left / the runs at a time; a run that
    resumed from a checkpoint says little of a whole run's time). The summary's ``failed``
    lists the runs whose process failed."""
    jobs = cmp.jobs if jobs is None else jobs
    cmp.out.mkdir(parents=True, exist_ok=True)
    left = sum(not (run_dir(cmp, c, s) / "result.json").is_file() for c in cmp.cells for s in cmp.seeds)
    _check_stage1_checkpoints(cmp)
    log(f"{left} of {len(cmp.cells) * len(cmp.seeds)} runs to do, {jobs} at a time")
    finished, timed, failed, busy = 0, 0, [], 0.0
    for wave in _order(cmp):
        todo = []
        for seed in cmp.seeds:  # seed-major: a study stopped half-way has every cell at its first seeds
            for cell in wave:
                if (run_dir(cmp, cell, seed) / "result.json").is_file():
                    continue
                data = make_data(cmp, cell, seed, workers=jobs) if "data" in cmp.cells[cell] else None
                todo.append((cell, seed, data))
        with ThreadPoolExecutor(max(1, jobs)) as pool:  # each thread waits on its own training process
            for future in as_completed([pool.submit(_spawn, cmp, *t, log=log) for t in todo]):
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
    from .compare_report import write_report

    return {**write_report(cmp), "failed": failed}


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


def _spawn(cmp: Compare, cell: str, seed: int, data, *, log=print) -> tuple:
    folder = run_dir(cmp, cell, seed)
    resumed = (folder / "checkpoint.pt").is_file()
    log(f"{cell} seed {seed}: {'resumed' if resumed else 'started'} ({folder / 'log.txt'})")
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"config": cell_config(cmp, cell, seed, data), "tau": cmp.cells[cell].get("tau"),
            "val": str(cmp.val), "val_images": str(cmp.val_images), "bins": cmp.bins,
            "bins_from": str(cmp.train), "threads": cmp.threads}
    write_json_atomic(folder / "spec.json", spec, indent=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(cmp.threads), "MKL_NUM_THREADS": str(cmp.threads)}
    start = time.perf_counter()
    with open(folder / "log.txt", "ab") as log:
        code = subprocess.call([sys.executable, "-m", "trainer.compare", str(folder / "spec.json")],
                               stdout=log, stderr=subprocess.STDOUT, env=env,
                               cwd=Path(__file__).resolve().parents[1])
    return cell, seed, code == 0, time.perf_counter() - start, resumed


if __name__ == "__main__":
    run_cell(read_json(sys.argv[1]))
