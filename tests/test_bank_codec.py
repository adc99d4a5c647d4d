"""How a bank stores its crops: jpeg within its PSNR, png and raw exact, masks always exact, format 1
banks still read, damage named in one line."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from conftest import DEMO
from test_bank import assert_matches_source

from ltaug import InputError, load_dataset
from ltaug.errors import SpecError
from ltaug.io.jsonio import dumps, file_sha256
from ltaug.ops import Paste
from ltaug.pixels.bank import OBJECT_DTYPE_V1, Bank, build_bank
from ltaug.pixels.bank_codec import Codec
from ltaug.pixels.copy_paste import plan_paste

DEMO_IMAGES = DEMO / "images" / "train"


@pytest.fixture(scope="module")
def demo_ds():
    return load_dataset(DEMO / "annotations" / "train.json")


@pytest.fixture(scope="module")
def banks(demo_ds, tmp_path_factory):
    """The demo bank in each codec (jpeg at its default and at quality 97)."""
    root = tmp_path_factory.mktemp("codecs")
    out = {}
    for name, kw in (("jpeg", {}), ("jpeg97", {"codec": "jpeg", "quality": 97}), ("png", {"codec": "png"}),
                     ("raw", {"codec": "raw"})):
        out[name] = (build_bank(demo_ds, DEMO_IMAGES, root / name, workers=1, progress=False, **kw), root / name)
    return out


def crop_psnr(a: Bank, b: Bank) -> float:
    err = n = 0.0
    for i in range(len(a)):
        x, y = a.get(i)[0].astype(np.float64), b.get(i)[0]
        err, n = err + ((x - y) ** 2).sum(), n + x.size
    return 10 * math.log10(255 ** 2 * n / err)


def test_lossless_codecs_hold_every_pixel(demo_ds, banks):
    for name in ("png", "raw"):
        bank = Bank(banks[name][1])
        assert bank.codec.name == name and bank.meta["codec"]["crops"] == name
        assert_matches_source(demo_ds, DEMO_IMAGES, bank)


def test_every_codec_has_the_same_objects_and_masks(banks):
    """The codec changes the pixels' bytes, nothing else: the table (offsets and sizes aside) and
    every mask are the same; jpeg masks are stored compressed, raw ones packed."""
    raw = Bank(banks["raw"][1])
    same = [f for f in raw.objects.dtype.names if not f.endswith(("_offset", "_size"))]
    for name in ("jpeg", "jpeg97", "png"):
        bank = Bank(banks[name][1])
        assert (bank.objects[same] == raw.objects[same]).all()
        for i in range(len(raw)):
            np.testing.assert_array_equal(bank.get(i)[1], raw.get(i)[1])
    assert Bank(banks["jpeg"][1]).meta["codec"]["masks"] == "packbits+zlib"
    assert raw.meta["codec"]["masks"] == "packbits"
    assert (raw.objects["pixel_size"] == raw.objects["height"].astype(np.int64) * raw.objects["width"] * 3).all()


def test_jpeg_quality_trades_bytes_for_psnr(banks):
    """The default (quality 91: step 9) is within its PSNR of the exact crops and far smaller; a
    higher quality is larger and closer; png sits between jpeg and raw in size."""
    raw, jpeg, jpeg97 = (Bank(banks[k][1]) for k in ("raw", "jpeg", "jpeg97"))
    assert jpeg.meta["codec"] == {"crops": "jpeg", "quality": 91, "step": 9, "subsampling": "4:4:4",
                                  "tables": "flat", "masks": "packbits+zlib"}
    size = {k: banks[k][0]["bytes_per_object"] for k in banks}
    assert size["jpeg"] < size["jpeg97"] < size["png"] < size["raw"]
    assert size["jpeg"] < size["raw"] / 5
    low, high = crop_psnr(raw, jpeg), crop_psnr(raw, jpeg97)
    assert 37.5 <= low < high and high >= 44


def test_codec_parameters_are_checked_and_named(demo_ds, tmp_path):
    for kw, field in (({"codec": "webp"}, "codec"), ({"quality": 0}, "quality"), ({"quality": 101}, "quality"),
                      ({"codec": "png", "quality": 90}, "quality")):
        with pytest.raises(SpecError) as err:
            build_bank(demo_ds, DEMO_IMAGES, tmp_path / "bank", workers=1, progress=False, **kw)
        assert err.value.field == field, err.value
    assert not (tmp_path / "bank").exists()
    assert Codec.of("jpeg", 100).step == 1 and Codec.of("jpeg").step == 9 and Codec.of("jpeg", 1).step == 99


def as_format_1(raw_bank, folder):
    """The raw bank as ltaug 0.2 wrote it: the same blobs, a table without sizes, meta.json version 1."""
    shutil.copytree(raw_bank, folder)
    table = np.load(raw_bank / "objects.npy")
    old = np.zeros(table.size, OBJECT_DTYPE_V1)
    for name in OBJECT_DTYPE_V1.names:
        old[name] = table[name]
    np.save(folder / "objects.npy", old, allow_pickle=False)
    meta = json.loads((raw_bank / "meta.json").read_text())
    for key in ("codec", "selection"):
        del meta[key]
    meta["format_version"], meta["ltaug_version"] = 1, "0.2.0"
    for c in meta["categories"]:
        del c["source_objects"]
    del meta["counts"]["left_out"]
    meta["files"]["objects.npy"] = (folder / "objects.npy").stat().st_size
    meta["sha256"]["objects.npy"] = file_sha256(folder / "objects.npy")
    (folder / "meta.json").write_bytes(dumps(meta, indent=True))


def test_a_format_1_bank_is_still_read_and_pasted_from(demo_ds, banks, tmp_path):
    raw = Bank(banks["raw"][1])
    as_format_1(banks["raw"][1], tmp_path / "v1")
    old = Bank(tmp_path / "v1")
    assert old.format_version == 1 and old.codec.name == "raw" and old.selected_classes is None
    assert old.verify() == []
    for i in range(len(raw)):
        for a, b in zip(old.get(i), raw.get(i)):
            np.testing.assert_array_equal(a, b)
    spec = Paste(weighting="inverse", objects=3, seed=0)
    assert plan_paste(demo_ds, old, spec) == plan_paste(demo_ds, raw, spec)


def test_other_versions_are_refused_in_one_line_naming_the_version(banks, tmp_path):
    copy = tmp_path / "bank"
    shutil.copytree(banks["jpeg"][1], copy)
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "format_version": 3, "ltaug_version": "9.0"}))
    with pytest.raises(InputError) as err:
        Bank(copy)
    assert str(err.value) == (f"{copy}: object bank format version 3, this ltaug reads versions 1 and 2; rebuild it "
                              f"with `ltaug bank` (or read it with the ltaug that wrote it, 9.0)")


@pytest.mark.parametrize("blob", ["pixels.bin", "masks.bin"])
def test_a_damaged_object_is_named_in_one_line(banks, tmp_path, blob):
    """An object whose bytes no longer decode: one line naming the file, the row and its annotation
    id (``--verify`` names the file too: tests/test_bank.py)."""
    copy = tmp_path / "bank"
    shutil.copytree(banks["jpeg"][1], copy)
    bank = Bank(copy)
    i = len(bank) // 2
    field = "pixel" if blob == "pixels.bin" else "mask"
    start, size = int(bank.objects[i][f"{field}_offset"]), int(bank.objects[i][f"{field}_size"])
    data = bytearray((copy / blob).read_bytes())
    data[start:start + size] = bytes(size)
    (copy / blob).write_bytes(bytes(data))
    damaged = Bank(copy)  # the table is intact: it opens
    with pytest.raises(InputError) as err:
        damaged.get(i)
    assert str(err.value) == (f"{copy / blob}: object {i} (annotation id {int(bank.objects[i]['annotation_id'])}) "
                              f"does not decode; the bank is damaged (`ltaug bank --verify {copy}`), rebuild it")
    assert damaged.verify() == [f"{copy / blob}: does not match its checksum in meta.json (damaged); rebuild the bank"]


def test_crops_and_masks_are_read_only_whatever_the_codec(banks):
    for name in ("jpeg", "png", "raw"):
        crop, mask = Bank(banks[name][1]).get(-1)
        assert not crop.flags.writeable and not mask.flags.writeable
