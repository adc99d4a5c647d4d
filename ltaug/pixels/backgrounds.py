"""Pasting onto new backgrounds: images made of a background photo and pasted bank objects only.

A production team with a rare defect has many photos of defect-free parts and a few annotated
defects. ``paste --backgrounds DIR`` makes new training images from those photos: each is a
background (any size; kept, resized or tiled as asked) with ``objects`` bank objects pasted by
the paste step's rules, added to the dataset's images (which the step leaves as they are), as
many as ``background_ratio`` times the dataset's images (under ``budget``: as many as the
deficits need, at most that). A pipeline that pastes onto the dataset's own images too runs two
paste steps.

``background_annotations`` (a COCO file whose ``file_name``s are relative to DIR) annotates the
backgrounds, for example the parts a defect must lie on: its classes, matched by name to the
dataset's, are kept as annotations of the new images (cut where pasted objects cover them) and
are what ``onto_classes``, ``inside``, ``outside`` and ``scale_to`` see. They need
``background_fit: keep`` (a resized or tiled background would need its annotations moved).

Fits (``background_fit``, to ``background_size`` W x H): ``keep`` the photo as it is (upright);
``resize`` scaled to cover W x H (the larger of W/w, H/h; bilinear) and cut to it around the
centre; ``tile`` repeated from the top-left corner and cut to W x H (for texture patches).

Which background each new image gets: every background once in a seeded order, then again in a
new order, and so on (each used equally often), from ``default_rng([seed, BACKGROUND_STREAM])``,
which also draws the objects (:class:`~ltaug.pixels.copy_paste.ObjectPool`) and places them.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ltaug.errors import InputError, UsageError
from ltaug.pixels.bank import Bank
from ltaug.pixels.copy_paste import (
                                     ObjectPool,
                                     _budget_objects,
                                     budget_per_image,
                                     drawn_classes,
                                     place_counted,
                                     plan_start,
)
from ltaug.pixels.placement import Rules, Scene, mean_areas

FITS = ("keep", "resize", "tile")
BACKGROUND_STREAM = 0xB6  # the planner's generator for backgrounds is default_rng([seed, BACKGROUND_STREAM])
SUFFIXES = frozenset(".bmp .jpeg .jpg .png .tif .tiff .webp".split())


@dataclass(frozen=True)
class Background:
    """One background: its file name in the folder, its size once fitted (w, h), and its
    annotations (category ids of the dataset; ``id`` is the annotation's id in
    ``background_annotations``)."""

    name: str
    width: int
    height: int
    annotations: list[dict] = field(default_factory=list)

    def holds(self, category_ids) -> bool:
        return any(a["category_id"] in category_ids and not a.get("iscrowd") for a in self.annotations)

    def meets(self, rules: Rules) -> bool:
        """Whether the rules allow pasting onto this background (onto / not_onto; the classes
        ``inside`` and ``scale_to`` need)."""
        if rules.onto and not self.holds(rules.onto):
            return False
        if rules.not_onto and self.holds(rules.not_onto):
            return False
        return all(self.holds({c}) for c in (rules.inside, rules.scale_to) if c is not None)


def fitted_size(width: int, height: int, fit: str, size) -> tuple[int, int]:
    """(w, h) of a ``width x height`` background after ``fit`` to ``size`` (W, H)."""
    return (int(width), int(height)) if fit == "keep" else (int(size[0]), int(size[1]))


def fit_background(img: np.ndarray, fit: str, size) -> np.ndarray:
    """The background ``img`` kept, resized to cover ``size`` (W, H) and cut around the centre,
    or tiled from the top-left corner and cut (module docstring)."""
    if fit == "keep":
        return img
    W, H = int(size[0]), int(size[1])
    h, w = img.shape[:2]
    if fit == "tile":
        return np.ascontiguousarray(np.tile(img, (math.ceil(H / h), math.ceil(W / w), 1))[:H, :W])
    s = max(W / w, H / h)
    rw, rh = max(W, round(w * s)), max(H, round(h * s))
    big = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)
    x0, y0 = (rw - W) // 2, (rh - H) // 2
    return np.ascontiguousarray(big[y0:y0 + H, x0:x0 + W])


def background_files(root: Path) -> list[Path]:
    """The image files (by suffix, :data:`SUFFIXES`) of the folder ``root`` and its sub-folders,
    sorted; none when it is not a folder."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def read_backgrounds(folder: str | Path, dataset, spec) -> list[Background]:
    """The backgrounds of ``folder`` (image files, sorted by name, sub-folders included), their
    fitted sizes, and their annotations from ``spec.background_annotations``; a one-line
    :class:`InputError` / :class:`UsageError` for an empty folder, an unreadable header, or an
    annotation file that names files or classes the folder / the dataset lacks."""
    from ltaug.io.imagecheck import HeaderError, TooManyPixels, read_header

    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{root}: backgrounds folder not found")
    names = [p.relative_to(root).as_posix() for p in background_files(root)]
    if not names:
        raise UsageError(f"{root}: no background images (files ending in {', '.join(sorted(SUFFIXES))})")
    anns, sizes = _annotations(spec, dataset, set(names))
    out = []
    for name in names:
        if name in sizes:
            w, h = sizes[name]
        else:
            try:
                w, h = read_header(np.fromfile(root / name, np.uint8).data).upright
            except (HeaderError, TooManyPixels, OSError) as exc:
                raise InputError(f"{root / name}: background cannot be read as an image ({exc})") from None
        fw, fh = fitted_size(w, h, spec.background_fit, spec.background_size)
        out.append(Background(name, fw, fh, anns.get(name, [])))
    return out


