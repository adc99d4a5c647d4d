"""Build an LVIS-shaped document with every LVIS field, from the demo images and real LVIS categories.

LVIS v1 json: categories carry ``synset``, ``synonyms``, ``def``, ``frequency``,
``image_count``, ``instance_count``; images carry ``coco_url`` (no ``file_name``),
``neg_category_ids``, ``not_exhaustive_category_ids``; annotations have no ``iscrowd``.
The demo's COCO classes are mapped onto LVIS categories of the same name where one exists,
otherwise onto a seeded choice, so the file mixes real LVIS statistics with real masks.
"""
from __future__ import annotations

import json
import random
from pathlib import Path


def build_lvis_style(demo_doc: dict, cat_info_path: Path, *, seed: int = 0) -> dict:
    rng = random.Random(seed)
    lvis_cats = json.loads(Path(cat_info_path).read_text())
    by_name = {c["name"]: c for c in lvis_cats}
    free = [c for c in lvis_cats if c["name"] not in {k["name"] for k in demo_doc["categories"]}]
    rng.shuffle(free)
    mapping = {}
    for c in demo_doc["categories"]:
        target = by_name.get(c["name"]) or free.pop()
        mapping[c["id"]] = target["id"]
    images = []
    present = {}
    for a in demo_doc["annotations"]:
        present.setdefault(a["image_id"], set()).add(mapping[a["category_id"]])
    all_ids = [c["id"] for c in lvis_cats]
    for im in demo_doc["images"]:
        absent = [i for i in all_ids if i not in present.get(im["id"], set())]
        images.append({
            "id": im["id"], "width": im["width"], "height": im["height"], "license": im["license"],
            "flickr_url": im["flickr_url"], "coco_url": im["coco_url"], "date_captured": im["date_captured"],
            "neg_category_ids": sorted(rng.sample(absent, 5)),
            "not_exhaustive_category_ids": sorted(rng.sample(sorted(present.get(im["id"], {1})), 1)),
        })
    anns = []
    for a in demo_doc["annotations"]:
        if a["iscrowd"]:
            continue
        anns.append({"id": a["id"], "image_id": a["image_id"], "category_id": mapping[a["category_id"]],
                     "segmentation": a["segmentation"], "area": a["area"], "bbox": a["bbox"]})
    return {"info": {"description": "LVIS-style test file", "year": 2020},
            "licenses": demo_doc["licenses"], "images": images, "annotations": anns, "categories": lvis_cats}
