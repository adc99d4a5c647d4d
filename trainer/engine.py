"""The training loop: flat and readable top to bottom, as torchvision's references/detection.

``train(config)`` is a sequence of steps, each a function below it in this order: prepare the
run folder, read the training file and its class counts, write the run's ``config.json``, build
the data (dataset, sampler: batches grouped by aspect ratio, as torchvision's references do:
less padding), the model and the optimiser, restore a checkpoint when resuming, then per
epoch :func:`train_one_epoch` (progress bar: loss, images/s) and :func:`save_epoch` (a
checkpoint, written atomically: an interrupted run resumes from the last complete epoch with
``resume=True``; without it a run folder holding a checkpoint is refused, see
:func:`trainer.config.check_resumable`; and one line of ``metrics.jsonl``), and at the end
the evaluation on the validation set and the loss / AP curves (:func:`write_metrics`).
Everything random is seeded from ``config.seed``.

Optimisation defaults are the stable ones measured on this project's CPU machine: SGD with
momentum 0.9, weight decay 1e-4, lr 0.005 for batch 2 (0.02 diverged within 100 iterations),
a linear warm-up over the first iterations, a step decay (x0.1) at 2/3 and 8/9 of the
epochs, and gradient-norm clipping at 10.

``stage2="crt"`` with ``init_from=RUN_DIR`` is the second stage of decoupled training
(:mod:`trainer.decouple`): the stage-1 run's weights, a re-initialised classifier trained
alone, class-balanced sampling. ``stage2="bags"`` (with ``loss="bags"``) is BAGS' published
stage 2: the stage-1 run's weights, the grouped classifier new and trained alone.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from ltaug import Dataset, load_dataset
from ltaug.io.jsonio import atomic_path, write_bytes_atomic, write_json_atomic

from .checkpoint import read_torch_file
from .config import TrainConfig, build_run_model, check_resumable, run_preset
from .counts import counts_source, load_counts
from .data import DetectionDataset, batch_to, collate_fn, worker_init_fn
from .decouple import load_stage1, prepare_bags, prepare_crt
from .inference import evaluate_model
from .samplers import SAMPLERS, AspectRatioBatchSampler, EpochSampler

CHECKPOINT = "checkpoint.pt"
HISTORY = "metrics.jsonl"


@dataclass
class Optimisation:
    """What a training step updates besides the model."""

    params: list                                   # the trainable parameters (cRT: the classifier's)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR   # stepped every iteration (:func:`lr_factor`)
    scaler: torch.amp.GradScaler                   # mixed precision's loss scale; a no-op without it
    amp: bool                                      # mixed precision (CUDA only)


def train(cfg: TrainConfig, *, progress: bool = True) -> dict:
    """Train, checkpoint each epoch, evaluate at the end (and every ``eval_every`` epochs: their
    AP goes into that epoch's line of metrics.jsonl); returns the final metrics ({} on ranks
    other than 0 under torchrun)."""
    cfg.validate()
    rank, world = _init_distributed(cfg)
    main = rank == 0
    out = prepare_run_folder(cfg)
    cfg, ds, freq, counts_note = load_training_file(cfg)
    state = load_resumable(out / CHECKPOINT, cfg)
    if main:
        print(counts_note, file=sys.stderr)
        write_config(out, cfg, counts_note, world)
    dataset, val, sampler, loader = build_data(cfg, ds, main=main)
    run_eval = partial(evaluate_model, val_path=val, val_images=cfg.val_images or cfg.images, train_ds=freq,
                       label_to_category=dataset.label_to_category_id, device=cfg.device,
                       progress=progress) if val is not None else None
    model, params = build_training_model(cfg, freq)
    equivalence = loss_equivalence(model)
    if main and equivalence:
        print(f"note: {equivalence}", file=sys.stderr)
    iters_per_epoch = len(loader) if cfg.max_iters_per_epoch is None else min(len(loader), cfg.max_iters_per_epoch)
    opt = build_optimisation(cfg, params, iters_per_epoch)
    start_epoch = 0 if state is None else restore(state, model, opt)
    del state  # the model and optimiser hold copies now
    net = wrap_distributed(model, cfg, world)
    if main:
        keep_history(out / HISTORY, start_epoch)

    final_eval = None  # the evaluation after the last epoch, when eval_every made it already
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        record, seen_ids = train_one_epoch(net, loader, opt, cfg, epoch, iters_per_epoch, world=world,
                                           progress=progress)
        if main and cfg.eval_every and (epoch + 1) % cfg.eval_every == 0:
            result = run_eval(model)
            record["eval"] = ap_summary(result)
            final_eval = result if epoch + 1 == cfg.epochs else None
        if cfg.record_samples:  # which image ids each rank trained on (for tests and audits)
            write_json_atomic(out / f"samples_epoch{epoch + 1}_rank{rank}.json", seen_ids)
        if main:
            save_epoch(out, cfg, epoch, model, opt, record)
        if world > 1:
            torch.distributed.barrier()

    if not main:
        torch.distributed.barrier()  # wait for rank 0's evaluation, then leave together
        torch.distributed.destroy_process_group()
        return {}
    metrics = write_metrics(out, cfg, (final_eval or run_eval(model)) if cfg.val else None)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return metrics


# -- the steps of train(), in order -------------------------------------------------------------

def prepare_run_folder(cfg: TrainConfig) -> Path:
    """The run folder (made), with the global seed and thread count set; a folder holding a
    checkpoint is refused unless the run resumes."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if (out / CHECKPOINT).exists() and not cfg.resume:
        raise ValueError(f"{out} holds a checkpoint of an earlier run: pass --resume to continue it, "
                         f"or choose another --out")
    return out


