"""plan, on annotations only: which images to repeat, and what each class should reach.

- :mod:`~ltaug.rebalance.sampling`: repeat factors, class-aware / square-root / soft-balance
  probabilities, seeded draws (the math the trainer's online samplers share);
- :mod:`~ltaug.rebalance.resample`: those draws over epochs, written as a rebalanced dataset;
- :mod:`~ltaug.rebalance.planning`: a per-class target solved for image repeats (``ltaug plan``)
  and the deficit left for copy-paste;
- :mod:`~ltaug.rebalance.shift`: before/after class tables and plots.

May import: errors, params, io, stats.
"""
