"""Images as they come: every test image is a demo photo converted with Pillow (EXIF
orientation, grayscale, CMYK, 16-bit, palette, alpha, a PNG named .jpg, 1x1, a unicode name, a
decompression bomb's header, symlinks). Each case: its kind and severity in the policy table,
its message, the pixels ltaug reads, and what ``ltaug validate --images``, ``ltaug bank`` and
``ltaug paste`` (real processes) do with a dataset holding it."""
from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DEMO, ROOT
from PIL import Image, ImageOps

from ltaug import InputError, load_dataset
from ltaug.io import imagecheck as ic
from ltaug.io.paths import checked_image_path, image_file_stat, outside_folder_reason
from ltaug.io.policy import KINDS
from ltaug.ops import Mosaic
from ltaug.pixels import imagefile
from ltaug.pixels.bank import Bank
from ltaug.pixels.functional import orient, unorient
from ltaug.pixels.imagefile import ImageFileError, read_image
from ltaug.run.engine import run_pipeline

PHOTOS = DEMO / "images" / "train"
PIL_TO_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                  4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                  7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
PIL_TO_STORED = {**PIL_TO_UPRIGHT, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}

SEVERITIES = {  # the table as this point of the issue sets it
    "missing-image-file": "error", "unreadable-image": "error", "image-size-mismatch": "error",
    "image-too-large": "error", "image-outside-folder": "error",
    "exif-stored-size": "warning", "image-alpha": "warning", "high-bit-depth": "warning",
    "cmyk-image": "warning",
    "exif-orientation": "fine", "grayscale-image": "fine", "palette-image": "fine",
    "image-format-not-extension": "fine", "tiny-image": "fine", "non-ascii-file-name": "fine",
}


def ltaug(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def bgr(img: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])


def with_orientation(o: int) -> bytes:
    exif = Image.Exif()
    exif[ic.ORIENTATION_TAG] = o
    return exif.tobytes()


# -- the photo every case is made from, and the dataset builder ------------------------------

@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads((DEMO / "annotations" / "train.json").read_text())


def source(doc) -> tuple[dict, list[dict]]:
    """The first demo image that is not square (a 90-degree turn shows) and has 3+ objects."""
    count = {}
    for a in doc["annotations"]:
        count[a["image_id"]] = count.get(a["image_id"], 0) + 1
    im = next(i for i in doc["images"] if i["width"] != i["height"] and count.get(i["id"], 0) >= 3)
    return im, [a for a in doc["annotations"] if a["image_id"] == im["id"]]


def photo(doc) -> Image.Image:
    im, _ = source(doc)
    with Image.open(PHOTOS / im["file_name"]) as img:
        out = img.convert("RGB")
    out.info = {}  # no ICC profile copied into PNGs (libpng would complain on a grayscale one)
    return out


class Dirty:
    """A dataset folder: the source photo and one other demo image as they are, then the cases."""

    def __init__(self, root: Path, doc: dict) -> None:
        self.root, self.images = root, root / "images"
        self.images.mkdir(parents=True)
        src, anns = source(doc)
        other = next(i for i in doc["images"] if i["id"] != src["id"])
        self.doc = copy.deepcopy({**doc, "images": [src, other],
                                  "annotations": [a for a in doc["annotations"] if a["image_id"] in (src["id"], other["id"])]})
        for im in self.doc["images"]:
            (self.images / im["file_name"]).write_bytes((PHOTOS / im["file_name"]).read_bytes())
        self.src, self.src_anns = src, anns
        self.next_image, self.next_ann = 900_000, 9_000_000

    def add(self, name: str, *, width: int | None = None, height: int | None = None, anns=None) -> int:
        """A record for the file ``name`` (written by the caller) with the source photo's size
        and objects (or those given)."""
        image_id, self.next_image = self.next_image, self.next_image + 1
        self.doc["images"].append({"id": image_id, "file_name": name, "width": width or self.src["width"],
                                   "height": height or self.src["height"]})
        for a in (self.src_anns if anns is None else anns):
            self.doc["annotations"].append({**copy.deepcopy(a), "id": self.next_ann, "image_id": image_id})
            self.next_ann += 1
        return image_id

    def save(self, name: str = "train.json") -> Path:
        path = self.root / name
        path.write_text(json.dumps(self.doc))
        return path


