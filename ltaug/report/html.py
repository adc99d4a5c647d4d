"""HTML report of an engine output folder: one self-contained page a person reads in a browser.

The page holds, from ``OUT/run.json``, ``OUT/annotations.json`` and the run's input file:

* the run: input, steps with their parameters, per-step counts and timings;
* the r/c/f shift: the share of instances in each frequency bin, before and after;
* the before/after class histogram (PNG, drawn by :func:`ltaug.rebalance.shift.plot_shift`:
  named bars up to 100 classes, above that the sorted frequency curves in r/c/f bands);
* a per-class table: bin, instances before and after, objects pasted (in the output),
  existing objects removed by occlusion (paste steps), cut remnants dropped (mosaic/mixup),
  and the factor after/before; a filter box, a bin filter and click-to-sort columns (plain
  inline script, :data:`TABLE_SCRIPT`), so 1,203 LVIS classes can be searched;
* for an output of a paste step, one pasted image's objects at the same places, pasted with
  each blending mode side by side (:mod:`ltaug.report.blends`);
* a grid of sample images the engine made (a seeded mix of paste, mosaic and mixup outputs,
  rare classes first: :func:`pick_samples`) with masks (semi-transparent fill and contour) and
  class names drawn, rare-class objects in red, pasted objects (and their copies carried into
  later mosaics or mixups) outlined with a thick dashed line.

"Before" is the input's classes as ``run.json`` records them (a run of an older ltaug, or
``--input FILE``: the input annotation file, read again); bins are those of the input
(stored LVIS bins, or computed from its image counts as ``ltaug stats`` does), and do not move.
Every image is embedded as a base64 data URI and the one script is inline, so the page is one
file that can be mailed or archived and opened offline. It is written atomically.
"""
from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ltaug import __version__
from ltaug.errors import InputError, LtaugError, UsageError
from ltaug.io.dataset import Dataset
from ltaug.io.index import DatasetIndex
from ltaug.io.jsonio import file_sha256, gc_paused, read_json, write_bytes_atomic
from ltaug.io.paths import image_file_name
from ltaug.io.read import load_dataset
from ltaug.pixels import masks
from ltaug.pixels.imagefile import read_image
from ltaug.rebalance.shift import _summary as shift_summary
from ltaug.rebalance.shift import plot_shift
from ltaug.run.engine import FORMAT
from ltaug.stats.frequency import (
                                   BINS,
                                   COMMON_MAX,
                                   RARE_MAX,
                                   dataset_bins,
                                   frequency_bins,
                                   uses_stored_frequency,
)
from ltaug.stats.plotting import BIN_COLORS, BIN_NAMES, MAX_LABELLED_CLASSES

REPORT_NAME = "report.html"
SAMPLES = 12
THUMB_WIDTH = 480
THUMB_QUALITY = 85
FILL_ALPHA = 0.4
PASTED_BGR = (0, 230, 255)      # the dashes of a pasted object's outline (yellow), over black
PASTED_CSS = "#ffe600"
RARE_BGR = (40, 39, 214)        # a rare-class object's outline and label: the rare bin's red (BIN_COLORS["r"])
DASH, GAP = 7, 5                # px along the outline


# -- reading the output folder ----------------------------------------------------------------

def read_run(out_dir: str | os.PathLike) -> dict:
    """``OUT/run.json`` of an engine output folder; a one-line InputError for anything else."""
    out_dir = Path(out_dir)
    if not out_dir.exists():
        raise InputError(f"{out_dir}: folder not found")
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: not a folder; give the output folder of `ltaug run` / paste / mosaic / mixup")
    if not (out_dir / "run.json").is_file():
        raise InputError(f"{out_dir}: not an ltaug output folder (no run.json); make one with `ltaug run` "
                         "or `ltaug paste | mosaic | mixup`")
    run = read_json(out_dir / "run.json")
    if not isinstance(run, dict) or run.get("format") != FORMAT or not isinstance(run.get("steps_run"), list):
        raise InputError(f"{out_dir / 'run.json'}: not the run record of an ltaug output folder "
                         f"(format {run.get('format') if isinstance(run, dict) else None!r}, expected {FORMAT!r})")
    return run


@dataclass(frozen=True)
class RecordedClasses:
    """The input's classes as ``run.json`` records them (:func:`ltaug.run.engine.input_classes`):
    what the report reads of the input's index."""

    category_ids: np.ndarray
    category_names: tuple
    instance_counts: np.ndarray
    image_counts: np.ndarray
    num_images: int


def _recorded_classes(run: dict, override: str | os.PathLike | None, rare_max: int | None, common_max: int | None) -> tuple | None:
    """``(classes, bins, stored, skipped)`` from the input's classes recorded in ``run.json``; None
    when an input file is given (``--input``) or the run records none (an older ltaug)."""
    rec = (run.get("input") or {}).get("classes")
    if override is not None or not rec:
        return None
    classes = RecordedClasses(np.asarray(rec["ids"], np.int64), tuple(rec["names"]),
                              np.asarray(rec["instances"], np.int64), np.asarray(rec["image_counts"], np.int64),
                              int(rec["images"]))
    stored = (run["input"].get("kind") == "lvis" and rare_max is None and common_max is None
              and all(f is not None for f in rec["frequency"]))
    bins = (np.array(rec["frequency"]) if stored else
            frequency_bins(classes.image_counts, rare_max=RARE_MAX if rare_max is None else rare_max,
                           common_max=COMMON_MAX if common_max is None else common_max))
    return classes, bins, stored, int(rec.get("skipped", 0))


def input_path(out_dir: Path, run: dict, override: str | os.PathLike | None = None) -> Path:
    """The annotation file the run read ("before"): ``override`` if given, else the path in run.json."""
    if override is not None:
        path = Path(override)
        if not path.exists():
            raise InputError(f"{path}: input annotations not found")
        return path
    recorded = (run.get("input") or {}).get("annotations")
    if not recorded:
        raise InputError(f"{out_dir / 'run.json'}: names no input annotation file, so there are no 'before' "
                         "counts; give it with --input")
    path = Path(recorded)
    if not path.exists():
        raise InputError(f"{out_dir / 'run.json'}: the input annotations {path} (the 'before' counts) are not "
                         "found; give their current path with --input")
    return path


# -- counts -------------------------------------------------------------------------------------

