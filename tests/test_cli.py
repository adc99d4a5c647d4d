"""The `ltaug` command end to end: help, stats on real data, convert, recount, output guards."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ltaug import load_dataset
from ltaug.cli.main import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("cmd", ["stats", "validate", "convert", "recount"])
def test_help_has_examples(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_stats_json_on_shared_train(coco_lt_train, capsys):
    assert main(["stats", str(coco_lt_train), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    s = doc["summary"]
    assert (s["classes"], s["images"], s["instances"]) == (80, 288, 2383)
    assert {"id", "name", "images", "instances", "bin"} <= set(doc["classes"][0])


def test_stats_plot_refuses_input_path(demo_train_path, capsys):
    assert main(["stats", str(demo_train_path), "--plot", str(demo_train_path)]) == 2
    assert "refusing" in capsys.readouterr().err


def test_convert_yolo_roundtrip_via_cli(demo_train_path, demo_train_images, tmp_path):
    yolo = tmp_path / "yolo"
    r = run_cli("convert", demo_train_path, "--images", demo_train_images, "-o", yolo)
    assert r.returncode == 0 and "crowd region(s) skipped" in r.stderr, r.stderr
    back = tmp_path / "back.json"
    r = run_cli("convert", yolo, "-o", back)
    assert r.returncode == 0, r.stderr
    orig, rt = load_dataset(demo_train_path), load_dataset(back)
    assert len(rt.images) == len(orig.images)
    assert len(rt.annotations) == sum(not a["iscrowd"] for a in orig.annotations)
    assert run_cli("validate", back, "--images", yolo / "images").returncode == 0


def test_convert_to_lvis_and_recount(demo_train_path, tmp_path):
    out = tmp_path / "lvis.json"
    assert main(["convert", str(demo_train_path), "--to", "lvis", "-o", str(out), "--rare-max", "1", "--common-max", "4"]) == 0
    ds = load_dataset(out)
    assert ds.kind == "lvis" and all(c["frequency"] in "rcf" for c in ds.categories)
    out2 = tmp_path / "recount.json"
    assert main(["recount", str(out), "-o", str(out2)]) == 0
    bins = {c["id"]: c["frequency"] for c in load_dataset(out2).categories}
    assert set(bins.values()) == {"r"}  # default LVIS thresholds on 30 images: every class rare


def test_convert_refuses_output_over_input(demo_train_path, capsys):
    before = demo_train_path.read_bytes()
    assert main(["convert", str(demo_train_path), "-o", str(demo_train_path)]) == 2
    assert demo_train_path.read_bytes() == before


def test_bad_flag_values_are_usage_errors(demo_train_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["recount", str(demo_train_path), "-o", str(tmp_path / "x.json"), "--rare-max", "50",
              "--common-max", "10"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--rare-max" in err and err.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_bank_command(demo_train_path, demo_train_images, tmp_path):
    from ltaug.pixels.bank import Bank

    out = tmp_path / "bank"
    r = run_cli("bank", demo_train_path, "--images", demo_train_images, "-o", out, "--workers", "1")
    assert r.returncode == 0 and "objects from 30 images" in r.stderr, r.stderr
    bank = Bank(out)
    ds = load_dataset(demo_train_path)
    assert len(bank) == sum(not a["iscrowd"] for a in ds.annotations)
    r = run_cli("bank", demo_train_path, "--images", tmp_path / "nope", "-o", tmp_path / "b2")
    assert r.returncode == 2 and "image folder not found" in r.stderr
