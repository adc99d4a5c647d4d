"""Model builder, loss hook, training loop (loss goes down, checkpoints, resume) on the demo data."""
from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

torch = pytest.importorskip("torch")

from conftest import DEMO, shared_path  # noqa: E402

from ltaug.trainer.engine import TrainConfig, lr_factor, train  # noqa: E402
from ltaug.trainer.losses import LOSSES  # noqa: E402
from ltaug.trainer.model import PRESETS, _fastrcnn_loss, build_model, load_mobilenet_v2_features  # noqa: E402


def test_mobilenet_weights_map_by_position_and_load(tmp_path):
    path = shared_path("..", "weights", "mobilenetv2_imagenet_features.pt")
    state = load_mobilenet_v2_features(path)
    raw = torch.load(path, map_location="cpu", weights_only=False)
    assert len(state) == 312 and list(state)[0] == "0.0.weight"
    model = build_model(num_classes=3, preset=PRESETS["cpu"], backbone_weights=path)
    body = model.backbone.body.state_dict()
    assert torch.equal(body["0.0.weight"], raw["features.0.0.weight"])
    assert torch.equal(body["18.1.running_var"], raw["features.18.1.running_var"])
    bad = dict(raw)
    bad["features.0.0.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="shape"):
        load_mobilenet_v2_features(tmp_path / "bad.pt")


@pytest.mark.parametrize("preset,masks", [("cpu", True), ("gpu", True), ("cpu", False)])
def test_preset_sets_roi_align_sampling(preset, masks):
    from torchvision.ops import roi_align

    model = build_model(num_classes=3, preset=PRESETS[preset], masks=masks)
    pools = [model.roi_heads.box_roi_pool] + ([model.roi_heads.mask_roi_pool] if masks else [])
    assert [p.sampling_ratio for p in pools] == [PRESETS[preset].roi_sampling_ratio] * len(pools)
    assert [p.output_size for p in pools] == [(7, 7), (14, 14)][:len(pools)]
    # the pooler really samples once per bin: equal to torchvision's roi_align at that ratio
    g = torch.Generator().manual_seed(0)
    feats = {"0": torch.randn(1, 4, 40, 40, generator=g), "1": torch.randn(1, 4, 20, 20, generator=g)}
    boxes = [torch.tensor([[10.0, 12.0, 100.0, 90.0]])]
    got = model.roi_heads.box_roi_pool(feats, boxes, [(320, 320)])
    ratio = PRESETS[preset].roi_sampling_ratio
    want = roi_align(feats["0"], boxes, 7, spatial_scale=1 / 8, sampling_ratio=ratio, aligned=False)
    assert torch.allclose(got, want)


def test_resnet50_weights_load_and_a_wrong_file_is_one_line(tmp_path):
    import torchvision

    src = torchvision.models.resnet50().state_dict()   # a torchvision ResNet-50 file, fc included
    torch.save(src, tmp_path / "resnet50.pth")
    preset = dataclasses.replace(PRESETS["cpu"], backbone="resnet50")
    model = build_model(num_classes=3, preset=preset, backbone_weights=tmp_path / "resnet50.pth")
    body = model.backbone.body.state_dict()
    assert torch.equal(body["conv1.weight"], src["conv1.weight"])
    assert torch.equal(body["layer4.2.bn3.running_var"], src["layer4.2.bn3.running_var"])
    assert model.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))  # torchvision's default
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("not weights")
    for name, message in (("other.pth", "not a ResNet-50 state dict"), ("text.pth", "not a readable backbone weights file"),
                          ("none.pth", "backbone weights file not found")):
        with pytest.raises(ValueError, match=message) as err:
            build_model(num_classes=3, preset=preset, backbone_weights=tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name)) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="anchor_sizes needs 5 sizes, one per map, got 2"):
        build_model(num_classes=3, preset=preset, anchor_sizes=(16, 32))