# -- the cases: how each file is made, what it is, what ltaug reads -------------------------

def make_exif_upright(img: Image.Image, path: Path, o: int = 6) -> np.ndarray:
    """Stored turned so that the tag turns it back: upright it is the photo, as the json says."""
    img.transpose(PIL_TO_STORED[o]).save(path, "JPEG", quality=100, subsampling=0, exif=with_orientation(o))
    return bgr(img)  # within a re-encoded JPEG's error


def make_exif_stored(img: Image.Image, path: Path) -> np.ndarray:
    """The photo's pixels as they are, with a tag turning them by 90 degrees: the json has the stored size."""
    img.save(path, "JPEG", quality=95, exif=with_orientation(6))
    return cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)  # exactly


def make_gray(img, path):
    img.convert("L").save(path, "JPEG", quality=95)
    g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    return np.repeat(g[:, :, None], 3, axis=2)


def make_cmyk(img, path):
    img.convert("CMYK").save(path, "JPEG", quality=95)
    with Image.open(path) as back:
        assert back.mode == "CMYK"
        return bgr(back)  # Pillow's conversion: OpenCV's is within 1 level


def make_16bit(img, path):
    deep = np.asarray(img.convert("L")).astype(np.uint16) * 257 + 100  # every level, low byte not 0
    Image.fromarray(deep).save(path, "PNG")
    with Image.open(path) as back:
        assert back.mode.startswith("I;16")
    return np.repeat((deep >> 8).astype(np.uint8)[:, :, None], 3, axis=2)  # the high byte, exactly


def make_palette(img, path):
    img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path, "PNG")
    with Image.open(path) as back:
        assert back.mode == "P"
        return bgr(back)  # exactly


