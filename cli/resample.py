"""`ltaug resample`: class-balanced resampling written as a rebalanced COCO/LVIS file."""
from __future__ import annotations

import sys

from ltaug.ops import Resample, add_arguments, from_args

from .common import (
    FORMATTER,
    add_bin_thresholds,
    add_on_error,
    add_shift_report,
    load,
    refuse_outputs_over_input,
    table_rows,
)


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
    from ltaug.io.jsonio import write_json_atomic
    from ltaug.rebalance.resample import expand_dataset, repeat_factor_document, resample_counts
    from ltaug.rebalance.shift import class_shift, format_shift_table, plot_shift

    spec = from_args(Resample, args)
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

