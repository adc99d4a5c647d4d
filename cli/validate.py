"""`ltaug validate`: report every problem in a COCO/LVIS file (and its images), with ids."""
from __future__ import annotations

import sys
from pathlib import Path

from ltaug.errors import InputError, UsageError
from ltaug.io.jsonio import dumps, read_json
from ltaug.io.validate import KINDS, Problem, summarize, validate_document

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


def _load_document(path: Path):
    """The parsed document, or (None, [problem]) for a file that is not JSON."""
    if path.is_dir():
        from ltaug.io.yolo import read_yolo

        ds = read_yolo(path, on_error="skip")
        problems = [Problem(kind, f"{n} label line(s) rejected: {kind}", "annotations", None)
                    for kind, n in ds.skipped.items()]
        return ds.data, problems
    try:
        return read_json(path), []
    except InputError as exc:
        if not path.is_file():
            raise UsageError(str(exc)) from None
        return None, [Problem("malformed-json", str(exc).split(": ", 1)[-1])]


def run(args) -> int:
    path = Path(args.annotations)
    if not path.exists():
        raise UsageError(f"{path}: file not found")
    if args.images and not Path(args.images).is_dir():
        raise UsageError(f"{args.images}: image folder not found")
    data, problems = _load_document(path)
    if data is not None:
        problems += validate_document(data, images_dir=args.images, masks=not args.no_masks,
                                      progress=sys.stderr.isatty())
    counts = summarize(problems)
    if args.json:
        doc = {"file": str(path), "problems": [{"kind": p.kind, "section": p.section, "position": p.position,
                                                "message": p.message} for p in problems],
               "summary": dict(counts)}
        sys.stdout.write(dumps(doc, indent=True).decode() + "\n")
        return 1 if problems else 0
    shown = {}
    for p in problems:
        shown[p.kind] = shown.get(p.kind, 0) + 1
        if not args.max_per_kind or shown[p.kind] <= args.max_per_kind:
            print(p.line(path))
    checked = ""
    if isinstance(data, dict) and all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        checked = f" ({len(data['images'])} images, {len(data['annotations'])} annotations checked" + (
            ", image files too)" if args.images else "; pass --images DIR to check image files)")
    if not problems:
        print(f"{path}: OK{checked}")
        return 0
    print()
    print(f"{'kind':<22} {'count':>7}  meaning")
    for kind in sorted(counts, key=lambda k: list(KINDS).index(k) if k in KINDS else len(KINDS)):
        extra = "" if not args.max_per_kind or counts[kind] <= args.max_per_kind else \
            f" ({counts[kind] - args.max_per_kind} not printed)"
        print(f"{kind:<22} {counts[kind]:>7}  {KINDS.get(kind, kind)}{extra}")
    print(f"{path}: {len(problems)} problem(s) of {len(counts)} kind(s){checked}")
    return 1
