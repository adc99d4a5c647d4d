"""The annotation file whose class frequencies the count-based losses are built with.

By default the original training file, not a rebalanced one (:func:`counts_source`): a loss
that corrects for the long tail must see the tail as it is, not as resampling or copy-paste
made it. The model's class c is the training file's c-th category, so a class-frequency file
other than the training file must list the same category ids in the same order; otherwise
every count would land on another class.
"""
from __future__ import annotations

from pathlib import Path

from ltaug import Dataset, load_dataset
from ltaug.io.jsonio import file_sha256, read_json
from ltaug.run.engine import FORMAT as ENGINE_OUTPUT


def counts_source(train: Dataset, counts_from: str | None) -> tuple[str | None, str]:
    """(class-frequency file, None for the training file itself; one line saying which and why).

    ``counts_from`` when given. Else, for an ltaug output folder's ``annotations.json``, the
    input file its ``run.json`` names (when it is still there, unchanged by its sha256). Else
    the training file; the line is a warning when that file is an ltaug output (a run.json or
    ``"ltaug"`` provenance in its images) whose original is not found, since its counts then
    include the rebalancing.
    """
    if counts_from is not None:
        return counts_from, f"class frequencies from {counts_from} (--counts-from)"
    original, problem = _original_of(train)
    if original is not None:
        return original, (f"class frequencies from {original}, the original of the ltaug output {train.path} "
                          f"(named in its run.json)")
    if problem is None:
        return None, f"class frequencies from the training file {train.path}"
    return None, (f"warning: {train.path} is an ltaug output but {problem}: class frequencies from it, so they "
                  f"include the rebalancing (pass --counts-from ORIGINAL)")


def _original_of(train: Dataset) -> tuple[str | None, str | None]:
    """(the original annotation file of an ltaug output, None; or None, why it is not found;
    or None, None when ``train`` is not an ltaug output)."""
    path = Path(train.path)
    record = path.parent / "run.json"
    run = read_json(record) if path.name == "annotations.json" and record.is_file() else None
    if not (isinstance(run, dict) and run.get("format") == ENGINE_OUTPUT):
        if any("ltaug" in im for im in train.images):
            return None, "no run.json beside it names its original"
        return None, None
    source = run.get("input") or {}
    original = source.get("annotations")
    if not original:
        return None, f"{record} names no input annotation file"
    if not Path(original).exists():
        return None, f"its original {original} (named in {record}) is not found"
    if source.get("sha256") and Path(original).is_file() and file_sha256(original) != source["sha256"]:
        return None, f"its original {original} has changed since (sha256 differs from {record})"
    return original, None


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
