"""Where a pasted object may go, and how it is turned: placement rules and affine objects.

A production team pastes a rare object where it could occur: a defect on the part, not on the
floor; a cigarette near a person's head, at a size that fits the person. The rules, each
optional (:class:`Rules`, from the ``paste`` step's parameters):

* ``classes``: only objects of these classes are pasted;
* ``onto_classes`` / ``not_onto_classes``: only onto images that hold at least one object of
  one of these classes / none of these;
* ``inside``: the pasted object's box lies inside an object of this class (the *host*, drawn
  uniformly among the image's objects of the class): inside its box shrunk by ``margin`` px
  (``region: box``), or every pixel of the pasted box inside its mask eroded by ``margin``
  (``region: mask``, checked exactly on an integral image); the host's own box does not count
  against ``max_overlap``;
* ``outside``: the pasted box meets no object of these classes: their boxes grown by
  ``margin`` (``box``), or their masks dilated by ``margin`` (``mask``, exact);
* ``scale_to``: the object keeps its size relative to a reference class instead of its
  image. With A_R(I) the mean box area of class R's objects in image I, the size factor is
  s0 = sqrt(A_R(target) / A_R(source)): the object is as large next to the target's R objects
  as it was next to its source image's ones (A_R(source): the dataset's mean when the source
  image has no R object). Images without an R object get no object.

Affine objects (Ghiasi et al.'s large-scale jittering, extended as many copy-paste pipelines
do): on top of the scale jitter and the flip, a rotation by theta drawn uniformly from
[-``rotate``, ``rotate``] degrees and a horizontal shear by phi from [-``shear``, ``shear``]
degrees: x' = A (x - c) + c', with A = R(theta) [[1, tan phi], [0, 1]] about the object's
centre c, c' the centre of the output box, whose size is the bounding box of the four
transformed corners (image coordinates, y down: a positive angle turns clockwise on screen). The mask goes through the same map (bilinear, then >= 0.5: the rule of
:func:`~ltaug.pixels.functional.resize_mask`), so the pasted object's mask, RLE and tight box
are exact. With ``rotate = shear = 0`` no angle is drawn, and the draws are those of before.

Box-only objects (no mask) are pasted as their rectangle (turned with the object), blended
with a feathered edge: alpha = M * (G_sigma * M) with a zero border, sigma = ``box_feather``
times the short side (0: a hard rectangle). The provenance says ``"box_only":
"feathered-rectangle"`` (or ``"rectangle"``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ltaug.errors import SpecError

REGIONS = ("box", "mask")


@dataclass(frozen=True)
class Rules:
    """Placement rules with category ids (None / empty: no such rule)."""

    classes: frozenset[int] | None = None
    onto: frozenset[int] = frozenset()
    not_onto: frozenset[int] = frozenset()
    inside: int | None = None
    outside: frozenset[int] = frozenset()
    region: str = "box"
    margin: int = 0
    scale_to: int | None = None

    @property
    def per_image(self) -> bool:
        """Whether placement needs each target image's objects (inside, outside, scale_to)."""
        return self.inside is not None or bool(self.outside) or self.scale_to is not None

    def describe(self, names: dict[int, str]) -> dict:
        """The rules with class names, for the plan summary."""
        def named(ids):
            return sorted(names.get(i, str(i)) for i in ids)
        out: dict = {}
        if self.classes is not None:
            out["classes"] = named(self.classes)
        for key, ids in (("onto_classes", self.onto), ("not_onto_classes", self.not_onto), ("outside", self.outside)):
            if ids:
                out[key] = named(ids)
        for key, cid in (("inside", self.inside), ("scale_to", self.scale_to)):
            if cid is not None:
                out[key] = names.get(cid, str(cid))
        if self.inside is not None or self.outside:
            out["region"], out["margin"] = self.region, self.margin
        return out


