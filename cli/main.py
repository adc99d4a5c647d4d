"""Entry point of the `ltaug` command: builds the parser, runs a subcommand, turns errors into exit codes.

Exit status: 0 success, 1 problems found / bad input, 2 usage error, 3 internal error, 4 the
system refused a read or write, 130 interrupted (EPILOG, shown by `ltaug --help`).
Any error is printed as one line, never as a traceback (set LTAUG_DEBUG=1 to see one).
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback

from ltaug import __version__
from ltaug.errors import LtaugError
from ltaug.io.jsonio import gc_paused

from . import (
    bank,
    clean,
    compare,
    concurrence,
    convert,
    evaluate,
    openimages,
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
from .common import check_bin_thresholds, library_messages

COMMANDS = (stats, validate, convert, openimages, concurrence, recount, resample, plan, bank, operations, run, report,
            clean, train, evaluate, tau_sweep, compare)

DESCRIPTION = """\
ltaug: rebalance long-tailed COCO / LVIS detection and instance-segmentation datasets.

Inputs are COCO or LVIS json files, or YOLO-seg folders (images/, labels/, data.yaml).
Inputs are never modified; outputs are written atomically."""

EPILOG = """exit status:
  0    success
  1    bad input (a file, image or record that cannot be used: the message names it) or,
       for `ltaug validate`, errors found (warnings alone: 0; with --strict: any problem)
  2    usage error (a flag or parameter value the command does not take: the message names it)
  3    internal error (a bug: please report it; LTAUG_DEBUG=1 shows the traceback)
  4    the system refused a read or write (disk full, file too large, read-only or
       permission denied: the message names the file); outputs are never left half-written
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
        with gc_paused(), library_messages():
            return int(args.run(args) or 0)
    except LtaugError as exc:
        print(f"ltaug {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"ltaug {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno not in SYSTEM_ADVICE:
            return _internal(args, exc)
        print(f"ltaug {args.command}: error: {system_message(exc)}", file=sys.stderr)
        return SYSTEM_EXIT
    except Exception as exc:  # a bug, not bad input: still one line unless debugging
        return _internal(args, exc)


def _internal(args, exc: BaseException) -> int:
    if os.environ.get("LTAUG_DEBUG"):
        traceback.print_exception(exc)
    print(f"ltaug {args.command}: internal error: {type(exc).__name__}: {exc} "
          "(set LTAUG_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
    return 3


SYSTEM_EXIT = 4
SYSTEM_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some and run the command again (a pixel command "
                  "continues with --resume)",
    errno.EDQUOT: "disk quota exceeded: free some space and run the command again",
    errno.EFBIG: "file too large for the file system or the process's file-size limit (ulimit -f)",
    errno.EROFS: "read-only file system: write the output elsewhere",
    errno.EACCES: "permission denied: write the output where you may, or change the permissions",
    errno.EPERM: "operation not permitted: write the output where you may",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
}


def system_message(exc: OSError) -> str:
    """One line: the file, what the system said, what to do."""
    where = exc.filename if exc.filename is not None else "(the file being written)"
    return f"{where}: {exc.strerror or exc}: {SYSTEM_ADVICE[exc.errno]}"


if __name__ == "__main__":
    sys.exit(main())
