"""Dirty COCO files, generated from the real demo annotations: each case plants one kind of dirt
real exports carry and checks its class in the policy table (warning: loaded and processed,
``--strict`` refuses; error: refused, ``skip`` drops it, ``fix`` repairs it or drops it), its
message, and for fixes the exact record after the fix and its entry in fixes.json."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import DEMO, ROOT

from ltaug import InputError, load_dataset
from ltaug.io import geometry
from ltaug.io.policy import KINDS, severity
from ltaug.io.validate import check_document, validate_document

MARK = "_case"  # an extra key on the planted record: kept by every reader, so the record can be found after a fix


def polygon_ann(doc, k=0):
    return [a for a in doc["annotations"] if isinstance(a.get("segmentation"), list) and not a.get("iscrowd")][k]


def image_of(doc, ann):
    return next(im for im in doc["images"] if im["id"] == ann["image_id"])


def marked(rec):
    rec[MARK] = 1
    return rec


def poly_box(ann):
    return [round(v, 6) for v in geometry.polygons_bbox(ann["segmentation"])]


def drop(rec, doc):
    return None


# -- warnings: loadable by pycocotools; processed as they are ----------------------------------------

def w_dup_same_image(doc):
    anns = doc["annotations"]
    k = next(k for k, x in enumerate(anns[:-1]) if anns[k + 1]["image_id"] == x["image_id"])
    a, b = anns[k], anns[k + 1]  # the later one is renumbered
    marked(b)["id"] = a["id"]
    return b, f"annotation id {a['id']}: id also used by", lambda r, d: {**r, "id": max_ann_id(d) + 1}


def w_dup_other_image(doc):
    a, b = doc["annotations"][0], doc["annotations"][-1]
    marked(b)["id"] = a["id"]
    return b, "id also used by annotations #0", lambda r, d: {**r, "id": max_ann_id(d) + 1}


def max_ann_id(doc):
    return max(a["id"] for a in doc["annotations"] if MARK not in a)


def shifted(dx=0.0, dy=0.0, dw=0.0, dh=0.0):
    def mutate(doc):
        a = marked(polygon_ann(doc, 2))
        im = image_of(doc, a)
        x, y, w, h = a["bbox"]
        if dx:
            x = -dx
        if dy:
            y = -dy
        if dw:
            w = im["width"] - x + dw
        if dh:
            h = im["height"] - y + dh
        a["bbox"] = [x, y, w, h]

        def expect(r, d):
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(im["width"], x + w), min(im["height"], y + h)
            return {**r, "bbox": [round(v, 6) for v in (x0, y0, x1 - x0, y1 - y0)]}
        return a, "extends outside image id", expect
    return mutate


def degenerate_box(w, h):
    def mutate(doc):
        a = marked(polygon_ann(doc, 3))
        a["bbox"] = [a["bbox"][0], a["bbox"][1], w, h]
        return a, "has non-positive width or height", lambda r, d: {**r, "bbox": poly_box(r)}
    return mutate


def w_zero_box_no_mask(doc):
    a = marked(polygon_ann(doc, 4))
    del a["segmentation"]
    a["bbox"] = [5, 5, 0, 0]
    return a, "has non-positive width or height", drop


def w_crowd_polygon(doc):
    a = marked(polygon_ann(doc, 5))
    a["iscrowd"] = 1
    im = image_of(doc, a)

    def expect(r, d):
        rle = geometry.rle_to_json(geometry.to_rle(r["segmentation"], im["height"], im["width"]))
        return {**r, "segmentation": rle}
    return a, "crowd region given as polygons", expect


def w_dup_and_outside(doc):
    a, b = polygon_ann(doc, 6), polygon_ann(doc, 7)
    marked(b)["id"] = a["id"]
    x, y, w, h = b["bbox"]
    b["bbox"] = [x, -3.0, w, h + y + 3.0]
    return b, "id also used by", lambda r, d: {**r, "id": max_ann_id(d) + 1, "bbox": [x, 0.0, w, round(h + y, 6)]}


WARNINGS = [
    (w_dup_same_image, "duplicate-id"), (w_dup_other_image, "duplicate-id"),
    (shifted(dx=5.0), "bbox-outside-image"), (shifted(dy=2.3), "bbox-outside-image"),
    (shifted(dw=7.5), "bbox-outside-image"), (shifted(dh=12.0), "bbox-outside-image"),
    (shifted(dx=3.0, dw=4.0), "bbox-outside-image"), (shifted(dy=1.5, dh=1.5), "bbox-outside-image"),
    (degenerate_box(0, 5), "bad-bbox"), (degenerate_box(5, 0), "bad-bbox"), (degenerate_box(-4, 9), "bad-bbox"),
    (w_zero_box_no_mask, "bad-bbox"), (w_crowd_polygon, "crowd-polygon"), (w_dup_and_outside, "duplicate-id"),
]


# -- errors: cannot be processed correctly ---------------------------------------------------------

def without(key):
    def mutate(doc):
        a = marked(polygon_ann(doc, 8))
        del a[key]
        return a, f"missing required key(s) {key}", drop
    return mutate


def e_image_missing_width(doc):
    im = marked(doc["images"][3])
    del im["width"]
    return im, "missing required key(s) width", drop


def with_value(key, value, needle, expect=drop):
    def mutate(doc):
        a = marked(polygon_ann(doc, 9))
        a[key] = value
        return a, needle, expect
    return mutate


def e_string_ann_id(doc):
    a = marked(polygon_ann(doc, 10))
    a["id"] = str(a["id"])
    return a, f"id '{a['id']}' is not an integer", lambda r, d: {**r, "id": max_ann_id(d) + 1}


def e_string_image_id(doc):
    im = marked(doc["images"][4])
    old = im["id"]
    im["id"] = f"img-{old}"
    for a in doc["annotations"]:
        if a["image_id"] == old:
            a["image_id"] = im["id"]
    new = max(i["id"] for i in doc["images"] if MARK not in i) + 1
    return im, f"id 'img-{old}' is not an integer", lambda r, d: {**r, "id": new}


def e_float_image_id(doc):
    im = marked(doc["images"][5])
    im["id"] = 3.5
    return im, "id 3.5 is not an integer", lambda r, d: {**r, "id": max(i["id"] for i in d["images"] if MARK not in i) + 1}


def e_dup_image(doc):
    im = marked(dict(doc["images"][6]))
    doc["images"].append(im)
    return im, f"image id {im['id']}: id also used by images #6", drop


def e_polygon_parts(parts_of, needle, keep):
    def mutate(doc):
        a = marked(polygon_ann(doc, 11))
        good = a["segmentation"][0]
        a["segmentation"] = parts_of(good)
        return a, needle, (lambda r, d: {**r, "segmentation": [good]}) if keep else drop
    return mutate


def e_rle(change, needle):
    def mutate(doc):
        a = marked(polygon_ann(doc, 12))
        im = image_of(doc, a)
        rle = {"size": [im["height"], im["width"]], "counts": [im["height"] * im["width"]]}
        change(rle)
        a["segmentation"] = rle
        return a, needle, drop
    return mutate


def e_file_name(name, needle):
    def mutate(doc):
        im = marked(doc["images"][7])
        im["file_name"] = name
        return im, needle, drop
    return mutate


def e_image_not_object(doc):
    doc["images"][8] = [doc["images"][8]["id"]]
    return None, "image #8 (no valid id): is a JSON list", None


def e_neg_unknown(doc):
    im = marked(doc["images"][9])
    im["neg_category_ids"] = [424242]
    return im, "neg_category_ids names unknown category id 424242", drop


def e_zero_width_image(doc):
    im = marked(doc["images"][10])
    im["width"] = 0
    return im, "width/height must be positive integers", drop


def e_unhashable_image_id(doc):
    return with_value("image_id", [1, 2], "image_id [1, 2] is not among the images")(doc)


ERRORS = [
    (without("image_id"), "missing-key"), (without("bbox"), "missing-key"), (without("category_id"), "missing-key"),
    (e_image_missing_width, "missing-key"),
    (with_value("image_id", 987654321, "image_id 987654321 is not among the images"), "unknown-image"),
    (e_unhashable_image_id, "unknown-image"),
    (with_value("category_id", 424242, "category_id 424242 is not among the categories"), "unknown-category"),
    (e_string_ann_id, "non-integer-id"), (e_string_image_id, "non-integer-id"), (e_float_image_id, "non-integer-id"),
    (e_dup_image, "duplicate-image-id"),
    (with_value("bbox", [1, 2, 3], "bbox must be 4 finite numbers"), "bad-value"),
    (with_value("bbox", [1, "2", 3, 4], "bbox must be 4 finite numbers"), "bad-value"),
    (with_value("iscrowd", 2, "iscrowd must be 0 or 1"), "bad-value"),
    (with_value("area", -3.0, "area must be a non-negative number"), "bad-value"),
    (with_value("segmentation", "polygon", "segmentation must be a polygon list or an RLE object"), "bad-value"),
    (e_polygon_parts(lambda g: [g[:4]], "has 2 point(s), needs at least 3", False), "bad-polygon"),
    (e_polygon_parts(lambda g: [g, g[:4]], "polygon part 1 has 2 point(s)", True), "bad-polygon"),
    (e_polygon_parts(lambda g: [g[:7], g], "polygon part 0 has an odd number of coordinates", True), "bad-polygon"),
    (e_polygon_parts(lambda g: [g, ["x", 1, 2, 3, 4, 5]], "polygon part 1 is not a list of finite numbers", True),
     "bad-polygon"),
    (e_rle(lambda r: r.update(size=[r["size"][0] + 1, r["size"][1]]), "differs from the image's"), "rle-size-mismatch"),
    (e_rle(lambda r: r.update(counts=[-1, r["counts"][0] + 1]), "RLE counts must be non-negative"), "bad-rle"),
    (e_rle(lambda r: r.update(counts=[5]), "RLE counts sum to 5"), "bad-rle"),
    (e_rle(lambda r: r.update(counts="\x01\x02garbage"), "RLE"), "bad-rle"),
    (e_file_name("../outside.jpg", "file_name '../outside.jpg'"), "unsafe-file-name"),
    (e_file_name("/etc/passwd", "file_name '/etc/passwd'"), "unsafe-file-name"),
    (e_image_not_object, "bad-value"), (e_neg_unknown, "unknown-category"), (e_zero_width_image, "bad-value"),
]


def find(doc, section="annotations"):
    return [r for r in doc[section] if isinstance(r, dict) and MARK in r]


def plant(doc, mutate, tmp_path):
    before = json.loads(json.dumps(doc))
    rec, needle, expect = mutate(doc)
    path = tmp_path / "dirty.json"
    path.write_text(json.dumps(doc))
    return before, rec, needle, expect, path


def section_of(doc, rec):
    return "images" if any(r is rec for r in doc["images"]) else "annotations"


@pytest.mark.parametrize("mutate,kind", WARNINGS, ids=[f"{k}-{i}" for i, (_, k) in enumerate(WARNINGS)])
def test_a_warning_is_processed_refused_by_strict_and_fixed_exactly(tmp_path, demo_doc, mutate, kind):
    assert severity(kind) == "warning"
    _, rec, needle, expect, path = plant(demo_doc, mutate, tmp_path)
    ds = load_dataset(path)  # processed as it is
    assert (kind, "warned") in {(f.kind, f.action) for f in ds.findings}
    assert any(needle in f.message for f in ds.findings if f.kind == kind), [f.message for f in ds.findings]
    assert len(ds.annotations) == len(demo_doc["annotations"])  # nothing dropped
    with pytest.raises(InputError, match="made an error by --strict|--on-error"):
        load_dataset(path, strict=True)
    fixed = load_dataset(path, on_error="fix")
    assert not check_document(fixed.data)
    got = find(fixed.data)
    want = expect({k: v for k, v in rec.items()}, demo_doc)
    if want is None:
        assert got == [] and any(f.action == "skipped" and f.kind == kind for f in fixed.findings)
    else:
        assert len(got) == 1
        assert got[0]["ltaug_fix"]["kinds"][0] == kind
        assert {k: v for k, v in got[0].items() if k != "ltaug_fix"} == want
        assert any(f.action == "fixed" and f.after == want for f in fixed.findings)


@pytest.mark.parametrize("mutate,kind", ERRORS, ids=[f"{k}-{i}" for i, (_, k) in enumerate(ERRORS)])
def test_an_error_is_refused_skipped_or_fixed_exactly(tmp_path, demo_doc, mutate, kind):
    assert severity(kind) == "error"
    _, rec, needle, expect, path = plant(demo_doc, mutate, tmp_path)
    with pytest.raises(InputError) as err:
        load_dataset(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and needle in message, message
    skipped = load_dataset(path, on_error="skip")
    assert skipped.skipped[kind] >= 1 and not check_document(skipped.data)
    assert any(f.kind == kind and f.action == "skipped" and needle in f.message for f in skipped.findings)
    fixed = load_dataset(path, on_error="fix")
    assert not check_document(fixed.data)
    if rec is None:  # not even a record: dropped
        assert any(f.kind == kind and f.action == "skipped" for f in fixed.findings)
        return
    section = section_of(demo_doc, rec)
    got = find(fixed.data, section)
    want = expect(dict(rec), demo_doc)
    if want is None:
        assert got == [] and any(f.kind == kind and f.action == "skipped" for f in fixed.findings)
    else:
        assert len(got) == 1 and {k: v for k, v in got[0].items() if k != "ltaug_fix"} == want
        assert got[0]["ltaug_fix"]["kinds"] == [kind]


def test_an_image_whose_id_is_renumbered_keeps_its_annotations(tmp_path, demo_doc):
    old = demo_doc["images"][4]["id"]
    n = sum(a["image_id"] == old for a in demo_doc["annotations"])
    _, rec, _, _, path = plant(demo_doc, e_string_image_id, tmp_path)
    fixed = load_dataset(path, on_error="fix")
    new = find(fixed.data, "images")[0]["id"]
    assert sum(a["image_id"] == new for a in fixed.annotations) == n > 0
    assert find(fixed.data, "images")[0]["ltaug_fix"]["old_id"] == f"img-{old}"


def test_fine_records_are_no_problem(tmp_path, demo_doc):
    """An image without annotations, a category nobody uses, a file name in a sub-folder, a box
    overshooting by less than the 1 px tolerance: no problem at all."""
    demo_doc["images"].append({**demo_doc["images"][0], "id": 10**9, "file_name": "sub/dir/new.jpg"})
    demo_doc["categories"].append({"id": 10**6, "name": "unused thing"})
    a = polygon_ann(demo_doc, 0)
    im = image_of(demo_doc, a)
    a["bbox"] = [a["bbox"][0], -0.9, a["bbox"][2], a["bbox"][3]]
    assert not check_document(demo_doc)
    for kind in ("image-without-annotations", "unused-category", "file-name-subfolder"):
        assert KINDS[kind].severity == "fine"
    assert im["width"] > 0


def test_fatal_problems_refuse_even_fix(tmp_path, demo_doc):
    demo_doc["categories"][0]["frequency"] = "x"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(demo_doc))
    for mode in ("raise", "skip", "fix"):
        with pytest.raises(InputError, match="frequency 'x' is not one of r, c, f"):
            load_dataset(path, on_error=mode)
    r = ltaug_cli("validate", path, "--fix", "-o", tmp_path / "clean.json")
    assert r.returncode == 1 and "cannot be fixed" in r.stderr and not (tmp_path / "clean.json").exists()


def ltaug_cli(*args):
    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, capture_output=True, text=True)


def the_users_file(demo_doc, tmp_path):
    """The issue's file: two annotation ids used twice, one box starting 1.3 px above its image."""
    anns = demo_doc["annotations"]
    anns[5]["id"], anns[40]["id"] = anns[4]["id"], anns[39]["id"]
    x, y, w, h = anns[60]["bbox"]
    anns[60]["bbox"] = [x, -2.3, w, h + y + 2.3]
    path = tmp_path / "users.json"
    path.write_text(json.dumps(demo_doc))
    return path


