"""`ltaug clean`: remove what killed or interrupted writers left beside an output."""
from __future__ import annotations

import sys

from .common import FORMATTER

HELP = """\
Every ltaug writer works under temporary names beside its output and removes what a killed
earlier attempt left on its next run into the same place. `clean` does it without running
anything, for an output you gave up on, and lists what it removed:

  .OUT.partial/        an interrupted run (ltaug run / paste / mosaic / mixup); --resume would
                       finish it, clean discards it
  .OUT.old/            the previous output, left by a run killed while replacing it
  .OUT.XXXXXXXX.tmp/   a killed bank build
  .OUT.PID.XXXX.tmp    a file being written (json, report) whose writer died; also inside OUT
                       (a YOLO export)

OUT itself is never touched. While a command is writing OUT, clean refuses (exit 2).

examples:
  ltaug clean out/pasted --dry-run     # list only
  ltaug clean out/pasted
  ltaug clean resampled.json"""


def add_parser(sub) -> None:
    p = sub.add_parser("clean", help="remove what killed or interrupted runs left beside an output",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("output", metavar="OUT", help="the output folder, bank or file that was being written")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import clean

    found = clean(args.output, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for left in found:
        print(f"{verb} {left.path} ({left.what}, {left.bytes / 1e6:.1f} MB)", file=sys.stderr)
    total = sum(left.bytes for left in found) / 1e6
    print(f"{args.output}: {verb} {len(found)} leftover(s), {total:.1f} MB" if found
          else f"{args.output}: nothing left behind", file=sys.stderr)
    return 0
