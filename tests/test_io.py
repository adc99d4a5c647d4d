"""Reading, the columnar index, lossless round trips and LVIS fields."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import orjson
import pytest
from conftest import shared_path
from lvis_style import build_lvis_style

from ltaug import COCO, LVIS, Dataset, UsageError, load_dataset
from ltaug.io.paths import image_file_name
from ltaug.stats.frequency import frequency_bins, recount, to_lvis


def roundtrip(path, tmp_path):
    ds = load_dataset(path)
    out = ds.save(tmp_path / "out.json")
    return json.loads(path.read_text()), json.loads(out.read_text())


def test_roundtrip_shared_train_is_lossless(coco_lt_train, tmp_path):
    original, written = roundtrip(coco_lt_train, tmp_path)
    assert written == original  # every field at every level, lists in order
    assert list(written) == list(original)  # top-level key order kept
    assert list(written["annotations"][0]) == list(original["annotations"][0])


def test_roundtrip_keeps_unknown_fields_at_every_level(demo_doc, tmp_path):
    demo_doc["my_top"] = {"nested": [1, 2.5, None, "x"]}
    demo_doc["images"][0]["camera"] = {"iso": 100}
    demo_doc["annotations"][0]["attributes"] = ["occluded", {"score": 0.25}]
    demo_doc["categories"][0]["color"] = [255, 0, 0]
    src = tmp_path / "in.json"
    src.write_text(json.dumps(demo_doc))
    original, written = roundtrip(src, tmp_path)
    assert written == original


@pytest.fixture
def lvis_file(demo_doc, tmp_path):
    cat_info = shared_path("lvis-meta", "lvis_v1_train_cat_info.json")
    path = tmp_path / "lvis_style.json"
    path.write_text(json.dumps(build_lvis_style(demo_doc, cat_info)))
    return path


def test_lvis_style_file_roundtrips_and_loads_in_lvis_api(lvis_file, tmp_path):
    from lvis import LVIS as LvisApi
    from pycocotools.coco import COCO as CocoApi

    ds = load_dataset(lvis_file)
    assert ds.kind == LVIS
    original, written = roundtrip(lvis_file, tmp_path)
    assert written == original
    api = LvisApi(str(tmp_path / "out.json"))
    assert len(api.get_img_ids()) == len(original["images"])
    assert len(api.get_cat_ids()) == 1203
    coco = CocoApi(str(tmp_path / "out.json"))
    assert len(coco.getAnnIds()) == len(original["annotations"])
    # LVIS images have no file_name: the file name comes from coco_url, as lvis-api assumes
    im = ds.images[0]
    assert "file_name" not in im and image_file_name(im) == im["coco_url"].rsplit("/", 1)[-1]


def test_lvis_stored_bins_are_kept(lvis_file):
    from ltaug.stats.frequency import dataset_bins

    ds = load_dataset(lvis_file)
    stored = [c["frequency"] for c in ds.categories]
    assert dataset_bins(ds).tolist() == stored
    # with thresholds given, bins come from this file's counts instead
    recomputed = dataset_bins(ds, rare_max=1, common_max=3)
    assert set(recomputed.tolist()) <= {"r", "c", "f"}
    assert recomputed.tolist() != stored


def test_index_matches_direct_counts(coco_lt_train):
    raw = json.loads(coco_lt_train.read_text())
    ix = load_dataset(coco_lt_train).index
    assert (ix.num_images, ix.num_annotations, ix.num_categories) == (288, 2383, 80)
    inst = Counter(a["category_id"] for a in raw["annotations"])
    imgs = Counter(cid for _, cid in {(a["image_id"], a["category_id"]) for a in raw["annotations"]})
    for pos, cid in enumerate(ix.category_ids.tolist()):
        assert ix.instance_counts[pos] == inst[cid] and ix.image_counts[pos] == imgs[cid]
    assert ix.instance_counts.max() == 574 and ix.instance_counts.min() == 2
    assert np.array_equal(ix.ann_boxes[7], raw["annotations"][7]["bbox"])
    pos = ix.ann_image_pos[100]
    assert ix.image_ids[pos] == raw["annotations"][100]["image_id"]
    assert ix.ann_iscrowd.sum() == sum(a["iscrowd"] for a in raw["annotations"])
    assert ix.annotations_per_image().sum() == 2383


def test_index_of_empty_and_imageless_classes():
    ds = Dataset.from_dict({"images": [{"id": 1, "width": 10, "height": 10, "file_name": "a.jpg"},
                                       {"id": 2, "width": 10, "height": 10, "file_name": "b.jpg"}],
                            "annotations": [{"id": 5, "image_id": 2, "category_id": 3, "bbox": [1, 1, 2, 2]},
                                            {"id": 6, "image_id": 2, "category_id": 3, "bbox": [1, 1, 3, 3]}],
                            "categories": [{"id": 3, "name": "a"}, {"id": 9, "name": "never"}]})
    ix = ds.index
    assert ix.instance_counts.tolist() == [2, 0] and ix.image_counts.tolist() == [1, 0]
    assert ix.annotations_per_image().tolist() == [0, 2]
    assert np.isnan(ix.ann_areas).all()
    with pytest.raises(KeyError):
        ix.category_positions([4])


def test_frequency_bins_thresholds():
    assert frequency_bins([0, 1, 10, 11, 100, 101]).tolist() == ["r", "r", "r", "c", "c", "f"]
    assert frequency_bins([1, 2, 3, 5, 6], rare_max=2, common_max=5).tolist() == ["r", "r", "c", "c", "f"]
    with pytest.raises(ValueError):
        frequency_bins([1], rare_max=5, common_max=5)


def test_recount_and_to_lvis(demo_train_path, tmp_path):
    from lvis import LVIS as LvisApi

    ds = load_dataset(demo_train_path)
    assert ds.kind == COCO
    rc = recount(ds, rare_max=2, common_max=5)
    raw = json.loads(demo_train_path.read_text())
    imgs = Counter(cid for _, cid in {(a["image_id"], a["category_id"]) for a in raw["annotations"]})
    for c in rc.categories:
        n = imgs[c["id"]]
        assert c["image_count"] == n
        assert c["frequency"] == ("r" if n <= 2 else "c" if n <= 5 else "f")
        assert c["supercategory"]  # other fields kept
    assert ds.categories[0].get("frequency") is None  # the source dataset is untouched
    lv = to_lvis(ds)
    crowd = [a for a in raw["annotations"] if a["iscrowd"]]
    assert crowd and not any(a.get("iscrowd") for a in lv.annotations)  # LVIS has no crowd regions
    assert len(lv.annotations) == len(raw["annotations"]) - len(crowd)
    for im in lv.images:
        present = {a["category_id"] for a in raw["annotations"] if a["image_id"] == im["id"]}
        assert set(im["neg_category_ids"]) == {c["id"] for c in raw["categories"]} - present
        assert im["not_exhaustive_category_ids"] == sorted({a["category_id"] for a in crowd if a["image_id"] == im["id"]})
    out = lv.save(tmp_path / "lvis.json")
    assert load_dataset(out).kind == LVIS
    LvisApi(str(out))


def test_lvis_api_scores_the_ground_truth_as_perfect_once_crowd_regions_are_gone(demo_train_path, tmp_path,
                                                                                 monkeypatch):
    """The ground truth's own boxes as detections: with crowd regions kept as LVIS objects, lvis-api
    counts each as an object nobody found (AP < 1); converted, the score is perfect."""
    from lvis import LVIS as LvisApi
    from lvis import LVISEval, LVISResults

    monkeypatch.setattr(np, "float", float, raising=False)  # lvis-api 0.5.3 still names np.float (gone in numpy 2)

    ds = load_dataset(demo_train_path)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in ds.annotations if not a["iscrowd"]]

    def ap(doc_path):
        gt = LvisApi(str(doc_path))
        ev = LVISEval(gt, LVISResults(gt, dets), "bbox")
        ev.run()
        return ev.get_results()["AP"]

    converted = to_lvis(ds).save(tmp_path / "lvis.json")
    naive = json.loads(converted.read_text())
    naive["annotations"] = ds.annotations  # crowd regions kept, as the old conversion did
    for im in naive["images"]:
        im["not_exhaustive_category_ids"] = []
    (tmp_path / "naive.json").write_text(json.dumps(naive))
    assert ap(converted) == pytest.approx(1.0)
    assert ap(tmp_path / "naive.json") < 0.999  # 6 crowd regions: 0.997 here


def test_save_refuses_to_overwrite_input(demo_train_path, tmp_path):
    ds = load_dataset(demo_train_path)
    before = demo_train_path.read_bytes()
    with pytest.raises(UsageError):
        ds.save(demo_train_path)
    link = tmp_path / "link.json"
    link.symlink_to(demo_train_path)
    with pytest.raises(UsageError):
        ds.save(link)
    assert demo_train_path.read_bytes() == before


def test_save_is_atomic_and_leaves_no_temp_files(demo_train_path, tmp_path):
    ds = load_dataset(demo_train_path)
    out = tmp_path / "sub" / "out.json"
    ds.save(out)
    assert [p.name for p in out.parent.iterdir()] == ["out.json"]
    bad = ds.replace(annotations=ds.annotations + [{"id": 1, "x": object()}])
    with pytest.raises(TypeError):
        bad.save(out)
    assert orjson.loads(out.read_bytes()) == ds.data  # the previous file is intact
    assert [p.name for p in out.parent.iterdir()] == ["out.json"]


def test_same_input_same_bytes(demo_train_path, tmp_path):
    a = load_dataset(demo_train_path).save(tmp_path / "a.json").read_bytes()
    b = load_dataset(demo_train_path).save(tmp_path / "b.json").read_bytes()
    assert a == b


def test_loads_in_pieces_is_orjson_loads(demo_doc, monkeypatch):
    """The annotations list parsed in pieces (a tiny piece size: a cut every few records) gives
    orjson's document, key order included, whatever comes before or after the list, in the
    compact and in json.dumps' spacing, with "},{" inside strings and inside records; a real
    syntax error is reported where orjson reports it."""
    from ltaug.io import jsonio
    from ltaug.io.jsonio import loads_in_pieces

    parsed: list[int] = []  # the length of each text orjson parses
    loads = orjson.loads
    monkeypatch.setattr(jsonio.orjson, "loads", lambda text: parsed.append(len(text)) or loads(text))
    cut = 0  # runs in which the list was parsed in several pieces, the whole text never
    for k, a in enumerate(demo_doc["annotations"]):
        if k % 3 == 0:
            a["note"] = "a},{b}, {c"  # a cut inside a string
        if k % 5 == 0:
            a["parts"] = [{"x": 1}, {"y": [{"z": 2}, {"w": "},{"}]}]  # cuts inside a record
    images = demo_doc.pop("images")
    orders = [dict(demo_doc, images=images), {"images": images, **demo_doc},
              {"annotations": demo_doc["annotations"], "images": images, "categories": demo_doc["categories"]}]
    for doc in orders:
        for raw in (orjson.dumps(doc), json.dumps(doc).encode()):
            for piece in (64, 1000, 50_000):
                parsed.clear()
                got = loads_in_pieces(raw, piece)
                cut += len(parsed) > 2 and max(parsed) < len(raw)
                assert got == loads(raw) and list(got) == list(doc)
                assert orjson.dumps(got) == orjson.dumps(doc)
    assert cut >= 10, cut
    raw = orjson.dumps(orders[0])
    broken = raw[:len(raw) // 2] + b"}" + raw[len(raw) // 2:]
    with pytest.raises(orjson.JSONDecodeError) as ours:
        loads_in_pieces(broken, 64)
    with pytest.raises(orjson.JSONDecodeError) as theirs:
        loads(broken)
    assert (ours.value.lineno, ours.value.colno, ours.value.msg) == (theirs.value.lineno, theirs.value.colno,
                                                                     theirs.value.msg)