def _annotations(spec, dataset, names: set[str]) -> tuple[dict[str, list[dict]], dict[str, tuple[int, int]]]:
    """Annotations and sizes of the backgrounds from ``spec.background_annotations`` (none without)."""
    path = spec.background_annotations
    if path is None:
        return {}, {}
    if spec.background_fit != "keep":
        raise UsageError(f"background_annotations needs background_fit keep (got {spec.background_fit!r}): "
                         "resized or tiled backgrounds would need their annotations moved")
    from ltaug.io.read import load_dataset

    bg = load_dataset(path)
    ours = {c["name"]: c["id"] for c in dataset.categories}
    theirs = {c["id"]: c["name"] for c in bg.categories}
    used = {a["category_id"] for a in bg.annotations}
    unknown = sorted(theirs[c] for c in used if theirs[c] not in ours)
    if unknown:
        raise UsageError(f"{path}: classes the dataset does not have: {', '.join(unknown[:5])} (matched by name)")
    files = {im["id"]: im for im in bg.images}
    missing = sorted(im["file_name"] for im in bg.images if im["file_name"] not in names)
    if missing:
        raise UsageError(f"{path}: image {missing[0]!r} is not in the backgrounds folder"
                         + (f" ({len(missing) - 1} more)" if len(missing) > 1 else ""))
    anns: dict[str, list[dict]] = {}
    for a in bg.annotations:
        name = files[a["image_id"]]["file_name"]
        rec = {k: a[k] for k in ("id", "bbox", "area", "iscrowd", "segmentation") if k in a}
        anns.setdefault(name, []).append({**rec, "category_id": ours[theirs[a["category_id"]]]})
    return anns, {im["file_name"]: (int(im["width"]), int(im["height"])) for im in bg.images}


def iter_plan_backgrounds(dataset, bank: Bank, spec, backgrounds: list[Background]) -> tuple[Iterator[dict], dict, int]:
    """New images on backgrounds, planned one at a time: ``(recipes, summary, count)``.

    A recipe: ``{"background": name, "size": [w, h], "annotations": [...], "objects": [placement,
    ...]}`` (placements of :func:`~ltaug.pixels.copy_paste.place_objects` under the step's
    rules; ``annotations``: the background's). Objects are chosen as the paste step chooses them
    (uniform / inverse: ``objects`` per new image, classes weighted by the dataset's counts;
    budget: the deficits, ``objects`` per new image). The summary has what the dataset paste's
    has, and ``backgrounds`` (how many, and how many the rules allow) and ``new_images``.
    """
    rng = np.random.default_rng([spec.seed, BACKGROUND_STREAM])
    idx = dataset.index
    rules, rows, availability, summary = plan_start(idx, bank, spec)
    usable = [b for b in backgrounds if rules is None or b.meets(rules)]
    n = round(spec.background_ratio * idx.num_images)
    summary["backgrounds"] = {"found": len(backgrounds), "usable": len(usable)}
    if not usable:
        summary["note"] = "no background meets the placement rules: no new image"
    if spec.weighting == "budget":
        only = None if rules is None else rules.classes
        wanted, summary["deficits"], classes = _budget_objects(idx, bank, rows, spec, rng, availability, only)
        assignments = budget_per_image(wanted, spec.objects, n if usable else 0, bank, classes, summary,
                                       "too_few_images" if usable else "no_target")
    else:
        count = n if usable and rows.size else 0
        pool = ObjectPool.build(bank, rows, idx.category_ids, idx.instance_counts, spec.weighting, spec.power) \
            if rows.size else None
        objs = pool.draw(rng, (count, spec.objects)) if pool is not None else np.zeros((0, spec.objects), np.int64)
        assignments = objs.tolist()
        classes = drawn_classes(bank, objs, availability)
    summary["classes"] = classes
    summary["new_images"] = 0
    if usable:
        rounds = -(-len(assignments) // len(usable))
        order = np.concatenate([rng.permutation(len(usable)) for _ in range(rounds)]) if rounds else np.zeros(0, int)
    reference = mean_areas(idx, rules.scale_to) if rules is not None and rules.scale_to is not None else None
    return _placed(assignments, order if usable else [], usable, bank, spec, rng, summary, rules, reference), \
        summary, len(assignments)


def _placed(assignments: list, order, usable: list[Background], bank: Bank, spec, rng, summary: dict,
            rules: Rules | None, reference: tuple[dict, float] | None) -> Iterator[dict]:
    """The recipe of each new image that fits an object. ``reference`` (``scale_to``): the mean
    area of the reference class per image of the dataset and over it (the bank's objects come
    from its images), as the dataset planner uses it."""
    for bank_rows, k in zip(assignments, order):
        bg = usable[int(k)]
        hw = (bg.height, bg.width)
        boxes = [(a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3])
                 for a in bg.annotations]
        scene = None
        if rules is not None and rules.per_image:
            scene = Scene(rules, hw, [(a["category_id"], b, a.get("segmentation"), bool(a.get("iscrowd")))
                                      for a, b in zip(bg.annotations, boxes)])
        placed = place_counted(bank, bank_rows, hw, boxes, spec, rng, summary, scene, reference)
        if placed:
            summary["new_images"] += 1
            yield {"background": bg.name, "size": [bg.width, bg.height], "annotations": bg.annotations,
                   "objects": placed}
