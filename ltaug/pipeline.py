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

Each step is a one-key mapping from the op to its parameters, named as the dataclass fields
of :class:`~ltaug.resample.ResampleSpec`, :class:`~ltaug.copy_paste.PasteSpec`,
:class:`~ltaug.mosaic.MosaicSpec`, :class:`~ltaug.mixup.MixupSpec` (the same words as the
command-line flags, with ``_`` for ``-``). Paste also takes ``bank`` (a folder made by
``ltaug bank``; default: one built from the input) and ``exclude`` (bank quality flags to
leave out, as names; default ``too_small, truncated, occluded, empty, clipped``).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .bank import Flag
from .copy_paste import DEFAULT_EXCLUDE, PasteSpec
from .engine import Step
from .errors import InputError, UsageError
from .mixup import MixupSpec
from .mosaic import MosaicSpec
from .resample import ResampleSpec

SPECS = {"resample": ResampleSpec, "paste": PasteSpec, "mosaic": MosaicSpec, "mixup": MixupSpec}
TOP_KEYS = ("input", "images", "output", "seed", "workers", "on_error", "backend", "address", "steps")
BACKENDS = ("local", "ray")


def flag_bits(names) -> int:
    """Bank flags by name (``too_small`` or ``too-small``, any case) as a bit mask."""
    bits = 0
    for name in names:
        key = str(name).strip().upper().replace("-", "_")
        if key not in Flag.__members__:
            raise ValueError(f"unknown bank flag {name!r} (flags: {', '.join(f.name.lower() for f in Flag)})")
        bits |= Flag[key]
    return int(bits)


def flag_names(bits: int) -> list[str]:
    return [f.name.lower() for f in Flag if bits & f]


def make_step(op: str, params: dict, seed: int) -> Step:
    """A :class:`Step` from an op name and its parameters; ValueError naming what is wrong."""
    if op not in SPECS:
        raise ValueError(f"unknown step {op!r} (steps: {', '.join(SPECS)})")
    params = dict(params or {})
    bank = params.pop("bank", None) if op == "paste" else None
    if op == "paste":
        params["exclude_flags"] = flag_bits(params.pop("exclude", flag_names(int(DEFAULT_EXCLUDE))))
        if "scale" in params:
            params["scale"] = tuple(params["scale"])
    if op == "mosaic" and "size" in params:
        params["size"] = tuple(params["size"])
    params.setdefault("seed", seed)
    allowed = [f.name for f in dataclasses.fields(SPECS[op])]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"{op}: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(allowed)})")
    try:
        spec = SPECS[op](**params)
    except TypeError as exc:
        raise ValueError(f"{op}: {exc}") from None
    return Step(op, spec, None if bank is None else str(bank))


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
        except ValueError as exc:
            raise UsageError(f"{path}: step {k + 1}: {exc}") from None
        if step.bank is not None:
            step = dataclasses.replace(step, bank=str(path.parent / step.bank))
        steps.append(step)
    base = path.parent
    return Pipeline(input=base / str(doc["input"]), images=base / str(doc["images"]), output=base / str(doc["output"]),
                    steps=steps, seed=seed, workers=doc.get("workers"), on_error=doc.get("on_error", "raise"),
                    backend=backend, address=address)
