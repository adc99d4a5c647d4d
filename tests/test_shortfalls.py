"""Never less than asked, silently: on the demo data, every per-class limit and ask that is not met
says which class, asked, got and why (run.json, console, report); parameters that change nothing
say so with the value that would; bank flags are shown by name.

Expected values are computed here from the files themselves (the input json, the output
annotations.json, the bank's object table), not copied from a run of the code under test."""
from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ltaug import load_dataset
from ltaug.api import run_steps
from ltaug.cli.main import main
from ltaug.ops import Paste, Resample
from ltaug.pixels.bank import Flag, build_bank
from ltaug.pixels.copy_paste import plan_paste
from ltaug.rebalance.planning import Target, make_plan
from ltaug.rebalance.resample import resample_counts
from ltaug.rebalance.sampling import repeat_factors, round_up
from ltaug.report.html import build_report, flag_names

DEFAULT_EXCLUDE = 55  # too_small | truncated | occluded | empty | clipped: Paste's default


@pytest.fixture(scope="module")
def demo(demo_train_path):
    return load_dataset(demo_train_path)


@pytest.fixture(scope="module")
def doc(demo_train_path):
    return json.loads(Path(demo_train_path).read_text())


def names_of(doc: dict) -> dict[int, str]:
    return {c["id"]: c["name"] for c in doc["categories"]}


def instances(doc: dict) -> Counter:
    return Counter(a["category_id"] for a in doc["annotations"])


