"""Concurrence rates (ltaug.stats.concurrence, `ltaug concurrence`) and what concurrent softmax does with
them (`ltaug train --loss concurrent_softmax --concurrence FILE`)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DEMO
from openimages_sample import BOX_HEADER, build_sample, class_mid, super_mid, write_csv

import ltaug
from ltaug.cli.main import main
from ltaug.errors import InputError
from ltaug.io.openimages import read_openimages
from ltaug.stats.concurrence import concurrence_rates, read_concurrence, write_concurrence

TOY, CAR, TRUCK, VEHICLE = "/m/0138tl", "/m/0k4j", "/m/07r04", "/m/07yv9"


@pytest.fixture
def toy_car(tmp_path):
    """Two images: object A is listed as Toy and as Car (one box, two rows), B and C are Cars; Car and
    Truck are Vehicles; no Truck is boxed."""
    images = tmp_path / "images"
    images.mkdir()
    src = sorted((DEMO / "images" / "train").iterdir())
    for name, p in zip(("aaaa000000000001", "aaaa000000000002"), src):
        (images / f"{name}.jpg").symlink_to(p)
    classes = write_csv(tmp_path / "classes.csv", [[TOY, "Toy"], [CAR, "Car"], [TRUCK, "Truck"],
                                                   [VEHICLE, "Vehicle"]])
    tree = tmp_path / "tree.json"
    tree.write_text(json.dumps({"LabelName": "/m/0bl9f", "Subcategory": [
        {"LabelName": TOY}, {"LabelName": VEHICLE, "Subcategory": [{"LabelName": CAR}, {"LabelName": TRUCK}]}]}))
    box = ["0.1", "0.4", "0.2", "0.6", "0", "0", "0", "0", "0"]
    boxes = write_csv(tmp_path / "boxes.csv", [
        ["aaaa000000000001", "xclick", TOY, "1", *box],
        ["aaaa000000000001", "xclick", CAR, "1", *box],
        ["aaaa000000000001", "xclick", CAR, "1", "0.5", "0.9", "0.2", "0.6", "0", "0", "0", "0", "0"],
        ["aaaa000000000002", "xclick", CAR, "1", *box],
    ], BOX_HEADER)
    return {"boxes": boxes, "classes": classes, "images": images, "hierarchy": tree}


def rate(r, a: str, b: str, names=("Toy", "Car", "Truck", "Vehicle")) -> float:
    ids = dict(zip(names, r.category_ids.tolist()))
    pos = {cid: i for i, cid in enumerate(r.category_ids.tolist())}
    return float(r.matrix[pos[ids[a]], pos[ids[b]]])


def test_rates_from_shared_objects_and_the_hierarchy(toy_car):
    ds = read_openimages(toy_car["boxes"], toy_car["classes"], toy_car["images"],
                         hierarchy=toy_car["hierarchy"]).dataset
    r = concurrence_rates(ds)
    assert r.objects.tolist() == [1, 3, 0, 3]  # Toy, Car, Truck, Vehicle objects
    assert rate(r, "Toy", "Car") == 1.0 and rate(r, "Car", "Toy") == pytest.approx(1 / 3, abs=1e-6)
    assert rate(r, "Car", "Vehicle") == 1.0 and rate(r, "Vehicle", "Car") == 1.0
    assert rate(r, "Toy", "Vehicle") == 1.0 and rate(r, "Vehicle", "Toy") == pytest.approx(1 / 3, abs=1e-6)
    assert rate(r, "Truck", "Vehicle") == 1.0  # the hierarchy's: no Truck was boxed
    assert rate(r, "Vehicle", "Truck") == 0.0 and rate(r, "Toy", "Truck") == 0.0
    assert np.diag(r.matrix).tolist() == [0, 0, 0, 0]
    flat = concurrence_rates(ds, hierarchy=False)
    assert rate(flat, "Truck", "Vehicle") == 0.0 and rate(flat, "Car", "Vehicle") == 1.0


def test_a_coco_file_groups_identical_boxes_and_single_labels_give_zero(demo_doc):
    ds = ltaug.Dataset.from_dict(demo_doc)
    assert not concurrence_rates(ds).matrix.any()  # single-label COCO: concurrent softmax is CE
    a = demo_doc["annotations"][0]
    demo_doc["annotations"].append({**a, "id": 10 ** 9, "category_id": 90})  # the same box as a toothbrush
    r = concurrence_rates(ltaug.Dataset.from_dict(demo_doc))
    ids = r.category_ids.tolist()
    n = r.objects[ids.index(a["category_id"])]
    assert r.matrix[ids.index(a["category_id"]), ids.index(90)] == pytest.approx(1 / n, abs=1e-6)
    assert r.matrix[ids.index(90), ids.index(a["category_id"])] == pytest.approx(1 / r.objects[ids.index(90)])


def test_the_file_is_read_back_in_the_models_class_order_or_refused(toy_car, tmp_path):
    ds = read_openimages(toy_car["boxes"], toy_car["classes"], toy_car["images"],
                         hierarchy=toy_car["hierarchy"]).dataset
    r = concurrence_rates(ds)
    path = tmp_path / "r.json"
    write_concurrence(r, path)
    order = [4, 2, 1, 3]
    back = read_concurrence(path, order)
    pos = [r.category_ids.tolist().index(i) for i in order]
    assert np.array_equal(back, r.matrix[np.ix_(pos, pos)])
    with pytest.raises(InputError, match=r"r.json: category ids do not match the training file's: 1 of the "
                                         r"training file's missing \(7\); 1 not in it \(3\)"):
        read_concurrence(path, [1, 2, 4, 7])
    (tmp_path / "bad.json").write_text(json.dumps({"format": "ltaug-concurrence", "version": 1,
                                                   "category_ids": [1, 2], "matrix": [[0, 2], [0, 0]]}))
    with pytest.raises(InputError, match=r"bad.json: rates must be numbers in \[0, 1\]"):
        read_concurrence(tmp_path / "bad.json", [1, 2])


def test_cli_writes_the_file_and_prints_the_largest_pairs(toy_car, tmp_path, capsys):
    out = tmp_path / "oi.json"
    assert main(["openimages", "--boxes", str(toy_car["boxes"]), "--classes", str(toy_car["classes"]), "--images",
                 str(toy_car["images"]), "--hierarchy", str(toy_car["hierarchy"]), "-o", str(out)]) == 0
    assert "3 objects as 7 annotations" in capsys.readouterr().err
    assert main(["concurrence", str(out), "-o", str(tmp_path / "r.json"), "--top", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["r[Car -> Vehicle] = 1.000  (3 of 3 objects)", "r[Vehicle -> Car] = 1.000  (3 of 3 objects)"]
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["category_ids"] == [1, 2, 3, 4] and doc["names"] == ["Toy", "Car", "Truck", "Vehicle"]
    assert main(["concurrence", str(out), "-o", str(out)]) == 2  # never over its input


# -- the loss ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_oi(tmp_path_factory):
    """The demo train set in Open Images form (COCO supercategories as the hierarchy), read back,
    and its derived rates in the model's class order."""
    folder = tmp_path_factory.mktemp("oi")
    sample = build_sample(folder / "sample")
    out = folder / "oi_train.json"
    ds = ltaug.read_openimages(sample["boxes"], sample["classes"], sample["images"], out,
                               hierarchy=sample["hierarchy"], labels=[sample["labels"]])
    write_concurrence(concurrence_rates(ds), folder / "concurrence.json")
    return {"dataset": ds, "path": out, "images": sample["images"], "rates": folder / "concurrence.json"}


