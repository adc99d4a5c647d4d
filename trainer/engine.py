"""The training loop: flat and readable top to bottom, as torchvision's references/detection.

``train(config)`` builds the data, the sampler (batches grouped by aspect ratio, as
torchvision's references do: less padding), the model and the optimiser, runs the epochs
with a progress bar (loss, images/s), writes a checkpoint after every epoch (atomically:
an interrupted run resumes from the last complete epoch with ``resume=True``; without it a
run folder holding a checkpoint is refused, see :func:`check_resumable`), appends one
line per epoch to ``metrics.jsonl``, evaluates on the validation set at the end, and draws
the loss / AP curves. Everything random is seeded from ``config.seed``.

Optimisation defaults are the stable ones measured on this project's CPU machine: SGD with
momentum 0.9, weight decay 1e-4, lr 0.005 for batch 2 (0.02 diverged within 100 iterations),
a linear warm-up over the first iterations, a step decay (x0.1) at 2/3 and 8/9 of the
epochs, and gradient-norm clipping at 10.

``stage2="crt"`` with ``init_from=RUN_DIR`` is the second stage of decoupled training
(:mod:`trainer.decouple`): the stage-1 run's weights, a re-initialised classifier trained
alone, class-balanced sampling.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path

import torch

from ltaug import load_dataset
from ltaug.jsonio import atomic_path, write_bytes_atomic, write_json_atomic

from .counts import counts_source, load_counts
from .model import ANCHOR_SIZES, BACKBONES, PRESETS, Preset, build_model, check_anchor_sizes, default_preset

SAMPLERS = ("plain", "rfs", "cas", "repeat-factors")
STAGE2 = ("crt",)


@dataclass
class TrainConfig:
    train: str
    images: str
    out: str
    val: str | None = None
    val_images: str | None = None
    loss: str = "ce"
    loss_params: dict = field(default_factory=dict)
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
    stage2: str | None = None               # "crt": decoupled classifier re-training from init_from
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
        if self.stage2 is not None and self.stage2 not in STAGE2:
            raise ValueError(f"stage2 must be one of {', '.join(STAGE2)}, got {self.stage2!r}")
        if (self.stage2 is None) != (self.init_from is None):
            raise ValueError("stage 2 (--stage2) and the stage-1 run it starts from (--from) go together")
        if self.stage2 == "crt" and self.sampler == "plain":
            raise ValueError("cRT re-trains the classifier with class-balanced sampling: use sampler cas, "
                             "rfs or repeat-factors, not plain")

    def _validate_model(self) -> None:
        """Backbone, image sizes and anchor sizes, as they combine with the preset."""
        if self.backbone is not None and self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        for name in ("min_size", "max_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        preset = run_preset(self)
        if preset.min_size > preset.max_size:
            raise ValueError(f"min_size {preset.min_size} is above max_size {preset.max_size}")
        check_anchor_sizes(preset.backbone, self.anchor_sizes)


def run_preset(cfg: TrainConfig) -> Preset:
    """The run's preset with its backbone and image sizes overridden where the config sets them."""
    preset = PRESETS[cfg.preset]
    return replace(preset, backbone=cfg.backbone or preset.backbone, min_size=cfg.min_size or preset.min_size,
                   max_size=cfg.max_size or preset.max_size)


def lr_factor(it: int, *, warmup_iters: int, iters_per_epoch: int, epochs: int) -> float:
    """Linear warm-up from 0.001 to 1 over ``warmup_iters``, then x0.1 at 2/3 and 8/9 of training."""
    warm = 1.0 if it >= warmup_iters else 0.001 + (1 - 0.001) * it / max(warmup_iters, 1)
    epoch = it / max(iters_per_epoch, 1)
    steps = sum(epoch >= m for m in (epochs * 2 / 3, epochs * 8 / 9))
    return warm * 0.1 ** steps


