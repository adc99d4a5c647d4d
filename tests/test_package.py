"""The package as a user installs it: `python -m build` makes a wheel and an sdist; the wheel installs
into a fresh venv (no torch), where `ltaug` runs the engine and only `ltaug`-named packages are
installed (the folders cli/ and trainer/ become ltaug.cli and ltaug.trainer); the version is the one
in ltaug/__init__.py."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import DEMO, ROOT

import ltaug

pytestmark = pytest.mark.slow  # a fresh venv and package installs: a minute or two


@pytest.fixture
def tmp_path(tmp_path):
    """The test's folder, removed afterwards: its venvs (about 6 GB with torch) would otherwise stay
    in pytest's last three base folders."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def run(*args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{args}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


def test_the_wheel_installs_under_the_ltaug_name_and_runs_without_torch(tmp_path):
    builder = tmp_path / "build-venv"
    run(sys.executable, "-m", "venv", builder)
    run(builder / "bin" / "pip", "install", "-q", "build")
    run(builder / "bin" / "python", "-m", "build", "--outdir", tmp_path / "dist", ROOT, cwd=tmp_path)
    wheels = list((tmp_path / "dist").glob("*.whl"))
    sdists = list((tmp_path / "dist").glob("*.tar.gz"))
    assert len(wheels) == len(sdists) == 1
    assert wheels[0].name == f"ltaug-{ltaug.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheels[0]).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith(f"ltaug-{ltaug.__version__}.dist-info")}
    assert top == {"ltaug"}, top  # no generic top-level package (cli, trainer)
    assert "ltaug/cli/main.py" in names and "ltaug/trainer/losses.py" in names
    assert "ltaug/trainer/__init__.py" in names and "ltaug/cli/__init__.py" in names

    user = tmp_path / "user-venv"
    run(sys.executable, "-m", "venv", user)
    run(user / "bin" / "pip", "install", "-q", wheels[0])
    assert run(user / "bin" / "ltaug", "--version").stdout.strip().endswith(ltaug.__version__)
    r = run(user / "bin" / "ltaug", "stats", DEMO / "annotations" / "train.json")
    assert "person" in r.stdout
    probe = run(user / "bin" / "python", "-c", "import importlib.util as u, ltaug.cli.main;"
                "print(u.find_spec('torch') is None, u.find_spec('cli') is None, u.find_spec('trainer') is None)",
                cwd=tmp_path)
    assert probe.stdout.split() == ["True", "True", "True"]  # no torch; no top-level cli / trainer
    r = subprocess.run([user / "bin" / "ltaug", "train", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--loss" in r.stdout  # the trainer's help needs no torch
    meta = run(user / "bin" / "pip", "show", "ltaug").stdout
    assert re.search(rf"^Version: {re.escape(ltaug.__version__)}$", meta, re.M)


def test_the_wheel_with_the_train_extra_trains(tmp_path):
    """`pip install ltaug[train]` (torch from this machine's builds, through pip's constraint file as
    for the project's venv): `ltaug train` runs two iterations on the demo data."""
    from conftest import shared_path

    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", ROOT)
    wheel = next((tmp_path / "dist").glob("ltaug-*.whl"))
    user = tmp_path / "venv"
    run(sys.executable, "-m", "venv", user)
    run(user / "bin" / "pip", "install", "-q", f"{wheel}[train]")
    out = tmp_path / "run"
    run(user / "bin" / "ltaug", "train", "--train", DEMO / "annotations" / "train.json", "--images",
        DEMO / "images" / "train", "--out", out, "--epochs", "1", "--max-iters-per-epoch", "2", "--workers", "0",
        "--threads", "2", "--preset", "cpu", "--backbone-weights",
        shared_path("..", "weights", "mobilenetv2_imagenet_features.pt"), cwd=tmp_path)
    assert (out / "metrics.json").is_file()
