"""index: what the class distribution looks like.

- :mod:`~ltaug.stats.frequency`: LVIS r/c/f bins (stored or recounted), LVIS-style copies;
- :mod:`~ltaug.stats.summary`: per-class table, imbalance ratio, Gini (``ltaug stats``);
- :mod:`~ltaug.stats.plotting`: the class histograms (matplotlib) the reports share.

May import: errors, params, io.
"""