def test_every_read_only_command_runs_on_the_users_file_and_strict_refuses(tmp_path, demo_doc):
    path = the_users_file(demo_doc, tmp_path)
    commands = [["stats", path], ["plan", path, "--min-instances", "3"],
                ["recount", path, "-o", tmp_path / "recount.json"],
                ["resample", path, "--method", "rfs", "--threshold", "0.3", "-o", tmp_path / "rfs.json"],
                ["convert", path, "--to", "lvis", "-o", tmp_path / "lvis.json"]]
    for cmd in commands:
        r = ltaug_cli(*cmd)
        assert r.returncode == 0, (cmd, r.stderr)
        warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]
        assert [ln.split(": ")[2] for ln in warnings] == ["duplicate-id", "bbox-outside-image"], r.stderr
        assert "2 record(s) processed as they are" in warnings[0]
        r = ltaug_cli(*cmd, "--strict")
        assert r.returncode == 1 and "made an error by --strict" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = ltaug_cli("validate", path)
    assert r.returncode == 0 and "0 error(s), 3 warning(s)" in r.stdout, r.stdout


def test_validate_fix_writes_a_clean_copy_that_the_references_and_the_tool_take(tmp_path, demo_doc):
    path = the_users_file(demo_doc, tmp_path)
    demo_doc["annotations"][70]["category_id"] = 424242  # and an error
    path.write_text(json.dumps(demo_doc))
    clean = tmp_path / "clean.json"
    r = ltaug_cli("validate", path, "--fix", "-o", clean, "--images", DEMO / "images" / "train")
    assert r.returncode == 1, r.stderr  # the input has an error; the copy is written
    report = json.loads((tmp_path / "clean.fixes.json").read_text())
    kinds = sorted((x["kind"], x["action"]) for x in report["records"])
    assert ("duplicate-id", "fixed") in kinds and ("bbox-outside-image", "fixed") in kinds
    assert ("unknown-category", "skipped") in kinds and report["skipped"] >= 1
    anns = demo_doc["annotations"]
    assert [m["old"] for m in report["id_map"]["annotations"]] == [anns[4]["id"], anns[39]["id"]]
    new_ids = [m["new"] for m in report["id_map"]["annotations"]]
    assert new_ids == [max(a["id"] for a in anns) + 1, max(a["id"] for a in anns) + 2]
    assert ltaug_cli("validate", clean, "--strict", "--images", DEMO / "images" / "train").returncode == 0
    doc = json.loads(clean.read_text())
    assert not validate_document(doc)
    assert len(doc["annotations"]) == len(demo_doc["annotations"]) - 1
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])
    from pycocotools.coco import COCO

    assert len(COCO(str(clean)).anns) == len(doc["annotations"])
    out = tmp_path / "pasted"
    r = ltaug_cli("paste", clean, "--images", DEMO / "images" / "train", "-o", out, "--workers", "1")
    assert r.returncode == 0, r.stderr
    r = ltaug_cli("paste", path, "--images", DEMO / "images" / "train", "-o", tmp_path / "p2", "--workers", "1",
                  "--on-error", "fix")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "p2" / "fixes.json").read_text())["fixed"] >= 3


