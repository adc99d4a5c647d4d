"""`ltaug paste`: copy-paste of bank objects onto the dataset's images, chosen by class rarity."""
from __future__ import annotations

from ltaug.errors import UsageError

from .common import FORMATTER, add_engine_options, load, run_engine

HELP = """\
Paste objects cut out of the dataset (an object bank, see `ltaug bank`) onto its images,
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


def add_parser(sub) -> None:
    p = sub.add_parser("paste", help="copy-paste rare-class objects onto images (gaussian/poisson blending)",
                       description=HELP, formatter_class=FORMATTER)
    add_engine_options(p)
    p.add_argument("--bank", metavar="BANK", help="object bank from `ltaug bank` (default: built from the input)")
    g = p.add_argument_group("which objects")
    g.add_argument("--weighting", choices=("uniform", "inverse", "budget"), default="inverse",
                   help="how objects are chosen (default inverse)")
    g.add_argument("--power", type=float, default=1.0, metavar="P", help="inverse: p_c ~ n_c^-P (default 1)")
    g.add_argument("--objects", type=int, default=3, metavar="K", help="objects tried per image (default 3)")
    g.add_argument("--prob", type=float, default=1.0, metavar="P",
                   help="uniform/inverse: fraction of images that get objects (default 1)")
    g.add_argument("--min-instances", type=int, metavar="N", help="budget: every class at least N instances")
    g.add_argument("--exponent", type=float, metavar="G", help="budget: at least n_max (n_c / n_max)^G")
    g.add_argument("--max-factor", type=float, metavar="K", help="budget: no class above K times its count")
    g.add_argument("--exclude", default="too_small,truncated,occluded,empty,clipped", metavar="FLAGS",
                   help="bank quality flags to leave out (default too_small,truncated,occluded,empty,clipped)")
    g.add_argument("--box-only", action="store_true", help="paste box-only objects as rectangles even if masks exist")
    g = p.add_argument_group("placement and blending")
    g.add_argument("--scale", type=float, nargs=2, default=(0.5, 1.5), metavar=("LOW", "HIGH"),
                   help="size jitter relative to the plausible size (default 0.5 1.5)")
    g.add_argument("--no-flip", dest="flip", action="store_false", help="never flip pasted objects")
    g.add_argument("--max-overlap", type=float, default=0.3, metavar="F",
                   help="a pasted box may cover at most F of any box already there (default 0.3)")
    g.add_argument("--blend", choices=("hard", "gaussian", "poisson"), default="gaussian")
    g.add_argument("--sigma", type=float, default=1.0, metavar="PX", help="gaussian: feather width (default 1)")
    g.add_argument("--min-visible", type=float, default=0.25, metavar="F",
                   help="remove objects left with less than F of their area (default 0.25)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.pipeline import make_step

    target = {k: v for k, v in (("min_instances", args.min_instances), ("exponent", args.exponent),
                                 ("max_factor", args.max_factor)) if v is not None}
    if target and args.weighting != "budget":
        raise UsageError("--min-instances / --exponent / --max-factor are for --weighting budget")
    params = {"weighting": args.weighting, "power": args.power, "objects": args.objects, "prob": args.prob,
              "target": target, "blend": args.blend, "sigma": args.sigma, "scale": args.scale, "flip": args.flip,
              "max_overlap": args.max_overlap, "min_visible": args.min_visible, "box_only": args.box_only,
              "exclude": [f for f in args.exclude.split(",") if f.strip()], "bank": args.bank}
    try:
        step = make_step("paste", params, args.seed)
    except ValueError as exc:
        raise UsageError(str(exc).replace("_", "-")) from None
    ds = load(args.annotations, args)
    return run_engine(args, ds, args.images, args.output, [step], args.workers)
