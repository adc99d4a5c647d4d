"""`ltaug compare`: run a matrix of data-side x loss-side experiments over seeds and report it."""
from __future__ import annotations

import sys

from .common import FORMATTER

HELP = """\
Run every cell of a comparison (data side: none, RFS, class-aware, copy-paste, mosaic/mixup ...;
loss side: CE, focal, EQL, EQLv2, Seesaw, BAGS, federated; stage 2: cRT, BAGS, tau-norm) for every
seed, then write OUT/results.md and .csv (AP, AP50, APr, APc, APf for bbox and segm as
mean ± std over seeds, training minutes; the difference to the baseline with a 95% paired
bootstrap interval over val images), OUT/ap_by_bin.png and OUT/per_class_delta.png.

Cells run --jobs at a time, each in its own process with its own torch thread count
(threads: in the file). Resumable: finished runs are kept (OUT/runs/CELL/seedS/result.json),
an unfinished one continues from its last epoch checkpoint. Just run the same command again.
Two commands on one OUT never train one run at once (a running run's folder is locked; the
other command leaves it, and the runs that start from it, and says so). Every run records the
host it trained on (host.json): trainer numbers differ by CPU, and results.md says when a
table mixes hosts. Every cell's settings (sampler, loss and its parameters, data steps) are
checked before the first run starts, so a typo fails at once, not hours in; a run that fails
is named at the end and the exit status is 1.
The config format is in trainer/compare.py's docstring and examples/compare_study.yaml.
Needs the train extra.

examples:
  ltaug compare examples/compare_study.yaml --jobs 2
  ltaug compare examples/compare_study.yaml --report-only      # tables and plots of what has finished
  ltaug compare examples/compare_study.yaml --cells baseline,rfs --seeds 0 --out out/check
                                               # one row of the study again, in a folder of your own"""


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="run and report a matrix of data-side x loss-side experiments",
                       description=HELP, formatter_class=FORMATTER)
    p.add_argument("config", metavar="CONFIG.yaml")
    p.add_argument("--jobs", type=int, metavar="N", help="runs at once (default: jobs: in the file, else 1)")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    p.add_argument("--cells", metavar="A,B,...", help="only these cells (plus the stage-1 cell that a from: names)")
    p.add_argument("--seeds", metavar="S,S,...", help="only these seeds (default: seeds: in the file)")
    p.add_argument("--out", metavar="DIR", help="output folder instead of out: in the file")
    p.set_defaults(run=run)


def run(args) -> int:
    from ltaug.errors import UsageError

    try:
        from ltaug.trainer.compare import run_compare
        from ltaug.trainer.compare_config import load_compare, select
        from ltaug.trainer.compare_report import write_report
    except ImportError as exc:
        raise UsageError(f"ltaug compare needs the train extra (pip install 'ltaug[train]'): {exc}") from None
    cmp = load_compare(args.config)
    try:
        seeds = None if args.seeds is None else [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UsageError(f"--seeds must be integers separated by commas, got {args.seeds!r}") from None
    cmp = select(cmp, cells=None if args.cells is None else args.cells.split(","), seeds=seeds, out=args.out)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    if args.report_only:
        s = write_report(cmp)
    else:
        s = run_compare(cmp, jobs=args.jobs, log=lambda line: print(line, file=sys.stderr, flush=True))
    print((cmp.out / "results.md").read_text())
    state = "complete" if s["complete"] else "incomplete: run the command again to finish"
    print(f"wrote {cmp.out}/results.md, results.csv, ap_by_bin.png, per_class_delta.png ({state})", file=sys.stderr)
    if s.get("elsewhere"):
        print(f"ltaug compare: {len(s['elsewhere'])} run(s) left to another ltaug compare running on {cmp.out}: "
              f"{', '.join(s['elsewhere'])}; run this command again when it has finished", file=sys.stderr)
    if s.get("failed"):
        print(f"ltaug compare: {len(s['failed'])} run(s) failed: {', '.join(s['failed'])} (see their log.txt)",
              file=sys.stderr)
        return 1
    return 0