def _per_class(reports: list, ops: Container[str], key: str) -> dict:
    """Sum of ``report[key]`` ({category id: n}, keys strings after json) over the steps of ``ops``."""
    out: dict[int, int] = {}
    for r in reports:
        if r.get("op") in ops:
            for cid, n in (r.get(key) or {}).items():
                out[int(cid)] = out.get(int(cid), 0) + int(n)
    return out


def _op(record: dict) -> Any:
    lt = record.get("ltaug")
    return lt.get("op") if isinstance(lt, dict) else None


def pasted_positions(annotations: list) -> np.ndarray:
    """Positions (in file order) of the annotations a paste step placed (``ltaug.op`` "paste")."""
    return np.fromiter((k for k, a in enumerate(annotations)
                        if isinstance(lt := a.get("ltaug"), dict) and lt.get("op") == "paste"), np.int64)


def _made(record: dict) -> bool:
    """Whether a pixel step made this image (its provenance names the step; a resample's does not)."""
    lt = record.get("ltaug")
    return isinstance(lt, dict) and "step" in lt


def class_table(before: Dataset, after: Dataset, run: dict, *, rare_max: int | None = None,
                common_max: int | None = None, pasted_at: np.ndarray | None = None) -> dict:
    """The per-class before/after document (the shape of :func:`ltaug.rebalance.shift.class_shift`, so that
    :func:`ltaug.rebalance.shift.plot_shift` draws it) with the report's own columns.

    Each class: ``id``, ``name``, ``bin`` (of the input), ``before_instances`` /
    ``after_instances`` and ``before_images`` / ``after_images``, ``pasted`` (annotations of
    the output made by a paste step), ``removed`` (existing objects removed as occluded, summed
    over the paste steps of run.json), ``dropped`` (cut remnants dropped by mosaic / mixup) and
    ``factor`` (after / before instances; None when before is 0). Classes are in the input's
    order; a class only in the output is added with zeros before. ``pasted_at``: the
    :func:`pasted_positions` of ``after``'s annotations, if already known.
    """
    return _class_document(before.index, dataset_bins(before, rare_max=rare_max, common_max=common_max), after,
                           run, pasted_at)


def _class_document(bix: DatasetIndex | RecordedClasses, bins: np.ndarray, after: Dataset, run: dict,
                    pasted_at: np.ndarray | None) -> dict:
    """:func:`class_table` from the input's index and bins alone (its records may be gone)."""
    aix = after.index
    after_pos = {int(c): k for k, c in enumerate(aix.category_ids)}
    pasted_cats = aix.ann_category_ids[pasted_positions(after.annotations) if pasted_at is None else pasted_at]
    pasted = dict(zip(*(v.tolist() for v in np.unique(pasted_cats, return_counts=True))))
    removed = _per_class(run["steps_run"], ("paste",), "removed_per_class")
    dropped = _per_class(run["steps_run"], ("mosaic", "mixup"), "removed_per_class")
    classes: list[dict] = []

    def row(cid: int, name: str, b: str, bi: int, bm: int) -> None:
        k = after_pos.pop(cid, None)
        ai = int(aix.instance_counts[k]) if k is not None else 0
        am = int(aix.image_counts[k]) if k is not None else 0
        classes.append({"id": cid, "name": name, "bin": b, "before_instances": bi, "after_instances": ai,
                        "pasted": int(pasted.get(cid, 0)), "removed": int(removed.get(cid, 0)),
                        "dropped": int(dropped.get(cid, 0)), "before_images": bm, "after_images": am,
                        "factor": ai / bi if bi else None})

    for cid, name, b, bi, bm in zip(bix.category_ids.tolist(), bix.category_names, bins,
                                    bix.instance_counts.tolist(), bix.image_counts.tolist()):
        row(int(cid), name, str(b), int(bi), int(bm))
    for cid, k in sorted(after_pos.items()):
        row(cid, aix.category_names[k], "r", 0, 0)
    return {"classes": classes, "summary": shift_summary(classes, bix.num_images, aix.num_images)}


# -- samples ------------------------------------------------------------------------------------

def _first_copy(image: dict) -> bool:
    """Whether ``image`` is an input image as the output holds it: no provenance, or the first
    copy (``repeat`` 0) of an image a resample step repeats."""
    lt = image.get("ltaug")
    return not isinstance(lt, dict) or (lt.get("repeat", 0) == 0 and "step" not in lt)


def pick_samples(images: list, n: int, seed: int = 0, pasted_in: Container[int] | None = None,
                 rare_in: Mapping[int, Collection[int]] | None = None) -> list:
    """Up to ``n`` images made by a pixel step, a seeded mix of ops (round robin over the ops in
    pipeline order), chosen from the rare classes first.

    ``rare_in``: image id -> the rare classes (ids) it shows. Each op's images are shuffled
    with ``numpy.random.default_rng(seed)``, then stably ordered: images showing a rare class
    first, and within each kind those with a pasted object (``pasted_in``) first; each turn
    takes the first image of its op that shows a rare class not shown yet (else its first
    image), so the grid covers as many rare classes as it can. An output no pixel step made
    (resampling only) shows its input images that hold a rare class (the first copy of each).
    """
    rare_in = rare_in or {}
    pool = [(im["ltaug"]["step"], _op(im), im) for im in images if _made(im)]
    if not pool:  # resampling only: the input images that hold a rare class
        pool = [(0, "input", im) for im in images if im["id"] in rare_in and _first_copy(im)]
    groups: dict = {}
    for _, op, im in sorted(pool, key=lambda t: t[0]):  # stable: file order within a step
        groups.setdefault(op, []).append(im)
    rng = np.random.default_rng(seed)
    queues = []
    for group in groups.values():
        order = [group[i] for i in rng.permutation(len(group))]
        order.sort(key=lambda im: (not rare_in.get(im["id"]),  # stable: the shuffle stays within each kind
                                   pasted_in is not None and im["id"] not in pasted_in))
        queues.append(order)
    picked: list[dict] = []
    shown: set = set()
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                k = next((k for k, im in enumerate(q) if not shown.issuperset(rare_in.get(im["id"], ()))), 0)
                picked.append(q.pop(k))
                shown.update(rare_in.get(picked[-1]["id"], ()))
    return picked


