"""`ltaug mosaic`: 2 x 2 mosaics of four images each, with masks and boxes."""
from __future__ import annotations

from ltaug.errors import UsageError

from .common import FORMATTER, add_engine_options, load, run_engine

HELP = """\
Add mosaics to the dataset: each output image holds four input images (drawn uniformly) in a
2 x 2 layout around a random centre (uniform in the middle half of the output), each resized
to fit a quarter of --size keeping its aspect ratio. Masks come along (polygons moved exactly,
RLE masks resized), boxes too; objects cut by the output edge keep their visible part and are
dropped when less than --min-visible of them (or under --min-area px) remains.
The input images stay in the output; --count mosaics are added.

examples:
  ltaug mosaic train.json --images train2017/ -o out/mosaic --count 1000
  ltaug mosaic train.json --images train2017/ -o out/mosaic --size 1024 1024 --min-visible 0.5"""


def add_parser(sub) -> None:
    p = sub.add_parser("mosaic", help="add 2x2 mosaics (with masks) of four images",
                       description=HELP, formatter_class=FORMATTER)
    add_engine_options(p)
    p.add_argument("--count", type=int, metavar="N", help="mosaics to add (default: one per input image)")
    p.add_argument("--size", type=int, nargs=2, default=(640, 640), metavar=("W", "H"), help="output size (default 640 640)")
    p.add_argument("--min-visible", type=float, default=0.25, metavar="F",
                   help="drop objects with less than F of their area inside (default 0.25)")
    p.add_argument("--min-area", type=int, default=4, metavar="PX", help="drop remnants under PX pixels (default 4)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.pipeline import make_step

    try:
        step = make_step("mosaic", {"count": args.count, "size": args.size, "min_visible": args.min_visible,
                                    "min_area": args.min_area}, args.seed)
    except ValueError as exc:
        raise UsageError(str(exc).replace("_", "-")) from None
    ds = load(args.annotations, args)
    return run_engine(args, ds, args.images, args.output, [step], args.workers)