def load_training_file(cfg: TrainConfig) -> tuple[TrainConfig, Dataset, Dataset, str]:
    """(config with its class-frequency file filled in, training file, class-frequency file, a note
    saying which file that is): the original of an ltaug output, saved with the run."""
    ds = load_dataset(cfg.train)
    counts_from, counts_note = counts_source(ds, cfg.counts_from)
    cfg = replace(cfg, counts_from=counts_from)
    return cfg, ds, load_counts(cfg.counts_from, ds), counts_note


def load_resumable(ckpt: Path, cfg: TrainConfig) -> dict | None:
    """The checkpoint to continue, after :func:`~trainer.config.check_resumable`; None without one."""
    if not ckpt.exists():
        return None
    state = read_torch_file(ckpt, map_location=cfg.device, what="checkpoint")
    check_resumable(state["config"], cfg, ckpt)
    return state


def write_config(out: Path, cfg: TrainConfig, counts_note: str, world: int) -> None:
    write_json_atomic(out / "config.json", {**asdict(cfg), "preset_settings": run_preset(cfg).as_dict(),
                                            "world_size": world,
                                            "class_counts": {"file": cfg.counts_from or cfg.train,
                                                             "note": counts_note}}, indent=True)


def build_data(cfg: TrainConfig, ds: Dataset, *, main: bool) -> tuple[DetectionDataset, Dataset | None,
                                                                      EpochSampler, torch.utils.data.DataLoader]:
    """(training dataset, validation file where this rank evaluates (rank 0) else None, sampler,
    loader of batches grouped by aspect ratio)."""
    preset = run_preset(cfg)
    dataset = DetectionDataset(ds, cfg.images, masks=cfg.masks, train=True,
                               min_size=preset.min_size, max_size=preset.max_size)
    val = load_dataset(cfg.val) if cfg.val and main else None
    sampler = make_sampler(cfg, dataset, ds)
    batches = AspectRatioBatchSampler.for_index(sampler, ds.index, cfg.batch_size)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=cfg.workers, collate_fn=collate_fn,
        persistent_workers=cfg.workers > 0, worker_init_fn=worker_init_fn, generator=torch.Generator().manual_seed(cfg.seed))
    return dataset, val, sampler, loader


def make_sampler(cfg: TrainConfig, dataset: DetectionDataset, ds: Dataset) -> EpochSampler:
    """The sampler ``cfg.sampler`` (registered in :data:`trainer.samplers.SAMPLERS`)."""
    return SAMPLERS[cfg.sampler](cfg, dataset, ds)


def build_training_model(cfg: TrainConfig, freq: Dataset) -> tuple[torch.nn.Module, list]:
    """(model on its device, the parameters to train): all trainable ones, or for stage 2 (cRT,
    BAGS) the stage-1 run's weights with a new classifier, the only part trained."""
    model = build_run_model(cfg, freq).to(cfg.device)
    if cfg.stage2 in ("crt", "bags"):
        load_stage1(model, cfg.init_from)
        return model, (prepare_crt if cfg.stage2 == "crt" else prepare_bags)(model)
    return model, [p for p in model.parameters() if p.requires_grad]


def loss_equivalence(model: torch.nn.Module) -> str | None:
    """The box head's loss saying that, with its parameters, on this training file, it is exactly
    a plainer loss (EQL with no rare class is BCE, ...); None otherwise."""
    loss = getattr(getattr(model, "roi_heads", None), "cls_loss", None)
    return loss.equivalence() if loss is not None else None


def build_optimisation(cfg: TrainConfig, params: list, iters_per_epoch: int) -> Optimisation:
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(
        it, warmup_iters=cfg.warmup_iters, iters_per_epoch=iters_per_epoch, epochs=cfg.epochs))
    amp = cfg.amp and cfg.device.startswith("cuda")
    return Optimisation(params, optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=amp), amp)


def lr_factor(it: int, *, warmup_iters: int, iters_per_epoch: int, epochs: int) -> float:
    """Linear warm-up from 0.001 to 1 over ``warmup_iters``, then x0.1 at 2/3 and 8/9 of training."""
    warm = 1.0 if it >= warmup_iters else 0.001 + (1 - 0.001) * it / max(warmup_iters, 1)
    epoch = it / max(iters_per_epoch, 1)
    steps = sum(epoch >= m for m in (epochs * 2 / 3, epochs * 8 / 9))
    return warm * 0.1 ** steps


