"""What goes into a bank: classes by name or id, frequency bins as `ltaug stats` counts them, at most N
objects per class (seeded, unflagged / larger / less occluded first), recorded in meta.json; and
paste with a bank of some classes names, in one line, the classes it asks for and the bank lacks."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import DEMO

import ltaug
from ltaug import load_dataset
from ltaug.errors import SpecError
from ltaug.ops import Paste
from ltaug.pixels.bank import Bank, Flag, build_bank
from ltaug.pixels.bank_select import RULE, choose
from ltaug.stats.frequency import recount

TRAIN = DEMO / "annotations" / "train.json"
IMAGES = DEMO / "images" / "train"


@pytest.fixture(scope="module")
def demo_ds():
    return load_dataset(TRAIN)


@pytest.fixture(scope="module")
def full(demo_ds, tmp_path_factory):
    path = tmp_path_factory.mktemp("full") / "bank"
    build_bank(demo_ds, IMAGES, path, workers=1, progress=False)
    return Bank(path)


def rows_by_annotation(bank: Bank) -> dict[int, int]:
    return {int(a): i for i, a in enumerate(bank.objects["annotation_id"])}


def assert_same_objects(part: Bank, full: Bank):
    """Every object of ``part`` is the full bank's object of the same annotation, byte for byte
    (table fields other than offsets, crop and mask), in the full bank's order."""
    where = rows_by_annotation(full)
    rows = [where[int(a)] for a in part.objects["annotation_id"]]
    assert rows == sorted(rows)
    same = [f for f in full.objects.dtype.names if not f.endswith("_offset")]
    assert (part.objects[same] == full.objects[rows][same]).all()
    for i, r in enumerate(rows):
        for a, b in zip(part.get(i), full.get(r)):
            np.testing.assert_array_equal(a, b)


# -- classes and bins --------------------------------------------------------------------------------

def test_classes_by_name_and_id_bank_those_objects_only(demo_ds, full, tmp_path):
    out = tmp_path / "bank"
    s = ltaug.build_bank(TRAIN, IMAGES, out, classes="person, 3", workers=1)  # a name and an id, comma-separated
    bank = Bank(out)
    objects = Counter(a["category_id"] for a in demo_ds.annotations if not a["iscrowd"])
    assert bank.class_counts() == {c["id"]: objects[c["id"]] if c["id"] in (1, 3) else 0 for c in demo_ds.categories}
    assert_same_objects(bank, full)
    assert bank.selected_classes == {1, 3}
    sel = bank.meta["selection"]
    assert (sel["classes"], sel["category_ids"], sel["max_per_class"], sel["rule"]) == (["person", "3"], [1, 3], None,
                                                                                        None)
    total = sum(objects.values())
    assert s["left_out"] == bank.meta["counts"]["left_out"] == {"classes": total - objects[1] - objects[3],
                                                                "max_per_class": 0}
    assert s["source_objects"] == total == sum(c["source_objects"] for c in bank.meta["categories"])


