"""Resample methods: how each epoch's image counts are drawn, one class each, registered by name.

A method declares its parameters (:class:`~ltaug.params.Param`) and implements
:meth:`ResampleMethod.draw`; the math is in :mod:`ltaug.rebalance.sampling`. The ``resample``
operation (:class:`ltaug.ops.Resample`: the command, the YAML step, the Python class) takes the
parameters of every registered method, uses those of the method it is given and records them in
provenance. A new method is one class, here or in a module of its own, decorated with
``@METHODS.register``.

Every draw comes from :func:`~ltaug.rebalance.sampling.epoch_rng` (seed, epoch): each epoch is
the same whatever the number of epochs.
"""
from __future__ import annotations

import numpy as np

from ltaug.io.index import DatasetIndex
from ltaug.params import Declared, Param, Registry
from ltaug.rebalance import sampling

ROUNDINGS = ("stochastic", "ceil")


class ResampleMethod(Declared):
    """One way to draw the images of each epoch (``name`` is what ``--method`` takes)."""

    def draw(self, index: DatasetIndex, epochs: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
        """``(per_epoch, expected)``: the uses of each image (I,) in each of ``epochs`` epochs,
        and the expected uses per epoch (I,) (for ``rfs``, the repeat factors)."""
        raise NotImplementedError

    def note(self, index: DatasetIndex, per_epoch: list[np.ndarray], expected: np.ndarray) -> str | None:
        """One line when these parameters change nothing, or almost nothing, on ``index`` (with
        the value that would, computed from the data); None otherwise."""
        return None


METHODS: Registry[type[ResampleMethod]] = Registry("resample method")
"""Every resample method by name, in registration order (rfs, cas, sqrt, soft)."""


@METHODS.register
class RepeatFactor(ResampleMethod):
    """Repeat factor sampling (Gupta et al., "LVIS", CVPR 2019; detectron2's
    ``RepeatFactorTrainingSampler``): r(c) = max(1, sqrt(t / f(c))), f(c) the fraction of images
    containing c; each image repeated r(I) = max over its classes, rounded per epoch
    (stochastically, or up as mmdetection does). Images without annotations keep r = 1."""

    name = "rfs"

    threshold = Param(sampling.DEFAULT_RFS_THRESHOLD, "t in r(c); 0 repeats nothing: plain epochs", type=float,
                      low=0, metavar="T", group="rfs")
    sqrt = Param(True, "r(c) = max(1, sqrt(t / f(c))); --linear: max(1, t / f(c))", flag="linear", group="rfs")
    rounding = Param("stochastic", "per-epoch rounding of r(I)", choices=ROUNDINGS, group="rfs")

    def draw(self, index: DatasetIndex, epochs: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
        factors = sampling.repeat_factors(index, threshold=self.threshold, sqrt=self.sqrt)
        per_epoch = [sampling.round_repeats(factors, sampling.epoch_rng(seed, e), rounding=self.rounding)
                     for e in range(epochs)]
        return per_epoch, factors if self.rounding == "stochastic" else np.ceil(factors)

    def note(self, index: DatasetIndex, per_epoch: list[np.ndarray], expected: np.ndarray) -> str | None:
        """When the draw repeats no image, or expects under 1% of the images as extra copies per
        epoch: the rarest class's image share f, and the thresholds that would repeat its images
        (above f) and use each of them twice (4 f, or 2 f with ``--linear``). Threshold 0 (plain
        epochs, asked for) says nothing."""
        n = index.num_images
        has = index.image_counts > 0
        if self.threshold == 0 or n == 0 or not has.any():
            return None
        drawn = int(sum(int(np.maximum(c - 1, 0).sum()) for c in per_epoch))
        extra = float(np.maximum(np.asarray(expected, np.float64) - 1, 0).sum())
        if drawn and extra >= 0.01 * n:
            return None
        rare = int(np.flatnonzero(has)[np.argmin(index.image_counts[has])])
        k = int(index.image_counts[rare])
        share = k / n
        twice = share * (4 if self.sqrt else 2)
        where = (f"the rarest class ({index.category_names[rare]}) is in {100 * share:.1f}% of images "
                 f"({k} of {n})")
        head = f"rfs with threshold {self.threshold:g}"
        if extra == 0:
            return (f"{head} repeats no image: {where}; a threshold above {sampling.round_up(share)} repeats its "
                    f"images" + ("" if self.rounding == "ceil" else
                                 f" ({sampling.round_up(twice)} uses each of them twice)"))
        epochs = len(per_epoch)
        what = ("repeats no image" if not drawn else
                f"repeats almost nothing ({drawn} extra image{'s' if drawn != 1 else ''} drawn over {epochs} "
                f"epoch{'s' if epochs != 1 else ''})")
        return (f"{head} {what}: {extra:.2g} extra images expected per epoch of {n}; {where}; "
                f"a threshold of {sampling.round_up(twice)} uses each of its images twice")


class ClassSampling(ResampleMethod):
    """Pick a class with probability p_c (:meth:`probabilities`), then one of its images
    uniformly; ``samples_per_epoch`` draws per epoch (default: the number of images), so an image
    may be drawn several times or not at all."""

    samples_per_epoch = Param(None, "images drawn per epoch (default: all)", type=int, optional=True, low=1,
                              metavar="N", group="cas / sqrt / soft")

    def probabilities(self, image_counts: np.ndarray, epoch: int, epochs: int) -> np.ndarray:
        """p_c of epoch ``epoch`` (of ``epochs``), over the classes' image counts."""
        return sampling.class_probabilities(image_counts, self.name)

    def draw(self, index: DatasetIndex, epochs: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
        table = sampling.ClassImages.from_index(index)
        n = self.samples_per_epoch or index.num_images
        per_epoch, expected = [], np.zeros(index.num_images)
        for e in range(epochs):
            probs = self.probabilities(index.image_counts, e, epochs)
            draws = sampling.draw_class_then_image(table, probs, n, sampling.epoch_rng(seed, e))
            per_epoch.append(np.bincount(draws, minlength=index.num_images).astype(np.int64))
            expected += sampling.expected_draws(table, probs, n, index.num_images) / epochs
        return per_epoch, expected


@METHODS.register
class ClassAware(ClassSampling):
    """Class-aware sampling (Shen et al., ECCV 2016; cRT, Kang et al. 2020): p_c = 1 / C."""

    name = "cas"


@METHODS.register
class SquareRoot(ClassSampling):
    """Square-root sampling: p_c ~ sqrt(n_c), n_c the images of class c."""

    name = "sqrt"


@METHODS.register
class SoftBalance(ClassSampling):
    """Soft-balance sampling (Peng et al., CVPR 2020): p_c = lambda / C + (1 - lambda) n_c / N,
    between instance-balanced (lambda 0) and class-balanced (lambda 1); with ``lam_end``, lambda
    moves linearly from ``lam`` to it over the epochs (the paper's hybrid schedule)."""

    name = "soft"

    lam = Param(0.5, "soft: lambda, 0 instance-balanced .. 1 class-balanced", type=float, low=0, high=1,
                flag="lambda", metavar="L", group="cas / sqrt / soft")
    lam_end = Param(None, "soft: lambda of the last epoch (linear schedule)", type=float, optional=True, low=0,
                    high=1, flag="lambda-end", metavar="L", group="cas / sqrt / soft")

    def probabilities(self, image_counts: np.ndarray, epoch: int, epochs: int) -> np.ndarray:
        end = self.lam if self.lam_end is None else self.lam_end
        lam = float(sampling.soft_lambda_schedule(epochs, start=self.lam, end=end)[epoch])
        return sampling.class_probabilities(image_counts, "soft", lam=lam)
