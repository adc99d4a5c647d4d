"""``mixup``: Beta-weighted blends of two images keeping both images' objects (pixels: :mod:`ltaug.pixels.mixup`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ltaug.ops.base import Param, PixelOperation, register

if TYPE_CHECKING:
    import numpy as np

    from ltaug.io.dataset import Dataset


@register
class Mixup(PixelOperation):
    """Add mixed images: lambda * A + (1 - lambda) * B with lambda ~ Beta(alpha, alpha) (Zhang et
al. 2019 use alpha 1.5 for detection). B is resized keeping its aspect ratio to fit inside A,
at A's top-left corner; where B does not reach, the output is A. The annotations of both are
kept, each with its image's weight in "ltaug": {"mixup_weight": ...}, for a trainer that
weights the loss by it. The input images stay in the output; --count images are added.

examples:
  ltaug mixup train.json --images train2017/ -o out/mixup --count 500
  ltaug mixup train.json --images train2017/ -o out/mixup --alpha 8   # lambda close to 0.5"""

    name = "mixup"
    summary = "add mixup blends of two images (both images' objects kept)"

    count = Param(None, "mixed images to add (default: one per input image)", type=int, optional=True, low=0,
                  metavar="N")
    alpha = Param(1.5, "Beta(A, A) for lambda", type=float, above=0, metavar="A")
    min_visible = Param(0.0, "drop B's objects with less than F of their area inside (B is only scaled: 0 keeps "
                             "every one)", type=float, low=0, high=1, metavar="F")
    min_area = Param(1, "drop objects under PX pixels", low=0, metavar="PX")

    def plan(self, dataset: Dataset, prepared: dict) -> tuple[list[dict], dict, int]:
        from ltaug.pixels.mixup import plan_mixup

        recipes = plan_mixup(dataset, self)
        return recipes, {}, len(recipes)

    def render(self, recipe: dict, loaded: list, opened: object) -> tuple[np.ndarray, dict]:
        from ltaug.pixels.mixup import render_mixup

        img, new, dropped = render_mixup(loaded[0], loaded[1], recipe, self)
        return img, {"new": new, "removed": dropped}

    def recipe_params(self, recipe: dict) -> dict:
        return {"lam": recipe["lam"]}