def pasted_flags(annotations: list, of: Iterable[dict] | None = None) -> dict:
    """Annotation id -> True if it is a pasted object or a copy of one (carried into a mosaic or
    mixup, or repeated by a later resample step), following ``ltaug.source_annotation_id``;
    for the annotations ``of`` (default: all)."""
    by_id = {a["id"]: a for a in annotations}
    memo: dict = {}

    def flag(a: dict) -> bool:
        chain = []
        while True:
            if a["id"] in memo:
                result = memo[a["id"]]
                break
            chain.append(a["id"])
            lt = a.get("ltaug")
            if not isinstance(lt, dict):
                lt = {}
            if lt.get("op") == "paste":
                result = True
                break
            src = by_id.get(lt.get("source_annotation_id")) if (lt.get("op") in ("mosaic", "mixup")
                                                                or "repeat" in lt) else None
            if src is None or src["id"] in chain:
                result = False
                break
            a = src
        for i in chain:
            memo[i] = result
        return result

    return {a["id"]: flag(a) for a in (annotations if of is None else of)}


def class_color(position: int) -> tuple:
    """A distinct saturated BGR colour for the class at ``position`` (golden-ratio hue steps)."""
    hue = int((position * 0.618033988749895 % 1.0) * 180)
    hsv = np.array([[[hue, 200, 235]]], dtype=np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _dashed(img: np.ndarray, contour: np.ndarray, color: tuple, thickness: int) -> None:
    pts = contour.reshape(-1, 2)
    if len(pts) < 2:
        return
    pts = np.concatenate([pts, pts[:1]])  # closed
    for start in range(0, len(pts) - 1, DASH + GAP):
        seg = pts[start:start + DASH + 1]
        if len(seg) >= 2:
            cv2.polylines(img, [seg.reshape(-1, 1, 2)], False, color, thickness, cv2.LINE_AA)


def draw_sample(image: np.ndarray, annotations: list, names: dict, colors: dict, pasted: dict,
                width: int = THUMB_WIDTH, rare: Container[int] = ()) -> np.ndarray:
    """A thumbnail ``width`` px wide (never enlarged) of ``image`` (BGR) with every annotation's
    mask filled and outlined in its class colour and its class name written at its box;
    pasted objects (``pasted[ann id]``) get a thick dashed outline, yellow over black.

    Names never cover one another (LVIS images hold dozens of objects, a mosaic four times
    that): they are placed in order, pasted objects first, then objects of the ``rare`` classes
    (category ids), then the others largest first, and a name that would overlap one already
    written is left out."""
    H, W = image.shape[:2]
    s = min(1.0, width / W)
    tw, th = max(1, round(W * s)), max(1, round(H * s))
    thumb = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA) if s < 1 else image.copy()
    shapes = []
    for a in annotations:
        rle, _ = masks.annotation_rle(a.get("segmentation"), a["bbox"], H, W, a.get("id"))
        m = masks.decode_rle(rle)
        if s < 1:
            m = (cv2.resize(m * np.uint8(255), (tw, th), interpolation=cv2.INTER_AREA) >= 128).astype(np.uint8)
        color = colors.get(a["category_id"], (255, 255, 255))
        region = m.astype(bool)
        thumb[region] = (thumb[region] * (1 - FILL_ALPHA) + np.array(color) * FILL_ALPHA).astype(np.uint8)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        shapes.append((a, color, contours))
    for a, color, contours in shapes:  # outlines over every fill
        if pasted.get(a["id"]):
            cv2.drawContours(thumb, contours, -1, (0, 0, 0), 4, cv2.LINE_AA)
            for c in contours:
                _dashed(thumb, c, PASTED_BGR, 2)
        elif a["category_id"] in rare:  # a rare-class object: a red line over a white halo
            cv2.drawContours(thumb, contours, -1, (255, 255, 255), 4, cv2.LINE_AA)
            cv2.drawContours(thumb, contours, -1, RARE_BGR, 2, cv2.LINE_AA)
        else:
            cv2.drawContours(thumb, contours, -1, color, 1, cv2.LINE_AA)
    placed: list[tuple] = []
    by_priority = sorted(shapes, key=lambda t: (not pasted.get(t[0]["id"]), t[0]["category_id"] not in rare,
                                                -t[0]["bbox"][2] * t[0]["bbox"][3]))  # stable: file order on ties
    for a, color, _ in by_priority:  # labels over every outline
        label = names.get(a["category_id"], str(a["category_id"]))
        kind = "pasted" if pasted.get(a["id"]) else "rare" if a["category_id"] in rare else ""
        _label(thumb, label, a["bbox"][0] * s, a["bbox"][1] * s, color, kind, placed)
    return thumb


