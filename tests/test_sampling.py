"""Resampling methods against direct, slow reference computations; hand-made cases; determinism."""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from ltaug import Dataset, load_dataset
from ltaug.cli.main import main
from ltaug.errors import UsageError
from ltaug.ops import Resample
from ltaug.rebalance import sampling as S
from ltaug.rebalance.resample import expand_dataset, resample, resample_counts


def make(images, anns, n_cats=None):
    """images: list of ids; anns: list of (image_id, category_id)."""
    cats = sorted({c for _, c in anns} | set(range(1, (n_cats or 0) + 1)))
    return Dataset.from_dict({
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in images],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": [1, 1, 10, 10], "area": 100.0,
                         "iscrowd": 0, "segmentation": [[1, 1, 11, 1, 11, 11, 1, 11]]} for k, (i, c) in enumerate(anns)],
        "categories": [{"id": c, "name": f"c{c}"} for c in cats]})


def slow_repeat_factors(raw, t, sqrt=True):
    n = len(raw["images"])
    imgs_of = defaultdict(set)
    for a in raw["annotations"]:
        imgs_of[a["category_id"]].add(a["image_id"])
    r_cat = {}
    for c, ims in imgs_of.items():
        f = len(ims) / n
        r_cat[c] = max(1.0, math.sqrt(t / f) if sqrt else t / f)
    cats_in = defaultdict(set)
    for a in raw["annotations"]:
        cats_in[a["image_id"]].add(a["category_id"])
    return [max((r_cat[c] for c in cats_in[im["id"]]), default=1.0) for im in raw["images"]]


@pytest.mark.parametrize("t,sqrt", [(0.001, True), (0.05, True), (0.3, True), (0.05, False)])
def test_rfs_factors_match_reference_on_shared_train(coco_lt_train, t, sqrt):
    raw = json.loads(coco_lt_train.read_text())
    got = S.repeat_factors(load_dataset(coco_lt_train).index, threshold=t, sqrt=sqrt)
    assert np.allclose(got, slow_repeat_factors(raw, t, sqrt))


def test_rfs_hand_made_cases():
    # one class in one image of four, one empty image: f = 1/4, r = sqrt(1 / 0.25) = 2
    ds = make([1, 2, 3, 4], [(1, 1), (2, 2), (3, 2), (2, 2)])
    r = S.repeat_factors(ds.index, threshold=1.0)
    assert r.tolist() == [2.0, pytest.approx(math.sqrt(2)), pytest.approx(math.sqrt(2)), 1.0]
    # all classes equal and frequent: nothing repeated
    eq = make([1, 2], [(1, 1), (1, 2), (2, 1), (2, 2)])
    assert S.repeat_factors(eq.index, threshold=0.5).tolist() == [1.0, 1.0]
    # only empty images
    empty = make([1, 2, 3], [], n_cats=2)
    assert S.repeat_factors(empty.index).tolist() == [1.0, 1.0, 1.0]
    out, res = resample(empty, Resample(method="rfs", seed=3, threshold=0.5))
    assert len(out.images) == 3 and res.counts.tolist() == [1, 1, 1]


def test_stochastic_rounding_matches_r_in_expectation():
    factors = np.array([1.0, 1.25, 2.5, 3.9, 7.01])
    draws = np.stack([S.round_repeats(factors, np.random.default_rng(s)) for s in range(4000)])
    assert set(np.unique(draws[:, 0])) == {1}
    assert np.all(draws >= np.floor(factors)) and np.all(draws <= np.ceil(factors))
    assert np.allclose(draws.mean(axis=0), factors, atol=0.03)
    assert S.round_repeats(factors, np.random.default_rng(0), rounding="ceil").tolist() == [1, 2, 3, 4, 8]


def test_rfs_epochs_counts_in_expectation(coco_lt_train):
    ds = load_dataset(coco_lt_train)
    spec = Resample(method="rfs", seed=11, epochs=200, threshold=0.2)
    res = resample_counts(ds, spec)
    assert len(res.per_epoch) == 200
    assert np.allclose(res.counts / 200, res.expected_per_epoch, atol=0.12)
    assert np.array_equal(res.counts, np.sum(res.per_epoch, axis=0))
    # epoch e's draw does not depend on how many epochs were asked for
    short = resample_counts(ds, Resample(method="rfs", seed=11, epochs=3, threshold=0.2))
    assert all(np.array_equal(a, b) for a, b in zip(short.per_epoch, res.per_epoch[:3]))


