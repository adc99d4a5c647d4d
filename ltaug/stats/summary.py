"""Class statistics of a dataset: per-class counts, imbalance measures, a text table and a plot.

All counts come from :attr:`Dataset.index` with numpy reductions (no per-annotation loops).
The document returned by :func:`dataset_stats` holds only plain Python ints, floats, strings,
lists and dicts, so it can be written with orjson as is.

Measures, over the per-class instance counts x_1..x_n (n = number of classes):

* share of class i:   x_i / sum_j x_j
* imbalance ratio:    max_i x_i / min_i x_i, over classes with x_i >= 1
* Gini coefficient:   G = sum_i sum_j |x_i - x_j| / (2 n^2 mean(x)), classes with x_i = 0 included;
  0 when all classes are equal, (n-1)/n when one class holds every instance.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from ltaug.io.dataset import Dataset
from ltaug.stats.frequency import BINS, COMMON_MAX, RARE_MAX, dataset_bins, uses_stored_frequency
from ltaug.stats.plotting import (
    BIN_COLORS,
    BIN_NAMES,
    MAX_LABELLED_CLASSES,
    class_bar_figure,
    class_curve_figure,
    save_figure,
)

SOURCE_STORED, SOURCE_COUNTS = "stored LVIS frequency", "image counts"


def gini(values: ArrayLike) -> float:
    """Gini coefficient G = sum_i sum_j |x_i - x_j| / (2 n^2 mean(x)); 0.0 for no or all-zero values.

    Computed in O(n log n) from the sorted values x_(1) <= ... <= x_(n), with the identical
    closed form G = sum_i (2i - n - 1) x_(i) / (n sum_i x_i), i = 1..n.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = x.size, float(x.sum()) if x.size else 0.0
    if n == 0 or total <= 0:
        return 0.0
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2 * i - n - 1) * x) / (n * total))


def dataset_stats(dataset: Dataset, *, rare_max: int | None = None, common_max: int | None = None) -> dict:
    """Per-class counts and summary measures as a JSON-ready ``{"classes": [...], "summary": {...}}``.

    Each class: ``id``, ``name``, ``images`` (images containing it), ``instances`` (annotations,
    crowd included), ``crowd`` (crowd annotations), ``bin`` (r/c/f, see
    :func:`frequency.dataset_bins`) and ``share`` = instances / all instances. Classes are sorted
    by instances descending, then id. The summary holds the totals, ``imbalance_ratio``
    (max/min instances over classes with >= 1 instance; None if there is none), ``gini`` (see
    :func:`gini`), ``classes_under_10_instances`` (zero included), the number of classes and the
    share of instances per bin, and the thresholds that made the bins.
    """
    ix = dataset.index
    n_c = ix.num_categories
    instances = ix.instance_counts.astype(np.int64)
    images = ix.image_counts.astype(np.int64)
    crowd = np.bincount(ix.ann_category_pos[ix.ann_iscrowd], minlength=n_c).astype(np.int64)
    bins = np.asarray(dataset_bins(dataset, rare_max=rare_max, common_max=common_max)).astype(str)
    total = int(instances.sum())
    share = instances / total if total else np.zeros(n_c)

    order = np.lexsort((ix.category_ids, -instances))  # last key is primary
    classes = [
        {"id": int(ix.category_ids[k]), "name": ix.category_names[k], "images": int(images[k]),
         "instances": int(instances[k]), "crowd": int(crowd[k]), "bin": str(bins[k]), "share": float(share[k])}
        for k in order.tolist()
    ]

    present = instances[instances > 0]
    stored = uses_stored_frequency(dataset, rare_max, common_max)
    summary = {
        "kind": dataset.kind,
        "classes": n_c,
        "images": ix.num_images,
        "instances": ix.num_annotations,
        "crowd_instances": int(ix.ann_iscrowd.sum()),
        "images_without_annotations": int(np.count_nonzero(ix.annotations_per_image() == 0)),
        "imbalance_ratio": float(present.max() / present.min()) if present.size else None,
        "gini": gini(instances),
        "classes_under_10_instances": int(np.count_nonzero(instances < 10)),
        "bins": {b: int(np.count_nonzero(bins == b)) for b in BINS},
        "bin_instance_share": {b: (float(instances[bins == b].sum() / total) if total else 0.0) for b in BINS},
        "bin_thresholds": {
            "rare_max": None if stored else int(RARE_MAX if rare_max is None else rare_max),
            "common_max": None if stored else int(COMMON_MAX if common_max is None else common_max),
            "source": SOURCE_STORED if stored else SOURCE_COUNTS,
        },
        "skipped": {str(k): int(v) for k, v in sorted(dataset.skipped.items())},
    }
    return {"classes": classes, "summary": summary}


