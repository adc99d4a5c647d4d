"""The published recipes on the demo data: Seesaw as mmdetection runs it on LVIS (``seesaw_mmdet``
with the cosine classifier) and BAGS decoupled (a CE stage 1, then the grouped classifier trained
alone, ``--stage2 bags``); their config rules. The losses' math is in test_loss_fidelity.py."""
from __future__ import annotations

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")

from conftest import DEMO, shared_path  # noqa: E402

from ltaug import load_dataset  # noqa: E402
from ltaug.trainer.config import TrainConfig, check_resumable  # noqa: E402
from ltaug.trainer.decouple import prepare_bags, tau_normalization  # noqa: E402
from ltaug.trainer.engine import train  # noqa: E402
from ltaug.trainer.inference import load_run, predict, val_dataset  # noqa: E402
from ltaug.trainer.model import PRESETS, NormedLinear, build_model  # noqa: E402
from ltaug.trainer.samplers import AspectRatioBatchSampler, TrainingSampler  # noqa: E402

TRAIN, IMAGES = DEMO / "annotations" / "train.json", DEMO / "images" / "train"
VAL_IMAGES = DEMO / "images" / "val"
CLASSIFIER = "roi_heads.box_predictor.cls_score."


def common(tmp_path) -> dict:
    """The short demo run of the brief: 1 epoch of 2 iterations, cpu preset at 160/224 px."""
    return dict(train=str(TRAIN), images=str(IMAGES), val=str(two_val_images(tmp_path)), val_images=str(VAL_IMAGES),
                epochs=1, max_iters_per_epoch=2, preset="cpu", min_size=160, max_size=224, workers=0, threads=1,
                backbone_weights=str(shared_path("..", "weights", "mobilenetv2_imagenet_features.pt")), seed=0,
                device="cpu")


def two_val_images(tmp_path):
    path = tmp_path / "val2.json"
    if not path.is_file():
        doc = json.loads((DEMO / "annotations" / "val.json").read_text())
        keep = {im["id"] for im in doc["images"][:2]}
        doc["images"] = doc["images"][:2]
        doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in keep]
        path.write_text(json.dumps(doc))
    return path


def scores_of(run_dir, tmp_path) -> list[float]:
    """Every score the saved run gives on two val images (no score threshold), rebuilt as `ltaug eval` does."""
    run = load_run(run_dir)
    run.model.roi_heads.score_thresh = 0.0
    dataset = val_dataset(load_dataset(two_val_images(tmp_path)), VAL_IMAGES)
    dets = predict(run.model, dataset, device="cpu", label_to_category=run.label_to_category, progress=False)
    assert dets
    return [d["score"] for d in dets]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A CE run (stage 1 of BAGS' published protocol)."""
    tmp = tmp_path_factory.mktemp("stage1")
    out = tmp / "ce"
    train(TrainConfig(out=str(out), **common(tmp)), progress=False)
    return out


@pytest.mark.slow
def test_seesaw_mmdet_with_the_cosine_classifier_trains_is_saved_and_evaluates(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "run"), loss="seesaw_mmdet", classifier="cosine", **common(tmp_path))
    metrics = train(cfg, progress=False)
    assert len(metrics["history"]) == 1 and metrics["history"][0]["loss"] > 0
    assert 0.0 <= metrics["eval"]["bbox"]["AP"] <= 1.0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["loss"], saved["classifier"], saved["classifier_tau"]) == ("seesaw_mmdet", "cosine", None)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    num_classes = load_dataset(TRAIN).index.num_categories
    assert state["model"][CLASSIFIER + "weight"].shape[0] == num_classes + 2
    assert state["model"]["roi_heads.cls_loss.cum_samples"].sum() > 0          # counted during training
    # ltaug eval rebuilds the cosine classifier (tau 20) from config.json
    run = load_run(tmp_path / "run")
    cls = run.model.roi_heads.box_predictor.cls_score
    assert isinstance(cls, NormedLinear) and cls.tau == 20.0 and cls.out_features == num_classes + 2
    scores = scores_of(tmp_path / "run", tmp_path)
    assert all(0.0 <= s <= 1.0 for s in scores)
    # tau-normalisation would change nothing on a cosine classifier: refused
    with pytest.raises(ValueError, match="cosine classifier"):
        with tau_normalization(run.model, 1.0):
            pass
    # a resume that changes the classifier is refused, naming it; the default tau is tau 20
    ckpt = tmp_path / "run" / "checkpoint.pt"
    check_resumable(state["config"], dataclasses.replace(cfg, classifier_tau=20.0), ckpt)
    for change, shown in ((dict(classifier="linear"), "classifier was 'cosine' in the run there, is 'linear' now"),
                          (dict(classifier_tau=10.0), "classifier_tau was 20.0 in the run there, is 10.0 now")):
        with pytest.raises(ValueError, match=shown):
            check_resumable(state["config"], dataclasses.replace(cfg, **change), ckpt)


