"""The report of ``ltaug compare``: tables (markdown, CSV) with seed spread and bootstrap intervals, two plots."""
from __future__ import annotations

import csv
import io

import numpy as np

from ltaug import load_dataset
from ltaug.io.jsonio import read_json, write_bytes_atomic, write_json_atomic
from ltaug.stats.plotting import BIN_COLORS, new_figure, save_figure

from .compare_config import Compare, run_dir
from .host import host_label, run_hosts

METRICS = ("AP", "AP50", "APr", "APc", "APf")
BIN_METRICS = ("APr", "APc", "APf")


def _results(cmp: Compare) -> dict:
    """cell -> {seed: result.json} for the finished runs."""
    out = {}
    for cell in cmp.cells:
        for seed in cmp.seeds:
            path = run_dir(cmp, cell, seed) / "result.json"
            if path.is_file():
                out.setdefault(cell, {})[seed] = read_json(path)
    return out


def _hosts(cmp: Compare, results: dict) -> tuple[dict, dict]:
    """Letters for the hosts the finished runs trained on, by numerics probe, in order of first
    appearance: ({letter: host record}, {cell: [each seed's letters]}); a run resumed on
    another host reads ``A+B``, one that recorded no host ``?``."""
    letters: dict[str, str] = {}
    records: dict[str, dict] = {}
    per_cell = {}
    for cell, runs in results.items():
        marks = []
        for seed in sorted(runs):
            hosts = run_hosts(run_dir(cmp, cell, seed))
            for h in hosts:
                if h["probe"] not in letters:
                    letters[h["probe"]] = chr(ord("A") + len(letters))
                    records[letters[h["probe"]]] = h
            marks.append("+".join(letters[h["probe"]] for h in hosts) or "?")
        per_cell[cell] = marks
    return records, per_cell


def _host_paragraph(records: dict, per_cell: dict) -> str:
    """One line naming the one host, or a warning listing the hosts when the runs come from several."""
    marks = {m for ms in per_cell.values() for m in ms}
    if marks == {"?"}:
        return ("Host: not recorded (runs made before `trainer/host.py`). Trainer numerics differ by CPU: these "
                "runs compare with each other only if they trained on one machine.")
    if len(records) == 1 and marks == {"A"}:
        return (f"Host: every run trained on {host_label(records['A'])}, torch {records['A']['torch']} "
                f"(`trainer/host.py`).")
    names = [f"{k} = {host_label(r)}, torch {r['torch']}" for k, r in records.items()]
    if "?" in marks:
        names.append("? = not recorded")
    return (f"**The runs come from more than one host** ({'; '.join(names)}). Trainer numerics differ by CPU: "
            f"compare cells only where their runs (the hosts column, one letter per seed) share a host.")


def _mean_std(values: list) -> tuple:
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None  # no spread from one seed


def _describe(cmp: Compare, cell: str) -> str:
    c = {**cmp.training, **cmp.cells[cell]}
    parts = []
    if "data" in cmp.cells[cell]:
        parts.append(" + ".join(f"{op}({', '.join(f'{k}={v}' for k, v in (params or {}).items())})"
                                for step in cmp.cells[cell]["data"] for op, params in step.items()))
    if c.get("sampler", "plain") != "plain":
        parts.append(f"sampler {c['sampler']}" + (f" t={c.get('rfs_threshold')}" if c["sampler"] == "rfs" else ""))
    if "epochs" in cmp.cells[cell]:
        parts.append(f"{c['epochs']} epochs")
    parts.append(f"loss {c.get('loss', 'ce')}")
    if c.get("classifier", "linear") != "linear":
        parts.append(f"classifier {c['classifier']}" + (f" tau {c['classifier_tau']}" if c.get("classifier_tau")
                                                        is not None else ""))
    if "from" in cmp.cells[cell]:
        parts.append(f"from {cmp.cells[cell]['from']}" + (f", tau {cmp.cells[cell]['tau']}" if "tau" in cmp.cells[cell]
                                                           else f", {c.get('stage2')}"))
    return "; ".join(parts)


