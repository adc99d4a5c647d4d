"""Class-balanced image sampling: the math, on the columnar index, with a seeded generator.

All functions are pure: they take a :class:`~ltaug.io.index.DatasetIndex` (or arrays) and a
``numpy.random.Generator`` and return arrays over images, in index order. Nothing here
touches pixels or json.

Methods
-------
* Repeat factor sampling (RFS) — Gupta et al., "LVIS: A Dataset for Large Vocabulary
  Instance Segmentation", CVPR 2019, appendix: images with rare classes are repeated.
* Class-aware sampling (CAS) — Shen et al., "Relay Backpropagation for Effective Learning of
  Deep Convolutional Neural Networks", ECCV 2016; used for cRT by Kang et al., "Decoupling
  Representation and Classifier for Long-Tailed Recognition", ICLR 2020: pick a class
  uniformly, then an image of it uniformly.
* Square-root and soft-balance sampling — Peng et al., "Large-Scale Object Detection in the
  Wild from Imbalanced Multi-Labels", CVPR 2020 (square-root: Mahajan et al., ECCV 2018):
  a class is picked with a probability between instance-balanced and class-balanced, then an
  image of it uniformly.

Class frequencies for the last three are *image* counts n_c (images containing class c),
since images are what is sampled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ltaug.errors import InputError, SpecError
from ltaug.io.index import DatasetIndex

DEFAULT_RFS_THRESHOLD = 0.001


def repeat_factors(index: DatasetIndex, *, threshold: float = DEFAULT_RFS_THRESHOLD,
                   sqrt: bool = True) -> np.ndarray:
    """Per-image repeat factor r(I) of repeat factor sampling (LVIS, Gupta et al. 2019).

    1. For each category c, f(c) = fraction of the images that contain c.
    2. Category repeat factor r(c) = max(1, sqrt(t / f(c))) (``sqrt=False``: max(1, t / f(c))).
    3. Image repeat factor r(I) = max over the categories c present in I of r(c).

    t = 0 gives r(I) = 1 everywhere: plain epochs (each image once per epoch), for a pipeline
    that wants one fresh copy of each image per epoch (e.g. to paste onto it anew).

    Images without annotations get r(I) = 1 (the max over an empty set would be undefined;
    detectron2 and mmdetection crashed or silently dropped such images in the past). Classes
    with no image never enter step 3.
    """
    if not threshold >= 0:
        raise SpecError("threshold", f"must be >= 0, got {threshold}")
    n_images = max(index.num_images, 1)
    freq = index.image_counts / n_images                       # step 1
    with np.errstate(divide="ignore"):
        ratio = np.where(freq > 0, threshold / np.where(freq > 0, freq, 1), 1.0)
    cat_factor = np.maximum(1.0, np.sqrt(ratio) if sqrt else ratio)   # step 2
    img_factor = np.ones(index.num_images, dtype=np.float64)  # step 3, empty images stay 1
    np.maximum.at(img_factor, index.ann_image_pos, cat_factor[index.ann_category_pos])
    return img_factor


def round_up(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits, rounded up (a printed bound that still holds: the
    threshold or factor shown is at least the one needed)."""
    if not math.isfinite(x) or x <= 0:
        return f"{x:g}"
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    up = math.ceil(x * scale - 1e-9) / scale
    return f"{up:.6g}"


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch: independent streams, the same whatever the number of epochs."""
    return np.random.default_rng([int(seed), int(epoch)])


def round_repeats(factors: np.ndarray, rng: np.random.Generator, *, rounding: str = "stochastic") -> np.ndarray:
    """Integer repeats for one epoch from real-valued repeat factors.

    ``stochastic`` (detectron2): floor(r) plus one more with probability r - floor(r), so the
    expected number of repeats is exactly r; re-drawn each epoch. ``ceil`` (mmdetection):
    ceil(r), the same every epoch, slightly over-sampling.
    """
    factors = np.asarray(factors, dtype=np.float64)
    if rounding == "ceil":
        return np.ceil(factors).astype(np.int64)
    if rounding == "stochastic":
        base = np.floor(factors)
        return (base + (rng.random(factors.shape) < factors - base)).astype(np.int64)
    raise SpecError("rounding", f"must be 'stochastic' or 'ceil', got {rounding!r}")


@dataclass(frozen=True)
class ClassImages:
    """Images of each class as a CSR table: images of class c are ``images[start[c]:start[c+1]]``."""

    start: np.ndarray   # (C+1,) int64
    images: np.ndarray  # image positions, grouped by class, ascending within a class

    @classmethod
    def from_index(cls, index: DatasetIndex) -> ClassImages:
        n_c = max(index.num_categories, 1)
        pairs = np.unique(index.ann_category_pos * max(index.num_images, 1) + index.ann_image_pos)
        cats, imgs = np.divmod(pairs, max(index.num_images, 1))
        start = np.zeros(n_c + 1, dtype=np.int64)
        np.cumsum(np.bincount(cats, minlength=n_c), out=start[1:])
        return cls(start=start, images=imgs.astype(np.int64))

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.start)


def class_probabilities(image_counts: np.ndarray, method: str, *, lam: float = 0.5) -> np.ndarray:
    """Probability of picking each class, over the classes that have images.

    With n_c the image count of class c and C the number of classes with n_c > 0:

    * ``cas`` (class-balanced): p_c = 1 / C
    * ``sqrt`` (square-root):   p_c = n_c^(1/2) / sum_k n_k^(1/2)
    * ``soft`` (soft-balance, Peng et al. 2020): p_c = lam / C + (1 - lam) * n_c / sum_k n_k,
      interpolating instance-balanced (lam = 0) and class-balanced (lam = 1).
    """
    n = np.asarray(image_counts, dtype=np.float64)
    has = n > 0
    if not has.any():
        raise InputError("no class has any image: nothing to sample")
    if method == "cas":
        w = has.astype(np.float64)
    elif method == "sqrt":
        w = np.sqrt(n)
    elif method == "soft":
        if not 0.0 <= lam <= 1.0:
            raise SpecError("lam", f"must be in [0, 1], got {lam}")
        w = lam * has / has.sum() + (1.0 - lam) * n / n.sum()
    else:
        raise SpecError("method", f"must be a class-sampling method (cas, sqrt, soft), got {method!r}")
    return w / w.sum()


def draw_class_then_image(table: ClassImages, class_probs: np.ndarray, num_samples: int,
                          rng: np.random.Generator) -> np.ndarray:
    """``num_samples`` image positions: a class drawn from ``class_probs``, then one of its images uniformly."""
    classes = rng.choice(class_probs.size, size=num_samples, p=class_probs)
    counts = table.counts[classes]
    offsets = np.floor(rng.random(num_samples) * counts).astype(np.int64)
    return table.images[table.start[classes] + offsets]


def expected_draws(table: ClassImages, class_probs: np.ndarray, num_samples: int, num_images: int) -> np.ndarray:
    """Expected times each image is drawn in one epoch: S * sum_{c in I} p_c / n_c."""
    per_pair = np.repeat(class_probs / np.maximum(table.counts, 1), table.counts)
    rate = np.bincount(table.images, weights=per_pair, minlength=num_images)
    return num_samples * rate


def soft_lambda_schedule(epochs: int, *, start: float, end: float) -> np.ndarray:
    """lambda for each epoch, linear from ``start`` to ``end``.

    Peng et al. (2020) train with a hybrid schedule that moves from instance-balanced towards
    class-balanced sampling over training; ``start=0, end=1`` is that schedule, a constant
    lambda is ``start == end``.
    """
    if epochs == 1:
        return np.array([end], dtype=np.float64)
    return np.linspace(start, end, epochs)