def _label(img: np.ndarray, text: str, x: float, y: float, color: tuple, kind: str, placed: list) -> bool:
    """Write ``text`` on a filled box at (x, y) unless the box overlaps one in ``placed`` (then
    nothing is drawn and False returned); the box drawn is appended to ``placed``. ``kind``:
    "pasted" (yellow on black), "rare" (white on the rare bin's red) or "" (white on the class
    colour, darkened)."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    H, W = img.shape[:2]
    x0 = int(min(max(0, x), max(0, W - w - 4)))
    y0 = int(min(max(0, y - h - base - 2), max(0, H - h - base - 2)))
    x1, y1 = x0 + w + 4, y0 + h + base + 2
    if any(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1 for bx0, by0, bx1, by1 in placed):
        return False
    placed.append((x0, y0, x1, y1))
    bg = {"pasted": (0, 0, 0), "rare": RARE_BGR}.get(kind, tuple(int(c * 0.55) for c in color))
    cv2.rectangle(img, (x0, y0), (x1, y1), bg, -1)
    cv2.putText(img, text, (x0 + 2, y0 + h + 1), font, scale, PASTED_BGR if kind == "pasted" else (255, 255, 255), 1,
                cv2.LINE_AA)
    return True


# -- the page -----------------------------------------------------------------------------------

def _uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


FLAG_KEYS = ("exclude", "exclude_flags", "flags")  # parameters holding bank quality flags (names, or a bit mask)


def flag_names(value: Any) -> str:
    """Bank quality flags by name, comma-separated: a list of names as it is, a bit mask (``55``)
    as the names of its bits (``too_small,truncated,occluded,empty,clipped``); ``none`` when empty."""
    from ltaug.pixels.bank import Flag

    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        names = [str(f.name).lower() for f in Flag if value & int(f)]
        unknown = value & ~sum(int(f) for f in Flag)
        return ",".join(names + ([f"unknown bits {unknown}"] if unknown else [])) or "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def _params(params: dict) -> str:
    parts = [f"{k}={flag_names(v)}" if k in FLAG_KEYS else
             f"{k}={json.dumps(v, separators=(',', ':')) if isinstance(v, (dict, list)) else v}"
             for k, v in (params or {}).items()]
    return ", ".join(parts)


def _n(value: object) -> str:
    """A count with thousands separators (``1,270,141``); anything else as it is, ``?`` for None."""
    return "?" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _plot_title(doc: dict) -> str:
    if len(doc["classes"]) > MAX_LABELLED_CLASSES:
        return "Instances per class before and after: frequency curves in r/c/f bands"
    return "Instances per class, before (bars) and after (ticks)"


def _histogram_png(doc: dict, title: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ltaug-report-") as tmp:
        path = Path(tmp) / "shift.png"
        plot_shift(doc, path, title=title)
        return path.read_bytes()


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d1f23;
  margin:0;background:#f4f5f7}
main{max-width:1280px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 10px;border-bottom:1px solid #d8dbe0;padding-bottom:4px}
.sub{color:#5b6270;margin:0 0 16px}.note{color:#5b6270;font-size:13px;margin:6px 0}
.warn{background:#fff4d6;border:1px solid #e8c76a;padding:8px 12px;border-radius:6px;margin:10px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px;margin:12px 0}
.card{background:#fff;border:1px solid #dde0e5;border-radius:8px;padding:10px 14px}
.card b{display:block;font-size:19px}.card span{color:#5b6270;font-size:12px}
table{border-collapse:collapse;background:#fff;border:1px solid #dde0e5;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #eceef1;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600;position:sticky;top:0;max-width:110px}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr:hover td{background:#f7f9fc}
table.info th{white-space:nowrap;max-width:none}
code{font:12px/1.4 ui-monospace,"DejaVu Sans Mono",monospace;color:#30343b;word-break:break-word}
.bin{display:inline-block;min-width:18px;text-align:center;border-radius:4px;color:#fff;font-weight:600;font-size:12px}
.bar{display:flex;height:22px;width:100%;max-width:560px;border-radius:4px;overflow:hidden;border:1px solid #c9cdd3}
.bar div{color:#fff;font-size:11px;line-height:22px;padding-left:4px;white-space:nowrap;overflow:hidden}
.fig{background:#fff;border:1px solid #dde0e5;border-radius:8px;padding:8px;max-width:100%}
.fig img{max-width:100%;height:auto;display:block}
.scroll{max-height:560px;overflow:auto;display:inline-block;max-width:100%;border:1px solid #dde0e5}
.scroll table{border:0}
.tools{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:8px 0}
.tools input{font:inherit;padding:5px 9px;border:1px solid #c9cdd3;border-radius:6px;width:260px}
.tools select{font:inherit;padding:4px 6px;border:1px solid #c9cdd3;border-radius:6px;background:#fff}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#e2e6eb}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
table.sortable th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
figcaption .rare{color:#b42318;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:14px;align-items:start}
figure{margin:0;background:#fff;border:1px solid #dde0e5;border-radius:8px;overflow:hidden}
figure img{width:100%;height:auto;max-height:460px;object-fit:contain;display:block;background:#222}
figcaption{padding:6px 10px;font-size:12.5px;color:#30343b}figcaption .f{color:#7a808b;font-size:11.5px}
.legend{display:flex;gap:18px;align-items:center;flex-wrap:wrap;margin:6px 0 12px;font-size:13px}
.legend svg{vertical-align:middle;margin-right:6px}
.up{color:#1a7f37}.down{color:#b42318}
"""


def _bin_badge(b: str) -> str:
    return f'<span class="bin" style="background:{BIN_COLORS.get(b, "#888")}">{_e(b)}</span>'


def _share_bar(shares: dict) -> str:
    cells = "".join(f'<div style="width:{100 * shares[b]:.3f}%;background:{BIN_COLORS[b]}" '
                    f'title="{BIN_NAMES[b]} {_pct(shares[b])}">{b} {_pct(shares[b]) if shares[b] >= 0.06 else ""}</div>'
                    for b in BINS if shares[b] > 0)
    return f'<div class="bar">{cells}</div>'


def _run_section(run: dict, out_dir: Path, before_path: Path, warnings: list) -> str:
    inp, c = run.get("input") or {}, run.get("counts") or {}
    rows = []
    for k, (step, r) in enumerate(zip(run.get("steps") or [{}] * len(run["steps_run"]), run["steps_run"])):
        op = r.get("op", step.get("op", "?"))
        params = dict(r.get("params") or step.get("params") or {})
        if step.get("bank"):
            params["bank"] = step["bank"]
        if op == "resample":
            result = f"{_n(r.get('images_before'))} → {_n(r.get('images_after'))} images"
            if r.get("note"):
                result += f"; {r['note']}"
        else:
            added = sum((r.get("added_per_class") or {}).values())
            removed = sum((r.get("removed_per_class") or {}).values())
            parts = [f"{_n(r.get('images_written', 0))} images written"]
            if op == "paste":
                parts.append(f"{added:,} objects pasted")
                hidden = sum((r.get("pasted_removed_per_class") or {}).values())
                parts.append(f"{removed:,} existing objects removed as occluded")
                if hidden:
                    parts.append(f"{hidden:,} pasted hidden by later pastes")
                plan = r.get("plan") or {}
                if plan.get("no_room"):
                    parts.append(f"{_n(plan['no_room'])} found no room")
                if plan.get("unplaced_budget"):
                    parts.append(f"{_n(plan['unplaced_budget'])} of the budget not placed")
                if r.get("shortfalls"):
                    parts.append(f"{len(r['shortfalls'])} classes got fewer objects than asked (see below)")
                if plan.get("note"):
                    parts.append(plan["note"])
                if r.get("blend"):
                    parts.append("blend " + ", ".join(f"{m} {n}" for m, n in sorted(r["blend"].items())))
            else:
                parts.append(f"{added:,} objects carried, {removed:,} cut remnants dropped")
            if r.get("images_skipped"):
                parts.append(f"{len(r['images_skipped'])} skipped (unreadable)")
            result = "; ".join(parts)
        secs = r.get("seconds")
        rows.append(f"<tr><td class=n>{k}</td><td><b>{_e(op)}</b></td><td><code>{_e(_params(params))}</code></td>"
                    f"<td>{_e(result)}</td><td class=n>{'' if secs is None else f'{secs:.2f}'}</td></tr>")
    info = [("output", str(out_dir)), ("input annotations", f"{before_path} ({inp.get('kind', '?')})"),
            ("input images", inp.get("images", "?")), ("input sha256", inp.get("sha256") or "not recorded"),
            ("made by", f"ltaug {run.get('ltaug_version', '?')}; report by ltaug {__version__}")]
    warn = "".join(f'<p class="warn">{_e(w)}</p>' for w in warnings)
    return (f"<h2>Run</h2>{warn}<table class=info>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in info)
            + "</table>"
            + f"<p class=note>images {_n(c.get('images_before'))} → {_n(c.get('images_after'))} "
              f"({_n(c.get('images_written'))} written) · annotations {_n(c.get('annotations_before'))} → "
              f"{_n(c.get('annotations_after'))} · {run.get('seconds', 0):.1f} s in all</p>"
            + "<table><tr><th class=n>step</th><th>op</th><th>parameters</th><th>result</th><th class=n>s</th></tr>"
            + "".join(rows) + "</table>")