def write_pipeline(tmp_path, demo_train_path, demo_train_images, steps: list, name="out") -> Path:
    """A YAML pipeline (json is YAML) with absolute paths, for `ltaug run`."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({"input": str(demo_train_path), "images": str(demo_train_images),
                                "output": str(tmp_path / name), "seed": 0, "steps": steps}))
    return path


def bank_flags_by_class(bank) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for cid, flags in zip(np.asarray(bank.objects["category_id"]).tolist(), np.asarray(bank.objects["flags"]).tolist()):
        out.setdefault(int(cid), []).append(int(flags))
    return out


def left_out_text(flags: list[int]) -> str:
    """'truncated 1, occluded 1': objects of a class per excluded flag, in Flag order."""
    parts = []
    for flag in Flag:
        n = sum(1 for f in flags if f & int(flag) & DEFAULT_EXCLUDE)
        if n:
            parts.append(f"{str(flag.name).lower()} {n}")
    return ", ".join(parts)


# -- 1. per-class limits over the whole pipeline -------------------------------------------------

def test_mosaic_after_a_budget_paste_is_reported_over_max_factor(tmp_path, demo_train_path, demo_train_images, doc,
                                                                 capsys):
    """paste (budget: min_instances 3, max_factor 4) then one mosaic: each class over 4 x its input
    count or under its minimum is in run.json's limits with asked, got, the per-step changes and
    why, and on the console one line per class (asked and got recounted here from the files)."""
    steps = [{"paste": {"weighting": "budget", "target": {"min_instances": 3, "max_factor": 4}, "max_overlap": 1.0,
                        "exclude": []}},
             {"mosaic": {"count": 1}}]
    config = write_pipeline(tmp_path, demo_train_path, demo_train_images, steps)
    assert main(["run", str(config), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    out = tmp_path / "out"
    record = json.loads((out / "run.json").read_text())
    result = json.loads((out / "annotations.json").read_text())
    before, names = instances(doc), names_of(doc)
    mosaic_images = {im["id"] for im in result["images"] if (im.get("ltaug") or {}).get("op") == "mosaic"}
    in_mosaics = Counter(a["category_id"] for a in result["annotations"] if a["image_id"] in mosaic_images)
    after_paste = Counter(a["category_id"] for a in result["annotations"] if a["image_id"] not in mosaic_images)
    got = in_mosaics + after_paste

    expected = {}
    for cid, n in before.items():
        high, low = math.floor(4 * n + 1e-9), min(3, math.floor(4 * n + 1e-9))
        if got[cid] > high:
            expected[cid] = ("over", high)
        elif got[cid] < low:
            expected[cid] = ("short", low)
    limits = record["limits"]
    entries = {e["category_id"]: e for e in limits["not_held"]}
    assert {cid: (e["status"], e["asked"]) for cid, e in entries.items()} == expected
    assert any(s == "over" for s, _ in expected.values()), "the scenario must push a class over its max_factor"
    check, = limits["checked"]
    assert (check["step"], check["op"], check["rule"]) == (0, "paste", "min_instances 3, max_factor 4")
    assert check["classes"] == len(before) and check["held"] == len(before) - len(expected)

    for cid, e in entries.items():
        n = before[cid]
        assert (e["name"], e["before"], e["got"]) == (names[cid], n, got[cid])
        paste_change, mosaic_change = after_paste[cid] - n, in_mosaics[cid]
        assert {c["op"]: c["change"] for c in e["changes"]} == {
            op: d for op, d in (("paste", paste_change), ("mosaic", mosaic_change)) if d}
        if e["status"] == "over":
            # paste never passes its own cap (its input is the pipeline's): the mosaic did it
            assert mosaic_change > 0 and n + paste_change <= e["asked"]
            assert e["rule"] == f"at most {e['asked']} (max_factor 4 x {n})"
            assert e["why"].endswith("mosaic adds copies of objects whatever the target")
        else:
            assert e["rule"] == f"at least {e['asked']} (min_instances 3, max_factor 4)"
        line = (f"    {e['status']}: {names[cid]} (id {cid}) {n} -> {got[cid]}, asked {e['rule']}: {e['why']}")
        assert line in err.splitlines(), line
    assert (f"  limits of step 0 (paste: min_instances 3, max_factor 4; on the input's counts): held for "
            f"{check['held']} of {len(before)} classes; {check['over']} over, {check['short']} short") in err
    assert (f"warning: limits of step 0 (paste: min_instances 3, max_factor 4) not held for {len(expected)} of "
            f"{len(before)} classes") in err

    page, _, _ = build_report(out, samples=0)  # the report's table: one row per class not held
    assert "<h2>Per-class limits: asked vs got</h2>" in page
    for cid, e in entries.items():
        assert (f"<tr><td class=n>{cid}</td><td>{names[cid]}</td><td>{e['status']}</td>") in page
        assert f"<td class=n>{e['before']}</td><td class=n>{e['asked']}</td><td class=n>{e['got']}</td>" in page


def test_a_class_losing_its_objects_to_occlusion_is_short_with_the_paste_removal_as_why(
        tmp_path, demo_train_path, demo_train_images, doc):
    """A class at or above min_instances that the paste's occlusion takes below it is short: asked
    = min_instances, got = what is left, and the why names the existing objects removed."""
    out = tmp_path / "out"
    r = run_steps(demo_train_path, demo_train_images, out,
                  [("paste", {"weighting": "budget", "target": {"min_instances": 3}, "max_overlap": 1.0,
                              "exclude": []})], workers=1)
    before = instances(doc)
    got = instances(json.loads((out / "annotations.json").read_text()))
    removed = {int(c): n for c, n in r.steps[0]["removed_per_class"].items()}
    lost = {cid for cid, n in before.items() if n >= 3 and got[cid] < 3}
    assert lost, "the scenario must take a class below min_instances by occlusion"
    entries = {e["category_id"]: e for e in r.limits["not_held"]}
    for cid in lost:
        e = entries[cid]
        assert (e["status"], e["asked"], e["got"]) == ("short", 3, got[cid])
        assert removed[cid] == before[cid] - got[cid]  # nothing pasted for it: the step asked for none
        assert e["why"] == (f"paste -{removed[cid]} ({removed[cid]} existing removed); paste (step 0) asked for none: "
                            f"{before[cid]} instances at its input, its target {before[cid]}")


def test_a_target_every_class_meets_holds_and_says_so(tmp_path, demo_train_path, demo_train_images, doc, capsys,
                                                      caplog):
    """min_instances 1: the paste budget asks for nothing (a warning naming the value that would),
    and the limits hold for every class: one line says so."""
    config = write_pipeline(tmp_path, demo_train_path, demo_train_images,
                            [{"paste": {"weighting": "budget", "target": {"min_instances": 1, "max_factor": 8}}}])
    with caplog.at_level(logging.WARNING, logger="ltaug"):
        assert main(["run", str(config), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    before = instances(doc)
    rarest = min(before.values())
    name = next(c["name"] for c in doc["categories"] if before[c["id"]] == rarest)
    note = (f"paste budget with min_instances 1, max_factor 8 asks for nothing: every class already has what it asks "
            f"(the rarest, {name}, has {rarest} instance{'s' if rarest != 1 else ''}); min_instances above {rarest} "
            f"would raise it")
    assert f"warning: {note}" in err
    assert note in [r.getMessage() for r in caplog.records if r.name == "ltaug.pixels.copy_paste"]
    assert (f"  limits of step 0 (paste: min_instances 1, max_factor 8; on the input's counts): held for all "
            f"{len(before)} classes") in err.splitlines()
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["limits"]["not_held"] == [] and record["steps_run"][0]["plan"]["note"] == note


def test_the_demo_pipeline_summarises_many_classes_compactly(tmp_path, demo_train_path, demo_train_images, doc, capsys):
    """examples/pipeline.yaml (rfs, paste budget 12 / max_factor 8, mosaic, mixup): more classes miss
    their limits than one line each would show; the console gives per status the first classes
    (input -> output, the bound) and run.json has every one, each with its changes adding up."""
    root = Path(__file__).resolve().parents[1]
    assert main(["run", str(root / "examples" / "pipeline.yaml"), "-o", str(tmp_path / "aug"), "--workers", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    record = json.loads((tmp_path / "aug" / "run.json").read_text())
    got = instances(json.loads((tmp_path / "aug" / "annotations.json").read_text()))
    before = instances(doc)
    entries = record["limits"]["not_held"]
    assert len(entries) > 12
    for e in entries:
        cid = e["category_id"]
        assert (e["before"], e["got"]) == (before[cid], got[cid])
        assert sum(c["change"] for c in e["changes"]) == got[cid] - before[cid]
        assert all(c["op"] in ("resample", "paste", "mosaic", "mixup") for c in e["changes"])
        assert e["asked"] == (math.floor(8 * before[cid] + 1e-9) if e["status"] == "over"
                              else min(12, math.floor(8 * before[cid] + 1e-9)))
    for status, bound in (("over", "max"), ("short", "min")):
        group = [e for e in entries if e["status"] == status]
        line = next(x for x in err if x.startswith(f"    {status} ({len(group)} classes): "))
        first = group[0]
        assert f"{first['name']} {first['before']} -> {first['got']} ({bound} {first['asked']}" in line
        assert f"... {len(group) - 8} more" in line if len(group) > 8 else "more" not in line


# -- 2. what a paste step asked per class and did not get -----------------------------------------

def test_classes_whose_bank_objects_are_all_flagged_name_the_flags(tmp_path, demo_train_path, demo_train_images, doc,
                                                                   demo_bank, capsys):
    """Budget min_instances 2 with the default --exclude: each class of 1 instance whose bank
    objects all carry an excluded flag gets 0 of the 1 asked, and says which flags, how many."""
    config = write_pipeline(tmp_path, demo_train_path, demo_train_images,
                            [{"paste": {"weighting": "budget", "target": {"min_instances": 2}, "max_overlap": 1.0,
                                        "bank": str(demo_bank.path)}}])
    assert main(["run", str(config), "--workers", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    report = json.loads((tmp_path / "out" / "run.json").read_text())["steps_run"][0]
    before, names, flags = instances(doc), names_of(doc), bank_flags_by_class(demo_bank)
    flagged = {cid: flags[cid] for cid, n in before.items()
               if n == 1 and all(f & DEFAULT_EXCLUDE for f in flags.get(cid, [])) and flags.get(cid)}
    assert len(flagged) >= 3
    short = {e["category_id"]: e for e in report["shortfalls"]}
    for cid, fl in flagged.items():
        e = short[cid]
        text = left_out_text(fl)
        why = f"its {len(fl)} bank object{'s' if len(fl) != 1 else ''} left out: {text}"
        assert (e["asked"], e["got"], e["missing"], e["in_bank"], e["why"]) == (1, 0, {"excluded": 1}, len(fl), why)
        assert e["left_out"] == {k: int(v) for k, v in (p.rsplit(" ", 1) for p in text.split(", "))}
        assert f"      {names[cid]} (id {cid}): asked 1, got 0: {why}" in err
    assert any(x.startswith(f"    {len(short)} of ") and "classes got fewer objects than asked" in x for x in err)
    for e in report["shortfalls"]:  # every object asked for is either in the output or has a reason
        assert e["asked"] - e["got"] == sum(e["missing"].values()) and "other" not in e["missing"]


def test_a_bank_lacking_classes_says_no_object_of_the_class_in_the_bank(tmp_path, demo_train_path, demo_train_images,
                                                                        doc):
    """A bank built from the images without the rarest classes' first three images: those classes get
    none of what the budget asks, with the reason in run.json (plan info and shortfalls), in the
    limits' why, and in the report."""
    before = instances(doc)
    rare_images = []
    for a in doc["annotations"]:
        if before[a["category_id"]] == 1 and a["image_id"] not in rare_images:
            rare_images.append(a["image_id"])
    dropped = set(rare_images[:3])
    subset = {**doc, "images": [im for im in doc["images"] if im["id"] not in dropped],
              "annotations": [a for a in doc["annotations"] if a["image_id"] not in dropped]}
    (tmp_path / "subset.json").write_text(json.dumps(subset))
    build_bank(load_dataset(tmp_path / "subset.json"), demo_train_images, tmp_path / "bank", workers=1, progress=False)
    in_bank = {a["category_id"] for a in subset["annotations"] if not a.get("iscrowd")}
    missing = {cid for cid, n in before.items() if n == 1 and cid not in in_bank}
    assert missing

    out = tmp_path / "out"
    r = run_steps(demo_train_path, demo_train_images, out,
                  [("paste", {"weighting": "budget", "target": {"min_instances": 2}, "bank": str(tmp_path / "bank"),
                              "exclude": [], "max_overlap": 1.0})], workers=1)
    step = r.steps[0]
    got = instances(json.loads((out / "annotations.json").read_text()))
    short = {e["category_id"]: e for e in step["shortfalls"]}
    limits = {e["category_id"]: e for e in r.limits["not_held"]}
    for cid in missing:
        plan = {int(k): v for k, v in step["plan"]["classes"].items()}[cid]  # int keys here, strings in run.json
        assert (plan["asked"], plan["in_bank"], plan["eligible"], plan["missing"]) == (1, 0, 0, {"no_bank_object": 1})
        e = short[cid]
        assert (e["asked"], e["got"], e["why"]) == (1, 0, "no object of the class in the bank")
        assert limits[cid]["status"] == "short" and (limits[cid]["asked"], limits[cid]["got"]) == (2, got[cid])
        assert "paste (step 0) asked 1, got 0: no object of the class in the bank" in limits[cid]["why"]
    lines = Paste.report_lines(step)
    for cid in missing:
        assert f"  {names_of(doc)[cid]} (id {cid}): asked 1, got 0: no object of the class in the bank" in lines
    page, _, _ = build_report(out, samples=0)
    for cid in missing:
        assert (f"<tr><td class=n>{cid}</td><td>{names_of(doc)[cid]}</td><td class=n>1</td><td class=n>0</td><td></td>"
                f"<td>no object of the class in the bank</td></tr>") in page


