"""trainer.data (DetectionDataset) and trainer.samplers on the bundled demo data and an ltaug-rebalanced file."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("albumentations")

from ltaug.io.dataset import Dataset
from ltaug.io.geometry import decode
from ltaug.io.jsonio import write_json_atomic
from ltaug.io.read import load_dataset
from ltaug.ops import Resample
from ltaug.rebalance.resample import (
    repeat_factor_document,
    resample,
    resample_counts,
)
from ltaug.rebalance.sampling import repeat_factors
from ltaug.trainer.data import DetectionDataset, collate_fn
from ltaug.trainer.samplers import (
    AspectRatioBatchSampler,
    ClassAwareSampler,
    RepeatFactorSampler,
    TrainingSampler,
    aspect_ratio_groups,
)


@pytest.fixture(scope="module")
def demo(demo_train_path):
    return load_dataset(demo_train_path)


def make(ds, images, **kw):
    kw.setdefault("train", False)
    kw.setdefault("min_size", 320)
    kw.setdefault("max_size", 512)
    return DetectionDataset(ds, images, **kw)


def json_targets(ds: Dataset, image_id: int):
    """Non-crowd boxes (xyxy) and category ids of one image, in file order, straight from the json."""
    anns = [a for a in ds.annotations if a["image_id"] == image_id and not a.get("iscrowd", 0)]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
    return anns, boxes, np.array([a["category_id"] for a in anns], dtype=np.int64)


def mask_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


# -- DetectionDataset -------------------------------------------------------------------------

def test_targets_match_the_json(demo, demo_train_images):
    data = make(demo, demo_train_images, masks=True)
    crowd_images = {a["image_id"] for a in demo.annotations if a.get("iscrowd")}
    assert len(data) == len(demo.images) and data.num_classes == len(demo.categories)
    seen_crowd = 0
    for i, im in enumerate(demo.images):
        image, t = data[i]
        h, w = image.shape[1:]
        assert image.dtype == torch.float32 and image.shape[0] == 3 and 0 <= image.min() and image.max() <= 1
        assert min(h, w) == 320 or max(h, w) == 512                    # torchvision's resize rule
        assert t["image_id"] == im["id"] and t["orig_size"].tolist() == [im["height"], im["width"]]
        sx, sy = w / im["width"], h / im["height"]
        anns, boxes, cats = json_targets(demo, im["id"])
        scaled = boxes * [sx, sy, sx, sy]
        keep = ((scaled[:, 2] - scaled[:, 0]) >= 1) & ((scaled[:, 3] - scaled[:, 1]) >= 1)
        assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
        np.testing.assert_allclose(t["boxes"].numpy(), scaled[keep], atol=1e-3)
        assert data.label_to_category_id[t["labels"].numpy()].tolist() == cats[keep].tolist()
        assert t["labels"].min() >= 1 and t["labels"].max() <= data.num_classes
        np.testing.assert_allclose(t["area"].numpy(), [a["area"] * sx * sy for a, k in zip(anns, keep) if k],
                                   rtol=1e-5)
        assert t["iscrowd"].tolist() == [0] * int(keep.sum())
        seen_crowd += im["id"] in crowd_images
        assert t["masks"].shape == (keep.sum(), h, w) and t["masks"].dtype == torch.uint8
        for box, mask in zip(t["boxes"].numpy(), t["masks"].numpy()):
            mb = mask_box(mask)                                # nearest-neighbour resize: 1 px + one source px
            assert (mb[:2] >= box[:2] - 1 - max(sx, sy)).all() and (mb[2:] <= box[2:] + 1 + max(sx, sy)).all()
    assert seen_crowd == len(crowd_images) > 0


def test_masks_at_native_size_are_pycocotools_masks_within_their_boxes(demo, demo_train_images):
    data = make(demo, demo_train_images, masks=True, min_size=None, max_size=None)
    within_1px = []
    for i, im in enumerate(demo.images[:12]):
        _, t = data[i]
        anns, boxes, _ = json_targets(demo, im["id"])
        np.testing.assert_allclose(t["boxes"].numpy(), boxes, atol=1e-3)
        for a, box, mask in zip(anns, boxes, t["masks"].numpy()):
            np.testing.assert_array_equal(mask, decode(a["segmentation"], im["height"], im["width"]))
            err = mask_box(mask) - box
            assert (err[:2] >= -0.5 - 1e-6).all() and (err[2:] <= 0.5 + 1e-6).all()   # never outside the box
            within_1px.append(np.abs(err).max() <= 1)
    # the rest are thin polygon spikes that pycocotools rasterises to no pixel (COCO's own data)
    assert np.mean(within_1px) > 0.85


def test_horizontal_flip_mirrors_image_boxes_and_masks(demo, demo_train_images):
    for size in (None, 320):
        plain = make(demo, demo_train_images, masks=True, min_size=size, max_size=size and 512)
        flipped = make(demo, demo_train_images, masks=True, train=True, hflip_prob=1.0, min_size=size,
                       max_size=size and 512)
        for i in (0, 5):
            (ia, ta), (ib, tb) = plain[i], flipped[i]
            width = ia.shape[2]
            mirrored = ta["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor([width, 0, width, 0])
            torch.testing.assert_close(tb["boxes"], mirrored, atol=1e-3, rtol=0)
            assert torch.equal(ta["labels"], tb["labels"])
            assert (ia.flip(-1) - ib).abs().max() <= 1.5 / 255       # resize rounding only
            differ = (ta["masks"].flip(-1) != tb["masks"]).float().mean()
            assert differ == 0 if size is None else differ < 0.01    # nearest-neighbour grid at edges


def test_rebalanced_file_repeats_load_the_same_pixels(demo, demo_train_images, tmp_path):
    out, result = resample(demo, Resample(method="rfs", threshold=0.1))
    path = out.save(tmp_path / "train_rfs.json")
    data = make(path, demo_train_images)
    assert len(data) == len(out.images) == result.counts.sum() > len(demo.images)
    np.testing.assert_array_equal(data.label_to_category_id, make(demo, demo_train_images).label_to_category_id)
    copies = {}
    for i, im in enumerate(data.dataset.images):
        copies.setdefault(im["ltaug"]["source_image_id"], []).append(i)
    repeated = [v for v in copies.values() if len(v) > 1]
    assert repeated
    for positions in repeated[:3]:
        (ia, ta), (ib, tb) = data[positions[0]], data[positions[-1]]
        assert torch.equal(ia, ib) and torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])
        assert ta["image_id"] != tb["image_id"]
    # counts for the losses are those of the training file, repeats included, crowd excluded
    cats = Counter(a["category_id"] for a in out.annotations if not a.get("iscrowd"))
    assert data.class_instance_counts().tolist() == [cats.get(c, 0) for c in data.label_to_category_id[1:]]
    assert (data.class_image_counts() <= data.class_instance_counts()).all()


def test_empty_images_degenerate_boxes_and_box_only_annotations(demo_doc, demo_train_images):
    im = demo_doc["images"][0]
    empty = {**im, "id": 10**9}                                # no annotations, same file
    demo_doc["images"].append(empty)
    scale = 320 / min(im["height"], im["width"])
    tiny = {"id": 10**12, "image_id": im["id"], "category_id": demo_doc["categories"][0]["id"], "iscrowd": 0,
            "bbox": [100, 100, 1.2, 30], "area": 36.0, "segmentation": [[100, 100, 101.2, 100, 101.2, 130, 100, 130]]}
    boxy = {"id": 10**12 + 1, "image_id": im["id"], "category_id": demo_doc["categories"][1]["id"], "iscrowd": 0,
            "bbox": [10, 20, 40, 30], "area": 1200.0}
    demo_doc["annotations"] += [tiny, boxy]
    data = make(Dataset.from_dict(demo_doc), demo_train_images, masks=True)
    assert 1.2 * scale < 1 <= 30 * scale
    _, t = data[0]
    n = len(t["boxes"])
    assert len(t["labels"]) == len(t["masks"]) == len(t["area"]) == len(t["iscrowd"]) == n
    assert n == sum(1 for a in demo_doc["annotations"] if a["image_id"] == im["id"] and not a.get("iscrowd")) - 1
    sx, sy = t["size"][1].item() / im["width"], t["size"][0].item() / im["height"]
    last_box, last_mask = t["boxes"][-1].numpy(), t["masks"][-1].numpy()  # the box-only one: its filled box
    np.testing.assert_allclose(last_box, np.array([10, 20, 50, 50]) * [sx, sy, sx, sy], atol=1e-3)
    assert np.abs(mask_box(last_mask) - last_box).max() <= 1

    image, t = data[len(data) - 1]
    assert t["image_id"] == 10**9
    assert t["boxes"].shape == (0, 4) and t["boxes"].dtype == torch.float32
    assert t["labels"].shape == (0,) and t["labels"].dtype == torch.int64
    assert t["masks"].shape == (0, *image.shape[1:]) and t["area"].shape == (0,)


def test_bad_image_files_are_named(demo_doc, demo_train_images):
    demo_doc["images"][0]["width"] += 1
    data = make(Dataset.from_dict(demo_doc), demo_train_images)
    with pytest.raises(ValueError, match=demo_doc["images"][0]["file_name"]):
        data[0]
    demo_doc["images"][1]["file_name"] = "missing.jpg"
    with pytest.raises(OSError, match="missing.jpg"):
        make(Dataset.from_dict(demo_doc), demo_train_images)[1]


def test_augmentation_is_seeded(demo, demo_train_images):
    data = make(demo, demo_train_images, train=True, min_size=64, max_size=128)

    data.reseed(7)
    first = [data[i][1]["boxes"][:1].clone() for i in range(8)]
    data.reseed(7)
    again = [data[i][1]["boxes"][:1].clone() for i in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    plain = make(demo, demo_train_images, min_size=64, max_size=128)
    flipped = [not torch.allclose(f, plain[i][1]["boxes"][:1]) for i, f in enumerate(first)]
    assert 0 < sum(flipped) < 8


def _first_batch(data, seed):
    loader = torch.utils.data.DataLoader(data, batch_size=6, sampler=TrainingSampler(data, seed=0), num_workers=2,
                                         collate_fn=collate_fn, generator=torch.Generator().manual_seed(seed))
    return next(iter(loader))


def test_dataloader_with_workers_is_deterministic(demo, demo_train_images):
    data = make(demo, demo_train_images, train=True, min_size=64, max_size=128)
    (images_a, targets_a), (images_b, targets_b) = _first_batch(data, 0), _first_batch(data, 0)
    assert all(torch.equal(a, b) for a, b in zip(images_a, images_b))
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(targets_a, targets_b))
    images_c, _ = _first_batch(data, 1)          # another loader seed: other worker seeds, other flips
    assert not all(torch.equal(a, c) for a, c in zip(images_a, images_c))


# -- samplers -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def samplers(demo):
    return {
        "rfs": lambda **kw: RepeatFactorSampler.from_dataset(demo, 0.1, **kw),
        "cas": lambda **kw: ClassAwareSampler(demo, **kw),
        "plain": lambda **kw: TrainingSampler(len(demo.images), **kw),
    }


@pytest.mark.parametrize("kind", ["rfs", "cas", "plain"])
def test_samplers_are_seeded_per_epoch(samplers, kind):
    a, b = samplers[kind](seed=3), samplers[kind](seed=3)
    a.set_epoch(2), b.set_epoch(2)
    assert list(a) == list(b) and len(a) == len(list(a))
    b.set_epoch(3)
    assert list(a) != list(b)
    c = samplers[kind](seed=4)
    c.set_epoch(2)
    assert list(a) != list(c)


@pytest.mark.parametrize("kind", ["rfs", "cas", "plain"])
@pytest.mark.parametrize("replicas", [2, 3])
def test_ranks_split_the_epoch_without_overlap(samplers, kind, replicas):
    full = samplers[kind](seed=1, num_replicas=1, rank=0)
    for epoch in range(3):
        full.set_epoch(epoch)
        epoch_list = full.epoch_indices(epoch).tolist()
        parts = []
        for rank in range(replicas):
            s = samplers[kind](seed=1, num_replicas=replicas, rank=rank)
            s.set_epoch(epoch)
            parts.append(list(s))
            assert len(parts[-1]) == len(s)
        assert len({len(p) for p in parts}) == 1
        pad = len(parts[0]) * replicas - len(epoch_list)
        assert 0 <= pad < replicas
        assert Counter(x for part in parts for x in part) == Counter(epoch_list + epoch_list[:pad])
        # interleaved slices of the padded list: position j goes to rank j % replicas
        assert [parts[j % replicas][j // replicas] for j in range(len(epoch_list))] == epoch_list
    assert full.num_replicas == 1 and full.rank == 0
    with pytest.raises(ValueError):
        samplers[kind](seed=1, num_replicas=2, rank=2)


def test_rfs_counts_average_to_the_repeat_factors(demo):
    factors = np.array([0.0, 0.3, 1.0, 1.5, 2.25, 3.9, 1.0, 0.5])
    sampler = RepeatFactorSampler(factors, seed=0)
    epochs = 2000
    total = sum(np.bincount(sampler.epoch_indices(e), minlength=factors.size) for e in range(epochs))
    np.testing.assert_allclose(total / epochs, factors, atol=0.05)
    assert total[0] == 0 and total[2] == total[6] == epochs       # integer factors are exact
    # each epoch repeats exactly what the offline tool writes for that seed and epoch (on the demo
    # every image holds a class seen in no other image, so all its RFS factors are equal: 1.73 at t=0.1)
    factors = repeat_factors(demo.index, threshold=0.1)
    offline = resample_counts(demo, Resample(method="rfs", seed=5, epochs=3, threshold=0.1))
    online = RepeatFactorSampler(factors, seed=5)
    for e in range(3):
        assert np.bincount(online.epoch_indices(e), minlength=factors.size).tolist() == offline.per_epoch[e].tolist()


def test_rfs_from_file_aligns_by_image_id(demo, demo_doc, tmp_path):
    # class-aware expected draws per image: they differ between images (the demo's RFS factors do not)
    result = resample_counts(demo, Resample(method="cas"))
    doc = repeat_factor_document(demo, result)
    assert np.unique(doc["repeat_factors"]).size > 5
    perm = np.random.default_rng(0).permutation(len(demo.images))
    shuffled = {**doc, "image_ids": doc["image_ids"][perm], "repeat_factors": doc["repeat_factors"][perm]}
    write_json_atomic(tmp_path / "rf.json", shuffled)
    sampler = RepeatFactorSampler.from_file(tmp_path / "rf.json", demo, seed=0)
    np.testing.assert_allclose(sampler.repeat_factors, result.expected_per_epoch, atol=1e-8)

    other = Dataset.from_dict({**demo_doc, "images": demo_doc["images"][1:],
                               "annotations": [a for a in demo_doc["annotations"]
                                               if a["image_id"] != demo_doc["images"][0]["id"]]})
    with pytest.raises(ValueError, match="1 file images not in the dataset"):
        RepeatFactorSampler.from_file(tmp_path / "rf.json", other, seed=0)
    write_json_atomic(tmp_path / "bad.json", {**doc, "format": "something-else"})
    with pytest.raises(ValueError, match="ltaug-repeat-factors/1"):
        RepeatFactorSampler.from_file(tmp_path / "bad.json", demo, seed=0)


def test_class_aware_sampler_picks_classes_uniformly():
    # one class per image: 60 images of class 1, 8 of class 2, 2 of class 3, 1 of class 4
    sizes = {1: 60, 2: 8, 3: 2, 4: 1}
    images, annotations = [], []
    for cat, n in sizes.items():
        for _ in range(n):
            i = len(images) + 1
            images.append({"id": i, "file_name": f"{i}.jpg", "width": 10, "height": 10})
            annotations.append({"id": i, "image_id": i, "category_id": cat, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    ds = Dataset.from_dict({"images": images, "annotations": annotations,
                            "categories": [{"id": c, "name": str(c)} for c in sizes]})
    sampler = ClassAwareSampler(ds, seed=0, samples_per_epoch=20000)
    assert len(sampler) == 20000
    picked = Counter(annotations[i]["category_id"] for i in sampler)
    np.testing.assert_allclose([picked[c] / 20000 for c in sizes], 0.25, atol=0.015)
    # within a class, images are uniform: the one image of class 4 gets all of its draws
    assert Counter(sampler)[len(images) - 1] == picked[4]


def test_training_sampler_is_a_permutation():
    s = TrainingSampler(31, seed=0)
    assert sorted(s) == list(range(31))
    assert list(TrainingSampler(31, seed=0, shuffle=False)) == list(range(31))


def test_aspect_ratio_groups_follow_torchvision_bins():
    # edges 0.5, 0.63, 0.79, 1, 1.26, 1.59, 2 (torchvision references, k = 3)
    ratios = [1 / 3, 0.6, 0.75, 0.9, 1.0, 4 / 3, 16 / 9, 2.25]
    assert aspect_ratio_groups([r * 480 for r in ratios], [480] * 8).tolist() == [0, 1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("replicas", [1, 2])
def test_aspect_ratio_batches(demo, replicas):
    ix = demo.index
    groups = aspect_ratio_groups(ix.image_widths, ix.image_heights)
    shares = []
    for rank in range(replicas):
        sampler = RepeatFactorSampler.from_dataset(demo, 0.3, seed=1, num_replicas=replicas, rank=rank)
        sampler.set_epoch(2)
        batches = list(AspectRatioBatchSampler(sampler, groups, 3))
        assert batches == list(AspectRatioBatchSampler(sampler, groups, 3))          # a function of the order
        order = list(sampler)
        assert len(batches) == len(order) // 3 and all(len(b) == 3 for b in batches)
        used = Counter(i for b in batches for i in b)
        assert not used - Counter(order) and sum((Counter(order) - used).values()) == len(order) % 3
        mixed = [b for b in batches if len({groups[i] for i in b}) > 1]
        assert len(mixed) <= len(set(groups.tolist())) - 1                             # only the epoch's leftovers
        assert batches[-len(mixed) or len(batches):] == mixed
        shares.append(len(batches))
    assert len(set(shares)) == 1                                                       # ranks step together