def slow_class_then_image_rates(raw, probs_by_cat):
    imgs_of = defaultdict(set)
    for a in raw["annotations"]:
        imgs_of[a["category_id"]].add(a["image_id"])
    rate = Counter()
    for c, p in probs_by_cat.items():
        for im in imgs_of[c]:
            rate[im] += p / len(imgs_of[c])
    return [rate[im["id"]] for im in raw["images"]]


@pytest.mark.parametrize("method,lam", [("cas", None), ("sqrt", None), ("soft", 0.0), ("soft", 0.3), ("soft", 1.0)])
def test_class_sampling_matches_reference(coco_lt_train, method, lam):
    raw = json.loads(coco_lt_train.read_text())
    n_img = Counter()
    for c, _ in {(a["category_id"], a["image_id"]) for a in raw["annotations"]}:
        n_img[c] += 1
    C, N = len(n_img), sum(n_img.values())
    if method == "cas":
        probs = {c: 1 / C for c in n_img}
    elif method == "sqrt":
        z = sum(math.sqrt(v) for v in n_img.values())
        probs = {c: math.sqrt(v) / z for c, v in n_img.items()}
    else:
        probs = {c: lam / C + (1 - lam) * v / N for c, v in n_img.items()}
    ds = load_dataset(coco_lt_train)
    ix = ds.index
    got = S.class_probabilities(ix.image_counts, method, lam=lam if lam is not None else 0.5)
    for pos, cid in enumerate(ix.category_ids.tolist()):
        assert got[pos] == pytest.approx(probs.get(cid, 0.0))
    spec = Resample(method=method, seed=5, epochs=300, lam=lam if lam is not None else 0.5)
    res = resample_counts(ds, spec)
    ref = np.array(slow_class_then_image_rates(raw, probs)) * ix.num_images
    assert np.allclose(res.expected_per_epoch, ref)
    assert res.counts.sum() == 300 * ix.num_images
    # the empirical draw rates follow the reference within sampling noise
    assert np.abs(res.counts / 300 - ref).max() < 0.35 + 0.1 * ref.max()


def test_cas_draws_only_images_of_the_drawn_class():
    ds = make([1, 2, 3, 4, 5], [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2)])
    res = resample_counts(ds, Resample(method="cas", seed=0, epochs=400))
    # class 2 has one image (id 5): drawn about half the time
    share = res.counts[4] / res.counts.sum()
    assert abs(share - 0.5) < 0.03


def test_soft_schedule_moves_lambda():
    assert S.soft_lambda_schedule(5, start=0, end=1).tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert S.soft_lambda_schedule(1, start=0, end=1).tolist() == [1]


@pytest.mark.parametrize("bad", [dict(method="nope"), dict(method="rfs", epochs=0), dict(method="soft", lam=1.5),
                                 dict(method="rfs", rounding="floor"), dict(method="cas", samples_per_epoch=0)])
def test_bad_specs(bad):
    with pytest.raises(ValueError):
        Resample(**bad)


def test_expand_dataset_ids_and_provenance(demo_train_path):
    ds = load_dataset(demo_train_path)
    counts = np.zeros(len(ds.images), dtype=np.int64)
    counts[0], counts[1], counts[2] = 3, 1, 0
    counts[3:] = 1
    out = expand_dataset(ds, counts, op="test", params={"k": 1})
    ids = [im["id"] for im in out.images]
    assert len(ids) == len(set(ids)) == counts.sum()
    first = ds.images[0]
    copies = [im for im in out.images if im["ltaug"]["source_image_id"] == first["id"]]
    assert [c["ltaug"]["repeat"] for c in copies] == [0, 1, 2]
    assert copies[0]["id"] == first["id"] and copies[1]["id"] > max(im["id"] for im in ds.images)
    assert all(c["file_name"] == first["file_name"] for c in copies)
    assert ds.images[2]["id"] not in ids
    ann_ids = [a["id"] for a in out.annotations]
    assert len(ann_ids) == len(set(ann_ids))
    src = {a["id"]: a for a in ds.annotations}
    for a in out.annotations:
        orig = src[a["ltaug"]["source_annotation_id"]]
        assert a["segmentation"] == orig["segmentation"] and a["category_id"] == orig["category_id"]
    assert "ltaug" not in ds.images[0] and "ltaug" not in ds.annotations[0]  # source untouched


