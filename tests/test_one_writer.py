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

import pytest
from conftest import DEMO, ROOT
from test_engine import same_tree

pytestmark = pytest.mark.slow  # real processes racing and killed: seconds each

TRAIN, IMAGES = DEMO / "annotations" / "train.json", DEMO / "images" / "train"


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, text=True,
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
    assert f"took over the lock left by pid {first.pid}, started " in resumed.stderr.read()


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


def test_an_output_is_replaced_only_with_overwrite_and_never_with_a_users_file(tmp_path):
    """A finished output is not replaced silently; --overwrite replaces it when it holds only
    ltaug's files (a report included); a file of the user's there makes the run refuse, naming it."""
    def run(*extra):
        return subprocess.run([sys.executable, "-m", "ltaug.cli.main", "mosaic", str(TRAIN), "--images", str(IMAGES),
                               "-o", str(tmp_path / "out"), "--count", "4", "--workers", "1", *extra], cwd=ROOT,
                              capture_output=True, text=True)

    assert run().returncode == 0
    first = (tmp_path / "out" / "annotations.json").read_bytes()
    r = run("--seed", "1")
    assert r.returncode == 2 and "an ltaug output is there; pass --overwrite" in r.stderr, r.stderr
    assert (tmp_path / "out" / "annotations.json").read_bytes() == first
    (tmp_path / "out" / "report.html").write_text("<p>ltaug's report</p>")
    assert run("--seed", "1", "--overwrite").returncode == 0
    assert (tmp_path / "out" / "annotations.json").read_bytes() != first
    (tmp_path / "out" / "notes.txt").write_text("mine")
    r = run("--seed", "2", "--overwrite")
    assert r.returncode == 2 and "holds files ltaug did not write (notes.txt)" in r.stderr, r.stderr
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_a_killed_replace_leaves_nothing_after_the_next_run(tmp_path):
    """A run killed while swapping its output into place leaves .OUT.old (the replaced output);
    the next run into OUT removes it."""
    old = tmp_path / ".out.old"
    (old / "images").mkdir(parents=True)
    (old / "run.json").write_text("{}")
    r = subprocess.run([sys.executable, "-m", "ltaug.cli.main", "mosaic", str(TRAIN), "--images", str(IMAGES),
                        "-o", str(tmp_path / "out"), "--count", "2", "--workers", "1"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
