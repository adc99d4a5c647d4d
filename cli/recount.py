"""`ltaug recount`: recompute LVIS image_count / instance_count / frequency per category."""
from __future__ import annotations

import sys

from .common import FORMATTER, add_bin_thresholds, add_on_error

HELP = """\
Recompute each category's image_count, instance_count and frequency bin (r/c/f) from the
annotations, and write the result as LVIS-style json. Other fields are kept unchanged.

LVIS defines rare = 1-10 training images, common = 11-100, frequent = more; on a small
dataset pass smaller thresholds so the bins are not all rare.

examples:
  ltaug recount lvis_v1_train_subset.json -o recounted.json
  ltaug recount instances_train.json -o train_bins.json --rare-max 2 --common-max 10"""


def add_parser(sub) -> None:
    p = sub.add_parser("recount", help="recompute LVIS category counts and r/c/f bins",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("annotations", metavar="ANNOTATIONS", help="COCO/LVIS json file or YOLO-seg folder")
    p.add_argument("-o", "--output", required=True, metavar="OUT.json", help="where to write the result")
    add_bin_thresholds(p, defaults_from_file=False)
    add_on_error(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from collections import Counter

    from ltaug.api import recount

    out = recount(args.annotations, args.output, rare_max=args.rare_max, common_max=args.common_max,
                  on_error=args.on_error, strict=args.strict)
    bins = Counter(c["frequency"] for c in out.categories)
    print(f"wrote {args.output}: {len(out.categories)} categories, "
          f"r={bins['r']} c={bins['c']} f={bins['f']} (rare <= {args.rare_max} images, common <= {args.common_max})",
          file=sys.stderr)
    return 0
