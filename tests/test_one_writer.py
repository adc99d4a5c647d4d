"""One writer per output: a second `ltaug run` (or `--resume`, or bank build) into an output
being written is refused with one line naming the holder; the first finishes with the bytes of
an uninterrupted run; a killed holder's lock does not block the next run; a killed bank build's
temporary folder is removed by the next build."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import DEMO, ROOT
from test_engine import same_tree

TRAIN, IMAGES = DEMO / "annotations" / "train.json", DEMO / "images" / "train"


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.main", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def pipeline(tmp_path, output) -> str:
    path = tmp_path / f"{output}.yaml"
    path.write_text(json.dumps({"input": str(TRAIN), "images": str(IMAGES), "output": str(tmp_path / output),
                                "steps": [{"mosaic": {"count": 400, "seed": 1}}]}))
    return str(path)


def test_a_second_writer_is_refused_and_the_first_is_not_disturbed(tmp_path):
    config = pipeline(tmp_path, "out")
    first = start("run", config, "--workers", "1")
    wait_for(tmp_path / ".out.partial" / "job.json")
    for args in (["run", config], ["run", config, "--resume"]):
        second = start(*args)
        _, err = second.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, err
        assert "another ltaug command is writing it" in lines[0] and f"pid {first.pid}," in lines[0]
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert not (tmp_path / ".out.lock").exists()
    ref = start("run", pipeline(tmp_path, "ref"), "--workers", "1")
    assert ref.wait(timeout=300) == 0
    assert same_tree(tmp_path / "out", tmp_path / "ref")


def test_a_killed_writer_does_not_block_the_next(tmp_path):
    config = pipeline(tmp_path, "out")
    first = start("run", config, "--workers", "1")
    wait_for(tmp_path / ".out.partial" / "job.json")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert (tmp_path / ".out.lock").exists()  # left by the killed run, no longer locked
    resumed = start("run", config, "--workers", "1", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()


def test_a_killed_bank_build_leaves_nothing_after_the_next_build(tmp_path):
    build = ["bank", TRAIN, "--images", IMAGES, "-o", tmp_path / "bank", "--workers", "1"]
    first = start(*build)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".bank.*.tmp")):
        assert time.monotonic() < deadline and first.poll() is None, "the build did not start or ended too soon"
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = start(*build)
    assert second.wait(timeout=300) == 0, second.stderr.read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank"]
