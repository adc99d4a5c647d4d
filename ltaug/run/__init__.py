"""execute and write: a pipeline of operations into one output folder.

- :mod:`~ltaug.run.engine`: :func:`run_pipeline`: annotation steps in place; pixel steps planned,
  cut into shards, rendered by workers, merged; atomic output, resume, provenance, ``run.json``;
- :mod:`ltaug.pool` (local processes) and :mod:`~ltaug.run.ray_backend` (Ray tasks): who
  renders the shards; the bytes do not depend on it;
- :mod:`~ltaug.run.pipeline`: the YAML pipeline file of ``ltaug run``;
- :mod:`~ltaug.run.limits`: per-class limits, asked vs got, over the whole pipeline (``run.json``'s ``limits``);
- :mod:`~ltaug.run.clean`: what killed writers leave beside an output (``ltaug clean``).

The operations are reached through their interface only (:mod:`ltaug.ops.base`): no
operation is named here.

May import: errors, params, pool, io, pixels, ops.
"""