def write_report(cmp: Compare) -> dict:
    """Write results.json / .md / .csv and the plots; returns the summary."""
    from .bootstrap import paired_bootstrap
    from .inference import bins_of

    results = _results(cmp)
    train = load_dataset(cmp.train)
    bins, how = bins_of(train, rare_max=cmp.bins.get("rare_max"), common_max=cmp.bins.get("common_max"))
    sizes = [sum(b == k for b in bins.values()) for k in "rcf"]
    how = f"{how} (r {sizes[0]}, c {sizes[1]}, f {sizes[2]} classes)"
    iou_types = [t for t in ("bbox", "segm") if any(t in r["eval"] for runs in results.values() for r in runs.values())]
    hosts, run_marks = _hosts(cmp, results)
    rows = {}
    for cell, runs in results.items():
        row = {"cell": cell, "setting": _describe(cmp, cell), "seeds": sorted(runs), "hosts": run_marks[cell],
               "train_minutes": _mean_std([r["train_seconds"] / 60 for r in runs.values()])}
        for t in iou_types:
            for m in METRICS:
                row[f"{t} {m}"] = _mean_std([r["eval"].get(t, {}).get(m) for r in runs.values()])
        rows[cell] = row
    boot = {}
    if cmp.baseline in results and len(results) > 1:
        val = load_dataset(cmp.val)
        runs = {cell: [read_json(run_dir(cmp, cell, s) / "detections.json") for s in sorted(seeds)]
                for cell, seeds in results.items()}
        boot = paired_bootstrap(val, runs, cmp.baseline, bins={c: bins[c] for c in val.index.category_ids.tolist()},
                                samples=int(cmp.bootstrap.get("samples", 200)), seed=int(cmp.bootstrap.get("seed", 0)))
    summary = {"bins": how, "hosts": hosts, "cells": rows, "bootstrap_bbox": boot, "baseline": cmp.baseline,
               "complete": all(len(results.get(c, {})) == len(cmp.seeds) for c in cmp.cells)}
    write_json_atomic(cmp.out / "results.json", summary, indent=True)
    write_bytes_atomic(cmp.out / "results.md", _markdown(cmp, rows, boot, iou_types, how, hosts).encode())
    write_bytes_atomic(cmp.out / "results.csv", _csv(rows, boot, iou_types).encode())
    if rows:
        plot_bins(rows, cmp.out / "ap_by_bin.png")
    if cmp.baseline in results and len(results) > 1:
        plot_class_deltas(results, cmp.baseline, train, bins, cmp.out / "per_class_delta.png")
    return summary


def _pm(ms) -> str:
    m, s = ms
    if m is None:
        return "-"
    return f"{100 * m:.1f}" if s is None else f"{100 * m:.1f} ± {100 * s:.1f}"


def _interval(b: dict | None) -> str:
    if not b or b["diff"] is None:
        return "-"
    mark = " *" if b["beyond_noise"] else ""
    return f"{100 * b['diff']:+.1f} [{100 * b['low']:+.1f}, {100 * b['high']:+.1f}]{mark}"


def _markdown(cmp: Compare, rows: dict, boot: dict, iou_types: list, how: str, hosts: dict) -> str:
    out = [(f"Bins: {how}. AP in points (x100), mean ± std over seeds {cmp.seeds}. Δ: difference of the "
            f"seed-mean to `{cmp.baseline}`, [95% paired-bootstrap interval over val images]; * where the "
            f"interval excludes 0."), ""]
    marks = {cell: r["hosts"] for cell, r in rows.items()}
    if rows:
        out += [_host_paragraph(hosts, marks), ""]
    mixed = len({m for ms in marks.values() for m in ms}) > 1
    host_head, host_rule = (" hosts |", "---|") if mixed else ("", "")

    def host_cell(cell):
        return f" {' '.join(marks.get(cell, []))} |" if mixed else ""

    for t in iou_types:
        out += [f"### {t}", "", "| cell | setting | seeds | " + " | ".join(METRICS) + " | min/run |" + host_head,
                "|---|---|---|" + "---|" * (len(METRICS) + 1) + host_rule]
        for r in rows.values():
            out.append(f"| {r['cell']} | {r['setting']} | {len(r['seeds'])} | "
                       + " | ".join(_pm(r[f"{t} {m}"]) for m in METRICS)
                       + f" | {r['train_minutes'][0]:.1f} |" + host_cell(r["cell"]))
        out.append("")
    if boot:
        out += ["### bbox: difference to the baseline", "", "| cell | ΔAP | ΔAPr | ΔAPc | ΔAPf |" + host_head,
                "|---|---|---|---|---|" + host_rule]
        for cell, b in boot.items():
            out.append(f"| {cell} | " + " | ".join(_interval(b.get(m)) for m in ("AP", "APr", "APc", "APf")) + " |"
                       + host_cell(cell))
        out.append("")
    return "\n".join(out)


