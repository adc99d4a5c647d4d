"""Budget planner: targets, caps, and the plan checked against a direct recount of its output."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from test_sampling import make

from ltaug import load_dataset
from ltaug.cli.main import main
from ltaug.rebalance.planning import Target, make_plan, plan_repeats
from ltaug.rebalance.resample import expand_dataset


def recount_instances(ds, counts):
    """Slow reference: instances per category id after using image i counts[i] times."""
    per_img = {im["id"]: c for im, c in zip(ds.images, counts)}
    out = Counter()
    for a in ds.annotations:
        out[a["category_id"]] += per_img[a["image_id"]]
    return out


def test_targets_per_class():
    before = np.array([1.0, 4.0, 16.0, 0.0])
    req, tgt, cap = Target(min_instances=5).per_class(before)
    assert req.tolist() == [5, 5, 16, 0] and np.isinf(cap).all() and tgt.tolist() == req.tolist()
    req, tgt, _ = Target(exponent=0.5).per_class(before)
    assert req.tolist() == [4, 8, 16, 0]  # 16 * (n/16)^0.5
    req, tgt, cap = Target(min_instances=5, max_factor=2).per_class(before)
    assert tgt.tolist() == [2, 5, 16, 0] and cap.tolist() == [2, 8, 32, 0]
    for bad in (dict(), dict(min_instances=0), dict(exponent=1.5), dict(min_instances=3, max_factor=0.5)):
        with pytest.raises(ValueError):
            Target(**bad)


def test_min_instances_met_on_shared_train(coco_lt_train):
    ds = load_dataset(coco_lt_train)
    plan = make_plan(ds, Target(min_instances=30))
    counts = np.asarray(plan["repeats"])
    assert counts.min() >= 1  # every image kept
    ref = recount_instances(ds, counts)
    for row in plan["classes"]:
        assert row["after_instances"] == ref[row["id"]]
        assert row["after_instances"] >= 30 and row["status"] == "met"
    # the planner adds images only for classes below target: no class got repeats it did not need,
    # unless it shares an image with a class that did
    needy = {r["id"] for r in plan["classes"] if r["before_instances"] < 30}
    raw_cats = {}
    for a in ds.annotations:
        raw_cats.setdefault(a["image_id"], set()).add(a["category_id"])
    for im, c in zip(ds.images, counts):
        if c > 1:
            assert raw_cats[im["id"]] & needy


def test_cap_is_never_exceeded(coco_lt_train):
    ds = load_dataset(coco_lt_train)
    plan = make_plan(ds, Target(exponent=0.3, max_factor=4))
    ref = recount_instances(ds, plan["repeats"])
    for row in plan["classes"]:
        assert ref[row["id"]] <= 4 * row["before_instances"]
        assert row["status"] in ("met", "capped", "short")
        if row["status"] == "short":
            assert row["deficit"] == row["target"] - row["after_instances"] > 0
    assert plan["summary"]["paste_budget"] == sum(r["deficit"] for r in plan["classes"])


def test_short_when_co_occurrence_blocks():
    # the rare class 1 only appears together with class 2, which is capped at 2x
    ds = make([1, 2, 3], [(1, 1), (1, 2), (2, 2), (3, 2)])
    plan = make_plan(ds, Target(min_instances=5, max_factor=2))
    rows = {r["id"]: r for r in plan["classes"]}
    assert rows[2]["after_instances"] <= 6
    assert rows[1]["status"] == "capped" and rows[1]["target"] == 2 and rows[1]["after_instances"] == 2
    plan = make_plan(ds, Target(min_instances=5, max_factor=5))
    rows = {r["id"]: r for r in plan["classes"]}
    # 3 repeats of image 1 would need class 2 to reach 3 + 3 = 6 <= 15: met
    assert rows[1]["status"] == "met" and rows[1]["after_instances"] == 5


def test_round_robin_spreads_repeats():
    # class 1 in 4 images: to reach 12, each image should be repeated 3 times, not one image 9 times
    ds = make([1, 2, 3, 4, 5], [(1, 1), (2, 1), (3, 1), (4, 1)] + [(5, 2)] * 12)
    res = plan_repeats(ds.index, Target(min_instances=12))
    assert res["counts"].tolist() == [3, 3, 3, 3, 1]


def test_class_without_instances_is_reported():
    ds = make([1], [(1, 1)], n_cats=3)
    plan = make_plan(ds, Target(min_instances=4))
    rows = {r["id"]: r for r in plan["classes"]}
    assert rows[2]["status"] == "no instances" and rows[1]["after_instances"] == 4


def test_cli_plan_writes_plan_and_dataset(coco_lt_train, tmp_path, capsys):
    out, pj, png = tmp_path / "planned.json", tmp_path / "plan.json", tmp_path / "plan.png"
    assert main(["plan", str(coco_lt_train), "--min-instances", "20", "--max-factor", "8", "-o", str(out),
                 "--plan-json", str(pj), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "target" in text and "paste budget" in text
    plan = json.loads(pj.read_text())
    planned = load_dataset(out)
    assert len(planned.images) == sum(plan["repeats"])
    after = Counter(a["category_id"] for a in planned.annotations)
    for row in plan["classes"]:
        assert after[row["id"]] == row["after_instances"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # same input, same plan bytes
    pj2 = tmp_path / "plan2.json"
    assert main(["plan", str(coco_lt_train), "--min-instances", "20", "--max-factor", "8", "--plan-json", str(pj2)]) == 0
    assert pj2.read_bytes() == pj.read_bytes()


def test_cli_plan_needs_a_target(coco_lt_train, capsys):
    assert main(["plan", str(coco_lt_train), "--max-factor", "3"]) == 2
    assert "--min-instances" in capsys.readouterr().err


def test_expand_with_plan_counts_matches_after(coco_lt_train):
    ds = load_dataset(coco_lt_train)
    plan = make_plan(ds, Target(exponent=0.6, max_factor=6))
    out = expand_dataset(ds, plan["repeats"], op="plan", params={})
    assert out.index.instance_counts.sum() == plan["summary"]["after"]["instances"]
