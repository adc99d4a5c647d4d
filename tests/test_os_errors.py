"""The system refusing a write (here: a file-size limit, as a full disk or a quota would) is one
line naming the file, exit status 4, nothing half-written; a pixel run then finishes with
--resume to the bytes of an uninterrupted run."""
from __future__ import annotations

import resource
import signal
import subprocess
import sys

import pytest
from conftest import DEMO, ROOT
from test_engine import same_tree

pytestmark = pytest.mark.slow  # real processes under a file-size limit

TRAIN, IMAGES = DEMO / "annotations" / "train.json", DEMO / "images" / "train"


def ltaug(*args, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, preexec_fn=limit if file_size_limit else None)


def test_a_refused_json_write_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "rfs.json"
    r = ltaug("resample", TRAIN, "--method", "rfs", "--threshold", "0.1", "-o", out, file_size_limit=20_000)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 4 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"ltaug resample: error: {out}: File too large") and "ulimit -f" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_a_refused_image_write_then_resume_gives_the_uninterrupted_bytes(tmp_path):
    common = ["mosaic", TRAIN, "--images", IMAGES, "--count", 8, "--seed", 3, "--workers", 2]
    r = ltaug(*common, "-o", tmp_path / "out", file_size_limit=30_000)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 4 and len(lines) == 1, r.stderr
    assert f"{tmp_path}/.out.partial/images/" in lines[0] and ": File too large: " in lines[0]
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / ".out.partial").rglob("*.tmp"))  # no half-written file is kept
    assert ltaug(*common, "-o", tmp_path / "out", "--resume").returncode == 0
    assert ltaug(*common, "-o", tmp_path / "ref").returncode == 0
    assert same_tree(tmp_path / "out", tmp_path / "ref")
