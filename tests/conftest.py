"""Shared fixtures: the bundled demo data (always present) and the shared COCO-LT-mini set."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "data"
SHARED = ROOT.parent / "shared" / "data"
COCO_LT = SHARED / "coco-lt"
LVIS_META = SHARED / "lvis-meta"


@pytest.fixture(scope="session")
def demo_train_path() -> Path:
    return DEMO / "annotations" / "train.json"


@pytest.fixture(scope="session")
def demo_train_images() -> Path:
    return DEMO / "images" / "train"


@pytest.fixture(scope="session")
def _demo_doc(demo_train_path) -> dict:
    return json.loads(demo_train_path.read_text())


@pytest.fixture
def demo_doc(_demo_doc) -> dict:
    """A fresh, mutable copy of the demo train document."""
    return copy.deepcopy(_demo_doc)


@pytest.fixture(scope="session")
def demo_bank(tmp_path_factory, demo_train_path, demo_train_images):
    """An object bank of the demo train set (built once per session)."""
    from ltaug import load_dataset
    from ltaug.pixels.bank import Bank, build_bank

    path = tmp_path_factory.mktemp("demo-bank") / "bank"
    build_bank(load_dataset(demo_train_path), demo_train_images, path, workers=1, progress=False)
    return Bank(path)


def shared_path(*parts) -> Path:
    """A path under ../shared/data; skips the test when the shared data is not beside the checkout."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def coco_lt_train() -> Path:
    return shared_path("coco-lt", "annotations", "instances_train.json")


def pytest_sessionfinish(session, exitstatus):
    """With LTAUG_STRICT_SKIPS=1 (set by scripts/test.sh), a skipped test fails the run.

    Skips exist so that a partial install (engine only, no ../shared) can still run what it
    can; the project's own test command installs everything and has ../shared beside it, so
    a skip there means a test silently did not run.
    """
    import os

    if os.environ.get("LTAUG_STRICT_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"LTAUG_STRICT_SKIPS: {len(skipped)} test(s) skipped; failing the run", red=True)
        session.exitstatus = 1
