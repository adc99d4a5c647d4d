"""Predictions of a trained detector in COCO results format, its evaluation, and loading a saved run.

* :func:`predict`: one forward pass per image (torchvision resizes internally and returns
  boxes, and for Mask R-CNN per-box mask probabilities, in the input image's pixels). Each
  detection becomes a COCO result ``{"image_id", "category_id", "bbox": [x, y, w, h],
  "score"}``, plus ``"segmentation"`` (compressed RLE of the mask thresholded at 0.5, as
  torchvision's references do) when the model predicts masks.
* :func:`evaluate_model`: predict on a validation file and score it with
  :func:`trainer.evaluate.evaluate`, r/c/f bins from the training file (LVIS practice);
  segm too when the model has masks (skipped, with a note, where the ground truth has none).
* :func:`load_run`: the model of a run folder (or of a ``checkpoint.pt``) rebuilt from its
  saved config, with the label -> category map and the class-frequency file it was trained with.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ltaug import Dataset, load_dataset

from .checkpoint import read_torch_file

MASK_THRESHOLD = 0.5


def detections_to_results(out: dict, image_id: int, label_to_category) -> list[dict]:
    """torchvision's output for one image -> COCO result dicts (``segmentation`` if it has masks)."""
    from ltaug.io.geometry import rle_to_json
    from ltaug.pixels.masks import rle_from_mask

    boxes, scores, labels = out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist()
    masks = (out["masks"][:, 0] > MASK_THRESHOLD).to(torch.uint8).cpu().numpy() if "masks" in out else None
    results = []
    for i, ((x0, y0, x1, y1), score, label) in enumerate(zip(boxes, scores, labels)):
        r = {"image_id": image_id, "category_id": int(label_to_category[label]),
             "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)}
        if masks is not None:
            r["segmentation"] = rle_to_json(rle_from_mask(masks[i]))
        results.append(r)
    return results


@torch.no_grad()
def predict(model, dataset, *, device: str, label_to_category, progress: bool = True) -> list[dict]:
    """COCO result dicts for every image of ``dataset`` (a DetectionDataset without resize).

    ``label_to_category``: the training set's label -> category id map.
    """
    from tqdm import tqdm

    model.eval()
    results = []
    for i in tqdm(range(len(dataset)), desc="predict", disable=not progress, unit="img"):
        image, target = dataset[i]
        out = model([image.to(device)])[0]
        results += detections_to_results(out, int(target["image_id"]), label_to_category)
    return results


def iou_types_for(model) -> tuple[str, ...]:
    return ("bbox", "segm") if model.roi_heads.has_mask() else ("bbox",)


def bins_of(train_ds: Dataset, *, rare_max: int | None = None, common_max: int | None = None) -> tuple[dict, str]:
    """(category id -> r/c/f, how) from the training file: its stored LVIS bins unless thresholds
    are given, else its image counts (thresholds default to LVIS' 10 and 100)."""
    from ltaug.stats.frequency import COMMON_MAX, RARE_MAX, dataset_bins, uses_stored_frequency

    bins = dataset_bins(train_ds, rare_max=rare_max, common_max=common_max)
    if uses_stored_frequency(train_ds, rare_max, common_max):
        how = "training file's stored LVIS frequency"
    else:
        how = (f"training file image counts: r <= {RARE_MAX if rare_max is None else rare_max} < c <= "
               f"{COMMON_MAX if common_max is None else common_max} < f")
    return dict(zip(train_ds.index.category_ids.tolist(), bins.tolist())), how


def evaluate_with_bins(val: Dataset, detections, *, iou_types, train_ds: Dataset | None, rare_max=None,
                       common_max=None) -> dict:
    """:func:`trainer.evaluate.evaluate` with r/c/f bins from ``train_ds`` (None: from ``val`` itself)."""
    from ltaug.stats.frequency import COMMON_MAX, RARE_MAX

    from .evaluate import evaluate

    if train_ds is None:
        return evaluate(val, detections, iou_types=iou_types, rare_max=RARE_MAX if rare_max is None else rare_max,
                        common_max=COMMON_MAX if common_max is None else common_max,
                        use_stored_bins=rare_max is None and common_max is None)
    bins, how = bins_of(train_ds, rare_max=rare_max, common_max=common_max)
    missing = sorted(set(val.index.category_ids.tolist()) - set(bins))
    if missing:
        raise ValueError(f"category id {missing[0]} of the ground truth is not in the training file")
    result = evaluate(val, detections, iou_types=iou_types, bins={c: bins[c] for c in val.index.category_ids.tolist()})
    result["bins_source"] = how
    return result


def val_dataset(val: Dataset, images):
    """The validation images at full size (the model resizes them itself)."""
    from .data import DetectionDataset

    return DetectionDataset(val, images, masks=False, train=False, min_size=None, max_size=None)


def evaluate_model(model, val_path, val_images, *, train_ds, label_to_category, device, progress=True,
                   rare_max: int | None = None, common_max: int | None = None, detections_out=None) -> dict:
    """bbox (and segm, for Mask R-CNN) AP of ``model`` on a validation file; r/c/f bins from ``train_ds``.

    ``detections_out``: also write the predictions there (a COCO results json).
    """
    from ltaug.io.jsonio import write_json_atomic

    val = val_path if isinstance(val_path, Dataset) else load_dataset(val_path)
    dets = predict(model, val_dataset(val, val_images), device=device, label_to_category=label_to_category,
                   progress=progress)
    if detections_out is not None:
        write_json_atomic(detections_out, dets)
    return evaluate_with_bins(val, dets, iou_types=iou_types_for(model), train_ds=train_ds, rare_max=rare_max,
                              common_max=common_max)


@dataclass
class Run:
    """A trained model with what is needed to predict and evaluate with it."""

    model: torch.nn.Module
    config: dict              # the run's TrainConfig as saved
    train_ds: Dataset         # the class-frequency file (counts_from, or the training file): bins
    label_to_category: np.ndarray
    epoch: int                # completed epochs


def load_run(path, *, train: str | None = None, device: str = "cpu") -> Run:
    """The model of a run folder (its ``checkpoint.pt``) or of a checkpoint file.

    The model is rebuilt from the config saved in the checkpoint; the run's training file
    (``train`` overrides the saved path, e.g. after moving the data) gives the label ->
    category map, and the class-frequency file (``counts_from`` or the training file) the
    counts that count-based losses are built with. Raises ValueError with one line for a
    missing or foreign checkpoint or file.
    """
    from .config import TrainConfig, build_run_model
    from .counts import load_counts

    path = Path(path)
    ckpt = path / "checkpoint.pt" if path.is_dir() else path
    if not ckpt.is_file():
        raise ValueError(f"{path}: no checkpoint.pt (not a run folder of `ltaug train`, or no epoch finished yet)")
    state = read_torch_file(ckpt, map_location=device, what="checkpoint")
    if not isinstance(state, dict) or not {"model", "config", "epoch"} <= set(state):
        raise ValueError(f"{ckpt}: not a checkpoint written by `ltaug train`")
    # concurrence rates only shape the training loss (postprocess is a plain softmax): not read again
    cfg = TrainConfig(**{**state["config"], "device": device, "backbone_weights": None, "concurrence": None})
    if train is not None:
        cfg.train = train
    for name in ("train", "counts_from"):
        value = getattr(cfg, name)
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{ckpt}: the run's {name.replace('_', '-')} file {value} is not there "
                             f"(pass --train with the training annotation file)")
    train_ds = load_dataset(cfg.train)
    freq = load_counts(cfg.counts_from, train_ds)
    model = build_run_model(cfg, freq).to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise ValueError(f"{ckpt}: the checkpoint does not fit the model its config describes "
                         f"({freq.index.num_categories} classes from {cfg.counts_from or cfg.train})") from None
    label_to_category = np.concatenate([[-1], train_ds.index.category_ids]).astype(np.int64)
    return Run(model=model.eval(), config=state["config"], train_ds=freq, label_to_category=label_to_category,
               epoch=int(state["epoch"]) + 1)
