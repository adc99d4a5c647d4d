"""The config of ``ltaug compare`` (its format: :mod:`trainer.compare`): reading and checking it,
choosing some of its cells and seeds, and where each run and cell dataset goes."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ltaug.errors import InputError, UsageError

TOP_KEYS = ("train", "images", "val", "val_images", "out", "seeds", "jobs", "threads", "bins", "baseline",
            "bootstrap", "training", "cells")
CELL_KEYS = ("data", "from", "tau")


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

    from .config import TrainConfig

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
    from .config import TrainConfig
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
    from ltaug.run.pipeline import make_step

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


def run_dir(cmp: Compare, cell: str, seed: int) -> Path:
    return cmp.out / "runs" / cell / f"seed{seed}"


def data_dir(cmp: Compare, cell: str, seed: int) -> Path:
    return cmp.out / "data" / cell / f"seed{seed}"
