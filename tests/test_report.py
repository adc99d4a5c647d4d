"""`ltaug report`: the page of a real engine run holds the right numbers, its images decode, it is one file."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from html import unescape as html_unescape
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


def run_and_report(folder, annotations, steps, *args) -> tuple:
    """An engine run of ``steps`` over the demo images into ``folder``/out, and its report page."""
    path = folder / "out"
    run_pipeline(load_dataset(annotations), IMAGES, path, steps, workers=1, progress=False)
    assert main(["report", str(path), *args]) == 0
    return path, (path / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def _demo_run(tmp_path_factory, demo_train_path):
    return run_and_report(tmp_path_factory.mktemp("report"), demo_train_path, STEPS, *BINS)


@pytest.fixture(scope="module")
def out(_demo_run):
    return _demo_run[0]


@pytest.fixture(scope="module")
def page(_demo_run):
    return _demo_run[1]


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


def num(cell: str) -> int:
    """A count as the page writes it (thousands separated: ``1,270,141``)."""
    return int(cell.replace(",", ""))


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
        cid = num(row["id"])
        assert row["bin"] == bins[cid]
        assert num(row["before"]) == n_before[cid] and num(row["after"]) == n_after[cid]
        assert num(row["pasted"]) == pasted[cid]
        assert num(row["removed by occlusion"]) == removed[cid]
        assert num(row["cut remnants dropped"]) == dropped[cid]
        assert row["factor"] == (f"{n_after[cid] / n_before[cid]:.2f}×" if n_before[cid] else "–")
    assert [num(r["before"]) for r in rows] == sorted(num(r["before"]) for r in rows)  # rarest first

    shares = table_with(page, "change")
    total_b, total_a = sum(n_before.values()), sum(n_after.values())
    for row in shares:
        b = row["bin"][0]
        assert num(row["instances before"]) == sum(n for c, n in n_before.items() if bins[c] == b)
        assert num(row["instances after"]) == sum(n for c, n in n_after.items() if bins[c] == b)
        assert row["share before"] == f"{100 * num(row['instances before']) / total_b:.1f}%"
        assert row["share after"] == f"{100 * num(row['instances after']) / total_a:.1f}%"
    assert sum(num(r["instances after"]) for r in shares) == total_a


def test_page_is_one_file_and_its_images_decode(page):
    refs = re.findall(r"""(?:src|href|srcset|action|poster)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    assert refs and all(r.startswith("data:") for r in refs)
    assert not re.search(r"<(link|iframe|object|embed)\b|<script[^>]*\bsrc\b|@import|url\(", page, flags=re.I)
    assert page.count("<script>") == 1  # the per-class table's search and sort, inline (reports are opened offline)
    uris = re.findall(r'src="data:(image/(?:png|jpeg));base64,([A-Za-z0-9+/=]+)"', page)
    assert [m for m, _ in uris].count("image/png") == 1      # the class histogram
    jpegs = [d for m, d in uris if m == "image/jpeg"]
    grid = re.findall(r'alt="blending modes" src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(grid) == 1                                     # the blending modes on one pasted image
    jpegs.remove(grid[0])
    assert len(jpegs) == 12                                   # default --samples
    for _, data in uris:
        img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.size
    assert max(cv2.imdecode(np.frombuffer(base64.b64decode(d), np.uint8), cv2.IMREAD_COLOR).shape[1]
               for d in jpegs) <= 480
    for text in ("r/c/f shift", "Run", "paste", "mosaic", "pasted object"):
        assert text in page


def test_the_blend_grid_pastes_one_image_s_objects_in_each_mode(out, page, monkeypatch, demo_train_path):
    from ltaug.report import blends
    from ltaug.report.blends import pasted_example

    data, = re.findall(r'alt="blending modes" src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    grid = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    after = load_dataset(out / "annotations.json")
    im, objects = pasted_example(after)
    assert f"Image id {im['id']} " in page and f"its {len(objects)} pasted object(s)" in page
    h, w = grid.shape[0] // 2, grid.shape[1] // 2  # 2 x 2 tiles: gaussian, poisson / poisson_mixed, gaussian+lab
    tiles = [grid[r * h + 22:(r + 1) * h, c * w:(c + 1) * w].astype(int) for r in (0, 1) for c in (0, 1)]
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.abs(tiles[a] - tiles[b]).mean() > 0.2, (a, b)  # every mode blends differently
    monkeypatch.setattr(blends, "MAX_INPUT_BYTES", 10)
    jpeg, note = blends.blend_grid(after, demo_train_path, IMAGES, 320)
    assert jpeg is None and "over 0 MiB" in note


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
    assert a == b and a.count("data:image/jpeg") == 2 + 1  # the samples and the blending grid
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


# -- LVIS's class count: 1,203 classes -------------------------------------------------------------

LVIS_BANDS = {"f": 405, "c": 461, "r": 337}  # LVIS v1's classes per bin
LVIS_STEPS = [Paste(objects=3, weighting="inverse", seed=1), Mosaic(count=4, seed=2)]


@pytest.fixture(scope="module")
def lvis_input(tmp_path_factory, demo_train_path):
    """The demo set (real photos and masks) relabelled over 1,203 classes with LVIS's stored
    bins (405 f, 461 c, 337 r): each annotation's class drawn (seeded) from f, c or r with
    probability 0.5 / 0.3 / 0.2, then uniformly in that bin."""
    doc = json.loads(demo_train_path.read_text())
    freq = [b for b, n in LVIS_BANDS.items() for _ in range(n)]
    doc["categories"] = [{"id": k + 1, "name": f"class_{k + 1:04d}", "frequency": b} for k, b in enumerate(freq)]
    rng = np.random.default_rng(0)
    first = np.cumsum([0, *LVIS_BANDS.values()])
    for a in doc["annotations"]:
        band = int(rng.choice(3, p=[0.5, 0.3, 0.2]))
        a["category_id"] = int(rng.integers(first[band], first[band + 1])) + 1
    path = tmp_path_factory.mktemp("lvis-input") / "lvis_1203.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def lvis_run(tmp_path_factory, lvis_input):
    """(output folder, report page) of a paste + mosaic run over the 1,203-class input."""
    return run_and_report(tmp_path_factory.mktemp("report-lvis"), lvis_input, LVIS_STEPS)  # LVIS: stored bins


def _png(page: str) -> np.ndarray:
    (data,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)


def _band_share(img: np.ndarray, css: str) -> float:
    """Share of the image's pixels in the shade of an r/c/f band (the bin colour at alpha 0.13 on white)."""
    rgb = np.array([int(css[k:k + 2], 16) for k in (1, 3, 5)], np.float64)
    bgr = (255 + 0.13 * (rgb - 255))[::-1]
    return float(np.mean(np.abs(img.astype(np.float64) - bgr).max(axis=2) <= 3))


def test_lvis_sized_table_has_every_class_and_search_and_sort(lvis_input, lvis_run):
    lvis_out, lvis_page = lvis_run
    before = json.loads(lvis_input.read_text())
    after = json.loads((lvis_out / "annotations.json").read_text())
    n_before = Counter(a["category_id"] for a in before["annotations"])
    n_after = Counter(a["category_id"] for a in after["annotations"])
    freq = {c["id"]: c["frequency"] for c in before["categories"]}
    rows = table_with(lvis_page, "removed by occlusion")
    assert len(rows) == 1203 and {num(r["id"]) for r in rows} == set(freq)
    for row in rows:
        cid = num(row["id"])
        assert row["bin"] == freq[cid] and row["name"] == f"class_{cid:04d}"
        assert num(row["before"]) == n_before[cid] and num(row["after"]) == n_after[cid]
    assert 'id="classes-q"' in lvis_page and 'id="classes-bin"' in lvis_page
    assert "1,203 of 1,203 classes shown" in lvis_page
    assert '<table id="classes" class="sortable"><thead>' in lvis_page
    script = lvis_page[lvis_page.index("<script>"):lvis_page.index("</script>")]
    for piece in ('addEventListener("input"', 'addEventListener("click"', "aria-sort", "createDocumentFragment"):
        assert piece in script
    rank = {"r": "0", "c": "1", "f": "2"}  # the bin column sorts r < c < f
    assert lvis_page.count("<tr data-bin=r>") == 337 and lvis_page.count(f"<td data-v={rank['r']}>") == 337


def test_lvis_sized_curve_replaces_the_bars(lvis_run, page):
    lvis_page = lvis_run[1]
    from ltaug.stats.plotting import BIN_COLORS

    curve, bars = _png(lvis_page), _png(page)
    for b in "fcr":  # each band shaded over a good part of the plot; the 66-class bar chart has no bands
        assert _band_share(curve, BIN_COLORS[b]) > 0.03, b
        assert _band_share(bars, BIN_COLORS[b]) < 0.001, b
    assert "frequency curves in r/c/f bands" in lvis_page and "frequency curves" not in page


def test_lvis_sized_samples_come_from_rare_classes(lvis_input, lvis_run):
    lvis_out, lvis_page = lvis_run
    rare = {c["id"] for c in json.loads(lvis_input.read_text())["categories"] if c["frequency"] == "r"}
    ds = load_dataset(lvis_out / "annotations.json")
    holds: dict = {}
    for a in ds.annotations:
        if a["category_id"] in rare:
            holds.setdefault(a["image_id"], set()).add(a["category_id"])
    figures = re.findall(r"<figure>.*?</figure>", lvis_page, flags=re.S)
    assert len(figures) == 12
    shown = set()
    for fig in figures:
        image_id = int(re.search(r"· image (\d+) ·", fig).group(1))
        assert holds.get(image_id), f"sample image {image_id} shows no rare class"
        names = re.search(r"<span class=rare>rare: (.*?)</span>", fig).group(1)
        assert {f"class_{c:04d}" for c in holds[image_id]} >= {n.split(" ")[0] for n in names.split(", ")}
        shown |= holds[image_id]
    made = [im for im in ds.images if "step" in (im.get("ltaug") or {})]
    assert len(shown) >= 12 and len([im for im in made if im["id"] in holds]) > 12  # a choice among many
    assert f"{len(shown)} of the 337 rare classes" in lvis_page


def test_pick_samples_rare_first_distinct_and_resample_only():
    def made(i, op):
        return {"id": i, "ltaug": {"op": op, "step": 0 if op == "paste" else 1}}

    images = [made(i, "paste") for i in range(20)] + [made(i, "mosaic") for i in range(20, 30)]
    rare_in = {3: [7], 4: [7], 5: [7, 8], 9: [9], 25: [7]}
    picked = [im["id"] for im in pick_samples(images, 8, seed=0, rare_in=rare_in)]
    assert picked == [im["id"] for im in pick_samples(images, 8, seed=0, rare_in=rare_in)]
    assert len(picked) == len(set(picked)) == 8
    assert picked[1] == 25  # round robin paste, mosaic, ...; the mosaic showing a rare class first
    pastes = [i for i in picked if i < 20]
    assert set(pastes[:4]) == {3, 4, 5, 9}  # images showing a rare class before the others
    assert set().union(*(rare_in[i] for i in pastes[:3])) == {7, 8, 9}  # a new rare class first: 3 cover all
    assert pick_samples(images, 8, seed=1, rare_in=rare_in) != picked  # the seed chooses
    # an output no pixel step made: input images holding a rare class, first copies only
    resampled = [{"id": 1}, {"id": 2, "ltaug": {"repeat": 0, "source_image_id": 2}},
                 {"id": 50, "ltaug": {"repeat": 1, "source_image_id": 2}}, {"id": 3}]
    assert [im["id"] for im in pick_samples(resampled, 5, rare_in={2: [7], 50: [7]})] == [2]
    assert pick_samples(resampled, 5) == []


PROBE = """<script>
(function () {
  var q = document.getElementById("classes-q"), bin = document.getElementById("classes-bin"), out = {};
  function shown() {
    return Array.prototype.filter.call(document.querySelectorAll("#classes tbody tr"), function (r) { return !r.hidden; })
      .map(function (r) { return r.cells[1].textContent; });
  }
  q.value = "class_012"; q.dispatchEvent(new Event("input"));
  out.query = shown(); out.counter = document.getElementById("classes-n").textContent;
  bin.value = "r"; bin.dispatchEvent(new Event("change")); q.value = ""; q.dispatchEvent(new Event("input"));
  out.rare = shown().length; bin.value = ""; bin.dispatchEvent(new Event("change"));
  var heads = Array.prototype.slice.call(document.querySelectorAll("#classes thead th"));
  var col = heads.findIndex(function (h) { return h.textContent === "after"; });
  function column() {
    return Array.prototype.map.call(document.querySelectorAll("#classes tbody tr"),
                                    function (r) { return r.cells[col].textContent; });
  }
  heads[col].click(); out.first = column(); out.aria = heads[col].getAttribute("aria-sort");
  heads[col].click(); out.second = column();
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


@pytest.mark.skipif(not shutil.which("chromium"), reason="no chromium to run the page's script")
def test_lvis_sized_table_filters_and_sorts_in_a_browser(lvis_run, tmp_path):
    lvis_page = lvis_run[1]
    page = tmp_path / "probe.html"
    page.write_text(lvis_page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    got = json.loads(html_unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S).group(1)))
    assert sorted(got["query"]) == [f"class_{k:04d}" for k in range(120, 130)]
    assert got["counter"] == "10 of 1203 classes shown"
    assert got["rare"] == 337
    first, second = ([num(v) for v in got[k]] for k in ("first", "second"))
    assert got["aria"] == "descending" and first == sorted(first, reverse=True) and len(first) == 1203
    assert second == sorted(second)


def test_the_report_reads_the_input_s_classes_from_run_json(tmp_path, demo_train_path):
    """run.json records the input's classes: the report does not read the input again (here it is
    gone), and its table equals the one made from the file (--input)."""
    src = tmp_path / "train.json"
    shutil.copy(demo_train_path, src)
    out = tmp_path / "out"
    run_pipeline(load_dataset(src), IMAGES, out, [Paste(objects=2, seed=0)], workers=1, progress=False)
    recorded = json.loads((out / "run.json").read_text())["input"]["classes"]
    assert recorded["images"] == 30 and len(recorded["ids"]) == len(recorded["names"]) == len(load_dataset(src).categories)
    from_file = build_report(out, input_annotations=src, samples=0, rare_max=2, common_max=5)[1]
    src.unlink()
    from_run = build_report(out, samples=0, rare_max=2, common_max=5)[1]
    assert from_run == from_file