def _shift_section(doc: dict, bin_rule: str, hist_png: bytes) -> str:
    s = doc["summary"]
    rows = []
    for b in BINS:
        members = [c for c in doc["classes"] if c["bin"] == b]
        sb, sa = s["before"]["bin_instance_share"][b], s["after"]["bin_instance_share"][b]
        ib, ia = sum(c["before_instances"] for c in members), sum(c["after_instances"] for c in members)
        diff = 100 * (sa - sb)
        cls = "up" if diff > 0.05 else "down" if diff < -0.05 else ""
        rows.append(f"<tr><td>{_bin_badge(b)} {BIN_NAMES[b]}</td><td class=n>{len(members):,}</td>"
                    f"<td class=n>{ib:,}</td><td class=n>{_pct(sb)}</td><td class=n>{ia:,}</td><td class=n>{_pct(sa)}</td>"
                    f"<td class='n {cls}'>{diff:+.1f} pt</td></tr>")
    return ("<h2>r/c/f shift</h2>"
            f"<p class=note>Share of instances per frequency bin of the input ({_e(bin_rule)}); bins do not move.</p>"
            "<table><tr><th>bin</th><th class=n>classes</th><th class=n>instances before</th><th class=n>share before</th>"
            "<th class=n>instances after</th><th class=n>share after</th><th class=n>change</th></tr>" + "".join(rows) + "</table>"
            f"<p class=note>before</p>{_share_bar(s['before']['bin_instance_share'])}"
            f"<p class=note>after</p>{_share_bar(s['after']['bin_instance_share'])}"
            "<h2>Instances per class, before and after</h2>"
            f'<div class="fig"><img alt="{_e(_plot_title(doc).lower())}" '
            f'src="{_uri("image/png", hist_png)}"></div>')


LONG_TABLE = 15  # rows; a longer table scrolls in a box of its own, so the page stays short

# The per-class table's search box, bin filter and sortable columns: plain inline JavaScript (a report
# is opened offline, so nothing is fetched). Rows are hidden, never rebuilt, when filtering; a sort
# re-appends the existing rows in one fragment. A numeric column sorts by each cell's data-v (or its
# text), largest first on the first click.
TABLE_SCRIPT = """
(function () {
  var table = document.getElementById("classes"), body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows), q = document.getElementById("classes-q");
  var bin = document.getElementById("classes-bin"), count = document.getElementById("classes-n");
  var text = rows.map(function (r) { return (r.cells[0].textContent + " " + r.cells[1].textContent).toLowerCase(); });
  function filter() {
    var s = q.value.trim().toLowerCase(), b = bin.value, n = 0;
    rows.forEach(function (r, i) {
      var show = (!s || text[i].indexOf(s) >= 0) && (!b || r.getAttribute("data-bin") === b);
      r.hidden = !show; if (show) { n++; }
    });
    count.textContent = n + " of " + rows.length + " classes shown";
  }
  q.addEventListener("input", filter); bin.addEventListener("change", filter);
  var heads = table.tHead.rows[0].cells, current = -1, dir = 1;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.tabIndex = 0; th.title = "sort by " + th.textContent;
    function sort() {
      var num = th.getAttribute("data-type") === "num";
      dir = current === col ? -dir : (num ? -1 : 1); current = col;
      var keys = rows.map(function (r) {
        var c = r.cells[col], v = c.hasAttribute("data-v") ? c.getAttribute("data-v") : c.textContent;
        if (!num) { return v.toLowerCase(); }
        v = parseFloat(v.replace(/,/g, "")); return isNaN(v) ? -Infinity : v;
      });
      var idx = rows.map(function (_, i) { return i; });
      idx.sort(function (a, b) { return keys[a] < keys[b] ? -dir : keys[a] > keys[b] ? dir : a - b; });
      var frag = document.createDocumentFragment();
      idx.forEach(function (i) { frag.appendChild(rows[i]); });
      body.appendChild(frag);
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
  });
})();
"""


def _boxed(table: str, rows: int) -> str:
    """``table`` as it is, or in a scrolling box when it has more than ``LONG_TABLE`` rows."""
    return f'<div class="scroll">{table}</div>' if rows > LONG_TABLE else table