# -- more warnings: found on loading ---------------------------------------------------------------

def w_three_share_an_id(doc):
    a, b, c = doc["annotations"][10], doc["annotations"][20], doc["annotations"][30]
    b["id"] = a["id"]
    marked(c)["id"] = a["id"]
    return c, "id also used by annotations #10", lambda r, d: {**r, "id": max_ann_id(d) + 2}


def w_outside_every_side(doc):
    a = marked(polygon_ann(doc, 13))
    im = image_of(doc, a)
    a["bbox"] = [-4.0, -6.0, im["width"] + 10.0, im["height"] + 12.0]
    return a, "extends outside image id", lambda r, d: {**r, "bbox": [0.0, 0.0, float(im["width"]),
                                                                      float(im["height"])]}


def w_crowd_rle_zero_box(doc):
    a = marked(next(x for x in doc["annotations"] if x.get("iscrowd")))
    im = image_of(doc, a)
    box = [round(float(v), 6) for v in geometry.segmentation_bbox(a["segmentation"], im["height"], im["width"])]
    a["bbox"] = [a["bbox"][0], a["bbox"][1], 0, 0]
    return a, "has non-positive width or height", lambda r, d: {**r, "bbox": box}


def w_crowd_two_polygons(doc):
    a = marked(polygon_ann(doc, 14))
    im = image_of(doc, a)
    part = a["segmentation"][0]
    a["segmentation"] = [part, [v + 1.0 for v in part]]
    a["iscrowd"] = 1

    def expect(r, d):
        rle = geometry.rle_to_json(geometry.to_rle(r["segmentation"], im["height"], im["width"]))
        return {**r, "segmentation": rle}
    return a, "crowd region given as polygons", expect


