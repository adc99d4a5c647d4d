"""Matplotlib without pyplot state: a private Agg figure, written atomically in the path's format."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ltaug.errors import UsageError
from ltaug.io.jsonio import write_bytes_atomic

if TYPE_CHECKING:
    from matplotlib.layout_engine import ConstrainedLayoutEngine

BIN_NAMES = {"r": "rare", "c": "common", "f": "frequent"}
BIN_COLORS = {"r": "#d62728", "c": "#ff7f0e", "f": "#1f77b4"}  # red / orange / blue


def new_figure(path: str | os.PathLike, figsize, *, dpi: int = 120):
    """A constrained-layout Figure on an Agg canvas; raises UsageError if ``path``'s suffix is no format."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    # inches of margin around the axes (layout="constrained": the engine is a ConstrainedLayoutEngine)
    cast("ConstrainedLayoutEngine", fig.get_layout_engine()).set(w_pad=0.1, h_pad=0.1)
    canvas = FigureCanvasAgg(fig)
    if fmt not in canvas.get_supported_filetypes():
        raise UsageError(f"{path}: cannot write a plot as .{fmt}; use one of "
                         f"{', '.join(sorted(canvas.get_supported_filetypes()))}")
    return fig


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Render ``fig`` in memory in the format of ``path``'s suffix and write it atomically."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix[1:].lower() or "png")
    write_bytes_atomic(path, buf.getvalue())
    return path


def log_count_axis(ax, top: float) -> None:
    """A log-scale y axis for counts, ticks as plain numbers, light grid."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_yscale("log")
    ax.set_ylim(0.7, max(top, 1.0) * 1.6)
    ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.grid(axis="y", which="major", alpha=0.35)
    ax.grid(axis="y", which="minor", alpha=0.12)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


MAX_LABELLED_CLASSES = 100


def class_bar_figure(path, names, counts, colors, *, top: float, what: str, alpha: float = 1.0):
    """A figure with one log-scale bar per class, in the given order; returns ``(fig, ax, x)``.

    Sized to the number of classes; class names label the x axis up to
    ``MAX_LABELLED_CLASSES`` classes, otherwise the axis says how many classes, sorted by ``what``.
    """
    import numpy as np

    n = len(names)
    labelled = 0 < n <= MAX_LABELLED_CLASSES
    fig = new_figure(path, (max(8.0, min(0.16 * n + 1.5, 18.0)) if labelled else 12.0, 6.0 if labelled else 5.0))
    ax = fig.add_subplot()
    x = np.arange(n)
    if n:
        ax.bar(x, counts, width=0.8 if labelled else 1.0, color=colors, alpha=alpha, linewidth=0)
        log_count_axis(ax, top)
        ax.set_xlim(-0.7, n - 0.3)
    if labelled:
        ax.set_xticks(x, list(names), rotation=90, fontsize=7)
        ax.tick_params(axis="x", length=0, pad=2)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} classes, sorted by {what}")
    ax.set_ylabel("instances (log scale)")
    return fig, ax, x


BIN_ORDER = ("f", "c", "r")  # left to right on the curve: frequent first, the tail on the right
AFTER_COLOR = "#7b2cbf"      # the "after" curve (purple: none of the bin colours)


def _positive(values):
    """Counts for a log axis: zeros become NaN (a gap in the line)."""
    import numpy as np

    return np.where(values > 0, values, np.nan)


def _band_label(name: str, letter: str, n_classes: int, shares: tuple, wide: bool) -> str:
    """A band's label: full on a wide band, the letter and class count on a narrow one."""
    if not wide:
        return f"{letter}\n{n_classes:,}"
    share = " → ".join(f"{100 * s:.1f}%" for s in shares)
    return f"{name} ({letter})\n{n_classes:,} class{'' if n_classes == 1 else 'es'}\n{share} of instances"