def test_objects_meant_for_an_unreadable_image_are_counted_as_skipped(tmp_path, demo, demo_train_path,
                                                                       demo_train_images, demo_bank):
    """With on_error 'skip', an image that cannot be decoded loses the objects planned for it: each
    class of its recipe (the plan is made before any image is read) counts them as skipped."""
    import shutil

    images = tmp_path / "images"
    shutil.copytree(demo_train_images, images)
    spec = Paste(weighting="budget", target={"min_instances": 12}, objects=6, max_overlap=1.0, bank=str(demo_bank.path),
                 seed=0)
    recipes, _ = plan_paste(demo, demo_bank, spec)
    victim = recipes[0]
    record = next(im for im in demo.images if im["id"] == victim["image_id"])
    (images / record["file_name"]).write_bytes(b"not an image")
    r = run_steps(demo_train_path, images, tmp_path / "out", [spec], workers=1, on_error="skip")
    step = r.steps[0]
    assert len(step["images_skipped"]) == 1
    lost = Counter(o["category_id"] for o in victim["objects"])
    assert {int(c): n for c, n in step["skipped_per_class"].items()} == dict(lost)
    short = {e["category_id"]: e for e in step["shortfalls"]}
    for cid, n in lost.items():
        assert short[cid]["missing"]["skipped"] == n
        assert f"{n} on unreadable images (skipped)" in short[cid]["why"]
        assert short[cid]["asked"] - short[cid]["got"] == sum(short[cid]["missing"].values())


