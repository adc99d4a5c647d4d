"""Per-class limits, asked vs got, over a whole pipeline: what ``run.json``'s ``limits`` holds, the
command line prints (:func:`limit_lines`) and the report shows.

A step may set per-class limits (an operation with ``class_limits(counts)``: paste's budget
target, min_instances / exponent / max_factor). Later steps copy objects whatever the target
(mosaic, mixup), and a step counts its own target from its own input, so a limit may not hold
over the pipeline: :func:`class_limits` lists each class where it does not, with asked, got,
the change each step made and why; :func:`log_shortfalls` warns once per step.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ltaug.io.dataset import Dataset
from ltaug.ops.base import Operation, PixelOperation

_log = logging.getLogger(__name__)

LIMITS_BASIS = ("a step's per-class limits (its target: min_instances, exponent, max_factor) evaluated on each class's "
                "instances in the pipeline's input; got: its instances in the output")


def class_limits(dataset: Dataset, final: Dataset, steps: list[Operation], reports: list) -> dict:
    """Whether each per-class limit a step sets (an operation with ``class_limits(counts)``:
    paste's budget target) holds over the whole pipeline: the limits are evaluated on the
    pipeline's input counts n_c (what "max_factor K: at most K n_c" means to the user) and
    compared with the output's counts. Later steps (mosaic, mixup) copy objects whatever the
    target, and a step's own target counts from its own input (after a resample, say), so a
    limit may not hold: each class where it does not is listed with asked, got and why.

    Returns ``{"basis", "checked": [per step: rule, classes, held, over, short], "not_held":
    [per class: step, category_id, name, limit, status ("over" | "short"), asked, got,
    before, changes (per step), why]}``.
    """
    bix, fix = dataset.index, final.index
    ids = bix.category_ids.tolist()
    before = bix.instance_counts.astype(np.int64)
    final_of = dict(zip(fix.category_ids.tolist(), fix.instance_counts.tolist()))
    got = np.array([int(final_of.get(c, 0)) for c in ids], np.int64)
    changes = [_class_changes(step, r) for step, r in zip(steps, reports)]
    out: dict[str, Any] = {"basis": LIMITS_BASIS, "checked": [], "not_held": []}
    for k, step in enumerate(steps):
        limits_of = getattr(step, "class_limits", None)
        if not callable(limits_of):
            continue
        lim = limits_of(before)
        if lim is None:
            continue
        has = before > 0
        limited = getattr(step, "limited_classes", None)  # a step pasting some classes only limits those
        only = limited(ids, bix.category_names) if callable(limited) else None
        if only is not None:
            has &= only
        over = has & (got > lim["high"])
        short = has & ~over & (got < lim["low"])
        out["checked"].append({"step": k, "op": step.name, "rule": lim["rule"], "classes": int(has.sum()),
                               "held": int((has & ~over & ~short).sum()), "over": int(over.sum()),
                               "short": int(short.sum())})
        at_step = {c: int(n) for c, n in zip(ids, before)}  # each class's count at step k's input
        for j in range(k):
            for c, (added, removed) in changes[j].items():
                at_step[c] = at_step.get(c, 0) + added - removed
        own = limits_of(np.array([at_step[c] for c in ids], np.float64))
        for i in np.flatnonzero(over | short).tolist():
            out["not_held"].append(_not_held(k, step, i, ids[i], bix.category_names[i], int(before[i]), int(got[i]),
                                             bool(over[i]), lim, own, at_step[ids[i]], steps, reports, changes))
    out["not_held"].sort(key=lambda e: (e["step"], e["status"] != "over", -abs(e["got"] - e["asked"]),
                                        e["category_id"]))
    return out


def _class_changes(step: Operation, r: dict) -> dict[int, tuple[int, int]]:
    """Instances each class gained and lost in one step, ``(added, removed)``: a report's
    ``change_per_class`` (resample: the net change), else what a pixel step added and, when it
    replaces images, removed (paste: existing objects removed as occluded; mosaic / mixup drop
    remnants they never add). Classes that did not change are left out."""
    if "change_per_class" in r:
        return {int(c): (max(int(d), 0), max(-int(d), 0)) for c, d in r["change_per_class"].items() if int(d)}
    out = {int(c): (int(n), 0) for c, n in (r.get("added_per_class") or {}).items()}
    if isinstance(step, PixelOperation) and step.replaces_images:
        for c, n in (r.get("removed_per_class") or {}).items():
            out[int(c)] = (out.get(int(c), (0, 0))[0], int(n))
    return {c: v for c, v in out.items() if v != (0, 0)}


def _not_held(k: int, step: Operation, i: int, cid: int, name: str, before: int, got: int, over: bool, lim: dict,
              own: dict, at_step: int, steps: list[Operation], reports: list, changes: list) -> dict:
    """The record of one class whose limit (set by step ``k``) does not hold: asked, got and why."""
    steps_changed = []
    for j in range(len(steps)):
        if cid in changes[j]:
            added, removed = changes[j][cid]
            record = {"step": j, "op": steps[j].name, "change": added - removed}
            if "change_per_class" not in reports[j]:  # a pixel step: what it added and removed, apart
                record.update(added=added, removed=removed)
            steps_changed.append(record)
    unexplained = got - before - sum(c["change"] for c in steps_changed)
    if unexplained:  # a step that recorded no per-class counts (a run.json of an older version)
        steps_changed.append({"step": None, "op": "unrecorded", "change": unexplained})
    path = ", ".join(f"{c['op']} {c['change']:+d}"
                     + (f" ({c['added']} added, {c['removed']} existing removed)" if c.get("removed") and c.get("added")
                        else f" ({c['removed']} existing removed)" if c.get("removed") else "")
                     for c in steps_changed) or "no step changed it"
    why = [path]
    missing: dict[str, int] = {}
    if over:
        asked = int(lim["high"][i])
        rule = f"at most {asked} (max_factor {lim['max_factor']:g} x {before})"
        if at_step != before:
            why.append(f"{step.name} (step {k}) counts its target from its own input ({at_step} instances: "
                       f"at most {int(own['high'][i])})")
        later = list(dict.fromkeys(c["op"] for c in steps_changed
                                   if c["step"] is not None and c["step"] > k and c["change"] > 0))
        if later:
            why.append(f"{', '.join(later)} add{'s' if len(later) == 1 else ''} copies of objects whatever the target")
    else:
        asked = int(lim["low"][i])
        rule = f"at least {asked} ({lim['rule']}" + (f"; capped at max_factor {lim['max_factor']:g} x {before}"
                                                      if lim["low"][i] < lim["requested"][i] else "") + ")"
        for j, r in enumerate(reports):
            for e in r.get("shortfalls") or ():
                if e["category_id"] == cid:
                    why.append(f"{steps[j].name} (step {j}) asked {e['asked']}, got {e['got']}: {e['why']}")
                    for key, n in e["missing"].items():
                        missing[key] = missing.get(key, 0) + n
        if at_step >= int(own["own"][i]) and not missing:
            why.append(f"{step.name} (step {k}) asked for none: {at_step} instances at its input, its target "
                       f"{int(own['own'][i])}")
    entry = {"step": k, "op": step.name, "category_id": cid, "name": name,
             "limit": "max_factor" if over else "minimum", "status": "over" if over else "short",
             "asked": asked, "got": got, "before": before, "rule": rule, "changes": steps_changed,
             "why": "; ".join(why)}
    if missing:
        entry["missing"] = missing  # objects the steps asked for and did not get, by reason (their shortfalls)
    return entry


MISSING_SHORT = {"no_bank_object": "none in the bank", "excluded": "flagged in the bank", "too_few_images":
                 "too few images", "too_small": "too small", "no_room": "no room", "hidden": "hidden",
                 "skipped": "unreadable image"}  # a paste shortfall's reasons, in a word or two


def limit_lines(record: dict, *, most: int = 12) -> list[str]:
    """The command line's lines on ``record["limits"]`` (run.json): per step that sets limits, one
    line when all hold, else a header and one line per class over or short (or, when more than
    ``most``, a compact summary per status naming the classes)."""
    limits = record.get("limits") or {}
    lines = []
    for check in limits.get("checked", ()):
        k = check["step"]
        head = f"limits of step {k} ({check['op']}: {check['rule']}; on the input's counts)"
        if not check["over"] and not check["short"]:
            lines.append(f"{head}: held for all {check['classes']} classes")
            continue
        lines.append(f"{head}: held for {check['held']} of {check['classes']} classes; "
                     f"{check['over']} over, {check['short']} short")
        mine = [e for e in limits.get("not_held", ()) if e["step"] == k]
        if len(mine) <= most:
            lines += [f"  {e['status']}: {e['name']} (id {e['category_id']}) {e['before']} -> {e['got']}, "
                      f"asked {e['rule']}: {e['why']}" for e in mine]
            continue
        for status in ("over", "short"):
            group = [e for e in mine if e["status"] == status]
            if not group:
                continue
            shown = ", ".join(f"{e['name']} {e['before']} -> {e['got']} ({'max' if status == 'over' else 'min'} "
                              f"{e['asked']}" + ("; not pasted: " + ", ".join(
                                  f"{n} {MISSING_SHORT.get(key, key)}" for key, n in e["missing"].items())
                                  if e.get("missing") else "") + ")"
                              for e in group[:8])
            steps: dict[tuple, int] = {}  # (step, op): summed change, in pipeline order
            for e in group:
                for c in e["changes"]:
                    key = (-1 if c["step"] is None else c["step"], c["op"])
                    steps[key] = steps.get(key, 0) + c["change"]
            total = [f"{op} {d:+d}" for (_, op), d in sorted(steps.items()) if d]
            lines.append(f"  {status} ({len(group)} classes): {shown}"
                         + (f", ... {len(group) - 8} more" if len(group) > 8 else "")
                         + ("; their changes: " + ", ".join(total) if total else ""))
    return lines


def log_shortfalls(summary: dict) -> None:
    """One warning per step whose per-class asks fell short, and per step whose limits do not hold."""
    for k, r in enumerate(summary["steps_run"]):
        short = r.get("shortfalls") or []
        if short:
            _log.warning("%s (step %d): %d classes got fewer objects than asked (%d objects missing); per class "
                         "in run.json steps_run[%d].shortfalls", r["op"], k, len(short),
                         sum(e["asked"] - e["got"] for e in short), k)
    for check in summary["limits"]["checked"]:
        if check["over"] or check["short"]:
            _log.warning("limits of step %d (%s: %s) not held for %d of %d classes (%d over, %d short); per class "
                         "in run.json limits", check["step"], check["op"], check["rule"],
                         check["over"] + check["short"], check["classes"], check["over"], check["short"])
