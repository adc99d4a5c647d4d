"""The registries: an operation, and a resample method, declared and registered in this file
alone run through `ltaug run`, their `ltaug` command and the Python API, with the same bytes out;
their flags, help and validation messages come from their declarations."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import DEMO
from test_engine import same_tree

from ltaug import load_dataset
from ltaug.cli.main import main
from ltaug.errors import SpecError
from ltaug.ops import OPERATIONS, Param, Paste, PixelOperation, Resample, register
from ltaug.rebalance.methods import METHODS, ResampleMethod
from ltaug.run.engine import run_pipeline

IMAGES = DEMO / "images" / "train"


class Grayscale(PixelOperation):
    """Add grey copies of randomly drawn images, with their objects (an operation of this test)."""

    name = "grey-test"
    summary = "add grey copies of images"

    count = Param(None, "grey images to add (default: one per input image)", type=int, optional=True, low=0,
                  metavar="N")
    weights = Param((0.114, 0.587, 0.299), "B, G, R weights of the grey level", type=float, nargs=3, low=0,
                    high=1)

    def plan(self, dataset, prepared):
        rng = np.random.default_rng([self.seed, 7])
        ids = dataset.index.image_ids
        n = ids.size if self.count is None else self.count
        return [{"sources": [int(ids[i])]} for i in rng.integers(0, ids.size, n)], {}, n

    def render(self, recipe, loaded, opened):
        (img, _, anns), = loaded
        grey = np.clip(img.astype(np.float32) @ np.asarray(self.weights, np.float32), 0, 255).astype(np.uint8)
        new = [{**{k: v for k, v in a.items() if k not in ("id", "image_id", "ltaug")},
                "ltaug": {"source_annotation_id": a["id"]}} for a in anns]
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), {"new": new, "removed": []}

    def recipe_params(self, recipe):
        return {"weights": list(self.weights)}


@pytest.fixture
def grey():
    register(Grayscale)
    yield Grayscale
    OPERATIONS.unregister(Grayscale.name)


def test_a_registered_operation_runs_everywhere(grey, tmp_path, demo_train_path, capsys):
    ds = load_dataset(demo_train_path)
    run_pipeline(ds, IMAGES, tmp_path / "api", [Grayscale(count=5, seed=3)], workers=1, progress=False)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(json.dumps({"input": str(demo_train_path), "images": str(IMAGES), "output": str(tmp_path / "yaml"),
                                    "seed": 3, "steps": [{"grey-test": {"count": 5}}]}))
    assert main(["run", str(pipeline), "--workers", "1"]) == 0
    assert main(["grey-test", str(demo_train_path), "--images", str(IMAGES), "-o", str(tmp_path / "cli"),
                 "--count", "5", "--seed", "3", "--workers", "1"]) == 0
    assert same_tree(tmp_path / "api", tmp_path / "yaml") and same_tree(tmp_path / "api", tmp_path / "cli")
    out = load_dataset(tmp_path / "api" / "annotations.json")
    made = [im for im in out.images if im.get("ltaug", {}).get("op") == "grey-test"]
    assert len(out.images) == len(ds.images) + 5 and len(made) == 5
    for im in made:
        pixels = cv2.imread(str(tmp_path / "api" / "images" / im["file_name"]))
        assert np.abs(pixels.astype(int) - pixels[..., :1]).max() <= 2  # grey, up to JPEG's chroma noise
        source = im["ltaug"]["source_image_ids"][0]
        assert sum(a["image_id"] == im["id"] for a in out.annotations) == \
            sum(a["image_id"] == source for a in ds.annotations)
    run = json.loads((tmp_path / "api" / "run.json").read_text())
    assert run["steps"] == [{"op": "grey-test", "params": {"count": 5, "weights": [0.114, 0.587, 0.299], "seed": 3}}]


def test_a_registered_operation_gets_help_and_validation_from_its_declaration(grey, tmp_path, demo_train_path,
                                                                              capsys):
    with pytest.raises(SystemExit):
        main(["grey-test", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Add grey copies of randomly drawn images" in text
    assert "--count N grey images to add (default: one per input image; >= 0)" in text
    assert "--weights WEIGHTS WEIGHTS WEIGHTS B, G, R weights of the grey level (default 0.114 0.587 0.299; in [0, 1])" \
        in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "add grey copies of images" in capsys.readouterr().out
    args = [str(demo_train_path), "--images", str(IMAGES), "-o", str(tmp_path / "o")]
    assert main(["grey-test", *args, "--count", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "ltaug grey-test: error: --count must be >= 0, got -1"
    assert main(["grey-test", *args, "--weights", "0.5", "2", "0.1"]) == 2
    assert "--weights must be in [0, 1], got [0.5, 2.0, 0.1]" in capsys.readouterr().err
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(json.dumps({"input": str(demo_train_path), "images": str(IMAGES), "output": "o",
                                    "steps": [{"grey-test": {"count": "many"}}]}))
    assert main(["run", str(pipeline)]) == 2
    assert capsys.readouterr().err.strip().endswith("step 1: grey-test: count must be an integer, got 'many'")
    with pytest.raises(SpecError, match="grey-test: colour is not a parameter"):
        Grayscale(colour=1)
    assert not (tmp_path / "o").exists()


def test_values_are_echoed_as_typed_and_flags_named_as_typed(tmp_path, demo_train_path, capsys):
    """The user's own words come back: a value with an underscore keeps it, --lambda is --lambda,
    and --threshold 0 (documented: plain epochs) is accepted."""
    args = [str(demo_train_path), "--images", str(IMAGES), "-o", str(tmp_path / "o")]
    assert main(["paste", *args, "--exclude", "too_small,not_a_flag"]) == 2
    assert "'not_a_flag'" in capsys.readouterr().err
    assert main(["resample", str(demo_train_path), "--method", "soft", "--lambda", "2", "-o", str(tmp_path / "r.json")]) == 2
    assert capsys.readouterr().err.strip() == "ltaug resample: error: --lambda must be in [0, 1], got 2.0"
    assert main(["paste", *args, "--weighting", "budget"]) == 2
    assert "--min-instances / --exponent / --max-factor is needed by weighting 'budget'" in capsys.readouterr().err
    assert main(["resample", str(demo_train_path), "--method", "rfs", "--threshold", "0",
                 "-o", str(tmp_path / "r.json")]) == 0
    assert len(load_dataset(tmp_path / "r.json").images) == len(load_dataset(demo_train_path).images)


def test_declared_defaults_are_the_operations_defaults():
    """The Python API, YAML and CLI share one declaration: a default-made operation records exactly
    the declared defaults, and a copy with changes validates again."""
    paste = Paste()
    assert paste.params() == {k: p.record(p.validate(p.default)) for k, p in Paste.parameters.items()}
    assert paste.replace(objects=5).objects == 5 and paste.objects == 3
    with pytest.raises(SpecError, match="paste: max_overlap must be in"):
        paste.replace(max_overlap=2)
    with pytest.raises(AttributeError):
        paste.objects = 4
    with pytest.raises(SpecError, match="resample: method is required"):
        Resample()
    assert Resample(method="cas").params() == {"seed": 0, "epochs": 1, "samples_per_epoch": None}


class Doubling(ResampleMethod):
    """Every image ``times`` times per epoch (a resample method of this test)."""

    name = "times-test"
    times = Param(2, "uses of each image per epoch", low=1, metavar="K", group="times-test")

    def draw(self, index, epochs, seed):
        per_epoch = [np.full(index.num_images, self.times, np.int64) for _ in range(epochs)]
        return per_epoch, np.full(index.num_images, float(self.times))


@pytest.fixture
def doubling():
    METHODS.register(Doubling)
    yield Doubling
    METHODS.unregister(Doubling.name)


def test_a_registered_resample_method_is_a_method_of_resample_everywhere(doubling, tmp_path, demo_train_path, capsys):
    """One class in the test file: `ltaug resample --method times-test --times 3`, the YAML step
    and Resample(method=..., times=...) give the same file; provenance records its parameter."""
    ds = load_dataset(demo_train_path)
    op = Resample(method="times-test", times=3, seed=4)
    assert op.params() == {"seed": 4, "epochs": 1, "times": 3}
    run_pipeline(ds, IMAGES, tmp_path / "api", [op], workers=1, progress=False)
    assert main(["resample", str(demo_train_path), "--method", "times-test", "--times", "3", "--seed", "4",
                 "-o", str(tmp_path / "cli.json")]) == 0
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(json.dumps({"input": str(demo_train_path), "images": str(IMAGES), "output": str(tmp_path / "yaml"),
                                    "seed": 4, "steps": [{"resample": {"method": "times-test", "times": 3}}]}))
    assert main(["run", str(pipeline), "--workers", "1"]) == 0
    api, cli = (load_dataset(p) for p in (tmp_path / "api" / "annotations.json", tmp_path / "cli.json"))
    assert len(api.images) == 3 * len(ds.images) and api.images == cli.images and api.annotations == cli.annotations
    assert (tmp_path / "api" / "annotations.json").read_bytes() == (tmp_path / "yaml" / "annotations.json").read_bytes()
    assert api.images[0]["ltaug"]["params"] == {"seed": 4, "epochs": 1, "times": 3}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["resample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--method {rfs,cas,sqrt,soft,times-test}" in text and "--times K uses of each image per epoch" in text
    with pytest.raises(SpecError, match="resample: times must be >= 1, got 0"):
        Resample(method="times-test", times=0)
