"""`ltaug run`: a pipeline of steps (resample, paste, mosaic, mixup) described in one YAML file."""
from __future__ import annotations

from .common import FORMATTER, add_run_options, run_engine

HELP = """\
Run the steps of a pipeline file one after the other into one output folder. The format
(paths relative to the file; step k uses seed + k unless it sets its own seed):

  input: data/annotations/train.json
  images: data/images/train
  output: out/train_aug
  seed: 0
  steps:
    - resample: {method: rfs, threshold: 0.1}
    - paste: {weighting: budget, target: {min_instances: 20, max_factor: 10}, objects: 4}
    - mosaic: {count: 100}
    - mixup: {count: 50, alpha: 1.5}

Step parameters have the names of the flags of `ltaug resample | paste | mosaic | mixup`, with
_ for -. Paste also takes bank: (an `ltaug bank` folder) and exclude: (a list of bank flags).
-o, --workers, --on-error, --backend and --address override the file's output: /
workers: / on_error: / backend: / address:.

examples:
  ltaug run examples/pipeline.yaml
  ltaug run examples/pipeline.yaml --workers 2 --resume"""


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a pipeline of steps from a YAML file", description=HELP,
                       formatter_class=FORMATTER)
    p.add_argument("config", metavar="CONFIG.yaml", help="pipeline file")
    p.add_argument("-o", "--output", metavar="OUT", help="output folder (overrides the file's output:)")
    add_run_options(p)
    p.set_defaults(run=run, on_error=None)


def run(args) -> int:
    import sys

    from ltaug.api import run_config

    return run_engine(lambda: run_config(args.config, args.output, workers=args.workers, resume=args.resume,
                                         overwrite=args.overwrite, link=args.link, verify_images=args.verify_images,
                                         on_error=args.on_error, strict=args.strict, backend=args.backend, address=args.address,
                                         progress=sys.stderr.isatty()), args.output)
