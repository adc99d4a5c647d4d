"""ltaug: fix long-tailed COCO/LVIS detection and segmentation datasets on the data side.

The engine needs no torch. Data flows read -> index -> plan -> execute -> write -> report.

The Python API of the ``ltaug`` command, :mod:`ltaug.api` (one function per command, with the
flags' names), is exported here and imported on first use, so ``import ltaug`` stays light. The
library never prints: it logs to the ``ltaug`` logger (a ``NullHandler`` here; the command prints
the records).
"""
import importlib
import logging
from collections.abc import Callable
from typing import Any

from ltaug.errors import InputError, LtaugError, SpecError, UsageError
from ltaug.io.dataset import COCO, LVIS, Dataset, save_dataset
from ltaug.io.index import DatasetIndex
from ltaug.io.read import load_dataset

__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it; CHANGELOG.md)

logging.getLogger(__name__).addHandler(logging.NullHandler())

# ltaug.api's functions, imported from it on first use by __getattr__ below (PEP 562). Declared
# here, without a value, for type checkers and the API reference; their signatures are ltaug.api's.
class_stats: Callable[..., dict]
"""``ltaug stats``: :func:`ltaug.api.class_stats`."""
validate: Callable[..., Any]
"""``ltaug validate``: :func:`ltaug.api.validate`."""
convert: Callable[..., Any]
"""``ltaug convert``: :func:`ltaug.api.convert`."""
recount: Callable[..., Dataset]
"""``ltaug recount``: :func:`ltaug.api.recount`."""
resample: Callable[..., Any]
"""``ltaug resample``: :func:`ltaug.api.resample`."""
plan: Callable[..., Any]
"""``ltaug plan``: :func:`ltaug.api.plan`."""
build_bank: Callable[..., dict]
"""``ltaug bank``: :func:`ltaug.api.build_bank`."""
verify_bank: Callable[..., list]
"""``ltaug bank --verify``: :func:`ltaug.api.verify_bank`."""
clean: Callable[..., list]
"""``ltaug clean``: :func:`ltaug.api.clean`."""
run_steps: Callable[..., Any]
"""``ltaug paste | mosaic | mixup`` and steps in Python: :func:`ltaug.api.run_steps`."""
run_config: Callable[..., Any]
"""``ltaug run CONFIG``: :func:`ltaug.api.run_config`."""
make_report: Callable[..., Any]
"""``ltaug report``: :func:`ltaug.api.make_report`."""
read_openimages: Callable[..., Dataset]
"""``ltaug openimages``: :func:`ltaug.api.read_openimages`."""
concurrence: Callable[..., Any]
"""``ltaug concurrence``: :func:`ltaug.api.concurrence`."""

_API_FUNCTIONS = ("class_stats", "validate", "convert", "recount", "resample", "plan", "build_bank", "verify_bank",
                  "clean", "run_steps", "run_config", "make_report", "read_openimages", "concurrence")
# also served, not in __all__ (their home, and the reference's page, is ltaug.api)
_API_TYPES = ("ConvertResult", "PlanResult", "Resampled", "RunResult", "ValidationResult")

__all__ = ["COCO", "LVIS", "Dataset", "DatasetIndex", "InputError", "LtaugError", "SpecError", "UsageError",
           "load_dataset", "save_dataset", "__version__", "api", *_API_FUNCTIONS]


def __getattr__(name: str) -> Any:
    if name == "api" or name in _API_FUNCTIONS or name in _API_TYPES:
        api = importlib.import_module("ltaug.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "api", *_API_FUNCTIONS, *_API_TYPES})
