"""`ltaug mixup`: Beta-weighted blends of two images that keep both images' objects."""
from __future__ import annotations

from ltaug.errors import UsageError

from .common import FORMATTER, add_engine_options, load, run_engine

HELP = """\
Add mixed images: lambda * A + (1 - lambda) * B with lambda ~ Beta(alpha, alpha) (Zhang et
al. 2019 use alpha 1.5 for detection). B is resized keeping its aspect ratio to fit inside A,
at A's top-left corner; where B does not reach, the output is A. The annotations of both are
kept, each with its image's weight in "ltaug": {"mixup_weight": ...}, for a trainer that
weights the loss by it. The input images stay in the output; --count images are added.

examples:
  ltaug mixup train.json --images train2017/ -o out/mixup --count 500
  ltaug mixup train.json --images train2017/ -o out/mixup --alpha 8   # lambda close to 0.5"""


def add_parser(sub) -> None:
    p = sub.add_parser("mixup", help="add mixup blends of two images (both images' objects kept)",
                       description=HELP, formatter_class=FORMATTER)
    add_engine_options(p)
    p.add_argument("--count", type=int, metavar="N", help="mixed images to add (default: one per input image)")
    p.add_argument("--alpha", type=float, default=1.5, metavar="A", help="Beta(A, A) for lambda (default 1.5)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.pipeline import make_step

    try:
        step = make_step("mixup", {"count": args.count, "alpha": args.alpha}, args.seed)
    except ValueError as exc:
        raise UsageError(str(exc).replace("_", "-")) from None
    ds = load(args.annotations, args)
    return run_engine(args, ds, args.images, args.output, [step], args.workers)
