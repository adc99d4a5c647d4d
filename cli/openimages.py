"""`ltaug openimages`: Open Images boxes, labels, hierarchy and masks -> an LVIS json file."""
from __future__ import annotations

import sys

from .common import FORMATTER, add_bin_thresholds

HELP = """\
Read the Open Images detection format into one LVIS json file (COCO boxes and masks plus LVIS's
neg_category_ids / not_exhaustive_category_ids), as the Open Images challenge reads it:

  --boxes: ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,... (normalised)
  --classes: LabelName,DisplayName (the boxable class descriptions): the categories, ids 1..K
  --images: the folder of <ImageID>.jpg; only these images are read (rows of others: skipped)
  --hierarchy: bbox_labels_600_hierarchy.json: a box also gets its ancestors' labels (one
    annotation per label, sharing the box and an `object_id`; categories get `parent_ids`)
  --labels (repeatable): image-level labels ImageID,Source,LabelName,Confidence. Human-verified
    Confidence 0: neg_category_ids (with the class's descendants); Source machine (unverified)
    and verified positives without a box: not_exhaustive_category_ids (with the ancestors)
  --masks: the segmentation CSV (MaskPath,ImageID,LabelName,BoxID,BoxXMin,...); PNGs in
    --mask-dir (default: beside the CSV), resized to the image, stored as RLE

A box listed under several labels (Toy and Car) is one object with one annotation per label.
`ltaug concurrence` counts those labels into the rates that `ltaug train --loss
concurrent_softmax --concurrence FILE` uses. Rules in full: ltaug.io.openimages.

examples:
  ltaug openimages --boxes oidv6-train-annotations-bbox.csv --classes oidv6-class-descriptions-boxable.csv \\
      --hierarchy bbox_labels_600_hierarchy.json --labels oidv6-train-annotations-human-imagelabels.csv \\
      --images train/ -o oi_train.json
  ltaug concurrence oi_train.json -o concurrence.json"""


def add_parser(sub) -> None:
    p = sub.add_parser("openimages", help="read Open Images CSVs (boxes, labels, hierarchy, masks) as LVIS json",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("--boxes", required=True, metavar="CSV", help="box annotations (…-annotations-bbox.csv)")
    p.add_argument("--classes", required=True, metavar="CSV", help="class descriptions (LabelName,DisplayName)")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of <ImageID>.jpg")
    p.add_argument("-o", "--output", required=True, metavar="OUT.json", help="LVIS json file to write")
    p.add_argument("--hierarchy", metavar="JSON", help="class hierarchy (bbox_labels_600_hierarchy.json)")
    p.add_argument("--labels", action="append", default=[], metavar="CSV",
                   help="image-level labels (human-verified and/or machine), repeatable")
    p.add_argument("--masks", metavar="CSV", help="instance masks (…-annotations-object-segmentation.csv)")
    p.add_argument("--mask-dir", metavar="DIR", help="folder of the mask PNGs (default: the CSV's folder)")
    add_bin_thresholds(p, defaults_from_file=False)
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import read_openimages

    ds = read_openimages(args.boxes, args.classes, args.images, args.output, hierarchy=args.hierarchy,
                         labels=args.labels, masks=args.masks, mask_dir=args.mask_dir, rare_max=args.rare_max,
                         common_max=args.common_max)
    objects = len({(a["image_id"], a["object_id"]) for a in ds.annotations})
    print(f"wrote {args.output}: {len(ds.images)} images, {objects} objects as {len(ds.annotations)} annotations "
          f"(one per label), {len(ds.categories)} categories (lvis)", file=sys.stderr)
    return 0
