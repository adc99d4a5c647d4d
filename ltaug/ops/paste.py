"""``paste``: copy-paste of bank objects onto the dataset's images, chosen by class rarity.

The parameters are declared here; the planning and the pixels are :mod:`ltaug.pixels.copy_paste`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ltaug.errors import SpecError
from ltaug.ops.base import Param, PixelOperation, StepContext, register
from ltaug.pixels.bank import Flag
from ltaug.pixels.copy_paste import DEFAULT_EXCLUDE, WEIGHTINGS
from ltaug.pixels.functional import BLENDS
from ltaug.rebalance.planning import TARGET_FIELDS, Target

if TYPE_CHECKING:
    import numpy as np

    from ltaug.io.dataset import Dataset
    from ltaug.pixels.bank import Bank

@register
class Paste(PixelOperation):
    """Paste objects cut out of the dataset (an object bank, see `ltaug bank`) onto its images,
chosen by class, and write a new dataset: pasted images as new JPEG files, the other images
linked from the input, one COCO/LVIS annotation file with provenance on every new record.

which objects (--weighting):
  uniform   every bank object equally likely (classes as often as they occur)
  inverse   class c with probability ~ n_c^-power (--power 1: inverse frequency; 0.5: inverse sqrt)
  budget    exactly what `ltaug plan` finds missing per class: T_c - n_c objects of class c, for
            the target --min-instances / --exponent / --max-factor (same meaning as in `ltaug plan`)

where: each object keeps its size relative to the image (scaled by sqrt of the area ratio of
target and source image), times a jitter drawn log-uniformly from --scale; flipped half the
time (--no-flip to stop); placed uniformly where its box covers at most --max-overlap of any
box already there (10 tries, else not pasted and counted).

blending (--blend): hard | gaussian (mask blurred by --sigma px, cut back to the mask: no halo
of the source background) | poisson (OpenCV seamlessClone; objects within 2 px of the image
border fall back to gaussian and are counted).

occlusion: objects covered by pasted ones get their masks cut and boxes recomputed; those
left with less than --min-visible of their area are removed (and counted per class).

box-only datasets: objects without masks are pasted as their whole box (a rectangle of their
source image, background included): used only when no bank object has a mask, or with --box-only.