def w_dup_other_category(doc):
    a = doc["annotations"][2]
    b = marked(next(x for x in doc["annotations"][3:] if x["category_id"] != a["category_id"]))
    b["id"] = a["id"]
    return b, "id also used by annotations #2", lambda r, d: {**r, "id": max_ann_id(d) + 1}


MORE_WARNINGS = [(w_three_share_an_id, "duplicate-id"), (w_outside_every_side, "bbox-outside-image"),
             (w_crowd_rle_zero_box, "bad-bbox"), (w_crowd_two_polygons, "crowd-polygon"),
             (w_dup_other_category, "duplicate-id")]


@pytest.mark.parametrize("mutate,kind", MORE_WARNINGS, ids=[f"{k}-{i}" for i, (_, k) in enumerate(MORE_WARNINGS)])
def test_more_warnings(tmp_path, demo_doc, mutate, kind):
    test_a_warning_is_processed_refused_by_strict_and_fixed_exactly(tmp_path, demo_doc, mutate, kind)


# -- warnings found by `ltaug validate` (masks rasterised), fixed by `validate --fix` -------------------

def area_times(factor):
    def mutate(doc):
        a = marked(polygon_ann(doc, 15))
        im = image_of(doc, a)
        a["area"] = a["area"] * factor
        return a, "but the mask covers", lambda r, d: {
            **r, "area": float(geometry.mask_area(r["segmentation"], im["height"], im["width"]))}
    return mutate