def resolve_rules(spec, category_ids, names) -> Rules | None:
    """The paste step's rules with the dataset's category ids (:func:`~ltaug.pixels.bank_select.resolve_classes`:
    names matched exactly, then case-insensitively, or ids); None when it sets none. An unknown
    class is a :class:`SpecError` of the parameter that names it."""
    from ltaug.pixels.bank_select import resolve_classes

    def ids(field: str, values) -> list[int]:
        try:
            return resolve_classes(category_ids, names, values)
        except SpecError as exc:
            raise SpecError(field, exc.detail.replace("classes", field), "paste") from None

    classes = getattr(spec, "classes", ())
    onto, not_onto = getattr(spec, "onto_classes", ()), getattr(spec, "not_onto_classes", ())
    inside, outside, scale_to = getattr(spec, "inside", None), getattr(spec, "outside", ()), getattr(spec, "scale_to", None)
    if not (classes or onto or not_onto or inside or outside or scale_to):
        return None
    rules = Rules(classes=frozenset(ids("classes", classes)) if classes else None,
                  onto=frozenset(ids("onto_classes", onto)), not_onto=frozenset(ids("not_onto_classes", not_onto)),
                  inside=ids("inside", [inside])[0] if inside else None, outside=frozenset(ids("outside", outside)),
                  region=spec.region, margin=int(spec.margin),
                  scale_to=ids("scale_to", [scale_to])[0] if scale_to else None)
    both = rules.onto & rules.not_onto
    if both:
        raise SpecError("not_onto_classes", f"names a class that onto_classes asks for (category id {min(both)})",
                        "paste")
    return rules


def allowed_images(rules: Rules, idx) -> np.ndarray:
    """Bool per image position of ``idx``: the image meets onto / not_onto and holds the objects
    ``inside`` and ``scale_to`` need."""
    n = idx.num_images
    ok = np.ones(n, bool)

    def holds(cids) -> np.ndarray:
        has = np.zeros(n, bool)
        sel = np.isin(idx.ann_category_ids, np.fromiter(cids, np.int64)) & ~idx.ann_iscrowd
        has[idx.ann_image_pos[sel]] = True
        return has

    if rules.onto:
        ok &= holds(rules.onto)
    if rules.not_onto:
        ok &= ~holds(rules.not_onto)
    for cid in (rules.inside, rules.scale_to):
        if cid is not None:
            ok &= holds([cid])
    return ok


def mean_areas(idx, category_id: int) -> tuple[dict[int, float], float]:
    """Mean box area of class ``category_id``'s objects (crowd regions left out) per image id
    holding one, and over the dataset (0 when there is none)."""
    sel = (idx.ann_category_ids == category_id) & ~idx.ann_iscrowd
    boxes = idx.ann_boxes[sel]
    areas = boxes[:, 2] * boxes[:, 3]
    ids = idx.ann_image_ids[sel]
    if not areas.size:
        return {}, 0.0
    uniq, inv = np.unique(ids, return_inverse=True)
    means = np.bincount(inv, weights=areas) / np.bincount(inv)
    return dict(zip(uniq.tolist(), means.tolist())), float(areas.mean())


class Scene:
    """One target image's geometry for the rules: host regions (``inside``), blocked regions
    (``outside``), the reference area (``scale_to``). Masks are rasterised only with ``region:
    mask`` and only for the classes the rules name."""

    def __init__(self, rules: Rules, hw: tuple[int, int], anns: list[tuple[int, tuple, object, bool]]):
        """``anns``: (category id, (x0, y0, x1, y1), segmentation, iscrowd) of the image's objects,
        the boxes as the planner holds them (``host_boxes`` are those of the hosts, to leave out
        of the overlap rule)."""
        self.rules, self.hw = rules, hw
        H, W = hw
        m = rules.margin
        self.hosts: list[tuple[int, int, int, int]] = []
        self.host_boxes: list[tuple] = []
        self.host_masks: list[np.ndarray | None] = []
        blocked_boxes: list[tuple[float, float, float, float]] = []
        blocked = np.zeros((H, W), np.uint8) if rules.region == "mask" and rules.outside else None
        ref: list[float] = []
        for cid, box, seg, crowd in anns:
            if crowd:
                continue
            bx0, by0, bx1, by1 = box
            xywh = [bx0, by0, bx1 - bx0, by1 - by0]
            if cid == rules.inside:
                x0, y0 = max(0, math.ceil(bx0) + m), max(0, math.ceil(by0) + m)
                x1, y1 = min(W, math.floor(bx1) - m), min(H, math.floor(by1) - m)
                if x1 > x0 and y1 > y0:
                    self.hosts.append((x0, y0, x1, y1))
                    self.host_boxes.append(box)
                    self.host_masks.append(_integral(_mask(seg, xywh, hw), -m) if rules.region == "mask" else None)
            if cid in rules.outside:
                if blocked is not None:
                    blocked |= _grown(_mask(seg, xywh, hw), m)
                else:
                    blocked_boxes.append((bx0 - m, by0 - m, bx1 + m, by1 + m))
            if cid == rules.scale_to:
                ref.append((bx1 - bx0) * (by1 - by0))
        self.blocked_boxes = blocked_boxes
        self.blocked = None if blocked is None else cv2.integral(blocked)
        self.ref_area = float(np.mean(ref)) if ref else 0.0

    def free(self, x: int, y: int, w: int, h: int, host: int | None) -> bool:
        """Whether the box (x, y, w, h) keeps the rules: inside host ``host``'s mask (region mask)
        and clear of every blocked region."""
        inside = None if host is None else self.host_masks[host]
        if inside is not None and _box_sum(inside, x, y, w, h) != w * h:
            return False
        if self.blocked is not None:
            return _box_sum(self.blocked, x, y, w, h) == 0
        return not any(x < bx1 and bx0 < x + w and y < by1 and by0 < y + h for bx0, by0, bx1, by1 in self.blocked_boxes)


