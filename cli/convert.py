"""`ltaug convert`: COCO <-> LVIS json <-> YOLO-seg folder."""
from __future__ import annotations

import sys
from pathlib import Path

from ltaug.io.yolo import LINKS

from .common import FORMATTER, add_bin_thresholds, add_on_error

HELP = """\
Convert between COCO json, LVIS json and YOLO-seg folders (ultralytics layout: data.yaml with
`names`, images/, labels/*.txt with one normalised polygon per line).

The output format follows --to, or else the output path: a *.json path gives COCO (LVIS when
the input is LVIS), anything else a YOLO-seg folder.

  COCO/LVIS -> YOLO: class ids become 0..K-1 in category order (names kept in data.yaml);
    multi-part polygons are joined into one with zero-width bridges; crowd regions are not
    representable in YOLO and are skipped (counted in the summary). Pass --images to put
    the images into the folder (--link: copy, hardlink, symlink or none).
  YOLO -> COCO: image ids 1..N in file-name order, file_name relative to the YOLO images
    folder, polygons in pixels (within one pixel of the original), areas from the mask.
  COCO -> LVIS: adds image_count, instance_count and frequency per category, and per image
    neg_category_ids (every category absent: COCO is exhaustively annotated) and an empty
    not_exhaustive_category_ids.

examples:
  ltaug convert instances_train.json --images train2017/ -o yolo_train/
  ltaug convert yolo_train/ -o instances_from_yolo.json
  ltaug convert instances_train.json --to lvis -o lvis_style_train.json --rare-max 2 --common-max 10"""


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert between COCO, LVIS and YOLO-seg",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("input", metavar="INPUT", help="COCO/LVIS json file or YOLO-seg folder")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="json file or YOLO folder to write")
    p.add_argument("--to", choices=("coco", "lvis", "yolo"), help="output format (default: from OUTPUT)")
    p.add_argument("--images", metavar="DIR", help="image folder of a json input (for YOLO output)")
    p.add_argument("--link", choices=LINKS, default=LINKS[0],
                   help="how images enter a YOLO output folder (default: copy)")
    p.add_argument("--split", default="train", help="split to read from a YOLO folder with images/<split> (default: train)")
    add_bin_thresholds(p, defaults_from_file=False)
    add_on_error(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import convert

    r = convert(Path(args.input), args.output, to=args.to, images=args.images, link=args.link, split=args.split,
                rare_max=args.rare_max, common_max=args.common_max, on_error=args.on_error, strict=args.strict)
    out = r.output
    if r.yolo is not None:
        s = r.yolo
        placed = ", ".join(f"{n} {k[len('images_'):]}" for k, n in s.items() if k.startswith("images_")) or "none"
        print(f"wrote YOLO-seg folder {out}: {s['images']} images, {s['objects']} objects in "
              f"{s['labels_written']} label files ({s['empty_labels']} empty), {s['classes']} classes; "
              f"images placed: {placed}", file=sys.stderr)
        if s["skipped_crowd"]:
            print(f"note: {s['skipped_crowd']} crowd region(s) skipped: YOLO-seg has no crowd annotations",
                  file=sys.stderr)
        return 0
    ds = r.dataset
    if args.to == "coco" and ds.kind == "lvis":
        print("note: LVIS fields are kept in the COCO output (pycocotools ignores them)", file=sys.stderr)
    print(f"wrote {out}: {len(ds.images)} images, {len(ds.annotations)} annotations, "
          f"{len(ds.categories)} categories ({ds.kind})", file=sys.stderr)
    return 0
