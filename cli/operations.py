"""One `ltaug NAME` command per registered pixel operation (paste, mosaic, mixup, and any registered
by the user): its flags, their help, defaults and allowed values all come from the operation's
parameter declarations (:mod:`ltaug.ops`)."""
from __future__ import annotations

from functools import partial

from ltaug.ops import OPERATIONS, PixelOperation, add_arguments, from_args

from .common import FORMATTER, add_engine_options, run_engine


def add_parser(sub) -> None:
    for cls in OPERATIONS:
        if issubclass(cls, PixelOperation):
            p = sub.add_parser(cls.name, help=cls.summary, description=cls.description or cls.__doc__,
                               formatter_class=FORMATTER)
            add_engine_options(p)
            add_arguments(p, cls)
            p.set_defaults(run=partial(run, cls))


def run(cls, args) -> int:
    import sys

    from ltaug.api import run_steps

    op = from_args(cls, args)
    return run_engine(lambda: run_steps(args.annotations, args.images, args.output, [op], workers=args.workers,
                                        resume=args.resume, overwrite=args.overwrite, link=args.link,
                                        verify_images=args.verify_images, on_error=args.on_error, strict=args.strict, backend=args.backend,
                                        address=args.address, progress=sys.stderr.isatty()), args.output)