def test_objects_too_small_or_beyond_the_images_are_counted_per_class(demo, demo_bank):
    """Plan info: each object asked for and not placed is counted under its class and reason; the
    per-class counts add up to the step's totals (no_room: no room or too small; unplaced_budget)."""
    tiny = Paste(weighting="budget", target={"min_instances": 3}, scale=(0.001, 0.001), seed=0)
    recipes, info = plan_paste(demo, demo_bank, tiny)
    assert recipes == []  # every object is under 2 px
    flags = bank_flags_by_class(demo_bank)
    for cid, c in info["classes"].items():
        usable = any(not f & DEFAULT_EXCLUDE for f in flags.get(cid, []))
        assert c["missing"] == ({"too_small": c["asked"]} if usable else {"excluded": c["asked"]})
    crowded = Paste(weighting="budget", target={"min_instances": 12}, objects=1, max_overlap=0.0, seed=0)
    recipes, info = plan_paste(demo, demo_bank, crowded)
    total = Counter()
    for c in info["classes"].values():
        total.update(c["missing"])
        assert c["planned"] + sum(c["missing"].values()) == c["asked"]
    assert total["too_few_images"] == info["unplaced_budget"] > 0
    assert total["no_room"] + total["too_small"] == info["no_room"] > 0
    placed = Counter(o["category_id"] for r in recipes for o in r["objects"])
    assert placed == Counter({cid: c["planned"] for cid, c in info["classes"].items() if c["planned"]})