def test_an_unknown_class_is_refused_in_one_line_naming_it(tmp_path, capsys):
    from ltaug.cli.main import main

    with pytest.raises(SpecError) as err:
        ltaug.build_bank(TRAIN, IMAGES, tmp_path / "bank", classes=["person", "persn", 999], workers=1)
    assert err.value.field == "classes"
    assert str(err.value) == "classes names no class of the dataset: persn, 999 (did you mean person?)"
    assert main(["bank", str(TRAIN), "--images", str(IMAGES), "-o", str(tmp_path / "bank"), "--classes", "persn"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ltaug bank: error: --classes names no class of the dataset: persn (did you mean person?)"]
    assert not (tmp_path / "bank").exists()


def test_bins_are_those_of_ltaug_stats(demo_ds, tmp_path):
    """``bins`` with the thresholds of `ltaug stats`; with ``classes`` too, the union."""
    stats = ltaug.class_stats(demo_ds, rare_max=2, common_max=5)
    in_bins = {c["id"] for c in stats["classes"] if c["bin"] in ("c", "f")}
    assert 0 < len(in_bins) < len(demo_ds.categories)
    out = tmp_path / "bank"
    ltaug.build_bank(demo_ds, IMAGES, out, bins="c,f", rare_max=2, common_max=5, classes=["giraffe"], workers=1)
    bank = Bank(out)
    giraffe = next(c["id"] for c in demo_ds.categories if c["name"] == "giraffe")
    assert giraffe not in in_bins
    assert bank.selected_classes == in_bins | {giraffe} == set(bank.objects["category_id"].tolist())
    sel = bank.meta["selection"]
    assert (sel["bins"], sel["bins_from"], sel["rare_max"], sel["common_max"], sel["bin_classes"]) == (
        ["c", "f"], "image_counts", 2, 5, len(in_bins))
    with pytest.raises(SpecError, match="bins takes r, c, f"):
        ltaug.build_bank(demo_ds, IMAGES, tmp_path / "b2", bins="rare", workers=1)
    with pytest.raises(SpecError, match="bins c: no class of the dataset is in these bins"):
        ltaug.build_bank(demo_ds, IMAGES, tmp_path / "b2", bins="c", workers=1)  # 10 / 100: every class is rare


def test_an_lvis_file_is_binned_by_its_own_frequency(demo_ds, tmp_path):
    """An LVIS file's stored ``frequency`` decides, as in `ltaug stats`, unless thresholds are given."""
    lvis = recount(demo_ds, rare_max=2, common_max=5)
    cats = [dict(c) for c in lvis.categories]
    cats[0]["frequency"] = "r"  # person: frequent by its counts, rare by the file
    lvis = lvis.replace(categories=cats)
    lvis.kind = "lvis"
    stored = {c["id"] for c in cats if c["frequency"] == "r"}
    counted = {c["id"] for c in ltaug.class_stats(lvis, rare_max=2, common_max=5)["classes"] if c["bin"] == "r"}
    assert cats[0]["id"] in stored - counted
    ltaug.build_bank(lvis, IMAGES, tmp_path / "file", bins="r", workers=1)
    ltaug.build_bank(lvis, IMAGES, tmp_path / "counted", bins="r", rare_max=2, common_max=5, workers=1)
    assert Bank(tmp_path / "file").selected_classes == stored
    assert Bank(tmp_path / "file").meta["selection"]["bins_from"] == "file"
    assert Bank(tmp_path / "counted").selected_classes == counted


# -- at most N per class ---------------------------------------------------------------------------

def test_max_per_class_keeps_n_unflagged_first_seeded_and_recorded(demo_ds, full, tmp_path):
    n = 3
    one = build_bank(demo_ds, IMAGES, tmp_path / "one", workers=1, progress=False, max_per_class=n, seed=0)
    assert build_bank(demo_ds, IMAGES, tmp_path / "two", workers=2, progress=False, max_per_class=n, seed=0)["workers"] == 2
    for name in ("meta.json", "objects.npy", "pixels.bin", "masks.bin"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    bank = Bank(tmp_path / "one")
    assert_same_objects(bank, full)  # measured in the first pass exactly as the cut measures them
    have = full.class_counts()
    assert bank.class_counts() == {c: min(k, n) for c, k in have.items()}
    flags, cats = np.asarray(full.objects["flags"]), np.asarray(full.objects["category_id"])
    kept = set(bank.objects["annotation_id"].tolist())
    chosen = np.array([int(a) in kept for a in full.objects["annotation_id"]])
    for cid in have:
        mine = cats == cid
        clean = mine & (flags == 0)
        if clean.sum() >= n:  # enough unflagged ones: only those
            assert not (chosen & mine & (flags != 0)).any(), cid
        else:  # every unflagged one, the rest flagged
            assert (chosen[clean]).all(), cid
    sel = bank.meta["selection"]
    assert (sel["max_per_class"], sel["seed"], sel["rule"], sel["category_ids"]) == (n, 0, RULE, None)
    assert one["left_out"] == {"classes": 0, "max_per_class": len(full) - len(bank)}
    other = build_bank(demo_ds, IMAGES, tmp_path / "seed1", workers=1, progress=False, max_per_class=n, seed=1)
    assert other["objects"] == one["objects"]
    assert set(Bank(tmp_path / "seed1").objects["annotation_id"].tolist()) != kept


def test_the_choice_prefers_visible_pixels(full):
    """Within a class's unflagged objects, an object is kept more often the more pixels it shows:
    over 400 seeds, the quarter showing most is kept far more often than the quarter showing least,
    and an object showing none only when nothing else is left."""
    cats, flags = np.asarray(full.objects["category_id"]), np.asarray(full.objects["flags"])
    area, occ = np.asarray(full.objects["area"]), np.asarray(full.objects["occlusion"])
    person = (cats == 1) & (flags == 0)
    visible = area[person] * (1 - occ[person])
    kept = np.zeros(person.sum())
    for seed in range(400):
        kept += choose(cats[person], area[person], occ[person], flags[person], 5, seed, int(Flag.EMPTY))
    order = np.argsort(visible)
    q = len(order) // 4
    assert kept[order[-q:]].mean() > 4 * kept[order[:q]].mean()
    hidden = np.ones_like(area[person])
    hidden[:2] = 0  # two objects with no visible pixel: never kept while others remain
    picks = choose(cats[person], hidden, np.zeros(person.sum()), flags[person], person.sum() - 2, 0, int(Flag.EMPTY))
    assert not picks[:2].any() and picks[2:].all()


def test_max_per_class_and_seed_are_checked(demo_ds, tmp_path):
    for kw, field in (({"max_per_class": 0}, "max_per_class"), ({"max_per_class": 2.5}, "max_per_class"),
                      ({"seed": -1}, "seed")):
        with pytest.raises(SpecError) as err:
            build_bank(demo_ds, IMAGES, tmp_path / "bank", workers=1, progress=False, **kw)
        assert err.value.field == field


def test_the_command_prints_what_it_left_out(tmp_path, capsys):
    from ltaug.cli.main import main

    out = tmp_path / "bank"
    assert main(["bank", str(TRAIN), "--images", str(IMAGES), "-o", str(out), "--bins", "c,f", "--rare-max", "2",
                 "--common-max", "5", "--classes", "giraffe", "--max-per-class", "2", "--workers", "1",
                 "--codec", "png"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    bank = Bank(out)
    left = bank.meta["counts"]["left_out"]
    assert bank.codec.name == "png" and len(bank) == sum(min(2, c["source_objects"]) for c in bank.meta["categories"]
                                                          if c["id"] in bank.selected_classes)
    assert f"({bank.meta['codec']['crops']}); flags:" in err[0]
    assert err[1] == (f"left out {left['classes'] + left['max_per_class']} of the 383 objects: {left['classes']} of "
                      f"classes not asked for, {left['max_per_class']} beyond --max-per-class 2")


# -- paste with a bank of some classes -----------------------------------------------------------------

@pytest.fixture(scope="module")
def partial(demo_ds, tmp_path_factory):
    path = tmp_path_factory.mktemp("partial") / "bank"
    build_bank(demo_ds, IMAGES, path, workers=1, progress=False, classes=["person", "car", "giraffe"])
    return Bank(path)


def test_budget_paste_names_the_classes_the_bank_lacks_in_one_line(demo_ds, partial, tmp_path):
    r = ltaug.run_steps(TRAIN, IMAGES, tmp_path / "out", [Paste(weighting="budget", target={"min_instances": 12},
                                                                bank=str(partial.path), seed=0)], workers=1)
    step = r.steps[0]
    plan = {int(k): v for k, v in step["plan"]["classes"].items()}
    lacking = {cid for cid, c in plan.items() if cid not in partial.selected_classes}
    assert lacking and all(plan[c]["in_selection"] is False and plan[c]["missing"] == {"no_bank_object": plan[c]["asked"]}
                           for c in lacking)
    assert all("in_selection" not in plan[c] for c in set(plan) - lacking)
    short = {e["category_id"]: e for e in step["shortfalls"]}
    for cid in lacking:
        assert short[cid]["got"] == 0 and short[cid]["in_selection"] is False
        assert short[cid]["why"] == "not in the bank: it was built without the class (its classes / bins)"
    lines = Paste.report_lines(step)
    names = {c["id"]: c["name"] for c in demo_ds.categories}
    first = [line for line in lines if "lacks" in line]
    assert len(first) == 1 and lines[0] == first[0]
    asked = sum(plan[c]["asked"] for c in lacking)
    assert first[0].startswith(f"the bank was built for some classes only and lacks {len(lacking)} of the classes "
                               f"the step asks for ({asked} objects): ")
    named = [e for e in short.values() if e["category_id"] in lacking][:20]
    assert all(f"{e['name']} (id {e['category_id']})" in first[0] for e in named)
    assert not any(f"  {names[c]} (id {c}): asked" in line for c in lacking for line in lines)  # not again per class


def test_inverse_paste_names_them_too_and_pastes_what_the_bank_holds(demo_ds, partial, tmp_path):
    r = ltaug.run_steps(TRAIN, IMAGES, tmp_path / "out", [Paste(weighting="inverse", objects=2,
                                                                bank=str(partial.path), seed=0)], workers=1)
    step = r.steps[0]
    assert set(map(int, step["added_per_class"])) <= partial.selected_classes and step["added_per_class"]
    unusable = {int(k): v for k, v in step["plan"]["not_pastable"].items()}
    lacking = {c for c in unusable if c not in partial.selected_classes}
    assert lacking and all(unusable[c]["in_selection"] is False for c in lacking)
    lines = Paste.report_lines(step)
    assert lines[0].startswith(f"the bank was built for some classes only and lacks {len(lacking)} of the classes "
                               f"the step asks for: ")
    names = {c["id"]: c["name"] for c in demo_ds.categories}
    never = [line for line in lines if "can never be pasted" in line]  # the bank's own classes, if any
    assert not any(f"{names[c]} (" in line for c in lacking for line in never)
    assert len(never) == int(bool(set(unusable) - lacking))