# -- text table ------------------------------------------------------------------------------
def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def format_stats_table(stats: dict, *, top: int | None = None) -> str:
    """A fixed-width table (rank, id, name, bin, images, instances, share %) and a summary block.

    ``top`` keeps the first ``top`` rows (the largest classes) and says how many were omitted.
    """
    classes, s = stats["classes"], stats["summary"]
    rows = classes if top is None else classes[:max(top, 0)]
    name_w = max([4] + [len(c["name"]) for c in rows])
    header = f"{'rank':>4}  {'id':>6}  {'name':<{name_w}}  {'bin':^3}  {'images':>7}  {'instances':>9}  {'share %':>7}"
    lines = [header, "-" * len(header)]
    for rank, c in enumerate(rows, 1):
        lines.append(f"{rank:>4}  {c['id']:>6}  {c['name']:<{name_w}}  {c['bin']:^3}  {c['images']:>7}  "
                     f"{c['instances']:>9}  {100 * c['share']:>7.2f}")
    if len(rows) < len(classes):
        lines.append(f"... {len(classes) - len(rows)} more classes omitted (showing the top {len(rows)})")

    th = s["bin_thresholds"]
    if th["source"] == SOURCE_STORED:
        bin_rule = "stored LVIS frequency"
    else:
        bin_rule = f"image counts: r <= {th['rare_max']} < c <= {th['common_max']} < f"
    bins = "  ".join(f"{b}={s['bins'][b]} ({100 * s['bin_instance_share'][b]:.1f}% of instances)" for b in BINS)
    summary = [
        ("kind", s["kind"]),
        ("classes", s["classes"]),
        ("images", f"{s['images']} ({s['images_without_annotations']} without annotations)"),
        ("instances", f"{s['instances']} ({s['crowd_instances']} crowd)"),
        ("imbalance ratio", f"{_fmt_ratio(s['imbalance_ratio'])} (max/min instances over non-empty classes)"),
        ("Gini", f"{s['gini']:.3f}"),
        ("classes < 10 inst.", s["classes_under_10_instances"]),
        ("bins", f"{bins}"),
        ("bin rule", bin_rule),
    ]
    if s["skipped"]:
        summary.append(("skipped records", ", ".join(f"{k}={v}" for k, v in s["skipped"].items())))
    key_w = max(len(k) for k, _ in summary)
    lines += ["", "summary"] + [f"  {k:<{key_w}}  {v}" for k, v in summary]
    return "\n".join(lines)


# -- plot ------------------------------------------------------------------------------------
def plot_class_histogram(stats: dict, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Bar chart of instances per class (largest first, log y, class names under the bars),
    coloured by r/c/f bin; above ``MAX_LABELLED_CLASSES`` classes (LVIS: 1,203), where bars
    and names cannot be read, the sorted frequency curve with shaded r/c/f bands instead
    (:func:`ltaug.stats.plotting.class_curve_figure`).

    The format follows the suffix of ``path`` (``.png`` when there is none). Uses a private
    :class:`~matplotlib.figure.Figure` with the Agg canvas (no pyplot state), renders into
    memory and writes the file atomically. Returns ``path``.
    """
    from matplotlib.patches import Patch

    classes, s = stats["classes"], stats["summary"]
    headline = title or "Instances per class"
    details = (f"{s['classes']:,} classes · {s['images']:,} images · {s['instances']:,} instances · "
               f"imbalance {_fmt_ratio(s['imbalance_ratio'])} · Gini {s['gini']:.3f}")
    if len(classes) > MAX_LABELLED_CLASSES:
        th = s["bin_thresholds"]
        how = ("bins: stored LVIS frequency" if th["source"] == SOURCE_STORED else
               f"bins by images: r ≤ {th['rare_max']} < c ≤ {th['common_max']} < f")
        fig, _, _ = class_curve_figure(path, [c["bin"] for c in classes], [c["instances"] for c in classes],
                                       title=f"{headline}\n{details} · {how}")
        return save_figure(fig, path)
    counts = np.array([c["instances"] for c in classes], dtype=np.float64)
    fig, ax, _ = class_bar_figure(path, [c["name"] for c in classes], counts,
                                  [BIN_COLORS.get(c["bin"], "gray") for c in classes],
                                  top=counts.max(initial=1.0), what="instances")

    th = s["bin_thresholds"]
    stored = th["source"] == SOURCE_STORED
    rule = {"r": f"<= {th['rare_max']} images", "c": f"<= {th['common_max']} images",
            "f": f"> {th['common_max']} images"}
    legend = [Patch(color=BIN_COLORS[b], label=f"{BIN_NAMES[b]} ({b}{'' if stored else ', ' + rule[b]}): "
                    f"{s['bins'][b]} class{'' if s['bins'][b] == 1 else 'es'}") for b in BINS]
    ax.legend(handles=legend, loc="upper right", frameon=False, fontsize=9,
              title=f"bins by {th['source']}", title_fontsize=9, alignment="left")

    ax.set_title(f"{headline}\n{details}", fontsize=11)

    return save_figure(fig, path)
