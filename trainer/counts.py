"""The annotation file whose class frequencies the count-based losses are built with.

The model's class c is the training file's c-th category, so a class-frequency file other
than the training file (``--counts-from``: the original of a rebalanced file) must list the
same category ids in the same order; otherwise every count would land on another class.
"""
from __future__ import annotations

from ltaug import Dataset, load_dataset


def check_same_categories(counts: Dataset, train: Dataset) -> None:
    """Raise a one-line ValueError naming both files and the first category id that differs."""
    a, b = counts.index.category_ids.tolist(), train.index.category_ids.tolist()
    if a == b:
        return
    pos = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    mine = a[pos] if pos < len(a) else "none"
    theirs = b[pos] if pos < len(b) else "none"
    raise ValueError(f"class-frequency file {counts.path}: its categories differ from the training file "
                     f"{train.path}'s ({len(a)} against {len(b)} ids): category {pos + 1} is id {mine} "
                     f"there and id {theirs} in the training file")


def load_counts(counts_from: str | None, train: Dataset) -> Dataset:
    """The class-frequency dataset: ``counts_from`` (checked against ``train``), else ``train`` itself."""
    if counts_from is None:
        return train
    counts = load_dataset(counts_from)
    check_same_categories(counts, train)
    return counts
