"""`ltaug stats`: per-class image and instance counts, r/c/f bins, imbalance summary, histogram."""
from __future__ import annotations

import sys

from ltaug.io.jsonio import dumps

from .common import FORMATTER, add_bin_thresholds, add_on_error

HELP = """\
Per-class images and instances, r/c/f frequency bin and share of all instances, then a
summary: classes, images, instances, imbalance ratio (max/min instances), Gini of the
instance distribution, classes under 10 instances.

Bins follow LVIS: rare = in 1-10 images, common = 11-100, frequent = more. LVIS files keep
their stored bins unless thresholds are given; small datasets want smaller thresholds.

examples:
  ltaug stats instances_train.json
  ltaug stats instances_train.json --json > stats.json
  ltaug stats instances_train.json --plot classes.png --rare-max 2 --common-max 10
  ltaug stats my_yolo_dataset/            # a YOLO-seg folder with data.yaml"""


def add_parser(sub) -> None:
    p = sub.add_parser("stats", help="class statistics of a dataset", description=HELP, formatter_class=FORMATTER)
    p.add_argument("annotations", metavar="ANNOTATIONS", help="COCO/LVIS json file or YOLO-seg folder")
    p.add_argument("--json", action="store_true", help="print a machine-readable JSON document instead of the table")
    p.add_argument("--plot", metavar="FILE.png", help="write a sorted log-scale class histogram coloured by bin")
    p.add_argument("--top", type=int, metavar="N", help="show only the N largest classes in the table")
    add_bin_thresholds(p)
    add_on_error(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import class_stats
    from ltaug.stats.summary import format_stats_table

    stats = class_stats(args.annotations, plot=args.plot, rare_max=args.rare_max, common_max=args.common_max,
                        on_error=args.on_error, strict=args.strict)
    if args.json:
        sys.stdout.write(dumps(stats, indent=True).decode() + "\n")
    else:
        print(format_stats_table(stats, top=args.top))
    if args.plot:
        print(f"histogram written to {args.plot}", file=sys.stderr)
    return 0
