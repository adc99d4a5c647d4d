"""Tests of ltaug.stats.summary against slow, obviously-correct counts from the raw json."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from ltaug import Dataset, UsageError, load_dataset
from ltaug.stats.summary import dataset_stats, format_stats_table, gini, plot_class_histogram

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRAIN = SHARED / "data" / "coco-lt" / "annotations" / "instances_train.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

needs_data = pytest.mark.skipif(not TRAIN.exists(), reason=f"shared data not found: {TRAIN}")


@pytest.fixture(scope="module")
def raw():
    return json.loads(TRAIN.read_text())


@pytest.fixture(scope="module")
def stats():
    return dataset_stats(load_dataset(TRAIN))


def slow_gini(xs) -> float:
    """G = sum_i sum_j |x_i - x_j| / (2 n^2 mean), literally."""
    n = len(xs)
    mean = sum(xs) / n
    return sum(abs(a - b) for a in xs for b in xs) / (2 * n * n * mean)


def make_dataset(counts, *, frequency=None, crowd=(), empty_images=0) -> Dataset:
    """Class k+1 gets counts[k] annotations, each on its own image; ``crowd`` lists crowd class ids."""
    cats = [{"id": k + 1, "name": f"class{k + 1}"} for k in range(len(counts))]
    if frequency is not None:
        for c, f in zip(cats, frequency):
            c["frequency"] = f
    images, anns = [], []
    for k, n in enumerate(counts):
        for _ in range(n):
            images.append({"id": len(images) + 1, "width": 64, "height": 48, "file_name": f"{len(images) + 1}.jpg"})
            anns.append({"id": len(anns) + 1, "image_id": images[-1]["id"], "category_id": k + 1,
                         "bbox": [1.0, 1.0, 10.0, 10.0], "iscrowd": int(k + 1 in crowd)})
    for _ in range(empty_images):
        images.append({"id": len(images) + 1, "width": 64, "height": 48, "file_name": f"{len(images) + 1}.jpg"})
    return Dataset.from_dict({"images": images, "annotations": anns, "categories": cats})


def assert_plain_json(obj):
    """Only dict/list/str/int/float/bool/None, so orjson (and json) can write it."""
    if isinstance(obj, dict):
        assert all(isinstance(k, str) for k in obj)
        for v in obj.values():
            assert_plain_json(v)
    elif isinstance(obj, list):
        for v in obj:
            assert_plain_json(v)
    else:
        assert obj is None or type(obj) in (str, int, float, bool), (obj, type(obj))


# -- real data -------------------------------------------------------------------------------
@needs_data
def test_real_totals(stats):
    s = stats["summary"]
    assert (s["classes"], s["images"], s["instances"], s["kind"]) == (80, 288, 2383, "coco")
    first, last = stats["classes"][0], stats["classes"][-1]
    assert (first["name"], first["instances"]) == ("person", 574)
    assert last["instances"] == 2
    assert s["imbalance_ratio"] == pytest.approx(574 / 2)
    assert sum(c["instances"] for c in stats["classes"]) == s["instances"]
    assert sum(c["share"] for c in stats["classes"]) == pytest.approx(1.0)
    assert s["skipped"] == {}
    assert_plain_json(stats)
    assert orjson.loads(orjson.dumps(stats)) == stats


@needs_data
def test_real_per_class_counts_match_slow_count(raw, stats):
    instances, crowd, images = Counter(), Counter(), {}
    for a in raw["annotations"]:
        instances[a["category_id"]] += 1
        crowd[a["category_id"]] += bool(a.get("iscrowd", 0))
        images.setdefault(a["category_id"], set()).add(a["image_id"])
    names = {c["id"]: c["name"] for c in raw["categories"]}
    got = {c["id"]: c for c in stats["classes"]}
    assert set(got) == set(names)
    for cid, c in got.items():
        assert c["name"] == names[cid]
        assert c["instances"] == instances[cid]
        assert c["crowd"] == crowd[cid]
        assert c["images"] == len(images.get(cid, ()))
        assert c["share"] == pytest.approx(instances[cid] / len(raw["annotations"]))
    expected_order = sorted(names, key=lambda cid: (-instances[cid], cid))
    assert [c["id"] for c in stats["classes"]] == expected_order

    s = stats["summary"]
    annotated = {a["image_id"] for a in raw["annotations"]}
    assert s["images_without_annotations"] == sum(im["id"] not in annotated for im in raw["images"])
    assert s["crowd_instances"] == sum(crowd.values())
    assert s["classes_under_10_instances"] == sum(instances[cid] < 10 for cid in names)
    assert s["gini"] == pytest.approx(slow_gini([instances[cid] for cid in names]))


@needs_data
def test_real_bins_custom_thresholds(raw):
    st = dataset_stats(load_dataset(TRAIN), rare_max=3, common_max=20)
    img_sets = {}
    for a in raw["annotations"]:
        img_sets.setdefault(a["category_id"], set()).add(a["image_id"])
    slow_bin = {c["id"]: "r" if len(img_sets.get(c["id"], ())) <= 3 else "c" if len(img_sets.get(c["id"], ())) <= 20
                else "f" for c in raw["categories"]}
    assert {c["id"]: c["bin"] for c in st["classes"]} == slow_bin
    s = st["summary"]
    assert s["bins"] == {b: sum(v == b for v in slow_bin.values()) for b in "rcf"}
    assert s["bin_thresholds"] == {"rare_max": 3, "common_max": 20, "source": "image counts"}
    assert sum(s["bin_instance_share"].values()) == pytest.approx(1.0)
    n = len(raw["annotations"])
    for b in "rcf":
        assert s["bin_instance_share"][b] == pytest.approx(
            sum(c["instances"] for c in st["classes"] if c["bin"] == b) / n)


@needs_data
def test_real_table_and_plot(stats, tmp_path):
    table = format_stats_table(stats)
    for c in stats["classes"]:
        assert c["name"] in table
    assert "omitted" not in table and "Gini" in table
    short = format_stats_table(stats, top=5)
    assert "75 more classes omitted" in short and "hair drier" not in short and "person" in short

    out = tmp_path / "plots" / "classes.png"
    assert plot_class_histogram(stats, out, title="COCO-LT train") == out
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    with Image.open(out) as im:
        im.verify()
    assert [p.name for p in out.parent.iterdir()] == ["classes.png"]  # no temp files left
    plot_class_histogram(stats, out)  # overwriting works too, still no temp files
    assert [p.name for p in out.parent.iterdir()] == ["classes.png"]


# -- gini ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 5, 80])
def test_gini_known_cases(n):
    assert gini([7] * n) == pytest.approx(0.0)
    assert gini([0] * (n - 1) + [42]) == pytest.approx((n - 1) / n)


def test_gini_matches_slow_formula():
    rng = np.random.default_rng(0)
    for _ in range(20):
        xs = rng.integers(0, 50, size=int(rng.integers(1, 30))).tolist()
        if sum(xs) == 0:
            continue
        assert gini(xs) == pytest.approx(slow_gini(xs))
    assert gini([]) == 0.0 and gini([0, 0]) == 0.0


# -- hand-made datasets ----------------------------------------------------------------------
def test_small_dataset_zero_class_and_crowd():
    ds = make_dataset([6, 3, 0, 1], crowd={2}, empty_images=2)
    st = dataset_stats(ds)
    s = st["summary"]
    assert [(c["id"], c["instances"]) for c in st["classes"]] == [(1, 6), (2, 3), (4, 1), (3, 0)]
    assert st["classes"][1]["crowd"] == 3 and s["crowd_instances"] == 3
    assert s["images"] == 12 and s["instances"] == 10 and s["images_without_annotations"] == 2
    assert s["imbalance_ratio"] == 6.0  # the empty class is left out of max/min
    assert s["gini"] == pytest.approx(slow_gini([6, 3, 0, 1]))  # but counted in the Gini
    assert s["classes_under_10_instances"] == 4
    assert s["bins"] == {"r": 4, "c": 0, "f": 0}


def test_no_instances():
    st = dataset_stats(make_dataset([0, 0], empty_images=1))
    s = st["summary"]
    assert s["imbalance_ratio"] is None and s["gini"] == 0.0 and s["instances"] == 0
    assert all(c["share"] == 0.0 for c in st["classes"])
    assert s["bin_instance_share"] == {"r": 0.0, "c": 0.0, "f": 0.0}
    assert "n/a" in format_stats_table(st)


def test_lvis_uses_stored_frequency():
    # counts say all rare (<= 10 images each); the stored frequency says otherwise
    ds = make_dataset([5, 4, 1], frequency=["f", "c", "r"])
    assert ds.kind == "lvis"
    st = dataset_stats(ds)
    assert {c["id"]: c["bin"] for c in st["classes"]} == {1: "f", 2: "c", 3: "r"}
    assert st["summary"]["bin_thresholds"] == {"rare_max": None, "common_max": None, "source": "stored LVIS frequency"}
    assert st["summary"]["bin_instance_share"]["f"] == pytest.approx(0.5)
    assert "stored LVIS frequency" in format_stats_table(st)
    # explicit thresholds recompute from this file's image counts
    st = dataset_stats(ds, rare_max=1, common_max=4)
    assert {c["id"]: c["bin"] for c in st["classes"]} == {1: "f", 2: "c", 3: "r"}
    st = dataset_stats(ds, rare_max=4, common_max=5)
    assert {c["id"]: c["bin"] for c in st["classes"]} == {1: "c", 2: "r", 3: "r"}
    assert st["summary"]["bin_thresholds"]["source"] == "image counts"


def test_skipped_records_reported():
    ds = make_dataset([2, 1])
    data = dict(ds.data)
    data["annotations"] = ds.annotations + [
        {"id": 99, "image_id": 1, "category_id": 77, "bbox": [1, 1, 5, 5]}]
    skipped = Dataset.from_dict(data, on_error="skip")
    s = dataset_stats(skipped)["summary"]
    assert s["skipped"] == {"unknown-category": 1} and s["instances"] == 3
    assert "unknown-category=1" in format_stats_table(dataset_stats(skipped))


def test_plot_many_classes_and_bad_suffix(tmp_path):
    st = dataset_stats(make_dataset([1 + k % 7 for k in range(120)]))
    out = plot_class_histogram(st, tmp_path / "many.png")
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    svg = plot_class_histogram(st, tmp_path / "many.svg")
    assert b"<svg" in svg.read_bytes()[:2000]
    with pytest.raises(UsageError):
        plot_class_histogram(st, tmp_path / "many.notaformat")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.png", "many.svg"]


def _lvis_like(n_f=405, n_c=461, n_r=337, seed=0):
    """Bins (shuffled) and instance counts of an LVIS-like class spread, zeros among the rare."""
    rng = np.random.default_rng(seed)
    bins = np.array(["f"] * n_f + ["c"] * n_c + ["r"] * n_r)
    counts = np.concatenate([rng.integers(101, 50_000, n_f), rng.integers(11, 101, n_c), rng.integers(0, 11, n_r)])
    order = rng.permutation(bins.size)
    return bins[order], counts[order]


def test_curve_at_lvis_class_count(tmp_path):
    from matplotlib.colors import to_rgb
    from matplotlib.container import BarContainer

    from ltaug.stats.plotting import BIN_COLORS, class_curve_figure

    bins, before = _lvis_like()
    after = np.where(bins == "r", before + 20, before)
    fig, ax, order = class_curve_figure(tmp_path / "c.png", bins, before, after=after)
    # x: frequent, common, rare, each by instances descending: one contiguous range per bin
    assert bins[order].tolist() == ["f"] * 405 + ["c"] * 461 + ["r"] * 337
    for lo, hi in ((0, 405), (405, 866), (866, 1203)):
        assert np.all(np.diff(before[order][lo:hi]) <= 0)
    # three shaded bands in the bin colours over exactly their classes, labelled with count and shares
    bands = sorted((p.get_x(), p.get_x() + p.get_width(), p.get_facecolor()[:3]) for p in ax.patches)
    assert [(lo, hi) for lo, hi, _ in bands] == [(-0.5, 404.5), (404.5, 865.5), (865.5, 1202.5)]
    assert [c for _, _, c in bands] == [to_rgb(BIN_COLORS[b]) for b in "fcr"]
    texts = [t.get_text() for t in ax.texts]
    share_r = (before[bins == "r"].sum() / before.sum(), after[bins == "r"].sum() / after.sum())
    assert f"rare (r)\n337 classes\n{100 * share_r[0]:.1f}% → {100 * share_r[1]:.1f}% of instances" in texts
    assert not [c for c in ax.containers if isinstance(c, BarContainer)]  # no bars
    labels = {line.get_label() for line in ax.lines}
    assert {"instances per class, before", "instances per class, after"} <= labels
    # the after line: each bin's counts sorted on their own; zeros leave gaps on the log axis
    after_y = np.concatenate([line.get_ydata() for line in ax.lines if line.get_color() == "#7b2cbf"])
    assert np.allclose(after_y[866:], np.sort(after[bins == "r"])[::-1])
    before_y = np.concatenate([line.get_ydata() for line in ax.lines if line.get_color() == "#1d1f23"])
    assert np.isnan(before_y).sum() == np.count_nonzero(before == 0) > 0
    assert "with no instance" in ax.get_xlabel()


def test_plot_lvis_class_count_is_a_curve(tmp_path):
    bins, counts = _lvis_like(40, 40, 40)  # 120 classes: over MAX_LABELLED_CLASSES
    st = dataset_stats(make_dataset([max(1, int(c) // 100) for c in counts], frequency=bins.tolist()))
    out = plot_class_histogram(st, tmp_path / "lvis.png", title="LVIS-like")
    with Image.open(out) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float64)
    blue = np.array([255 + 0.13 * (v - 255) for v in (0x1F, 0x77, 0xB4)])  # the frequent band's shade
    assert np.mean(np.abs(rgb - blue).max(axis=2) <= 3) > 0.05