def test_concurrent_softmax_with_derived_rates_stops_penalising_the_co_label(demo_oi):
    torch = pytest.importorskip("torch")
    from ltaug.trainer.losses import build_loss

    ds = demo_oi["dataset"]
    ids = ds.index.category_ids.tolist()
    label = {c["label_name"]: ids.index(c["id"]) + 1 for c in ds.categories}  # the trainer's labels 1..K
    car, vehicle, person = label[class_mid(3)], label[super_mid("vehicle")], label[class_mid(1)]
    matrix = read_concurrence(demo_oi["rates"], ids)
    k = len(ids)
    concurrent = build_loss("concurrent_softmax", num_classes=k, concurrence=matrix)
    ce = build_loss("ce", num_classes=k)
    logits = torch.randn(2, k + 1, generator=torch.Generator().manual_seed(0)).requires_grad_()
    labels = torch.tensor([car, vehicle])  # one object labelled (car, vehicle): a RoI on it gets either label

    def grad(loss):
        logits.grad = None
        loss(logits, labels).backward()
        return logits.grad.clone()

    g_ce, g_cs = grad(ce), grad(concurrent)
    # labelled car: CE pushes vehicle's logit down; with r[car, vehicle] = 1 concurrent softmax does not
    assert g_ce[0, vehicle] > 1e-3 and g_cs[0, vehicle] == 0
    # an unrelated class (person: r = 0) is still pushed down, as under CE
    assert g_cs[0, person] > 0
    # labelled vehicle: the push on car shrinks by 1 - r[vehicle, car] (the share of vehicles that are cars)
    r = float(matrix[vehicle - 1, car - 1])
    assert 0 < r < 1 and r == pytest.approx(int(ds.categories[car - 1]["instance_count"])
                                            / int(ds.categories[vehicle - 1]["instance_count"]), abs=1e-6)
    z = logits.detach()[1]
    weights = torch.ones(k + 1)
    weights[1:] -= torch.as_tensor(matrix[vehicle - 1], dtype=torch.float32)
    weights[vehicle] = 1
    expected = (1 - r) * z[car].exp() / (weights * z.exp()).sum() / 2  # averaged over the 2 RoIs
    assert float(g_cs[1, car]) == pytest.approx(float(expected), rel=1e-5)
    assert float(g_cs[1, car]) < float(g_ce[1, car])
    assert concurrent.equivalence() is None  # derived rates: not CE in disguise


