"""Seeded, epoch-aware, rank-aware image samplers for online class-balanced training.

Every sampler yields positions into the dataset (item ``i`` of :class:`trainer.data.DetectionDataset`
is ``dataset.images[i]``) and works like ``torch.utils.data.DistributedSampler``:

1. Each epoch has one index list, a pure function of ``(seed, epoch)``
   (:meth:`epoch_indices`), drawn from ``numpy.random.default_rng([seed, epoch])`` (the same
   per-epoch stream ``ltaug resample`` uses), never from global randomness. Call
   :meth:`set_epoch` before each epoch; give every rank the same ``seed``.
2. The list is padded by wrapping around to a multiple of ``num_replicas`` (its first entries
   repeated, as ``DistributedSampler`` and detectron2's ``RepeatFactorTrainingSampler`` do).
3. Rank ``r`` takes every ``num_replicas``-th entry from position ``r``: the ranks' lists
   are disjoint slices of equal length whose union is the padded list.

``num_replicas`` and ``rank`` default to the process group's world size and rank when
``torch.distributed`` is initialised, else 1 and 0.

* :class:`RepeatFactorSampler` — repeat factor sampling (Gupta et al., LVIS, CVPR 2019)
  online, as detectron2's ``RepeatFactorTrainingSampler``;
* :class:`ClassAwareSampler` — class-aware sampling (Shen et al., ECCV 2016): a class
  uniformly, then one of its images;
* :class:`TrainingSampler` — a plain per-epoch shuffle, for files already rebalanced offline.

:class:`AspectRatioBatchSampler` then forms the batches: images of similar shape go
together, so that the batch tensor (padded to its largest image) wastes few pixels.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import BatchSampler, Sampler

from ltaug.errors import InputError
from ltaug.io.index import DatasetIndex
from ltaug.rebalance import sampling
from ltaug.rebalance.factors import read_factors
from ltaug.rebalance.sampling import epoch_rng  # the offline tool's per-epoch stream

__all__ = ["AspectRatioBatchSampler", "ClassAwareSampler", "EpochSampler", "RepeatFactorSampler", "TrainingSampler"]



def _index_of(dataset) -> DatasetIndex:
    """The :class:`DatasetIndex` of an ltaug Dataset, a DetectionDataset, or an index itself."""
    if isinstance(dataset, DatasetIndex):
        return dataset
    index = getattr(dataset, "index", None)
    if isinstance(index, DatasetIndex):
        return index
    raise TypeError(f"expected an ltaug Dataset, a DetectionDataset or a DatasetIndex, got {type(dataset).__name__}")


class EpochSampler(Sampler[int]):
    """Base class: per-epoch index list from ``(seed, epoch)``, padded and split across ranks."""

    def __init__(self, *, seed: int, num_replicas: int | None = None, rank: int | None = None):
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")
        self.seed, self.num_replicas, self.rank = int(seed), int(num_replicas), int(rank)
        self.epoch = 0
        self._cache: tuple[int, np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s list next (call before each epoch, on every rank)."""
        self.epoch = int(epoch)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """All ranks' index list of ``epoch``, before padding (int64)."""
        raise NotImplementedError

    def _padded(self) -> np.ndarray:
        if self._cache is None or self._cache[0] != self.epoch:
            idx = self.epoch_indices(self.epoch)
            if idx.size == 0:
                raise ValueError("the sampler's epoch is empty: nothing to sample")
            total = math.ceil(idx.size / self.num_replicas) * self.num_replicas
            self._cache = (self.epoch, np.resize(idx, total))  # np.resize wraps around
        return self._cache[1]

    def __iter__(self):
        return iter(self._padded()[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self._padded().size // self.num_replicas


class RepeatFactorSampler(EpochSampler):
    """Online repeat factor sampling: image ``i`` appears about ``repeat_factors[i]`` times per epoch.

    Each epoch, with that epoch's generator:

    1. stochastic rounding (:func:`ltaug.rebalance.sampling.round_repeats`): image i is repeated
       floor(r_i) times plus once more with probability r_i - floor(r_i), so its expected count
       is exactly r_i, and different epochs repeat different images of a class;
    2. the repeated list is shuffled (``shuffle=False`` keeps it in image order).

    The per-image counts of epoch e are those of ``ltaug resample --method rfs --seed S`` for the
    same factors, seed and epoch. Factors may be below 1 (the expected draws a
    ``--repeat-factors`` file stores for the class-sampling methods).
    """

    def __init__(self, repeat_factors, *, seed: int, shuffle: bool = True,
                 num_replicas: int | None = None, rank: int | None = None):
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank)
        factors = np.asarray(repeat_factors, dtype=np.float64)
        if factors.ndim != 1 or not np.all(np.isfinite(factors)) or (factors < 0).any():
            raise ValueError("repeat_factors must be one finite, non-negative number per image")
        if not (factors > 0).any():
            raise ValueError("all repeat factors are 0: nothing to sample")
        self.repeat_factors = factors
        self.shuffle = shuffle

    @classmethod
    def from_dataset(cls, dataset, threshold: float = sampling.DEFAULT_RFS_THRESHOLD, *,
                     sqrt: bool = True, **kwargs) -> RepeatFactorSampler:
        """Factors from the dataset's class frequencies (:func:`ltaug.rebalance.sampling.repeat_factors`)."""
        factors = sampling.repeat_factors(_index_of(dataset), threshold=threshold, sqrt=sqrt)
        return cls(factors, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike, dataset, **kwargs) -> RepeatFactorSampler:
        """Factors from an ``ltaug resample --repeat-factors`` file, aligned to ``dataset``'s order by image id.

        Raises ValueError unless the file is that format and names exactly the dataset's images.
        """
        try:
            file = read_factors(path)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        want = _index_of(dataset).image_ids
        extra = np.setdiff1d(file.image_ids, want)
        if extra.size:
            raise ValueError(f"{path}: image ids do not match the dataset: {extra.size} file images not in the "
                             f"dataset (ids {', '.join(map(str, extra[:5].tolist()))}{' ...' if extra.size > 5 else ''})"
                             f" (was the file written for this annotation file?)")
        try:
            return cls(file.aligned(want.tolist()), **kwargs)
        except InputError as exc:
            raise ValueError(str(exc)) from None

    def epoch_indices(self, epoch: int) -> np.ndarray:
        rng = epoch_rng(self.seed, epoch)
        counts = sampling.round_repeats(self.repeat_factors, rng, rounding="stochastic")   # step 1
        idx = np.repeat(np.arange(self.repeat_factors.size, dtype=np.int64), counts)
        return rng.permutation(idx) if self.shuffle else idx                               # step 2


class ClassAwareSampler(EpochSampler):
    """Class-aware sampling: each draw picks a class uniformly, then one of its images uniformly.

    ``samples_per_epoch`` draws per epoch (default: the number of images); draws are i.i.d., so
    the list needs no shuffle. ``method="sqrt"`` or ``"soft"`` (with ``lam``) pick the class by
    :func:`ltaug.rebalance.sampling.class_probabilities` instead. Images without annotations are never
    drawn. Per-image counts of epoch e equal ``ltaug resample --method cas --seed S``'s.
    """

    def __init__(self, dataset, *, seed: int, samples_per_epoch: int | None = None, method: str = "cas",
                 lam: float = 0.5, num_replicas: int | None = None, rank: int | None = None):
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank)
        index = _index_of(dataset)
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        self.table = sampling.ClassImages.from_index(index)
        self.class_probs = sampling.class_probabilities(index.image_counts, method, lam=lam)
        self.samples_per_epoch = int(samples_per_epoch or index.num_images)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        return sampling.draw_class_then_image(self.table, self.class_probs, self.samples_per_epoch,
                                              epoch_rng(self.seed, epoch)).astype(np.int64)