def _class_section(doc: dict) -> str:
    classes = sorted(doc["classes"], key=lambda c: (c["before_instances"], c["id"]))
    show_dropped = any(c["dropped"] for c in classes)
    cols = [("id", "num"), ("name", ""), ("bin", "num"), ("before", "num"), ("after", "num"), ("pasted", "num"),
            ("removed by occlusion", "num")] + ([("cut remnants dropped", "num")] if show_dropped else []) \
        + [("factor", "num"), ("images before", "num"), ("images after", "num")]
    head = "<thead><tr>" + "".join(
        f'<th{" class=n" if t and name != "bin" else ""}{" data-type=num" if t else ""}>{_e(name)}</th>'
        for name, t in cols) + "</tr></thead>"
    rank = {b: k for k, b in enumerate(BINS)}
    rows = []
    for c in classes:
        f = c["factor"]
        factor = ("new" if c["after_instances"] else "–") if f is None else f"{f:.2f}×"
        key = ("Infinity" if c["after_instances"] else "") if f is None else f"{f:.6g}"
        rows.append(f"<tr data-bin={c['bin']}><td class=n>{c['id']}</td><td>{_e(c['name'])}</td>"
                    f"<td data-v={rank.get(c['bin'], 9)}>{_bin_badge(c['bin'])}</td>"
                    f"<td class=n>{c['before_instances']:,}</td><td class=n>{c['after_instances']:,}</td>"
                    f"<td class=n>{c['pasted']:,}</td><td class=n>{c['removed']:,}</td>"
                    + (f"<td class=n>{c['dropped']:,}</td>" if show_dropped else "")
                    + f'<td class=n data-v="{key}">{factor}</td><td class=n>{c["before_images"]:,}</td>'
                    f"<td class=n>{c['after_images']:,}</td></tr>")
    options = "".join(f'<option value="{b}">{BIN_NAMES[b]} ({b}): '
                      f'{sum(c["bin"] == b for c in classes):,}</option>' for b in BINS)
    tools = (f'<div class="tools"><input id="classes-q" type="search" placeholder="filter by name or id" '
             f'aria-label="filter classes by name or id"><select id="classes-bin" aria-label="bin">'
             f'<option value="">all bins</option>{options}</select>'
             f'<span id="classes-n" class=note>{len(classes):,} of {len(classes):,} classes shown</span>'
             '<span class=note>click a column header to sort</span></div>')
    return (f"<h2>Per class ({len(classes):,} classes, rarest first)</h2>"
            "<p class=note><b>before</b> / <b>after</b>: instances in the input / the output · "
            "<b>pasted</b>: objects placed by paste steps that are in the output (copies carried into mosaics "
            "or mixups not counted) · <b>removed by occlusion</b>: existing objects dropped because pasted ones "
            "hid them (all paste steps)" + (" · <b>cut remnants dropped</b>: objects cut by mosaic/mixup below "
                                            "their minimum visible part" if show_dropped else "")
            + " · <b>factor</b>: after / before</p>" + tools
            + _boxed(f'<table id="classes" class="sortable">{head}<tbody>{"".join(rows)}</tbody></table>', len(rows))
            + f"<script>{TABLE_SCRIPT}</script>")


def _limits_section(run: dict) -> str:
    """Asked vs got: the per-class limits of the steps that set them (run.json ``limits``), and what
    each paste step asked per class and did not get (its ``shortfalls``), with why."""
    limits = run.get("limits")
    out = ["<h2>Per-class limits: asked vs got</h2>"]
    if limits is None:
        return out[0] + ("<p class=note>This run.json records no per-class limits (made by an ltaug before they "
                         "were checked).</p>")
    checked = limits.get("checked") or []
    if not checked:
        out.append("<p class=note>No step sets a per-class limit (a paste budget's target: min_instances, "
                   "exponent, max_factor).</p>")
    for check in checked:
        k = check["step"]
        mine = [e for e in limits.get("not_held") or () if e["step"] == k]
        verdict = (f"held for all {check['classes']} classes" if not mine else
                   f"held for {check['held']} of {check['classes']} classes: {check['over']} over, "
                   f"{check['short']} short")
        out.append(f"<p{' class=warn' if mine else ' class=note'}>Step {k} ({_e(check['op'])}: "
                   f"<code>{_e(check['rule'])}</code>), on each class's instances in the input: {_e(verdict)}.</p>")
        if not mine:
            continue
        rows = "".join(
            f"<tr><td class=n>{e['category_id']}</td><td>{_e(e['name'])}</td><td>{_e(e['status'])}</td>"
            f"<td>{_e(e['rule'])}</td><td class=n>{e['before']}</td><td class=n>{e['asked']}</td>"
            f"<td class=n>{e['got']}</td><td>{_e(e['why'])}</td></tr>" for e in mine)
        out.append(_boxed("<table><tr><th class=n>id</th><th>name</th><th>status</th><th>limit</th>"
                          "<th class=n>before</th><th class=n>asked</th><th class=n>got</th><th>why</th></tr>"
                          f"{rows}</table>", len(mine)))
    for k, r in enumerate(run.get("steps_run") or ()):
        short, plan = r.get("shortfalls") or [], r.get("plan") or {}
        unusable = plan.get("not_pastable") or {}
        if short:
            rows = "".join(
                f"<tr><td class=n>{e['category_id']}</td><td>{_e(e['name'])}</td><td class=n>{e['asked']}</td>"
                f"<td class=n>{e['got']}</td><td>{_e(flag_names(list(e['left_out'])) if e['left_out'] else '')}"
                f"</td><td>{_e(e['why'])}</td></tr>" for e in short)
            out.append(f"<h3>Step {k} ({_e(r.get('op'))}): {len(short):,} classes got fewer objects than asked</h3>"
                       + _boxed("<table><tr><th class=n>id</th><th>name</th><th class=n>asked</th><th class=n>got</th>"
                                f"<th>bank flags left out</th><th>why</th></tr>{rows}</table>", len(short)))
        if unusable:
            rows = "".join(f"<tr><td class=n>{cid}</td><td>{_e(v.get('name', cid))}</td>"
                           f"<td class=n>{v.get('in_bank', 0)}</td>"
                           f"<td>{_e(', '.join(f'{f} {n}' for f, n in (v.get('left_out') or {}).items()))}</td></tr>"
                           for cid, v in unusable.items())
            out.append(f"<h3>Step {k} ({_e(r.get('op'))}): {len(unusable):,} classes of the data can never be "
                       "pasted</h3>" + _boxed("<table><tr><th class=n>id</th><th>name</th><th class=n>bank objects</th>"
                                              f"<th>left out by flag</th></tr>{rows}</table>", len(unusable)))
    return "".join(out)


def _legend() -> str:
    dash = (f'<svg width="46" height="16"><line x1="2" y1="8" x2="44" y2="8" stroke="#000" stroke-width="5"/>'
            f'<line x1="2" y1="8" x2="44" y2="8" stroke="{PASTED_CSS}" stroke-width="2.5" stroke-dasharray="7 5"/></svg>')
    fill = ('<svg width="34" height="16"><rect x="2" y="2" width="30" height="12" fill="#3b82f6" fill-opacity="0.4" '
            'stroke="#3b82f6" stroke-width="1.5"/></svg>')
    rare = ('<svg width="34" height="16"><rect x="2" y="2" width="30" height="12" fill="#d62728" fill-opacity="0.25" '
            'stroke="#fff" stroke-width="4"/><rect x="2" y="2" width="30" height="12" fill="none" stroke="#d62728" '
            'stroke-width="2"/></svg>')
    return (f'<div class="legend"><span>{fill}object: mask filled and outlined in its class colour, class name '
            f'at its box</span><span>{rare}object of a rare class: red outline and name</span>'
            f'<span>{dash}pasted object (or a copy of one carried into a mosaic / mixup)</span></div>')


