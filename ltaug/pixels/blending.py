"""Blending beyond feathering: Poisson cloning (normal and mixed gradients) and colour harmonisation.

Both work on a pasted object ``obj`` (h x w x 3 uint8) with 0/1 ``mask`` (h x w) whose top-left
corner goes to (x, y) of ``image``; :func:`ltaug.pixels.functional.paste_object` calls them.

* Poisson image editing (Perez, Gangnet and Blake, "Poisson Image Editing", SIGGRAPH 2003):
  inside the mask Omega, find f with Laplacian(f) = div(v) and f = image on Omega's boundary.
  ``normal`` cloning takes v = grad(obj): the object's texture, the target's colour at the edge.
  ``mixed`` cloning takes, at each pixel, the stronger of the two gradients,
  v = grad(obj) if |grad(obj)| > |grad(image)| else grad(image), so the target's strong
  structure (texture, edges) shows through the object's flat parts (Perez et al., section 3,
  "mixing gradients"). OpenCV's ``seamlessClone(..., MIXED_CLONE)`` measures a gradient's
  strength per channel as |d/dx - d/dy| and solves with a discrete sine transform.
* Colour harmonisation (Reinhard, Ashikhmin, Gooch and Shirley, "Color Transfer between
  Images", IEEE CG&A 2001): per channel c of CIE L*a*b*,
  ``l_c' = (l_c - mu_obj,c) * s_c + mu_band,c`` with ``s_c = sigma_band,c / sigma_obj,c``,
  statistics of the object inside its mask and of the target in a band of ``band`` px around
  the mask. The transform is done before any blend, so it composes with every blend mode.
"""
from __future__ import annotations

import cv2
import numpy as np

HARMONIZE = ("none", "lab")
BAND = 8  # px around the mask whose colours the object is matched to
STD_RATIO = (0.5, 2.0)  # s_c is clipped to this range (see harmonize)
CLONE_FLAGS = {"poisson": cv2.NORMAL_CLONE, "poisson_mixed": cv2.MIXED_CLONE}
CLONE_MARGIN = 2  # px the target must extend around the object for seamlessClone