def make_rgba(img, path):
    rgba = np.asarray(img.convert("RGBA")).copy()
    rgba[: rgba.shape[0] // 2, :, 3] = 0  # top half transparent: its colours are still there
    Image.fromarray(rgba, "RGBA").save(path, "PNG")
    return np.ascontiguousarray(rgba[:, :, 2::-1])  # the stored colours, exactly


def make_la(img, path):
    la = img.convert("LA")
    la.putalpha(Image.new("L", la.size, 128))
    la.save(path, "PNG")
    g = np.asarray(la)[:, :, 0]
    return np.repeat(g[:, :, None], 3, axis=2)


def make_png_named_jpg(img, path):
    img.save(path, "PNG")
    return bgr(img)  # exactly: lossless


def make_unicode(img, path):
    return None  # a copy of the demo file's bytes, see build()


CASES = {
    # name: (file name, maker, kinds (severity from the table), message fragment of the first kind)
    "exif-upright": ("exif-upright.jpg", make_exif_upright, {"exif-orientation"},
                     "has EXIF orientation 6 (turned 90 degrees clockwise): read upright"),
    "exif-stored": ("exif-stored.jpg", make_exif_stored, {"exif-stored-size"},
                    "but the json has its stored size"),
    "grayscale": ("gray.jpg", make_gray, {"grayscale-image"}, "is grayscale: read as 3 equal channels"),
    "cmyk": ("cmyk.jpg", make_cmyk, {"cmyk-image"}, "is CMYK: converted to BGR without colour management"),
    "16-bit": ("deep.png", make_16bit, {"high-bit-depth", "grayscale-image"},
               "has 16 bits per channel: read as 8, the high byte of each value"),
    "palette": ("palette.png", make_palette, {"palette-image"}, "has a palette: read through it"),
    "rgba": ("alpha.png", make_rgba, {"image-alpha"},
             "has transparency (RGBA): read without it, the colours stored under it kept"),
    "la": ("alpha-gray.png", make_la, {"image-alpha", "grayscale-image"}, "has transparency (LA)"),
    "png-named-jpg": ("really-a-png.jpg", make_png_named_jpg, {"image-format-not-extension"},
                      "holds a PNG image under a .jpg name: read by its content"),
    "unicode-name": ("café-東京-ü.jpg", make_unicode, {"non-ascii-file-name"}, "has a non-ASCII name"),
}
TINY = "tiny.jpg"


def build(root: Path, doc: dict, cases=CASES) -> tuple[Dirty, dict]:
    """The dataset with every case (and a 1x1 image whose one object, of a class of its own,
    is its one pixel); returns it and each case's (image id, expected pixels)."""
    d = Dirty(root, doc)
    img = photo(doc)
    made = {}
    for case, (name, make, _, _) in cases.items():
        path = d.images / name
        if make is make_unicode:
            path.write_bytes((PHOTOS / d.src["file_name"]).read_bytes())
            expected = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        else:
            expected = make(img, path)
        made[case] = (d.add(name), expected)
    img.resize((1, 1)).save(d.images / TINY, "JPEG", quality=95)
    d.doc["categories"].append({"id": 9001, "name": "dot", "supercategory": "dot"})
    dot = {"id": 0, "image_id": 0, "category_id": 9001, "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": 0,
           "segmentation": [[0, 0, 1, 0, 1, 1, 0, 1]]}
    made["tiny"] = (d.add(TINY, width=1, height=1, anns=[dot]), cv2.imread(str(d.images / TINY)))
    return d, made


# -- one dataset with every fine and warning case, through the real commands -----------------

@pytest.fixture(scope="module")
def dirty(tmp_path_factory, doc):
    root = tmp_path_factory.mktemp("dirty")
    d, made = build(root, doc)
    ann = d.save()
    out = {"d": d, "made": made, "ann": ann}
    out["validate"] = ltaug("validate", ann, "--images", d.images)
    out["validate_json"] = ltaug("validate", ann, "--images", d.images, "--json")
    out["bank"] = ltaug("bank", ann, "--images", d.images, "-o", root / "bank", "--workers", 1,
                        "--codec", "raw")  # lossless: its crops are compared with the pixels read
    out["paste"] = ltaug("paste", ann, "--images", d.images, "-o", root / "out", "--workers", 1, "--seed", 0)
    out["validate_out"] = ltaug("validate", root / "out" / "annotations.json", "--images", root / "out" / "images")
    return out


def test_the_policy_table_has_each_image_kind_with_its_severity():
    for kind, sev in SEVERITIES.items():
        assert KINDS[kind].source == "image" and KINDS[kind].severity == sev, kind
    assert {k for k, v in KINDS.items() if v.source == "image"} == set(SEVERITIES)
    assert ic.IMAGE_KINDS == {k for k, s in SEVERITIES.items() if s == "error"}  # what validate --fix drops
    assert "read as stored" in KINDS["exif-stored-size"].what
    assert "refused before decoding" in KINDS["image-too-large"].what


@pytest.mark.parametrize("case", list(CASES))
def test_each_case_is_its_kind_and_reads_as_the_table_says(dirty, case):
    name, _, kinds, fragment = CASES[case]
    d, (image_id, expected) = dirty["d"], dirty["made"][case]
    path = d.images / name
    rec = next(im for im in d.doc["images"] if im["id"] == image_id)
    header = ic.read_header(path.read_bytes())
    rule = ic.size_rule(header, rec["width"], rec["height"])
    found = dict(ic.notes(header, path, rule))
    assert set(found) == kinds
    assert any(fragment in text for text in found.values()), found
    # the pixels: 3-channel uint8 BGR at the json's size, as the case says
    img = read_image(path, image_id, rec["height"], rec["width"])
    assert img.dtype == np.uint8 and img.shape == (rec["height"], rec["width"], 3)
    diff = np.abs(img.astype(int) - expected.astype(int))
    if case == "exif-upright":  # re-encoded: close to the photo, far from it turned the wrong way
        assert diff.mean() < 1 < 20 < np.abs(img[::-1, ::-1].astype(int) - expected.astype(int)).mean()
    else:
        assert diff.max() <= (1 if case == "cmyk" else 0), diff.max()
    # validate --images: each warning is one line naming the image and the file; fine kinds are silent
    warned = {k for k in kinds if SEVERITIES[k] == "warning"}
    lines = [line for line in dirty["validate"].stdout.splitlines() if f"image id {image_id}:" in line]
    assert len(lines) == len(warned)
    for kind in warned:
        assert any(name in line and found[kind] in line for line in lines), (kind, lines)
    problems = json.loads(dirty["validate_json"].stdout)["problems"]
    assert sorted(p["kind"] for p in problems if f"image id {image_id}:" in p["message"]) == sorted(warned)
    # bank: every object of the case image cut out of the pixels read
    bank = Bank(dirty["d"].root / "bank")
    rows = np.flatnonzero(bank.objects["image_id"] == image_id)
    assert len(rows) == len(d.src_anns)
    for r in rows:
        crop, _ = bank.get(int(r))
        x0, y0, x1, y1 = bank.objects[r]["box"].tolist()
        np.testing.assert_array_equal(crop, img[y0:y1, x0:x1])
    # paste: the case image is in the output, its file of the size its record says
    out = json.loads((dirty["d"].root / "out" / "annotations.json").read_text())
    kept = [im for im in out["images"] if im["id"] == image_id]
    assert len(kept) == 1


def test_the_commands_exit_as_the_table_says(dirty):
    v, b, p = dirty["validate"], dirty["bank"], dirty["paste"]
    assert v.returncode == 0, v.stdout + v.stderr  # warnings only: printed, exit 0
    assert "0 error(s)" in v.stdout
    assert b.returncode == 0, b.stderr
    assert p.returncode == 0, p.stderr
    # each warning kind is said once by the process that read the images, naming the first image
    warnings = {k for case in CASES.values() for k in case[2] if SEVERITIES[k] == "warning"}
    assert warnings == {k for k, s in SEVERITIES.items() if s == "warning"}
    for kind in sorted(warnings):
        for proc in (b, p):
            said = [line for line in proc.stderr.splitlines() if line.startswith(f"warning: {kind}: image id ")]
            assert len(said) == 1, (kind, proc.stderr)
    assert "image-alpha" in p.stderr and p.stderr.count("warning: image-alpha:") == 1  # two alpha images, one line
    assert not any(f"warning: {k}:" in p.stderr for k, s in SEVERITIES.items() if s == "fine")
    # the output: its images (written or kept) match their records; only warnings left
    vo = dirty["validate_out"]
    assert vo.returncode == 0, vo.stdout + vo.stderr


def test_a_1x1_image_is_cut_and_pasted_without_a_crash(dirty, tmp_path, doc):
    d, (tiny_id, pixel) = dirty["d"], dirty["made"]["tiny"]
    assert dict(ic.notes(ic.read_header((d.images / TINY).read_bytes()), d.images / TINY)).keys() == {"tiny-image"}
    bank = Bank(d.root / "bank")
    (row,) = np.flatnonzero(bank.objects["image_id"] == tiny_id)
    crop, mask = bank.get(int(row))
    assert crop.shape == (1, 1, 3) and mask.tolist() == [[1]]
    np.testing.assert_array_equal(crop, pixel)
    # a bank of that one 1x1 object, pasted onto every image (the 1x1 one included)
    only = {**d.doc, "images": [im for im in d.doc["images"] if im["id"] == tiny_id],
            "annotations": [a for a in d.doc["annotations"] if a["image_id"] == tiny_id]}
    (tmp_path / "tiny.json").write_text(json.dumps(only))
    r = ltaug("bank", tmp_path / "tiny.json", "--images", d.images, "-o", tmp_path / "dot-bank", "--workers", 1)
    assert r.returncode == 0, r.stderr
    r = ltaug("paste", dirty["ann"], "--images", d.images, "-o", tmp_path / "out", "--bank", tmp_path / "dot-bank",
              "--exclude", "box_only", "--max-overlap", 1, "--workers", 1)
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "out" / "annotations.json").read_text())
    dots = [a for a in out["annotations"] if a.get("ltaug", {}).get("op") == "paste"]
    assert dots and all(a["category_id"] == 9001 for a in dots)
    (tiny,) = [im for im in out["images"] if im["id"] == tiny_id]
    assert (tiny["width"], tiny["height"]) == (1, 1)
    assert cv2.imread(str(tmp_path / "out" / "images" / tiny["file_name"])).shape == (1, 1, 3)


