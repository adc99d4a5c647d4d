"""Which objects go into an object bank: the classes asked for, and at most N objects per class.

:func:`resolve_classes` turns class names or ids into the dataset's category ids;
:func:`choose` picks at most ``max_per_class`` objects of each class from the objects measured
(area, occlusion, flags), seeded: :data:`RULE` says how. The frequency bins (``--bins``) are
resolved by the caller (:func:`ltaug.api.build_bank`, with :mod:`ltaug.stats.frequency`), which
passes their classes here as ids.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ltaug.errors import SpecError

SELECT_STREAM = 0xBA4C  # the choice's generator is default_rng([seed, SELECT_STREAM])
RULE = ("per class, unflagged objects first, then flagged ones, then empty ones; within each group "
        "drawn without replacement with probability proportional to the visible pixels, "
        "area * (1 - occlusion) (Efraimidis-Spirakis keys u^(1/weight), u uniform from "
        "default_rng([seed, SELECT_STREAM]) drawn once per candidate in annotation order)")


def split_names(values: Iterable[str | int] | str | int | None) -> list[str | int] | None:
    """``["person,dog", "3"]`` -> ``["person", "dog", "3"]``: command-line lists, comma-separated or
    not; ints kept; None stays None."""
    if values is None:
        return None
    if isinstance(values, (str, int, np.integer)):
        values = [values]
    out: list[str | int] = []
    for v in values:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out.append(int(v))
        else:
            out += [p.strip() for p in str(v).split(",") if p.strip()]
    return out


def resolve_classes(category_ids: Iterable[int], names: Iterable[str], classes) -> list[int]:
    """The category ids of ``classes`` (names or ids, in the order given, each once), against the
    dataset's ``category_ids`` and ``names`` (same order). A name is matched exactly first, then
    case-insensitively; a string of digits that names no class is an id. An unknown one raises a
    :class:`SpecError` of ``classes`` naming it (and the closest names)."""
    import difflib

    ids, names = [int(i) for i in category_ids], [str(n) for n in names]
    by_name = dict(zip(names, ids))
    by_lower: dict[str, int | None] = {}
    for n, i in zip(names, ids):
        by_lower[n.lower()] = None if n.lower() in by_lower else i  # None: ambiguous without its case
    out, unknown = [], []
    for c in split_names(classes) or []:
        if isinstance(c, int):
            cid = c if c in ids else None
        elif c in by_name:
            cid = by_name[c]
        elif by_lower.get(c.lower()) is not None:
            cid = by_lower[c.lower()]
        elif c.lstrip("-").isdigit() and int(c) in ids:
            cid = int(c)
        else:
            cid = None
        if cid is None:
            unknown.append(c)
        elif cid not in out:
            out.append(cid)
    if unknown:
        first = str(unknown[0])
        close = difflib.get_close_matches(first, names, n=3)
        raise SpecError("classes", f"names no class of the dataset: {', '.join(map(str, unknown))}"
                        + (f" (did you mean {', '.join(close)}?)" if close else " (give names or ids)"))
    return out


def choose(category_ids: np.ndarray, area: np.ndarray, occlusion: np.ndarray, flags: np.ndarray,
           max_per_class: int, seed: int, empty_flag: int) -> np.ndarray:
    """Which of the candidate objects (given in annotation order) to keep: a bool array, at most
    ``max_per_class`` True per class, chosen by :data:`RULE` (``empty_flag``: the flag bit of an
    object without mask pixels). The same inputs and seed give the same choice."""
    n = category_ids.size
    u = np.random.default_rng([int(seed), SELECT_STREAM]).random(n)
    weight = area.astype(np.float64) * (1.0 - np.clip(occlusion.astype(np.float64), 0.0, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        key = np.where(weight > 0, np.log(u) / np.where(weight > 0, weight, 1.0), -np.inf)  # log of u^(1/w)
    group = np.where(flags == 0, 0, np.where(flags & int(empty_flag), 2, 1))
    order = np.lexsort((np.arange(n), -key, group, category_ids))  # by class, group, key (largest first), row
    cats = category_ids[order]
    first = np.searchsorted(cats, cats, side="left")  # each one's rank within its class
    keep = np.zeros(n, bool)
    keep[order[(np.arange(n) - first) < max_per_class]] = True
    return keep
