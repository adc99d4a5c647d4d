"""Inputs fingerprinted: a run killed and resumed on inputs that changed in between (an image, the
annotation file, a given bank) is refused with one line naming what changed; on unchanged inputs
it resumes to the uninterrupted run's bytes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import DEMO, ROOT
from test_engine import same_tree

pytestmark = pytest.mark.slow  # real runs killed and resumed: seconds each

TRAIN, IMAGES = DEMO / "annotations" / "train.json", DEMO / "images" / "train"


def ltaug(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, **kw)


def killed_run(config, work) -> None:
    """Start `ltaug run`, SIGKILL it once it has rendered something."""
    proc = subprocess.Popen([sys.executable, "-m", "ltaug.cli.main", "run", str(config), "--workers", "1"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(work.glob("step-*/shards/*.json")):
        assert time.monotonic() < deadline and proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def copied(tmp_path):
    """A private copy of the demo's annotation file and images (safe to change)."""
    shutil.copytree(IMAGES, tmp_path / "images")
    shutil.copy(TRAIN, tmp_path / "train.json")
    return tmp_path


def config(root, steps, output="out") -> os.PathLike:
    path = root / f"{output}.yaml"
    path.write_text(json.dumps({"input": str(root / "train.json"), "images": str(root / "images"),
                                "output": str(root / output), "steps": steps}))
    return path


MOSAIC = [{"mosaic": {"count": 300, "seed": 1}}]


def test_an_image_changed_between_kill_and_resume_is_named(copied):
    killed_run(config(copied, MOSAIC), copied / ".out.partial")
    victim = sorted((copied / "images").iterdir())[3]
    victim.write_bytes(victim.read_bytes() + b"\0")  # still a JPEG to OpenCV, not the same file
    r = ltaug("run", config(copied, MOSAIC), "--resume")
    lines = [ln for ln in r.stderr.strip().splitlines() if "took over the lock left by" not in ln]  # the killed run's
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "1 input image file(s) changed" in lines[0] and victim.name in lines[0]


def test_the_annotation_file_changed_between_kill_and_resume_is_named(copied):
    killed_run(config(copied, MOSAIC), copied / ".out.partial")
    doc = json.loads((copied / "train.json").read_text())
    doc["annotations"].pop()
    (copied / "train.json").write_text(json.dumps(doc))
    r = ltaug("run", config(copied, MOSAIC), "--resume")
    assert r.returncode == 2 and f"the annotation file {copied / 'train.json'} changed" in r.stderr, r.stderr


def test_a_bank_rebuilt_between_kill_and_resume_is_named_and_unchanged_inputs_resume(copied):
    assert ltaug("bank", copied / "train.json", "--images", copied / "images", "-o", copied / "bank",
                 "--workers", "1").returncode == 0
    steps = [{"resample": {"method": "rfs", "threshold": 0.0, "epochs": 8}},
             {"paste": {"objects": 3, "bank": str(copied / "bank")}}]
    killed_run(config(copied, steps), copied / ".out.partial")
    r = ltaug("run", config(copied, steps), "--resume")  # unchanged: resumes
    assert r.returncode == 0, r.stderr
    assert ltaug("run", config(copied, steps, "ref")).returncode == 0
    assert same_tree(copied / "out", copied / "ref")
    killed_run(config(copied, steps, "again"), copied / ".again.partial")
    assert ltaug("bank", copied / "train.json", "--images", copied / "images", "-o", copied / "bank",
                 "--workers", "1", "--occluded-fraction", "0.2").returncode == 0
    r = ltaug("run", config(copied, steps, "again"), "--resume")
    assert r.returncode == 2 and f"the bank {copied / 'bank'} changed" in r.stderr and "meta.json" in r.stderr, \
        r.stderr