def _csv(rows: dict, boot: dict, iou_types: list) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    head = ["cell", "setting", "seeds", "hosts", "train_minutes"]
    for t in iou_types:
        for m in METRICS:
            head += [f"{t}_{m}_mean", f"{t}_{m}_std"]
    for m in ("AP", "APr", "APc", "APf"):
        head += [f"bbox_d{m}", f"bbox_d{m}_low", f"bbox_d{m}_high"]
    w.writerow(head)
    for cell, r in rows.items():
        line = [cell, r["setting"], len(r["seeds"]), " ".join(r["hosts"]), r["train_minutes"][0]]
        for t in iou_types:
            for m in METRICS:
                line += list(r[f"{t} {m}"])
        for m in ("AP", "APr", "APc", "APf"):
            b = boot.get(cell, {}).get(m) or {}
            line += [b.get("diff"), b.get("low"), b.get("high")]
        w.writerow(["" if v is None else v for v in line])
    return buf.getvalue()


def plot_bins(rows: dict, path) -> None:
    """Grouped bars: bbox APr / APc / APf per cell (seed mean), error bars = seed std."""
    cells = list(rows)
    fig = new_figure(path, (max(6.0, 0.9 * len(cells) + 2), 4.2))
    ax = fig.add_subplot()
    x = np.arange(len(cells))
    for k, m in enumerate(BIN_METRICS):
        means = [100 * (rows[c][f"bbox {m}"][0] or 0) for c in cells]
        stds = [100 * (rows[c][f"bbox {m}"][1] or 0) for c in cells]
        ax.bar(x + (k - 1) * 0.27, means, 0.27, yerr=stds, capsize=2, color=BIN_COLORS[m[-1]], label=m)
    ax.set_xticks(x, cells, rotation=30, ha="right")
    ax.set_ylabel("bbox AP (points)")
    ax.set_title("AP by frequency bin (mean ± std over seeds)")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def plot_class_deltas(results: dict, baseline: str, train, bins: dict, path) -> None:
    """Per-class bbox AP minus the baseline's (seed means), classes sorted by training instances."""
    def class_ap(runs):
        per = {}
        for r in runs.values():
            for cid, v in r["eval"]["bbox"]["per_class"].items():
                if v.get("ap") is not None:
                    per.setdefault(int(cid), []).append(v["ap"])
        return {c: float(np.mean(v)) for c, v in per.items()}

    base = class_ap(results[baseline])
    others = [c for c in results if c != baseline]
    counts = dict(zip(train.index.category_ids.tolist(), train.index.instance_counts.tolist()))
    classes = sorted(base, key=lambda c: counts.get(c, 0))
    fig = new_figure(path, (10, 1.6 + 1.7 * len(others)))
    axes = fig.subplots(len(others), 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(len(classes))
    for ax, cell in zip(axes, others):
        ap = class_ap(results[cell])
        delta = [100 * (ap.get(c, 0.0) - base[c]) for c in classes]
        ax.bar(x, delta, color=[BIN_COLORS[bins.get(c, "f")] for c in classes])
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel(f"{cell}\nΔAP", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title(f"per-class bbox AP minus {baseline} (points; classes by training instances, rarest left; "
                      f"colour = r/c/f)", fontsize=9)
    names = dict(zip(train.index.category_ids.tolist(), train.index.category_names))
    axes[-1].set_xticks(x, [names[c] for c in classes], rotation=90, fontsize=6)
    save_figure(fig, path)