def test_inverse_weighting_names_the_classes_it_can_never_paste(demo, demo_bank, doc):
    """uniform / inverse: the data's classes without an eligible bank object are listed, with why."""
    _, info = plan_paste(demo, demo_bank, Paste(weighting="inverse", objects=2, seed=0))
    flags = bank_flags_by_class(demo_bank)
    expected = {cid for cid, n in instances(doc).items() if not any(not f & DEFAULT_EXCLUDE for f in flags.get(cid, []))}
    assert set(info["not_pastable"]) == expected and expected
    for cid in expected:
        assert info["not_pastable"][cid]["in_bank"] == len(flags.get(cid, []))
    line, = Paste.report_lines({"plan": info, "params": {"weighting": "inverse"}})
    assert line.startswith(f"{len(expected)} classes of the data can never be pasted: ")
    first = next(iter(info["not_pastable"].values()))
    assert f"{first['name']} (its {first['in_bank']} bank object" in line


# -- 3. parameters that change nothing ------------------------------------------------------------

def rarest_by_images(doc: dict) -> tuple[str, int, int]:
    images = Counter(cid for cid, _ in {(a["category_id"], a["image_id"]) for a in doc["annotations"]})
    k = min(images.values())
    return next(c["name"] for c in doc["categories"] if images[c["id"]] == k), k, len(doc["images"])


