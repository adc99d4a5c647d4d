"""``paste``: copy-paste of bank objects onto the dataset's images, chosen by class rarity.

The parameters are declared here; the planning and the pixels are :mod:`ltaug.pixels.copy_paste`.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ltaug.errors import SpecError
from ltaug.ops.base import Param, PixelOperation, StepContext, register
from ltaug.pixels.backgrounds import FITS
from ltaug.pixels.bank import Flag
from ltaug.pixels.blending import BAND, HARMONIZE
from ltaug.pixels.copy_paste import DEFAULT_EXCLUDE, WEIGHTINGS
from ltaug.pixels.functional import BLENDS
from ltaug.pixels.placement import REGIONS
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
border fall back to gaussian and are counted) | poisson_mixed (seamlessClone's mixed gradients:
the target's texture shows through where it is stronger).

affine objects: --rotate / --shear turn and shear each object by angles drawn from [-DEG, DEG]
(masks and boxes through the same map, exactly); box-only objects are pasted as their rectangle
with an edge feathered over --box-feather x its short side (provenance: box_only).

placement rules (all optional; ltaug.pixels.placement has the exact rules):
  --classes A,B           paste only objects of these classes
  --onto-classes A,B      only onto images holding one of these; --not-onto-classes: none of these
  --inside CLASS          each pasted box inside an object of CLASS (--region box|mask, --margin PX within)
  --outside A,B           pasted boxes clear of these classes' boxes or masks (--margin PX away)
  --scale-to CLASS        an object keeps its size relative to CLASS's objects (mean box area in the
                          target image against its source image), not to the image
  the plan counts only placements that keep the rules; what could not be placed is counted per
  class and reason (no image the rules allow; no spot inside / outside the regions).

backgrounds (--backgrounds DIR): new images, each a background photo (kept, resized or tiled:
--background-fit) with --objects objects pasted by the same rules, --background-ratio R times the
dataset's images, added to them (the dataset's images are left as they are: a second paste step
pastes onto those). --background-annotations JSON (COCO) annotates the backgrounds, e.g. the parts
a defect must sit on (--inside part); its annotations stay on the new images.

colour (--harmonize lab): each object's LAB mean and std moved to those of a --band px ring around
it before blending (Reinhard et al. 2001; the std ratio kept within [1/2, 2]).

occlusion: objects covered by pasted ones get their masks cut and boxes recomputed; those
left with less than --min-visible of their area are removed (and counted per class).

box-only datasets: objects without masks are pasted as their whole box (a rectangle of their
source image, background included): used only when no bank object has a mask, or with --box-only.

never less than asked, silently: under budget, each class that gets fewer objects than asked is
listed with why (no object of it in the bank; all its bank objects left out by --exclude, by
flag; no room; too small; too few images for --objects; hidden by later pastes; unreadable
image), on the console, in run.json (the step's "shortfalls") and in `ltaug report`; and the
target's limits (at least min_instances, at most max_factor times each class's input count) are
checked on the final output, class by class ("limits" in run.json): later steps such as mosaic
and mixup copy objects whatever the target, so a limit is reported, not enforced, past this step.

examples:
  ltaug paste train.json --images train2017/ -o out/paste --weighting inverse --objects 3
  ltaug paste train.json --images train2017/ -o out/paste --weighting budget --min-instances 50 --max-factor 10
  ltaug paste train.json --images train2017/ --bank bank/ -o out/paste --blend poisson --workers 2
  ltaug paste parts.json --images img/ -o out/defects --classes scratch --inside part --region mask --margin 4 \
      --rotate 30 --scale-to part"""

    name = "paste"
    summary = "copy-paste rare-class objects onto images or new backgrounds (gaussian/poisson blending)"

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
    box_feather = Param(0.05, "box-only objects: feather the rectangle's edge over F x its short side (0: hard)",
                        type=float, low=0, high=0.5, metavar="F", group="placement and blending")
    rotate = Param(0.0, "turn each object by an angle drawn from [-DEG, DEG]", type=float, low=0, high=180,
                   metavar="DEG", group="placement and blending")
    shear = Param(0.0, "shear each object by an angle drawn from [-DEG, DEG]", type=float, low=0, high=45,
                  metavar="DEG", group="placement and blending")
    classes = Param((), "paste only objects of these classes (names or ids)", type=str, nargs="*", metavar="A,B",
                    group="placement rules")
    onto_classes = Param((), "paste only onto images holding one of these classes", type=str, nargs="*",
                         metavar="A,B", group="placement rules")
    not_onto_classes = Param((), "paste only onto images holding none of these classes", type=str, nargs="*",
                             metavar="A,B", group="placement rules")
    inside = Param(None, "keep each pasted box inside an object of this class", type=str, optional=True,
                   metavar="CLASS", group="placement rules")
    outside = Param((), "keep pasted boxes off the objects of these classes", type=str, nargs="*", metavar="A,B",
                    group="placement rules")
    region = Param("box", "inside / outside: an object's box or its mask", choices=REGIONS, group="placement rules")
    margin = Param(0, "inside: this far within the region; outside: this far from it", low=0, metavar="PX",
                   group="placement rules")
    scale_to = Param(None, "size each object relative to this class's objects (not to its image)", type=str,
                     optional=True, metavar="CLASS", group="placement rules")
    harmonize = Param("none", "match each object's colours to its surroundings (lab: mean and std in LAB, "
                      "Reinhard et al. 2001)", choices=HARMONIZE, group="placement and blending")
    band = Param(BAND, "harmonize: width of the ring around the object whose colours it matches", low=1,
                 metavar="PX", group="placement and blending")
    backgrounds = Param(None, "a folder of background images: add new images of pasted objects on them (the "
                        "dataset's images are left as they are)", type=str, optional=True, metavar="DIR",
                        group="backgrounds")
    background_annotations = Param(None, "a COCO file annotating the backgrounds (classes matched by name; what "
                                   "--onto-classes, --inside, --outside and --scale-to see)", type=str, optional=True,
                                   metavar="JSON", group="backgrounds")
    background_ratio = Param(1.0, "new images on backgrounds per image of the dataset (budget: at most)", type=float,
                             above=0, metavar="R", group="backgrounds")
    background_fit = Param("keep", "keep each background as it is, resize it to cover --background-size (cut "
                           "around the centre), or tile it", choices=FITS, group="backgrounds")
    background_size = Param((640, 640), "resize / tile: the new images' size", type=int, nargs=2, above=0,
                            metavar=("W", "H"), group="backgrounds")
    paths = ("backgrounds", "background_annotations")  # `ltaug run` reads them relative to its YAML (and the bank)
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
        if self.background_annotations is not None and self.backgrounds is None:
            raise SpecError("background_annotations", "is for backgrounds: give backgrounds too")

    @property
    def replaces_images(self) -> bool:  # type: ignore[override]
        """Pasting onto the dataset's images replaces them; onto backgrounds, adds new images."""
        return self.backgrounds is None

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

        if self.backgrounds is not None:
            from ltaug.pixels.backgrounds import iter_plan_backgrounds, read_backgrounds

            return iter_plan_backgrounds(dataset, Bank(prepared["bank"]), self,
                                         read_backgrounds(self.backgrounds, dataset, self))
        return iter_plan_paste(dataset, Bank(prepared["bank"]), self)

    def sources(self, recipe: dict) -> list:
        return [] if "background" in recipe else [recipe["image_id"]]

    def files(self, recipe: dict) -> list[tuple[str, str]]:
        if "background" not in recipe:
            return []
        assert self.backgrounds is not None
        return [(str(Path(self.backgrounds) / recipe["background"]), f"background {recipe['background']}")]

    def input_files(self) -> list[Path]:
        if self.backgrounds is None:
            return []
        from ltaug.pixels.backgrounds import background_files

        return background_files(Path(self.backgrounds)) + ([Path(self.background_annotations)]
                                                           if self.background_annotations else [])

    def open(self, prepared: dict) -> Bank:
        from ltaug.pixels.bank import Bank

        return Bank(prepared["bank"], check_table=False)  # plan() opened and checked it

    def render(self, recipe: dict, loaded: list, opened: Bank) -> tuple[np.ndarray, dict]:
        from ltaug.pixels.copy_paste import render_paste

        if "background" in recipe:
            return self._render_background(recipe, loaded, opened)
        (img, _, anns), = loaded
        kept, new, counts = render_paste(img, anns, recipe, opened, self)
        untouched = {id(a) for a in anns}  # render_paste keeps these records as they are: sent back as ids
        return img, {"kept": [a["id"] if id(a) in untouched else a for a in kept], "new": new,
                     "removed": counts["removed"], "pasted_removed": counts["pasted_removed"], "blend": counts["blend"]}

    def _render_background(self, recipe: dict, loaded: list, opened: Bank) -> tuple[np.ndarray, dict]:
        """A new image: the background fitted, the recipe's objects pasted, the background's own
        annotations kept (cut where covered; ``ltaug`` names their id in ``background_annotations``)."""
        from ltaug.pixels.backgrounds import fit_background
        from ltaug.pixels.copy_paste import render_paste

        (img, _, _), = loaded
        img = fit_background(img, self.background_fit, self.background_size)
        kept, new, counts = render_paste(img, recipe["annotations"], recipe, opened, self)
        own = [{**{k: v for k, v in a.items() if k not in ("id", "ltaug")},
                "ltaug": {**a.get("ltaug", {}), "op": "background", "source_annotation_id": a["id"]}} for a in kept]
        return img, {"new": own + new, "removed": counts["removed"], "pasted_removed": counts["pasted_removed"],
                     "blend": counts["blend"]}

    def recipe_params(self, recipe: dict) -> dict:
        out = {"objects": [{key: o[key] for key in ("annotation_id", "category_id", "x", "y", "w", "h", "flip",
                                                    "angle", "shear", "size") if key in o}
                           for o in recipe["objects"]]}
        if "background" in recipe:
            out = {"background": recipe["background"], "fit": self.background_fit, **out}
        return out

    @staticmethod
    def report_parts(r: dict) -> list[str]:
        added, removed = sum(r["added_per_class"].values()), sum(r["removed_per_class"].values())
        blends = ", ".join(f"{k} {v}" for k, v in sorted(r["blend"].items()))
        pasted = sum(r["blend"].values())  # every pasted object is blended once; the rest are backgrounds' own
        hidden = sum(r["pasted_removed_per_class"].values())
        parts = [f"{pasted - hidden} objects pasted ({blends})"]
        if added > pasted - hidden:
            parts.append(f"{added - pasted + hidden} annotations of the backgrounds carried")
        plan = r.get("plan", {})
        if plan.get("no_room"):
            parts.append(f"{plan['no_room']} found no room")
        if plan.get("unplaced_budget"):
            parts.append(f"{plan['unplaced_budget']} of the budget not placed (too few images for --objects)")
        parts.append(f"{removed} existing objects removed as occluded"
                     + (f", {hidden} pasted ones hidden by later pastes" if hidden else ""))
        return parts

    # -- what a class asked for and did not get ---------------------------------------------

    def limited_classes(self, category_ids: list[int], names: Sequence[str]) -> np.ndarray | None:
        """Bool per class (``category_ids``' order): the classes this step's budget limits, those of
        its ``classes`` rule; None: every class."""
        import numpy as np

        from ltaug.pixels.bank_select import resolve_classes

        if not self.classes:
            return None
        wanted = set(resolve_classes(category_ids, names, self.classes))
        return np.array([c in wanted for c in category_ids], bool)

    def class_limits(self, counts: np.ndarray) -> dict | None:
        """The per-class limits this step's target (``budget``) sets, evaluated on ``counts``
        instances per class (classes with none are not limited): ``rule`` (the target's
        parameters by name), ``requested`` (what min_instances / exponent ask), ``low`` (that,
        capped by max_factor: at least this many), ``high`` (max_factor times the count: at most
        this many; inf without max_factor), ``max_factor``, and ``own`` (the step's own target on
        ``counts``: what it pastes up to). None without a target."""
        import numpy as np

        from ltaug.rebalance.planning import describe_target

        if not self.target:
            return None
        target = Target(**self.target)
        requested = np.where(np.asarray(counts) > 0, target.asked(counts), 0.0)
        high = target.cap(counts)
        return {"rule": describe_target(target), "requested": requested, "low": np.minimum(requested, high),
                "high": high, "max_factor": target.max_factor, "own": target.per_class(counts)[1]}

    @staticmethod
    def recipe_classes(recipe: dict) -> list[int]:
        """Category ids of the objects a recipe pastes (lost when its image is unreadable)."""
        return [o["category_id"] for o in recipe["objects"]]

    @staticmethod
    def shortfalls(r: dict, names: dict) -> list[dict]:
        """Under ``budget``: each class that got fewer objects than the step asked for, from the
        step's report ``r`` (plan info ``classes``, ``added_per_class``, ``pasted_removed_per_class``,
        ``skipped_per_class``) and the category names ``names`` (id: name). Each: ``category_id``,
        ``name``, ``asked``, ``got``, ``missing`` (objects by reason, :data:`~ltaug.pixels.copy_paste.MISSING`;
        they add up to asked - got), ``in_bank``, ``left_out`` (the class's bank objects the step
        may not paste, by flag name), ``why`` (one line) and, for a class the bank was built
        without, ``in_selection`` False. Rarest first (most missing)."""
        if (r.get("params") or {}).get("weighting") != "budget":
            return []
        params = r.get("params") or {}
        added, hidden, skipped = (_by_id(r.get(k)) for k in ("added_per_class", "pasted_removed_per_class",
                                                               "skipped_per_class"))
        out = []
        for cid, c in _by_id((r.get("plan") or {}).get("classes")).items():
            got = added.get(cid, 0)
            if got >= c["asked"]:
                continue
            missing = {k: int(v) for k, v in c["missing"].items() if v}
            for key, table in (("hidden", hidden), ("skipped", skipped)):
                if table.get(cid):
                    missing[key] = table[cid]
            other = c["asked"] - got - sum(missing.values())
            if other > 0:
                missing["other"] = other
            entry = {"category_id": cid, "name": names.get(cid, str(cid)), "asked": int(c["asked"]), "got": int(got),
                     "missing": missing, "in_bank": int(c.get("in_bank", 0)), "left_out": dict(c.get("left_out", {}))}
            if c.get("in_selection") is False:
                entry["in_selection"] = False  # the bank was built without the class
            entry["why"] = _why(entry, params)
            out.append(entry)
        out.sort(key=lambda e: (-(e["asked"] - e["got"]), e["category_id"]))
        return out

    @staticmethod
    def report_lines(r: dict, *, most: int = 10) -> list[str]:
        """Lines below the step's summary (the command line's): first, when the bank was built for
        some classes only (``ltaug bank --classes / --bins``), one line naming the classes the step
        asks for (budget: with a deficit; uniform / inverse: with instances) that it lacks; then,
        for the others, under ``budget``, each class that got fewer objects than asked, with why
        (or, when more than ``most``, how many per reason and which classes); under uniform /
        inverse, the dataset's classes of which no object may be pasted. (A target that asks for
        nothing is a logged warning, and the plan info's ``note``.)"""
        plan = r.get("plan") or {}
        lines = []
        short = r.get("shortfalls") or []
        unusable = _by_id(plan.get("not_pastable"))
        lacking = [(e["category_id"], e["name"], e["asked"]) for e in short if e.get("in_selection") is False]
        lacking += [(cid, v.get("name", str(cid)), 0) for cid, v in unusable.items() if v.get("in_selection") is False]
        if lacking:  # the bank was built for some classes only: one line for those it lacks
            objects = sum(n for _, _, n in lacking)
            named = ", ".join(f"{name} (id {cid})" for cid, name, _ in lacking[:2 * most])
            lines.append(f"the bank was built for some classes only and lacks {len(lacking)} of the classes the step asks for"
                         + (f" ({objects} objects)" if objects else "") + f": {named}"
                         + (f", ... ({len(lacking) - 2 * most} more in run.json)" if len(lacking) > 2 * most else ""))
            short = [e for e in short if e.get("in_selection") is not False]
            unusable = {cid: v for cid, v in unusable.items() if v.get("in_selection") is not False}
        if short:
            classes = [c for c in _by_id(plan.get("classes")).values() if c.get("in_selection") is not False]
            asked = sum(c["asked"] for c in classes)
            lines.append(f"{len(short)} of {len(classes)} classes got fewer objects than asked "
                         f"({sum(e['asked'] - e['got'] for e in short)} of {asked} objects missing):")
            if len(short) <= most:
                lines += [f"  {e['name']} (id {e['category_id']}): asked {e['asked']}, got {e['got']}: {e['why']}"
                          for e in short]
            else:
                lines += [f"  {line}" for line in _by_reason(short, r.get("params") or {})]
        if unusable:
            shown = [f"{v.get('name', cid)} ({_unusable(v)})" for cid, v in list(unusable.items())[:most]]
            lines.append(f"{len(unusable)} classes of the data can never be pasted: " + ", ".join(shown)
                         + (f", ... ({len(unusable) - most} more in run.json)" if len(unusable) > most else ""))
        return lines


