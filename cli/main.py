"""Entry point of the `ltaug` command: builds the parser, runs a subcommand, turns errors into exit codes.

Exit status: 0 success, 1 problems found / bad input, 2 usage error, 3 internal error, 130
interrupted (EPILOG, shown by `ltaug --help`).
Any error is printed as one line, never as a traceback (set LTAUG_DEBUG=1 to see one).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from ltaug import __version__
from ltaug.errors import LtaugError
from ltaug.io.jsonio import gc_paused

from . import (
    bank,
    compare,
    convert,
    evaluate,
    operations,
    plan,
    recount,
    report,
    resample,
    run,
    stats,
    tau_sweep,
    train,
    validate,
)
from .common import check_bin_thresholds

COMMANDS = (stats, validate, convert, recount, resample, plan, bank, operations, run, report, train, evaluate, tau_sweep,
            compare)

DESCRIPTION = """\
ltaug: rebalance long-tailed COCO / LVIS detection and instance-segmentation datasets.

Inputs are COCO or LVIS json files, or YOLO-seg folders (images/, labels/, data.yaml).
Inputs are never modified; outputs are written atomically."""

EPILOG = """exit status:
  0    success
  1    bad input (a file, image or record that cannot be used: the message names it) or,
       for `ltaug validate`, problems found
  2    usage error (a flag or parameter value the command does not take: the message names it)
  3    internal error (a bug: please report it; LTAUG_DEBUG=1 shows the traceback)
  130  interrupted (Ctrl-C); a pixel command's --resume finishes the run"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ltaug", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ltaug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_bin_thresholds(parser, args)
    try:
        # A command is one short burst over acyclic json data: the cyclic collector would only
        # rescan millions of live objects (seconds at LVIS scale) and find nothing to free.
        with gc_paused():
            return int(args.run(args) or 0)
    except LtaugError as exc:
        print(f"ltaug {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"ltaug {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug, not bad input: still one line unless debugging
        if os.environ.get("LTAUG_DEBUG"):
            traceback.print_exc()
        print(f"ltaug {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set LTAUG_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
