"""The same objects pasted with several blending modes, side by side (report grid, README pictures).

A mode is a blend of :data:`~ltaug.pixels.functional.BLENDS`, optionally followed by ``+`` and
a harmonisation of :data:`~ltaug.pixels.blending.HARMONIZE`: ``gaussian``, ``poisson_mixed``,
``gaussian+lab``. Every mode gets a copy of the same image and the same objects at the same
places, pasted in the same order, so the outputs differ only by how the edges and colours are
blended.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ltaug.pixels.blending import BAND, HARMONIZE
from ltaug.pixels.functional import BLENDS, paste_object

MODES = ("gaussian", "poisson", "poisson_mixed", "gaussian+lab")  # the README picture's and a good default


def parse_mode(mode: str) -> tuple[str, str]:
    """``"gaussian+lab"`` -> ``("gaussian", "lab")``; ``"poisson"`` -> ``("poisson", "none")``."""
    blend, _, harm = mode.partition("+")
    harm = harm or "none"
    if blend not in BLENDS or harm not in HARMONIZE:
        raise ValueError(f"blend mode {mode!r}: want BLEND or BLEND+HARMONIZE, BLEND one of {', '.join(BLENDS)}, "
                         f"HARMONIZE one of {', '.join(HARMONIZE)}")
    return blend, harm


def blend_comparison(image: np.ndarray, objects: Sequence[tuple[np.ndarray, np.ndarray, int, int]],
                     modes: Sequence[str] = MODES, sigma: float = 1.0, band: int = BAND,
                     rgb: bool = False) -> list[tuple[np.ndarray, list[str]]]:
    """Per mode, a copy of ``image`` with ``objects`` pasted that way, and the blend each object got.

    ``objects``: ``(obj, mask, x, y)`` per object, already at their pasted size and flip (for
    a copy-paste placement: ``bank.get(row)``, then
    :func:`~ltaug.pixels.functional.resize_object` to its ``w``, ``h``, ``flip``), pasted in
    order with :func:`~ltaug.pixels.functional.paste_object`. ``image`` is not changed. The
    blends used name the fallbacks (a ``poisson`` object near the border is ``gaussian``).
    """
    parsed = [parse_mode(m) for m in modes]
    out = []
    for blend, harm in parsed:
        canvas = image.copy()
        used = [paste_object(canvas, obj, mask, x, y, blend, sigma, harmonize=harm, band=band, rgb=rgb)
                for obj, mask, x, y in objects]
        out.append((canvas, used))
    return out


def labelled_grid(images: Sequence[np.ndarray], labels: Sequence[str], cols: int = 2,
                  tile_width: int = 320) -> np.ndarray:
    """The images (of one size) resized to ``tile_width`` px wide, each with its label in a strip
    above it, in rows of ``cols``; empty cells white. uint8, the images' channel order."""
    if not images or len(images) != len(labels):
        raise ValueError(f"labelled_grid: {len(images)} images for {len(labels)} labels")
    h, w = images[0].shape[:2]
    th = max(1, round(h * tile_width / w))
    strip = 22
    tiles = []
    for img, label in zip(images, labels):
        tile = np.full((strip + th, tile_width, 3), 255, np.uint8)
        tile[strip:] = cv2.resize(img, (tile_width, th), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, label, (6, strip - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % cols)
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    return np.vstack(rows)