def seamless_paste(image: np.ndarray, obj: np.ndarray, mask: np.ndarray, x: int, y: int, mode: str) -> bool:
    """Poisson-clone ``obj`` into ``image`` at (x, y) in place (``mode``: a key of :data:`CLONE_FLAGS`).

    Returns False, leaving ``image`` untouched, when the object lies within
    :data:`CLONE_MARGIN` px of the image border, its mask is empty, or OpenCV refuses it
    (OpenCV 5 asserts on masks a few pixels across); the caller then blends another way.
    Pixels outside the mask never change.
    """
    h, w = mask.shape
    H, W = image.shape[:2]
    d = CLONE_MARGIN
    if not (x >= d and y >= d and x + w + d <= W and y + h + d <= H and mask.any()):
        return False
    # seamlessClone wants the mask inside its patch (a zero frame) and, as measured with
    # OpenCV 5.0, a destination strictly larger than the patch (an equal-sized one is
    # silently left as it was): patch = object + 1 px, destination = object's surroundings
    # + 2 px. It centres the mask's bounding rectangle at `center`.
    m = cv2.copyMakeBorder(mask * np.uint8(255), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    src = cv2.copyMakeBorder(obj, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    ys, xs = np.nonzero(m)
    x0, y0 = int(xs.min()), int(ys.min())
    center = (1 + x0 + (int(xs.max()) - x0 + 1) // 2, 1 + y0 + (int(ys.max()) - y0 + 1) // 2)
    around = np.ascontiguousarray(image[y - d:y + h + d, x - d:x + w + d])
    try:
        out = cv2.seamlessClone(src, around, m, center, CLONE_FLAGS[mode])
    except cv2.error:  # OpenCV 5.0 asserts on masks a few pixels across
        return False
    np.copyto(image[y:y + h, x:x + w], out[d:d + h, d:d + w], where=mask[..., None].astype(bool))
    return True


def band_mask(mask: np.ndarray, x: int, y: int, height: int, width: int,
              band: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """The band of ``band`` px around ``mask`` (placed at (x, y) in a ``height x width`` image).

    Returns ``(window, ring)``: ``window`` the (rows, cols) slices of the image around the
    object, cut at the image border, and ``ring`` a bool array of the window's shape,
    ``dilate(M, disc of radius band) AND NOT M``: pixels within ``band`` px of the mask,
    outside it, and inside the image (nothing beyond the border is counted or padded in).
    """
    h, w = mask.shape
    if not (0 <= x and 0 <= y and x + w <= width and y + h <= height):
        raise ValueError(f"object {w}x{h} at ({x}, {y}) is not inside the {width}x{height} image")
    x0, y0 = max(0, x - band), max(0, y - band)
    x1, y1 = min(width, x + w + band), min(height, y + h + band)
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    m[y - y0:y - y0 + h, x - x0:x - x0 + w] = mask
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    ring = cv2.dilate(m, disc) > m  # dilated and not in the mask
    return (slice(y0, y1), slice(x0, x1)), ring


def lab_stats(lab: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (population, float64) of the 3-channel ``lab`` over the
    pixels where ``where`` (bool or 0/1, ``lab``'s height and width) is set (OpenCV ``meanStdDev``)."""
    mean, sd = cv2.meanStdDev(lab, mask=where.view(np.uint8) if where.dtype == bool else where)
    return mean.ravel(), sd.ravel()


def harmonize(obj: np.ndarray, mask: np.ndarray, image: np.ndarray, x: int, y: int, band: int = BAND,
              *, rgb: bool = False) -> np.ndarray:
    """``obj`` with its colours matched to the target around where it will be pasted (Reinhard et al. 2001).

    In CIE L*a*b*, per channel c: ``l_c' = (l_c - mu_obj,c) * s_c + mu_band,c``, with
    ``s_c = clip(sigma_band,c / sigma_obj,c, 1/2, 2)``; mu_obj, sigma_obj over the object's
    mask, mu_band, sigma_band over the target ``image``'s pixels within ``band`` px of the mask
    once pasted at (x, y) (:func:`band_mask`: outside the mask, inside the image). The clip is
    ours, not Reinhard's: a flat object (sigma_obj near 0) in a busy scene would otherwise
    have its noise multiplied tenfold or more. Uses OpenCV's 8-bit L*a*b* (L scaled to 0-255,
    a and b offset by 128; the transfer is linear per channel, so the scale does not change
    it), then rounds and clips to 0-255 before converting back. The whole crop is transformed
    (the blend uses only its masked part). ``rgb``: the arrays are RGB, not OpenCV's BGR.

    Returns a new uint8 array; ``obj`` itself when the mask or the band is empty (nothing to
    match). ``image`` is only read.
    """
    if band < 1:
        raise ValueError(f"band must be >= 1 px, got {band}")
    (rows, cols), ring = band_mask(mask, x, y, image.shape[0], image.shape[1], band)
    inside = mask.astype(bool)
    if not ring.any() or not inside.any():
        return obj
    to_lab, from_lab = (cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB) if rgb else (cv2.COLOR_BGR2LAB, cv2.COLOR_LAB2BGR)
    lab = cv2.cvtColor(obj, to_lab)
    mu_o, sd_o = lab_stats(lab, inside)
    mu_b, sd_b = lab_stats(cv2.cvtColor(np.ascontiguousarray(image[rows, cols]), to_lab), ring)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.clip(np.where(sd_o > 0, sd_b / sd_o, STD_RATIO[1]), *STD_RATIO)
    out = (lab.astype(np.float64) - mu_o) * s + mu_b
    return cv2.cvtColor(np.clip(np.rint(out), 0, 255).astype(np.uint8), from_lab)
