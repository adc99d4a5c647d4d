"""The README's pictures of the paste step's placement options, made by running ltaug on the demo data.

    .venv/bin/python docs/pictures/make_paste_pictures.py

Runs three paste steps on the bundled demo set (examples/data; its images and their licences are
listed in examples/data/ATTRIBUTION.md) into a temporary folder and writes, before / after:

* ``paste_rules.jpg``: ``--classes cup,knife,book --inside person --region mask --margin 2
  --rotate 20 --scale-to person``: the objects sit inside the person's mask (its outline drawn
  in blue), turned, sized to the person; the pasted boxes in red;
* ``paste_backgrounds.jpg``: ``--backgrounds`` (a demo val photo) with the same rules against
  the background's annotations: a new image, its own objects kept;
* ``paste_box_only.jpg``: a box-only object (no mask) pasted as a hard rectangle
  (``--box-feather 0``) and with the default feathered edge, zoomed.

The outlines are drawn on the pictures only, never on ltaug's output.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ltaug import load_dataset, run_steps
from ltaug.io.geometry import decode
from ltaug.io.jsonio import write_bytes_atomic
from ltaug.ops import Paste
from ltaug.pixels.blend_compare import labelled_grid
from ltaug.pixels.functional import encode_jpeg

HERE = Path(__file__).resolve().parent
DEMO = HERE.parents[1] / "examples" / "data"
RULES = {"classes": ["cup", "knife", "book"], "inside": "person", "region": "mask", "margin": 2, "rotate": 20,
         "scale_to": "person", "objects": 3}


def outlined(out: Path, image: dict, anns: list[dict], host: int | None) -> np.ndarray:
    """The output image with the host class's mask outlines (blue) and the pasted boxes (red)."""
    img = cv2.imread(str(out / "images" / image["file_name"]))
    for a in anns:
        if a["category_id"] == host and "segmentation" in a:
            m = decode(a["segmentation"], image["height"], image["width"])
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(img, contours, -1, (255, 90, 0), 1)
        if a.get("ltaug", {}).get("op") == "paste":
            x, y, w, h = (round(v) for v in a["bbox"])
            cv2.rectangle(img, (x - 1, y - 1), (x + w, y + h), (0, 0, 255), 1)
    return img


def pasted_images(out: Path) -> tuple[dict, list[dict], dict]:
    doc = json.loads((out / "annotations.json").read_text())
    by: dict = {}
    for a in doc["annotations"]:
        by.setdefault(a["image_id"], []).append(a)
    return doc, [im for im in doc["images"] if im.get("ltaug", {}).get("op") == "paste"], by


def most_pasted(images: list[dict], by: dict) -> dict:
    """The image whose pasted objects cover the most pixels (the one that shows them best)."""
    def shown(im: dict) -> tuple:
        return (sum(a["bbox"][2] * a["bbox"][3] for a in by[im["id"]] if a.get("ltaug", {}).get("op") == "paste"),
                -im["id"])
    return max(images, key=shown)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    train, images = DEMO / "annotations" / "train.json", DEMO / "images" / "train"
    person = next(c["id"] for c in load_dataset(train).categories if c["name"] == "person")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_steps(train, images, work / "rules", [Paste(seed=1, **RULES)], workers=1)
        doc, new, by = pasted_images(work / "rules")
        im = most_pasted(new, by)
        source = next(i for i in load_dataset(train).images if i["id"] == im["id"])
        before = cv2.imread(str(images / source["file_name"]))
        after = outlined(work / "rules", im, by[im["id"]], person)
        grid = labelled_grid([before, after], ["before", "after: cup/knife/book inside person, turned <= 20 deg"],
                             cols=2, tile_width=480)
        write_bytes_atomic(args.out / "paste_rules.jpg", encode_jpeg(grid, 85))

        run_steps(train, images, work / "bg",
                  [Paste(seed=2, backgrounds=str(DEMO / "images" / "val"),
                         background_annotations=str(DEMO / "annotations" / "val.json"), background_ratio=0.3,
                         **RULES)], workers=1)
        doc, new, by = pasted_images(work / "bg")
        im = most_pasted(new, by)
        before = cv2.imread(str(DEMO / "images" / "val" / im["ltaug"]["params"]["background"]))
        after = outlined(work / "bg", im, by[im["id"]], person)
        grid = labelled_grid([before, after], ["a background", "a new image: objects inside its people"],
                             cols=2, tile_width=480)
        write_bytes_atomic(args.out / "paste_backgrounds.jpg", encode_jpeg(grid, 85))

        boxes = load_dataset(train)
        boxes = boxes.replace(annotations=[{k: v for k, v in a.items() if k != "segmentation"}
                                           for a in boxes.annotations])
        boxes.save(work / "boxes.json")
        tiles, labels = [], []
        for feather, label in ((0.0, "box-only, --box-feather 0"), (0.05, "box-only, feathered (default 0.05)")):
            run_steps(work / "boxes.json", images, work / f"box{feather}",
                      [Paste(seed=3, objects=2, classes=["car", "bus", "truck"], box_feather=feather, scale=(2.0, 2.0))], workers=1)
            doc, new, by = pasted_images(work / f"box{feather}")
            im, a = max(((i, a) for i in new for a in by[i["id"]] if a.get("ltaug", {}).get("op") == "paste"),
                        key=lambda ia: (ia[1]["bbox"][2] * ia[1]["bbox"][3], -ia[1]["id"]))  # the largest: same in both
            x, y, w, h = (round(v) for v in a["bbox"])
            img = cv2.imread(str(work / f"box{feather}" / "images" / im["file_name"]))
            pad = max(w, h) // 3
            crop = img[max(0, y - pad):y + h + pad, max(0, x - pad):x + w + pad]
            tiles.append(cv2.resize(crop, (360, round(360 * crop.shape[0] / crop.shape[1])),
                                    interpolation=cv2.INTER_LINEAR))
            labels.append(label)
        h = min(t.shape[0] for t in tiles)
        grid = labelled_grid([t[:h] for t in tiles], labels, cols=2, tile_width=360)
        write_bytes_atomic(args.out / "paste_box_only.jpg", encode_jpeg(grid, 85))
    for name in ("paste_rules.jpg", "paste_backgrounds.jpg", "paste_box_only.jpg"):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
