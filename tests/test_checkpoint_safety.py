"""No code runs from a data file: every torch file the trainer reads (a checkpoint to evaluate,
resume or start cRT from; backbone weights) is loaded with ``weights_only=True``. A pickle that
names a callable is refused with one line, and the callable does not run."""
from __future__ import annotations

import json
import pathlib

import pytest

torch = pytest.importorskip("torch")

from conftest import DEMO  # noqa: E402

from ltaug.cli.main import main  # noqa: E402

TRAIN, IMAGES = DEMO / "annotations" / "train.json", DEMO / "images" / "train"


class Trap:
    """Unpickling this calls Path.touch on ``marker``: the proof that code ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def crafted(tmp_path: pathlib.Path, name: str, content) -> pathlib.Path:
    path = tmp_path / name
    torch.save(content, path)
    return path


COMMON = ["--train", str(TRAIN), "--images", str(IMAGES), "--epochs", "1", "--max-iters-per-epoch", "1",
          "--workers", "0", "--preset", "cpu", "--min-size", "160", "--max-size", "224"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> pathlib.Path:
    run = tmp_path_factory.mktemp("real") / "run"
    assert main(["train", *COMMON, "--out", str(run)]) == 0
    return run


@pytest.mark.parametrize("where", ["eval", "resume", "crt", "backbone"])
def test_a_checkpoint_that_names_a_callable_is_refused_and_does_not_run(where, tmp_path, capsys, real_run):
    marker = tmp_path / "code-ran"
    trap = {"model": {"w": torch.zeros(1)}, "config": {"payload": Trap(marker)}, "epoch": 0}
    common = COMMON
    capsys.readouterr()
    if where == "eval":
        code = main(["eval", str(crafted(tmp_path, "evil.pt", trap)), "--val", str(TRAIN), "--val-images", str(IMAGES)])
    elif where == "resume":
        run = tmp_path / "run"
        run.mkdir()
        crafted(run, "checkpoint.pt", trap)
        code = main(["train", *common, "--out", str(run), "--resume"])
    elif where == "crt":
        stage1 = tmp_path / "stage1"
        stage1.mkdir()
        (stage1 / "config.json").write_text((real_run / "config.json").read_text())
        crafted(stage1, "checkpoint.pt", trap)
        code = main(["train", *common, "--out", str(tmp_path / "s2"), "--stage2", "crt", "--from", str(stage1),
                     "--sampler", "cas"])
    else:
        weights = crafted(tmp_path, "weights.pt", {"features.0.0.weight": Trap(marker)})
        code = main(["train", *common, "--out", str(tmp_path / "run"), "--backbone-weights", str(weights)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert code in (1, 2) and not marker.exists(), err
    assert len(errors) == 1 and "refused" in errors[0] and "Traceback" not in err, err


def test_what_the_trainer_writes_loads_as_plain_data(real_run):
    """A real checkpoint holds only tensors and plain values, and the shared backbone file too."""
    from conftest import shared_path

    from ltaug.trainer.checkpoint import read_torch_file

    state = read_torch_file(real_run / "checkpoint.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "config"} <= set(state)
    assert json.dumps(state["config"])  # plain values
    assert len(read_torch_file(shared_path("..", "weights", "mobilenetv2_imagenet_features.pt"))) == 312