def test_rfs_with_the_default_threshold_repeats_no_image_and_says_which_would(demo, doc, tmp_path, capsys, caplog):
    name, k, n = rarest_by_images(doc)
    share = k / n
    note = (f"rfs with threshold 0.001 repeats no image: the rarest class ({name}) is in {100 * share:.1f}% of images "
            f"({k} of {n}); a threshold above {round_up(share)} repeats its images ({round_up(4 * share)} uses each "
            f"of them twice)")
    with caplog.at_level(logging.WARNING, logger="ltaug"):
        drawn = resample_counts(demo, Resample(method="rfs"))
    assert drawn.note == note and (drawn.counts == 1).all()
    assert [r.getMessage() for r in caplog.records if r.name == "ltaug.rebalance.resample"] == [note]
    # the values it names do what it says, on this data
    pos = [i for i, c in enumerate(demo.index.category_names) if c == name][0]
    images_of = np.unique(demo.index.ann_image_pos[demo.index.ann_category_pos == pos])
    assert (repeat_factors(demo.index, threshold=float(round_up(share)))[images_of] > 1).all()
    assert (repeat_factors(demo.index, threshold=float(round_up(4 * share)))[images_of] >= 2).all()
    assert main(["resample", str(Path(demo.path)), "--method", "rfs", "-o", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    assert f"warning: {note}\n" in err
    run = run_steps(demo, Path(doc_images(demo)), tmp_path / "run", [("resample", {"method": "rfs"}),
                                                                     ("mosaic", {"count": 1})], workers=1)
    assert run.steps[0]["note"] == note


def doc_images(demo) -> Path:
    return Path(demo.path).parents[1] / "images" / "train"


def test_rfs_just_above_the_rarest_share_repeats_almost_nothing(demo, doc):
    name, k, n = rarest_by_images(doc)
    t = 1.01 * k / n
    images = {}
    for a in doc["annotations"]:
        images.setdefault(a["image_id"], set()).add(a["category_id"])
    per_class = Counter(cid for cid, _ in {(a["category_id"], a["image_id"]) for a in doc["annotations"]})
    extra = sum(max(max(1.0, math.sqrt(t / (per_class[c] / n))) for c in cats) - 1 for cats in images.values())
    drawn = resample_counts(demo, Resample(method="rfs", threshold=t))
    assert drawn.note is not None
    assert drawn.note.startswith(f"rfs with threshold {t:g} repeats ")
    assert f"{extra:.2g} extra images expected per epoch of {n}" in drawn.note
    assert f"a threshold of {round_up(4 * k / n)} uses each of its images twice" in drawn.note
    for threshold in (0.0, 0.1):  # plain epochs asked for; a threshold that repeats images
        assert resample_counts(demo, Resample(method="rfs", threshold=threshold)).note is None


def test_plans_that_change_nothing_say_which_value_would(demo, doc, capsys, caplog):
    before = instances(doc)
    rarest = min(before.values())
    first = next(c["name"] for c in doc["categories"] if before[c["id"]] == rarest)
    with caplog.at_level(logging.WARNING, logger="ltaug"):
        plan = make_plan(demo, Target(min_instances=rarest))
    note = (f"plan with min_instances {rarest} asks for nothing: every class already has what it asks (the rarest, "
            f"{first}, has {rarest} instance{'s' if rarest != 1 else ''}); min_instances above {rarest} would raise it")
    assert plan["note"] == note and (plan["repeats"] == 1).all()
    assert note in [r.getMessage() for r in caplog.records if r.name == "ltaug.rebalance.planning"]
    assert make_plan(demo, Target(min_instances=rarest + 1))["summary"]["paste_budget"] > 0 \
        or (make_plan(demo, Target(min_instances=rarest + 1))["repeats"] > 1).any()
    assert main(["plan", str(demo.path), "--min-instances", str(rarest), "--top", "1"]) == 0
    assert f"warning: {note}\n" in capsys.readouterr().err

    # max_factor 1 holds every class at its count: the largest class asking for more grows first
    asking = [(n, c["id"], c["name"]) for c in doc["categories"] if 0 < (n := before[c["id"]]) < 12]
    n, cid, name = max(asking, key=lambda t: (t[0], -[c["id"] for c in doc["categories"]].index(t[1])))
    factor = round_up((n + 1) / n)
    plan = make_plan(demo, Target(min_instances=12, max_factor=1.0))
    assert plan["note"] == (f"plan with min_instances 12, max_factor 1 asks for nothing: max_factor 1 caps every "
                            f"class that asks for more at its own count (e.g. {name}: {n} instances, asks 12); a "
                            f"max_factor of at least {factor} lets the target of {name} rise above its count")
    pos = demo.index.category_ids.tolist().index(cid)
    assert Target(min_instances=12, max_factor=float(factor)).per_class(demo.index.instance_counts)[1][pos] > n

    # caps that block every repeat: the factor named does repeat an image
    plan = make_plan(demo, Target(min_instances=12, max_factor=1.5))
    assert (plan["repeats"] == 1).all() and plan["note"].startswith(
        "plan with min_instances 12, max_factor 1.5 repeats no image: every image of a class under its target also "
        f"holds a class that one more copy would push over max_factor 1.5; {plan['summary']['paste_budget']} objects "
        "are left to copy-paste (paste budget); a max_factor of at least ")
    need = float(plan["note"].rsplit("at least ", 1)[1].split(" ")[0])
    assert (make_plan(demo, Target(min_instances=12, max_factor=need))["repeats"] > 1).any()
    assert "note" not in make_plan(demo, Target(min_instances=8, max_factor=6))  # a plan that repeats images


# -- 4. flags by name -------------------------------------------------------------------------------

def test_flags_are_shown_by_name_in_the_report(tmp_path, demo_train_path, demo_train_images):
    names = [n.lower() for n, f in Flag.__members__.items() if f & DEFAULT_EXCLUDE]
    assert flag_names(DEFAULT_EXCLUDE) == ",".join(names) == "too_small,truncated,occluded,empty,clipped"
    assert flag_names(Flag.OCCLUDED | Flag.TRUNCATED) == "truncated,occluded" and flag_names(0) == "none"
    out = tmp_path / "out"
    run_steps(demo_train_path, demo_train_images, out, [("paste", {"objects": 1})], workers=1)
    page, _, _ = build_report(out, samples=0)
    assert f"exclude={','.join(names)}" in page and "exclude=[" not in page
    record = json.loads((out / "run.json").read_text())  # a run.json that recorded the bit mask
    record["steps_run"][0]["params"] = {**record["steps_run"][0]["params"], "exclude_flags": DEFAULT_EXCLUDE}
    (out / "run.json").write_text(json.dumps(record))
    page, _, _ = build_report(out, samples=0)
    assert f"exclude_flags={','.join(names)}" in page and "exclude_flags=55" not in page
