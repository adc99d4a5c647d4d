"""`ltaug report`: the page of a real engine run holds the right numbers, its images decode, it is one file."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest
from conftest import DEMO, ROOT

from ltaug import load_dataset
from ltaug.cli.main import main
from ltaug.ops import Mosaic, Paste
from ltaug.report.html import build_report, pasted_flags, pick_samples
from ltaug.run.engine import run_pipeline
from ltaug.stats.summary import dataset_stats

IMAGES = DEMO / "images" / "train"
# large objects, any overlap, objects kept only when 90% visible: pasting removes existing objects
STEPS = [Paste(objects=6, scale=(1.0, 2.0), max_overlap=1.0, min_visible=0.9, seed=1),
         Mosaic(count=4, seed=2)]
BINS = ("--rare-max", "2", "--common-max", "5")


@pytest.fixture(scope="module")
def out(tmp_path_factory, demo_train_path):
    path = tmp_path_factory.mktemp("report") / "out"
    run_pipeline(load_dataset(demo_train_path), IMAGES, path, STEPS, workers=1, progress=False)
    return path


@pytest.fixture(scope="module")
def page(out):
    assert main(["report", str(out), *BINS]) == 0
    return (out / "report.html").read_text(encoding="utf-8")


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self._cell = [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def table_with(page: str, header: str) -> list[dict]:
    for t in Tables(page).tables:
        if header in t[0]:
            return [dict(zip(t[0], row)) for row in t[1:]]
    raise AssertionError(f"no table with a {header!r} column")


def test_per_class_table_has_the_counts_of_the_files(out, page, demo_train_path):
    before = json.loads(demo_train_path.read_text())
    after = json.loads((out / "annotations.json").read_text())
    run = json.loads((out / "run.json").read_text())
    n_before = Counter(a["category_id"] for a in before["annotations"])
    n_after = Counter(a["category_id"] for a in after["annotations"])
    pasted = Counter(a["category_id"] for a in after["annotations"] if (a.get("ltaug") or {}).get("op") == "paste")
    paste, mosaic = run["steps_run"]
    removed = Counter({int(k): v for k, v in paste["removed_per_class"].items()})
    dropped = Counter({int(k): v for k, v in mosaic["removed_per_class"].items()})
    # the run did what the test needs: occlusion removed objects, later pastes hid some pasted ones
    assert sum(removed.values()) > 0 and sum(paste["pasted_removed_per_class"].values()) > 0
    assert sum(dropped.values()) > 0
    # the output holds the pasted objects run.json counts (those hidden by later pastes are not among them)
    assert pasted == Counter({int(k): v for k, v in paste["added_per_class"].items()})
    bins = {c["id"]: c["bin"] for c in dataset_stats(load_dataset(demo_train_path), rare_max=2, common_max=5)["classes"]}

    rows = table_with(page, "removed by occlusion")
    assert len(rows) == len(before["categories"])
    for row in rows:
        cid = int(row["id"])
        assert row["bin"] == bins[cid]
        assert int(row["before"]) == n_before[cid] and int(row["after"]) == n_after[cid]
        assert int(row["pasted"]) == pasted[cid]
        assert int(row["removed by occlusion"]) == removed[cid]
        assert int(row["cut remnants dropped"]) == dropped[cid]
        assert row["factor"] == (f"{n_after[cid] / n_before[cid]:.2f}×" if n_before[cid] else "–")
    assert [int(r["before"]) for r in rows] == sorted(int(r["before"]) for r in rows)  # rarest first

    shares = table_with(page, "change")
    total_b, total_a = sum(n_before.values()), sum(n_after.values())
    for row in shares:
        b = row["bin"][0]
        assert int(row["instances before"]) == sum(n for c, n in n_before.items() if bins[c] == b)
        assert int(row["instances after"]) == sum(n for c, n in n_after.items() if bins[c] == b)
        assert row["share before"] == f"{100 * int(row['instances before']) / total_b:.1f}%"
        assert row["share after"] == f"{100 * int(row['instances after']) / total_a:.1f}%"
    assert sum(int(r["instances after"]) for r in shares) == total_a


def test_page_is_one_file_and_its_images_decode(page):
    refs = re.findall(r"""(?:src|href|srcset|action|poster)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    assert refs and all(r.startswith("data:") for r in refs)
    assert not re.search(r"<(link|script|iframe|object|embed)\b|@import|url\(", page, flags=re.I)
    uris = re.findall(r'src="data:(image/(?:png|jpeg));base64,([A-Za-z0-9+/=]+)"', page)
    assert [m for m, _ in uris].count("image/png") == 1      # the class histogram
    jpegs = [d for m, d in uris if m == "image/jpeg"]
    assert len(jpegs) == 12                                   # default --samples
    for _, data in uris:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.size
    assert max(cv2.imdecode(np.frombuffer(base64.b64decode(d), np.uint8), cv2.IMREAD_COLOR).shape[1]
               for d in jpegs) <= 480
    for text in ("r/c/f shift", "Run", "paste", "mosaic", "pasted object"):
        assert text in page


