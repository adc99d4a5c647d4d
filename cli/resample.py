"""`ltaug resample`: class-balanced resampling written as a rebalanced COCO/LVIS file."""
from __future__ import annotations

import sys

from ltaug.ops import Resample, add_arguments, from_args

from .common import FORMATTER, add_bin_thresholds, add_on_error, add_shift_report, table_rows


def add_parser(sub) -> None:
    p = sub.add_parser("resample", help=Resample.summary,
                       description=Resample.__doc__, formatter_class=FORMATTER)
    p.add_argument("annotations", metavar="ANNOTATIONS", help="COCO/LVIS json file or YOLO-seg folder")
    add_arguments(p, Resample)
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="OUT.json", help="write the rebalanced annotation file")
    out.add_argument("--repeat-factors", metavar="FILE.json",
                     help="write per-image expected uses per epoch instead (rfs: the repeat factors)")
    add_shift_report(p)
    add_bin_thresholds(p)
    add_on_error(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import resample
    from ltaug.rebalance.shift import format_shift_table

    r = resample(args.annotations, from_args(Resample, args), output=args.output, repeat_factors=args.repeat_factors,
                 plot=args.plot, rare_max=args.rare_max, common_max=args.common_max, on_error=args.on_error, strict=args.strict)
    ds = r.input
    print(format_shift_table(r.shift, top=table_rows(args, len(ds.categories))))
    if args.repeat_factors:
        print(f"wrote {args.repeat_factors}: per-image expected uses per epoch for {len(ds.images)} images",
              file=sys.stderr)
    else:
        images, annotations = r.output_size
        print(f"wrote {args.output}: {images} images ({len(ds.images)} before), "
              f"{annotations} annotations ({len(ds.annotations)} before)", file=sys.stderr)
    if args.plot:
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
