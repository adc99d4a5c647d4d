"""`ltaug validate`: report every problem in a COCO/LVIS file (and its images), with ids."""
from __future__ import annotations

import sys

from ltaug.errors import UsageError
from ltaug.io.jsonio import dumps
from ltaug.io.policy import KINDS, severity

from .common import FORMATTER

HELP = """\
Check an annotation file (COCO/LVIS json, or a YOLO-seg folder) and report each problem with
the file and the image, annotation or category id it concerns, then a summary table by kind.
Mask areas and boxes are compared with the rasterised masks (--no-masks skips it); with
--images every image file is also opened and fully decoded (about 5 ms per COCO image).

Each kind has a severity. An error cannot be read or processed correctly: every command
refuses the file (--on-error skip drops such records, --on-error fix repairs what it can).
A warning is something pycocotools (or ultralytics) loads: every command processes it as that
loader would and prints one summary line per kind; --strict makes warnings errors. `--fix -o
CLEAN.json` writes a repaired copy and CLEAN.fixes.json listing every change (kind, ids,
the record before and after); the copy validates clean.

{table}

exit status: 0 no errors (warnings are printed), 1 errors found (with --strict: any problem),
2 usage error (bad flags, missing file).

examples:
  ltaug validate instances_train.json
  ltaug validate instances_train.json --images train2017/
  ltaug validate instances_train.json --fix -o instances_train.clean.json
  ltaug validate instances_train.json --json > problems.json"""


def add_parser(sub) -> None:
    from ltaug.io.read import policy_table

    p = sub.add_parser("validate", help="check a dataset and report every problem",
                       description=HELP.format(table=policy_table()), formatter_class=FORMATTER)
    p.add_argument("annotations", metavar="ANNOTATIONS", help="COCO/LVIS json file or YOLO-seg folder")
    p.add_argument("--images", metavar="DIR", help="image root: also check that files exist, decode and match sizes")
    p.add_argument("--no-masks", action="store_true", help="skip the area-vs-mask check (it rasterises every mask)")
    p.add_argument("--max-per-kind", type=int, default=20, metavar="N",
                   help="print at most N problems of each kind (default 20; 0 = all); the summary counts all")
    p.add_argument("--json", action="store_true", help="print all problems and the summary as JSON")
    p.add_argument("--strict", action="store_true", help="count warnings as errors (exit status 1)")
    p.add_argument("--fix", action="store_true", help="write a repaired copy to -o and its fix report beside it")
    p.add_argument("-o", "--output", metavar="CLEAN.json", help="with --fix: where to write the repaired copy")
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import validate

    if args.fix != bool(args.output):
        raise UsageError("--fix and -o go together: --fix -o CLEAN.json")
    result = validate(args.annotations, images=args.images, no_masks=args.no_masks, strict=args.strict, fix=args.fix,
                      output=args.output, progress=sys.stderr.isatty())
    path, problems, counts = result.path, result.problems, result.counts
    status = 0 if result.ok else 1
    if result.fixed is not None:
        fixed = sum(f.action == "fixed" for f in result.findings)
        print(f"wrote {result.fixed}: {fixed} record(s) fixed, {len(result.findings) - fixed} dropped, each listed in "
              f"{result.fixed.with_name(result.fixed.stem + '.fixes.json')}", file=sys.stderr)
    if args.json:
        sys.stdout.write(dumps(result.document(), indent=True).decode() + "\n")
        return status
    shown = {}
    for p in problems:
        shown[p.kind] = shown.get(p.kind, 0) + 1
        if not args.max_per_kind or shown[p.kind] <= args.max_per_kind:
            print(p.line(path))
    checked = ""
    if result.images is not None:
        checked = f" ({result.images} images, {result.annotations} annotations checked" + (
            ", image files too)" if result.images_checked else "; pass --images DIR to check image files)")
    if not problems:
        print(f"{path}: OK{checked}")
        return 0
    print()
    print(f"{'kind':<26} {'severity':<8} {'count':>7}  meaning")
    for kind in sorted(counts, key=lambda k: list(KINDS).index(k) if k in KINDS else len(KINDS)):
        extra = "" if not args.max_per_kind or counts[kind] <= args.max_per_kind else \
            f" ({counts[kind] - args.max_per_kind} not printed)"
        print(f"{kind:<26} {severity(kind):<8} {counts[kind]:>7}  {KINDS[kind].what if kind in KINDS else kind}{extra}")
    errors = len(result.errors)
    print(f"{path}: {len(problems)} problem(s) of {len(counts)} kind(s): {errors} error(s), "
          f"{len(problems) - errors} warning(s){' (--strict: counted as errors)' if args.strict else ''}{checked}")
    return status
