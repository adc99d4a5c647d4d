"""`ltaug eval`: AP, AP50, AP75, APr/APc/APf and per-class AP of a run, a checkpoint or a detections file."""
from __future__ import annotations

import sys
from pathlib import Path

from ltaug.errors import UsageError
from ltaug.io.jsonio import dumps

from .common import FORMATTER, add_bin_thresholds

HELP = """\
Evaluate a trained detector (an `ltaug train` run folder or its checkpoint.pt) or a COCO
results file (a json list of detections) on an annotation file: bbox AP, AP50, AP75,
APs/m/l, APr/APc/APf and AP per class, and the same for segm when the model predicts masks
(or the detections carry segmentations) and the ground truth has segmentations; otherwise
segm is skipped with a note. COCO rules, or LVIS federated rules when the ground truth's
images carry neg_category_ids / not_exhaustive_category_ids (faster-coco-eval; equal to
pycocotools and lvis-api). Needs the train extra: pip install 'ltaug[train]'.

r/c/f bins come from the training file (for a run: the one it was trained with; for a
detections file: --train, or else the ground truth itself): an LVIS file's stored bins, or
its image counts with --rare-max / --common-max (default 10 / 100).

--tau T evaluates the run's classifier tau-normalised (Kang et al. ICLR 2020, see
trainer/decouple.py): each class weight vector w_c divided by ||w_c||^T; --tau-bias keep
(default: tau 0 is the run itself) or drop (the paper's code: no class bias).
`ltaug tau-sweep` evaluates a range of T.

examples:
  ltaug eval runs/seesaw                                  # on the run's own --val
  ltaug eval runs/seesaw --val val.json --val-images val2017/ --rare-max 5 --common-max 15 --json > eval.json
  ltaug eval runs/ce --tau 0.75 --save-detections dets.json
  ltaug eval dets.json --val val.json --train train.json"""


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="AP and APr/APc/APf of a trained run or a detections file",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT|DETECTIONS.json")
    add_model_options(p)
    p.add_argument("--tau", type=float, metavar="T", help="tau-normalise the classifier first (a run only)")
    p.add_argument("--tau-bias", choices=("keep", "drop"), default="keep",
                   help="class biases under --tau: keep (default) or drop (as the paper's code)")
    p.add_argument("--save-detections", metavar="FILE.json", help="also write the run's detections (COCO results)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON instead of the table")
    p.set_defaults(run=run)


def add_model_options(p) -> None:
    """Options shared with `ltaug tau-sweep`."""
    p.add_argument("--val", metavar="ANN", help="ground-truth annotation file (default: the run's --val)")
    p.add_argument("--val-images", metavar="DIR", help="its image folder (needed with --val for a run)")
    p.add_argument("--train", metavar="ANN",
                   help="training file: r/c/f bins, and for a run its label map and class counts "
                        "(default: the path saved in the run)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    add_bin_thresholds(p)


def trainer_modules():
    try:
        # trainer before torch (see trainer/__init__.py)
        # isort: off
        from ltaug.trainer import decouple, evaluate, inference
        import torch
        # isort: on
    except ImportError as exc:
        raise UsageError(f"this command needs the train extra (torch, torchvision, faster-coco-eval): "
                         f"pip install 'ltaug[train]' ({exc})") from None
    return torch, decouple, evaluate, inference


def open_run(args):
    """(run, val Dataset, val image folder) for a run folder or checkpoint given as ``args.source``."""
    from ltaug import load_dataset

    torch, _, _, inference = trainer_modules()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    run = inference.load_run(args.source, train=args.train, device=device)
    if args.val:
        if not args.val_images:
            raise UsageError("--val needs --val-images (the model predicts from the images)")
        val, images = args.val, args.val_images
    else:
        val = run.config.get("val")
        images = run.config.get("val_images") or run.config.get("images")
        if not val:
            raise UsageError(f"{args.source}: the run has no validation file; pass --val and --val-images")
    return run, load_dataset(val), images, device


def run(args) -> int:
    import contextlib

    _, decouple, evaluate, inference = trainer_modules()
    source = Path(args.source)
    try:
        if source.is_file() and source.suffix == ".json":
            result = _evaluate_detections(args, inference)
        else:
            r, val, images, device = open_run(args)
            tau = (decouple.tau_normalization(r.model, args.tau, bias_mode=args.tau_bias) if args.tau is not None
                   else contextlib.nullcontext())
            with tau:
                result = inference.evaluate_model(
                    r.model, val, images, train_ds=r.train_ds, label_to_category=r.label_to_category,
                    device=device, progress=sys.stderr.isatty(), rare_max=args.rare_max,
                    common_max=args.common_max, detections_out=args.save_detections)
            result["model"] = {"source": str(source), "epochs": r.epoch, "tau": args.tau,
                               "tau_bias": args.tau_bias if args.tau is not None else None}
    except ValueError as exc:  # unreadable checkpoint, unknown ids, bins, ...
        raise UsageError(str(exc)) from None
    if args.json:
        sys.stdout.write(dumps(result, indent=True).decode() + "\n")
        return 0
    if "model" in result:
        m = result["model"]
        tau = f", tau {m['tau']:g} (bias {m['tau_bias']})" if m["tau"] is not None else ""
        print(f"model      {m['source']}, {m['epochs']} epochs{tau}")
    print(evaluate.format_eval_table(result))
    return 0


def _evaluate_detections(args, inference) -> dict:
    """A COCO results file: bbox, and segm when every detection carries a segmentation."""
    from ltaug import load_dataset
    from ltaug.trainer.evaluate import load_detections

    for flag, value in (("--tau", args.tau), ("--save-detections", args.save_detections)):
        if value is not None:
            raise UsageError(f"{flag} applies to a run or checkpoint, not to a detections file")
    if not args.val:
        raise UsageError("a detections file needs --val (its ground truth)")
    dets = load_detections(args.source)
    segm = bool(dets) and all(isinstance(d, dict) and "segmentation" in d for d in dets)
    return inference.evaluate_with_bins(load_dataset(args.val), dets, iou_types=("bbox", "segm") if segm else ("bbox",),
                                        train_ds=load_dataset(args.train) if args.train else None,
                                        rare_max=args.rare_max, common_max=args.common_max)