def test_ce_hook_equals_torchvision_loss():
    from ltaug.trainer import model as m
    from ltaug.trainer.losses import build_loss

    g = torch.Generator().manual_seed(0)
    logits, boxes = torch.randn(6, 4, generator=g), torch.randn(6, 16, generator=g)
    labels, targets = [torch.tensor([0, 1, 3]), torch.tensor([2, 0, 1])], [torch.randn(3, 4, generator=g)] * 2
    expected = m._TORCHVISION_FASTRCNN_LOSS(logits, boxes, labels, targets)
    token = m._ACTIVE_LOSS.set(build_loss("ce", num_classes=3))
    try:
        got = _fastrcnn_loss(logits, boxes, labels, targets)
    finally:
        m._ACTIVE_LOSS.reset(token)
    assert torch.allclose(got[0], expected[0]) and torch.allclose(got[1], expected[1])


def test_ce_postprocess_equals_torchvision():
    from torchvision.models.detection.roi_heads import RoIHeads

    torch.manual_seed(0)
    model = build_model(num_classes=3, preset=PRESETS["cpu"]).eval()
    heads = model.roi_heads
    logits, reg = torch.randn(10, 4) * 3, torch.randn(10, 16) * 0.1
    props = [torch.tensor([[10.0, 10, 50, 60]] * 5), torch.tensor([[5.0, 5, 30, 40]] * 5)]
    shapes = [(100, 120), (80, 90)]
    ours = heads.postprocess_detections(logits, reg, props, shapes)
    theirs = RoIHeads.postprocess_detections(heads, logits, reg, props, shapes)
    for a, b in zip(ours, theirs):
        for x, y in zip(a, b):
            assert torch.allclose(x, y)


def test_lr_schedule():
    kw = dict(warmup_iters=10, iters_per_epoch=10, epochs=9)
    assert lr_factor(0, **kw) == pytest.approx(0.001)
    assert lr_factor(10, **kw) == 1.0
    assert lr_factor(60, **kw) == pytest.approx(0.1)   # epoch 6 = 2/3 of 9
    assert lr_factor(80, **kw) == pytest.approx(0.01)  # epoch 8 = 8/9 of 9


def two_image_subset(tmp_path):
    doc = json.loads((DEMO / "annotations" / "train.json").read_text())
    keep = {im["id"] for im in doc["images"][:2]}
    doc["images"] = doc["images"][:2]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in keep]
    path = tmp_path / "two.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains_the_detector_and_predicts(tmp_path, loss):
    """Each loss inside the detector: two training steps (finite loss, a checkpoint), then the
    loss's own inference (BAGS merges its groups, sigmoid losses score per class) scored on val."""
    ann = two_image_subset(tmp_path)
    images = str(DEMO / "images" / "train")
    cfg = TrainConfig(train=str(ann), images=images, val=str(ann), out=str(tmp_path / "run"), loss=loss, epochs=1,
                      max_iters_per_epoch=2, warmup_iters=2, min_size=128, max_size=192, workers=0, threads=1,
                      seed=0, preset="cpu", device="cpu")
    metrics = train(cfg, progress=False)
    assert len(metrics["history"]) == 1 and math.isfinite(metrics["history"][0]["loss"])
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    box = metrics["eval"]["bbox"]
    assert 0.0 <= box["AP"] <= 1.0 and set(box) >= {"APr", "APc", "APf"}


@pytest.mark.slow
def test_mask_rcnn_trains_and_scores_masks(tmp_path):
    ann = two_image_subset(tmp_path)
    cfg = TrainConfig(train=str(ann), images=str(DEMO / "images" / "train"), val=str(ann), out=str(tmp_path / "run"),
                      masks=True, epochs=2, max_iters_per_epoch=2, warmup_iters=2, min_size=128, max_size=192,
                      workers=0, threads=1, seed=0, preset="cpu", device="cpu")
    metrics = train(cfg, progress=False)
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert all(math.isfinite(h["loss"]) for h in metrics["history"])
    assert 0.0 <= metrics["eval"]["segm"]["AP"] <= 1.0 and 0.0 <= metrics["eval"]["bbox"]["AP"] <= 1.0


