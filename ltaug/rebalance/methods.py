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
