"""Rebalance a dataset by resampling its images, and write the result as a COCO/LVIS document.

``resample_counts`` turns a method and its parameters into how many times each image is
used over E epochs; ``expand_dataset`` writes those repeats out: every copy after the first
gets new image and annotation ids and points to the same ``file_name``, and every image and
annotation carries an ``ltaug`` provenance record. Category fields (LVIS ``frequency``,
``image_count``, ...) are left as in the source, so evaluation keeps the original r/c/f bins.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import document_chunks, gc_paused, write_chunks_atomic
from ltaug.io.paths import refuse_overwriting_inputs

_log = logging.getLogger(__name__)


@dataclass
class ResampleResult:
    counts: np.ndarray            # (I,) total uses of each image over all epochs
    expected_per_epoch: np.ndarray  # (I,) expected uses per epoch (the repeat factors for rfs)
    spec: Any                     # the ltaug.ops.Resample it was drawn for
    per_epoch: list = field(default_factory=list)  # (I,) counts of each epoch
    note: str | None = None       # one line when the parameters change (almost) nothing (also logged)


def resample_counts(dataset: Dataset, spec: Any) -> ResampleResult:
    """How many times each image is used in each of ``spec.epochs`` epochs, by the registered
    method ``spec.method`` (:mod:`ltaug.rebalance.methods`) with its parameters from ``spec``.
    Parameters that change nothing (or almost nothing) give a ``note`` (:meth:`ltaug.rebalance.methods.ResampleMethod.note`),
    also logged as a warning."""
    method = spec.method_spec()
    per_epoch, expected = method.draw(dataset.index, spec.epochs, spec.seed)
    counts = np.sum(per_epoch, axis=0).astype(np.int64)
    note = method.note(dataset.index, per_epoch, expected)
    if note:
        _log.warning("%s", note)
    return ResampleResult(counts=counts, expected_per_epoch=expected, spec=spec, per_epoch=per_epoch, note=note)


CHUNK = 65536  # annotations per chunk that write_expanded builds, dumps and writes before the next


def expand_dataset(dataset: Dataset, counts: np.ndarray, *, op: str, params: dict) -> Dataset:
    """A dataset in which image i appears ``counts[i]`` times (0 drops it), with provenance.

    The first copy of an image keeps its image and annotation ids; further copies get new ids
    above the largest existing one, in output order. Copies of an image are consecutive.
    Each image gets ``"ltaug": {"source_image_id", "repeat", "op", "params"}`` and each
    annotation ``"ltaug": {"source_annotation_id", "repeat"}``. :func:`write_expanded` writes
    the same document to a file without building it.
    """
    copies = _copies(dataset, counts)
    with gc_paused():
        images = [im for chunk in _image_chunks(dataset, copies, op, params) for im in chunk]
        annotations = [a for chunk in _annotation_chunks(dataset, copies, CHUNK) for a in chunk]
    return dataset.replace(images=images, annotations=annotations)


def write_expanded(dataset: Dataset, counts: np.ndarray, path: str | os.PathLike, *, op: str, params: dict,
                   inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Write ``expand_dataset(dataset, counts, op=op, params=params)`` to ``path`` as json,
    atomically, the same bytes as its :meth:`~ltaug.io.dataset.Dataset.save`, without building
    it: the copies are made, dumped and written :data:`CHUNK` annotations at a time, so neither
    the new document nor its text is ever whole in memory. Refuses to overwrite the dataset's
    file or any of ``inputs``."""
    refuse_overwriting_inputs(path, [dataset.path, *inputs])
    if any(type(key) is not str for key in dataset.data):  # only a document built in memory
        return expand_dataset(dataset, counts, op=op, params=params).save(path, inputs=inputs)
    copies = _copies(dataset, counts)
    with gc_paused():
        write_chunks_atomic(path, document_chunks(dataset.data, {
            "images": _image_chunks(dataset, copies, op, params),
            "annotations": _annotation_chunks(dataset, copies, CHUNK)}))
    return Path(path)