# -- EXIF orientation: which size is checked, and the pixels of every orientation ------------

@pytest.mark.parametrize("o", range(1, 9))
def test_every_orientation_reads_upright_as_opencv_and_pillow_turn_it(tmp_path, doc, o):
    img = photo(doc).resize((64, 40))
    path = tmp_path / f"o{o}.jpg"
    img.transpose(PIL_TO_STORED[o]).save(path, "JPEG", quality=95, exif=with_orientation(o)) if o > 1 else \
        img.save(path, "JPEG", quality=95, exif=with_orientation(1))
    header = ic.read_header(path.read_bytes())
    assert header.orientation == o and header.upright == (64, 40)
    up = read_image(path, 1, 40, 64)  # the json's size: upright
    np.testing.assert_array_equal(up, cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR))
    with Image.open(path) as pil:
        assert np.abs(up.astype(int) - bgr(ImageOps.exif_transpose(pil)).astype(int)).max() <= 2  # two decoders
    stored = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    np.testing.assert_array_equal(orient(stored, o), up)
    np.testing.assert_array_equal(unorient(up, o), stored)
    if o >= 5:  # the stored size: read as stored, a warning
        np.testing.assert_array_equal(read_image(path, 1, 64, 40), stored)
        assert ic.size_rule(header, 40, 64) == ic.STORED
    else:  # same size either way: upright, as the trainers read it
        assert ic.size_rule(header, 64, 40) == ic.UPRIGHT


