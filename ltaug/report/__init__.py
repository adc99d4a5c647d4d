"""report: one self-contained HTML page of an output (``ltaug report``).

- :mod:`~ltaug.report.html`: before/after class table and histograms, r/c/f shift, what each
  step added and removed, sample images with masks drawn.

May import: errors, params, io, stats, rebalance, pixels, run.
"""
