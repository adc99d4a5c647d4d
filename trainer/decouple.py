"""Decoupled training for the box classifier: cRT, tau-normalisation, and BAGS' stage 2.

Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition", ICLR
2020. Stage 1 is a normal run (instance-balanced sampling learns the best representation);
stage 2 keeps that representation and re-balances only the classifier, in one of two ways.

**cRT, classifier re-training** (``ltaug train --stage2 crt --from RUN_DIR``): the last
classification layer (here the box head's ``roi_heads.box_predictor.cls_score``, a linear
layer z = W f + b) is re-initialised and trained alone with class-balanced sampling
(the class-aware sampler by default), every other parameter frozen: backbone, FPN, RPN,
box head MLP, box regressor, mask branch. As in the paper's code (``config/*/cls_crt.yaml``
of facebookresearch/classifier-balancing: classifier not initialised from stage 1, features
fixed, ``ClassAwareSampler``). The frozen network still runs in training mode, so the RPN
proposes and the RoI sampler samples as in stage 1; only the classification term reaches a
trainable parameter.

**BAGS, as published** (``ltaug train --stage2 bags --loss bags --from RUN_DIR``; Li et al.,
CVPR 2020): stage 1 is a CE-trained detector; stage 2 builds the grouped classifier (K + 2 + G
logits, :class:`trainer.losses.BAGSLoss`, with its "others" sampling) and trains it alone,
every other weight frozen, with the plain sampler: BAGS balances through its groups, not the
sampler. As in FishYuLi/BalancedGroupSoftmax: its ``configs/bags/*.py`` set ``load_from`` the
CE baseline's checkpoint and ``selectp = 1``, which ``tools/train.py``
(``select_training_param``) turns into "requires_grad only for bbox_head.fc_cls"; mmcv's
checkpoint loading skips tensors whose shape differs, so of the baseline everything but the
classifier is loaded (the classifier has K + 1 + G rows there, K + 1 in the baseline) and the
classifier keeps the initialisation of mmdetection's ``BBoxHead.init_weights``: weight
N(0, 0.01^2), bias 0 (:func:`prepare_bags`). The frozen network runs in training mode, as
for cRT. ``--loss bags`` without ``--stage2`` is the end-to-end variant (the study's ``bags``
cells).

**tau-normalisation** (``ltaug eval --tau T``, ``ltaug tau-sweep``): no training; each
class's weight vector is rescaled by a power of its own L2 norm,

    w~_c = w_c / ||w_c||^tau,

so that classes with many training samples (large ||w_c||) lose their advantage: tau = 1 is
plain L2 normalisation, tau = 0 leaves the weights unchanged; the paper sweeps tau on
validation data. Detection specifics: only the foreground rows c = 1..K are rescaled; the
background row (and BAGS' "others" rows) are left as trained, because they are not classes
of the long tail and set the detector's foreground/background balance.

Bias: the paper's code (``tau_norm.py``) computes logits as f . w~_c, that is it drops the
bias of every class, at every tau. Here ``bias="keep"`` (the default) keeps all biases, so
tau = 0 gives exactly the stage-1 detector and the first row of a sweep is the baseline;
``bias="drop"`` follows the paper's code and sets the foreground biases to 0 (the background
bias, the detector's prior for "no object", which the classification setting has no
counterpart for, is kept). A cosine classifier (``--classifier cosine``) normalises its rows
in every forward pass, so tau would change nothing: it is refused.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from .checkpoint import read_torch_file
from .model import NormedLinear

CLASSIFIER = "roi_heads.box_predictor.cls_score."
LOSS_STATE = "roi_heads.cls_loss."
BIAS_MODES = ("keep", "drop")


def classifier(model) -> nn.Linear:
    return model.roi_heads.box_predictor.cls_score


# -- cRT ------------------------------------------------------------------------------------
def load_stage1(model, run_dir) -> None:
    """Load a stage-1 run's weights into ``model``, except the classifier and the loss state.

    Raises ValueError (one line) when the run has no checkpoint or its model differs
    (other classes, preset, Mask vs Faster R-CNN).
    """
    path = Path(run_dir)
    ckpt = path / "checkpoint.pt" if path.is_dir() else path
    if not ckpt.is_file():
        raise ValueError(f"--from {run_dir}: no checkpoint.pt (not a finished `ltaug train` run)")
    state = read_torch_file(ckpt, what="checkpoint")
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"--from {run_dir}: {ckpt} is not a checkpoint written by `ltaug train`")
    state = state["model"]
    state = {k: v for k, v in state.items() if not k.startswith((CLASSIFIER, LOSS_STATE))}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError:
        missing, unexpected = ["(a tensor of another shape)"], []
    missing = [k for k in missing if not k.startswith((CLASSIFIER, LOSS_STATE))]
    if missing or unexpected:
        raise ValueError(f"--from {run_dir}: its model differs from this one (first difference: "
                         f"{(missing or unexpected)[0]}); use the stage-1 run's classes, preset and --masks")


def _train_classifier_only(model) -> list[nn.Parameter]:
    for p in model.parameters():
        p.requires_grad_(False)
    cls = classifier(model)
    for p in cls.parameters():
        p.requires_grad_(True)
    return list(cls.parameters())


def prepare_crt(model) -> list[nn.Parameter]:
    """Re-initialise the classifier, freeze everything else; returns the trainable parameters."""
    params = _train_classifier_only(model)
    classifier(model).reset_parameters()
    return params


def prepare_bags(model) -> list[nn.Parameter]:
    """BAGS' stage 2 on a model holding the stage-1 weights (:func:`load_stage1`): the grouped
    classifier initialised as mmdetection's ``BBoxHead`` does (weight N(0, 0.01^2), bias 0),
    everything else frozen; returns the trainable parameters (the classifier's)."""
    params = _train_classifier_only(model)
    cls = classifier(model)
    with torch.no_grad():
        nn.init.normal_(cls.weight, mean=0.0, std=0.01)
        nn.init.zeros_(cls.bias)
    return params


# -- tau-normalisation ------------------------------------------------------------------------
def tau_normalized(weight: torch.Tensor, bias: torch.Tensor, tau: float, *, num_classes: int,
                   bias_mode: str = "keep") -> tuple[torch.Tensor, torch.Tensor]:
    """(W~, b~): rows 1..num_classes of ``weight`` divided by their L2 norm to the power ``tau``.

    ``bias_mode`` "keep" returns ``bias`` unchanged, "drop" zeroes entries 1..num_classes.
    Inputs are not modified.
    """
    if bias_mode not in BIAS_MODES:
        raise ValueError(f"tau bias mode must be one of {', '.join(BIAS_MODES)}, got {bias_mode!r}")
    if not tau >= 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    fg = slice(1, num_classes + 1)
    weight, bias = weight.detach().clone(), bias.detach().clone()
    norms = weight[fg].norm(dim=1, keepdim=True).clamp_min(torch.finfo(weight.dtype).tiny)
    weight[fg] = weight[fg] / norms.pow(tau)
    if bias_mode == "drop":
        bias[fg] = 0
    return weight, bias


@contextlib.contextmanager
def tau_normalization(model, tau: float, *, bias_mode: str = "keep"):
    """Within the block, ``model``'s classifier is tau-normalised; restored afterwards. A cosine
    classifier is refused (ValueError): it normalises its rows itself."""
    cls = classifier(model)
    if isinstance(cls, NormedLinear):
        raise ValueError("tau-normalisation rescales the rows of a linear classifier; this run's cosine classifier "
                         "(--classifier cosine) normalises them in every forward pass, so tau would change nothing")
    saved = cls.weight.detach().clone(), cls.bias.detach().clone()
    weight, bias = tau_normalized(*saved, tau, num_classes=model.roi_heads.cls_loss.num_classes, bias_mode=bias_mode)
    with torch.no_grad():
        cls.weight.copy_(weight)
        cls.bias.copy_(bias)
    try:
        yield model
    finally:
        with torch.no_grad():
            cls.weight.copy_(saved[0])
            cls.bias.copy_(saved[1])


class _Memo(nn.Module):
    """The box head, computed once per image during a sweep (its input is the same for every tau)."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head, self.cached = head, None

    def forward(self, x):
        if self.cached is None:
            self.cached = self.head(x)
        return self.cached


@torch.no_grad()
def predict_taus(model, dataset, taus, *, device: str, label_to_category, bias_mode: str = "keep",
                 progress: bool = True) -> dict[float, list[dict]]:
    """COCO results per tau, for every image of ``dataset``; each image's backbone, RPN and box
    head run once, the classifier and what follows it (post-processing, the mask branch) per tau.

    Equal to :func:`trainer.inference.predict` under :func:`tau_normalization` for each tau.
    """
    from tqdm import tqdm

    from .inference import detections_to_results

    model.eval()
    heads = model.roi_heads
    head, heads.box_head = heads.box_head, _Memo(heads.box_head)
    results = {float(t): [] for t in taus}
    try:
        for i in tqdm(range(len(dataset)), desc="predict", disable=not progress, unit="img"):
            image, target = dataset[i]
            image = image.to(device)
            batch, _ = model.transform([image])
            features = model.backbone(batch.tensors)
            proposals, _ = model.rpn(batch, features)
            heads.box_head.cached = None
            for tau in results:
                with tau_normalization(model, tau, bias_mode=bias_mode):
                    dets, _ = heads(features, proposals, batch.image_sizes)
                out = model.transform.postprocess(dets, batch.image_sizes, [tuple(image.shape[-2:])])[0]
                results[tau] += detections_to_results(out, int(target["image_id"]), label_to_category)
    finally:
        heads.box_head = head
    return results
