"""`ltaug bank`: cut every object out once, into a memory-mappable bank for pasting."""
from __future__ import annotations

import sys

from ltaug.errors import UsageError
from ltaug.pixels.bank import Params

from .common import FORMATTER, add_on_error, flag_errors

HELP = """\
Extract every non-crowd instance of a dataset as a cut-out: the pixels of its box, its mask,
class, source image and annotation id, area and quality flags (too small, truncated at the
image border, occluded by other objects, box-only). Stored as a folder of flat files that
are memory-mapped when pasting, so source images are never decoded again.

Each image is decoded once; --workers processes share the images and the files come out
byte-identical whatever the count. The bank is built beside OUT and renamed into place when
complete: a failed build removes it, the next build removes what a killed one left, and a
second build of the same OUT while one runs is refused.

examples:
  ltaug bank instances_train.json --images train2017/ -o bank/
  ltaug bank --verify bank/          # every file against its checksum (a copied or old bank)
  ltaug bank instances_train.json --images train2017/ -o bank/ --min-area 64 --workers 2"""


def add_parser(sub) -> None:
    p = sub.add_parser("bank", help="build an object bank (cut-outs with masks) for copy-paste",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("annotations", metavar="ANNOTATIONS", nargs="?",
                   help="COCO/LVIS json file or YOLO-seg folder (not with --verify)")
    p.add_argument("--images", metavar="DIR", help="image root of the annotation file (required to build)")
    p.add_argument("-o", "--output", metavar="BANK", help="bank folder to write (required to build)")
    p.add_argument("--verify", metavar="BANK",
                   help="build nothing: check every file of the bank BANK against its SHA-256 in meta.json "
                        "(exit 1, one line per damaged file)")
    p.add_argument("--workers", type=int, metavar="N", help="processes (default: all cores)")
    p.add_argument("--min-area", type=int, default=Params.min_area, metavar="PX",
                   help=f"flag objects under PX mask pixels (default {Params.min_area})")
    p.add_argument("--occluded-fraction", type=float, default=Params.occluded_fraction, metavar="F",
                   help=f"flag objects with more than F of their mask covered by others (default "
                        f"{Params.occluded_fraction})")
    add_on_error(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import build_bank, verify_bank

    if args.verify:
        if args.annotations or args.images or args.output:
            raise UsageError("--verify BANK checks a bank: give no annotations, --images or -o with it")
        problems = verify_bank(args.verify)
        for line in problems:
            print(line, file=sys.stderr)
        if not problems:
            print(f"{args.verify}: every file matches its checksum", file=sys.stderr)
        return 1 if problems else 0
    missing = [name for name, value in (("ANNOTATIONS", args.annotations), ("--images", args.images),
                                        ("-o", args.output)) if not value]
    if missing:
        raise UsageError(f"building a bank needs {', '.join(missing)}")

    with flag_errors("workers"):
        s = build_bank(args.annotations, args.images, args.output, workers=args.workers, min_area=args.min_area,
                       occluded_fraction=args.occluded_fraction, on_error=args.on_error, strict=args.strict,
                       progress=sys.stderr.isatty())
    flags = ", ".join(f"{n} {k.lower().replace('_', '-')}" for k, n in s["flags"].items() if n) or "none"
    print(f"wrote bank {s['path']}: {s['objects']} objects from {s['images']} images in {s['seconds']:.1f} s "
          f"({s['images_per_s']:.0f} images/s, {s['workers']} workers), {s['bytes'] / 2**20:.1f} MiB; "
          f"flags: {flags}; crowd regions excluded: {s['crowd_excluded']}", file=sys.stderr)
    if s.get("images_skipped"):
        print(f"skipped {s['images_skipped']} unreadable image(s)", file=sys.stderr)
    return 0