@pytest.mark.slow
def test_training_loss_goes_down_and_resumes(tmp_path):
    ann = two_image_subset(tmp_path)
    weights = shared_path("..", "weights", "mobilenetv2_imagenet_features.pt")
    cfg = TrainConfig(train=str(ann), images=str(DEMO / "images" / "train"), out=str(tmp_path / "run"),
                      epochs=4, warmup_iters=2, lr=0.01, workers=0, threads=2, seed=0, preset="cpu",
                      backbone_weights=str(weights), device="cpu")
    metrics = train(cfg, progress=False)
    losses = [h["loss"] for h in metrics["history"]]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    assert (tmp_path / "run" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["preset_settings"]["min_size"] == 320 and saved["loss"] == "ce"
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 3
    # the folder holds a checkpoint: refused without resume, and with resume under another loss
    cfg.epochs = 5
    with pytest.raises(ValueError, match="holds a checkpoint of an earlier run: pass --resume"):
        train(cfg, progress=False)
    for field, value, shown in (("loss", "seesaw", "loss was 'ce' in the run there, is 'seesaw' now"),
                                ("lr", 0.02, "lr was 0.01 in the run there, is 0.02 now"),
                                ("epochs", 3, "epochs was 4 in the run there, is 3 now (epochs can only be raised")):
        with pytest.raises(ValueError, match=re.escape(shown)):
            train(dataclasses.replace(cfg, resume=True, **{field: value}), progress=False)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=False)["epoch"] == 3
    # asking for one more epoch resumes after the fourth instead of starting over; threads may change
    cfg.resume, cfg.threads = True, 1
    again = train(cfg, progress=False)
    assert [h["epoch"] for h in again["history"]] == [1, 2, 3, 4, 5]
    assert again["history"][:4] == metrics["history"]
    # without its checkpoint a run starts over, and its history with it
    (tmp_path / "run" / "checkpoint.pt").unlink()
    cfg.epochs, cfg.resume = 1, False
    fresh = train(cfg, progress=False)
    assert [h["epoch"] for h in fresh["history"]] == [1]
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 1


def test_counts_file_with_other_categories_is_refused(tmp_path):
    """--counts-from must list the training file's category ids in its order: the model's class c
    is the training file's c-th category."""
    from ltaug import load_dataset
    from ltaug.trainer.counts import load_counts

    train_path = DEMO / "annotations" / "train.json"
    doc = json.loads(train_path.read_text())
    ids = [c["id"] for c in doc["categories"]]
    doc["categories"] = doc["categories"][1:] + doc["categories"][:1]   # same ids, another order
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps(doc))
    doc["categories"] = json.loads(train_path.read_text())["categories"][:-1]
    doc["annotations"] = [a for a in doc["annotations"] if a["category_id"] != ids[-1]]
    fewer = tmp_path / "fewer.json"
    fewer.write_text(json.dumps(doc))
    train_ds = load_dataset(train_path)
    assert load_counts(str(train_path), train_ds).index.category_ids.tolist() == ids
    with pytest.raises(ValueError, match=f"{swapped}.*{train_path}.*category 1 is id {ids[1]} there and id {ids[0]}"):
        load_counts(str(swapped), train_ds)
    with pytest.raises(ValueError, match=f"category {len(ids)} is id none there and id {ids[-1]}"):
        load_counts(str(fewer), train_ds)
    cfg = TrainConfig(train=str(train_path), images=str(DEMO / "images" / "train"), out=str(tmp_path / "run"),
                      counts_from=str(swapped), epochs=1, workers=0, preset="cpu", device="cpu")
    with pytest.raises(ValueError, match="its categories differ") as err:
        train(cfg, progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "run" / "checkpoint.pt").exists()


