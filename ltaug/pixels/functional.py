"""Pure pixel operations of the engine: resize an object, blend it into an image, mix two images.

Images are uint8 BGR ``h x w x 3`` arrays (what OpenCV decodes); masks are uint8 0/1 ``h x w``.
Every function touches only the region it needs (an object's box, not the whole image):
blurring or blending a whole 640 x 480 image for a 100 px object costs 10-20 times more.

Blending modes for pasting an object with mask M at (x, y) into image I (Dwibedi et al.,
"Cut, Paste and Learn", ICCV 2017, showed that detectors learn the paste boundary unless it
is hidden; they used Gaussian and Poisson blending):

* ``hard``: I = M * O + (1 - M) * I.
* ``gaussian``: alpha = M * (G_sigma * M), the mask blurred by a Gaussian of ``sigma`` px and
  then cut back to the mask: the edge fades into the target from inside the object, and no
  pixel outside the mask (the source image's background) is ever used, so there is no halo.
  I = alpha * O + (1 - alpha) * I, computed in the object's box only.
* ``poisson``: OpenCV's ``seamlessClone`` (Perez et al., "Poisson Image Editing", SIGGRAPH
  2003) solves for pixels inside M whose gradients are the object's and whose boundary is the
  target's. OpenCV needs a margin around the mask inside the image; an object within 2 px
  of the image border, or one OpenCV refuses (it asserts on masks only a few pixels
  across), is blended ``gaussian`` instead (:func:`paste_object` says which mode it used).
* ``poisson_mixed``: the same with mixed gradients (``MIXED_CLONE``): at each pixel the
  stronger of the object's and the target's gradient, so the target's texture shows through
  the object's flat parts; same margin and fallback (:mod:`ltaug.pixels.blending`).

Colour harmonisation (``harmonize="lab"``, :func:`ltaug.pixels.blending.harmonize`) matches the
object's L*a*b* mean and spread to a band around it (Reinhard et al. 2001) before any blend.
"""
from __future__ import annotations

import cv2
import numpy as np

from ltaug.pixels import blending
from ltaug.pixels.blending import BAND, HARMONIZE

BLENDS = ("hard", "gaussian", "poisson", "poisson_mixed")
JPEG_QUALITY = 95
PAD_VALUE = 114  # grey of empty canvas, as mmdetection and ultralytics pad mosaics


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A 0/1 mask at ``width x height``: bilinear on mask x 255, then >= 128 (threshold at 0.5).

    Thresholding the bilinear mask keeps its edge where the object's edge is after resizing,
    which nearest-neighbour sampling would shift by up to half a source pixel. Every resize of
    a mask in ltaug (pasted objects, mosaic tiles, mixup, the online transforms) uses this rule.
    """
    r = cv2.resize(mask * np.uint8(255), (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
    return cv2.threshold(r, 127, 1, cv2.THRESH_BINARY)[1]  # r > 127: 1


def resize_object(crop: np.ndarray, mask: np.ndarray, width: int, height: int,
                  flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The crop and its mask at ``width x height`` (bilinear / :func:`resize_mask`), flipped if
    asked, as C-contiguous arrays (the inputs themselves when neither resized nor flipped)."""
    size = (int(width), int(height))
    if crop.shape[1::-1] != size:
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR)
        mask = resize_mask(mask, *size)
    if flip:
        return cv2.flip(crop, 1), cv2.flip(mask, 1)
    return np.ascontiguousarray(crop), np.ascontiguousarray(mask)


def feather_alpha(mask: np.ndarray, sigma: float) -> np.ndarray:
    """float32 alpha = M * (G_sigma * M): 1 deep inside the mask, fading towards its edge, 0 outside."""
    m = mask.astype(np.float32)
    if sigma <= 0:
        return m
    alpha: np.ndarray = cv2.GaussianBlur(m, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REPLICATE)
    alpha *= m
    return alpha


def blend_alpha(region: np.ndarray, obj: np.ndarray, alpha: np.ndarray) -> None:
    """``region = alpha * obj + (1 - alpha) * region`` in place (OpenCV ``blendLinear``, rounded to uint8)."""
    region[...] = cv2.blendLinear(obj, region, alpha, 1.0 - alpha)