def _make_sampler(cfg: TrainConfig, dataset, ds):
    from .samplers import ClassAwareSampler, RepeatFactorSampler, TrainingSampler

    if cfg.sampler == "rfs":
        return RepeatFactorSampler.from_dataset(ds, cfg.rfs_threshold, seed=cfg.seed)
    if cfg.sampler == "repeat-factors":
        return RepeatFactorSampler.from_file(cfg.repeat_factors, ds, seed=cfg.seed)
    if cfg.sampler == "cas":
        return ClassAwareSampler(ds, seed=cfg.seed)
    return TrainingSampler(dataset, seed=cfg.seed)


def build_run_model(cfg: TrainConfig, freq):
    """The configured detector; ``freq`` (an ltaug Dataset) gives the classes and their counts."""
    ix = freq.index
    return build_model(num_classes=ix.num_categories, preset=run_preset(cfg), masks=cfg.masks, loss=cfg.loss,
                       loss_params=cfg.loss_params, class_instance_counts=ix.instance_counts.tolist(),
                       class_image_counts=ix.image_counts.tolist(), num_images=ix.num_images,
                       backbone_weights=cfg.backbone_weights, anchor_sizes=cfg.anchor_sizes)


# settings a resumed run may change: where it validates, how it runs, the backbone's initial
# weights (the checkpoint replaces them), the iteration cap of smoke tests and quick looks;
# epochs may be raised; every other field must agree
RESUME_FREE = ("val", "val_images", "out", "workers", "threads", "record_samples", "device", "backbone_weights",
               "resume", "eval_every", "max_iters_per_epoch")
PATH_FIELDS = ("train", "images", "repeat_factors", "counts_from", "init_from")
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
    """A field's value as the run uses it: the counts file, the preset's backbone and sizes."""
    if name == "counts_from":
        return cfg.counts_from or cfg.train
    return getattr(run_preset(cfg) if name in PRESET_FIELDS else cfg, name)


def _resume_value(cfg: TrainConfig, name: str):
    """A field's value as compared for resuming: paths resolved, tuples as lists (as in json)."""
    value = _shown(cfg, name)
    if name in PATH_FIELDS and value is not None:
        return Path(value).resolve()
    return json.loads(json.dumps(value))


