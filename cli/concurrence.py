"""`ltaug concurrence`: the concurrence rates r_ij of concurrent softmax, derived from a dataset."""
from __future__ import annotations

import sys

from .common import FORMATTER, add_on_error

HELP = """\
Derive the concurrence rates r_ij that concurrent softmax (Peng et al., CVPR 2020) needs from a
COCO/LVIS file: r_ij = fraction of the objects of class i that also carry label j. An object is
the annotations sharing an image and an `object_id` (as `ltaug openimages` writes them), else an
image and an identical bbox; r_ij = 1 for every ancestor j of i by the categories' `parent_ids`
(--no-hierarchy: from the objects alone). The file names the category ids it is indexed by;
`ltaug train --loss concurrent_softmax --concurrence FILE` maps them onto the model's classes.

examples:
  ltaug concurrence oi_train.json -o concurrence.json
  ltaug train --train oi_train.json --images train/ --loss concurrent_softmax --concurrence concurrence.json --out runs/cs"""


def add_parser(sub) -> None:
    p = sub.add_parser("concurrence", help="derive concurrent softmax's concurrence rates from a dataset",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("annotations", metavar="ANNOTATIONS", help="COCO/LVIS json file or YOLO-seg folder")
    p.add_argument("-o", "--output", required=True, metavar="FILE.json", help="concurrence file to write")
    p.add_argument("--no-hierarchy", dest="hierarchy", action="store_false",
                   help="rates from shared objects only, not the categories' parent_ids")
    p.add_argument("--top", type=int, default=10, metavar="N", help="pairs to print (default 10)")
    add_on_error(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import concurrence

    r = concurrence(args.annotations, args.output, hierarchy=args.hierarchy, on_error=args.on_error,
                    strict=args.strict)
    rows, cols = r.matrix.nonzero()
    print(f"wrote {args.output}: {len(r.category_ids)} categories, {len(rows)} non-zero rates", file=sys.stderr)
    order = sorted(zip(rows.tolist(), cols.tolist()), key=lambda ij: (-int(r.pairs[ij]), ij))[:max(args.top, 0)]
    for i, j in order:
        print(f"r[{r.names[i]} -> {r.names[j]}] = {r.matrix[i, j]:.3f}  ({int(r.pairs[i, j])} of "
              f"{int(r.objects[i])} objects)")
    return 0
