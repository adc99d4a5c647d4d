"""report: one self-contained HTML page of an output (``ltaug report``).

- :mod:`~ltaug.report.html`: before/after class table and histograms, r/c/f shift, what each
  step added and removed, sample images with masks drawn;
- :mod:`~ltaug.report.blends`: one pasted image's objects pasted again with each blending mode.

May import: errors, params, io, stats, rebalance, pixels, run.
"""