def _load_resumable(ckpt: Path, cfg: TrainConfig) -> dict:
    """The checkpoint to continue, after :func:`check_resumable`."""
    state = torch.load(ckpt, map_location=cfg.device, weights_only=False)
    check_resumable(state["config"], cfg, ckpt)
    return state


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train(cfg: TrainConfig, *, progress: bool = True) -> dict:
    """Train, checkpoint each epoch, evaluate at the end (and every ``eval_every`` epochs: their
    AP goes into that epoch's line of metrics.jsonl); returns the final metrics."""
    from tqdm import tqdm

    from .data import DetectionDataset, batch_to, collate_fn, worker_init_fn
    from .decouple import load_stage1, prepare_crt
    from .inference import evaluate_model
    from .samplers import AspectRatioBatchSampler

    cfg.validate()
    rank, world = _init_distributed(cfg)
    main = rank == 0
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    preset = run_preset(cfg)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not cfg.resume:
        raise ValueError(f"{out} holds a checkpoint of an earlier run: pass --resume to continue it, "
                         f"or choose another --out")
    ds = load_dataset(cfg.train)
    counts_from, counts_note = counts_source(ds, cfg.counts_from)
    cfg = replace(cfg, counts_from=counts_from)  # the original of an ltaug output, saved with the run
    freq = load_counts(cfg.counts_from, ds)
    state = _load_resumable(ckpt_path, cfg) if ckpt_path.exists() else None
    if main:
        print(counts_note, file=sys.stderr)
        write_json_atomic(out / "config.json", {**asdict(cfg), "preset_settings": preset.as_dict(),
                                                "world_size": world,
                                                "class_counts": {"file": cfg.counts_from or cfg.train,
                                                                 "note": counts_note}}, indent=True)
    dataset = DetectionDataset(ds, cfg.images, masks=cfg.masks, train=True,
                               min_size=preset.min_size, max_size=preset.max_size)
    run_eval = partial(evaluate_model, val_path=load_dataset(cfg.val), val_images=cfg.val_images or cfg.images,
                       train_ds=freq, label_to_category=dataset.label_to_category_id, device=cfg.device,
                       progress=progress) if cfg.val and main else None
    sampler = _make_sampler(cfg, dataset, ds)
    batches = AspectRatioBatchSampler.for_index(sampler, ds.index, cfg.batch_size)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=cfg.workers, collate_fn=collate_fn,
        persistent_workers=cfg.workers > 0, worker_init_fn=worker_init_fn, generator=torch.Generator().manual_seed(cfg.seed))
    model = build_run_model(cfg, freq).to(cfg.device)
    if cfg.stage2 == "crt":
        load_stage1(model, cfg.init_from)
        params = prepare_crt(model)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    iters_per_epoch = len(loader) if cfg.max_iters_per_epoch is None else min(len(loader), cfg.max_iters_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(
        it, warmup_iters=cfg.warmup_iters, iters_per_epoch=iters_per_epoch, epochs=cfg.epochs))
    use_amp = cfg.amp and cfg.device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch = state["epoch"] + 1
    del state  # the model and optimiser hold copies now
    net = model
    if world > 1:  # torchrun: gradients all-reduced; the samplers split each epoch across ranks
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[torch.cuda.current_device()] if cfg.device.startswith("cuda") else None)

    history_path = out / "metrics.jsonl"
    if main and history_path.exists():  # keep the epochs the checkpoint holds (none without one)
        kept = [line for line in history_path.read_text().splitlines() if json.loads(line)["epoch"] <= start_epoch]
        write_bytes_atomic(history_path, "".join(line + "\n" for line in kept).encode())
    final_eval = None  # the evaluation after the last epoch, when eval_every made it already
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        seen_ids = []
        sampler.set_epoch(epoch)
        t0, seen, total, skipped = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(loader, total=iters_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   unit="it", dynamic_ncols=True)
        for it, (images, targets) in enumerate(bar):
            if it >= iters_per_epoch:
                break
            images, targets = batch_to(images, targets, cfg.device)
            seen_ids += [int(t["image_id"]) for t in targets]
            with torch.autocast("cuda", enabled=use_amp):
                losses = net(images, targets)
                loss = sum(losses.values())
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, iteration {it}: "
                                         f"lower --lr (now {cfg.lr}) or lengthen the warm-up")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
            scaler.step(optimizer)
            scale = scaler.get_scale()  # 1.0 without mixed precision
            scaler.update()  # with it: the step was skipped (and the scale halved) if a gradient was inf/NaN
            skipped += scaler.get_scale() < scale
            scheduler.step()
            seen += len(images)
            total += loss.item()
            bar.set_postfix(loss=f"{total / (it + 1):.3f}", img_s=f"{seen / (time.perf_counter() - t0):.2f}",
                            lr=f"{optimizer.param_groups[0]['lr']:.4g}")
        record = {"epoch": epoch + 1, "loss": total / max(iters_per_epoch, 1),
                  "images_per_s": seen * world / (time.perf_counter() - t0), "seconds": time.perf_counter() - t0}
        if use_amp:  # a run whose steps are all skipped does not learn: say so in its history
            record.update(amp_scale=scaler.get_scale(), amp_skipped_steps=skipped)
        if main and cfg.eval_every and (epoch + 1) % cfg.eval_every == 0:
            result = run_eval(model)
            record["eval"] = ap_summary(result)
            final_eval = result if epoch + 1 == cfg.epochs else None
        if cfg.record_samples:  # which image ids each rank trained on (for tests and audits)
            write_json_atomic(out / f"samples_epoch{epoch + 1}_rank{rank}.json", seen_ids)
        if main:
            _save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                                         "epoch": epoch, "config": asdict(cfg)})
            with open(history_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        if world > 1:
            torch.distributed.barrier()

    if not main:
        torch.distributed.barrier()  # wait for rank 0's evaluation, then leave together
        torch.distributed.destroy_process_group()
        return {}
    metrics = {"history": [json.loads(line) for line in history_path.read_text().splitlines()] if
               history_path.exists() else []}
    if cfg.val:
        metrics["eval"] = final_eval or run_eval(model)
    write_json_atomic(out / "metrics.json", metrics, indent=True)
    if metrics["history"]:
        plot_curves(metrics, out / "curves.png", title=f"{Path(cfg.train).name}: loss {cfg.loss}, sampler {cfg.sampler}")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return metrics


AP_SUMMARY = ("AP", "AP50", "AP75", "APr", "APc", "APf")


def ap_summary(result: dict) -> dict:
    """The headline numbers of an evaluation per iou type, for an epoch's line of metrics.jsonl."""
    return {iou: {k: result[iou][k] for k in AP_SUMMARY} for iou in ("bbox", "segm") if iou in result}


def ap_points(metrics: dict) -> list[tuple[int, dict]]:
    """(epoch, bbox numbers) of the epochs evaluated during training, and of the final evaluation."""
    hist = metrics["history"]
    points = [(h["epoch"], h["eval"]["bbox"]) for h in hist if "bbox" in h.get("eval", {})]
    final = metrics.get("eval", {}).get("bbox")
    if final and hist and (not points or points[-1][0] != hist[-1]["epoch"]):
        points.append((hist[-1]["epoch"], final))
    return points


def plot_curves(metrics: dict, path, *, title: str):
    """Training loss and images/s per epoch; the final AP / APr / APc / APf in the legend box;
    below, when the run evaluated during training (``eval_every``), AP against epoch."""
    from ltaug.plotting import new_figure, save_figure

    hist = metrics["history"]
    epochs = [h["epoch"] for h in hist]
    points = ap_points(metrics)
    during = any("eval" in h for h in hist)
    fig = new_figure(path, (8.0, 7.5) if during else (8.0, 4.5))
    ax = fig.add_subplot(2, 1, 1) if during else fig.add_subplot()
    ax.plot(epochs, [h["loss"] for h in hist], marker="o", color="#1f77b4", label="training loss")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (sum of the four Faster R-CNN terms)")
    ax.grid(alpha=0.3)
    speed = ax.twinx()
    speed.plot(epochs, [h["images_per_s"] for h in hist], color="#7f7f7f", linestyle="--", label="images/s")
    speed.set_ylabel("images/s")
    box = metrics.get("eval", {}).get("bbox")
    if box:
        fmt = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
        ax.text(0.98, 0.95, f"val bbox AP {fmt(box['AP'])}  AP50 {fmt(box['AP50'])}\n"
                            f"APr {fmt(box['APr'])}  APc {fmt(box['APc'])}  APf {fmt(box['APf'])}",
                transform=ax.transAxes, ha="right", va="top", fontsize=9,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "#cccccc"})
    ax.legend(handles=ax.get_lines() + speed.get_lines(), loc="lower left", frameon=False, fontsize=9)
    ax.set_title(title, fontsize=10)
    if during:
        _plot_ap(fig.add_subplot(2, 1, 2, sharex=ax), points)
    return save_figure(fig, path)


def _plot_ap(ax, points: list[tuple[int, dict]]) -> None:
    """Validation bbox AP, APr, APc, APf (in %) against epoch; undefined values left out."""
    for key, color in (("AP", "#000000"), ("APr", "#d62728"), ("APc", "#ff7f0e"), ("APf", "#2ca02c")):
        xy = [(e, 100 * box[key]) for e, box in points if box[key] is not None]
        ax.plot([e for e, _ in xy], [v for _, v in xy], marker="o", color=color, label=f"val bbox {key}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("AP (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", frameon=False, fontsize=9)


def _init_distributed(cfg: TrainConfig) -> tuple[int, int]:
    """(rank, world size); under torchrun (WORLD_SIZE > 1) joins the process group.

    gloo on CPU, nccl on CUDA (each rank on its LOCAL_RANK device). A two-machine run:
    ``torchrun --nnodes 2 --node-rank {0,1} --nproc-per-node G --master-addr HOST0 --master-port 29500
    -m cli.main train ...`` on each machine, with the data at the same path on both.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not torch.distributed.is_initialized():
        cuda = cfg.device.startswith("cuda")
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            cfg.device = f"cuda:{local}"
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return torch.distributed.get_rank(), torch.distributed.get_world_size()