def paste_object(image: np.ndarray, obj: np.ndarray, mask: np.ndarray, x: int, y: int,
                 blend: str = "gaussian", sigma: float = 1.0, *, harmonize: str = "none", band: int = BAND,
                 rgb: bool = False) -> str:
    """Paste ``obj`` (h x w x 3) with ``mask`` (h x w) into ``image`` at top-left (x, y), in place.

    The object must lie inside the image. ``harmonize``: one of :data:`HARMONIZE`; ``lab``
    first matches the object's colours to a ``band`` px band of ``image`` around the mask
    (:func:`ltaug.pixels.blending.harmonize`; ``rgb``: the arrays are RGB, which only that
    colour conversion needs to know). Returns the blend mode used (``poisson`` and
    ``poisson_mixed`` fall back to ``gaussian`` when the object lies within 2 px of the image
    border, its mask is empty, or OpenCV refuses it).
    """
    h, w = mask.shape
    H, W = image.shape[:2]
    if not (0 <= x and 0 <= y and x + w <= W and y + h <= H):
        raise ValueError(f"object {w}x{h} at ({x}, {y}) is not inside the {W}x{H} image")
    if harmonize not in HARMONIZE:
        raise ValueError(f"harmonize must be one of {', '.join(HARMONIZE)}, got {harmonize!r}")
    if harmonize == "lab":
        obj = blending.harmonize(obj, mask, image, x, y, band, rgb=rgb)
    region = image[y:y + h, x:x + w]
    if blend == "hard":
        np.copyto(region, obj, where=mask[..., None].astype(bool))
        return "hard"
    if blend in blending.CLONE_FLAGS and blending.seamless_paste(image, obj, mask, x, y, blend):
        return blend
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    blend_alpha(region, obj, feather_alpha(mask, sigma))
    return "gaussian"


def mix(a: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """Mixup of two images of the same size: lam * a + (1 - lam) * b, rounded (Zhang et al., ICLR 2018)."""
    return cv2.addWeighted(a, float(lam), b, 1.0 - float(lam), 0.0)


def decode_image(data: bytes | np.ndarray, orientation: int = 1, *, upright: bool = True) -> np.ndarray | None:
    """The BGR pixels (uint8, 3 channels) of encoded image ``data``; None if undecodable.

    What OpenCV's ``IMREAD_COLOR`` makes of any file: grayscale repeated into 3 channels, a
    palette expanded, alpha dropped (the stored colours kept), 16 bits per channel reduced to
    8 (the high byte), CMYK converted; the format read from the content.

    ``orientation``: the file's EXIF orientation (1-8, from its header:
    :func:`ltaug.io.imagecheck.read_header`). 1 (none): decoded in stored orientation, with
    ``IMREAD_IGNORE_ORIENTATION``. Otherwise turned upright as the tag says (OpenCV's
    ``IMREAD_COLOR`` does so for JPEG, PNG, WebP and TIFF, as Pillow's ``exif_transpose``
    does), or, with ``upright=False``, in stored orientation (the turn undone: OpenCV's TIFF
    reader turns even with ``IMREAD_IGNORE_ORIENTATION``).
    """
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if not buf.size:
        return None
    if not 2 <= orientation <= 8:
        return cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or upright:
        return img
    return unorient(img, orientation)


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels turned upright as EXIF ``orientation`` (1-8) says (Pillow's ``exif_transpose``)."""
    return _turn(image, _TO_UPRIGHT.get(orientation))


def unorient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Upright pixels back to how a file of EXIF ``orientation`` stores them (:func:`orient` undone)."""
    return _turn(image, _TO_STORED.get(orientation))


# (OpenCV operation, its argument) per orientation; 6 and 8 undo each other, the others undo themselves
_ROT_CW, _ROT_CCW = cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE
_TO_UPRIGHT = {2: ("flip", 1), 3: ("flip", -1), 4: ("flip", 0), 5: ("transpose", None), 6: ("rotate", _ROT_CW),
               7: ("transverse", None), 8: ("rotate", _ROT_CCW)}
_TO_STORED = {**_TO_UPRIGHT, 6: ("rotate", _ROT_CCW), 8: ("rotate", _ROT_CW)}


def _turn(image: np.ndarray, how: tuple | None) -> np.ndarray:
    if how is None:
        return image
    op, arg = how
    if op == "flip":
        return cv2.flip(image, arg)
    if op == "rotate":
        return cv2.rotate(image, arg)
    if op == "transpose":
        return cv2.transpose(image)
    return cv2.flip(cv2.transpose(image), -1)  # transverse: the anti-diagonal


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of a BGR image (OpenCV's libjpeg-turbo; no EXIF, so no orientation to misread)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
