"""A small sample in the Open Images detection format, built from the real demo data (COCO-LT-mini).

Images are linked as ``<ImageID>.jpg`` (ImageID: the COCO id as 16 hex digits); classes get
``/m/coco<id>`` MIDs with COCO's names; the hierarchy is COCO's supercategories (``/m/super_<name>``,
named ``<name> (supercategory)``) under the virtual root ``/m/0bl9f`` (Entity, listed among the
classes as in the published descriptions); COCO crowd regions are written as group-of boxes.
Image-level labels: each image's classes as human-verified positives, the supercategories it has no
object of as verified negatives (the reader expands them to their classes), and one machine label.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
from conftest import DEMO

ROOT_MID = "/m/0bl9f"
BOX_HEADER = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax", "IsOccluded",
              "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"]


def image_id(coco_id: int) -> str:
    return f"{coco_id:016x}"


def class_mid(cat_id: int) -> str:
    return f"/m/coco{cat_id}"


def super_mid(name: str) -> str:
    return f"/m/super_{name.replace(' ', '_')}"


def write_csv(path: Path, rows, header=None) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


def build_sample(folder: Path, split: str = "train", n_images: int | None = None) -> dict[str, Path]:
    """Write the sample under ``folder``; returns the paths of its files (boxes, classes,
    hierarchy, labels, images)."""
    doc = json.loads((DEMO / "annotations" / f"{split}.json").read_text())
    images = sorted(doc["images"], key=lambda im: im["id"])[:n_images]
    keep = {im["id"] for im in images}
    folder.mkdir(parents=True, exist_ok=True)
    img_dir = folder / "images"
    img_dir.mkdir()
    for im in images:
        src = DEMO / "images" / split / im["file_name"]
        dst = img_dir / f"{image_id(im['id'])}.jpg"
        try:
            os.symlink(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    cats = doc["categories"]
    supers = sorted({c["supercategory"] for c in cats})
    write_csv(folder / "classes.csv", [[ROOT_MID, "Entity"], *([class_mid(c["id"]), c["name"]] for c in cats),
                                       *([super_mid(s), f"{s} (supercategory)"] for s in supers)])
    tree = {"LabelName": ROOT_MID, "Subcategory": [
        {"LabelName": super_mid(s), "Subcategory": [{"LabelName": class_mid(c["id"])} for c in cats
                                                     if c["supercategory"] == s]} for s in supers]}
    (folder / "hierarchy.json").write_text(json.dumps(tree))
    size = {im["id"]: (im["width"], im["height"]) for im in images}
    rows = []
    for a in doc["annotations"]:
        if a["image_id"] not in keep:
            continue
        w, h = size[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        coords = np.clip([x / w, (x + bw) / w, y / h, (y + bh) / h], 0, 1)
        rows.append([image_id(a["image_id"]), "xclick", class_mid(a["category_id"]), 1,
                     *(f"{v:.8f}" for v in coords), 0, 0, int(a["iscrowd"]), 0, 0])
    write_csv(folder / "boxes.csv", rows, BOX_HEADER)
    sup_of = {c["id"]: c["supercategory"] for c in cats}
    labels = []
    for im in images:
        present = sorted({a["category_id"] for a in doc["annotations"] if a["image_id"] == im["id"]})
        labels += [[image_id(im["id"]), "verification", class_mid(c), 1] for c in present]
        labels += [[image_id(im["id"]), "verification", super_mid(s), 0] for s in supers
                   if s not in {sup_of[c] for c in present}]
    labels.append([image_id(images[0]["id"]), "machine", "/m/not_boxable", "0.9"])
    write_csv(folder / "labels.csv", labels, ["ImageID", "Source", "LabelName", "Confidence"])
    return {"boxes": folder / "boxes.csv", "classes": folder / "classes.csv", "hierarchy": folder / "hierarchy.json",
            "labels": folder / "labels.csv", "images": img_dir}