def rare_images(after: Dataset, rare: Collection[int]) -> dict[int, list[int]]:
    """Image id -> the ids of the ``rare`` classes it shows (images showing none left out)."""
    ix = after.index
    hit = np.isin(ix.ann_category_ids, np.fromiter(rare, np.int64, len(rare)))
    pairs = np.unique(np.stack([ix.ann_image_ids[hit], ix.ann_category_ids[hit]], 1), axis=0)
    out: dict[int, list[int]] = {}
    for image_id, cid in pairs.tolist():
        out.setdefault(image_id, []).append(cid)
    return out


def _caption(im: dict, anns: list, n_pasted: int, copies: int) -> str:
    lt: dict[str, Any] = im["ltaug"] if _made(im) else {"op": "input"}
    sources = ", ".join(str(i) for i in lt.get("source_image_ids", []))
    what = {"paste": f"paste, step {lt.get('step')}",
            "mosaic": f"mosaic of {len(lt.get('source_image_ids', []))} images, step {lt.get('step')}",
            "mixup": f"mixup, step {lt.get('step')}",
            "input": f"input image, {copies} cop{'y' if copies == 1 else 'ies'} in the output"}.get(
                lt["op"], f"{lt['op']}, step {lt.get('step')}")  # augment, an operation registered by the user
    lam = (lt.get("params") or {}).get("lam")
    if lt["op"] == "mixup" and lam is not None and len(lt.get("source_image_ids", [])) == 2:
        a_id, b_id = lt["source_image_ids"]
        sources = f"{a_id} (weight {lam:.2f}), {b_id} (weight {1 - lam:.2f})"
    origin = f" · from image(s) {_e(sources)}" if sources else ""
    background = (lt.get("params") or {}).get("background")
    if background:
        origin = f" · on background {_e(background)}"
    return (f"<b>{_e(what)}</b> · image {im['id']} · {len(anns)} objects, {n_pasted} pasted"
            f"<br><span class=f>{_e(image_file_name(im))}{origin}</span>")


def _sample_section(out_dir: Path, after: Dataset, samples: int, seed: int, width: int, rare: Collection[int],
                    pasted_at: np.ndarray) -> str:
    if samples <= 0:
        return ""
    ix = after.index
    direct = set(ix.ann_image_ids[pasted_at].tolist())
    rare_in = rare_images(after, rare)
    picked = pick_samples(after.images, samples, seed, pasted_in=direct, rare_in=rare_in)
    if not picked:
        return "<h2>Sample outputs</h2><p class=note>No image in this output was made by a pixel step " \
               "(paste, mosaic, mixup), and none holds a rare class: nothing to show.</p>"
    anns_of: dict = {}
    for k in np.flatnonzero(np.isin(ix.ann_image_ids, [im["id"] for im in picked])).tolist():
        anns_of.setdefault(after.annotations[k]["image_id"], []).append(after.annotations[k])
    pasted = pasted_flags(after.annotations, [a for im in picked for a in anns_of.get(im["id"], [])])
    names = dict(zip(ix.category_ids.tolist(), ix.category_names))
    colors = {cid: class_color(k) for k, cid in enumerate(ix.category_ids.tolist())}
    copies: dict = {}
    if not any(map(_made, picked)):
        for im in after.images:
            src = (im.get("ltaug") or {}).get("source_image_id", im["id"])
            copies[src] = copies.get(src, 0) + 1
    cells, shown = [], set()
    for im in picked:
        anns = anns_of.get(im["id"], [])
        name = image_file_name(im)
        n_pasted = sum(bool(pasted.get(a["id"])) for a in anns)
        caption = _caption(im, anns, n_pasted, copies.get((im.get("ltaug") or {}).get("source_image_id", im["id"]), 1))
        here = rare_in.get(im["id"], [])
        shown.update(here)
        pasted_cats = {a["category_id"] for a in anns if pasted.get(a["id"])}
        if here:
            caption += ("<br><span class=rare>rare: " + ", ".join(
                _e(names.get(c, c)) + (" (pasted)" if c in pasted_cats else "") for c in here[:8])
                + (f" and {len(here) - 8} more" if len(here) > 8 else "") + "</span>")
        try:
            assert name is not None  # every image of an engine output names its file
            img = read_image(out_dir / "images" / name, im["id"], im.get("height"), im.get("width"))
            thumb = draw_sample(img, anns, names, colors, pasted, width, rare=set(here))
            ok, buf = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
            if not ok:
                raise InputError(f"image id {im['id']}: cannot encode the thumbnail")
            body = f'<img alt="{_e(name)}" width="{thumb.shape[1]}" height="{thumb.shape[0]}" ' \
                   f'src="{_uri("image/jpeg", buf.tobytes())}">'
        except LtaugError as exc:
            body = f'<p class="warn">{_e(exc)}</p>'
        cells.append(f"<figure>{body}<figcaption>{caption}</figcaption></figure>")
    made = sum(map(_made, after.images))
    of_what = (f"{made:,} images the engine made" if made else
               f"{len(rare_in):,} output images holding a rare class; no pixel step ran")
    return (f"<h2>Sample outputs ({len(picked)} of {of_what}, seed {seed})</h2>"
            f"<p class=note>Chosen from the rare classes first: {len(shown):,} of the {len(rare):,} rare classes "
            "are in these images.</p>" + _legend() + f'<div class="grid">{"".join(cells)}</div>')


def _blend_section(after: Dataset, before_path: Path, run: dict, width: int) -> str:
    """One pasted image's objects at the same places, pasted with each blending mode (:mod:`ltaug.report.blends`)."""
    from ltaug.report.blends import blend_grid

    images = (run.get("input") or {}).get("images")
    if not any(r.get("op") == "paste" for r in run.get("steps_run", [])) or images is None:
        return ""
    backgrounds = next((r.get("params", {}).get("backgrounds") for r in run.get("steps_run", [])
                        if r.get("op") == "paste" and r.get("params", {}).get("backgrounds")), None)
    jpeg, note = blend_grid(after, before_path, Path(images), width, backgrounds)
    body = "" if jpeg is None else f'<img alt="blending modes" src="{_uri("image/jpeg", jpeg)}">'
    return f"<h2>Blending modes on the same placements</h2><p class=note>{_e(note)}</p>{body}"


