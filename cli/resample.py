"""`ltaug resample`: class-balanced resampling written as a rebalanced COCO/LVIS file."""
from __future__ import annotations

import sys

from ltaug.errors import UsageError

from .common import FORMATTER, add_bin_thresholds, add_on_error, add_shift_report, load, refuse_outputs_over_input, table_rows

HELP = """\
Resample the images of a dataset so rare classes are seen more often, and write E epochs'
worth of samples as one COCO/LVIS file (or the per-image repeat factors for an online
sampler). Repeated images get new image ids pointing to the same file_name; annotations are
copied with new ids; every image and annotation carries an "ltaug" provenance record.
LVIS category fields (frequency, image_count, ...) are kept as in the input.

methods:
  rfs   repeat factor sampling (LVIS, Gupta et al. 2019): r(c) = max(1, sqrt(t / f(c))) with
        f(c) the fraction of images containing c; each image repeated r(I) = max over its
        classes, rounded stochastically per epoch (detectron2) or up (--rounding ceil,
        mmdetection). Images without annotations keep r = 1.
  cas   class-aware sampling (Shen et al. 2016; cRT, Kang et al. 2020): pick a class
        uniformly, then one of its images.
  sqrt  square-root sampling: pick class c with probability ~ sqrt(n_c) (n_c = its images).
  soft  soft-balance sampling (Peng et al. CVPR 2020): p_c = lambda/C + (1-lambda) n_c/N,
        between instance-balanced (lambda 0) and class-balanced (lambda 1); --lambda-end
        moves lambda linearly over the epochs (the paper's hybrid schedule).
  cas/sqrt/soft draw --samples-per-epoch images per epoch (default: the number of images);
  an image may be drawn several times or not at all.

examples:
  ltaug resample train.json --method rfs --threshold 0.001 --seed 0 -o train_rfs.json
  ltaug resample train.json --method rfs --repeat-factors rf.json     # for the trainer's online sampler
  ltaug resample train.json --method soft --lambda 0 --lambda-end 1 --epochs 12 --seed 0 -o soft.json --plot shift.png"""


def add_parser(sub) -> None:
    p = sub.add_parser("resample", help="class-balanced resampling (rfs, cas, sqrt, soft)",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("annotations", metavar="ANNOTATIONS", help="COCO/LVIS json file or YOLO-seg folder")
    p.add_argument("--method", required=True, choices=("rfs", "cas", "sqrt", "soft"))
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same output bytes")
    p.add_argument("--epochs", type=int, default=1, help="epochs' worth of samples to write (default 1)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="OUT.json", help="write the rebalanced annotation file")
    out.add_argument("--repeat-factors", metavar="FILE.json",
                     help="write per-image expected uses per epoch instead (rfs: the repeat factors)")
    g = p.add_argument_group("rfs")
    g.add_argument("--threshold", type=float, default=0.001, metavar="T",
                   help="t in r(c) (default 0.001; 0 repeats nothing: plain epochs)")
    g.add_argument("--linear", action="store_true", help="r(c) = max(1, t / f(c)) instead of the square root")
    g.add_argument("--rounding", choices=("stochastic", "ceil"), default="stochastic",
                   help="per-epoch rounding of r(I) (default stochastic)")
    g = p.add_argument_group("cas / sqrt / soft")
    g.add_argument("--samples-per-epoch", type=int, metavar="N", help="images drawn per epoch (default: all)")
    g.add_argument("--lambda", dest="lam", type=float, default=0.5, metavar="L",
                   help="soft: lambda, 0 instance-balanced .. 1 class-balanced (default 0.5)")
    g.add_argument("--lambda-end", type=float, metavar="L", help="soft: lambda of the last epoch (linear schedule)")
    add_shift_report(p)
    add_bin_thresholds(p)
    add_on_error(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.jsonio import write_json_atomic
    from ltaug.resample import ResampleSpec, expand_dataset, repeat_factor_document, resample_counts
    from ltaug.shift import class_shift, format_shift_table, plot_shift

    try:
        spec = ResampleSpec(args.method, seed=args.seed, epochs=args.epochs, threshold=args.threshold,
                            sqrt=not args.linear, rounding=args.rounding, lam=args.lam, lam_end=args.lambda_end,
                            samples_per_epoch=args.samples_per_epoch)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.threshold <= 0:
        raise UsageError(f"--threshold must be > 0, got {args.threshold}")
    refuse_outputs_over_input(args.annotations, args.output, args.repeat_factors, args.plot)
    ds = load(args.annotations, args)
    result = resample_counts(ds, spec)
    shift = class_shift(ds, result.counts, rare_max=args.rare_max, common_max=args.common_max)
    print(format_shift_table(shift, top=table_rows(args, len(ds.categories))))
    if args.repeat_factors:
        write_json_atomic(args.repeat_factors, repeat_factor_document(ds, result))
        print(f"wrote {args.repeat_factors}: per-image expected uses per epoch for {len(ds.images)} images",
              file=sys.stderr)
    else:
        out = expand_dataset(ds, result.counts, op=f"resample:{spec.method}", params=spec.params())
        out.save(args.output, inputs=[args.annotations])
        print(f"wrote {args.output}: {len(out.images)} images ({len(ds.images)} before), "
              f"{len(out.annotations)} annotations ({len(ds.annotations)} before)", file=sys.stderr)
    if args.plot:
        plot_shift(shift, args.plot, title=f"{args.annotations}: resample --method {args.method}")
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0

