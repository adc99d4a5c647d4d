"""Options and helpers shared by several subcommands."""
from __future__ import annotations

import argparse

from ltaug import Dataset, load_dataset
from ltaug.io.dataset import ON_ERROR
from ltaug.run.pipeline import BACKENDS
from ltaug.stats.frequency import COMMON_MAX, RARE_MAX

FORMATTER = argparse.RawDescriptionHelpFormatter


def add_on_error(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--on-error", choices=ON_ERROR, default=ON_ERROR[0],
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
    from ltaug.io.paths import refuse_overwriting_inputs

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
    add_on_error(parser)
    parser.add_argument("--backend", choices=BACKENDS,
                        help="who renders the shards: 'local' processes (default) or 'ray' tasks, on a local Ray "
                             "instance of --workers CPUs or the cluster of --address (needs the ray extra); "
                             "the output is the same bytes either way")
    parser.add_argument("--address", metavar="ADDR",
                        help="with --backend ray: the Ray cluster to run on, 'auto' (the one `ray start` runs "
                             "on this machine) or HOST:PORT (default: RAY_ADDRESS, else a local instance); "
                             "every node must see the images and the output folder at the same paths")


def run_engine(args, dataset, images, output, steps, workers=None, backend=None, address=None) -> int:
    """Run steps with the engine, then print one summary line per step and where the output is.

    ``backend`` / ``address``: a pipeline file's values, used where --backend / --address are not given.
    """
    import sys

    from ltaug.errors import UsageError
    from ltaug.run.engine import run_pipeline

    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    cli_address = getattr(args, "address", None)
    backend = getattr(args, "backend", None) or backend or "local"
    if backend != "ray" and cli_address:
        raise UsageError("--address is for --backend ray")
    executor = {}
    if backend == "ray":
        from ltaug.run.ray_backend import ray_map_shards

        executor["map_shards"] = ray_map_shards(cli_address or address, num_cpus=workers)
    s = run_pipeline(dataset, images, output, steps, workers=workers, resume=args.resume,
                     on_error=args.on_error, progress=sys.stderr.isatty(), **executor)
    for r in s["steps_run"]:
        print(f"  {describe_step(r)}", file=sys.stderr)
    c = s["counts"]
    print(f"wrote {output}: {c['images_after']} images ({c['images_before']} before, {c['images_written']} written), "
          f"{c['annotations_after']} annotations ({c['annotations_before']} before) in {s['seconds']:.1f} s; "
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
