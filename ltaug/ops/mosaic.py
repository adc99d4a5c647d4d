"""``mosaic``: 2 x 2 mosaics of four images, masks and boxes carried along (pixels: :mod:`ltaug.pixels.mosaic`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ltaug.ops.base import Param, PixelOperation, register

if TYPE_CHECKING:
    import numpy as np

    from ltaug.io.dataset import Dataset


@register
class Mosaic(PixelOperation):
    """Add mosaics to the dataset: each output image holds four input images (drawn uniformly) in a
2 x 2 layout around a random centre (uniform in the middle half of the output), each resized
to fit a quarter of --size keeping its aspect ratio. Masks come along (polygons moved exactly,
RLE masks resized), boxes too; objects cut by the output edge keep their visible part and are
dropped when less than --min-visible of them (or under --min-area px) remains.
The input images stay in the output; --count mosaics are added.

examples:
  ltaug mosaic train.json --images train2017/ -o out/mosaic --count 1000
  ltaug mosaic train.json --images train2017/ -o out/mosaic --size 1024 1024 --min-visible 0.5"""

    name = "mosaic"
    summary = "add 2x2 mosaics (with masks) of four images"

    count = Param(None, "mosaics to add (default: one per input image)", type=int, optional=True, low=0, metavar="N")
    size = Param((640, 640), "output size, px", type=int, nargs=2, low=8, metavar=("W", "H"))
    min_visible = Param(0.25, "drop objects with less than F of their area inside", type=float, low=0, high=1,
                        metavar="F")
    min_area = Param(4, "drop remnants under PX pixels", low=0, metavar="PX")

    def plan(self, dataset: Dataset, prepared: dict) -> tuple[list[dict], dict, int]:
        from ltaug.pixels.mosaic import plan_mosaic

        recipes = plan_mosaic(dataset, self)
        return recipes, {}, len(recipes)

    def render(self, recipe: dict, loaded: list, opened: object) -> tuple[np.ndarray, dict]:
        from ltaug.pixels.mosaic import render_mosaic

        img, new, dropped = render_mosaic(loaded, recipe, self)
        return img, {"new": new, "removed": dropped}

    def recipe_params(self, recipe: dict) -> dict:
        return {"centre": recipe["centre"]}
