"""Before/after class statistics of a rebalancing: per-class table, summary and plot.

A rebalancing that uses image i ``counts[i]`` times changes class c to

    after_instances[c] = sum_i counts[i] * (instances of c in image i)
    after_images[c]    = sum_{i containing c} counts[i]

computed with ``np.bincount`` on the index, without building the output dataset.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ltaug.io.dataset import Dataset
from ltaug.rebalance.sampling import ClassImages
from ltaug.stats.frequency import BINS, dataset_bins
from ltaug.stats.plotting import BIN_COLORS, BIN_NAMES, MAX_LABELLED_CLASSES, class_bar_figure, save_figure

if TYPE_CHECKING:
    from matplotlib.artist import Artist


def class_shift(dataset: Dataset, counts, *, extra_instances=None, rare_max=None, common_max=None) -> dict:
    """JSON-ready per-class before/after document for image use counts ``counts``.

    ``extra_instances`` (per class, optional) are instances added by other means (pasted
    objects) and are reported in their own column. Bins are those of the source data (stored
    LVIS bins, or computed from image counts with the given thresholds) and do not move:
    evaluation groups classes by the original bins.
    """
    ix = dataset.index
    counts = np.asarray(counts, dtype=np.int64)
    n_c = ix.num_categories
    after_inst = np.bincount(ix.ann_category_pos, weights=counts[ix.ann_image_pos], minlength=n_c)
    table = ClassImages.from_index(ix)
    after_img = np.bincount(np.repeat(np.arange(n_c), table.counts), weights=counts[table.images], minlength=n_c)
    extra = np.zeros(n_c) if extra_instances is None else np.asarray(extra_instances, dtype=np.float64)
    bins = dataset_bins(dataset, rare_max=rare_max, common_max=common_max)
    classes = [{"id": int(cid), "name": name, "bin": str(b),
                "before_instances": int(bi), "after_instances": int(ai + ex), "pasted": int(ex),
                "before_images": int(bm), "after_images": int(am)}
               for cid, name, b, bi, ai, ex, bm, am in zip(ix.category_ids, ix.category_names, bins,
                                                           ix.instance_counts, after_inst, extra,
                                                           ix.image_counts, after_img)]
    return {"classes": classes, "summary": _summary(classes, ix.num_images, int(counts.sum()))}


def _spread(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    v = v[v > 0]
    if not v.size:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": int(v.min()), "median": float(np.median(v)), "max": int(v.max())}


def _summary(classes, images_before, images_after) -> dict:
    out = {"images": {"before": images_before, "after": images_after}}
    for when in ("before", "after"):
        inst = [c[f"{when}_instances"] for c in classes]
        total = max(sum(inst), 1)
        out[when] = {"instances": sum(inst),
                     "instances_per_class": _spread(inst),
                     "images_per_class": _spread([c[f"{when}_images"] for c in classes]),
                     "bin_instance_share": {b: sum(c[f"{when}_instances"] for c in classes if c["bin"] == b) / total
                                            for b in BINS}}
    return out


def format_shift_table(shift: dict, *, top: int | None = None) -> str:
    """Fixed-width text: one row per class (rarest first), then min/median/max and r/c/f shares."""
    classes = sorted(shift["classes"], key=lambda c: (c["before_instances"], c["id"]))
    show_pasted = any(c["pasted"] for c in classes)
    planned = bool(classes) and "target" in classes[0]
    head = (f"{'id':>6}  {'name':<22} {'bin':<3} {'inst before':>11}" + (f" {'target':>7}" if planned else "")
            + f" {'after':>8} {'x':>6}" + (f" {'pasted':>7}" if show_pasted else "")
            + f" {'imgs before':>11} {'after':>8}" + ("  status" if planned else ""))
    lines = [head, "-" * len(head)]
    rows = classes if top is None or top >= len(classes) else classes[:top]
    for c in rows:
        factor = f"{c['after_instances'] / c['before_instances']:.2f}" if c["before_instances"] else "-"
        lines.append(f"{c['id']:>6}  {c['name'][:22]:<22} {c['bin']:<3} {c['before_instances']:>11}"
                     + (f" {c['target']:>7}" if planned else "")
                     + f" {c['after_instances']:>8} {factor:>6}" + (f" {c['pasted']:>7}" if show_pasted else "")
                     + f" {c['before_images']:>11} {c['after_images']:>8}"
                     + (f"  {c['status']}" + (f" (needs {c['deficit']} more)" if c["deficit"] else "")
                        if planned else ""))
    if len(rows) < len(classes):
        lines.append(f"... {len(classes) - len(rows)} more classes (rarest {len(rows)} shown)")
    s = shift["summary"]
    lines += ["", f"{'':<24}{'before':>26}{'after':>28}",
              f"{'images':<24}{s['images']['before']:>26}{s['images']['after']:>28}",
              f"{'instances':<24}{s['before']['instances']:>26}{s['after']['instances']:>28}"]
    for key, label in (("instances_per_class", "instances/class"), ("images_per_class", "images/class")):
        b, a = s["before"][key], s["after"][key]
        lines.append(f"{label + ' min/med/max':<24}{_mmm(b):>26}{_mmm(a):>28}")
    for b in BINS:
        lines.append(f"{'share of ' + BIN_NAMES[b] + ' (' + b + ')':<24}"
                     f"{100 * s['before']['bin_instance_share'][b]:>25.1f}%{100 * s['after']['bin_instance_share'][b]:>27.1f}%")
    return "\n".join(lines)


def _mmm(d: dict) -> str:
    return f"{d['min']} / {d['median']:g} / {d['max']}"


def plot_shift(shift: dict, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Instances per class before (bars, coloured by bin) and after (black ticks), log scale.

    Classes are sorted by their original instance count, largest first, so the tail is on
    the right and its lift is visible at a glance. Above ``MAX_LABELLED_CLASSES`` classes
    (LVIS), the before and after frequency curves in shaded r/c/f bands instead
    (:func:`ltaug.stats.plotting.class_curve_figure`).
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from ltaug.stats.plotting import class_curve_figure

    s = shift["summary"]
    details = (f"images {s['images']['before']:,} → {s['images']['after']:,} · instances "
               f"{s['before']['instances']:,} → {s['after']['instances']:,} · min per class "
               f"{s['before']['instances_per_class']['min']:,} → {s['after']['instances_per_class']['min']:,}")
    if len(shift["classes"]) > MAX_LABELLED_CLASSES:
        rows = shift["classes"]
        fig, _, _ = class_curve_figure(path, [r["bin"] for r in rows], [r["before_instances"] for r in rows],
                                       after=[r["after_instances"] for r in rows],
                                       title=f"{title or 'Instances per class, before and after'}\n{details}")
        return save_figure(fig, path)
    classes = sorted(shift["classes"], key=lambda c: (-c["before_instances"], c["id"]))
    before = np.array([c["before_instances"] for c in classes], dtype=np.float64)
    after = np.array([c["after_instances"] for c in classes], dtype=np.float64)
    fig, ax, x = class_bar_figure(path, [c["name"] for c in classes], before,
                                  [BIN_COLORS.get(c["bin"], "gray") for c in classes],
                                  top=max(before.max(initial=1.0), after.max(initial=1.0)),
                                  what="instances before", alpha=0.55)
    if len(classes):
        ax.scatter(x, np.where(after > 0, after, np.nan), marker="_", s=60 if len(classes) <= MAX_LABELLED_CLASSES else 8,
                   color="black", linewidths=1.6, zorder=3)
    present = [b for b in BINS if any(c["bin"] == b for c in classes)]
    handles: list[Artist] = [Patch(color=BIN_COLORS[b], alpha=0.55, label=f"before, {BIN_NAMES[b]}") for b in present]
    handles.append(Line2D([], [], color="black", marker="_", linestyle="none", markersize=10, label="after"))
    ax.legend(handles=handles, loc="upper right", frameon=False, fontsize=9)
    ax.set_title(f"{title or 'Instances per class, before and after'}\n{details}", fontsize=11)
    return save_figure(fig, path)
