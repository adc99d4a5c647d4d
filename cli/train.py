"""`ltaug train`: train a torchvision detector with a long-tail loss and/or sampler, then evaluate."""
from __future__ import annotations

import json
import sys

from ltaug.errors import UsageError

from .common import FORMATTER

HELP = """\
Train torchvision's Faster R-CNN (or Mask R-CNN with --masks) on a COCO/LVIS file, original
or rebalanced by ltaug, with a long-tail classification loss for the box head and an
optional online sampler, then evaluate on a validation file (AP, AP50, AP75, APr/APc/APf
with the training file's r/c/f bins, per-class AP). Needs the train extra:
pip install 'ltaug[train]'.

The run folder gets config.json (every setting, the preset included), checkpoint.pt (after
each epoch, written atomically), metrics.jsonl (one line per epoch; with --eval-every N,
bbox AP/APr/APc/APf every N epochs), metrics.json (with the final evaluation) and
curves.png (loss, images/s, and AP against epoch with --eval-every). The same command
with --resume continues the run from its last complete epoch (--epochs may be raised;
settings that change the model, the data or the optimisation must be the run's); without
--resume a run folder holding a checkpoint is refused.

Class frequencies (count-based losses, r/c/f bins) come from the original training file,
not a rebalanced one: --counts-from, or for an ltaug output folder the input file its
run.json names; the run says which in its first line and in config.json ("class_counts").
Where a rebalanced file's original cannot be found, the counts come from the file itself,
with a warning that they include the rebalancing.

presets: cpu (default without a GPU): MobileNetV2 + FPN, 320 px short side (512 max), 128
  sampled RoIs per image, early backbone frozen; gpu: 640/1024 px, 512 RoIs, all layers,
  mixed precision. --backbone, --min-size and --max-size override the preset's.
losses: ce, bce, focal, cb, eql, eql_softmax, eqlv2, seesaw, seesaw_mmdet, bags, federated,
  concurrent_softmax (parameters with --loss-param key=value; see trainer/losses.py);
  concurrent_softmax takes its concurrence rates from --concurrence FILE (`ltaug concurrence`).
  seesaw is the single-softmax variant (K + 1 logits); seesaw_mmdet is Seesaw as mmdetection
  runs it on LVIS (K class logits with the seesaw factors + a 2-way objectness branch), with
  --classifier cosine (--classifier-tau 20) for its cosine classifier. --loss bags alone trains
  BAGS end to end (a variant); --stage2 bags is the published, decoupled protocol.
samplers: plain (shuffled; use for files already rebalanced offline), rfs (repeat factor
  sampling online, --rfs-threshold), cas (class-aware), repeat-factors (read an
  `ltaug resample --repeat-factors` file with --repeat-factors).
decoupled training (Kang et al. ICLR 2020), stage 2 after a normal run: --stage2 crt --from
  RUN_DIR re-initialises the box classifier (cls_score) and trains it alone, everything else
  frozen, with class-balanced sampling (--sampler cas unless given); the preset, --masks,
  the backbone and the image and anchor sizes follow the stage-1 run. tau-normalisation
  needs no training: `ltaug eval --tau` and `ltaug tau-sweep`.
BAGS as published (Li et al. CVPR 2020): --stage2 bags --from RUN_DIR, RUN_DIR a CE run:
  the grouped classifier of --loss bags (the default with --stage2 bags) is new and trained
  alone, everything else frozen, with the plain sampler (unless --sampler is given).

examples:
  ltaug train --train train.json --images train2017/ --val val.json --val-images val2017/ \\
      --backbone-weights ../shared/weights/mobilenetv2_imagenet_features.pt --loss seesaw --epochs 12 --out runs/seesaw
  ltaug train --train train_rfs.json --images train2017/ --loss ce --out runs/rfs_offline ...
  ltaug train --train train.json --images train2017/ --sampler rfs --rfs-threshold 0.01 --out runs/rfs_online ...
  ltaug train --train train.json --images train2017/ --stage2 crt --from runs/ce --epochs 4 --out runs/ce_crt ...
  ltaug train --train train.json --images train2017/ --loss seesaw_mmdet --classifier cosine --out runs/seesaw_mmdet ...
  ltaug train --train train.json --images train2017/ --stage2 bags --from runs/ce --out runs/bags_decoupled ..."""


