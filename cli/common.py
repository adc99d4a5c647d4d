"""Options and helpers shared by several subcommands."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ltaug.errors import SpecError, UsageError
from ltaug.io.dataset import ON_ERROR
from ltaug.run.engine import LINKS
from ltaug.run.pipeline import BACKENDS
from ltaug.stats.frequency import COMMON_MAX, RARE_MAX

FORMATTER = argparse.RawDescriptionHelpFormatter


def add_on_error(parser: argparse.ArgumentParser, *, fix: bool = True) -> None:
    """--on-error (and, with ``fix``, its 'fix' choice and --strict): what a reader does with
    problems (the policy table of `ltaug validate --help`)."""
    if not fix:
        parser.add_argument("--on-error", choices=ON_ERROR[:2], default=ON_ERROR[0],
                            help="invalid records in the input: 'raise' refuses the file (default); "
                                 "'skip' drops them and prints how many were skipped and why")
        return
    parser.add_argument("--on-error", choices=ON_ERROR, default=ON_ERROR[0],
                        help="errors in the input (see `ltaug validate --help` for the table): 'raise' refuses the "
                             "file (default); 'skip' drops the bad records; 'fix' repairs what it can (warnings "
                             "too) and drops the rest; every fix and skip is listed in fixes.json beside the output")
    parser.add_argument("--strict", action="store_true",
                        help="treat warnings (files pycocotools loads: repeated annotation ids, boxes a little "
                             "outside the image, ...) as errors; without it they are processed and summarised")


def add_bin_thresholds(parser: argparse.ArgumentParser, *, defaults_from_file: bool = True) -> None:
    note = " (default: LVIS files keep their stored bins; others use %d)" if defaults_from_file else " (default: %d)"
    parser.add_argument("--rare-max", type=int, default=None if defaults_from_file else RARE_MAX,
                        metavar="N", help="classes in at most N images are rare" + note % RARE_MAX)
    parser.add_argument("--common-max", type=int, default=None if defaults_from_file else COMMON_MAX,
                        metavar="N", help="classes in at most N images (and more than --rare-max) are common; "
                                          "the rest frequent" + note % COMMON_MAX)


def add_shift_report(parser: argparse.ArgumentParser) -> None:
    """--plot and --top of the commands that print a before/after class table."""
    parser.add_argument("--plot", metavar="FILE.png", help="before/after class histogram")
    parser.add_argument("--top", type=int, metavar="N",
                        help="table rows (rarest first; default: all up to 100 classes, else 40)")


def table_rows(args, n_classes: int) -> int | None:
    """Rows of the before/after table: --top, else all up to 100 classes, else 40."""
    if args.top is not None:
        return args.top
    return None if n_classes <= 100 else 40


def check_bin_thresholds(parser: argparse.ArgumentParser, args) -> None:
    """Exit with a usage error (status 2) unless 0 <= --rare-max < --common-max."""
    if not hasattr(args, "rare_max"):
        return
    rare = RARE_MAX if args.rare_max is None else args.rare_max
    common = COMMON_MAX if args.common_max is None else args.common_max
    if not 0 <= rare < common:
        parser.exit(2, f"ltaug {args.command}: error: need 0 <= --rare-max < --common-max, "
                       f"got {rare} and {common}\n")


class Messages(logging.Handler):
    """The library's log records as the command's own lines on stderr: INFO as they are (``x.json:
    skipped 2 invalid record(s): ...``), warnings as ``warning: ...``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            print(f"warning: {text}" if record.levelno >= logging.WARNING else text, file=sys.stderr)
        except Exception:  # logging's rule: a handler never raises
            self.handleError(record)