def test_exif_upright_size_is_fine_and_lines_up_with_the_objects(dirty):
    """The json has the upright size: the bank's cut-outs of the turned image are those of the photo."""
    d, (image_id, _) = dirty["d"], dirty["made"]["exif-upright"]
    bank = Bank(d.root / "bank")
    photo_rows = np.flatnonzero(bank.objects["image_id"] == d.src["id"])
    case_rows = np.flatnonzero(bank.objects["image_id"] == image_id)
    for a, b in zip(photo_rows, case_rows):
        (ca, _), (cb, _) = bank.get(int(a)), bank.get(int(b))
        assert ca.shape == cb.shape and np.abs(ca.astype(int) - cb.astype(int)).mean() < 3


def test_exif_stored_size_is_a_warning_read_as_stored(dirty, caplog):
    d, (image_id, expected) = dirty["d"], dirty["made"]["exif-stored"]
    path = d.images / CASES["exif-stored"][0]
    imagefile._warned.discard("exif-stored-size")
    with caplog.at_level("WARNING", logger="ltaug"):
        img = read_image(path, image_id, d.src["height"], d.src["width"])
        read_image(path, image_id, d.src["height"], d.src["width"])
    np.testing.assert_array_equal(img, expected)
    said = [r.getMessage() for r in caplog.records if "exif-stored-size" in r.getMessage()]
    assert len(said) == 1 and f"image id {image_id}: file {path} has EXIF orientation 6" in said[0]
    assert "read as stored, the tag ignored, so that the annotations line up" in said[0]


def test_exif_neither_size_is_an_error_naming_both(tmp_path, doc):
    d = Dirty(tmp_path, doc)
    img = photo(doc)
    make_exif_upright(img, d.images / "turned.jpg")
    w, h = d.src["width"], d.src["height"]
    image_id = d.add("turned.jpg", width=w + 10, height=h)
    ann = d.save()
    msg = f"image id {image_id}: file {d.images / 'turned.jpg'} is {w}x{h} upright ({h}x{w} as stored, EXIF " \
          f"orientation 6) but the json says {w + 10}x{h}"
    with pytest.raises(ImageFileError) as exc:
        read_image(d.images / "turned.jpg", image_id, h, w + 10)
    assert str(exc.value) == msg
    v = ltaug("validate", ann, "--images", d.images)
    assert v.returncode == 1 and msg in v.stdout and "image-size-mismatch" in v.stdout
    b = ltaug("bank", ann, "--images", d.images, "-o", tmp_path / "bank", "--workers", 1)
    assert b.returncode == 1 and b.stderr.strip() == f"ltaug bank: error: {msg}"
    p = ltaug("paste", ann, "--images", d.images, "-o", tmp_path / "out", "--workers", 1)
    assert p.returncode == 1 and msg in p.stderr and p.stderr.count("\n") == 1
    s = ltaug("bank", ann, "--images", d.images, "-o", tmp_path / "bank2", "--workers", 1, "--on-error", "skip")
    assert s.returncode == 0, s.stderr
    skipped = json.loads((tmp_path / "bank2" / "meta.json").read_text())["counts"]["images_skipped"]
    assert [x["image_id"] for x in skipped] == [image_id]


