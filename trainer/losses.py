"""Classification losses for the box head of a torchvision Faster/Mask R-CNN, selectable by name.

Every loss is a small ``nn.Module`` built by :func:`build_loss` and follows torchvision's
conventions:

* ``logits``: (N, num_logits) for the N sampled RoIs. Column 0 is background, column c is
  foreground class c (1..K). Every loss uses K + 1 columns except BAGS, which appends one
  "others" column per group (see :class:`BAGSLoss`), and seesaw_mmdet, which appends the
  "object" logit of its objectness branch (:class:`SeesawMMDetLoss`). Size the classifier with
  ``loss.logit_dim`` (= ``LOSSES[name].num_logits(K, **params)``); the box regressor stays
  at K + 1 classes.
* ``labels``: (N,) int64 in 0..K, 0 = background.
* ``forward(logits, labels)`` returns a scalar; each docstring says how it is averaged.
* ``postprocess(logits)`` returns (N, K + 1) probabilities (column 0 background), used at
  inference in place of softmax; torchvision's ``postprocess_detections`` drops column 0.
  Softmax losses return the softmax (rows sum to 1). Sigmoid losses (bce, focal, eql,
  federated) never train column 0: the targets of a background RoI are all zeros, so the
  column gets zero gradient, and postprocess gives p_c = sigmoid(z_c) and, in column 0, the
  probability that no class fires, prod_c (1 - p_c). EQLv2 and BAGS train an explicit
  background/objectness output and multiply the class scores by (1 - p_bg), as their papers'
  code does; their rows do not sum to 1. seesaw_mmdet multiplies a softmax over the classes
  by p(object) of its 2-way objectness softmax (its rows sum to 1).
* Counts (``class_instance_counts``, ``class_image_counts``) have one entry per foreground
  class in class order: entry c - 1 is class c.
* State that training changes (Seesaw's cumulative counts, EQLv2's gradient statistics) is
  updated inside ``forward`` only in training mode and kept in persistent buffers, so it is
  saved in checkpoints. What is derived from the counts is rebuilt by the constructor and
  not saved.
* Randomness (federated subsets, BAGS "others" sampling, softmax-EQL's beta) comes from a
  CPU ``torch.Generator`` owned by the module, seeded by ``seed`` or passed as ``generator``.
"""
from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ltaug.stats.frequency import COMMON_MAX, RARE_MAX, frequency_bins

__all__ = ["LOSSES", "build_loss"]


EQL_LAMBDA = 1.76e-3  # Tan et al. 2020, LVIS v0.5: classes in under ~100 of 57k images are rare

def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _as_counts(counts, num_classes: int, name: str) -> torch.Tensor | None:
    if counts is None:
        return None
    t = torch.as_tensor(counts, dtype=torch.float64)
    _require(t.shape == (num_classes,),
             f"{name} must have one entry per foreground class ({num_classes}), got shape {tuple(t.shape)}")
    _require(bool(torch.isfinite(t).all() and (t >= 0).all()), f"{name} must be finite and non-negative")
    return t


