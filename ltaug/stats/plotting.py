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
