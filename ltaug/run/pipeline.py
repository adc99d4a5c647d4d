"""Pipelines described in YAML: input, output and a list of steps, for ``ltaug run``.

Format (paths are relative to the config file's folder)::

    input: data/annotations/train.json    # COCO / LVIS json, or a YOLO-seg folder
    images: data/images/train             # the input's image root
    output: out/train_aug                 # output folder (annotations.json, images/, run.json)
    seed: 0                               # step k uses seed + k unless it sets its own `seed`
    workers: 2                            # optional (default: all cores)
    on_error: raise                       # optional: raise | skip (unreadable images)
    backend: local                        # optional: local (process pool) | ray (Ray tasks; the ray extra)
    address: auto                         # optional, with backend ray: a Ray cluster (auto, HOST:PORT)
    steps:
      - resample: {method: rfs, threshold: 0.1}
      - paste: {weighting: inverse, objects: 3, blend: gaussian}
      - paste: {weighting: budget, target: {min_instances: 20, max_factor: 10}, bank: bank/}
      - mosaic: {count: 100, size: [640, 640]}
      - mixup: {count: 50, alpha: 1.5}

Each step is a one-key mapping from a registered operation's name (:data:`ltaug.ops.OPERATIONS`:
resample, paste, mosaic, mixup, augment, and any registered by the user) to its parameters, named
as the operation declares them (the command-line flags, with ``_`` for ``-``: ``ltaug paste
--help`` lists them). A paste step's ``bank`` and the files an operation lists in its ``paths``
(an augment step's ``pipeline``) are relative to this file, like the other paths.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ltaug.errors import InputError, SpecError, UsageError
from ltaug.ops import OPERATIONS, Operation, from_mapping

TOP_KEYS = ("input", "images", "output", "seed", "workers", "on_error", "backend", "address", "steps")
BACKENDS = ("local", "ray")


def make_step(name: str, params: dict | None, seed: int) -> Operation:
    """The operation ``name`` with ``params`` (a YAML step's mapping); ``seed`` unless it sets its own."""
    return from_mapping(OPERATIONS.get(name), params, seed=seed)


@dataclasses.dataclass
class Pipeline:
    input: Path
    images: Path
    output: Path
    steps: list
    seed: int = 0
    workers: int | None = None
    on_error: str = "raise"
    backend: str | None = None  # None: the command line's, else local
    address: str | None = None


def load_pipeline(path: str | os.PathLike) -> Pipeline:
    """Read and check a pipeline file; every problem is a one-line error naming the file."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(TOP_KEYS)})")
    missing = [k for k in ("input", "images", "output", "steps") if k not in doc]
    if missing:
        raise UsageError(f"{path}: missing key(s) {', '.join(missing)}")
    seed = doc.get("seed", 0)
    if not isinstance(seed, int):
        raise UsageError(f"{path}: seed must be an integer, got {seed!r}")
    backend, address = doc.get("backend"), doc.get("address")
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"{path}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if address is not None and (backend != "ray" or not isinstance(address, str) or not address):
        raise UsageError(f"{path}: address needs backend: ray and a string (auto, HOST:PORT), got {address!r}")
    raw = doc["steps"]
    if not isinstance(raw, list) or not raw:
        raise UsageError(f"{path}: steps must be a non-empty list")
    steps = []
    for k, item in enumerate(raw):
        if not isinstance(item, dict) or len(item) != 1:
            raise UsageError(f"{path}: step {k + 1} must be a one-key mapping like `paste: {{objects: 3}}`")
        (op, params), = item.items()
        if params is not None and not isinstance(params, dict):
            raise UsageError(f"{path}: step {k + 1} ({op}): parameters must be a mapping")
        try:
            step = make_step(op, params, seed + k)
        except SpecError as exc:
            raise UsageError(f"{path}: step {k + 1}: {exc}") from None
        for key in ("bank", *type(step).paths):  # files named by a step: relative to this file, recorded
            value = getattr(step, key, None)     # absolute (run.json is read from any working folder)
            if value is not None:
                step = step.replace(**{key: os.path.abspath(path.parent / value)})
        steps.append(step)
    base = path.parent
    return Pipeline(input=base / str(doc["input"]), images=base / str(doc["images"]), output=base / str(doc["output"]),
                    steps=steps, seed=seed, workers=doc.get("workers"), on_error=doc.get("on_error", "raise"),
                    backend=backend, address=address)
