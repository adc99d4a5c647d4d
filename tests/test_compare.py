"""ltaug compare end to end on the demo data (a few iterations per run): runs, resumes, reports."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from conftest import DEMO, ROOT, shared_path

pytest.importorskip("torch")

from ltaug.trainer.compare import time_left  # noqa: E402
from ltaug.trainer.compare_config import load_compare, run_dir, select  # noqa: E402


def config(tmp_path, cells: str, seeds="[0]") -> str:
    weights = shared_path("..", "weights", "mobilenetv2_imagenet_features.pt")
    path = tmp_path / "cmp.yaml"
    path.write_text(f"""\
train: {DEMO}/annotations/train.json
images: {DEMO}/images/train
val: {DEMO}/annotations/val.json
val_images: {DEMO}/images/val
out: out
seeds: {seeds}
jobs: 2
bins: {{rare_max: 2, common_max: 5}}
bootstrap: {{samples: 5}}
training: {{epochs: 2, max_iters_per_epoch: 1, warmup_iters: 1, backbone_weights: {weights}}}
cells:
{cells}""")
    return str(path)


def ltaug(*args):
    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.slow
def test_compare_runs_resumes_and_reports(tmp_path):
    cfg = config(tmp_path, """\
  baseline: {}
  paste: {data: [{resample: {method: rfs, threshold: 0.0, epochs: 2}}, {paste: {objects: 2}}]}
  tau: {from: baseline, tau: 1.0}