def build_report(out_dir: str | os.PathLike, *, input_annotations: str | os.PathLike | None = None,
                 samples: int = SAMPLES, seed: int = 0,
                 thumb_width: int = THUMB_WIDTH, rare_max: int | None = None, common_max: int | None = None,
                 on_error: str = "raise") -> tuple[str, dict, list[str]]:
    """The report page of the output folder ``out_dir``: ``(html, class document, warnings)``.

    ``input_annotations`` replaces the input path recorded in run.json (a moved input).
    Python's cyclic garbage collector is paused throughout (:func:`ltaug.io.jsonio.gc_paused`):
    with two LVIS-sized datasets in memory (millions of acyclic dicts) every collection rescans
    them all, and importing matplotlib alone triggers dozens.
    """
    with gc_paused():
        return _build_report(out_dir, input_annotations, samples, seed, thumb_width, rare_max, common_max, on_error)


def _build_report(out_dir: str | os.PathLike, input_annotations: str | os.PathLike | None, samples: int, seed: int,
                  thumb_width: int, rare_max: int | None, common_max: int | None,
                  on_error: str) -> tuple[str, dict, list[str]]:
    if samples < 0:
        raise UsageError(f"--samples must be >= 0, got {samples}")
    if thumb_width < 64:
        raise UsageError(f"--thumb-width must be >= 64 px, got {thumb_width}")
    out_dir = Path(out_dir)
    run = read_run(out_dir)
    warnings: list[str] = []
    recorded = _recorded_classes(run, input_annotations, rare_max, common_max)
    if recorded is not None:  # the counts run.json recorded: the input is not read again
        (bix, bins, stored, skipped) = recorded
        before_path = Path(run["input"].get("annotations") or "(an in-memory dataset: no file)")
    else:
        before_path = input_path(out_dir, run, input_annotations)
        recorded_sha = (run.get("input") or {}).get("sha256")
        if recorded_sha and before_path.is_file() and file_sha256(before_path) != recorded_sha:
            warnings.append(f"{before_path} has changed since the run (its sha256 differs from run.json's): "
                            "the 'before' counts are those of the file as it is now")
        before = load_dataset(before_path, on_error=on_error)
        # the input is needed for its counts and bins only: its records go before the output is read, so
        # that one LVIS-sized dataset is in memory at a time, not two
        bix, bins = before.index, dataset_bins(before, rare_max=rare_max, common_max=common_max)
        stored, skipped = uses_stored_frequency(before, rare_max, common_max), sum(before.skipped.values())
        del before
    if skipped:
        warnings.append(f"{before_path}: skipped {skipped} invalid record(s)")
    after = load_dataset(out_dir / "annotations.json", on_error=on_error)
    if after.skipped:
        warnings.append(f"{out_dir / 'annotations.json'}: skipped {sum(after.skipped.values())} invalid record(s)")
    pasted_at = pasted_positions(after.annotations)
    doc = _class_document(bix, bins, after, run, pasted_at)
    if stored:
        bin_rule = "stored LVIS frequency"
    else:
        bin_rule = (f"image counts: r ≤ {RARE_MAX if rare_max is None else rare_max} < c ≤ "
                    f"{COMMON_MAX if common_max is None else common_max} < f")
    s = doc["summary"]
    title = f"ltaug report: {out_dir.resolve().name}"
    rare_b, rare_a = s["before"]["bin_instance_share"]["r"], s["after"]["bin_instance_share"]["r"]
    cards = [(f"{s['images']['before']:,} → {s['images']['after']:,}", "images"),
             (f"{s['before']['instances']:,} → {s['after']['instances']:,}", "instances"),
             (f"{_pct(rare_b)} → {_pct(rare_a)}", "share of rare-class instances"),
             (f"{s['before']['instances_per_class']['min']:,} → {s['after']['instances_per_class']['min']:,}",
              "fewest instances of a class (non-empty)"),
             (f"{sum(c['pasted'] for c in doc['classes']):,}", "pasted objects in the output"),
             (f"{sum(c['removed'] for c in doc['classes']):,}", "existing objects removed by occlusion")]
    page = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>",
            f"<h1>{_e(title)}</h1>",
            f'<p class="sub">{_e(out_dir)} · {len(run["steps_run"])} step(s): '
            f'{_e(" → ".join(r.get("op", "?") for r in run["steps_run"]))}</p>',
            '<div class="cards">' + "".join(f"<div class=card><b>{_e(v)}</b><span>{_e(k)}</span></div>"
                                            for v, k in cards) + "</div>",
            _run_section(run, out_dir, before_path, warnings),
            _limits_section(run),
            _shift_section(doc, bin_rule, _histogram_png(doc, _plot_title(doc))),
            _class_section(doc),
            _sample_section(out_dir, after, samples, seed, thumb_width,
                            {c["id"] for c in doc["classes"] if c["bin"] == "r"}, pasted_at),
            _blend_section(after, before_path, run, thumb_width) if samples > 0 else "",
            "</main></body></html>"]
    return "\n".join(page), doc, warnings


def write_report(out_dir: str | os.PathLike, path: str | os.PathLike | None = None, *,
                 input_annotations: str | os.PathLike | None = None, samples: int = SAMPLES, seed: int = 0,
                 thumb_width: int = THUMB_WIDTH, rare_max: int | None = None, common_max: int | None = None,
                 on_error: str = "raise") -> tuple[Path, dict, list[str]]:
    """Build the report of ``out_dir`` (:func:`build_report`, same keywords) and write it atomically to
    ``path`` (default OUT/report.html); returns ``(path, class document, warnings)``."""
    path = Path(out_dir) / REPORT_NAME if path is None else Path(path)
    page, doc, warnings = build_report(out_dir, input_annotations=input_annotations, samples=samples, seed=seed,
                                       thumb_width=thumb_width, rare_max=rare_max, common_max=common_max,
                                       on_error=on_error)
    write_bytes_atomic(path, page.encode("utf-8"))
    return path, doc, warnings


__all__ = ["REPORT_NAME", "build_report", "class_table", "draw_sample", "pasted_flags", "pick_samples",
           "read_run", "write_report"]