def _make_generator(seed: int, generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(int(seed))


def _per_roi_mean(total: torch.Tensor, n: int) -> torch.Tensor:
    return total / max(n, 1)


class ClassificationLoss(nn.Module):
    """Base class: validation, the K + 1 column layout and the softmax postprocess.

    Subclasses take their own keyword parameters and pass ``**counts`` (the two count
    arguments of :func:`build_loss`) through to this constructor.
    """

    def __init__(self, num_classes: int, class_instance_counts=None, class_image_counts=None):
        super().__init__()
        _require(isinstance(num_classes, int) and num_classes >= 1,
                 f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.logit_dim = num_classes + 1
        self.instance_counts = _as_counts(class_instance_counts, num_classes, "class_instance_counts")
        self.image_counts = _as_counts(class_image_counts, num_classes, "class_image_counts")

    @classmethod
    def num_logits(cls, num_classes: int, **params) -> int:
        """Width of the classifier layer for this loss: K + 1 (column 0 = background)."""
        return num_classes + 1

    def _needs(self, counts: torch.Tensor | None, name: str) -> torch.Tensor:
        _require(counts is not None, f"{type(self).__name__} needs {name}")
        return counts

    def _check(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        _require(logits.dim() == 2 and logits.shape[1] == self.logit_dim,
                 f"{type(self).__name__} expects logits of shape (N, {self.logit_dim}), got {tuple(logits.shape)}")
        _require(labels.shape == (logits.shape[0],),
                 f"labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")

    def postprocess(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1)

    def equivalence(self) -> str | None:
        """When these parameters make the loss identical to a plainer one on this training file,
        one line saying so (printed when training starts); else None."""
        return None


class _SigmoidLoss(ClassificationLoss):
    """Sigmoid losses over the K foreground columns; a background RoI's targets are all zeros."""

    def _targets(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, self.num_classes + 1)[:, 1:].to(logits.dtype)

    def _bce(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Element-wise BCE (N, K) over columns 1..K, and the targets."""
        target = self._targets(logits, labels)
        return F.binary_cross_entropy_with_logits(logits[:, 1:], target, reduction="none"), target

    def postprocess(self, logits: torch.Tensor) -> torch.Tensor:
        fg = logits[:, 1:]
        none_fires = F.logsigmoid(-fg).sum(dim=1, keepdim=True).exp()
        return torch.cat([none_fires, fg.sigmoid()], dim=1)


class CELoss(ClassificationLoss):
    """Softmax cross-entropy over the K + 1 classes (torchvision's default ``fastrcnn_loss``).

    L = 1/N sum_i -log softmax(z_i)[y_i]
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        return _per_roi_mean(F.cross_entropy(logits, labels, reduction="sum"), len(labels))


class BCELoss(_SigmoidLoss):
    """Sigmoid binary cross-entropy, one-hot targets, background = all zeros.

    L = 1/N sum_i sum_{c=1..K} BCE(z_ic, [y_i = c])    (summed over classes, averaged over
    RoIs, as detectron2's and the EQL/federated papers' code do).
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        bce, _ = self._bce(logits, labels)
        return _per_roi_mean(bce.sum(), len(labels))


class FocalLoss(_SigmoidLoss):
    """Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

    FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t), with p_t = p for a positive target and 1 - p
    for a negative one, alpha_t = alpha (positive) or 1 - alpha (negative); alpha=None means no
    alpha weighting. Summed over the K classes and averaged over the N RoIs like BCE. The
    paper divides by the number of positive anchors because it runs over ~100k mostly-easy
    anchors; a box head samples a fixed number of RoIs with a bounded positive fraction, so
    averaging over RoIs keeps the loss on the same scale as ``bce`` (gamma=0, alpha=None gives
    BCE exactly).
    """

    def __init__(self, num_classes: int, *, alpha: float | None = 0.25, gamma: float = 2.0, **counts):
        super().__init__(num_classes, **counts)
        _require(gamma >= 0, f"focal gamma must be >= 0, got {gamma}")
        _require(alpha is None or 0 <= alpha <= 1, f"focal alpha must be in [0, 1] or None, got {alpha}")
        self.alpha, self.gamma = alpha, float(gamma)

    def equivalence(self) -> str | None:
        return "focal with gamma 0 and no alpha is bce exactly" if self.gamma == 0 and self.alpha is None else None

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        bce, target = self._bce(logits, labels)
        p = logits[:, 1:].sigmoid()
        p_t = p * target + (1 - p) * (1 - target)
        loss = bce * (1 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * target + (1 - self.alpha) * (1 - target))
        return _per_roi_mean(loss.sum(), len(labels))


class ClassBalancedLoss(ClassificationLoss):
    """Class-balanced softmax CE by effective number (Cui et al., "Class-Balanced Loss Based
    on Effective Number of Samples", CVPR 2019).

    w_c = (1 - beta) / (1 - beta^n_c), normalised so that the K foreground weights sum to K
    (mean 1); n_c = training instances of class c (a class with none counts as 1, the weight
    its first sample would get). Background has no count and keeps weight 1, the mean class
    weight. Applied to softmax CE (not focal) so that it differs from ``ce`` only by the
    reweighting:

        L = 1/N sum_i w_{y_i} (-log softmax(z_i)[y_i])

    averaged over RoIs (not divided by sum of weights, as in the paper's code). beta=0 gives
    CE; beta -> 1 tends to inverse-frequency weights.
    """

    def __init__(self, num_classes: int, *, beta: float = 0.999, **counts):
        super().__init__(num_classes, **counts)
        _require(0 <= beta < 1, f"cb beta must be in [0, 1), got {beta}")
        n = self._needs(self.instance_counts, "class_instance_counts").clamp(min=1)
        w = (1 - beta) / (1 - beta ** n)
        w = w * num_classes / w.sum()
        self.beta = float(beta)
        self.register_buffer("class_weight", torch.cat([w.new_ones(1), w]).float(), persistent=False)

    def equivalence(self) -> str | None:
        return "cb with beta 0 weighs every class alike: it is ce exactly" if self.beta == 0 else None

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        ce = F.cross_entropy(logits, labels, reduction="none")
        return _per_roi_mean((self.class_weight.to(ce.dtype)[labels] * ce).sum(), len(labels))


def _rare_classes(loss: ClassificationLoss, lam: float | None, num_images: int | None, tail: float | None,
                  bins: str | None, rare_max: int, common_max: int) -> torch.Tensor:
    """EQL's T_lambda(f_c) = [f_c < lambda], f_c = images containing c / images (K,), with lambda
    given (``lam``), or chosen so that the rarest fraction ``tail`` of the classes is rare
    (lambda just above the f of the ceil(tail K)-th rarest class: ties at that frequency are
    rare too), or the classes whose LVIS frequency bin is in ``bins`` ("r" or "rc", bins by
    training images with the thresholds ``rare_max`` / ``common_max``, as ``ltaug stats``)."""
    given = [name for name, v in (("lam", lam), ("tail", tail), ("bins", bins)) if v is not None]
    _require(len(given) <= 1, f"eql takes one of lam, tail, bins, got {', '.join(given)}")
    counts = loss._needs(loss.image_counts, "class_image_counts")
    if bins is not None:
        _require(bool(bins) and set(bins) <= {"r", "c"}, f"eql bins is r or rc, got {bins!r}")
        _require(0 <= rare_max < common_max, f"eql needs 0 <= rare_max < common_max, got {rare_max}, {common_max}")
        binned = frequency_bins(counts.to(torch.int64).numpy(), rare_max=rare_max, common_max=common_max)
        return torch.as_tensor([b in bins for b in binned.tolist()])
    _require(isinstance(num_images, int) and num_images >= max(1, int(counts.max())),
             f"eql needs num_images (images in the training set, >= every class_image_count), got {num_images!r}")
    f = counts / num_images
    if tail is not None:
        _require(0 <= tail <= 1, f"eql tail is a fraction of the classes in [0, 1], got {tail}")
        n = math.ceil(tail * len(f))
        return f <= f.sort().values[n - 1] if n else torch.zeros(len(f), dtype=torch.bool)
    lam = EQL_LAMBDA if lam is None else lam
    _require(lam >= 0, f"eql lam must be >= 0, got {lam}")
    return f < lam


def _eql_note(name: str, plain: str, loss) -> str | None:
    if loss.rare.any():
        return None
    counts = loss.image_counts
    return (f"{name}: no class is rare on this training file (the rarest class is in {int(counts.min())} of its "
            f"images): it is {plain} exactly; choose lam above that frequency, or tail= / bins= (trainer.losses)")


class EQLLoss(_SigmoidLoss):
    """Equalization loss, sigmoid form (Tan et al., "Equalization Loss for Long-Tailed Object
    Recognition", CVPR 2020).

    L = 1/N sum_i sum_{j=1..K} w_ij BCE(z_ij, y_ij),  w_ij = 1 - E(r_i) T_lam(f_j) (1 - y_ij)

    E(r) = 1 for a foreground RoI, 0 for background; T_lam(f) = [f < lam] with f_j the
    fraction of training images that contain class j (so ``num_images`` is required). A
    foreground RoI does not push down rare classes other than its own; background RoIs still
    do. lam=1.76e-3 (the default) is the paper's value for LVIS v0.5 (about 100 images; the
    official code has 0.00177); lam=0 is BCE. On a small long-tailed set that lambda may mark
    no class rare: then give ``tail`` (the rarest fraction of the classes is rare) or ``bins``
    ("r": the LVIS rare bin by training images, thresholds ``rare_max`` / ``common_max``) instead.
    """

    def __init__(self, num_classes: int, *, lam: float | None = None, tail: float | None = None,
                 bins: str | None = None, rare_max: int = RARE_MAX, common_max: int = COMMON_MAX,
                 num_images: int | None = None, **counts):
        super().__init__(num_classes, **counts)
        self.register_buffer("rare", _rare_classes(self, lam, num_images, tail, bins, rare_max, common_max),
                             persistent=False)

    def equivalence(self) -> str | None:
        return _eql_note("eql", "bce", self)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        bce, target = self._bce(logits, labels)
        foreground = (labels > 0).to(bce.dtype)[:, None]
        weight = 1 - foreground * self.rare.to(bce.dtype)[None, :] * (1 - target)
        return _per_roi_mean((bce * weight).sum(), len(labels))


class EQLSoftmaxLoss(ClassificationLoss):
    """Equalization loss, softmax form (Tan et al., CVPR 2020, "softmax equalization loss").

    L = 1/N sum_i -log( e^{z_iy} / sum_k w_ik e^{z_ik} ),
    w_ik = 1 - E(r_i) beta_ik T_lam(f_k) (1 - y_ik)

    over the K + 1 classes; background is never rare (T = 0), E and T as in :class:`EQLLoss`.
    beta_ik ~ Bernoulli(gamma) is the paper's random switch that keeps some suppression of rare
    classes; the default gamma=1 always excludes (the detection form, where background RoIs
    already suppress rare classes). Implemented as CE on logits with excluded entries set to
    -inf. lam=0 or gamma=0 is softmax CE. ``lam`` / ``tail`` / ``bins``: as :class:`EQLLoss`.
    """

    def __init__(self, num_classes: int, *, lam: float | None = None, tail: float | None = None,
                 bins: str | None = None, rare_max: int = RARE_MAX, common_max: int = COMMON_MAX,
                 num_images: int | None = None, gamma: float = 1.0, seed: int = 0,
                 generator: torch.Generator | None = None, **counts):
        super().__init__(num_classes, **counts)
        _require(0 <= gamma <= 1, f"eql_softmax gamma is a probability in [0, 1], got {gamma}")
        self.gamma = float(gamma)
        self.generator = _make_generator(seed, generator)
        rare = _rare_classes(self, lam, num_images, tail, bins, rare_max, common_max)
        self.register_buffer("rare", torch.cat([rare.new_zeros(1), rare]), persistent=False)

    def equivalence(self) -> str | None:
        if self.gamma == 0:
            return "eql_softmax with gamma 0 never excludes a class: it is ce exactly"
        return _eql_note("eql_softmax", "ce", self)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        negative = F.one_hot(labels, self.logit_dim) == 0
        exclude = (labels > 0)[:, None] & self.rare[None, :] & negative
        if self.gamma < 1:
            beta = torch.rand(logits.shape, generator=self.generator) < self.gamma
            exclude = exclude & beta.to(logits.device)
        adjusted = logits.masked_fill(exclude, float("-inf"))
        return _per_roi_mean(F.cross_entropy(adjusted, labels, reduction="sum"), len(labels))


class EQLv2Loss(ClassificationLoss):
    """Equalization loss v2 (Tan et al., "Equalization Loss v2: A New Gradient Balance
    Approach for Long-tailed Object Detection", CVPR 2021), following the paper's code.

    Sigmoid BCE over all K + 1 columns; column 0 is the objectness (background) branch with
    target 1 for background RoIs and weight 1. For class j, with g_j the ratio of accumulated
    positive to negative gradient magnitudes:

        q_j = 1 / (1 + exp(-gamma (g_j - mu))),   neg weight = q_j,   pos weight = 1 + alpha (1 - q_j)
        L = 1/N sum_i sum_j w_ij BCE(z_ij, y_ij)

    The weights use the statistics before the current batch; then, in training mode, the
    batch's weighted gradient magnitudes |dL/dz| = |sigmoid(z) - y| w are added
    (``pos_grad += sum_i y_ij |.|``, ``neg_grad += sum_i (1 - y_ij) |.|``, summed over
    processes when torch.distributed is initialised). g starts at 100, so all weights start at
    1 (plain BCE). gamma=12, mu=0.8, alpha=4 are the paper's values. postprocess:
    p_c = sigmoid(z_c) (1 - sigmoid(z_0)), column 0 = sigmoid(z_0).
    """

    def __init__(self, num_classes: int, *, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0, **counts):
        super().__init__(num_classes, **counts)
        _require(gamma >= 0 and alpha >= 0, f"eqlv2 gamma and alpha must be >= 0, got {gamma}, {alpha}")
        self.gamma, self.mu, self.alpha = float(gamma), float(mu), float(alpha)
        self.register_buffer("pos_grad", torch.zeros(num_classes))
        self.register_buffer("neg_grad", torch.zeros(num_classes))
        self.register_buffer("pos_neg", torch.full((num_classes,), 100.0))

    def class_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) weights per column (K + 1,); column 0 has weight 1."""
        neg = torch.sigmoid(self.gamma * (self.pos_neg - self.mu))
        pos = 1 + self.alpha * (1 - neg)
        one = neg.new_ones(1)
        return torch.cat([one, pos]), torch.cat([one, neg])

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        target = F.one_hot(labels, self.logit_dim).to(logits.dtype)
        pos_w, neg_w = (w.to(logits.dtype) for w in self.class_weights())
        weight = pos_w * target + neg_w * (1 - target)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        if self.training:
            self._collect(logits.detach(), target, weight)
        return _per_roi_mean((bce * weight).sum(), len(labels))

    @torch.no_grad()
    def _collect(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> None:
        grad = (logits.sigmoid() - target).abs() * weight
        pos = (grad * target).sum(dim=0)[1:].to(self.pos_grad.dtype)
        neg = (grad * (1 - target)).sum(dim=0)[1:].to(self.neg_grad.dtype)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(pos)
            dist.all_reduce(neg)
        self.pos_grad += pos
        self.neg_grad += neg
        self.pos_neg.copy_(self.pos_grad / (self.neg_grad + 1e-10))

    def postprocess(self, logits: torch.Tensor) -> torch.Tensor:
        p = logits.sigmoid()
        return torch.cat([p[:, :1], p[:, 1:] * (1 - p[:, :1])], dim=1)


def _seesaw_weights(counts: torch.Tensor, own: torch.Tensor, scores: torch.Tensor, self_scores: torch.Tensor,
                    p: float, q: float, eps: float) -> torch.Tensor:
    """Seesaw's S = M x C (n, K) between the n RoIs' own classes ``own`` (0-based, (n,)) and the K
    classes: M from the counts (K,) clamped at 1, C from the class ``scores`` (n, K) and each RoI's
    score of its own class ``self_scores`` (n, 1), clamped at eps."""
    ratio = counts[None, :] / counts[own][:, None]
    mitigation = torch.where(ratio < 1, ratio ** p, torch.ones_like(ratio))
    score_ratio = scores / self_scores.clamp(min=eps)
    compensation = torch.where(score_ratio > 1, score_ratio ** q, torch.ones_like(score_ratio))
    return mitigation * compensation


class SeesawLoss(ClassificationLoss):
    """Seesaw loss (Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021),
    **single-softmax variant** (the study's ``seesaw`` cells; the published recipe is
    :class:`SeesawMMDetLoss`, ``seesaw_mmdet``).

    L = 1/N sum_i -log( e^{z_iy} / (e^{z_iy} + sum_{j != y} S_yj e^{z_ij}) ),  S_ij = M_ij C_ij
    mitigation   M_ij = (N_j / N_i)^p if N_j < N_i else 1   (N = cumulative training counts)
    compensation C_ij = (s_j / s_i)^q if s_j > s_i else 1   (s = softmax of the detached logits,
                                                              s_i clamped at eps)

    Background handling: one softmax over the K + 1 classes (no separate objectness branch).
    The factors act only between foreground classes: a background RoI's row and the background
    column have S = 1, so background competes exactly as in CE. ``cum_samples`` (K,) counts the
    foreground labels seen in training mode, updated before the loss is computed (as in the
    paper's code); it is a persistent buffer. p=q=0 is CE; p=0.8, q=2, eps=0.01 are the paper's
    values. postprocess is plain softmax.

    How it differs from the paper's code (mmdetection's ``SeesawLoss``, = ``seesaw_mmdet``):
    there the factors act on K class logits only and background is a separate 2-way objectness
    softmax, and the LVIS recipe uses a cosine classifier (``--classifier cosine``). Here the
    background logit z_0 sits in the denominator of every foreground RoI's seesaw softmax (and
    in the softmax whose score ratio is clamped at eps). Background RoIs get the same loss, and
    foreground RoIs too when e^{z_0} vanishes beside the class exponentials; with a finite z_0
    on foreground RoIs the values differ by 0.4-1.4 % on the fidelity suite's batches (p=0.8,
    q=2; ``tests/test_loss_fidelity.py``). The scores (plain softmax) equal mmdetection's
    ``get_activation`` under the map classes = (z_1..z_K), objectness = (logsumexp(z_1..z_K), z_0).
    """

    def __init__(self, num_classes: int, *, p: float = 0.8, q: float = 2.0, eps: float = 1e-2, **counts):
        super().__init__(num_classes, **counts)
        _require(p >= 0 and q >= 0, f"seesaw p and q must be >= 0, got {p}, {q}")
        _require(eps > 0, f"seesaw eps must be > 0, got {eps}")
        self.p, self.q, self.eps = float(p), float(q), float(eps)
        self.register_buffer("cum_samples", torch.zeros(num_classes))

    def equivalence(self) -> str | None:
        return "seesaw with p = q = 0 has every factor 1: it is ce exactly" if self.p == self.q == 0 else None

    def seesaw_factors(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """S (N, K + 1) for the current ``cum_samples``; 1 on the label, row 0 and column 0.

        Computed in at least float32, whatever the logits' dtype: under CUDA mixed precision
        the logits are float16, in which counts above 65504 are inf and small factors round
        to 0 (a logit of -inf after the log). float32 and float64 logits are computed as is.
        """
        dtype = torch.promote_types(logits.dtype, torch.float32)
        factors = torch.ones(logits.shape, dtype=dtype, device=logits.device)
        fg = labels > 0
        own = labels[fg] - 1
        counts = self.cum_samples.to(dtype).clamp(min=1)
        scores = logits.detach()[fg].to(dtype).softmax(dim=1)
        factors[fg, 1:] = _seesaw_weights(counts, own, scores[:, 1:], scores.gather(1, labels[fg, None]),
                                          self.p, self.q, self.eps)
        return factors.scatter(1, labels[:, None], 1.0)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        if self.training:
            seen = torch.bincount(labels, minlength=self.logit_dim)[1:]
            self.cum_samples += seen.to(self.cum_samples.dtype)
        adjusted = logits + self.seesaw_factors(logits, labels).log()  # float32 under fp16 autocast
        return _per_roi_mean(F.cross_entropy(adjusted, labels, reduction="sum"), len(labels))


class SeesawMMDetLoss(ClassificationLoss):
    """Seesaw loss as mmdetection runs it on LVIS (the paper's code: open-mmlab/mmdetection
    ``mmdet/models/losses/seesaw_loss.py`` ``SeesawLoss``, ``configs/seesaw_loss/*``): the seesaw
    factors over the K class logits, and a separate 2-way objectness branch.

    Logit layout, K + 2 columns (mmdetection's K classes, object, background, moved to
    torchvision's convention):
        0          background (objectness)      } objectness: softmax over [K + 1, 0]
        K + 1      object (objectness)          }
        1 .. K     class c                      } classes: softmax over [1..K]

    L = 1/N ( sum_{i fg} -log( e^{z_iy} / (e^{z_iy} + sum_{j != y, j in 1..K} S_yj e^{z_ij}) )
              + sum_i -log softmax(z_i,K+1, z_i0)[object if fg else background] )

    S as in :class:`SeesawLoss` (mitigation from ``cum_samples``, compensation from the softmax
    of the detached class logits, clamped at eps), over the classes only. Both terms are divided
    by N, the sampled RoIs (mmdetection's ``avg_factor`` of ``BBoxHead.loss``); background RoIs
    enter only the objectness term. ``cum_samples`` (K,) counts the foreground labels seen in
    training mode, updated before the loss (mmdetection's buffer also counts background, which
    its math never reads). p=0.8, q=2, eps=0.01 are the paper's values; with p = q = 0 the
    class term is softmax CE over the K classes.

    postprocess (mmdetection's ``get_activation``): p(object) and p(background) from the
    objectness softmax; column 0 = p(background), class c = softmax(z_1..z_K)_c x p(object).
    Rows sum to 1. The LVIS recipe also uses the cosine classifier (``NormedLinear``, tau 20):
    ``--classifier cosine`` (:class:`trainer.model.NormedLinear`).
    """

    def __init__(self, num_classes: int, *, p: float = 0.8, q: float = 2.0, eps: float = 1e-2, **counts):
        super().__init__(num_classes, **counts)
        _require(p >= 0 and q >= 0, f"seesaw_mmdet p and q must be >= 0, got {p}, {q}")
        _require(eps > 0, f"seesaw_mmdet eps must be > 0, got {eps}")
        self.p, self.q, self.eps = float(p), float(q), float(eps)
        self.logit_dim = self.num_logits(num_classes)
        self.register_buffer("cum_samples", torch.zeros(num_classes))

    @classmethod
    def num_logits(cls, num_classes: int, **params) -> int:
        return num_classes + 2

    def _objectness(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, 2) objectness logits in mmdetection's order: object, background."""
        return logits[:, [self.num_classes + 1, 0]]

    def seesaw_factors(self, class_logits: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """S (n, K) for foreground RoIs with class logits (n, K) and classes ``own`` (0-based), for
        the current ``cum_samples``; 1 on the label. In at least float32, as :class:`SeesawLoss`."""
        dtype = torch.promote_types(class_logits.dtype, torch.float32)
        counts = self.cum_samples.to(dtype).clamp(min=1)
        scores = class_logits.detach().to(dtype).softmax(dim=1)
        factors = _seesaw_weights(counts, own, scores, scores.gather(1, own[:, None]), self.p, self.q, self.eps)
        return factors.scatter(1, own[:, None], 1.0)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        if self.training:
            seen = torch.bincount(labels, minlength=self.num_classes + 1)[1:]
            self.cum_samples += seen.to(self.cum_samples.dtype)
        fg = labels > 0
        objectness = F.cross_entropy(self._objectness(logits), (~fg).long(), reduction="sum")
        own = labels[fg] - 1
        classes = logits[fg, 1:self.num_classes + 1]
        adjusted = classes + self.seesaw_factors(classes, own).log()  # float32 under fp16 autocast
        return _per_roi_mean(F.cross_entropy(adjusted, own, reduction="sum") + objectness, len(labels))

    def postprocess(self, logits: torch.Tensor) -> torch.Tensor:
        objectness = self._objectness(logits).softmax(dim=1)
        classes = logits[:, 1:self.num_classes + 1].softmax(dim=1) * objectness[:, :1]
        return torch.cat([objectness[:, 1:], classes], dim=1)


class BAGSLoss(ClassificationLoss):
    """Balanced group softmax (Li et al., "Overcoming Classifier Imbalance for Long-tail
    Object Detection with Balanced Group Softmax", CVPR 2020), following the paper's code.

    The loss of the grouped classifier, whichever way it is trained. ``--loss bags`` alone
    trains it **end to end** from the start with the whole detector (a variant: the study's
    ``bags`` cells). The published protocol is decoupled: a CE-trained detector, then only this
    classifier trained, every other weight frozen (``--stage2 bags --from RUN``,
    :func:`trainer.decouple.prepare_bags`).

    Groups: group 0 = background alone; foreground class c goes to group n (1..G) when
    boundaries[n-1] <= training instances of c < boundaries[n] (default 0/10/100/1000: G = 4).
    Every group has an extra "others" category and its own softmax.

    Logit layout, K + 2 + G columns:
        0            background                 } group 0: softmax over [0, K+1]
        K + 1        group 0's "others" (= any foreground, the objectness)
        1 .. K       class c (torchvision's column c)    } group n: softmax over
        K + 1 + n    group n's "others", n = 1..G         } [K+1+n, its classes]

    Loss: sum over groups of the group's softmax CE, the label mapped to "others" when it is
    not in the group, each averaged over the RoIs the group uses. Group 0 uses all RoIs. Group
    n uses its own RoIs plus int(others_ratio * their number) "others" RoIs drawn at random
    (all of them when others_ratio is None or there are fewer); a group with no RoI of its own
    in the batch, or with no classes, adds nothing. others_ratio=8 is the paper's setting.

    postprocess (the paper's merge): column 0 = p(background | group 0); class c in group n
    gets p(c | group n) * p(others | group 0). Rows do not sum to 1.
    """

    def __init__(self, num_classes: int, *, boundaries: Sequence[int] = (0, 10, 100, 1000),
                 others_ratio: float | None = 8.0, seed: int = 0, generator: torch.Generator | None = None,
                 **counts):
        super().__init__(num_classes, **counts)
        boundaries = tuple(boundaries)
        _require(len(boundaries) >= 1 and boundaries[0] == 0
                 and all(a < b for a, b in itertools.pairwise(boundaries)),
                 f"bags boundaries must start at 0 and increase strictly, got {boundaries}")
        _require(others_ratio is None or others_ratio > 0, f"bags others_ratio must be > 0 or None, got {others_ratio}")
        n = self._needs(self.instance_counts, "class_instance_counts")
        self.boundaries, self.others_ratio = boundaries, others_ratio
        self.generator = _make_generator(seed, generator)
        self.logit_dim = self.num_logits(num_classes, boundaries=boundaries)
        group = torch.bucketize(n, torch.tensor(boundaries[1:], dtype=n.dtype), right=True) + 1
        local = torch.zeros(len(boundaries) + 1, num_classes + 1, dtype=torch.long)
        local[0, 1:] = 1
        self.group_columns: list[torch.Tensor] = [torch.tensor([0, num_classes + 1])]
        for g in range(1, len(boundaries) + 1):
            members = torch.nonzero(group == g).flatten() + 1
            local[g, members] = torch.arange(1, len(members) + 1)
            self.group_columns.append(torch.cat([torch.tensor([num_classes + 1 + g]), members]))
        self.register_buffer("local_labels", local, persistent=False)

    @classmethod
    def num_logits(cls, num_classes: int, boundaries: Sequence[int] = (0, 10, 100, 1000), **params) -> int:
        return num_classes + 2 + len(boundaries)

    def _used(self, local: torch.Tensor) -> torch.Tensor:
        """Mask of the RoIs a foreground group uses: its own plus sampled "others"."""
        own = local > 0
        n_own = int(own.sum())
        if n_own == 0:
            return own
        others = torch.nonzero(~own).flatten()
        if self.others_ratio is None or int(n_own * self.others_ratio) >= len(others):
            return torch.ones_like(own)
        pick = torch.randperm(len(others), generator=self.generator)[:int(n_own * self.others_ratio)]
        return own.index_fill(0, others[pick.to(others.device)], True)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        total = logits.new_zeros(())
        for g, columns in enumerate(self.group_columns):
            if len(columns) == 1:
                continue
            local = self.local_labels[g][labels]
            used = torch.ones_like(local, dtype=torch.bool) if g == 0 else self._used(local)
            group_logits = logits[used][:, columns.to(logits.device)]
            ce = F.cross_entropy(group_logits, local[used], reduction="sum")
            total = total + _per_roi_mean(ce, int(used.sum()))
        return total

    def postprocess(self, logits: torch.Tensor) -> torch.Tensor:
        probs = logits.new_zeros(logits.shape[0], self.num_classes + 1)
        group0 = logits[:, self.group_columns[0].to(logits.device)].softmax(dim=1)
        probs[:, 0] = group0[:, 0]
        for columns in self.group_columns[1:]:
            if len(columns) > 1:
                columns = columns.to(logits.device)
                probs[:, columns[1:]] = group0[:, 1:] * logits[:, columns].softmax(dim=1)[:, 1:]
        return probs


class FederatedLoss(_SigmoidLoss):
    """Federated loss (Zhou, Koltun, Kraehenbuehl, "Probabilistic two-stage detection", 2021,
    the CenterNet2 LVIS entry).

    Sigmoid BCE restricted to a class subset S drawn per batch:
        S = the batch's positive classes + classes drawn without replacement with probability
            proportional to image_count^power until |S| = subset_size (default 50, power 0.5)
        L = 1/N sum_i sum_{j in S} BCE(z_ij, y_ij)
    Classes with no training images are never drawn as negatives. With subset_size >= K and
    every class present, S is all classes and the loss is BCE. :meth:`sample_classes` draws S.
    """

    def __init__(self, num_classes: int, *, subset_size: int = 50, power: float = 0.5, seed: int = 0,
                 generator: torch.Generator | None = None, **counts):
        super().__init__(num_classes, **counts)
        _require(isinstance(subset_size, int) and subset_size >= 1,
                 f"federated subset_size must be a positive int, got {subset_size!r}")
        _require(power >= 0, f"federated power must be >= 0, got {power}")
        self.subset_size, self.power = subset_size, float(power)
        self.generator = _make_generator(seed, generator)
        counts = self._needs(self.image_counts, "class_image_counts")
        self.sample_weight = torch.where(counts > 0, counts ** power, torch.zeros_like(counts))

    def equivalence(self) -> str | None:
        if self.subset_size >= self.num_classes and bool((self.image_counts > 0).all()):
            return f"federated with subset_size {self.subset_size} >= {self.num_classes} classes: every class is " \
                   "in every subset, it is bce exactly"
        return None

    def sample_classes(self, labels: torch.Tensor) -> torch.Tensor:
        """Sorted class ids (1..K) of the subset S for these labels (on CPU)."""
        positives = labels.unique().cpu()
        positives = positives[positives > 0]
        weight = self.sample_weight.clone()
        weight[positives - 1] = 0
        draw = min(self.subset_size - len(positives), int((weight > 0).sum()))
        if draw <= 0:
            return positives
        extra = torch.multinomial(weight, draw, replacement=False, generator=self.generator) + 1
        return torch.cat([positives, extra]).sort().values

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        bce, _ = self._bce(logits, labels)
        in_subset = torch.zeros(self.num_classes, dtype=bce.dtype)
        in_subset[self.sample_classes(labels) - 1] = 1
        return _per_roi_mean((bce * in_subset.to(bce.device)[None, :]).sum(), len(labels))


class ConcurrentSoftmaxLoss(ClassificationLoss):
    """Concurrent softmax (Peng et al., "Large-Scale Object Detection in the Wild from
    Imbalanced Multi-Labels", CVPR 2020).

    sigma*_i = e^{z_i} / ( sum_j (1 - y_j)(1 - r_ij) e^{z_j} + e^{z_i} ),  L = -sum_i y_i log sigma*_i

    r_ij = concurrence rate, the fraction of class-i objects also labelled j. A negative j
    that co-occurs with the label is suppressed less. Our RoIs carry one label each, so
    L_i = -log( e^{z_iy} / (e^{z_iy} + sum_{j != y} (1 - r_yj) e^{z_ij}) ), averaged over RoIs.
    ``concurrence`` is a K x K foreground matrix (diagonal ignored; background never
    co-occurs). It defaults to zeros: in single-label COCO/LVIS annotations no box carries two
    labels, so the measured concurrence is 0 and the loss is exactly softmax CE; give a matrix
    (from synonym/hierarchy labels, or from near-duplicate boxes with different labels) to use
    the paper's effect. The paper uses plain softmax at test time, and so does postprocess.
    """

    def __init__(self, num_classes: int, *, concurrence=None, **counts):
        super().__init__(num_classes, **counts)
        r = torch.zeros(num_classes + 1, num_classes + 1)
        if concurrence is not None:
            c = torch.as_tensor(concurrence, dtype=torch.float32).clone()
            _require(c.shape == (num_classes, num_classes),
                     f"concurrence must be {num_classes} x {num_classes}, got {tuple(c.shape)}")
            _require(bool(((c >= 0) & (c <= 1)).all()), "concurrence rates must be in [0, 1]")
            r[1:, 1:] = c.fill_diagonal_(0)
        self.register_buffer("concurrence", r, persistent=False)

    def equivalence(self) -> str | None:
        if not bool(self.concurrence.any()):
            return "concurrent_softmax with no concurrence (none given, or all zero) is ce exactly: derive the " \
                   "rates with `ltaug concurrence` and train with --concurrence FILE"
        return None

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(logits, labels)
        adjusted = logits + torch.log1p(-self.concurrence.to(logits.dtype)[labels])
        return _per_roi_mean(F.cross_entropy(adjusted, labels, reduction="sum"), len(labels))


LOSSES: dict[str, type[ClassificationLoss]] = {
    "ce": CELoss,
    "bce": BCELoss,
    "focal": FocalLoss,
    "cb": ClassBalancedLoss,
    "eql": EQLLoss,
    "eql_softmax": EQLSoftmaxLoss,
    "eqlv2": EQLv2Loss,
    "seesaw": SeesawLoss,
    "seesaw_mmdet": SeesawMMDetLoss,
    "bags": BAGSLoss,
    "federated": FederatedLoss,
    "concurrent_softmax": ConcurrentSoftmaxLoss,
}


def _parameters(cls: type[ClassificationLoss]) -> list[str]:
    return [name for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY]


def build_loss(name: str, *, num_classes: int, class_instance_counts=None, class_image_counts=None,
               **params) -> ClassificationLoss:
    """The loss called ``name`` (a key of :data:`LOSSES`) for K = ``num_classes`` foreground
    classes; counts are per foreground class, from the training annotations; ``params`` are
    the loss's own keyword parameters. Raises ValueError for an unknown name or parameter, or
    a bad value."""
    _require(name in LOSSES, f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    cls = LOSSES[name]
    accepted = _parameters(cls)
    unknown = sorted(set(params) - set(accepted))
    _require(not unknown, f"loss {name!r} takes no parameter {', '.join(unknown)}; "
                          f"it takes {', '.join(accepted) or 'none'}")
    return cls(num_classes, class_instance_counts=class_instance_counts,
               class_image_counts=class_image_counts, **params)