@contextmanager
def library_messages() -> Iterator[None]:
    """While a command runs, the ``ltaug`` logger's INFO and above are printed on stderr."""
    logger, handler = logging.getLogger("ltaug"), Messages(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextmanager
def flag_errors(*fields: str, **flags: str) -> Iterator[None]:
    """A SpecError of one of the library function's own parameters ``fields`` (not an operation's:
    from_args names those) becomes a usage error naming the flag: ``workers must be >= 1`` is
    ``--workers must be >= 1``. ``flags``: the flag text of a field that is not ``--field``."""
    try:
        yield
    except SpecError as exc:
        if exc.owner is not None or exc.field not in {*fields, *flags}:
            raise
        raise UsageError(f"{flags.get(exc.field) or '--' + exc.field.replace('_', '-')} {exc.detail}") from None


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Input, images, output folder, workers, resume: the options of the pixel commands (their
    --seed is a parameter of the operation)."""
    parser.add_argument("annotations", metavar="ANNOTATIONS", help="COCO/LVIS json file or YOLO-seg folder")
    parser.add_argument("--images", required=True, metavar="DIR", help="image root of the annotation file")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output folder: annotations.json, images/, run.json")
    add_run_options(parser)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, metavar="N", help="processes (default: all cores); the output "
                                                                  "is the same bytes for any N")
    parser.add_argument("--resume", action="store_true",
                        help="finish an interrupted run (kept in .OUT.partial beside OUT); same final output")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an output already at OUT (refused when OUT holds files ltaug did not write)")
    parser.add_argument("--link", choices=LINKS, default=LINKS[0],
                        help="how the input images the output keeps get there: hard links (the default; the input "
                             "files themselves: edit neither in place; copies across file systems), symlink, or copy")
    parser.add_argument("--verify-images", action="store_true",
                        help="fingerprint the input images by content (SHA-256) as well as size and time, so that "
                             "--resume refuses any changed image (every image is read once more)")
    add_on_error(parser)
    parser.add_argument("--backend", choices=BACKENDS,
                        help="who renders the shards: 'local' processes (default) or 'ray' tasks, on a local Ray "
                             "instance of --workers CPUs or the cluster of --address (needs the ray extra); "
                             "the output is the same bytes either way")
    parser.add_argument("--address", metavar="ADDR",
                        help="with --backend ray: the Ray cluster to run on, 'auto' (the one `ray start` runs "
                             "on this machine) or HOST:PORT (default: RAY_ADDRESS, else a local instance); "
                             "every node must see the images and the output folder at the same paths")


def run_engine(call, output=None) -> int:
    """Run the engine by ``call()`` (:func:`ltaug.api.run_steps` or ``run_config``, returning a RunResult),
    then print one summary line per step and where the output is (``output`` as typed, else the run's)."""

    from ltaug.ops import OPERATIONS
    from ltaug.run.limits import limit_lines

    with flag_errors("workers", "address"):
        result = call()
    output = output or result.output
    for r in result.steps:
        print(f"  {describe_step(r)}", file=sys.stderr)
        details = getattr(OPERATIONS.get(r["op"]), "report_lines", None) if r["op"] in OPERATIONS else None
        for line in details(r) if callable(details) else ():  # what a step asked per class and did not get
            print(f"    {line}", file=sys.stderr)
    for line in limit_lines(result.record):  # per-class limits over the whole pipeline: asked vs got
        print(f"  {line}", file=sys.stderr)
    c = result.counts
    print(f"wrote {output}: {c['images_after']} images ({c['images_before']} before, {c['images_written']} written), "
          f"{c['annotations_after']} annotations ({c['annotations_before']} before) in {result.seconds:.1f} s; "
          f"`ltaug report {output}` makes the HTML report", file=sys.stderr)
    return 0


def describe_step(r: dict) -> str:
    """One line about a finished step (from run.json's ``steps_run``)."""
    from ltaug.ops import OPERATIONS, PixelOperation

    cls = OPERATIONS.get(r["op"]) if r["op"] in OPERATIONS else PixelOperation
    if not issubclass(cls, PixelOperation):
        return f"{r['op']}: {'; '.join(cls.report_parts(r))} ({r['seconds']:.1f} s)"
    rate = r["images_written"] / r["seconds"] if r["seconds"] > 0 else float("inf")
    parts = [f"{r['op']}: {r['images_written']} images ({rate:.0f} images/s)", *cls.report_parts(r)]
    if r["images_skipped"]:
        parts.append(f"{len(r['images_skipped'])} skipped (unreadable images)")
    return "; ".join(parts)
