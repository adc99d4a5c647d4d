"""Options and helpers shared by several subcommands."""
from __future__ import annotations

import argparse

from ltaug import Dataset, load_dataset
from ltaug.frequency import COMMON_MAX, RARE_MAX

FORMATTER = argparse.RawDescriptionHelpFormatter


def add_on_error(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="invalid records in the input: 'raise' refuses the file (default); "
                             "'skip' drops them and prints how many were skipped and why")


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


def refuse_outputs_over_input(input_path, *outputs) -> None:
    """UsageError if any given output path (None: not asked for) is the input file."""
    from ltaug.paths import refuse_overwriting_inputs

    for path in outputs:
        if path:
            refuse_overwriting_inputs(path, [input_path])


def check_bin_thresholds(parser: argparse.ArgumentParser, args) -> None:
    """Exit with a usage error (status 2) unless 0 <= --rare-max < --common-max."""
    if not hasattr(args, "rare_max"):
        return
    rare = RARE_MAX if args.rare_max is None else args.rare_max
    common = COMMON_MAX if args.common_max is None else args.common_max
    if not 0 <= rare < common:
        parser.exit(2, f"ltaug {args.command}: error: need 0 <= --rare-max < --common-max, "
                       f"got {rare} and {common}\n")


def load(path, args) -> Dataset:
    """Load a dataset honouring --on-error, and report skipped records on stderr."""
    ds = load_dataset(path, on_error=getattr(args, "on_error", "raise"), split=getattr(args, "split", "train"))
    report_skipped(ds, path)
    return ds


def report_skipped(ds: Dataset, path) -> None:
    import sys

    if ds.skipped:
        total = sum(ds.skipped.values())
        kinds = ", ".join(f"{n} {k}" for k, n in ds.skipped.most_common())
        print(f"{path}: skipped {total} invalid record(s): {kinds}", file=sys.stderr)