def test_samples_mix_ops_and_mark_pasted_objects(out):
    ds = load_dataset(out / "annotations.json")
    picked = pick_samples(ds.images, 4, seed=0)
    assert {im["ltaug"]["op"] for im in picked} == {"paste", "mosaic"}
    assert pick_samples(ds.images, 4, seed=0) == picked
    flags = pasted_flags(ds.annotations)
    by_id = {a["id"]: a for a in ds.annotations}
    carried = [a for a in ds.annotations if a.get("ltaug", {}).get("op") == "mosaic" and flags[a["id"]]]
    assert carried, "some mosaic tile shows a pasted object"
    assert all(by_id[a["ltaug"]["source_annotation_id"]]["ltaug"]["op"] == "paste" for a in carried)
    assert not any(flags[a["id"]] for a in ds.annotations if "ltaug" not in a)


def test_options_and_same_page_for_same_seed(out, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", "--help"])
    assert exc.value.code == 0 and "examples:" in capsys.readouterr().out
    a, doc, _ = build_report(out, samples=2, seed=3, thumb_width=200, rare_max=2, common_max=5)
    b, _, _ = build_report(out, samples=2, seed=3, thumb_width=200, rare_max=2, common_max=5)
    assert a == b and a.count("data:image/jpeg") == 2
    none, _, _ = build_report(out, samples=0)
    assert "data:image/jpeg" not in none and "data:image/png" in none
    target = tmp_path / "sub" / "r.html"
    assert main(["report", str(out), "-o", str(target), "--samples", "1"]) == 0
    assert target.is_file() and not list(target.parent.glob("*.tmp"))


def _ltaug(*args):
    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, capture_output=True, text=True)


def test_errors_are_one_line(out, tmp_path, demo_train_path):
    file = tmp_path / "f.json"
    file.write_text("{}")
    (tmp_path / "empty").mkdir()
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    (moved / "report.html").unlink(missing_ok=True)
    run = json.loads((moved / "run.json").read_text())
    run["input"]["annotations"] = str(tmp_path / "gone.json")
    (moved / "run.json").write_text(json.dumps(run))
    for args, expect in (((tmp_path / "empty",), "not an ltaug output folder"),
                         ((tmp_path / "nothing",), "folder not found"),
                         ((file,), "not a folder"),
                         ((moved,), "--input")):
        r = _ltaug("report", *args)
        assert r.returncode == 1 and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr
    assert not (moved / "report.html").exists()
    r = _ltaug("report", moved, "--input", demo_train_path, "--samples", "0", *BINS)
    assert r.returncode == 0, r.stderr
    assert (moved / "report.html").is_file()
    r = _ltaug("report", out, "-o", out / "run.json")
    assert r.returncode == 2 and "refusing" in r.stderr