STAGE1_MODEL = ("backbone", "min_size", "max_size", "anchor_sizes")  # stage 2 takes these from --from


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a detector with a long-tail loss / sampler and evaluate it",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("--train", required=True, metavar="ANN", help="training annotation file")
    p.add_argument("--images", required=True, metavar="DIR", help="training image folder")
    p.add_argument("--val", metavar="ANN", help="validation annotation file (evaluated at the end)")
    p.add_argument("--val-images", metavar="DIR", help="validation image folder (default: --images)")
    p.add_argument("--eval-every", type=int, default=0, metavar="N",
                   help="also evaluate on --val every N epochs: AP in metrics.jsonl and against epoch in curves.png "
                        "(default 0: only at the end)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoint is in --out (same settings; --epochs may be raised)")
    p.add_argument("--loss", help="box classification loss (default ce; bags with --stage2 bags)")
    p.add_argument("--loss-param", action="append", default=[], metavar="KEY=VALUE",
                   help="loss parameter, repeatable (e.g. --loss-param gamma=2.0)")
    p.add_argument("--concurrence", metavar="FILE.json",
                   help="concurrence rates of --loss concurrent_softmax, from `ltaug concurrence` on the training file")
    p.add_argument("--sampler", choices=("plain", "rfs", "cas", "repeat-factors"),
                   help="default plain; cas with --stage2 crt")
    p.add_argument("--rfs-threshold", type=float, default=0.001, metavar="T")
    p.add_argument("--repeat-factors", metavar="FILE.json")
    p.add_argument("--counts-from", metavar="ANN",
                   help="file whose class frequencies the losses (and the r/c/f bins) use, with the training "
                        "file's category ids in the same order (default: when --train is an ltaug output folder's "
                        "annotations.json, the original its run.json names; else --train itself)")
    p.add_argument("--masks", action="store_true", help="Mask R-CNN instead of Faster R-CNN")
    p.add_argument("--preset", choices=("cpu", "gpu"), help="model/input preset (default: gpu if CUDA, else cpu)")
    p.add_argument("--backbone", choices=("mobilenet_v2", "resnet50"),
                   help="MobileNetV2 + FPN or ResNet-50 + FPN (default: the preset's, mobilenet_v2)")
    p.add_argument("--backbone-weights", metavar="PATH",
                   help="ImageNet backbone weights (default: random): for mobilenet_v2 the features file "
                        "(../shared/weights/mobilenetv2_imagenet_features.pt), for resnet50 a torchvision ResNet-50 "
                        "state dict (resnet50-0676ba61.pth, torchvision's IMAGENET1K_V1)")
    p.add_argument("--min-size", type=int, metavar="PX", help="image short side (default: the preset's, cpu 320, gpu 640)")
    p.add_argument("--max-size", type=int, metavar="PX",
                   help="cap on the image long side (default: the preset's, cpu 512, gpu 1024)")
    p.add_argument("--classifier", choices=("linear", "cosine"), default="linear",
                   help="box classification layer: linear (torchvision's, the default) or cosine (mmdetection's "
                        "NormedLinear: normalised features and weights, times --classifier-tau)")
    p.add_argument("--classifier-tau", type=float, metavar="TAU",
                   help="scale of the cosine classifier (default 20, mmdetection's Seesaw LVIS recipe)")
    p.add_argument("--anchor-sizes", metavar="PX,PX,...",
                   help="RPN anchor sizes (default 32,64,128,256,512): every size on each mobilenet_v2 map, "
                        "one size per map for resnet50 (5 needed)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.005, help="base learning rate for batch 2 (default 0.005)")
    p.add_argument("--warmup-iters", type=int, default=200)
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes (default 1)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-iters-per-epoch", type=int, metavar="N", help="cut epochs short (smoke tests)")
    p.add_argument("--no-amp", dest="amp", action="store_false",
                   help="train in float32 on CUDA too (default: mixed precision there; metrics.jsonl then "
                        "records the loss scale and the steps skipped for inf/NaN gradients)")
    p.add_argument("--stage2", choices=("crt", "bags"),
                   help="decoupled stage 2 after the run given by --from: crt (classifier re-training) or bags "
                        "(BAGS' grouped classifier trained alone, as published)")
    p.add_argument("--from", dest="init_from", metavar="RUN_DIR", help="the stage-1 run of --stage2")
    p.set_defaults(run=run)


def _loss_params(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--loss-param wants KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _anchor_sizes(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--anchor-sizes wants whole pixel sizes separated by commas, got {text!r}") from None


def _stage1_config(run_dir) -> dict:
    from pathlib import Path

    from ltaug.io.jsonio import read_json

    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UsageError(f"--from {run_dir}: no config.json (not a run folder of `ltaug train`)")
    return read_json(path)


def run(args) -> int:
    try:
        from ltaug.trainer.engine import TrainConfig, train
        from ltaug.trainer.evaluate import format_eval_table
    except ImportError as exc:
        raise UsageError(f"ltaug train needs the train extra (torch, torchvision, faster-coco-eval): "
                         f"pip install 'ltaug[train]' ({exc})") from None
    sampler = args.sampler or ("cas" if args.stage2 == "crt" else "plain")
    loss = args.loss or ("bags" if args.stage2 == "bags" else "ce")
    cfg = TrainConfig(train=args.train, images=args.images, val=args.val, val_images=args.val_images, out=args.out,
                      loss=loss, loss_params=_loss_params(args.loss_param), concurrence=args.concurrence,
                      sampler=sampler, rfs_threshold=args.rfs_threshold, repeat_factors=args.repeat_factors,
                      counts_from=args.counts_from, masks=args.masks, backbone_weights=args.backbone_weights,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_iters=args.warmup_iters,
                      workers=args.workers, threads=args.threads, seed=args.seed,
                      max_iters_per_epoch=args.max_iters_per_epoch, stage2=args.stage2, init_from=args.init_from,
                      resume=args.resume, backbone=args.backbone, min_size=args.min_size, max_size=args.max_size,
                      eval_every=args.eval_every, amp=args.amp, classifier=args.classifier,
                      classifier_tau=args.classifier_tau)
    if args.anchor_sizes:
        cfg.anchor_sizes = _anchor_sizes(args.anchor_sizes)
    if args.init_from:  # stage 2 builds the stage-1 model
        stage1 = _stage1_config(args.init_from)
        cfg.preset, cfg.masks = stage1["preset"], cfg.masks or stage1["masks"]
        for name in STAGE1_MODEL:  # absent from the config of a run older than these options
            if getattr(args, name) is None and stage1.get(name) is not None:
                setattr(cfg, name, stage1[name])
    if args.preset:
        cfg.preset = args.preset
    try:
        cfg.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        metrics = train(cfg, progress=sys.stderr.isatty())
    except ValueError as exc:  # bad loss name/parameters, repeat-factor file mismatch, ...
        raise UsageError(str(exc)) from None
    for h in metrics["history"]:
        box = h.get("eval", {}).get("bbox")
        ap = "" if box is None or box["AP"] is None else f", val bbox AP {100 * box['AP']:.1f}"
        print(f"epoch {h['epoch']}: loss {h['loss']:.3f}, {h['images_per_s']:.2f} images/s{ap}")
    if "eval" in metrics:
        print(format_eval_table(metrics["eval"]))
    print(f"run folder: {args.out}", file=sys.stderr)
    return 0
