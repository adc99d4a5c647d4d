"""The repeat-factor file (``ltaug resample --repeat-factors FILE``): its schema, and the factors
aligned to whatever order a training framework lists its images in.

Schema ``ltaug-repeat-factors/2`` (JSON), one entry per image of the annotation file, in file
order::

    {"format": "ltaug-repeat-factors/2",
     "method": "rfs", "params": {"threshold": 0.001, ...},
     "images": 30,                       number of entries
     "sum": 41.7,                        sum of the factors: the expected epoch length
     "image_ids":      [139, 285, ...],  the annotation file's image ids
     "file_names":     ["a.jpg", ...],   and file names (for frameworks that key images by file)
     "repeat_factors": [1.0, 2.45, ...]} expected uses of each image per epoch

For ``rfs`` a factor is LVIS's repeat factor r(I) = max over the classes c in I of
max(1, sqrt(t / f_c)), f_c the fraction of images containing c (Gupta et al., LVIS, 2019); for
the class-sampling methods it is the expected number of draws per epoch. A sampler realises
the factors by stochastic rounding each epoch (image i is used floor(r_i) times, plus once with
probability r_i - floor(r_i)): an epoch then has ``sum`` images on average. Version 1 files
(``ltaug-repeat-factors/1``: ids and factors only) are read too.

Using the factors as the weights of ``torch.utils.data.WeightedRandomSampler`` gives the right
exposure only with ``num_samples = round(sum)`` and ``replacement=True`` (each image is then drawn
r_i times on average); with ``num_samples = len(dataset)``, the usual choice, every image is
drawn ``r_i * len / sum`` times: the rare images are repeated less than the file says.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ltaug.errors import InputError
from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import read_json
from ltaug.io.paths import image_file_name

FORMAT = "ltaug-repeat-factors/2"
READS = (FORMAT, "ltaug-repeat-factors/1")


def factor_document(dataset: Dataset, factors: np.ndarray, *, method: str, params: dict) -> dict:
    """The ``ltaug-repeat-factors/2`` document of ``factors`` (one per image of ``dataset``, in its order)."""
    factors = np.round(np.asarray(factors, dtype=np.float64), 9)
    return {"format": FORMAT, "method": method, "params": params, "images": int(factors.size),
            "sum": round(float(factors.sum()), 6), "image_ids": dataset.index.image_ids,
            "file_names": [image_file_name(im) for im in dataset.images], "repeat_factors": factors}


@dataclass(frozen=True)
class FactorFile:
    """A repeat-factor file read back: ``image_ids``, ``file_names`` (None for a version 1 file),
    ``factors``, in file order."""

    path: str
    image_ids: np.ndarray
    file_names: list | None
    factors: np.ndarray
    method: str | None
    params: dict

    def aligned(self, keys: list, *, by: str = "image_id") -> np.ndarray:
        """The factors in the order of ``keys`` (image ids, or file names with ``by="file_name"``):
        the order of a framework's image list, which may leave out images (detectron2 drops the
        images without annotations). A key not in the file is an :class:`InputError`."""
        if by == "image_id":
            index: dict[Any, int] = {int(i): k for k, i in enumerate(self.image_ids.tolist())}
            keys = [int(k) for k in keys]
        elif by == "file_name":
            if self.file_names is None:
                raise InputError(f"{self.path}: a version 1 file has no file names; align by image id, or "
                                 f"write the file again with `ltaug resample --repeat-factors`")
            index = {name: k for k, name in enumerate(self.file_names)}
            keys = [os.path.normpath(k).replace(os.sep, "/") if isinstance(k, str) else k for k in keys]
        else:
            raise ValueError(f"by must be 'image_id' or 'file_name', got {by!r}")
        missing = [k for k in keys if k not in index]
        if missing:
            raise InputError(f"{self.path}: {len(missing)} image(s) of the training list are not in the file "
                             f"(first: {missing[0]!r}); was it written for this annotation file?")
        return self.factors[[index[k] for k in keys]]


def read_factors(path: str | os.PathLike) -> FactorFile:
    """Read a repeat-factor file (version 2 or 1); a file of another kind is a one-line InputError."""
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") not in READS:
        raise InputError(f"{path}: not a repeat-factor file ({' or '.join(READS)}; write one with "
                         f"`ltaug resample ... --repeat-factors FILE`)")
    ids = np.asarray(doc.get("image_ids", []), dtype=np.int64)
    factors = np.asarray(doc.get("repeat_factors", []), dtype=np.float64)
    names = doc.get("file_names")
    if ids.ndim != 1 or ids.shape != factors.shape or (names is not None and len(names) != ids.size):
        raise InputError(f"{path}: image_ids, file_names and repeat_factors must be lists of the same length")
    if np.unique(ids).size != ids.size:
        raise InputError(f"{path}: image ids repeat")
    if not np.all(np.isfinite(factors)) or (factors < 0).any():
        raise InputError(f"{path}: repeat factors must be finite and non-negative")
    return FactorFile(str(path), ids, names, factors, doc.get("method"), doc.get("params", {}))


def detectron2_factors(path: str | os.PathLike, dataset_dicts: list[dict]) -> list[float]:
    """The factors of ``path`` in the order of detectron2's ``dataset_dicts`` (each has ``image_id``,
    after detectron2's own filter of images without annotations), for
    ``RepeatFactorTrainingSampler(torch.tensor(factors))``."""
    return read_factors(path).aligned([d["image_id"] for d in dataset_dicts]).tolist()