def restore(state: dict, model: torch.nn.Module, opt: Optimisation) -> int:
    """Load a checkpoint's model, optimiser, schedule and loss scale; returns the epoch to start at."""
    model.load_state_dict(state["model"])
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    opt.scaler.load_state_dict(state["scaler"])
    return state["epoch"] + 1


def wrap_distributed(model: torch.nn.Module, cfg: TrainConfig, world: int) -> torch.nn.Module:
    """The module to train: under torchrun ``model`` in DistributedDataParallel (gradients
    all-reduced; the samplers split each epoch across ranks), else ``model`` itself."""
    if world > 1:
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[torch.cuda.current_device()] if cfg.device.startswith("cuda") else None)
    return model


def keep_history(path: Path, start_epoch: int) -> None:
    """Keep the lines of metrics.jsonl of the epochs the checkpoint holds (none without one)."""
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["epoch"] <= start_epoch]
        write_bytes_atomic(path, "".join(line + "\n" for line in kept).encode())


def train_one_epoch(net: torch.nn.Module, loader, opt: Optimisation, cfg: TrainConfig, epoch: int,
                    iters_per_epoch: int, *, world: int, progress: bool) -> tuple[dict, list[int]]:
    """One epoch (at most ``iters_per_epoch`` batches); returns its line of metrics.jsonl and the
    image ids this rank trained on. A loss that is not finite stops the run."""
    net.train()
    seen_ids = []
    t0, seen, total, skipped = time.perf_counter(), 0, 0.0, 0
    bar = tqdm(loader, total=iters_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
               unit="it", dynamic_ncols=True)
    for it, (images, targets) in enumerate(bar):
        if it >= iters_per_epoch:
            break
        images, targets = batch_to(images, targets, cfg.device)
        seen_ids += [int(t["image_id"]) for t in targets]
        with torch.autocast("cuda", enabled=opt.amp):
            losses = net(images, targets)
            loss = sum(losses.values())
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, iteration {it}: "
                                     f"lower --lr (now {cfg.lr}) or lengthen the warm-up")
        opt.optimizer.zero_grad(set_to_none=True)
        opt.scaler.scale(loss).backward()
        opt.scaler.unscale_(opt.optimizer)
        torch.nn.utils.clip_grad_norm_(opt.params, cfg.clip_grad_norm)
        opt.scaler.step(opt.optimizer)
        scale = opt.scaler.get_scale()  # 1.0 without mixed precision
        opt.scaler.update()  # with it: the step was skipped (and the scale halved) if a gradient was inf/NaN
        skipped += opt.scaler.get_scale() < scale
        opt.scheduler.step()
        seen += len(images)
        total += loss.item()
        bar.set_postfix(loss=f"{total / (it + 1):.3f}", img_s=f"{seen / (time.perf_counter() - t0):.2f}",
                        lr=f"{opt.optimizer.param_groups[0]['lr']:.4g}")
    record = {"epoch": epoch + 1, "loss": total / max(iters_per_epoch, 1),
              "images_per_s": seen * world / (time.perf_counter() - t0), "seconds": time.perf_counter() - t0}
    if opt.amp:  # a run whose steps are all skipped does not learn: say so in its history
        record.update(amp_scale=opt.scaler.get_scale(), amp_skipped_steps=skipped)
    return record, seen_ids


def save_epoch(out: Path, cfg: TrainConfig, epoch: int, model: torch.nn.Module, opt: Optimisation,
               record: dict) -> None:
    """The epoch's checkpoint (atomically: a run stopped later resumes here) and its line of metrics.jsonl."""
    with atomic_path(out / CHECKPOINT) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.optimizer.state_dict(),
                    "scheduler": opt.scheduler.state_dict(), "scaler": opt.scaler.state_dict(),
                    "epoch": epoch, "config": asdict(cfg)}, tmp)
    with open(out / HISTORY, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def write_metrics(out: Path, cfg: TrainConfig, evaluation: dict | None) -> dict:
    """metrics.json (every epoch's line of metrics.jsonl, the final evaluation) and curves.png."""
    history = out / HISTORY
    metrics = {"history": [json.loads(line) for line in history.read_text().splitlines()] if
               history.exists() else []}
    if evaluation is not None:
        metrics["eval"] = evaluation
    write_json_atomic(out / "metrics.json", metrics, indent=True)
    if metrics["history"]:
        plot_curves(metrics, out / "curves.png", title=f"{Path(cfg.train).name}: loss {cfg.loss}, sampler {cfg.sampler}")
    return metrics


# -- evaluation summaries, curves, torchrun -----------------------------------------------------

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
    from ltaug.stats.plotting import new_figure, save_figure

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
        def fmt(v):
            return "-" if v is None else f"{100 * v:.1f}"

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
    -m ltaug.cli.main train ...`` on each machine, with the data at the same path on both.
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
