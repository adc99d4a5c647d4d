"""`ltaug convert`: COCO <-> LVIS json <-> YOLO-seg folder."""
from __future__ import annotations

import sys
from pathlib import Path

from ltaug.io.yolo import LINKS

from .common import FORMATTER, add_bin_thresholds, add_on_error, flag_errors

HELP = """\
Convert between COCO json, LVIS json and YOLO-seg folders (ultralytics layout: data.yaml with
`names`, images/, labels/*.txt with one normalised polygon per line).

The output format follows --to, or else the output path: a *.json path gives COCO (LVIS when
the input is LVIS), anything else a YOLO-seg folder.

  COCO/LVIS/YOLO -> YOLO: class ids become 0..K-1 in the order of the input's ids (names kept
    in data.yaml), as ultralytics requires ("80-class dataset requires class indices 0-79");
    when that changes an id (COCO's 1..90), the summary and data.yaml's `ltaug_id_map` (a key
    ultralytics ignores) give input id -> new id. --keep-ids keeps the input's ids instead: ids with gaps get
    placeholder classes `unused_<id>` (no objects; listed in `ltaug_placeholder_ids`, left out
    when ltaug reads the folder) so that ultralytics still accepts the data.yaml, with a
    warning; it is refused when the placeholders would outnumber the classes.
    Multi-part polygons are joined into one with zero-width bridges; crowd regions are not
    representable in YOLO and are skipped (counted in the summary). Pass --images to put
    the images into the folder (--link: copy, hardlink, symlink or none).
  YOLO -> COCO: INPUT is the folder or its data.yaml (any *.yaml / *.yml). Image ids 1..N in
    file-name order, file_name relative to the YOLO images folder, polygons in pixels (within
    one pixel of the original), areas from the mask; data.yaml `names` as a list or a mapping,
    gaps included (category ids = class ids). A split folder data.yaml names that does not
    exist (an absolute `path` from another machine, images/train2017 while the images lie in
    images/) falls back to the folder below data.yaml that holds the images, with one warning
    naming it; --images DIR reads DIR instead of data.yaml's folder.
  COCO -> LVIS: adds image_count, instance_count and frequency per category, and per image
    neg_category_ids (every category absent: COCO is exhaustively annotated) and an empty
    not_exhaustive_category_ids.

examples:
  ltaug convert instances_train.json --images train2017/ -o yolo_train/
  ltaug convert yolo_train/ -o instances_from_yolo.json
  ltaug convert roboflow_export/data.yaml --split val -o val.json
  ltaug convert yolo_train/ --images yolo_train/images/train2017 -o train.json
  ltaug convert instances_train.json --images train2017/ -o yolo_coco_ids/ --keep-ids
  ltaug convert instances_train.json --to lvis -o lvis_style_train.json --rare-max 2 --common-max 10"""


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert between COCO, LVIS and YOLO-seg",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("input", metavar="INPUT", help="COCO/LVIS json file, or YOLO-seg folder or its *.yaml")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="json file or YOLO folder to write")
    p.add_argument("--to", choices=("coco", "lvis", "yolo"), help="output format (default: from OUTPUT)")
    p.add_argument("--images", metavar="DIR", help="image folder of a json input (for YOLO output); of a YOLO "
                                                   "input: the images to read instead of data.yaml's split folder")
    p.add_argument("--link", choices=LINKS, default=LINKS[0],
                   help="how images enter a YOLO output folder (default: copy)")
    p.add_argument("--split", default="train", help="data.yaml entry to read from a YOLO folder: train, val, "
                                                    "test (default: train)")
    p.add_argument("--val", metavar="VAL", help="YOLO output: the validation split's annotations (json, or YOLO "
                                                "folder), written beside as images/val + labels/val, with the "
                                                "input as images/train + labels/train and one data.yaml")
    p.add_argument("--val-images", metavar="DIR", help="the image folder of --val")
    p.add_argument("--keep-ids", action="store_true",
                   help="YOLO output: keep the input's class ids instead of 0..K-1 (gaps get placeholder classes)")
    add_bin_thresholds(p, defaults_from_file=False)
    add_on_error(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import convert

    with flag_errors("split", "keep_ids", "val", "val_images"):
        r = convert(Path(args.input), args.output, to=args.to, images=args.images, link=args.link, split=args.split,
                    rare_max=args.rare_max, common_max=args.common_max, on_error=args.on_error, strict=args.strict,
                    keep_ids=args.keep_ids, val=args.val, val_images=args.val_images)
    out = r.output
    if r.yolo is not None:
        s = r.yolo
        placed = ", ".join(f"{n} {k[len('images_'):]}" for k, n in s.items() if k.startswith("images_")) or "none"
        repeats = ", ".join(f"{n} {k[len('repeats_'):]}" for k, n in s.items() if k.startswith("repeats_"))
        if repeats:
            placed += f"; repeats of an image (a resampled file, named STEM_repK): {repeats}"
        print(f"wrote YOLO-seg folder {out}: {s['images']} images, {s['objects']} objects in "
              f"{s['labels_written']} label files ({s['empty_labels']} empty), {s['classes']} classes; "
              f"images placed: {placed}", file=sys.stderr)
        if "val" in s:
            v = s["val"]
            print(f"  train in images/train, labels/train; val in images/val, labels/val: {v['images']} images, "
                  f"{v['objects']} objects ({v['empty_labels']} empty label files)", file=sys.stderr)
        if s["ids_changed"]:
            pairs = ", ".join(f"{a}->{b}" for a, b in list(s["id_map"].items())[:6])
            print(f"note: class ids renumbered to 0..{len(s['id_map']) - 1} as ultralytics requires (input id -> new: "
                  f"{pairs}{', ...' if len(s['id_map']) > 6 else ''}; all in data.yaml's ltaug_id_map; "
                  f"--keep-ids keeps them)", file=sys.stderr)
        if s["placeholders"]:
            print(f"note: {len(s['placeholders'])} placeholder class(es) keep the input's ids: "
                  f"data.yaml nc {s['classes'] + len(s['placeholders'])}", file=sys.stderr)
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
