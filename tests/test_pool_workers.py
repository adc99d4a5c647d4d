"""Pool workers die with their parent: SIGKILL of `ltaug mosaic --workers 2` (which runs no
clean-up) leaves no worker running."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO, ROOT

pytestmark = pytest.mark.slow  # a real run killed


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has died, its parent gone


def test_workers_die_when_the_parent_is_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "ltaug.cli.main", "mosaic", str(DEMO / "annotations" / "train.json"),
                             "--images", str(DEMO / "images" / "train"), "-o", str(tmp_path / "out"),
                             "--count", "5000", "--workers", "2"], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(workers := children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) >= 2, "the pool did not start"
        time.sleep(1.0)  # the workers are rendering
        assert all(alive(w) for w in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if alive(w)], "workers outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
