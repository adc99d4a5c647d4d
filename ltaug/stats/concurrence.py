"""Concurrence rates r_ij between classes, from the data, for concurrent softmax.

Peng et al., "Large-Scale Object Detection in the Wild from Imbalanced Multi-Labels", CVPR 2020
(Open Images): an object may carry several labels (explicitly: one box listed as Toy and as Car;
implicitly: a Car is a Vehicle in the class hierarchy). Softmax cross-entropy then pushes down
the logit of a label the object also carries. Concurrent softmax,

    sigma*_i = e^{z_i} / ( sum_{j != i} (1 - y_j)(1 - r_ij) e^{z_j} + e^{z_i} ),

lowers the push on class j for an object of class i by the concurrence rate r_ij, and
``trainer.losses.ConcurrentSoftmaxLoss`` implements it; this module derives r from a COCO/LVIS
file in three steps:

1. **Objects.** The annotations of one object share an image and an ``object_id`` (written by
   :mod:`ltaug.io.openimages`, one annotation per label of an Open Images box); annotations with
   no ``object_id`` are grouped by image and identical ``bbox`` (a box duplicated under two
   labels), so a single-label COCO file has no concurrence.
2. **Rates from the data.** n_i = objects carrying label i, n_ij = objects carrying i and j:

       r_ij = n_ij / n_i      (0 where n_i = 0; r_ii = 0: the loss ignores the diagonal)

   r is not symmetric: every Car object is a Vehicle (r_car,vehicle = 1), few Vehicles are Cars.
3. **The hierarchy.** Where the categories carry ``parent_ids`` (direct parents, as
   :mod:`ltaug.io.openimages` writes them), r_ij = 1 for every ancestor j of i, objects or not:
   an object of class i always is a j, in this file or in a later one.

The result is written as json (:func:`write_concurrence`) with the category ids it is indexed
by; ``ltaug train --concurrence FILE`` reads it back in the model's class order
(:func:`read_concurrence`), refusing a file whose ids are not the training file's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ltaug.errors import InputError
from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import read_json, write_json_atomic

FORMAT = "ltaug-concurrence"
VERSION = 1
DECIMALS = 6
DEFINITION = ("matrix[i][j] = fraction of the objects of category_ids[i] that also carry category_ids[j] "
              "(objects: annotations sharing image and object_id, else image and bbox), 1 where j is an "
              "ancestor of i by the categories' parent_ids; diagonal 0")


@dataclass(frozen=True)
class Concurrence:
    """Rates ``matrix`` (K, K) indexed by ``category_ids``; ``objects`` (K,) = n_i; ``pairs`` (K, K) = n_ij."""

    category_ids: np.ndarray
    names: list[str]
    objects: np.ndarray
    pairs: np.ndarray
    matrix: np.ndarray


def object_rows(dataset: Dataset) -> np.ndarray:
    """(A,) int64: the object of each annotation (0..O-1), in the rules of step 1."""
    keys: dict[tuple, int] = {}
    out = np.empty(len(dataset.annotations), dtype=np.int64)
    for row, a in enumerate(dataset.annotations):
        obj = a.get("object_id")
        key = (a["image_id"], "object", obj) if obj is not None else (a["image_id"], "bbox", *a["bbox"])
        out[row] = keys.setdefault(key, len(keys))
    return out


def ancestors(dataset: Dataset) -> dict[int, set[int]]:
    """Category id -> all its ancestors, by the categories' ``parent_ids`` (transitive)."""
    parents = {c["id"]: list(c.get("parent_ids") or ()) for c in dataset.categories}
    out: dict[int, set[int]] = {}

    def up(cid: int, trail: tuple[int, ...]) -> set[int]:
        if cid in trail:
            raise InputError(f"category {cid}: its own ancestor by parent_ids ({' > '.join(map(str, (*trail, cid)))})")
        if cid not in out:
            found: set[int] = set()
            for p in parents.get(cid, ()):
                if p not in parents:
                    raise InputError(f"category {cid}: parent_ids names unknown category id {p}")
                found |= {p, *up(p, (*trail, cid))}
            out[cid] = found
        return out[cid]

    for cid in parents:
        up(cid, ())
    return out