def expanded_size(dataset: Dataset, counts: np.ndarray) -> tuple[int, int]:
    """``(images, annotations)`` of :func:`expand_dataset` ``(dataset, counts)``, without building it."""
    counts = np.asarray(counts, dtype=np.int64)
    return int(counts.sum()), int(counts @ dataset.index.annotations_per_image())


def _copies(dataset: Dataset, counts: np.ndarray) -> list[tuple[int, list]]:
    """Per image kept, in output order: its row and the image id of each of its copies (the
    first keeps the image's id; the others are new ids above the largest one, in order)."""
    ix = dataset.index
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (ix.num_images,) or (counts < 0).any():
        raise ValueError("counts must be one non-negative integer per image")
    next_img = int(ix.image_ids.max(initial=0)) + 1
    src_images = dataset.images
    copies = []
    for pos, n in zip(np.flatnonzero(counts).tolist(), counts[counts > 0].tolist()):
        copies.append((pos, [src_images[pos]["id"], *range(next_img, next_img + n - 1)]))
        next_img += n - 1
    return copies


def _image_chunks(dataset: Dataset, copies: list, op: str, params: dict) -> Iterator[list]:
    """The image records of ``copies`` (one list: there are few)."""
    src_images = dataset.images
    yield [{**src_images[pos], "id": img_id, "ltaug": {"source_image_id": ids[0], "repeat": r, "op": op,
                                                        "params": params}}
           for pos, ids in copies for r, img_id in enumerate(ids)]


def _annotation_chunks(dataset: Dataset, copies: list, size: int) -> Iterator[list]:
    """The annotation records of ``copies``, in lists of about ``size``: each copy of an image
    gets its annotations, in file order; the first copy keeps their ids, the others get new
    ones above the largest, in order."""
    ix = dataset.index
    order, bounds = (a.tolist() for a in ix.annotations_by_image())
    next_ann = int(ix.ann_ids.max(initial=0)) + 1
    src_anns = dataset.annotations
    chunk: list = []
    for pos, ids in copies:
        rows = [src_anns[row] for row in order[bounds[pos]:bounds[pos + 1]]]
        img_id = ids[0]
        chunk += [{**a, "image_id": img_id, "ltaug": {"source_annotation_id": a["id"], "repeat": 0}} for a in rows]
        for r in range(1, len(ids)):
            img_id = ids[r]
            chunk += [{**a, "id": ann_id, "image_id": img_id, "ltaug": {"source_annotation_id": a["id"], "repeat": r}}
                      for ann_id, a in enumerate(rows, next_ann)]
            next_ann += len(rows)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    yield chunk


def resample(dataset: Dataset, spec) -> tuple[Dataset, ResampleResult]:
    """Resample ``dataset`` for ``spec.epochs`` epochs; returns the new dataset and the counts."""
    result = resample_counts(dataset, spec)
    out = expand_dataset(dataset, result.counts, op=f"resample:{spec.method}", params=spec.params())
    return out, result


def repeat_factor_document(dataset: Dataset, result: ResampleResult) -> dict:
    """Per-image expected uses per epoch, for an online sampler (the trainer reads this): the
    ``ltaug-repeat-factors/2`` document (:mod:`ltaug.rebalance.factors`).

    For ``rfs`` these are the repeat factors r(I); an online sampler rounds them
    stochastically each epoch. For the class-sampling methods they are the expected number
    of draws per epoch, S * sum_{c in I} p_c / n_c, which the same sampler can use.
    """
    from ltaug.rebalance.factors import factor_document

    return factor_document(dataset, result.expected_per_epoch, method=result.spec.method, params=result.spec.params())


__all__ = ["ResampleResult", "resample", "resample_counts", "expand_dataset", "write_expanded", "expanded_size",
           "repeat_factor_document"]
