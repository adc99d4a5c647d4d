"""What a training run is: its settings (:class:`TrainConfig`), the preset they resolve to, the
detector they build, and whether a checkpoint's settings may be resumed under them.

Shared by the training loop (:mod:`trainer.engine`), loading a finished run
(:func:`trainer.inference.load_run`) and the checks of ``ltaug compare``; it imports no other
part of the trainer than the model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch

from .model import (
    ANCHOR_SIZES,
    BACKBONES,
    PRESETS,
    Preset,
    build_model,
    check_anchor_sizes,
    check_classifier,
    default_preset,
)
from .samplers import SAMPLERS

STAGE2 = ("crt", "bags")


@dataclass
class TrainConfig:
    train: str
    images: str
    out: str
    val: str | None = None
    val_images: str | None = None
    loss: str = "ce"
    loss_params: dict = field(default_factory=dict)
    concurrence: str | None = None          # concurrence-rate file of concurrent_softmax (`ltaug concurrence`)
    sampler: str = "plain"
    rfs_threshold: float = 0.001
    repeat_factors: str | None = None
    counts_from: str | None = None          # class-frequency file (default: train's original, or train)
    masks: bool = False
    preset: str = field(default_factory=default_preset)
    backbone: str | None = None             # mobilenet_v2 or resnet50 (default: the preset's)
    min_size: int | None = None             # image short side, px (default: the preset's)
    max_size: int | None = None             # image long side cap, px (default: the preset's)
    anchor_sizes: tuple = ANCHOR_SIZES      # RPN anchor sizes, px (see trainer.model.build_model)
    classifier: str = "linear"              # box classification layer: linear, or cosine (NormedLinear)
    classifier_tau: float | None = None     # the cosine classifier's scale (default 20, mmdetection's)
    backbone_weights: str | None = None
    epochs: int = 12
    batch_size: int = 2
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 200
    clip_grad_norm: float = 10.0
    workers: int = 1
    threads: int | None = None
    seed: int = 0
    max_iters_per_epoch: int | None = None  # for smoke tests and quick looks
    record_samples: bool = False            # write the image ids each rank trained on, per epoch
    stage2: str | None = None               # decoupled stage 2 from init_from: "crt", or "bags" (BAGS' classifier)
    init_from: str | None = None            # the stage-1 run folder (or checkpoint) of stage2
    resume: bool = False                    # continue the run whose checkpoint is in out (see check_resumable)
    eval_every: int = 0                     # also evaluate on val every N epochs (0: only at the end)
    amp: bool = True                        # mixed precision on CUDA (autocast + GradScaler); no effect on CPU
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")

    def validate(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.sampler == "repeat-factors" and not self.repeat_factors:
            raise ValueError("sampler 'repeat-factors' needs a repeat-factors file (ltaug resample --repeat-factors)")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        self._validate_model()
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not self.lr > 0:
            raise ValueError("lr must be > 0")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0: evaluate only at the end), got {self.eval_every}")
        if self.eval_every and not self.val:
            raise ValueError("eval_every needs a validation file (--val)")
        if self.concurrence is not None and self.loss != "concurrent_softmax":
            raise ValueError(f"a concurrence file (--concurrence) is for loss concurrent_softmax, got loss {self.loss}")
        if self.concurrence is not None and "concurrence" in self.loss_params:
            raise ValueError("concurrence given twice: as a file (--concurrence) and as a loss parameter")
        if self.stage2 is not None and self.stage2 not in STAGE2:
            raise ValueError(f"stage2 must be one of {', '.join(STAGE2)}, got {self.stage2!r}")
        if (self.stage2 is None) != (self.init_from is None):
            raise ValueError("stage 2 (--stage2) and the stage-1 run it starts from (--from) go together")
        if self.stage2 == "crt" and self.sampler == "plain":
            raise ValueError("cRT re-trains the classifier with class-balanced sampling: use sampler cas, "
                             "rfs or repeat-factors, not plain")
        if self.stage2 == "bags" and self.loss != "bags":
            raise ValueError(f"stage 2 bags (--stage2 bags) trains the grouped classifier of BAGS: it needs loss "
                             f"bags (--loss bags), got loss {self.loss}")

    def _validate_model(self) -> None:
        """Backbone, image sizes, anchor sizes (as they combine with the preset) and the classifier."""
        if self.backbone is not None and self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        for name in ("min_size", "max_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        preset = run_preset(self)
        if preset.min_size > preset.max_size:
            raise ValueError(f"min_size {preset.min_size} is above max_size {preset.max_size}")
        check_anchor_sizes(preset.backbone, self.anchor_sizes)
        check_classifier(self.classifier, self.classifier_tau)


def run_preset(cfg: TrainConfig) -> Preset:
    """The run's preset with its backbone and image sizes overridden where the config sets them."""
    preset = PRESETS[cfg.preset]
    return replace(preset, backbone=cfg.backbone or preset.backbone, min_size=cfg.min_size or preset.min_size,
                   max_size=cfg.max_size or preset.max_size)