def box_moved(dx, scale=1.0):
    def mutate(doc):
        a = marked(polygon_ann(doc, 16))
        im = image_of(doc, a)
        x, y, w, h = a["bbox"]
        if dx:  # to the other side of the image, inside it
            x = 0.0 if x + w / 2 > im["width"] / 2 else im["width"] - w
        a["bbox"] = [x, y, min(w * scale, im["width"] - x), min(h * scale, im["height"] - y)]
        return a, "but the mask's box is", lambda r, d: {**r, "bbox": poly_box(r)}
    return mutate


def w_area_and_box(doc):
    a = marked(polygon_ann(doc, 17))
    im = image_of(doc, a)
    x, y, w, h = a["bbox"]
    a["area"], a["bbox"] = a["area"] * 4, [x + w, y, w, h]
    return a, "", lambda r, d: {**r, "bbox": poly_box(r),
                                "area": float(geometry.mask_area(r["segmentation"], im["height"], im["width"]))}


MASK_WARNINGS = [(area_times(2.0), "area-mismatch"), (area_times(0.3), "area-mismatch"), (area_times(0), "area-mismatch"),
                 (box_moved(300), "bbox-mask-mismatch"), (box_moved(0, 3.0), "bbox-mask-mismatch"),
                 (w_area_and_box, "area-mismatch")]


