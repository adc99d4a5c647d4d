"""The README's blending picture: three COCO objects pasted into one COCO photo, at the same
places, with each blending mode (ltaug.pixels.blend_compare), in a labelled grid.

    .venv/bin/python docs/pictures/make_blend_pictures.py [--data ../shared/data/coco-lt]

Writes ``docs/pictures/blend_modes.jpg`` (the four modes, whole image) and
``docs/pictures/blend_modes_zoom.jpg`` (the same, cropped around two of the objects at 2x), and
``docs/pictures/blend_modes_attribution.md``. Every image used is from COCO-LT-mini's train
split under a Flickr license that allows redistribution with attribution (ids 4, 5, 7, 8).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ltaug.io.jsonio import read_json, write_bytes_atomic
from ltaug.pixels.blend_compare import blend_comparison, labelled_grid
from ltaug.pixels.functional import decode_image, encode_jpeg, resize_object

HERE = Path(__file__).resolve().parent
TARGET = 78499  # a mountain meadow: textured rock and grass
# (annotation id, x, y, width): which object goes where, at which width (height keeps its aspect)
OBJECTS = [(270608, 40, 175, 86),    # a stop sign, on the rocky slope
           (166264, 420, 215, 150),  # a bus, on the scree across the valley
           (40551, 80, 320, 66)]     # a budgerigar, on the grass
MODES = ("gaussian", "poisson", "poisson_mixed", "gaussian+lab")
ZOOM = [(25, 160, 116, 140), (405, 180, 180, 140)]  # x, y, w, h around the stop sign and the bus
REDISTRIBUTABLE = {4, 5, 7, 8}


def cut(ann: dict, info: dict, images: Path) -> tuple[np.ndarray, np.ndarray]:
    """The object's crop (its box made integer outwards) and 0/1 mask, from its image and polygons."""
    img = decode_image((images / info["file_name"]).read_bytes())
    if img is None:
        sys.exit(f"{images / info['file_name']}: not a decodable image")
    m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], info["height"],
                                                                   info["width"])))
    x, y, w, h = ann["bbox"]
    x0, y0, x1, y1 = int(np.floor(x)), int(np.floor(y)), int(np.ceil(x + w)), int(np.ceil(y + h))
    return img[y0:y1, x0:x1].copy(), m[y0:y1, x0:x1].copy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data" / "coco-lt")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    data = read_json(args.data / "annotations" / "instances_train.json")
    images = args.data / "images" / "train2017"
    infos = {i["id"]: i for i in data["images"]}
    anns = {a["id"]: a for a in data["annotations"]}
    target = decode_image((images / infos[TARGET]["file_name"]).read_bytes())
    objects, used_images = [], [infos[TARGET]]
    for aid, x, y, width in OBJECTS:
        ann = anns[aid]
        info = infos[ann["image_id"]]
        crop, m = cut(ann, info, images)
        height = round(crop.shape[0] * width / crop.shape[1])
        objects.append((*resize_object(crop, m, width, height), x, y))
        used_images.append(info)
    bad = [i["id"] for i in used_images if i["license"] not in REDISTRIBUTABLE]
    if bad or target is None:
        sys.exit(f"images {bad} may not be redistributed" if bad else "the target image is not decodable")
    result = blend_comparison(target, objects, MODES, sigma=1.5)
    labels = [f"{mode}" + ("" if set(used) == {mode.split("+")[0]} else f" ({', '.join(used)})")
              for mode, (_, used) in zip(MODES, result)]
    grid = labelled_grid([r[0] for r in result], labels, cols=2, tile_width=400)
    write_bytes_atomic(args.out / "blend_modes.jpg", encode_jpeg(grid, 80))
    zooms = []
    for out, _ in result:
        parts = [cv2.resize(out[y:y + h, x:x + w], (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC) for x, y, w, h in ZOOM]
        zooms.append(np.hstack([cv2.copyMakeBorder(p, 0, 0, 0, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))
                                for p in parts]))
    zoom = labelled_grid(zooms, list(MODES), cols=2, tile_width=zooms[0].shape[1])  # at 2x, not resized
    write_bytes_atomic(args.out / "blend_modes_zoom.jpg", encode_jpeg(zoom, 80))
    licenses = {lic["id"]: lic for lic in data.get("licenses", [])}
    lines = ["# Attribution of the images in blend_modes.jpg and blend_modes_zoom.jpg", "",
             "From the COCO 2017 dataset (annotations CC BY 4.0, COCO Consortium), each under the Flickr",
             "license named below; made by docs/pictures/make_blend_pictures.py.", "",
             "| role | COCO image | Flickr URL | license |", "|---|---|---|---|"]
    roles = ["target"] + [f"object (annotation {aid})" for aid, *_ in OBJECTS]
    for role, i in zip(roles, used_images):
        lic = licenses.get(i["license"], {"name": f"license {i['license']}", "url": ""})
        lines.append(f"| {role} | {i['file_name']} | {i.get('flickr_url', '')} | [{lic['name']}]({lic['url']}) |")
    write_bytes_atomic(args.out / "blend_modes_attribution.md", ("\n".join(lines) + "\n").encode())
    for name in ("blend_modes.jpg", "blend_modes_zoom.jpg"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