@pytest.mark.slow
def test_bags_stage2_trains_only_the_grouped_classifier_with_plain_sampling(stage1, tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "bags"), loss="bags", stage2="bags", init_from=str(stage1),
                      record_samples=True, **common(tmp_path))
    metrics = train(cfg, progress=False)
    assert len(metrics["history"]) == 1 and metrics["history"][0]["loss"] > 0
    assert 0.0 <= metrics["eval"]["bbox"]["AP"] <= 1.0

    s1 = torch.load(stage1 / "checkpoint.pt", weights_only=True)["model"]
    s2 = torch.load(tmp_path / "bags" / "checkpoint.pt", weights_only=True)["model"]
    assert s1.keys() == s2.keys()
    classifier = {CLASSIFIER + "weight", CLASSIFIER + "bias"}
    assert {k for k in s1 if k.startswith(CLASSIFIER)} == classifier
    changed = [k for k in s1 if k not in classifier and not torch.equal(s1[k], s2[k])]
    assert changed == []                                   # byte-equal: every parameter and buffer but the classifier
    num_classes = load_dataset(TRAIN).index.num_categories
    assert s1[CLASSIFIER + "weight"].shape[0] == num_classes + 1
    assert s2[CLASSIFIER + "weight"].shape[0] == num_classes + 2 + 4    # K + 2 + G, groups 0/10/100/1000
    assert s2[CLASSIFIER + "bias"].abs().sum() > 0                      # trained from its zero init

    ds = load_dataset(TRAIN)                               # the plain sampler, as published
    seen = json.loads((tmp_path / "bags" / "samples_epoch1_rank0.json").read_text())
    batches = list(AspectRatioBatchSampler.for_index(TrainingSampler(ds.index.num_images, seed=0), ds.index, 2))[:2]
    assert seen == ds.index.image_ids[sum(batches, [])].tolist()

    scores = scores_of(tmp_path / "bags", tmp_path)        # ltaug eval rebuilds the BAGS model alone
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_prepare_bags_initialises_the_classifier_as_mmdetection_and_freezes_the_rest():
    torch.manual_seed(0)
    model = build_model(num_classes=3, preset=PRESETS["cpu"], loss="bags", class_instance_counts=[500, 40, 3])
    params = prepare_bags(model)
    cls = model.roi_heads.box_predictor.cls_score
    assert params == [cls.weight, cls.bias] and cls.weight.shape[0] == 3 + 2 + 4
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == [CLASSIFIER + "weight", CLASSIFIER + "bias"]
    assert float(cls.bias.detach().abs().max()) == 0.0
    assert abs(float(cls.weight.detach().std()) - 0.01) < 1e-3


@pytest.mark.parametrize("settings, message", [
    (dict(stage2="bags", init_from="x"), r"needs loss bags \(--loss bags\), got loss ce"),
    (dict(stage2="bags", loss="bags"), "go together"),
    (dict(classifier_tau=10.0), r"classifier_tau \(--classifier-tau\) is the scale of the cosine classifier"),
    (dict(classifier="cosine", classifier_tau=0.0), r"classifier_tau \(--classifier-tau\) must be > 0"),
    (dict(classifier="arc"), r"classifier \(--classifier\) must be one of linear, cosine"),
])
def test_config_rules_of_the_new_options(settings, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TrainConfig(train="t.json", images=".", out=str(tmp_path), **settings).validate()
    TrainConfig(train="t.json", images=".", out=str(tmp_path), stage2="bags", init_from="x", loss="bags").validate()
    TrainConfig(train="t.json", images=".", out=str(tmp_path), classifier="cosine", classifier_tau=16.0).validate()