examples:
  ltaug paste train.json --images train2017/ -o out/paste --weighting inverse --objects 3
  ltaug paste train.json --images train2017/ -o out/paste --weighting budget --min-instances 50 --max-factor 10
  ltaug paste train.json --images train2017/ --bank bank/ -o out/paste --blend poisson --workers 2"""

    name = "paste"
    summary = "copy-paste rare-class objects onto images (gaussian/poisson blending)"
    replaces_images = True

    weighting = Param("inverse", "how objects are chosen", choices=WEIGHTINGS, group="which objects")
    power = Param(1.0, "inverse: p_c ~ n_c^-P", type=float, low=0, metavar="P", group="which objects")
    objects = Param(3, "objects tried per image", low=1, metavar="K", group="which objects")
    prob = Param(1.0, "uniform/inverse: fraction of images that get objects", type=float, low=0, high=1,
                 metavar="P", group="which objects")
    target = Param(None, "budget", fields=TARGET_FIELDS, group="which objects")  # the planner's Target
    blend = Param("gaussian", "how the object's edge meets the image", choices=BLENDS,
                  group="placement and blending")
    sigma = Param(1.0, "gaussian: feather width, px", type=float, low=0, metavar="PX", group="placement and blending")
    scale = Param((0.5, 1.5), "size jitter relative to the plausible size", type=float, nargs=2, above=0,
                  metavar=("LOW", "HIGH"), group="placement and blending")
    flip = Param(True, "flip each object with probability 1/2", group="placement and blending")
    max_overlap = Param(0.3, "a pasted box may cover at most F of any box already there", type=float, low=0, high=1,
                        metavar="F", group="placement and blending")
    min_visible = Param(0.25, "remove objects left with less than F of their area", type=float, low=0, high=1,
                        metavar="F", group="placement and blending")
    exclude = Param(tuple(n.lower() for n, f in Flag.__members__.items() if f & DEFAULT_EXCLUDE),
                    "bank quality flags to leave out", type=str, nargs="*",
                    choices=tuple(n.lower() for n in Flag.__members__), metavar="FLAGS",
                    group="which objects")
    box_only = Param(False, "paste box-only objects as rectangles even if masks exist", group="which objects")
    bank = Param(None, "object bank from `ltaug bank` (default: built from the input)", type=str, optional=True,
                 metavar="BANK")

    def check(self) -> None:
        lo, hi = self.scale
        if lo > hi:
            raise SpecError("scale", f"must satisfy low <= high, got {lo} {hi}")
        if self.weighting == "budget" and not self.target:
            raise SpecError("target", "is needed by weighting 'budget' (min_instances / exponent / max_factor)")
        if self.target and self.weighting != "budget":
            raise SpecError("target", f"is for weighting 'budget', not {self.weighting!r}")
        if self.target:
            Target(**self.target)

    @property
    def exclude_flags(self) -> int:
        """The excluded bank flags as a bit mask."""
        bits = 0
        for name in self.exclude:
            bits |= Flag[name.upper()]
        return int(bits)

    # -- the engine's side ------------------------------------------------------------------

    def prepare(self, ctx: StepContext) -> dict:
        from ltaug.pixels.bank import build_bank

        if self.bank is not None:
            return {"bank": self.bank}
        path = Path(ctx.work) / "bank"
        if not (path / "meta.json").is_file():
            build_bank(ctx.source, ctx.images_dir, path, workers=ctx.workers, progress=False)
        return {"bank": str(path)}

    def plan(self, dataset: Dataset, prepared: dict) -> tuple[Iterator[dict], dict, int]:
        from ltaug.pixels.bank import Bank
        from ltaug.pixels.copy_paste import iter_plan_paste

        return iter_plan_paste(dataset, Bank(prepared["bank"]), self)

    def sources(self, recipe: dict) -> list:
        return [recipe["image_id"]]

    def open(self, prepared: dict) -> Bank:
        from ltaug.pixels.bank import Bank

        return Bank(prepared["bank"], check_table=False)  # plan() opened and checked it

    def render(self, recipe: dict, loaded: list, opened: Bank) -> tuple[np.ndarray, dict]:
        from ltaug.pixels.copy_paste import render_paste

        (img, _, anns), = loaded
        kept, new, counts = render_paste(img, anns, recipe, opened, self)
        untouched = {id(a) for a in anns}  # render_paste keeps these records as they are: sent back as ids
        return img, {"kept": [a["id"] if id(a) in untouched else a for a in kept], "new": new,
                     "removed": counts["removed"], "pasted_removed": counts["pasted_removed"], "blend": counts["blend"]}

    def recipe_params(self, recipe: dict) -> dict:
        return {"objects": [{key: o[key] for key in ("annotation_id", "category_id", "x", "y", "w", "h", "flip")}
                            for o in recipe["objects"]]}

    @staticmethod
    def report_parts(r: dict) -> list[str]:
        added, removed = sum(r["added_per_class"].values()), sum(r["removed_per_class"].values())
        blends = ", ".join(f"{k} {v}" for k, v in sorted(r["blend"].items()))
        parts = [f"{added} objects pasted ({blends})"]
        plan = r.get("plan", {})
        if plan.get("no_room"):
            parts.append(f"{plan['no_room']} found no room")
        if plan.get("unplaced_budget"):
            parts.append(f"{plan['unplaced_budget']} of the budget not placed (too few images for --objects)")
        hidden = sum(r["pasted_removed_per_class"].values())
        parts.append(f"{removed} existing objects removed as occluded"
                     + (f", {hidden} pasted ones hidden by later pastes" if hidden else ""))
        return parts
