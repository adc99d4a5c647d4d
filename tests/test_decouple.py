"""Decoupled training: tau-normalisation (norms, tau = 0 is the identity, the one-pass sweep) and cRT."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from conftest import DEMO, shared_path  # noqa: E402

from ltaug import load_dataset  # noqa: E402
from ltaug.trainer.decouple import load_stage1, predict_taus, tau_normalization, tau_normalized  # noqa: E402
from ltaug.trainer.engine import TrainConfig, train  # noqa: E402
from ltaug.trainer.inference import predict, val_dataset  # noqa: E402
from ltaug.trainer.model import PRESETS, build_model  # noqa: E402
from ltaug.trainer.samplers import AspectRatioBatchSampler, ClassAwareSampler  # noqa: E402

TRAIN, IMAGES = DEMO / "annotations" / "train.json", DEMO / "images" / "train"


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.5])
def test_tau_normalized_norms(tau):
    g = torch.Generator().manual_seed(0)
    k = 5
    weight, bias = torch.randn(k + 3, 8, generator=g) * 3, torch.randn(k + 3, generator=g)  # + bg + 2 "others"
    before = weight.clone(), bias.clone()
    w, b = tau_normalized(weight, bias, tau, num_classes=k)
    norms = before[0].norm(dim=1)
    assert torch.allclose(w[1:k + 1].norm(dim=1), norms[1:k + 1] ** (1 - tau), rtol=1e-5)
    assert torch.equal(w[0], weight[0]) and torch.equal(w[k + 1:], weight[k + 1:])  # background, others
    assert torch.equal(b, bias)
    assert torch.equal(weight, before[0]) and torch.equal(bias, before[1])         # inputs untouched
    if tau == 1.0:
        assert torch.allclose(w[1:k + 1].norm(dim=1), torch.ones(k))
    _, dropped = tau_normalized(weight, bias, tau, num_classes=k, bias_mode="drop")
    assert torch.equal(dropped[1:k + 1], torch.zeros(k)) and dropped[0] == bias[0] and torch.equal(dropped[k + 1:],
                                                                                                    bias[k + 1:])
    with pytest.raises(ValueError):
        tau_normalized(weight, bias, -0.5, num_classes=k)


@pytest.fixture(scope="module")
def random_model_and_val():
    torch.manual_seed(0)
    ds = load_dataset(TRAIN)
    model = build_model(num_classes=ds.index.num_categories, preset=PRESETS["cpu"]).eval()
    model.roi_heads.score_thresh = 0.0          # a random classifier scores below torchvision's 0.05
    val = load_dataset(DEMO / "annotations" / "val.json")
    keep = {im["id"] for im in val.images[:2]}
    two = val.replace(images=val.images[:2], annotations=[a for a in val.annotations if a["image_id"] in keep])
    dataset = val_dataset(two, DEMO / "images" / "val")
    label_to_category = [-1] + ds.index.category_ids.tolist()
    return model, dataset, label_to_category


def test_tau_zero_is_the_model_and_the_sweep_equals_one_pass_per_tau(random_model_and_val):
    model, dataset, l2c = random_model_and_val
    kw = dict(device="cpu", label_to_category=l2c, progress=False)
    plain = predict(model, dataset, **kw)
    assert len(plain) == 200
    weight = model.roi_heads.box_predictor.cls_score.weight.clone()
    with tau_normalization(model, 0.0):
        assert predict(model, dataset, **kw) == plain
    with tau_normalization(model, 1.0):
        normalised = predict(model, dataset, **kw)
    assert normalised != plain
    assert torch.equal(model.roi_heads.box_predictor.cls_score.weight, weight)   # restored
    sweep = predict_taus(model, dataset, [0.0, 1.0], **kw)
    assert sweep[0.0] == plain and sweep[1.0] == normalised


def test_mask_rcnn_results_carry_masks_and_the_sweep_runs_the_mask_branch_per_tau(random_model_and_val):
    _, dataset, l2c = random_model_and_val
    torch.manual_seed(0)
    model = build_model(num_classes=len(l2c) - 1, preset=PRESETS["cpu"], masks=True).eval()
    model.roi_heads.score_thresh, model.roi_heads.detections_per_img = 0.0, 5
    kw = dict(device="cpu", label_to_category=l2c, progress=False)
    plain = predict(model, dataset, **kw)
    image = dataset.dataset.images[0]
    first = [r for r in plain if r["image_id"] == image["id"]]
    assert len(first) == 5 and all(r["segmentation"]["size"] == [image["height"], image["width"]] for r in first)
    with tau_normalization(model, 1.0):
        normalised = predict(model, dataset, **kw)
    assert predict_taus(model, dataset, [0.0, 1.0], **kw) == {0.0: plain, 1.0: normalised}


@pytest.mark.slow
def test_crt_trains_only_the_classifier_with_the_class_aware_sampler(tmp_path):
    weights = shared_path("..", "weights", "mobilenetv2_imagenet_features.pt")
    common = dict(train=str(TRAIN), images=str(IMAGES), epochs=1, warmup_iters=1, workers=0, threads=2, seed=0,
                  preset="cpu", device="cpu")
    train(TrainConfig(out=str(tmp_path / "s1"), max_iters_per_epoch=1, backbone_weights=str(weights), **common),
          progress=False)
    cfg = TrainConfig(out=str(tmp_path / "s2"), max_iters_per_epoch=3, stage2="crt", init_from=str(tmp_path / "s1"),
                      sampler="cas", record_samples=True, lr=0.02, **common)
    train(cfg, progress=False)

    s1 = torch.load(tmp_path / "s1" / "checkpoint.pt", weights_only=False)["model"]
    s2 = torch.load(tmp_path / "s2" / "checkpoint.pt", weights_only=False)["model"]
    assert s1.keys() == s2.keys()
    classifier = {k for k in s1 if k.startswith("roi_heads.box_predictor.cls_score.")}
    assert classifier == {"roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias"}
    changed = [k for k in s1 if k not in classifier and not torch.equal(s1[k], s2[k])]
    assert changed == []                                         # bit-identical: parameters and buffers
    assert all(not torch.equal(s1[k], s2[k]) for k in classifier)

    import json

    ds = load_dataset(TRAIN)
    seen = json.loads((tmp_path / "s2" / "samples_epoch1_rank0.json").read_text())
    batches = list(AspectRatioBatchSampler.for_index(ClassAwareSampler(ds, seed=0), ds.index, 2))[:3]
    assert seen == ds.index.image_ids[sum(batches, [])].tolist()


def test_crt_config_and_stage1_mismatch(tmp_path):
    base = dict(train="t.json", images=".", out=str(tmp_path))
    for bad in (dict(stage2="crt", init_from="x"), dict(stage2="crt", sampler="cas"), dict(init_from="x"),
                dict(stage2="lws", init_from="x", sampler="cas")):
        with pytest.raises(ValueError):
            TrainConfig(**base, **bad).validate()
    TrainConfig(**base, stage2="crt", init_from="x", sampler="cas").validate()
    model = build_model(num_classes=3, preset=PRESETS["cpu"])
    torch.save({"model": build_model(num_classes=4, preset=PRESETS["cpu"]).state_dict()}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="differs"):
        load_stage1(model, tmp_path)
    with pytest.raises(ValueError, match="no checkpoint"):
        load_stage1(model, tmp_path / "nothing")
