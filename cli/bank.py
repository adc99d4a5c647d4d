"""`ltaug bank`: cut the objects out once, into a compressed bank for pasting."""
from __future__ import annotations

import sys

from ltaug.errors import UsageError
from ltaug.pixels.bank import Params
from ltaug.pixels.bank_codec import CODECS, DEFAULT_CODEC, DEFAULT_QUALITY

from .common import FORMATTER, add_bin_thresholds, add_on_error, flag_errors

HELP = f"""\
Extract the non-crowd instances of a dataset as cut-outs: the pixels of its box, its mask,
class, source image and annotation id, area and quality flags (too small, truncated at the
image border, occluded by other objects, box-only). Stored as a folder of flat files (format
version 2) that pasting reads one object at a time, so source images are never decoded again.

What goes in (recorded in the bank's meta.json): every class, or those of --classes (names or
ids) and of --bins (frequency bins r, c, f as `ltaug stats` counts them: an LVIS file's own,
else by image counts with --rare-max / --common-max, 10 / 100); --max-per-class N keeps at most
N objects of each class, a seeded choice (--seed) that prefers unflagged, larger and less
occluded objects (unflagged first; within that, drawn with probability proportional to the
visible pixels). `ltaug paste` with a bank of some classes names the classes it asks for and
the bank lacks.

How crops are stored (--codec): jpeg (the default) at --quality {DEFAULT_QUALITY}: 4:4:4, every DCT
coefficient quantised by the same step, 100 - quality (9): on COCO photos 9 KB per object at
38 dB PSNR, against about 60 KB raw; png: lossless, about 37 KB; raw: uncompressed BGR (the
largest, the fastest to read). Masks are always lossless (packed bits, zlib-compressed).
Banks of earlier ltaug versions (format 1, raw) are still read.

Each image is decoded once; --workers processes share the images and the files come out
byte-identical whatever the count. The bank is built beside OUT and renamed into place when
complete: a failed build removes it, the next build removes what a killed one left, and a
second build of the same OUT while one runs is refused.

examples:
  ltaug bank instances_train.json --images train2017/ -o bank/
  ltaug bank lvis_v1_train.json --images train2017/ -o bank/ --bins r,c --max-per-class 200
  ltaug bank instances_train.json --images train2017/ -o bank/ --classes "person,traffic light,3"
  ltaug bank instances_train.json --images train2017/ -o bank/ --codec png      # lossless
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
    g = p.add_argument_group("what goes in")
    g.add_argument("--classes", action="append", metavar="CLASSES",
                   help="only these classes: names or ids, comma-separated; repeatable (with --bins: both)")
    g.add_argument("--bins", action="append", metavar="BINS", help="only the classes of these frequency bins: r, c, "
                                                                    "f, comma-separated (e.g. --bins r,c)")
    add_bin_thresholds(g)
    g.add_argument("--max-per-class", type=int, metavar="N",
                   help="at most N objects of each class (unflagged, larger, less occluded ones preferred)")
    g.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the --max-per-class choice (default 0)")
    g.add_argument("--min-area", type=int, default=Params.min_area, metavar="PX",
                   help=f"flag objects under PX mask pixels (default {Params.min_area})")
    g.add_argument("--occluded-fraction", type=float, default=Params.occluded_fraction, metavar="F",
                   help=f"flag objects with more than F of their mask covered by others (default "
                        f"{Params.occluded_fraction})")
    g = p.add_argument_group("how crops are stored")
    g.add_argument("--codec", choices=CODECS, default=DEFAULT_CODEC,
                   help=f"jpeg (lossy, the default), png (lossless) or raw (default {DEFAULT_CODEC})")
    g.add_argument("--quality", type=int, metavar="Q",
                   help=f"jpeg: 1-100, quantisation step 100 - Q (default {DEFAULT_QUALITY})")
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

    with flag_errors("workers", "classes", "bins", "max_per_class", "seed", "codec", "quality", "rare_max",
                     "common_max"):
        s = build_bank(args.annotations, args.images, args.output, workers=args.workers, min_area=args.min_area,
                       occluded_fraction=args.occluded_fraction, classes=args.classes, bins=args.bins,
                       rare_max=args.rare_max, common_max=args.common_max, max_per_class=args.max_per_class,
                       seed=args.seed, codec=args.codec, quality=args.quality, on_error=args.on_error,
                       strict=args.strict, progress=sys.stderr.isatty())
    flags = ", ".join(f"{n} {k.lower().replace('_', '-')}" for k, n in s["flags"].items() if n) or "none"
    print(f"wrote bank {s['path']}: {s['objects']} objects from {s['images']} images in {s['seconds']:.1f} s "
          f"({s['images_per_s']:.0f} images/s, {s['workers']} workers), {s['bytes'] / 2**20:.1f} MiB, "
          f"{s['bytes_per_object'] / 1000:.1f} KB per object ({s['codec']}); flags: {flags}; "
          f"crowd regions excluded: {s['crowd_excluded']}", file=sys.stderr)
    left = s["left_out"]
    if left["classes"] or left["max_per_class"]:
        parts = [f"{left['classes']} of classes not asked for"] if left["classes"] else []
        if left["max_per_class"]:
            parts.append(f"{left['max_per_class']} beyond --max-per-class {args.max_per_class}")
        print(f"left out {left['classes'] + left['max_per_class']} of the {s['source_objects']} objects: "
              + ", ".join(parts), file=sys.stderr)
    if s.get("images_skipped"):
        print(f"skipped {s['images_skipped']} unreadable image(s)", file=sys.stderr)
    return 0
