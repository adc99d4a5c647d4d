"""The JPEG marker reader says what Pillow says, or nothing (then Pillow is asked).

Compared with Pillow's reading (``read_header`` with the fast path switched off) on every real
photo of the shared data, on JPEGs written here with every EXIF orientation, grayscale, CMYK,
progressive, multiple EXIF blocks and MPO-style markers, and on every truncation of a header.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

from ltaug.io import imagecheck
from ltaug.io.jpeghead import jpeg_header


def pillow_header(data: bytes) -> imagecheck.ImageHeader:
    """``read_header`` as it reads without the marker reader (Pillow only)."""
    saved = imagecheck.jpeg_header
    imagecheck.jpeg_header = lambda _: None
    try:
        return imagecheck.read_header(data)
    finally:
        imagecheck.jpeg_header = saved


def jpeg(mode: str = "RGB", size=(37, 21), **save) -> bytes:
    rng = np.random.default_rng(0)
    channels = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    arr = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(out, "JPEG", **save)
    return out.getvalue()


def exif(tag_values: dict) -> bytes:
    e = Image.Exif()
    for k, v in tag_values.items():
        e[k] = v
    return e.tobytes()


def test_every_real_photo_reads_as_pillow_reads_it_and_by_markers():
    files = sorted(shared_path("coco-lt", "images").glob("*/*.jpg"))
    assert len(files) > 300
    for f in files:
        data = open(f, "rb").read()
        assert jpeg_header(data) is not None, f  # plain JPEGs: the fast path takes them
        assert imagecheck.read_header(data) == pillow_header(data), f


@pytest.mark.parametrize("orientation", range(0, 10))
def test_each_orientation_value_reads_as_pillow(orientation):
    data = jpeg(exif=exif({imagecheck.ORIENTATION_TAG: orientation}))
    assert jpeg_header(data) is not None
    assert jpeg_header(data).orientation == orientation
    assert imagecheck.read_header(data) == pillow_header(data)


@pytest.mark.parametrize("case", ["gray", "progressive", "big-endian", "other-tags", "no-exif"])
def test_plain_variants_read_as_pillow(case):
    if case == "gray":
        data = jpeg("L")
    elif case == "progressive":
        data = jpeg(progressive=True, exif=exif({imagecheck.ORIENTATION_TAG: 6}))
    elif case == "big-endian":  # a Motorola-order TIFF block, as some cameras write
        data = jpeg(exif=b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x08\0\0\0\0\0\0")
    elif case == "other-tags":
        data = jpeg(exif=exif({0x010F: "maker", 0x0110: "model", imagecheck.ORIENTATION_TAG: 3}))
    else:
        data = jpeg()
    assert jpeg_header(data) is not None, case
    assert imagecheck.read_header(data) == pillow_header(data), case
    if case == "big-endian":
        assert jpeg_header(data).orientation == 8


@pytest.mark.filterwarnings("ignore:Image appears to be a malformed MPO file")
def test_what_the_marker_reader_leaves_to_pillow():
    cmyk = jpeg("CMYK")
    assert jpeg_header(cmyk) is None and imagecheck.read_header(cmyk).mode == "CMYK"
    # two EXIF blocks (Pillow joins them), an MPO's MPF segment, an orientation that is not a SHORT
    base = jpeg()
    app1 = b"\xff\xe1" + (2 + 6 + 14).to_bytes(2, "big") + b"Exif\0\0" + b"II*\0\x08\0\0\0\0\0\0\0\0\0"
    twice = base[:2] + app1 + app1 + base[2:]
    mpf = base[:2] + b"\xff\xe2\x00\x08MPF\0\0\0" + base[2:]
    as_long = jpeg(exif=b"Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x04\0\x01\0\0\0\x06\0\0\0\0\0\0\0")
    for data in (twice, mpf, as_long):
        assert jpeg_header(data) is None
        assert imagecheck.read_header(data) == pillow_header(data)
    png = io.BytesIO()
    Image.new("RGB", (5, 4)).save(png, "PNG")
    assert jpeg_header(png.getvalue()) is None


def test_every_truncation_of_a_header_reads_as_pillow_or_fails_as_pillow():
    data = jpeg(exif=exif({imagecheck.ORIENTATION_TAG: 6, 0x010F: "maker"}))
    sos = data.index(b"\xff\xda")
    for cut in range(0, sos + 4):
        part = data[:cut]
        fast = jpeg_header(part)
        try:
            slow = pillow_header(part)
        except imagecheck.HeaderError:
            assert fast is None, cut  # what Pillow cannot read, the marker reader does not claim
            continue
        assert imagecheck.read_header(part) == slow, cut


def test_a_huge_claimed_size_is_still_refused_before_decoding():
    data = bytearray(jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (30000).to_bytes(2, "big") * 2  # 30000 x 30000: over the pixel limit
    with pytest.raises(imagecheck.TooManyPixels):
        imagecheck.read_header(bytes(data))
