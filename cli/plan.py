"""`ltaug plan`: solve a per-class target for image repeats and report it class by class."""
from __future__ import annotations

import sys

from ltaug.rebalance.planning import TARGET_FIELDS

from .common import FORMATTER, add_bin_thresholds, add_on_error, add_shift_report, flag_errors, table_rows

HELP = """\
State what the rebalanced data should look like; the planner finds image repeats that get
there and reports, for each class: instances before, the target, planned after, the factor,
and whether it was met, capped, or is short (and by how many objects copy-paste would have
to add).

targets (the flags below; combine them, at least one of --min-instances / --exponent):
--max-factor caps the target, and stops repeats that would inflate co-occurring frequent
classes.

The greedy solver works rarest class first, repeating that class's images round-robin and
preferring images whose other objects are already at target. Every image is kept once.

examples:
  ltaug plan train.json --min-instances 50 --max-factor 10
  ltaug plan train.json --exponent 0.5 --max-factor 8 --plan-json plan.json -o train_planned.json --plot plan.png"""


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="per-class budget: solve a target for image repeats",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("annotations", metavar="ANNOTATIONS", help="COCO/LVIS json file or YOLO-seg folder")
    g = p.add_argument_group("targets")
    for key, param in TARGET_FIELDS.items():
        g.add_argument("--" + key.replace("_", "-"), type=param.kind, metavar=param.metavar, help=param.help_text())
    p.add_argument("--plan-json", metavar="PLAN.json", help="write the plan (per-image repeats, per-class table)")
    p.add_argument("-o", "--output", metavar="OUT.json", help="write the rebalanced annotation file")
    add_shift_report(p)
    add_bin_thresholds(p)
    add_on_error(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.api import plan as solve
    from ltaug.rebalance.shift import format_shift_table

    with flag_errors(*TARGET_FIELDS, target="--min-instances / --exponent"):
        r = solve(args.annotations, min_instances=args.min_instances, exponent=args.exponent,
                  max_factor=args.max_factor, plan_json=args.plan_json, output=args.output, plot=args.plot,
                  rare_max=args.rare_max, common_max=args.common_max, on_error=args.on_error, strict=args.strict)
    plan, ds = r.plan, r.input
    print(format_shift_table(plan, top=table_rows(args, len(ds.categories))))
    s = plan["summary"]
    print(f"\nclasses met or capped: {len(plan['classes']) - s['classes_short']} of {len(plan['classes'])} "
          f"({s['classes_capped']} capped by --max-factor); short: {s['classes_short']}; "
          f"objects still missing (paste budget): {s['paste_budget']}")
    if args.plan_json:
        print(f"wrote {args.plan_json}", file=sys.stderr)
    if args.output:
        images, annotations = r.output_size
        print(f"wrote {args.output}: {images} images ({len(ds.images)} before), "
              f"{annotations} annotations", file=sys.stderr)
    if args.plot:
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
