"""The repeat-factor file: its versioned schema, read back (version 1 too), aligned to a framework's
image order (detectron2's dataset dicts), equal to detectron2's own RFS formula, and realised by the
trainer's sampler with the exposure per class the file promises."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import DEMO

from ltaug import InputError, load_dataset
from ltaug.api import resample
from ltaug.rebalance.factors import FORMAT, detectron2_factors, read_factors

TRAIN = DEMO / "annotations" / "train.json"


def detectron2_rfs(dataset_dicts: list[dict], repeat_thresh: float) -> list[float]:
    """detectron2's RepeatFactorTrainingSampler.repeat_factors_from_category_frequency, from its
    definition: f_c = fraction of the dicts' images containing c, r_c = max(1, sqrt(t / f_c)),
    r_I = max over I's classes of r_c."""
    counts: dict[int, int] = {}
    for d in dataset_dicts:
        for c in {a["category_id"] for a in d["annotations"]}:
            counts[c] = counts.get(c, 0) + 1
    n = len(dataset_dicts)
    rep = {c: max(1.0, math.sqrt(repeat_thresh / (k / n))) for c, k in counts.items()}
    return [max(rep[a["category_id"]] for a in d["annotations"]) for d in dataset_dicts]


def dataset_dicts(ds, order):
    """detectron2-style dicts (image_id, file_name, annotations) in ``order``, images without
    annotations left out as detectron2's filter does."""
    anns: dict[int, list] = {}
    for a in ds.annotations:
        anns.setdefault(a["image_id"], []).append(a)
    return [{"image_id": ds.images[i]["id"], "file_name": ds.images[i]["file_name"],
             "annotations": anns[ds.images[i]["id"]]} for i in order if ds.images[i]["id"] in anns]


@pytest.fixture
def factor_file(tmp_path):
    path = tmp_path / "rf.json"
    resample(TRAIN, "rfs", threshold=0.3, repeat_factors=path)
    return path


def test_the_file_is_version_2_with_ids_names_and_the_epoch_length(factor_file):
    doc = json.loads(factor_file.read_text())
    ds = load_dataset(TRAIN)
    assert doc["format"] == FORMAT and doc["method"] == "rfs" and doc["params"]["threshold"] == 0.3
    assert doc["image_ids"] == [im["id"] for im in ds.images]
    assert doc["file_names"] == [im["file_name"] for im in ds.images]
    assert doc["images"] == len(ds.images) and doc["sum"] == pytest.approx(sum(doc["repeat_factors"]), abs=1e-5)


def test_aligned_to_detectron2s_dicts_equals_its_own_formula(factor_file):
    ds = load_dataset(TRAIN)
    order = np.random.default_rng(3).permutation(len(ds.images))
    dicts = dataset_dicts(ds, order)
    assert len(dicts) == len(ds.images)  # the demo has no image without objects
    ours = detectron2_factors(factor_file, dicts)
    assert ours == pytest.approx(detectron2_rfs(dicts, 0.3), abs=1e-9)
    file = read_factors(factor_file)
    by_name = file.aligned([d["file_name"] for d in dicts], by="file_name")
    assert by_name.tolist() == ours
    with pytest.raises(InputError, match="1 image\\(s\\) of the training list are not in the file"):
        detectron2_factors(factor_file, dicts + [{"image_id": 10**9}])


def test_a_version_1_file_is_read_by_id_only(factor_file, tmp_path):
    doc = json.loads(factor_file.read_text())
    old = {"format": "ltaug-repeat-factors/1", "method": "rfs", "params": doc["params"],
           "image_ids": doc["image_ids"], "repeat_factors": doc["repeat_factors"]}
    (tmp_path / "v1.json").write_text(json.dumps(old))
    file = read_factors(tmp_path / "v1.json")
    assert file.aligned(doc["image_ids"][::-1]).tolist() == doc["repeat_factors"][::-1]
    with pytest.raises(InputError, match="a version 1 file has no file names"):
        file.aligned(doc["file_names"], by="file_name")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(InputError, match="not a repeat-factor file"):
        read_factors(tmp_path / "other.json")


def test_the_trainers_sampler_realises_the_files_exposure_per_class(factor_file):
    from ltaug.trainer.samplers import RepeatFactorSampler

    ds = load_dataset(TRAIN)
    sampler = RepeatFactorSampler.from_file(factor_file, ds, seed=0)
    epochs = 400
    counts = sum(np.bincount(sampler.epoch_indices(e), minlength=len(ds.images)) for e in range(epochs)) / epochs
    factors = read_factors(factor_file).aligned([im["id"] for im in ds.images])
    np.testing.assert_allclose(counts, factors, rtol=0.06)
    pos = {im["id"]: i for i, im in enumerate(ds.images)}
    per_class_file: dict[int, float] = {}
    per_class_real: dict[int, float] = {}
    for a in ds.annotations:
        i = pos[a["image_id"]]
        per_class_file[a["category_id"]] = per_class_file.get(a["category_id"], 0) + factors[i]
        per_class_real[a["category_id"]] = per_class_real.get(a["category_id"], 0) + counts[i]
    for c in per_class_file:
        assert per_class_real[c] == pytest.approx(per_class_file[c], rel=0.06), c


def test_weighted_random_sampler_needs_the_epoch_length_of_the_file(factor_file):
    """The module's note on torch's WeightedRandomSampler: exposure r_i with num_samples = sum of
    the factors; with num_samples = len(dataset) each image gets r_i * len / sum."""
    import torch

    file = read_factors(factor_file)
    r = torch.tensor(file.factors)
    n, total = len(r), float(r.sum())
    assert total > n * 1.2  # the demo's factors lengthen the epoch
    for num_samples, expected in ((round(total), r), (n, r * n / total)):
        sampler = torch.utils.data.WeightedRandomSampler(r, num_samples, replacement=True,
                                                         generator=torch.Generator().manual_seed(0))
        got = torch.zeros(n)
        for _ in range(3000):
            got += torch.bincount(torch.tensor(list(sampler)), minlength=n)
        np.testing.assert_allclose((got / 3000).numpy(), expected.numpy(), rtol=0.1)
