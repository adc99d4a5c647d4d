"""`ltaug validate` finds each planted problem, names the record, and exits with the right status."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from ltaug import InputError, load_dataset
from ltaug.cli.main import main
from ltaug.io.policy import KINDS, severity


def first(doc, section, pred=lambda r: True):
    return next(r for r in doc[section] if pred(r))


def polygon_ann(doc):
    return first(doc, "annotations", lambda a: isinstance(a["segmentation"], list) and not a["iscrowd"])


def rle_ann(doc):
    return first(doc, "annotations", lambda a: isinstance(a["segmentation"], dict))


# Each mutation plants one problem in the demo train document and returns the id that the
# report must name ("image id N" / "annotation id N" / "category id N").
def m_missing_key(doc):
    a = polygon_ann(doc); del a["category_id"]; return f"annotation id {a['id']}"


def m_missing_image_key(doc):
    im = doc["images"][3]; del im["width"]; return f"image id {im['id']}"


def m_dup_ann(doc):
    a = dict(doc["annotations"][5]); doc["annotations"].append(a); return f"annotation id {a['id']}"


def m_dup_image(doc):
    im = dict(doc["images"][2]); im["file_name"] = "other.jpg"; doc["images"].append(im); return f"image id {im['id']}"


def m_unknown_image(doc):
    a = polygon_ann(doc); a["image_id"] = 987654321; return f"annotation id {a['id']}"


def m_unhashable_image_id(doc):
    a = polygon_ann(doc); a["image_id"] = [1, 2]; return f"annotation id {a['id']}"


def m_unknown_category(doc):
    a = polygon_ann(doc); a["category_id"] = 4242; return f"annotation id {a['id']}"


def m_zero_width_box(doc):
    a = polygon_ann(doc); a["bbox"][2] = 0; return f"annotation id {a['id']}"


def m_negative_height_box(doc):
    a = polygon_ann(doc); a["bbox"][3] = -5.0; return f"annotation id {a['id']}"


def m_box_outside(doc):
    a = polygon_ann(doc); a["bbox"][0] = 5000.0; return f"annotation id {a['id']}"


def m_box_not_four(doc):
    a = polygon_ann(doc); a["bbox"] = [1, 2, 3]; return f"annotation id {a['id']}"


def m_polygon_two_points(doc):
    a = polygon_ann(doc); a["segmentation"] = [[10, 10, 20, 20]]; return f"annotation id {a['id']}"


def m_polygon_odd(doc):
    a = polygon_ann(doc); a["segmentation"][0] = a["segmentation"][0][:-1]; return f"annotation id {a['id']}"


def m_rle_size(doc):
    a = rle_ann(doc); a["segmentation"]["size"] = [10, 10]; return f"annotation id {a['id']}"


def m_rle_counts(doc):
    a = rle_ann(doc); a["segmentation"]["counts"] = a["segmentation"]["counts"][:-3]; return f"annotation id {a['id']}"


def m_area(doc):
    a = polygon_ann(doc); a["area"] = a["area"] * 3 + 100; return f"annotation id {a['id']}"


def m_dotdot(doc):
    im = doc["images"][1]; im["file_name"] = "../../etc/passwd"; return f"image id {im['id']}"


def m_absolute(doc):
    im = doc["images"][1]; im["file_name"] = "/etc/passwd"; return f"image id {im['id']}"


def m_bad_frequency(doc):
    c = doc["categories"][0]; c["frequency"] = "x"; return f"category id {c['id']}"


def m_neg_unknown(doc):
    im = doc["images"][0]; im["neg_category_ids"] = [99999]; return f"image id {im['id']}"


def m_string_id(doc):
    a = polygon_ann(doc); a["id"] = "17"; return "annotation #"


def m_top_level(doc):
    del doc["categories"]; return "missing top-level key 'categories'"


CASES = [
    (m_missing_key, "missing-key"), (m_missing_image_key, "missing-key"), (m_dup_ann, "duplicate-id"),
    (m_dup_image, "duplicate-image-id"), (m_unknown_image, "unknown-image"), (m_unhashable_image_id, "unknown-image"),
    (m_unknown_category, "unknown-category"),
    (m_zero_width_box, "bad-bbox"), (m_negative_height_box, "bad-bbox"), (m_box_outside, "bbox-outside-image"),
    (m_box_not_four, "bad-value"), (m_polygon_two_points, "bad-polygon"), (m_polygon_odd, "bad-polygon"),
    (m_rle_size, "rle-size-mismatch"), (m_rle_counts, "bad-rle"), (m_area, "area-mismatch"),
    (m_dotdot, "unsafe-file-name"), (m_absolute, "unsafe-file-name"), (m_bad_frequency, "bad-category"),
    (m_neg_unknown, "unknown-category"), (m_string_id, "non-integer-id"), (m_top_level, "bad-structure"),
]


# Checked by `ltaug validate` only: loading does not rasterise masks.
MASK_LEVEL = {"area-mismatch"}


@pytest.mark.parametrize("mutate,kind", CASES, ids=[c[0].__name__[2:] for c in CASES])
def test_planted_problem_is_found_and_named(tmp_path, demo_doc, mutate, kind, capsys):
    needle = mutate(demo_doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(demo_doc))
    before = bad.read_bytes()
    warning = severity(kind) == "warning"
    assert main(["validate", str(bad), "--json"]) == (0 if warning else 1)
    report = json.loads(capsys.readouterr().out)
    hits = [p for p in report["problems"] if p["kind"] == kind and needle in p["message"]]
    assert hits, report["problems"]
    assert hits[0]["severity"] == severity(kind)
    assert main(["validate", str(bad), "--json", "--strict"]) == 1
    capsys.readouterr()
    assert bad.read_bytes() == before  # inputs are never modified
    if kind in MASK_LEVEL:
        return
    if warning:  # loaded and processed as it is, the problem a finding; --strict refuses it
        ds = load_dataset(bad)
        assert [(f.kind, f.action) for f in ds.findings] == [(kind, "warned")] and needle in ds.findings[0].message
        with pytest.raises(InputError, match="made an error by --strict"):
            load_dataset(bad, strict=True)
        return
    # an error: every other command refuses the file by default, with one line naming the record
    with pytest.raises(InputError) as err:
        load_dataset(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_clean_file_exits_zero_and_text_report(demo_train_path, demo_train_images, capsys):
    assert main(["validate", str(demo_train_path), "--images", str(demo_train_images)]) == 0
    assert "OK" in capsys.readouterr().out


def test_text_report_has_summary_table(tmp_path, demo_doc, capsys):
    needles = [m_box_outside(demo_doc), m_dotdot(demo_doc), m_dup_ann(demo_doc)]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(demo_doc))
    assert main(["validate", str(bad)]) == 1  # unsafe-file-name is an error
    out = capsys.readouterr().out
    for n in needles:
        assert n in out
    for kind in ("bbox-outside-image", "unsafe-file-name", "duplicate-id"):
        assert any(line.startswith(kind) and KINDS[kind].what in line for line in out.splitlines())
    assert "3 problem(s) of 3 kind(s)" in out


def test_malformed_json(tmp_path, demo_train_path, capsys):
    bad = tmp_path / "truncated.json"
    bad.write_bytes(demo_train_path.read_bytes()[:5000])
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "malformed-json" in out and "line" in out and str(bad) in out


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.json")]) == 2
    assert "not found" in capsys.readouterr().err


def image_folder_with(tmp_path, demo_doc, demo_train_images):
    folder = tmp_path / "images"
    shutil.copytree(demo_train_images, folder)
    ims = demo_doc["images"]
    (folder / ims[0]["file_name"]).unlink()                                      # missing
    (folder / ims[1]["file_name"]).write_bytes((folder / ims[1]["file_name"]).read_bytes()[:2000])  # truncated
    (folder / ims[2]["file_name"]).write_text("not an image")                   # not an image
    ims[3]["width"] += 10                                                        # size mismatch
    # keep the boxes inside the declared image so only the size check fires
    return folder, [(ims[0]["id"], "missing-image-file"), (ims[1]["id"], "unreadable-image"),
                    (ims[2]["id"], "unreadable-image"), (ims[3]["id"], "image-size-mismatch")]


def test_image_file_problems(tmp_path, demo_doc, demo_train_images, capsys):
    folder, expected = image_folder_with(tmp_path, demo_doc, demo_train_images)
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps(demo_doc))
    assert main(["validate", str(ann), "--images", str(folder), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    for image_id, kind in expected:
        assert any(p["kind"] == kind and f"image id {image_id}:" in p["message"] for p in problems), (kind, problems)
    assert len(problems) == len(expected)


def test_skip_mode_drops_and_counts(tmp_path, demo_doc, capsys):
    n_ann, n_img = len(demo_doc["annotations"]), len(demo_doc["images"])
    m_box_outside(demo_doc)
    dotdot_id = int(m_dotdot(demo_doc).split()[-1])
    on_that_image = sum(a["image_id"] == dotdot_id for a in demo_doc["annotations"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(demo_doc))
    ds = load_dataset(bad, on_error="skip")
    assert len(ds.images) == n_img - 1
    assert ds.skipped["unsafe-file-name"] == 1 and "bbox-outside-image" not in ds.skipped  # a warning: kept
    assert ds.skipped["annotation-of-skipped-image"] == on_that_image
    assert len(ds.annotations) == n_ann - on_that_image
    assert main(["stats", str(bad), "--on-error", "skip"]) == 0
    assert "skipped" in capsys.readouterr().err
    assert main(["stats", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--on-error skip" in err


@pytest.mark.parametrize("content", [b"", b"[1, 2]", b"{\"images\": {}}", b"\xff\xfe garbage", b"{\"images\": [], "])
def test_no_traceback_for_garbage_in_any_command(tmp_path, content):
    bad = tmp_path / "garbage.json"
    bad.write_bytes(content)
    for cmd in (["validate", str(bad)], ["stats", str(bad)], ["recount", str(bad), "-o", str(tmp_path / "o.json")],
                ["convert", str(bad), "-o", str(tmp_path / "o2.json")]):
        proc = subprocess.run([sys.executable, "-m", "ltaug.cli.main", *cmd], capture_output=True, text=True)
        assert proc.returncode in (1, 2), (cmd, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 1 and str(bad) in (proc.stderr + proc.stdout)


# The column-wise fast pass of check_document (io/validate.py) checks whole columns at once:
# a polygon's coordinates by one sum over all of them, boxes by one sum over theirs. Each
# value below breaks a rule of the per-record pass; the fast pass must not let it through.
@pytest.mark.parametrize("field,value,kind", [
    ("polygon", "1", "bad-polygon"), ("polygon", None, "bad-polygon"), ("polygon", float("inf"), "bad-polygon"),
    ("polygon", float("nan"), "bad-polygon"), ("polygon", 10**400, "bad-polygon"), ("polygon", [1.0], "bad-polygon"),
    ("bbox", "1", "bad-value"), ("bbox", None, "bad-value"), ("bbox", float("nan"), "bad-value"),
    ("area", True, "bad-value"), ("area", "3", "bad-value"), ("iscrowd", 1, "crowd-polygon"),
])
def test_column_pass_lets_no_bad_value_through(demo_doc, field, value, kind):
    from ltaug.io.validate import check_document

    a = polygon_ann(demo_doc)
    if field == "polygon":
        a["segmentation"][-1][3] = value
    elif field == "bbox":
        a["bbox"][1] = value
    else:
        a[field] = value
    problems = check_document(demo_doc)
    assert [(p.kind, p.message.split(":")[0]) for p in problems] == [(kind, f"annotation id {a['id']}")]


def test_column_pass_keeps_what_the_record_pass_accepts(demo_doc):
    """Booleans in a box and numpy numbers in a polygon pass both passes (as numbers), and the
    fast pass's columns are those the index would build from the records."""
    import numpy as np

    from ltaug.io.index import annotation_columns
    from ltaug.io.validate import check_document_columns

    a = polygon_ann(demo_doc)
    a["bbox"][0] = True
    a["segmentation"][0] = [np.float32(v) for v in a["segmentation"][0]]
    problems, columns = check_document_columns(demo_doc)
    assert problems == [] and columns is not None
    expected = annotation_columns(demo_doc["annotations"])
    for name in ("ids", "image_ids", "category_ids", "boxes", "areas", "iscrowd"):
        got, want = getattr(columns, name), getattr(expected, name)
        assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True), name
    assert columns.boxes[demo_doc["annotations"].index(a), 0] == 1.0