# -- a decompression bomb's header -------------------------------------------------------------

def png_claiming(img: Image.Image, width: int, height: int) -> bytes:
    """A real small PNG whose IHDR claims ``width x height`` (its CRC fixed): a decoder would
    allocate for the claim."""
    import io

    buf = io.BytesIO()
    img.resize((32, 20)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.parametrize("width,height", [(10_000, 10_000), (100_000, 100_000)])
def test_a_bomb_is_refused_before_decoding(tmp_path, doc, monkeypatch, width, height):
    d = Dirty(tmp_path, doc)
    (d.images / "bomb.png").write_bytes(png_claiming(photo(doc), width, height))
    image_id = d.add("bomb.png", width=width, height=height, anns=[])
    ann = d.save()
    pixels = width * height
    claim = f"{width}x{height} = {pixels:,}" if pixels <= 2 * Image.MAX_IMAGE_PIXELS else f"{pixels:,}"
    msg = (f"image id {image_id}: file {d.images / 'bomb.png'} claims {claim} pixels, over the limit of "
           f"{ic.MAX_IMAGE_PIXELS:,} (a decompression bomb?): refused before decoding")

    def no_decoding(*a, **k):
        raise AssertionError("decoded")

    with monkeypatch.context() as m:
        m.setattr(cv2, "imdecode", no_decoding)
        m.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
        with pytest.raises(ImageFileError) as exc:
            read_image(d.images / "bomb.png", image_id, height, width)
        assert str(exc.value) == msg
        bomb = {"images": [im for im in d.doc["images"] if im["id"] == image_id]}
        (problem,) = ic.check_image_files(bomb, d.images)
        assert problem.kind == "image-too-large" and problem.message == msg
    v = ltaug("validate", ann, "--images", d.images)
    assert v.returncode == 1 and msg in v.stdout and "image-too-large" in v.stdout
    # the bank never opens an image without objects; paste reads it to paste onto it
    p = ltaug("paste", ann, "--images", d.images, "-o", tmp_path / "out", "--workers", 1)
    assert p.returncode == 1 and p.stderr.strip() == f"ltaug paste: error: {msg}"
    s = ltaug("paste", ann, "--images", d.images, "-o", tmp_path / "skip", "--workers", 1, "--on-error", "skip")
    assert s.returncode == 0, s.stderr
    run = json.loads((tmp_path / "skip" / "run.json").read_text())
    assert run["steps_run"][0]["images_skipped"] == [msg]


def test_a_bomb_with_objects_is_refused_by_the_bank(tmp_path, doc):
    d = Dirty(tmp_path, doc)
    (d.images / "bomb.png").write_bytes(png_claiming(photo(doc), 12_000, 9_000))
    image_id = d.add("bomb.png", width=12_000, height=9_000, anns=[
        {"id": 0, "image_id": 0, "category_id": d.src_anns[0]["category_id"], "bbox": [10, 10, 50, 50],
         "area": 2500, "iscrowd": 0, "segmentation": [[10, 10, 60, 10, 60, 60, 10, 60]]}])
    ann = d.save()
    b = ltaug("bank", ann, "--images", d.images, "-o", tmp_path / "bank", "--workers", 1)
    assert b.returncode == 1
    assert b.stderr.strip() == (f"ltaug bank: error: image id {image_id}: file {d.images / 'bomb.png'} claims "
                                f"12000x9000 = 108,000,000 pixels, over the limit of 89,478,485 (a decompression "
                                "bomb?): refused before decoding")
    s = ltaug("bank", ann, "--images", d.images, "-o", tmp_path / "bank", "--workers", 1, "--on-error", "skip")
    assert s.returncode == 0, s.stderr
    assert [x["image_id"] for x in Bank(tmp_path / "bank").meta["counts"]["images_skipped"]] == [image_id]


# -- symlinks ------------------------------------------------------------------------------------

def test_a_symlink_leading_outside_the_image_folder_is_refused_everywhere(tmp_path, doc):
    d = Dirty(tmp_path, doc)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.jpg").write_bytes((PHOTOS / d.src["file_name"]).read_bytes())
    os.symlink(elsewhere / "photo.jpg", d.images / "outside.jpg")
    image_id = d.add("outside.jpg")
    ann = d.save()
    reason = f"leads outside the image folder {d.images} (to {elsewhere / 'photo.jpg'})"
    assert outside_folder_reason(d.images, "outside.jpg") == reason
    msg = f"image id {image_id}: file {d.images / 'outside.jpg'} {reason}: refused, not read"
    with pytest.raises(InputError) as exc:
        checked_image_path(d.images, "outside.jpg", image_id)
    assert str(exc.value) == msg
    with pytest.raises(InputError, match="refused, not read"):
        image_file_stat(d.images, "outside.jpg", image_id)
    v = ltaug("validate", ann, "--images", d.images)
    assert v.returncode == 1 and msg in v.stdout and "image-outside-folder" in v.stdout
    b = ltaug("bank", ann, "--images", d.images, "-o", tmp_path / "bank", "--workers", 1)
    assert b.returncode == 1 and b.stderr.strip() == f"ltaug bank: error: {msg}"
    p = ltaug("paste", ann, "--images", d.images, "-o", tmp_path / "out", "--workers", 1)
    assert p.returncode == 1 and p.stderr.strip() == f"ltaug paste: error: {msg}"
    with pytest.raises(InputError) as exc:  # the engine's own check, before anything is read
        run_pipeline(load_dataset(ann), d.images, tmp_path / "out2", [Mosaic(count=1, seed=0)], workers=1,
                     progress=False)
    assert str(exc.value) == msg
    assert not (tmp_path / "out").exists() and not (tmp_path / "bank").exists()


def test_symlinks_inside_the_folder_and_a_linked_folder_itself_are_read(tmp_path, doc):
    d = Dirty(tmp_path, doc)
    os.symlink(d.src["file_name"], d.images / "alias.jpg")  # to a file of the folder
    (d.images / "sub").mkdir()
    os.symlink(d.images / d.src["file_name"], d.images / "sub" / "deep.jpg")
    ids = [d.add("alias.jpg"), d.add("sub/deep.jpg")]
    ann = d.save()
    assert outside_folder_reason(d.images, "alias.jpg") is None
    assert outside_folder_reason(d.images, "sub/deep.jpg") is None
    linked = tmp_path / "linked"
    os.symlink(d.images, linked)  # the image folder given through a link
    for folder in (d.images, linked):
        v = ltaug("validate", ann, "--images", folder)
        assert v.returncode == 0 and "OK" in v.stdout, v.stdout
    p = ltaug("paste", ann, "--images", linked, "-o", tmp_path / "out", "--workers", 1)
    assert p.returncode == 0, p.stderr
    out = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert set(ids) <= {im["id"] for im in out["images"]}
    # a linked sub-folder leading elsewhere is outside
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(other, d.images / "away")
    (other / "x.jpg").write_bytes(b"")
    assert outside_folder_reason(d.images, "away/x.jpg") == \
        f"leads outside the image folder {d.images} (to {other / 'x.jpg'})"


def test_unicode_names_work_in_every_command(dirty):
    d, (image_id, _) = dirty["d"], dirty["made"]["unicode-name"]
    name = CASES["unicode-name"][0]
    out = json.loads((d.root / "out" / "annotations.json").read_text())
    (rec,) = [im for im in out["images"] if im["id"] == image_id]
    written = d.root / "out" / "images" / rec["file_name"]
    assert written.is_file()
    if rec["file_name"] == name:  # kept: the input file itself
        assert os.path.samefile(written, d.images / name)
    assert f"image id {image_id}:" not in dirty["validate"].stdout  # fine: nothing to say