class TrainingSampler(EpochSampler):
    """Every image once per epoch, in a seeded per-epoch random order (``shuffle=False``: file order).

    ``dataset``: anything with ``len()``, or the number of images.
    """

    def __init__(self, dataset, *, seed: int, shuffle: bool = True,
                 num_replicas: int | None = None, rank: int | None = None):
        super().__init__(seed=seed, num_replicas=num_replicas, rank=rank)
        self.size = int(dataset) if isinstance(dataset, (int, np.integer)) else len(dataset)
        self.shuffle = shuffle

    def epoch_indices(self, epoch: int) -> np.ndarray:
        idx = np.arange(self.size, dtype=np.int64)
        return epoch_rng(self.seed, epoch).permutation(idx) if self.shuffle else idx


def aspect_ratio_groups(widths, heights, k: int = 3) -> np.ndarray:
    """Group id per image: width / height quantised into 2k bins spaced evenly in log2 between 1/2
    and 2 (plus one group below and one above), as torchvision's references/detection
    ``create_aspect_ratio_groups``; k = 3: edges 0.5, 0.63, 0.79, 1, 1.26, 1.59, 2."""
    ratios = np.asarray(widths, dtype=np.float64) / np.asarray(heights, dtype=np.float64)
    return np.searchsorted(2.0 ** np.linspace(-1, 1, 2 * k + 1), ratios, side="right").astype(np.int64)