def test_cli_resample_writes_loadable_and_deterministic(coco_lt_train, tmp_path, capsys):
    from pycocotools.coco import COCO

    outs = []
    for k in range(2):
        out = tmp_path / f"rfs{k}.json"
        assert main(["resample", str(coco_lt_train), "--method", "rfs", "--threshold", "0.1", "--seed", "7",
                     "--epochs", "2", "-o", str(out)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    other = tmp_path / "seed8.json"
    assert main(["resample", str(coco_lt_train), "--method", "rfs", "--threshold", "0.1", "--seed", "8",
                 "--epochs", "2", "-o", str(other)]) == 0
    assert other.read_bytes() != outs[0]
    table = capsys.readouterr().out
    assert "inst before" in table and "share of rare" in table
    coco = COCO(str(tmp_path / "rfs0.json"))
    doc = json.loads(outs[0])
    assert len(coco.getImgIds()) == len(doc["images"]) > 2 * 288
    assert all(im["ltaug"]["params"]["threshold"] == 0.1 for im in doc["images"])


def test_cli_lvis_output_keeps_fields_and_loads(tmp_path, demo_doc, capsys):
    from conftest import shared_path
    from lvis import LVIS
    from lvis_style import build_lvis_style

    src = tmp_path / "lvis.json"
    src.write_text(json.dumps(build_lvis_style(demo_doc, shared_path("lvis-meta", "lvis_v1_train_cat_info.json"))))
    out = tmp_path / "lvis_rfs.json"
    assert main(["resample", str(src), "--method", "rfs", "--threshold", "0.2", "-o", str(out)]) == 0
    before, after = json.loads(src.read_text()), json.loads(out.read_text())
    assert after["categories"] == before["categories"]  # stored frequency bins stay those of the original
    for im in after["images"]:
        assert "neg_category_ids" in im and "not_exhaustive_category_ids" in im
    LVIS(str(out))


def test_cli_repeat_factors_file(coco_lt_train, tmp_path, capsys):
    rf = tmp_path / "rf.json"
    assert main(["resample", str(coco_lt_train), "--method", "rfs", "--repeat-factors", str(rf)]) == 0
    doc = json.loads(rf.read_text())
    raw = json.loads(coco_lt_train.read_text())
    assert doc["image_ids"] == [im["id"] for im in raw["images"]]
    assert np.allclose(doc["repeat_factors"], slow_repeat_factors(raw, 0.001))


def test_cli_resample_usage_errors(coco_lt_train, tmp_path, capsys):
    assert main(["resample", str(coco_lt_train), "--method", "soft", "--lambda", "2", "-o", str(tmp_path / "x.json")]) == 2
    assert main(["resample", str(coco_lt_train), "--method", "rfs", "--threshold", "-0.1", "-o", str(tmp_path / "x.json")]) == 2
    assert main(["resample", str(coco_lt_train), "--method", "rfs", "-o", str(coco_lt_train)]) == 2
    assert not (tmp_path / "x.json").exists()


def test_write_expanded_is_expand_dataset_saved(demo_train_path, tmp_path, monkeypatch):
    """The output file written a chunk at a time has the bytes of the built dataset saved, with
    several chunks, with the document's lists in any order, and with a top-level key that is not
    a string (written through the built dataset)."""
    from ltaug.io.jsonio import document_chunks
    from ltaug.rebalance import resample as R

    monkeypatch.setattr(R, "CHUNK", 7)  # many chunks, some ending mid-image
    ds = load_dataset(demo_train_path)
    counts = np.random.default_rng(3).integers(0, 4, len(ds.images))
    counts[0] = 0
    data = dict(ds.data)
    reordered = {"annotations": data.pop("annotations"), **data}  # annotations before images
    for doc in (ds.data, reordered, {**ds.data, 5: "not a string key"}):
        src = Dataset(doc, path=ds.path)
        built = tmp_path / "built.json"
        R.expand_dataset(src, counts, op="test", params={"k": 1}).save(built)
        streamed = R.write_expanded(src, counts, tmp_path / "streamed.json", op="test", params={"k": 1})
        assert streamed.read_bytes() == built.read_bytes()
        assert R.expanded_size(src, counts) == (int(counts.sum()), len(json.loads(built.read_bytes())["annotations"]))
    with pytest.raises(ValueError, match="not a string"):
        list(document_chunks({1: []}, {}))
    with pytest.raises(UsageError, match="over the input"):
        R.write_expanded(ds, counts, demo_train_path, op="test", params={})