def class_curve_figure(path, bins, instances, *, after=None, title: str = ""):
    """The sorted log-scale frequency curve of a dataset with many classes; returns ``(fig, ax, order)``.

    One point per class, x its rank and y its instances on a log axis, drawn as a line
    (``instances``; a second line ``after`` when given, e.g. after resampling), in place of
    one bar per class, which cannot be read at LVIS's 1,203 classes. The r/c/f bins
    (``bins``) are by images per class (Gupta et al., LVIS, CVPR 2019: r <= 10 < c <= 100 < f
    images, or the file's stored ``frequency``), not by instances, so the classes are ordered
    by bin first (frequent, common, rare) and by instances descending within each: each bin is
    one contiguous x range, shaded in its colour and labelled with its class count and share
    of instances (before → after), and the line falls within each band. The ``after`` line is
    sorted on its own within each bin (a rank-frequency curve per bin): it compares the spread
    of a bin's counts before and after, not class by class (a per-class factor is noise at
    this width; tables give it). Classes with zero instances leave a gap (log axis).
    ``order``: class positions in x order (of ``instances``).
    """
    import numpy as np
    from matplotlib.transforms import blended_transform_factory

    bins = np.asarray(bins).astype(str)
    before = np.asarray(instances, dtype=np.float64)
    after_v = None if after is None else np.asarray(after, dtype=np.float64)
    rank = np.array([BIN_ORDER.index(b) if b in BIN_ORDER else len(BIN_ORDER) for b in bins])
    order = np.lexsort((-before, rank))  # last key first: bin, then instances descending (stable: input order)
    n = order.size
    fig = new_figure(path, (12.0, 5.6))
    ax = fig.add_subplot()
    x = np.arange(n)
    top = max(before.max(initial=1.0), 1.0 if after_v is None else after_v.max(initial=1.0))
    log_count_axis(ax, top * 4)  # head room for the band labels
    ax.set_xlim(-0.5, n - 0.5 if n else 0.5)
    ax.set_ylabel("instances per class (log scale)")
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    totals = [v.sum() or 1.0 for v in (before, after_v) if v is not None]
    sorted_bins = bins[order]
    for b in BIN_ORDER:
        where = np.flatnonzero(sorted_bins == b)
        if not where.size:
            continue
        lo, hi = where.min() - 0.5, where.max() + 0.5
        ax.axvspan(lo, hi, color=BIN_COLORS[b], alpha=0.13, linewidth=0, zorder=0)
        ax.axvline(lo, color=BIN_COLORS[b], alpha=0.5, linewidth=0.8, zorder=0)
        members = bins == b
        shares = tuple(float(v[members].sum() / t) for v, t in zip((before, after_v), totals) if v is not None)
        wide = (hi - lo) >= 0.12 * max(n, 1)
        ax.text((lo + hi) / 2, 0.985, _band_label(BIN_NAMES[b], b, int(where.size), shares, wide), transform=trans,
                ha="center", va="top", fontsize=9 if wide else 8, color=BIN_COLORS[b], fontweight="bold",
                linespacing=1.25)
    when = "" if after_v is None else ", before"
    cuts = np.flatnonzero(sorted_bins[1:] != sorted_bins[:-1]) + 1  # one line segment per bin: no jump drawn
    for values, style in ((before, dict(color="#1d1f23", linewidth=1.4, label=f"instances per class{when}")),
                          (after_v, dict(color=AFTER_COLOR, linewidth=1.6, alpha=0.9,
                                         label="instances per class, after"))):
        if values is None:
            continue
        ranked = values[np.lexsort((-values, rank))]  # each bin's counts, largest first
        for k, (xs, ys) in enumerate(zip(np.split(x, cuts), np.split(_positive(ranked), cuts))):
            ax.plot(xs, ys, **(style if k == 0 else {**style, "label": None}))
    if n:
        ax.legend(loc="lower left", frameon=True, framealpha=0.85, edgecolor="none", fontsize=9)
    empty = int(np.count_nonzero(before == 0))
    ax.set_xlabel(f"{n:,} classes, binned by images per class; each bin sorted by instances"
                  + ("" if after_v is None else " (before and after each sorted on its own)")
                  + (f" ({empty:,} with no instance: not drawn)" if empty else ""))
    if title:
        ax.set_title(title, fontsize=11)
    return fig, ax, order
