"""`ltaug tau-sweep`: AP, APr, APc, APf of a run's tau-normalised classifier, for a range of tau."""
from __future__ import annotations

import sys

from ltaug.errors import UsageError
from ltaug.io.jsonio import dumps

from .common import FORMATTER
from .evaluate import add_model_options, open_run, trainer_modules

HELP = """\
tau-normalisation (Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020): each foreground class's weight vector of the box classifier is
rescaled, w_c / ||w_c||^tau, which takes away the larger norms that frequent classes learn.
tau = 0 is the run as trained, tau = 1 plain L2 normalisation. This command predicts on the
validation file once per image (backbone, RPN and box head once; classifier, post-processing
and mask branch per tau) and prints AP, AP50, APr, APc, APf (bbox, and segm for Mask R-CNN)
per tau, then the tau with the best AP and the best APr. Choose tau on validation data, not
on the test set. Bins and options as for `ltaug eval`.

examples:
  ltaug tau-sweep runs/ce                                      # the run's --val, tau 0, 0.25, ..., 1.5
  ltaug tau-sweep runs/ce --taus 0,0.5,0.75,1 --rare-max 5 --common-max 15 --json > sweep.json
  ltaug tau-sweep runs/ce_crt --val val.json --val-images val2017/ --tau-bias drop"""


def add_parser(sub) -> None:
    p = sub.add_parser("tau-sweep", help="AP / APr / APc / APf per tau of a tau-normalised classifier",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("source", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--taus", default="0,0.25,0.5,0.75,1,1.25,1.5", metavar="T,T,...",
                   help="comma-separated tau values >= 0 (default 0,0.25,...,1.5)")
    p.add_argument("--tau-bias", choices=("keep", "drop"), default="keep",
                   help="class biases: keep (default: tau 0 is the run itself) or drop (as the paper's code)")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print every tau's full evaluation as JSON")
    p.set_defaults(run=run)


def parse_taus(text: str) -> list[float]:
    try:
        taus = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--taus wants comma-separated numbers, got {text!r}") from None
    if not taus or any(not t >= 0 for t in taus):
        raise UsageError(f"--taus wants one or more numbers >= 0, got {text!r}")
    return sorted(set(taus))


def format_sweep(sweep: dict) -> str:
    types = [t for t in ("bbox", "segm") if t in sweep["results"][0]]
    cols = ("AP", "AP50", "APr", "APc", "APf")
    fmt = lambda v: f"{'-':>7}" if v is None else f"{v:>7.3f}"  # noqa: E731
    head = f"{'tau':>6}" + "".join(f"  {t + ' ' + c if c == 'AP' else c:>7}" for t in types for c in cols)
    lines = [f"model      {sweep['source']}, {sweep['epochs']} epochs; tau bias {sweep['tau_bias']}",
             f"bins       {sweep['results'][0]['bins_source']}", "", head, "-" * len(head)]
    for r in sweep["results"]:
        lines.append(f"{r['tau']:>6.2f}" + "".join(f"  {fmt(r[t][c])}" for t in types for c in cols))
    lines.append("")
    for metric in ("AP", "APr"):
        scored = [r for r in sweep["results"] if r[types[0]][metric] is not None]
        if scored:
            best = max(scored, key=lambda r: r[types[0]][metric])
            lines.append(f"best {types[0]} {metric}: {best[types[0]][metric]:.3f} at tau {best['tau']:g}")
    return "\n".join(lines)


def run(args) -> int:
    _, decouple, _, inference = trainer_modules()
    taus = parse_taus(args.taus)
    try:
        r, val, images, device = open_run(args)
        per_tau = decouple.predict_taus(r.model, inference.val_dataset(val, images), taus, device=device,
                                        label_to_category=r.label_to_category, bias_mode=args.tau_bias,
                                        progress=sys.stderr.isatty())
        results = [{"tau": tau, **inference.evaluate_with_bins(
            val, dets, iou_types=inference.iou_types_for(r.model), train_ds=r.train_ds,
            rare_max=args.rare_max, common_max=args.common_max)} for tau, dets in per_tau.items()]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sweep = {"source": args.source, "epochs": r.epoch, "tau_bias": args.tau_bias, "results": results}
    if args.json:
        sys.stdout.write(dumps(sweep, indent=True).decode() + "\n")
    else:
        print(format_sweep(sweep))
    return 0
