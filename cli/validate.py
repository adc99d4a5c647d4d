"""`ltaug validate`: report every problem in a COCO/LVIS file (and its images), with ids."""
from __future__ import annotations

import sys

from ltaug.io.jsonio import dumps
from ltaug.io.policy import KINDS

from .common import FORMATTER

HELP = """\
Check an annotation file and report each problem with the file and the image, annotation or
category id it concerns, then a summary table by kind.

Checked: malformed JSON; missing required keys; ids that are not integers or are used twice;
annotations whose image or category does not exist; boxes with non-positive size or outside
the image (1 px tolerance); polygons with fewer than 3 points or an odd number of
coordinates; RLE that is malformed or whose size differs from the image; areas inconsistent
with the mask (within 25%% + 16 px of the raster or the polygon area; crowd regions are not
checked); file_name that escapes the image root (absolute, '..'); LVIS fields (frequency,
neg/not-exhaustive category ids). With --images: missing image files, files that cannot be
decoded (each image is fully decoded, about 5 ms per COCO image), and image sizes that
differ from the json.

exit status: 0 no problems, 1 problems found, 2 usage error (bad flags, missing file).

examples:
  ltaug validate instances_train.json
  ltaug validate instances_train.json --images train2017/
  ltaug validate instances_train.json --json > problems.json"""


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="check a dataset and report every problem",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("annotations", metavar="ANNOTATIONS", help="COCO/LVIS json file or YOLO-seg folder")
    p.add_argument("--images", metavar="DIR", help="image root: also check that files exist, decode and match sizes")
    p.add_argument("--no-masks", action="store_true", help="skip the area-vs-mask check (it rasterises every mask)")
    p.add_argument("--max-per-kind", type=int, default=20, metavar="N",
                   help="print at most N problems of each kind (default 20; 0 = all); the summary counts all")
    p.add_argument("--json", action="store_true", help="print all problems and the summary as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import validate

    result = validate(args.annotations, images=args.images, no_masks=args.no_masks, progress=sys.stderr.isatty())
    path, problems, counts = result.path, result.problems, result.counts
    if args.json:
        sys.stdout.write(dumps(result.document(), indent=True).decode() + "\n")
        return 1 if problems else 0
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
    print(f"{'kind':<22} {'count':>7}  meaning")
    for kind in sorted(counts, key=lambda k: list(KINDS).index(k) if k in KINDS else len(KINDS)):
        extra = "" if not args.max_per_kind or counts[kind] <= args.max_per_kind else \
            f" ({counts[kind] - args.max_per_kind} not printed)"
        print(f"{kind:<22} {counts[kind]:>7}  {KINDS[kind].what if kind in KINDS else kind}{extra}")
    print(f"{path}: {len(problems)} problem(s) of {len(counts)} kind(s){checked}")
    return 1
