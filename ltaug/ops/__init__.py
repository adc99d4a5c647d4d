"""Operations: the steps of a pipeline, each one module that declares its parameters once.

Where things go:

- :mod:`ltaug.ops.base`: :class:`Param` (a parameter's default, type, range, help),
  :class:`Operation` (validated parameter values), the two kinds of operation
  (:class:`PixelOperation`: plan, then render images in worker processes;
  :class:`AnnotationOperation`: annotations only) and the registry :data:`OPERATIONS`;
- one module per operation: :mod:`~ltaug.ops.resample`, :mod:`~ltaug.ops.paste`,
  :mod:`~ltaug.ops.mosaic`, :mod:`~ltaug.ops.mixup`, :mod:`~ltaug.ops.augment`. Each holds the
  operation's class (its parameters, its ``--help`` text, and the calls into the pure planning and
  pixel functions of :mod:`ltaug.rebalance.resample`, :mod:`ltaug.pixels.copy_paste`,
  :mod:`ltaug.pixels.mosaic`, :mod:`ltaug.pixels.mixup`, :mod:`ltaug.pixels.augment`).

A new operation is one module: subclass :class:`PixelOperation` (or
:class:`AnnotationOperation`), declare its :class:`Param` attributes, implement ``plan`` and
``render`` (or ``apply``), and decorate it with :func:`register`. It is then a pipeline step
(``- name: {...}`` in ``ltaug run``'s YAML), an ``ltaug name`` command with a flag per parameter,
and a Python class: ``ltaug.run_steps(ds, images, out, [Paste(objects=4), MyOp(...)])``.

The engine (:mod:`ltaug.run`) calls operations only through these interfaces; no operation
is named there.

May import: errors, params, io, rebalance, pixels.
"""
from ltaug.ops.augment import Augment
from ltaug.ops.base import (
                   OPERATIONS,
                   AnnotationOperation,
                   Operation,
                   Param,
                   PixelOperation,
                   Registry,
                   StepContext,
                   add_arguments,
                   from_args,
                   from_mapping,
                   register,
)
from ltaug.ops.mixup import Mixup
from ltaug.ops.mosaic import Mosaic
from ltaug.ops.paste import Paste

# isort: off  (registration order: the order of `ltaug --help` and of every list of operations)
from ltaug.ops.resample import Resample

# isort: on

__all__ = ["OPERATIONS", "AnnotationOperation", "Augment", "Mixup", "Mosaic", "Operation", "Param", "Paste",
           "PixelOperation", "Registry", "Resample", "StepContext", "add_arguments", "from_args", "from_mapping", "register"]