def _by_id(table: dict | None) -> dict:
    """A per-class table with int category ids (json turns them into strings)."""
    return {int(k): v for k, v in (table or {}).items()}


def _flags(left_out: dict) -> str:
    """``truncated 2, occluded 1``: a class's bank objects left out, by flag name."""
    return ", ".join(f"{flag} {n}" for flag, n in left_out.items())


def _unusable(c: dict) -> str:
    if not c.get("in_bank"):
        return "no object in the bank"
    return f"its {c['in_bank']} bank object{'s' if c['in_bank'] != 1 else ''} left out: {_flags(c['left_out'])}"


def _reason(key: str, n: int, entry: dict, params: dict) -> str:
    """One reason of a class's shortfall in words (``n`` objects)."""
    if key == "no_bank_object":
        if entry.get("in_selection") is False:
            return "not in the bank: it was built without the class (its classes / bins)"
        return "no object of the class in the bank"
    if key == "excluded":
        return _unusable(entry)
    return {"too_few_images": f"{n} beyond the images x objects ({params.get('objects')}) the step can place",
            "too_small": f"{n} under 2 px at the drawn size",
            "no_room": f"{n} found no room (max_overlap {params.get('max_overlap')})",
            "no_target": f"{n} beyond what the images the placement rules allow can take",
            "no_region": f"{n} found no spot that keeps the placement rules (inside / outside)",
            "hidden": f"{n} hidden by later pastes (min_visible {params.get('min_visible')})",
            "skipped": f"{n} on unreadable images (skipped)",
            }.get(key, f"{n} for other reasons")


