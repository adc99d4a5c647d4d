"""`ltaug report`: one self-contained HTML page about an engine output folder."""
from __future__ import annotations

import sys

from .common import FORMATTER, add_bin_thresholds, add_on_error

HELP = """\
Write an HTML report of an output folder of `ltaug run` / paste / mosaic / mixup: the run
(steps, parameters, counts, timings), the share of instances per r/c/f bin before and after,
the before/after class histogram (above 100 classes, LVIS's 1,203 say, sorted frequency curves
in shaded r/c/f bands), a per-class table (bin, instances before / after, pasted, removed by
occlusion, factor) with a filter box and columns sorted on a click, and a grid of sample images
the engine made, rare classes first, with masks and class names drawn (rare-class objects in
red, pasted objects outlined with a thick dashed line).

"Before" is the input annotation file named in OUT/run.json (--input if it has moved). Bins
are those of the input, as `ltaug stats` computes them: LVIS files keep their stored bins
unless thresholds are given; small datasets want smaller thresholds. Images are embedded, so
the page is one file that opens anywhere.

examples:
  ltaug report out/train_aug                        # writes out/train_aug/report.html
  ltaug report out/train_aug -o aug.html --samples 24 --rare-max 2 --common-max 5
  ltaug report out/train_aug --input moved/train.json"""


def add_parser(sub) -> None:
    from ltaug.report.html import REPORT_NAME, SAMPLES, THUMB_WIDTH

    p = sub.add_parser("report", help="HTML report of an output folder (histograms, per-class table, samples)",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="output folder of ltaug run / paste / mosaic / mixup")
    p.add_argument("-o", "--output", metavar="FILE.html", help=f"report file (default: OUTPUT_DIR/{REPORT_NAME})")
    p.add_argument("--input", metavar="ANNOTATIONS", help="the run's input annotations, if no longer at the path "
                                                          "run.json records")
    p.add_argument("--samples", type=int, default=SAMPLES, metavar="N",
                   help=f"sample images in the grid (default {SAMPLES}; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of samples (default 0)")
    p.add_argument("--thumb-width", type=int, default=THUMB_WIDTH, metavar="PX",
                   help=f"width of the sample thumbnails (default {THUMB_WIDTH})")
    add_bin_thresholds(p)
    add_on_error(p, fix=False)
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import make_report

    path = make_report(args.output_dir, args.output, input=args.input, samples=args.samples, seed=args.seed,
                       thumb_width=args.thumb_width, rare_max=args.rare_max, common_max=args.common_max,
                       on_error=args.on_error)
    print(f"report written to {path}", file=sys.stderr)
    return 0