def build_run_model(cfg: TrainConfig, freq):
    """The configured detector; ``freq`` (an ltaug Dataset) gives the classes and their counts, and
    the order in which a concurrence file's rates are given to the loss."""
    ix = freq.index
    params = cfg.loss_params
    if cfg.concurrence is not None:
        from ltaug.stats.concurrence import read_concurrence

        params = {**params, "concurrence": read_concurrence(cfg.concurrence, ix.category_ids)}
    return build_model(num_classes=ix.num_categories, preset=run_preset(cfg), masks=cfg.masks, loss=cfg.loss,
                       loss_params=params, class_instance_counts=ix.instance_counts.tolist(),
                       class_image_counts=ix.image_counts.tolist(), num_images=ix.num_images,
                       backbone_weights=cfg.backbone_weights, anchor_sizes=cfg.anchor_sizes,
                       classifier=cfg.classifier, classifier_tau=cfg.classifier_tau)


# settings a resumed run may change: where it validates, how it runs, the backbone's initial
# weights (the checkpoint replaces them), the iteration cap of smoke tests and quick looks;
# epochs may be raised; every other field must agree
RESUME_FREE = ("val", "val_images", "out", "workers", "threads", "record_samples", "device", "backbone_weights",
               "resume", "eval_every", "max_iters_per_epoch")
PATH_FIELDS = ("train", "images", "repeat_factors", "counts_from", "init_from", "concurrence")
PRESET_FIELDS = ("backbone", "min_size", "max_size")  # compared as the run uses them (default: the preset's)


def check_resumable(saved: dict, cfg: TrainConfig, ckpt: Path) -> None:
    """Refuse (one-line ValueError naming the field, old and new value) to resume the run whose
    checkpoint ``ckpt`` was written with the config ``saved`` under a config that would change
    its model or its data: the model and loss (loss, loss_params, masks, preset, ...), the
    training data and sampling (train, images, counts file, sampler, seed, batch size, ...) and
    the optimisation (lr, warm-up, ...). ``epochs`` may be raised to train longer (the step
    decay then follows the new count); the fields of ``RESUME_FREE`` may change. Paths are
    compared resolved; the counts file as used (``counts_from``, else the training file).
    Fields a checkpoint of an older version lacks count as their defaults.
    """
    try:
        old = TrainConfig(**saved)
    except TypeError as exc:
        raise ValueError(f"{ckpt}: not a checkpoint of this trainer's runs ({exc})") from None
    for f in fields(TrainConfig):
        if f.name in RESUME_FREE:
            continue
        was, now = _resume_value(old, f.name), _resume_value(cfg, f.name)
        if f.name == "epochs" and now >= was:
            continue
        if was != now:
            hint = "epochs can only be raised; " if f.name == "epochs" else ""
            raise ValueError(f"{ckpt.parent}: cannot resume: {f.name} was {_shown(old, f.name)!r} in the run there, "
                             f"is {_shown(cfg, f.name)!r} now ({hint}resume with the run's settings, or choose "
                             f"another --out)")


def _shown(cfg: TrainConfig, name: str):
    """A field's value as the run uses it: the counts file, the preset's backbone and sizes, the
    cosine classifier's scale."""
    if name == "counts_from":
        return cfg.counts_from or cfg.train
    if name == "classifier_tau":
        return check_classifier(cfg.classifier, cfg.classifier_tau)
    return getattr(run_preset(cfg) if name in PRESET_FIELDS else cfg, name)


def _resume_value(cfg: TrainConfig, name: str):
    """A field's value as compared for resuming: paths resolved, tuples as lists (as in json)."""
    value = _shown(cfg, name)
    if name in PATH_FIELDS and value is not None:
        return Path(value).resolve()
    return json.loads(json.dumps(value))