@pytest.mark.parametrize("mutate,kind", MASK_WARNINGS, ids=[f"{k}-{i}" for i, (_, k) in enumerate(MASK_WARNINGS)])
def test_mask_level_warnings_are_found_by_validate_and_fixed_by_validate_fix(tmp_path, demo_doc, mutate, kind):
    _, rec, needle, expect, path = plant(demo_doc, mutate, tmp_path)
    assert load_dataset(path).findings == []  # loading does not rasterise masks
    problems = [p for p in validate_document(json.loads(path.read_text())) if p.kind == kind]
    assert len(problems) == 1 and needle in problems[0].message and severity(kind) == "warning"
    r = ltaug_cli("validate", path, "--fix", "-o", tmp_path / "clean.json")
    assert r.returncode == 0, r.stderr  # warnings only
    doc = json.loads((tmp_path / "clean.json").read_text())
    assert not validate_document(doc)
    got = find(doc)
    assert len(got) == 1 and {k: v for k, v in got[0].items() if k != "ltaug_fix"} == expect(dict(rec), demo_doc)


FINE = {
    "image without annotations": lambda d: d["images"].append({**d["images"][0], "id": 10**9}),
    "unused category": lambda d: d["categories"].append({"id": 10**6, "name": "unused thing"}),
    "file name in a sub-folder": lambda d: d["images"][0].update(file_name="sub/dir/" + d["images"][0]["file_name"]),
    "box 0.9 px above the image": lambda d: polygon_ann(d, 0).update(
        bbox=[polygon_ann(d, 0)["bbox"][0], -0.9, *polygon_ann(d, 0)["bbox"][2:]]),
    "unknown keys at every level": lambda d: [d.update(extra=1), d["images"][0].update(extra=2),
                                              d["annotations"][0].update(extra=3), d["categories"][0].update(extra=4)],
}