""")
    r = ltaug("compare", cfg)
    assert r.returncode == 0, r.stderr
    cmp = load_compare(cfg)
    rows = list(csv.DictReader(open(cmp.out / "results.csv")))
    assert [row["cell"] for row in rows] == ["baseline", "paste", "tau"]
    for name in ("results.md", "ap_by_bin.png", "per_class_delta.png"):
        assert (cmp.out / name).stat().st_size > 0
    # every run names the host it trained on, and the report the one host
    probes = {json.loads((run_dir(cmp, c, 0) / "host.json").read_text())[0]["probe"] for c in ("baseline", "paste", "tau")}
    assert len(probes) == 1 and "Host: every run trained on" in (cmp.out / "results.md").read_text()
    # the data cell trained on the engine's output, for epochs / data epochs passes, counts from the original
    spec = (run_dir(cmp, "paste", 0) / "spec.json").read_text()
    assert "data/paste/seed0/annotations.json" in spec and '"epochs": 1' in spec and '"sampler": "plain"' in spec
    saved = json.loads((run_dir(cmp, "paste", 0) / "config.json").read_text())
    assert saved["counts_from"] == saved["class_counts"]["file"] == str(cmp.train)
    assert saved["class_counts"]["note"].endswith("(--counts-from)")  # the study's own choice, explicit
    assert len((run_dir(cmp, "paste", 0) / "metrics.jsonl").read_text().splitlines()) == 1
    # finished runs are not run again
    stamp = (run_dir(cmp, "baseline", 0) / "result.json").stat().st_mtime_ns
    r = ltaug("compare", cfg)
    assert r.returncode == 0 and "baseline seed 0" not in r.stderr
    assert (run_dir(cmp, "baseline", 0) / "result.json").stat().st_mtime_ns == stamp
    # an unfinished run (checkpoint, no result) continues from its checkpoint: no epoch is redone
    (run_dir(cmp, "baseline", 0) / "result.json").unlink()
    r = ltaug("compare", cfg)
    assert r.returncode == 0, r.stderr
    assert (run_dir(cmp, "baseline", 0) / "result.json").is_file()
    assert len((run_dir(cmp, "baseline", 0) / "metrics.jsonl").read_text().splitlines()) == 2
    # a stage-2 run to do whose finished stage-1 run kept no checkpoint: one line before anything runs
    (run_dir(cmp, "baseline", 0) / "checkpoint.pt").unlink()
    (run_dir(cmp, "tau", 0) / "result.json").unlink()
    r = ltaug("compare", cfg)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "tau seed 0 starts from" in r.stderr and "without its checkpoint.pt" in r.stderr
    assert not (run_dir(cmp, "tau", 0) / "result.json").exists()


@pytest.mark.slow
def test_config_errors_are_one_line(tmp_path):
    for cells, message in (("  a: {losss: ce}\n", "unknown setting(s) losss"),
                           ("  a: {from: nope, tau: 1}\n", "from: nope is not a cell"),
                           ("  a: {tau: 1}\n", "need from:"),
                           ("  baseline: {data: [{blur: {}}]}\n", "blur is not a known operation"),
                           ("  baseline: {loss: seesw}\n", "cell baseline: unknown loss 'seesw'"),
                           ("  baseline: {loss: seesaw, loss_params: {pp: 1}}\n", "takes no parameter pp"),
                           ("  baseline: {sampler: rfss}\n", "sampler must be one of"),
                           ("  baseline: {epochs: 0}\n", "epochs must be >= 1")):
        r = ltaug("compare", config(tmp_path, cells))
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_select_cells_seeds_and_out(tmp_path):
    cmp = load_compare(config(tmp_path, "  baseline: {}\n  rfs: {sampler: rfs}\n  tau: {from: baseline, tau: 1.0}\n",
                              seeds="[0, 1, 2]"))
    one = select(cmp, cells=["tau"], seeds=[1], out=tmp_path / "mine")
    assert list(one.cells) == ["baseline", "tau"] and one.seeds == [1] and one.out == tmp_path / "mine"
    assert select(cmp, cells=["rfs"]).baseline == "rfs" and select(cmp).cells == cmp.cells
    r = ltaug("compare", config(tmp_path, "  baseline: {}\n"), "--cells", "baseline,nope")
    assert r.returncode == 2 and r.stderr.strip() == "ltaug compare: error: no cell nope in the config (cells: baseline)"
    r = ltaug("compare", config(tmp_path, "  baseline: {}\n"), "--seeds", "0,x")
    assert r.returncode == 2 and "--seeds must be integers" in r.stderr


@pytest.mark.slow
def test_a_failed_run_is_named_and_the_exit_status_is_1(tmp_path):
    r = ltaug("compare", config(tmp_path, f"  baseline: {{}}\n  broken: {{backbone_weights: {tmp_path}/none.pt}}\n"),
              "--cells", "broken")
    assert r.returncode == 1, r.stderr
    assert "[1/1] broken seed 0: FAILED (see its log.txt)" in r.stderr
    assert "1 run(s) failed: broken/seed0" in r.stderr
    assert "none.pt" in (tmp_path / "out" / "runs" / "broken" / "seed0" / "log.txt").read_text()


def test_time_left_shares_the_runs_left_among_the_jobs():
    assert time_left(30 * 60, 1, 27, 2) == 30 * 60 * 27 / 2   # first of 28 done in 30 min, 2 at a time
    assert time_left(100.0, 2, 1, 2) == 50.0                  # one run left: it runs alone
    assert time_left(100.0, 3, 0, 2) == 0.0                   # nothing left
    assert time_left(0.0, 0, 5, 2) == 0.0                     # only resumed runs so far: no estimate


@pytest.mark.parametrize("name", ["compare_study.yaml", "compare_published.yaml", "compare_study_gpu.yaml",
                                  "gpu_preset_check.yaml"])
def test_example_configs_load(name):
    """The shipped configs name only known keys and settings (a renamed trainer field breaks them)."""
    cmp = load_compare(ROOT / "examples" / name)
    assert cmp.baseline in cmp.cells and cmp.seeds
    assert cmp.train.name == "instances_train.json" and cmp.val_images.name == "val2017"


def test_the_published_recipes_are_cells_of_the_published_study():
    """seesaw-mmdet (mmdetection's LVIS recipe) and bags-decoupled (BAGS' stage 2 on the baseline)
    validate, select their stage-1 cell and say what they run; a bad setting is one line."""
    from ltaug.trainer.compare import cell_config
    from ltaug.trainer.compare_report import _describe

    cmp = load_compare(ROOT / "examples" / "compare_published.yaml")
    two = select(cmp, cells=["seesaw-mmdet", "bags-decoupled"], seeds=[0], out="/tmp/x")
    assert list(two.cells) == ["baseline", "seesaw-mmdet", "bags-decoupled"] and two.baseline == "baseline"
    seesaw = cell_config(two, "seesaw-mmdet", 0)
    assert (seesaw["loss"], seesaw["classifier"], seesaw["classifier_tau"]) == ("seesaw_mmdet", "cosine", 20)
    bags = cell_config(two, "bags-decoupled", 0)
    assert (bags["stage2"], bags["loss"], bags.get("sampler", "plain")) == ("bags", "bags", "plain")
    assert bags["init_from"] == str(run_dir(two, "baseline", 0))
    assert _describe(cmp, "seesaw-mmdet") == "loss seesaw_mmdet; classifier cosine tau 20"
    assert _describe(cmp, "bags-decoupled") == "loss bags; from baseline, bags"
    assert list(cmp.cells) == ["baseline", "paste-gaussian", "seesaw-mmdet", "rfs+seesaw-mmdet", "bags-decoupled"]


def test_a_bags_stage2_cell_without_loss_bags_is_one_line(tmp_path):
    from ltaug.errors import UsageError

    path = tmp_path / "cmp.yaml"
    path.write_text("train: t.json\nimages: i\nval: v.json\nval_images: vi\nout: o\n"
                    "cells:\n  baseline: {}\n  b2: {from: baseline, stage2: bags}\n")
    with pytest.raises(UsageError, match=r"cell b2: stage 2 bags \(--stage2 bags\) .* needs loss bags"):
        load_compare(path)