def test_bad_config_is_a_value_error(tmp_path):
    for bad in (dict(sampler="x"), dict(sampler="repeat-factors"), dict(epochs=0), dict(lr=0.0), dict(preset="tpu"),
                dict(backbone="vgg"), dict(min_size=0), dict(min_size=600, max_size=500), dict(anchor_sizes=()),
                dict(anchor_sizes=(32, 64.5)), dict(backbone="resnet50", anchor_sizes=(32, 64)), dict(eval_every=-1),
                dict(eval_every=2)):
        cfg = TrainConfig(train="t.json", images=".", out=str(tmp_path), **bad)
        with pytest.raises(ValueError):
            cfg.validate()


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_split_the_epoch(tmp_path):
    """2 processes, gloo: DDP trains, and the ranks see disjoint shares that cover the epoch."""
    import subprocess
    import sys
    from collections import Counter

    from ltaug import load_dataset
    from ltaug.trainer.samplers import AspectRatioBatchSampler, RepeatFactorSampler

    script = tmp_path / "run.py"
    script.write_text(
        "import sys\nfrom ltaug.trainer.engine import TrainConfig, train\n"
        "cfg = TrainConfig(train=sys.argv[1], images=sys.argv[2], out=sys.argv[3], epochs=1, warmup_iters=2,\n"
        "                  workers=0, threads=1, seed=3, preset='cpu', device='cpu', record_samples=True,\n"
        "                  sampler='rfs', rfs_threshold=0.1)\ntrain(cfg, progress=False)\n")
    ann, images, out = DEMO / "annotations" / "train.json", DEMO / "images" / "train", tmp_path / "run"
    # --standalone: a rendezvous on a free port of localhost (the default port 29500 may be taken
    # by another run on the machine); a generous timeout for a loaded 2-core machine
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), str(ann), str(images), str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = [json.loads((out / f"samples_epoch1_rank{r}.json").read_text()) for r in (0, 1)]
    ds = load_dataset(ann)
    ids = ds.index.image_ids
    for r in (0, 1):
        sampler = RepeatFactorSampler.from_dataset(ds, 0.1, seed=3, num_replicas=2, rank=r)
        sampler.set_epoch(0)
        share = sum(AspectRatioBatchSampler.for_index(sampler, ds.index, 2), [])  # batch 2, drop_last
        assert Counter(seen[r]) == Counter(ids[share].tolist())
    full = RepeatFactorSampler.from_dataset(ds, 0.1, seed=3, num_replicas=1, rank=0).epoch_indices(0)
    assert len(seen[0]) == len(seen[1])
    if len(full) % 4 == 0:  # no padding, nothing dropped: the two shares are exactly the epoch
        assert Counter(seen[0]) + Counter(seen[1]) == Counter(ids[full].tolist())
    assert (out / "checkpoint.pt").exists() and len((out / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_overfits_one_image_to_a_high_ap(tmp_path):
    """120 steps on one image (4 objects, 2 classes), evaluated on that image every 10 steps: the
    model, the loss hook, the post-processing and the evaluator work together, and the model
    learns, from a near-zero AP50 after 10 steps to a converged one.

    Trainer numerics differ by CPU, so the bar is set where training has converged, not at one
    host's figure: at 60 steps AP50 was 0.92 on an Intel host, 0.67 and 0.81 on AMD EPYC ones
    (0.57 and 0.92 with ATEN_CPU_CAPABILITY=default), still on its way up. At 120 steps (the
    step decay at 80 and 107) it was 1.0 on both AMD code paths (default and AVX2) from step 90
    on, AP 0.76-0.85, loss 0.27-0.34; after 10 steps AP50 0.02-0.04."""
    doc = json.loads((DEMO / "annotations" / "train.json").read_text())
    image = next(im for im in doc["images"]
                 if sum(a["image_id"] == im["id"] and not a["iscrowd"] for a in doc["annotations"]) in (3, 4, 5))
    doc["images"] = [image]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
    ann = tmp_path / "one.json"
    ann.write_text(json.dumps(doc))
    cfg = TrainConfig(train=str(ann), images=str(DEMO / "images" / "train"), val=str(ann), out=str(tmp_path / "run"),
                      epochs=120, batch_size=1, lr=0.01, warmup_iters=10, workers=0, threads=2, preset="cpu",
                      eval_every=10, backbone_weights=str(shared_path("..", "weights", "mobilenetv2_imagenet_features.pt")),
                      device="cpu")
    metrics = train(cfg, progress=False)
    curve = [(h["epoch"], h["eval"]["bbox"]["AP50"]) for h in metrics["history"] if "eval" in h]
    box = metrics["eval"]["bbox"]
    assert curve[0][0] == 10 and curve[0][1] <= 0.2, curve  # the reference: barely trained
    assert box["AP50"] >= 0.9 and box["AP"] >= 0.5, (box, curve)