@pytest.mark.parametrize("name", FINE)
def test_fine_records_load_without_a_finding_and_are_kept(tmp_path, demo_doc, name):
    FINE[name](demo_doc)
    path = tmp_path / "fine.json"
    path.write_text(json.dumps(demo_doc))
    ds = load_dataset(path, strict=True)
    assert ds.findings == [] and ds.data == demo_doc


def test_validate_fix_of_a_dirty_lvis_file_loads_in_lvis_api_and_the_tool_runs_on_it(tmp_path, demo_doc, monkeypatch):
    """An LVIS-style file with the same dirt: the fixed copy loads in lvis-api, and resample, bank
    and a pipeline (resample + paste) run on it."""
    import numpy as np
    from conftest import shared_path
    from lvis import LVIS as LvisApi
    from lvis_style import build_lvis_style

    doc = build_lvis_style(demo_doc, shared_path("lvis-meta", "lvis_v1_train_cat_info.json"))
    anns = doc["annotations"]
    anns[5]["id"] = anns[4]["id"]
    x, y, w, h = anns[60]["bbox"]
    anns[60]["bbox"] = [x, -2.3, w, h + y + 2.3]
    dirty, clean = tmp_path / "dirty_lvis.json", tmp_path / "clean_lvis.json"
    dirty.write_text(json.dumps(doc))
    r = ltaug_cli("validate", dirty, "--fix", "-o", clean)
    assert r.returncode == 0, r.stderr  # warnings only
    monkeypatch.setattr(np, "float", float, raising=False)  # lvis-api 0.5.3 names np.float (gone in numpy 2)
    assert len(LvisApi(str(clean)).anns) == len(anns)
    images = DEMO / "images" / "train"
    for cmd in (["resample", clean, "--method", "rfs", "--threshold", "0.3", "-o", tmp_path / "rfs.json"],
                ["bank", clean, "--images", images, "-o", tmp_path / "bank", "--workers", "1"],
                ["paste", clean, "--images", images, "-o", tmp_path / "pasted", "--workers", "1",
                 "--bank", tmp_path / "bank"]):
        r = ltaug_cli(*cmd)
        assert r.returncode == 0 and "warning" not in r.stderr, (cmd, r.stderr)
    LvisApi(str(tmp_path / "pasted" / "annotations.json"))


@pytest.mark.slow
def test_the_trainer_runs_on_a_validate_fix_copy(tmp_path, demo_doc):
    from conftest import shared_path

    path = the_users_file(demo_doc, tmp_path)
    clean = tmp_path / "clean.json"
    assert ltaug_cli("validate", path, "--fix", "-o", clean).returncode == 0
    r = ltaug_cli("train", "--train", clean, "--images", DEMO / "images" / "train", "--out", tmp_path / "run",
                  "--epochs", "1", "--max-iters-per-epoch", "2", "--workers", "0", "--threads", "2", "--preset", "cpu",
                  "--backbone-weights", shared_path("..", "weights", "mobilenetv2_imagenet_features.pt"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()