def _why(entry: dict, params: dict) -> str:
    return "; ".join(_reason(k, n, entry, params) for k, n in entry["missing"].items())


def _by_reason(short: list[dict], params: dict, names_shown: int = 8) -> list[str]:
    """The compact form of many shortfalls: per reason, objects and classes (the first few named)."""
    groups: dict[str, list] = {}
    for e in short:
        for key, n in e["missing"].items():
            groups.setdefault(key, []).append((e, n))
    label = {"no_bank_object": "no object of the class in the bank",
             "excluded": "every bank object of the class left out by --exclude",
             "too_few_images": f"beyond images x objects ({params.get('objects')})",
             "too_small": "under 2 px at the drawn size",
             "no_room": f"no room (max_overlap {params.get('max_overlap')})",
             "no_target": "beyond the images the placement rules allow",
             "no_region": "no spot inside / outside the rules' regions",
             "hidden": f"hidden by later pastes (min_visible {params.get('min_visible')})",
             "skipped": "on unreadable images", "other": "other"}
    lines = []
    for key, members in groups.items():
        members.sort(key=lambda m: (-m[1], m[0]["category_id"]))
        shown = ", ".join(f"{e['name']} {n}" + (f" [{_flags(e['left_out'])}]" if key == "excluded" else "")
                          for e, n in members[:names_shown])
        more = f", ... {len(members) - names_shown} more" if len(members) > names_shown else ""
        lines.append(f"{label.get(key, key)}: {sum(n for _, n in members)} objects of {len(members)} "
                     f"classes ({shown}{more})")
    return lines
