"""Copy-paste of bank objects onto images, chosen by class rarity: one core for the offline engine and the online transform.

Simple Copy-Paste (Ghiasi et al., CVPR 2021) pastes the objects of one image onto another and
shows large gains for rare LVIS classes; Cut, Paste and Learn (Dwibedi et al., ICCV 2017)
shows that blending the paste boundary matters. Here objects come from an object bank
(:mod:`ltaug.pixels.bank`) and are chosen by class:

* ``uniform``: every eligible bank object equally likely (classes as often as they occur);
* ``inverse``: class c with probability proportional to n_c^-power (n_c: the class's
  instances; power 1 = inverse frequency, 0.5 = inverse square root), then one of its objects
  uniformly;
* ``budget`` (offline only): exactly the per-class deficits of the planner
  (:mod:`ltaug.rebalance.planning`): class c gets T_c - n_c objects, so the output meets the
  target that image repeats alone could not.

The core, one implementation of each decision, used by both the offline engine
(:func:`plan_paste` / :func:`render_paste`, called by :class:`ltaug.ops.Paste`) and the online
transform (:class:`ltaug.transforms.CopyPaste`):

* :func:`eligible_rows`: which bank objects may be pasted (flags, classes, box-only);
* :class:`ObjectPool`: the class draw (:func:`class_weights`) and the object draw within a class;
* :func:`place_objects` / :func:`place`: size, flip and position of each drawn object. Its size
  relative to the target image is kept from its source image (s0 = sqrt(W_t H_t / (W_s H_s))),
  times a jitter drawn log-uniformly from ``scale``, and shrunk if needed to fit the image; its
  position is uniform over the image, retried up to ``PLACEMENT_TRIES`` times until its box
  covers at most ``max_overlap`` of any box already in the image (existing or pasted). An
  object that finds no place is not pasted, and counted;
* :func:`paste_objects`: the pixels (blending), and what each pasted object still shows once
  the later ones lie on top of it (it is hidden when less than ``min_visible`` of it remains);
* :class:`Occlusion`: the image's own objects under the pasted pixels: a covered object's mask is
  cut, its box recomputed from what is left, and it is dropped when less than ``min_visible``
  of it remains (crowd regions are cut but dropped only when nothing remains).

What the callers decide differently: the offline planner works on a whole dataset (n_c from
the dataset; classes of the dataset in its file order; ``prob`` of the images, ``objects``
objects each, all classes drawn at once from one generator seeded by ``seed``; or ``budget``);
the online transform on one sample (n_c from the bank or ``class_counts``; a number of objects
drawn per sample; its own generator; masks given as arrays; no crowd flags).

Box-only data: bank objects without a segmentation are pasted as their whole box (the
rectangle, background included): a detector then learns the object with a piece of its
source scene around it. That is the only option without masks; it is used only when the bank
has no object with a mask, or when asked (``box_only=True``).

The functions' ``spec`` is a :class:`ltaug.ops.Paste` (its parameters are declared there).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ltaug.io.geometry import rle_to_json
from ltaug.pixels import masks
from ltaug.pixels.bank import Bank, Flag
from ltaug.pixels.blending import BAND
from ltaug.pixels.functional import blend_alpha, paste_object, resize_object
from ltaug.pixels.placement import (
                                    Rules,
                                    Scene,
                                    affine_matrix,
                                    allowed_images,
                                    draw_affine,
                                    feathered_rectangle,
                                    mean_areas,
                                    resolve_rules,
                                    warp_object,
)

WEIGHTINGS = ("uniform", "inverse", "budget")
PLACEMENT_TRIES = 10
MIN_SIDE = 2  # px: a pasted object smaller than this either way is not pasted
BOX_ONLY = int(Flag.BOX_ONLY)  # a plain int: IntFlag arithmetic runs in Python, per object
DEFAULT_EXCLUDE = Flag.TOO_SMALL | Flag.TRUNCATED | Flag.OCCLUDED | Flag.EMPTY | Flag.CLIPPED
FEATHERED_BOX = "feathered-rectangle"  # how a box-only object is blended with box_feather > 0
PLAN_STREAM = 0x9A57E  # the planner's generator is default_rng([seed, PLAN_STREAM])


# -- the core: which objects, where -----------------------------------------------------------

def eligible_rows(bank: Bank, category_ids, spec) -> tuple[np.ndarray, bool]:
    """Bank rows that may be pasted (flags not excluded, class among ``category_ids``), and
    whether they are box-only ones (used only when no object has a mask, or when asked)."""
    obj = bank.objects
    flags = np.asarray(obj["flags"])
    ok = ((flags & spec.exclude_flags) == 0) & np.isin(np.asarray(obj["category_id"]), np.asarray(category_ids))
    with_mask = ok & ((flags & Flag.BOX_ONLY) == 0)
    if with_mask.any() and not spec.box_only:
        return np.flatnonzero(with_mask), False
    return np.flatnonzero(ok), True


def class_weights(instances: np.ndarray, available: np.ndarray, weighting: str, power: float) -> np.ndarray:
    """Probability of each class (positions of ``instances``) for ``uniform`` / ``inverse``.

    ``available``: eligible bank objects per class. uniform: p_c = a_c / sum a; inverse:
    p_c = max(n_c, 1)^-power over classes with a_c > 0, normalised.
    """
    available = np.asarray(available, np.float64)
    if weighting == "uniform":
        w = available
    else:
        w = np.where(available > 0, np.maximum(np.asarray(instances, np.float64), 1.0) ** -float(power), 0.0)
    total = w.sum()
    return w / total if total > 0 else w


@dataclass(frozen=True)
class ObjectPool:
    """The eligible bank objects grouped by class, and the probability of each class.

    Class k (position k of the caller's category ids) has ``available[k]`` objects,
    ``rows[order[starts[k]:starts[k + 1]]]`` (ascending rows), and probability ``p[k]``.
    """

    rows: np.ndarray
    order: np.ndarray
    starts: np.ndarray
    available: np.ndarray
    p: np.ndarray

    @classmethod
    def build(cls, bank: Bank, rows: np.ndarray, category_ids, instances, weighting: str,
              power: float) -> ObjectPool:
        """The pool of ``rows`` (from :func:`eligible_rows`), classes in the order of
        ``category_ids``, n_c = ``instances`` (same order), p by :func:`class_weights`."""
        cats = np.asarray(category_ids, np.int64)
        by_id = np.argsort(cats, kind="stable")
        pos = by_id[np.searchsorted(cats[by_id], np.asarray(bank.objects["category_id"])[rows])]
        available = np.bincount(pos, minlength=cats.size)
        return cls(rows, np.argsort(pos, kind="stable"), np.concatenate([[0], np.cumsum(available)]), available,
                   class_weights(instances, available, weighting, power))

    def draw(self, rng: np.random.Generator, size) -> np.ndarray:
        """Bank rows of ``size`` (an int or a shape) objects: class k with probability p_k (all
        classes drawn first), then one of the class's objects uniformly (p = 1 / a_k)."""
        classes = rng.choice(self.p.size, size=size, p=self.p)
        picks = rng.integers(0, self.available[classes])
        return self.rows[self.order[self.starts[classes] + picks]]


def place(obj_wh, src_hw, dst_hw, boxes: list, spec, rng: np.random.Generator):
    """Size, flip and position of one object in a target image, or None when it does not fit.

    ``obj_wh``: the bank crop's (w, h); ``src_hw`` / ``dst_hw``: source / target image (h, w);
    ``boxes``: x0, y0, x1, y1 of what the image already holds (appended to on success).
    Returns ``(x, y, w, h, flip)``.
    """
    spot = _place(obj_wh, src_hw, dst_hw, boxes, spec, rng)
    return None if isinstance(spot, str) else spot


TOO_SMALL, NO_ROOM, NO_REGION = "too_small", "no_room", "no_region"  # why :func:`_place` found no spot


def _place(obj_wh, src_hw, dst_hw, boxes: list, spec, rng: np.random.Generator, scene: Scene | None = None,
           base: float | None = None):
    """:func:`place` (the same draws), or why the object found no spot: :data:`TOO_SMALL` (under
    ``MIN_SIDE`` px either way at its drawn size), :data:`NO_ROOM` (every try covers more than
    ``max_overlap`` of a box already there) or :data:`NO_REGION` (no try keeps the ``scene``'s
    placement rules, :class:`~ltaug.pixels.placement.Scene`).

    ``base``: the size factor before the jitter (default: sqrt of the area ratio of target and
    source image; ``scale_to``: the reference class's). With the ``rotate`` / ``shear`` of
    ``spec`` set, the angles are drawn after the flip and the spot is
    ``(x, y, w, h, flip, angle, shear, w0, h0)``: (w, h) the turned object's box, (w0, h0) its
    size before turning; without, ``(x, y, w, h, flip)`` from the draws of before."""
    (ow, oh), (sh, sw), (H, W) = obj_wh, src_hw, dst_hw
    lo, hi = spec.scale
    s = (math.sqrt((H * W) / (sh * sw)) if base is None else base) * math.exp(rng.uniform(math.log(lo), math.log(hi)))
    flip = bool(rng.random() < 0.5) if spec.flip else False
    turned = getattr(spec, "rotate", 0) or getattr(spec, "shear", 0)
    angle, shear = draw_affine(spec, rng) if turned else (0.0, 0.0)
    host = None
    ax0, ay0, ax1, ay1 = 0, 0, W, H  # where the box may lie: the image, or a host's region
    if scene is not None and scene.rules.inside is not None:
        if not scene.hosts:
            return NO_REGION
        host = int(rng.integers(len(scene.hosts)))
        ax0, ay0, ax1, ay1 = scene.hosts[host]
    AW, AH = ax1 - ax0, ay1 - ay0
    if turned:
        a, _, _ = affine_matrix(ow, oh, angle, shear)
        s = min(s, AW / (abs(a[0, 0]) * ow + abs(a[0, 1]) * oh), AH / (abs(a[1, 0]) * ow + abs(a[1, 1]) * oh))
        w0, h0 = max(1, round(ow * s)), max(1, round(oh * s))
        _, w, h = affine_matrix(w0, h0, angle, shear)
        while (w > AW or h > AH) and min(w0, h0) > 1:  # rounding up the corners' box may pass the region by 1 px
            w0, h0 = max(1, w0 - 1), max(1, h0 - 1)
            _, w, h = affine_matrix(w0, h0, angle, shear)
        if w > AW or h > AH or min(w0, h0) < MIN_SIDE:
            return TOO_SMALL
    else:
        s = min(s, AW / ow, AH / oh)
        w, h = max(1, min(AW, round(ow * s))), max(1, min(AH, round(oh * s)))
    if w < MIN_SIDE or h < MIN_SIDE:
        return TOO_SMALL
    xs = rng.integers(ax0, ax1 - w + 1, size=PLACEMENT_TRIES).tolist()  # all tries drawn at once,
    ys = rng.integers(ay0, ay1 - h + 1, size=PLACEMENT_TRIES).tolist()  # the first that fits wins
    limit = spec.max_overlap  # >= 0: a box the try does not meet never stops it
    skip = None if host is None else scene.host_boxes[host]  # type: ignore[union-attr]
    kept_rules = False
    for x, y in zip(xs, ys):  # plain Python numbers, not numpy: a few boxes, and most first tries fit
        if scene is not None and not scene.free(x, y, w, h, host):
            continue
        kept_rules = True
        x1, y1 = x + w, y + h
        for box in boxes:  # covered = intersection / box area (no area: 1 if met)
            bx0, by0, bx1, by1 = box
            iw = (bx1 if bx1 < x1 else x1) - (bx0 if bx0 > x else x)
            if iw <= 0:
                continue
            ih = (by1 if by1 < y1 else y1) - (by0 if by0 > y else y)
            if ih <= 0 or box == skip:
                continue
            area = (bx1 - bx0) * (by1 - by0)
            if (iw * ih / area if area > 0 else 1.0) > limit:
                break
        else:
            boxes.append((x, y, x1, y1))
            return (x, y, w, h, flip, angle, shear, w0, h0) if turned else (x, y, w, h, flip)
    return NO_ROOM if kept_rules or scene is None else NO_REGION


def place_objects(bank: Bank, bank_rows, dst_hw, boxes: list, spec, rng: np.random.Generator,
                  missed: list | None = None, scene: Scene | None = None,
                  reference: tuple[dict, float] | None = None) -> tuple[list, int]:
    """Placements of the bank objects ``bank_rows``, in order, in an image of ``dst_hw`` = (H, W)
    (:func:`place`; ``boxes`` as there), and how many found no room (or were too small to paste).

    A placement: ``{"row", "annotation_id", "category_id", "x", "y", "w", "h", "flip"}`` (bank
    row, its source annotation id and class; the pasted box; mirrored or not), and for a turned
    object ``"angle"``, ``"shear"`` (degrees) and ``"size"`` (its w, h before turning). ``missed``,
    if given, gets ``(category_id, why)`` of each object not placed (:data:`NO_ROOM` /
    :data:`TOO_SMALL` / :data:`NO_REGION`). ``scene``: the target's placement rules;
    ``reference``: with ``scale_to``, the mean area of the reference class per source image id
    and over the dataset (:func:`~ltaug.pixels.placement.mean_areas`).
    """
    obj = bank.objects
    placed, no_room = [], 0
    for r in bank_rows:
        o = obj[r]
        base = None
        if reference is not None and scene is not None:
            source_area = reference[0].get(int(o["image_id"]), reference[1])
            base = math.sqrt(scene.ref_area / source_area) if source_area > 0 else None
        spot = _place((int(o["width"]), int(o["height"])), (int(o["image_height"]), int(o["image_width"])),
                      dst_hw, boxes, spec, rng, scene, base)
        if isinstance(spot, str):
            no_room += 1
            if missed is not None:
                missed.append((int(o["category_id"]), spot))
            continue
        x, y, w, h, flip = spot[:5]
        p = {"row": int(r), "annotation_id": int(o["annotation_id"]), "category_id": int(o["category_id"]),
             "x": x, "y": y, "w": w, "h": h, "flip": flip}
        if len(spot) > 5:
            p.update(angle=spot[5], shear=spot[6], size=[spot[7], spot[8]])
        placed.append(p)
    return placed, no_room


# -- the core: pixels and occlusion -------------------------------------------------------------

def is_box_only(bank: Bank, row: int) -> bool:
    """Whether bank object ``row`` has no segmentation (it is pasted, and annotated, as its box)."""
    return bool(int(_record(bank, row)["flags"]) & BOX_ONLY)


def _record(bank: Bank, row: int):
    """Bank object ``row``'s table row, read on its own where the bank can (:meth:`Bank.record`): the
    renderers read only the rows they paste, never a whole column, so a worker's memory does not
    grow with the bank."""
    record = getattr(bank, "record", None)
    return record(row) if record is not None else bank.objects[row]


def paste_objects(image: np.ndarray, placements: list, bank: Bank, spec,
                  rgb: bool = False) -> tuple[list, Occlusion, dict]:
    """Paste placed bank objects into ``image`` (in place), each later one on top of the earlier.
    ``rgb``: the image and the crops are RGB (only colour harmonisation needs to know).

    A box-only object's mask is its whole crop. Returns ``(visible, occlusion, blend)``:
    per placement, ``(rle, area)`` of the part of its mask that no later paste hides, or None
    when that is nothing or less than ``min_visible`` of the mask (the object is then hidden);
    the :class:`Occlusion` of everything pasted (to cut the image's own objects); and the
    number of objects per blending mode used.
    """
    H, W = image.shape[:2]
    resized: list[np.ndarray] = []
    blend: dict[str, int] = {}
    feather = float(getattr(spec, "box_feather", 0.0))
    for o in placements:
        crop, mask = bank.get(o["row"])
        box = is_box_only(bank, o["row"])
        if box:
            mask = np.ones_like(mask)
        if "size" in o:  # turned: resized to its size before turning, then turned
            crop, mask = resize_object(crop, mask, o["size"][0], o["size"][1], o["flip"])
            crop, mask = warp_object(crop, mask, o["angle"], o["shear"])
        else:
            crop, mask = resize_object(crop, mask, o["w"], o["h"], o["flip"])
        if box and feather > 0:
            x, y = o["x"], o["y"]
            blend_alpha(image[y:y + o["h"], x:x + o["w"]], crop, feathered_rectangle(mask, feather))
            used = FEATHERED_BOX
        else:
            used = paste_object(image, crop, mask, o["x"], o["y"], spec.blend, spec.sigma,
                                harmonize=getattr(spec, "harmonize", "none"), band=getattr(spec, "band", BAND), rgb=rgb)
        blend[used] = blend.get(used, 0) + 1
        resized.append(mask)
    cover = np.zeros((H, W), bool)
    visible: list[tuple[dict, Any] | None] = [None] * len(placements)
    shown: list[tuple[np.ndarray, np.ndarray]] = []  # runs of every visible part; their union is the cover
    for k in range(len(placements) - 1, -1, -1):  # a later paste lies on top of every earlier one
        o = placements[k]
        x, y = o["x"], o["y"]
        region = cover[y:y + o["h"], x:x + o["w"]]
        m = resized[k].view(bool)
        left_mask = m > region  # m and not region
        region |= m
        full, left = np.count_nonzero(m), np.count_nonzero(left_mask)
        if left:
            shown.append(masks.local_runs(left_mask.view(np.uint8), x, y, H, W))
        if left and left >= spec.min_visible * full:
            visible[k] = (masks.rle_from_runs(*shown[-1], H, W), left)  # left: the RLE's pixel count
    boxes = [(o["x"], o["y"], o["x"] + o["w"], o["y"] + o["h"]) for o in placements]
    return visible, Occlusion((H, W), shown, boxes), blend


class Occlusion:
    """What pasted objects hide of the objects under them.

    Works on RLEs (pycocotools ``merge`` / ``area``: cost grows with the masks' runs, not the
    image): for a mask M under the cover C, hidden = area(M AND C), left = area(M) - hidden,
    and the visible mask is M AND NOT C. The cover and its complement are built from the runs
    of the pasted objects' visible parts (disjoint, so their union is their runs sorted), the
    complement only when something is hidden.
    """

    def __init__(self, hw: tuple[int, int], shown: list, boxes: list):
        self.hw, self.boxes = hw, boxes
        self.runs: tuple[np.ndarray, np.ndarray] | None = masks.union_runs(shown) if shown else None
        self.cover_rle = masks.rle_from_runs(*self.runs, *hw) if self.runs is not None else None
        self._uncovered: dict | None = None

    def meets(self, bbox) -> bool:
        """Whether the box ``[x, y, w, h]`` meets a pasted object's box (False when nothing shows)."""
        x, y, w, h = bbox
        return self.cover_rle is not None and any(
            x < b[2] and b[0] < x + w and y < b[3] and b[1] < y + h for b in self.boxes)

    def meets_mask(self, mask: np.ndarray) -> bool:
        """Whether the full-image ``mask`` has a pixel inside a pasted object's box."""
        return self.cover_rle is not None and any(mask[y0:y1, x0:x1].any() for x0, y0, x1, y1 in self.boxes)

    def cut(self, rle: dict, min_visible: float, crowd: bool = False) -> tuple[dict | None, float]:
        """``(visible, hidden / area(M))`` of the mask ``rle``: ``rle`` itself when nothing is
        hidden; None when left = 0, or left < ``min_visible`` * area(M) and it is no crowd region."""
        hidden = masks.area(mask_utils.merge([rle, self.cover_rle], intersect=True))
        if hidden == 0:
            return rle, 0.0
        full = masks.area(rle)
        left = full - hidden
        if left == 0 or (not crowd and left < min_visible * full):
            return None, hidden / full
        if self._uncovered is None:
            assert self.runs is not None  # something is hidden, so something was pasted
            H, W = self.hw
            self._uncovered = masks.rle_from_runs(*masks.complement_runs(*self.runs, H * W), H, W)
        return mask_utils.merge([rle, self._uncovered], intersect=True), hidden / full


# -- offline: planning over a dataset -----------------------------------------------------------

MISSING = {  # why an object a paste step asked for is not in its output: the reasons, in the order a step meets them
    "no_bank_object": "no object of the class in the bank",
    "excluded": "every bank object of the class is left out",
    "too_few_images": "more objects than images x objects: not placed",
    "too_small": f"under {MIN_SIDE} px at its drawn size",
    "no_target": "more objects than the images the placement rules allow x objects: not placed",
    "no_room": "no room within max_overlap",
    "no_region": "no spot that keeps the placement rules (inside / outside)",
    "hidden": "hidden by later pastes (under min_visible)",
    "skipped": "its target image was unreadable (skipped)",
}
"""Keys of a class's ``missing`` counts (plan info ``classes``; a step's ``shortfalls``) and what each means."""


@dataclass(frozen=True)
class Availability:
    """What the bank holds of each class for a paste step: ``in_bank`` (objects of the class),
    ``eligible`` (those it may paste: :func:`eligible_rows`) and ``left_out`` (the others, by
    the flag that leaves them out: a flag of ``exclude``, or ``box_only`` for box-only objects
    left out because other objects have masks; an object with two excluded flags counts under
    both), each by category id (classes without any left out); ``selected``: the classes the
    bank was built for (:attr:`Bank.selected_classes <ltaug.pixels.bank.Bank.selected_classes>`;
    None: every class)."""

    in_bank: dict[int, int]
    eligible: dict[int, int]
    left_out: dict[int, dict[str, int]]
    selected: frozenset[int] | None = None

    @classmethod
    def of(cls, bank: Bank, rows: np.ndarray, spec) -> Availability:
        cats = np.asarray(bank.objects["category_id"]).astype(np.int64)
        flags = np.asarray(bank.objects["flags"]).astype(np.int64)
        used = np.zeros(cats.size, bool)
        used[rows] = True
        excluded = int(spec.exclude_flags)
        left_out: dict[int, dict[str, int]] = {}
        for flag in Flag:
            bit = int(flag)
            if bit & excluded:
                hit = ~used & ((flags & bit) != 0)
            elif flag is Flag.BOX_ONLY:
                hit = ~used & ((flags & bit) != 0) & ((flags & excluded) == 0)
            else:
                continue
            for cid, n in _per_class(cats[hit]).items():
                left_out.setdefault(cid, {})[str(flag.name).lower()] = n
        return cls(_per_class(cats), _per_class(cats[rows]), left_out, getattr(bank, "selected_classes", None))

    def lacks(self, cid: int) -> bool:
        """Whether the bank was built without class ``cid`` (its ``classes`` / ``bins`` left it out)."""
        return self.selected is not None and cid not in self.selected

    def entry(self, cid: int, asked: int) -> dict:
        """The plan info's record of class ``cid`` asked for ``asked`` objects: ``asked``,
        ``planned`` (placed so far), ``in_bank``, ``eligible``, ``left_out`` (by flag) and
        ``missing`` (objects not placed, by reason: :data:`MISSING`); ``in_selection``: False
        when the bank was built without the class (only then)."""
        in_bank, eligible = self.in_bank.get(cid, 0), self.eligible.get(cid, 0)
        entry: dict[str, Any] = {"asked": int(asked), "planned": 0, "in_bank": in_bank, "eligible": eligible,
                                 "left_out": dict(self.left_out.get(cid, {})), "missing": {}}
        if asked and not eligible:
            entry["missing"]["excluded" if in_bank else "no_bank_object"] = int(asked)
        if self.lacks(cid):
            entry["in_selection"] = False
        return entry


def _per_class(category_ids: np.ndarray) -> dict[int, int]:
    ids, n = np.unique(category_ids, return_counts=True)
    return dict(zip(ids.tolist(), n.tolist()))


def _miss(classes: dict, cid: int, why: str, n: int = 1) -> None:
    missing = classes[cid]["missing"]
    missing[why] = missing.get(why, 0) + n


def _budget_objects(idx, bank: Bank, rows: np.ndarray, spec, rng, availability: Availability | None = None,
                    only: frozenset[int] | None = None) -> tuple[list, dict, dict]:
    """Bank rows to paste under ``budget``, the per-class table of what was asked, and the
    per-class records of :meth:`Availability.entry` (classes asked for objects).

    Class c (n_c instances in the dataset this step receives) gets T_c - n_c objects, T_c the
    planner's target (:meth:`ltaug.rebalance.planning.Target.per_class`, caps included), cycling through
    the class's eligible objects in a seeded order (each object once before any twice). ``only``:
    the classes the placement rules paste (None: every class).
    """
    from ltaug.rebalance.planning import Target

    before = idx.instance_counts
    _, target, _ = Target(**spec.target).per_class(before)
    cats = np.asarray(bank.objects["category_id"])[rows]
    availability = availability or Availability.of(bank, rows, spec)
    wanted, deficits, classes = [], {}, {}
    for cid, n, goal in zip(idx.category_ids.tolist(), before.tolist(), target.astype(np.int64).tolist()):
        need = goal - n
        if need <= 0 or (only is not None and cid not in only):
            continue
        own = rows[cats == cid]
        deficits[cid] = {"deficit": need, "bank_objects": int(own.size)}
        classes[cid] = availability.entry(cid, need)
        if own.size:
            wanted.extend(np.resize(own[rng.permutation(own.size)], need).tolist())
    rng.shuffle(wanted)
    return wanted, deficits, classes


def plan_paste(dataset, bank: Bank, spec) -> tuple[list[dict], dict]:
    """Recipes (one per target image that gets at least one object) and a planning summary.

    A recipe: ``{"image_id", "objects": [placement, ...]}`` (:func:`place_objects`). The
    summary counts objects planned per class, objects with no room, and (budget) the deficits
    left unplaced.
    """
    recipes, summary, _ = iter_plan_paste(dataset, bank, spec)
    return list(recipes), summary


def iter_plan_paste(dataset, bank: Bank, spec) -> tuple[Iterator[dict], dict, int]:
    """:func:`plan_paste` one recipe at a time, so rendering can start before planning ends.

    Returns ``(recipes, summary, tried)``: the recipes in order (the same ones, from the same
    random draws, as :func:`plan_paste`), the summary (complete once ``recipes`` is exhausted)
    and the number of images objects are tried on (at least the number of recipes).

    One generator, ``default_rng([seed, PLAN_STREAM])``, draws in this order: uniform/inverse: one
    uniform per image (the image gets objects when it is under ``prob``), then the
    :class:`ObjectPool` draw of ``objects`` objects for every chosen image at once (classes
    weighted by n_c of this dataset); budget: :func:`_budget_objects` and the images that get
    them. Then, as recipes are taken, :func:`place_objects` image by image.

    The summary: ``eligible_objects``, ``box_only``, ``no_room`` (objects not placed: no room,
    or too small), ``unplaced_budget``, (budget) ``deficits``, and per class asked for objects
    (budget: its deficit; uniform/inverse: the objects drawn of it) ``classes`` (category id:
    :meth:`Availability.entry`, its ``missing`` counted by reason as planning goes); uniform /
    inverse: ``not_pastable``, the dataset's classes (with instances) of which no bank object may
    be pasted (``in_bank``, ``left_out`` by flag); budget: ``note``, a line when the target asks
    for nothing (:func:`ltaug.rebalance.planning.target_note`, also logged).
    """
    rng = np.random.default_rng([spec.seed, PLAN_STREAM])
    idx = dataset.index
    rules, rows, availability, summary = plan_start(idx, bank, spec)
    only = None if rules is None else rules.classes
    allowed = None
    if rules is not None:
        allowed = allowed_images(rules, idx)
        summary["rules"]["images_allowed"] = int(allowed.sum())
        if not allowed.any():
            summary["note"] = "no image meets the placement rules (onto_classes / not_onto_classes / inside / scale_to)"
            logging.getLogger(__name__).warning("paste: %s", summary["note"])
    if spec.weighting == "budget":
        _budget_note(idx, spec, summary)
    if rows.size == 0:
        if spec.weighting == "budget":
            _, summary["deficits"], summary["classes"] = _budget_objects(idx, bank, rows, spec, rng, availability, only)
        else:
            summary["classes"] = {}
            summary["not_pastable"] = _not_pastable(idx, availability, only)
        return iter(()), summary, 0
    if spec.weighting == "budget":
        wanted, summary["deficits"], classes = _budget_objects(idx, bank, rows, spec, rng, availability, only)
        order = rng.permutation(idx.num_images)
        if allowed is not None:
            order = order[allowed[order]]
        per_image = budget_per_image(wanted, spec.objects, order.size, bank, classes, summary,
                                     "too_few_images" if allowed is None else "no_target")
        assignments = dict(zip(sorted(order[:len(per_image)].tolist()), per_image))
    else:
        pool = ObjectPool.build(bank, rows, idx.category_ids, idx.instance_counts, spec.weighting, spec.power)
        chosen = np.flatnonzero(rng.random(idx.num_images) < spec.prob)
        if allowed is not None:
            chosen = chosen[allowed[chosen]]
        objs = pool.draw(rng, (chosen.size, spec.objects))
        assignments = dict(zip(chosen.tolist(), objs.tolist()))
        classes = drawn_classes(bank, objs, availability)
        summary["not_pastable"] = _not_pastable(idx, availability, only)
    summary["classes"] = classes
    annotations = dataset.annotations if rules is not None and rules.per_image else None
    return _placed(assignments, idx, bank, spec, rng, summary, rules, annotations), summary, len(assignments)


def plan_start(idx, bank: Bank, spec) -> tuple[Rules | None, np.ndarray, Availability, dict[str, Any]]:
    """What every paste planner starts from: the step's placement rules (:func:`resolve_rules`),
    the eligible bank rows (of the rules' ``classes`` only, when they name some), their
    :class:`Availability`, and the summary's first keys (``rules`` described when there are
    rules)."""
    rules = resolve_rules(spec, idx.category_ids, idx.category_names)
    only = None if rules is None else rules.classes
    rows, box_only = eligible_rows(bank, idx.category_ids if only is None else sorted(only), spec)
    summary: dict[str, Any] = {"eligible_objects": int(rows.size), "box_only": box_only, "no_room": 0,
                               "unplaced_budget": 0}
    if rules is not None:
        summary["rules"] = rules.describe(dict(zip(idx.category_ids.tolist(), idx.category_names)))
    return rules, rows, Availability.of(bank, rows, spec), summary


def budget_per_image(wanted: list, objects: int, room: int, bank: Bank, classes: dict, summary: dict,
                     why: str) -> list[list]:
    """The budget's objects ``wanted`` in groups of ``objects`` per image, at most ``room``
    groups; the objects beyond are counted in ``summary["unplaced_budget"]`` and, per class,
    as missing for reason ``why``."""
    per_image = [wanted[i:i + objects] for i in range(0, len(wanted), objects)]
    if len(per_image) > room:
        summary["unplaced_budget"] = sum(len(p) for p in per_image[room:])
        cats = np.asarray(bank.objects["category_id"])
        for cid, n in _per_class(cats[np.concatenate(per_image[room:]).astype(np.int64)]).items():
            _miss(classes, cid, why, n)
    return per_image[:room]


def drawn_classes(bank: Bank, objs: np.ndarray, availability: Availability) -> dict:
    """The plan info's record (:meth:`Availability.entry`) of each class drawn in ``objs`` (bank rows)."""
    drawn = _per_class(np.asarray(bank.objects["category_id"])[objs.ravel()].astype(np.int64))
    return {cid: availability.entry(cid, n) for cid, n in drawn.items()}


def place_counted(bank: Bank, bank_rows, hw, boxes: list, spec, rng, summary: dict, scene: Scene | None,
                  reference: tuple[dict, float] | None) -> list:
    """:func:`place_objects` on one target image, counted in the plan's summary: objects not
    placed (``no_room``, and per class by reason), objects planned per class."""
    classes = summary["classes"]
    missed: list[tuple[int, str]] = []
    placed, no_room = place_objects(bank, bank_rows, hw, boxes, spec, rng, missed, scene, reference)
    summary["no_room"] += no_room
    for cid, why in missed:
        _miss(classes, cid, why)
    for o in placed:
        classes[o["category_id"]]["planned"] += 1
    return placed


def _not_pastable(idx, availability: Availability, only: frozenset[int] | None = None) -> dict:
    """The dataset's classes (with instances; of ``only`` when the rules name the classes to
    paste) of which the bank holds no eligible object (``in_selection``: False for those the bank
    was built without)."""
    return {cid: {"name": name, "in_bank": availability.in_bank.get(cid, 0),
                  "left_out": dict(availability.left_out.get(cid, {})),
                  **({"in_selection": False} if availability.lacks(cid) else {})}
            for cid, name, n in zip(idx.category_ids.tolist(), idx.category_names, idx.instance_counts.tolist())
            if n > 0 and not availability.eligible.get(cid, 0) and (only is None or cid in only)}


def _budget_note(idx, spec, summary: dict) -> None:
    """``summary["note"]`` (and a logged warning) when the budget's target asks for no object."""
    from ltaug.rebalance.planning import Target, target_note

    note = target_note(idx, Target(**spec.target), what="paste budget")
    if note:
        summary["note"] = note
        logging.getLogger(__name__).warning("%s", note)


def _placed(assignments: dict, idx, bank: Bank, spec, rng, summary: dict, rules: Rules | None = None,
            annotations: list | None = None) -> Iterator[dict]:
    """The recipe of each image of ``assignments`` (image position -> bank rows) that fits an object.
    With placement rules that need each image's objects (``inside``, ``outside``, ``scale_to``),
    ``annotations`` (the dataset's, in index order) give their masks."""
    boxes_of = _image_boxes(idx)
    scenes = rules is not None and rules.per_image
    reference = mean_areas(idx, rules.scale_to) if rules is not None and rules.scale_to is not None else None
    if scenes:
        order, bounds = idx.annotations_by_image()
    for pos, bank_rows in assignments.items():
        hw = (int(idx.image_heights[pos]), int(idx.image_widths[pos]))
        boxes = boxes_of(pos)
        scene = None
        if scenes:
            assert rules is not None and annotations is not None
            mine = order[bounds[pos]:bounds[pos + 1]].tolist()
            scene = Scene(rules, hw, [(int(idx.ann_category_ids[a]), b, annotations[a].get("segmentation"),
                                       bool(idx.ann_iscrowd[a])) for a, b in zip(mine, boxes)])
        placed = place_counted(bank, bank_rows, hw, boxes, spec, rng, summary, scene, reference)
        if placed:
            yield {"image_id": int(idx.image_ids[pos]), "objects": placed}


def _image_boxes(idx) -> Callable[[int], list[tuple]]:
    """``boxes(pos)``: the x0, y0, x1, y1 boxes of image position ``pos``'s annotations (crowd
    regions too), in file order (one sort up front, then a slice per image: planning starts at
    once on large files)."""
    order, bounds = idx.annotations_by_image()
    xyxy = idx.ann_boxes.copy()
    xyxy[:, 2:] += xyxy[:, :2]

    def boxes(pos: int) -> list[tuple]:
        return [tuple(b) for b in xyxy[order[bounds[pos]:bounds[pos + 1]]].tolist()]
    return boxes


# -- offline: rendering one recipe (runs in the workers) --------------------------------------

def render_paste(image: np.ndarray, annotations: list[dict], recipe: dict, bank: Bank,
                 spec) -> tuple[list[dict], list[dict], dict]:
    """Paste the recipe's objects into ``image`` (in place, :func:`paste_objects`) and keep the annotations right.

    Returns ``(kept, pasted, counts)``: the image's annotations after :class:`Occlusion`
    (unchanged records where nothing covers them; otherwise the mask cut, as a compressed RLE,
    with bbox and area from it; dropped when under ``min_visible``, crowd regions only when
    nothing is left), the new annotations (no ids yet; no segmentation for a box-only object;
    ``ltaug`` provenance with the source annotation and image ids, size and flip), and counts:
    ``removed`` (category ids of dropped existing objects), ``pasted_removed`` (pasted objects
    hidden by later ones), ``blend`` (objects per mode used).
    """
    visible, occlusion, blend = paste_objects(image, recipe["objects"], bank, spec)
    counts: dict[str, Any] = {"removed": [], "pasted_removed": [], "blend": blend}
    pasted = []
    for o, shown in zip(recipe["objects"], visible):
        if shown is None:
            counts["pasted_removed"].append(o["category_id"])
            continue
        rle, area = shown
        ann = {"image_id": recipe["image_id"], "category_id": o["category_id"],
               "bbox": masks.tight_bbox(rle), "area": area, "iscrowd": 0}
        box_only = is_box_only(bank, o["row"])
        if not box_only:
            ann["segmentation"] = rle_to_json(rle)
        ann["ltaug"] = {"op": "paste", "source_annotation_id": o["annotation_id"],
                        "source_image_id": int(_record(bank, o["row"])["image_id"]), "size": [o["w"], o["h"]],
                        "flip": o["flip"]}
        if "angle" in o:
            ann["ltaug"].update(angle=o["angle"], shear=o["shear"], size_before_turning=o["size"])
        if box_only:
            ann["ltaug"]["box_only"] = FEATHERED_BOX if getattr(spec, "box_feather", 0.0) > 0 else "rectangle"
        pasted.append(ann)
    kept = [a for a in (_occlude(a, occlusion, spec.min_visible, counts) for a in annotations) if a is not None]
    return kept, pasted, counts


def _occlude(ann: dict, occlusion: Occlusion, min_visible: float, counts: dict) -> dict | None:
    """``ann`` after the pasted pixels hide part of it (:meth:`Occlusion.cut`): the same record if
    untouched, None if dropped (its class counted in ``counts["removed"]``)."""
    if not occlusion.meets(ann["bbox"]):
        return ann  # the bbox bounds the mask (validate checks it)
    H, W = occlusion.hw
    rle, box_only = masks.annotation_rle(ann.get("segmentation"), ann["bbox"], H, W, ann.get("id"))
    new, hidden = occlusion.cut(rle, min_visible, bool(ann.get("iscrowd")))
    if hidden == 0:
        return ann
    if new is None:
        counts["removed"].append(ann["category_id"])
        return None
    out = dict(ann)
    out["bbox"], out["area"] = masks.tight_bbox(new), masks.area(new)
    if not box_only:
        out["segmentation"] = rle_to_json(new)
    out["ltaug"] = {**ann.get("ltaug", {}), "occluded": round(hidden, 4)}
    return out