def concurrence_rates(dataset: Dataset, *, hierarchy: bool = True) -> Concurrence:
    """r_ij of the dataset (steps 1-3 of the module's docstring; ``hierarchy=False`` leaves step 3 out)."""
    ix = dataset.index
    k = ix.num_categories
    obj = object_rows(dataset)
    pairs_in = np.unique(np.stack([obj, ix.ann_category_pos]), axis=1)  # (2, P): each label once per object
    o, c = pairs_in
    n = np.bincount(c, minlength=k)
    # every ordered pair of labels of one object: row r meets the rows of its object's run
    size = np.bincount(o)[o]
    start = np.searchsorted(o, o)
    first = np.repeat(np.arange(o.size), size)
    second = np.repeat(start, size) + (np.arange(first.size) - np.repeat(np.cumsum(size) - size, size))
    pairs = np.bincount(c[first] * k + c[second], minlength=k * k).reshape(k, k)
    rates = np.divide(pairs, n[:, None], out=np.zeros((k, k)), where=n[:, None] > 0)
    if hierarchy:
        for cid, above in ancestors(dataset).items():
            if above:
                rates[ix.category_positions([cid])[0], ix.category_positions(sorted(above))] = 1.0
    np.fill_diagonal(rates, 0.0)
    np.fill_diagonal(pairs, 0)
    return Concurrence(ix.category_ids.copy(), [str(c["name"]) for c in dataset.categories], n, pairs,
                       rates.round(DECIMALS))


def write_concurrence(rates: Concurrence, path: str | os.PathLike, *, source: str | None = None) -> None:
    """The rates as json, atomically: category ids, names, n_i, the K x K matrix."""
    write_json_atomic(path, {
        "format": FORMAT, "version": VERSION, "source": source, "definition": DEFINITION,
        "category_ids": rates.category_ids.tolist(), "names": rates.names, "objects": rates.objects.tolist(),
        "matrix": rates.matrix.tolist()})


def read_concurrence(path: str | os.PathLike, category_ids) -> np.ndarray:
    """The matrix of a :func:`write_concurrence` file, rows and columns in the order of
    ``category_ids`` (the model's classes); one-line :class:`InputError` for a file that is not
    one, or whose category ids are not exactly ``category_ids``."""
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{path}: not a concurrence file (write one with `ltaug concurrence`)")
    if doc.get("version") != VERSION:
        raise InputError(f"{path}: concurrence file version {doc.get('version')!r}; this ltaug reads {VERSION}")
    ids = doc.get("category_ids")
    try:
        matrix = np.asarray(doc.get("matrix"), dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    if not isinstance(ids, list) or matrix.shape != (len(ids), len(ids)):
        raise InputError(f"{path}: matrix is not {len(ids) if isinstance(ids, list) else 'K'} x K over its "
                         f"category_ids")
    if not (np.isfinite(matrix).all() and ((matrix >= 0) & (matrix <= 1)).all()):
        raise InputError(f"{path}: rates must be numbers in [0, 1]")
    want = [int(i) for i in category_ids]
    missing, extra = sorted(set(want) - set(ids)), sorted(set(ids) - set(want))
    if missing or extra or len(set(ids)) != len(ids):
        parts = [f"{len(missing)} of the training file's missing ({_some(missing)})" if missing else "",
                 f"{len(extra)} not in it ({_some(extra)})" if extra else "",
                 "ids repeated" if len(set(ids)) != len(ids) else ""]
        raise InputError(f"{path}: category ids do not match the training file's: "
                         f"{'; '.join(p for p in parts if p)} (derive it from the training file)")
    order = np.asarray([ids.index(i) for i in want])
    return matrix[np.ix_(order, order)]


def _some(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
