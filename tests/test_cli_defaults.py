"""The trainer commands' --help states the code's defaults and choices.

`ltaug --help` must not import torch (every command would pay for it), so the parsers of
`train`, `eval` and `tau-sweep` spell their choices and defaults out; this test holds them to the
code that uses them (TrainConfig's fields, the registries of samplers, presets, backbones,
classifiers, stage-2 modes and tau-norm bias modes). The data commands take theirs from the code
directly (ltaug.ops declarations, ltaug.params, the libraries' constants)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from conftest import ROOT  # noqa: E402

from ltaug.cli.main import build_parser  # noqa: E402
from ltaug.trainer.config import STAGE2, TrainConfig  # noqa: E402
from ltaug.trainer.decouple import BIAS_MODES  # noqa: E402
from ltaug.trainer.model import BACKBONES, CLASSIFIERS, PRESETS  # noqa: E402
from ltaug.trainer.samplers import SAMPLERS  # noqa: E402


def actions(command: str) -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {a.dest: a for a in sub._actions}


def test_train_defaults_and_choices_are_the_codes():
    train = actions("train")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    checked = []
    for dest, action in train.items():
        if dest in defaults and action.default is not None and not isinstance(action.default, list):
            assert action.default == defaults[dest], (dest, action.default, defaults[dest])
            checked.append(dest)
    assert {"epochs", "batch_size", "lr", "warmup_iters", "workers", "seed", "rfs_threshold", "classifier",
            "amp"} <= set(checked)
    assert tuple(train["sampler"].choices) == tuple(SAMPLERS)
    assert tuple(train["preset"].choices) == tuple(PRESETS)
    assert tuple(train["backbone"].choices) == tuple(BACKBONES)
    assert tuple(train["classifier"].choices) == tuple(CLASSIFIERS)
    assert tuple(train["stage2"].choices) == tuple(STAGE2)


@pytest.mark.parametrize("command", ["eval", "tau-sweep"])
def test_tau_bias_choices_are_the_codes(command):
    action = actions(command)["tau_bias"]
    assert tuple(action.choices) == BIAS_MODES and action.default == BIAS_MODES[0]


def test_the_help_of_every_command_imports_no_torch():
    code = "import sys; from ltaug.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