def test_train_refuses_a_concurrence_file_of_other_classes(demo_oi, tmp_path, capsys):
    pytest.importorskip("torch")
    coco = tmp_path / "r_coco.json"
    assert main(["concurrence", str(DEMO / "annotations" / "train.json"), "-o", str(coco)]) == 0
    code = main(["train", "--train", str(demo_oi["path"]), "--images", str(demo_oi["images"]), "--out",
                 str(tmp_path / "run"), "--loss", "concurrent_softmax", "--concurrence", str(coco), "--epochs", "1",
                 "--max-iters-per-epoch", "1", "--workers", "0", "--preset", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith(f"ltaug train: error: {coco}: category ids do not match the training "
                                            f"file's: ")
    assert main(["train", "--train", str(demo_oi["path"]), "--images", str(demo_oi["images"]), "--out",
                 str(tmp_path / "run2"), "--concurrence", str(demo_oi["rates"])]) == 2
    assert "is for loss concurrent_softmax, got loss ce" in capsys.readouterr().err


@pytest.mark.slow
def test_open_images_sample_to_a_trainer_run_with_derived_concurrence(demo_oi, tmp_path, capsys):
    """The user's path: `ltaug openimages` (done by the fixture, as the CLI does), `ltaug concurrence`,
    then two iterations of `ltaug train --loss concurrent_softmax --concurrence FILE` (9 s on 2 idle cores,
    24 s with the machine loaded: slow, as the other training runs)."""
    pytest.importorskip("torch")
    from conftest import shared_path

    rates = tmp_path / "concurrence.json"
    assert main(["concurrence", str(demo_oi["path"]), "-o", str(rates)]) == 0
    out = tmp_path / "run"
    weights = shared_path("..", "weights", "mobilenetv2_imagenet_features.pt")
    assert main(["train", "--train", str(demo_oi["path"]), "--images", str(demo_oi["images"]), "--out", str(out),
                 "--loss", "concurrent_softmax", "--concurrence", str(rates), "--epochs", "1",
                 "--max-iters-per-epoch", "2", "--workers", "0", "--threads", "2", "--preset", "cpu",
                 "--backbone-weights", str(weights)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["concurrence"] == str(rates) and config["loss"] == "concurrent_softmax"
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(history[-1]["loss"])
    assert "is ce exactly" not in capsys.readouterr().err  # the rates reached the loss