class AspectRatioBatchSampler(BatchSampler):
    """Batches of ``batch_size`` whose images share an aspect-ratio group, from ``sampler``'s order.

    torchvision's detectors pad every batch to its largest height and width: a portrait and a
    landscape image together cost about 1.4x the pixels of each alone (on COCO-LT-mini at 320
    px, random pairs carry 20% padding, grouped pairs 4%). As torchvision's references'
    ``GroupedBatchSampler``: each index waits in its group's buffer and a batch is yielded when
    a buffer is full; at the end of the epoch the indices still waiting are batched in sampler
    order, the last incomplete batch dropped. Every epoch therefore yields exactly
    ``len(sampler) // batch_size`` batches and uses every position of the sampler's list at
    most once, as ``drop_last=True`` batching does (only which leftover is dropped may
    differ); the batches are a pure function of the sampler's order.
    """

    def __init__(self, sampler, group_ids, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler, self.group_ids, self.batch_size = sampler, np.asarray(group_ids), int(batch_size)

    @classmethod
    def for_index(cls, sampler, index: DatasetIndex, batch_size: int) -> AspectRatioBatchSampler:
        """Batches of the images of ``index`` (an ltaug dataset's columns), grouped by
        :func:`aspect_ratio_groups` of their widths and heights."""
        return cls(sampler, aspect_ratio_groups(index.image_widths, index.image_heights), batch_size)

    def __iter__(self):
        buffers: dict[int, list[tuple[int, int]]] = {}   # group -> [(position in the epoch, index)]
        full = 0
        for pos, i in enumerate(self.sampler):
            group = buffers.setdefault(int(self.group_ids[i]), [])
            group.append((pos, i))
            if len(group) == self.batch_size:
                yield [i for _, i in group]
                group.clear()
                full += 1
        waiting = [i for _, i in sorted(p for group in buffers.values() for p in group)]
        for b in range(len(self) - full):
            yield waiting[b * self.batch_size:(b + 1) * self.batch_size]

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size


# -- the samplers by name: `ltaug train --sampler NAME`, TrainConfig.sampler --------------------

SamplerBuilder = Callable[[Any, Any, Any], EpochSampler]
SAMPLERS: dict[str, SamplerBuilder] = {}
"""Each online sampler by name: a function of (TrainConfig, DetectionDataset, ltaug Dataset)."""


def register_sampler(name: str) -> Callable[[SamplerBuilder], SamplerBuilder]:
    """Decorator: ``build(config, dataset, ds)`` becomes the sampler ``name`` (one function each)."""
    def add(build: SamplerBuilder) -> SamplerBuilder:
        if name in SAMPLERS:
            raise TypeError(f"sampler {name!r} is registered already")
        SAMPLERS[name] = build
        return build
    return add


@register_sampler("plain")
def _plain(cfg: Any, dataset: Any, ds: Any) -> EpochSampler:
    """A shuffle per epoch: for files already rebalanced offline."""
    return TrainingSampler(dataset, seed=cfg.seed)


@register_sampler("rfs")
def _rfs(cfg: Any, dataset: Any, ds: Any) -> EpochSampler:
    """Repeat factor sampling online, threshold ``rfs_threshold``."""
    return RepeatFactorSampler.from_dataset(ds, cfg.rfs_threshold, seed=cfg.seed)


@register_sampler("cas")
def _cas(cfg: Any, dataset: Any, ds: Any) -> EpochSampler:
    """Class-aware sampling."""
    return ClassAwareSampler(ds, seed=cfg.seed)


@register_sampler("repeat-factors")
def _repeat_factors(cfg: Any, dataset: Any, ds: Any) -> EpochSampler:
    """The factors of an ``ltaug resample --repeat-factors`` file."""
    return RepeatFactorSampler.from_file(cfg.repeat_factors, ds, seed=cfg.seed)