def _mask(seg, bbox, hw) -> np.ndarray:
    """The object's uint8 0/1 mask (its segmentation, else its box), image-sized."""
    from pycocotools import mask as mask_utils

    from ltaug.pixels import masks

    rle, _ = masks.annotation_rle(seg, list(bbox), hw[0], hw[1])
    return mask_utils.decode(rle)


def _grown(mask: np.ndarray, margin: int) -> np.ndarray:
    """``mask`` dilated (margin > 0) or eroded (margin < 0) by ``|margin|`` px (a square element)."""
    if margin == 0:
        return mask
    kernel = np.ones((2 * abs(margin) + 1,) * 2, np.uint8)
    return cv2.dilate(mask, kernel) if margin > 0 else cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT,
                                                                 borderValue=0)


def _integral(mask: np.ndarray, margin: int) -> np.ndarray:
    return cv2.integral(_grown(mask, margin))


def _box_sum(integral: np.ndarray, x: int, y: int, w: int, h: int) -> int:
    return int(integral[y + h, x + w] - integral[y, x + w] - integral[y + h, x] + integral[y, x])


# -- affine objects -------------------------------------------------------------------------

def affine_matrix(w: int, h: int, angle: float, shear: float) -> tuple[np.ndarray, int, int]:
    """``(M, out_w, out_h)``: the 2 x 3 map of a ``w x h`` object turned by ``angle`` and sheared
    by ``shear`` degrees about its centre (module docstring), into the bounding box of its
    transformed corners (``out_w x out_h``, rounded up)."""
    t, p = math.radians(angle), math.radians(shear)
    c, s = math.cos(t), math.sin(t)
    a = np.array([[c, -s], [s, c]]) @ np.array([[1.0, math.tan(p)], [0.0, 1.0]])
    corners = (np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) - [w / 2, h / 2]) @ a.T
    lo, hi = corners.min(0), corners.max(0)
    out_w, out_h = max(1, math.ceil(hi[0] - lo[0] - 1e-9)), max(1, math.ceil(hi[1] - lo[1] - 1e-9))
    shift = np.array([out_w / 2, out_h / 2]) - a @ np.array([w / 2, h / 2])
    return np.hstack([a, shift[:, None]]), out_w, out_h


def warp_object(crop: np.ndarray, mask: np.ndarray, angle: float, shear: float) -> tuple[np.ndarray, np.ndarray]:
    """The crop and its 0/1 mask through :func:`affine_matrix` (bilinear; the mask thresholded at 0.5)."""
    h, w = mask.shape
    m, out_w, out_h = affine_matrix(w, h, angle, shear)
    size = (out_w, out_h)
    warped = cv2.warpAffine(crop, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    wm = cv2.warpAffine(mask * np.uint8(255), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0)
    return warped, cv2.threshold(wm, 127, 1, cv2.THRESH_BINARY)[1]


def feathered_rectangle(mask: np.ndarray, fraction: float) -> np.ndarray:
    """float32 alpha of a box-only object: M * (G_sigma * M) with a zero border, sigma = ``fraction``
    times the short side of the box; M itself (float) when that is under 0.5 px."""
    m = mask.astype(np.float32)
    sigma = fraction * min(mask.shape)
    if sigma < 0.5:
        return m
    alpha: np.ndarray = cv2.GaussianBlur(m, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_CONSTANT)
    alpha *= m
    return alpha


def draw_affine(spec, rng: np.random.Generator) -> tuple[float, float]:
    """(angle, shear) in degrees, uniform in [-rotate, rotate] and [-shear, shear]; no draw for a zero range."""
    rot, shr = float(getattr(spec, "rotate", 0.0)), float(getattr(spec, "shear", 0.0))
    angle = float(rng.uniform(-rot, rot)) if rot else 0.0
    shear = float(rng.uniform(-shr, shr)) if shr else 0.0
    return round(angle, 3), round(shear, 3)

