"""The report's blending grid: one pasted image of the output, its objects at the same places,
pasted again with each blending mode (:func:`ltaug.pixels.blend_compare.blend_comparison`).

Which image: of the output's images that a paste step made from one of the input's images
(``ltaug.op`` paste, one source image) or on a background, the one whose pasted boxes cover the
most pixels. Its objects are
cut again from the input (the annotation's crop, the box made integer outwards, and its mask, as
the bank cuts them), sized, flipped and turned as the image's provenance records them
(``params.objects``), and pasted onto the input image in their order, once per mode. So the
grid shows the step's placements; the pixels of the objects are the input's (the bank stores
them JPEG-compressed, the difference is invisible at this size).

Cutting again needs the input's annotations, which the report has let go of by then (one large
dataset in memory at a time): the input is read again when its file is at most
:data:`MAX_INPUT_BYTES`; past that (LVIS-sized files), the section says so instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ltaug.errors import LtaugError
from ltaug.io.dataset import Dataset
from ltaug.io.paths import image_file_name
from ltaug.pixels.bank import crop_boxes
from ltaug.pixels.blend_compare import MODES, blend_comparison, labelled_grid
from ltaug.pixels.functional import resize_object
from ltaug.pixels.imagefile import read_image
from ltaug.pixels.placement import warp_object

MAX_INPUT_BYTES = 64 << 20


def pasted_example(after: Dataset) -> tuple[dict, list[dict]] | None:
    """``(image record, placements)`` of the output image a paste step made from one input image
    whose pasted boxes cover the most pixels (the first such image on a tie): the one that
    shows the blending best."""
    best, best_area = None, -1
    for im in after.images:
        rec = im.get("ltaug") or {}
        objects = (rec.get("params") or {}).get("objects") or []
        onto = len(rec.get("source_image_ids") or []) == 1 or (rec.get("params") or {}).get("background")
        if rec.get("op") == "paste" and onto and objects:
            area = sum(o["w"] * o["h"] for o in objects)
            if area > best_area:
                best, best_area = (im, objects), area
    return best


def cut_object(image: np.ndarray, mask: np.ndarray, bbox) -> tuple[np.ndarray, np.ndarray]:
    """The object's crop and 0/1 mask in the bank's crop box (:func:`~ltaug.pixels.bank.crop_boxes`)."""
    x0, y0, x1, y1 = crop_boxes([bbox], mask.shape[0], mask.shape[1])[0].tolist()
    return image[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy()


def blend_grid(after: Dataset, before_path: Path, images_dir: Path, width: int,
               backgrounds: str | None = None) -> tuple[bytes | None, str]:
    """The grid as JPEG bytes (None when there is none) and a note saying what it shows or why not.
    ``backgrounds``: the folder of a paste step's backgrounds (an image made on one is drawn on it,
    fitted as the step fitted it)."""
    import cv2
    from pycocotools import mask as mask_utils

    from ltaug.io.read import load_dataset
    from ltaug.pixels import masks

    found = pasted_example(after)
    if found is None:
        return None, "No image of this output was pasted from an input image."
    if not before_path.is_file() or before_path.stat().st_size > MAX_INPUT_BYTES:
        return None, (f"Not drawn: the input file is over {MAX_INPUT_BYTES >> 20} MiB (reading it again would "
                      "double the report's time); `ltaug.pixels.blend_compare` draws it for any image.")
    im, objects = found
    params = im["ltaug"].get("params") or {}
    try:
        before = load_dataset(before_path)
        records = {r["id"]: r for r in before.images}
        anns = {a["id"]: a for a in before.annotations}
        if params.get("background"):
            if backgrounds is None:
                return None, "Not drawn: the run does not name its backgrounds folder."
            from ltaug.pixels.backgrounds import fit_background

            where = f"background {params['background']}"
            canvas = read_image(Path(backgrounds) / params["background"], where)
            canvas = fit_background(canvas, params.get("fit", "keep"), (im["width"], im["height"]))
        else:
            source_id = im["ltaug"]["source_image_ids"][0]
            where = f"input image {source_id}"
            target = records[source_id]
            name = image_file_name(target)
            assert name is not None
            canvas = read_image(images_dir / name, source_id, target["height"], target["width"])
        pieces, decoded = [], {}
        for o in objects:
            a = anns[o["annotation_id"]]
            src = records[a["image_id"]]
            if src["id"] not in decoded:
                src_name = image_file_name(src)
                assert src_name is not None
                decoded[src["id"]] = read_image(images_dir / src_name, src["id"], src["height"], src["width"])
            rle, box_only = masks.annotation_rle(a.get("segmentation"), a["bbox"], src["height"], src["width"], a["id"])
            crop, mask = cut_object(decoded[src["id"]], mask_utils.decode(rle), a["bbox"])
            if box_only:
                mask = np.ones_like(mask)
            if "size" in o:
                crop, mask = resize_object(crop, mask, o["size"][0], o["size"][1], o["flip"])
                crop, mask = warp_object(crop, mask, o["angle"], o["shear"])
            else:
                crop, mask = resize_object(crop, mask, o["w"], o["h"], o["flip"])
            pieces.append((crop, mask, o["x"], o["y"]))
    except (KeyError, LtaugError) as exc:
        return None, f"Not drawn: the input no longer holds what image id {im['id']} was pasted from ({exc})."
    shown = blend_comparison(canvas, pieces, MODES)
    labels = [f"{mode} ({', '.join(sorted(set(used)))})" if set(used) != {mode.partition('+')[0]} else mode
              for mode, (_, used) in zip(MODES, shown)]
    grid = labelled_grid([img for img, _ in shown], labels, cols=2, tile_width=width)
    ok, buf = cv2.imencode(".jpg", grid, [cv2.IMWRITE_JPEG_QUALITY, 88])
    note = (f"Image id {im['id']} ({where}): its {len(pieces)} pasted object(s) at the same "
            f"places, pasted with each mode (a label in brackets names the fallback a mode fell back to).")
    return (buf.tobytes() if ok else None), note
