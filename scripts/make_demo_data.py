"""Rebuild examples/data/ (the bundled demo set) from ../shared/data/coco-lt.

Only images whose Flickr license allows redistribution (COCO license ids 4, 5, 7, 8) are
taken. Images are chosen greedily, in id order, to cover as many classes as possible, which
gives a small set with a long tail (a few common classes, many with one or two instances).
The result is deterministic. Run: python scripts/make_demo_data.py
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REDISTRIBUTABLE = {4, 5, 7, 8}
COUNTS = {"train": 30, "val": 10}
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "coco-lt"
OUT = ROOT / "examples" / "data"


def pick(doc: dict, n: int) -> list[dict]:
    cats_of: dict[int, set] = {}
    for a in doc["annotations"]:
        cats_of.setdefault(a["image_id"], set()).add(a["category_id"])
    pool = sorted((im for im in doc["images"] if im["license"] in REDISTRIBUTABLE and im["id"] in cats_of),
                  key=lambda im: im["id"])
    chosen, covered = [], set()
    while len(chosen) < n and pool:
        best = max(pool, key=lambda im: (len(cats_of[im["id"]] - covered), -im["id"]))
        pool.remove(best)
        chosen.append(best)
        covered |= cats_of[best["id"]]
    return sorted(chosen, key=lambda im: im["id"])


def main() -> int:
    docs = {s: json.loads((SHARED / "annotations" / f"instances_{s}.json").read_text()) for s in COUNTS}
    picked = {s: pick(docs[s], n) for s, n in COUNTS.items()}
    used = {a["category_id"] for s in COUNTS for a in docs[s]["annotations"]
            if a["image_id"] in {im["id"] for im in picked[s]}}
    lines = ["# Attribution of the demo images", "",
             "Images from the COCO 2017 dataset (annotations CC BY 4.0, COCO Consortium), each under",
             "the Flickr license named below; only licenses that allow redistribution were taken.", ""]
    for split, images in picked.items():
        doc = docs[split]
        ids = {im["id"] for im in images}
        licenses = {lic["id"]: lic for lic in doc["licenses"]}
        out = dict(doc)
        out["info"] = dict(doc["info"], description=f"ltaug demo set ({split}): {len(images)} redistributable "
                                                      f"images cut from COCO-LT-mini {split}")
        out["licenses"] = [lic for lic in doc["licenses"] if lic["id"] in {im["license"] for im in images}]
        out["images"] = images
        out["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
        out["categories"] = [c for c in doc["categories"] if c["id"] in used]
        img_dir = OUT / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        for im in images:
            shutil.copyfile(SHARED / "images" / f"{split}2017" / im["file_name"], img_dir / im["file_name"])
        (OUT / "annotations").mkdir(parents=True, exist_ok=True)
        (OUT / "annotations" / f"{split}.json").write_text(json.dumps(out, indent=1) + "\n")
        lines += [f"## {split} ({len(images)} images)", "", "| file | Flickr URL | license |", "|---|---|---|"]
        for im in images:
            lic = licenses[im["license"]]
            lines.append(f"| images/{split}/{im['file_name']} | {im['flickr_url']} | [{lic['name']}]({lic['url']}) |")
        lines.append("")
        print(f"{split}: {len(images)} images, {len(out['annotations'])} annotations", file=sys.stderr)
    (OUT / "ATTRIBUTION.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
