"""`ltaug eval`, `ltaug tau-sweep` and `ltaug train --stage2 crt|bags` through the CLI, on a tiny demo run."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from conftest import DEMO, shared_path  # noqa: E402

from ltaug.cli.main import main  # noqa: E402

TRAIN, IMAGES = DEMO / "annotations" / "train.json", DEMO / "images" / "train"
VAL, VAL_IMAGES = DEMO / "annotations" / "val.json", DEMO / "images" / "val"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Two iterations of `ltaug train` on the demo data, evaluated on the demo val set."""
    out = tmp_path_factory.mktemp("cli") / "run"
    weights = shared_path("..", "weights", "mobilenetv2_imagenet_features.pt")
    assert main(["train", "--train", str(TRAIN), "--images", str(IMAGES), "--val", str(VAL), "--val-images",
                 str(VAL_IMAGES), "--out", str(out), "--epochs", "1", "--max-iters-per-epoch", "2", "--workers", "0",
                 "--threads", "2", "--preset", "cpu", "--backbone-weights", str(weights)]) == 0
    return out


def eval_json(capsys, *args):
    capsys.readouterr()
    assert main(["eval", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_eval_run_equals_training_eval_and_rebins(run_dir, capsys, tmp_path):
    trained = json.loads((run_dir / "metrics.json").read_text())["eval"]
    got = eval_json(capsys, run_dir)                   # the run's own --val
    assert got["bbox"]["AP"] == trained["bbox"]["AP"] and got["bbox"]["per_class"] == trained["bbox"]["per_class"]
    assert got["model"] == {"source": str(run_dir), "epochs": 1, "tau": None, "tau_bias": None}
    assert got["bins_source"].startswith("training file image counts: r <= 10 < c <= 100")
    dets = tmp_path / "dets.json"
    rebinned = eval_json(capsys, run_dir / "checkpoint.pt", "--val", VAL, "--val-images", VAL_IMAGES,
                         "--rare-max", "1", "--common-max", "3", "--save-detections", dets)
    assert rebinned["bins_source"].endswith("r <= 1 < c <= 3 < f") and rebinned["bbox"]["AP"] == got["bbox"]["AP"]
    # the saved detections score the same as a results file
    again = eval_json(capsys, dets, "--val", VAL, "--train", TRAIN, "--rare-max", "1", "--common-max", "3")
    assert again["bbox"]["AP"] == got["bbox"]["AP"] and again["bbox"]["APr"] == rebinned["bbox"]["APr"]
    assert main(["eval", str(run_dir)]) == 0
    table = capsys.readouterr().out
    assert table.startswith(f"model      {run_dir}, 1 epochs") and "APr" in table


@pytest.mark.slow
def test_tau_sweep_first_row_is_the_run(run_dir, capsys):
    plain = eval_json(capsys, run_dir)
    tau1 = eval_json(capsys, run_dir, "--tau", "1", "--tau-bias", "drop")
    assert tau1["model"]["tau"] == 1.0 and tau1["model"]["tau_bias"] == "drop"
    assert main(["tau-sweep", str(run_dir), "--taus", "1,0", "--tau-bias", "drop", "--json"]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert [r["tau"] for r in sweep["results"]] == [0.0, 1.0]
    assert sweep["results"][1]["bbox"]["AP"] == tau1["bbox"]["AP"]
    assert main(["tau-sweep", str(run_dir), "--taus", "0,0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"model      {run_dir}") and "best bbox AP" in lines[-2]
    row0 = next(line for line in lines if line.strip().startswith("0.00")).split()
    assert float(row0[1]) == pytest.approx(plain["bbox"]["AP"], abs=5e-4)


def test_segm_is_skipped_with_a_note_when_the_ground_truth_has_no_masks(capsys, tmp_path):
    from ltaug import load_dataset
    from ltaug.io.geometry import rle_to_json, to_rle

    val = load_dataset(VAL)
    sizes = {im["id"]: (im["height"], im["width"]) for im in val.images}
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
             "segmentation": rle_to_json(to_rle(a["segmentation"], *sizes[a["image_id"]]))}
            for a in val.annotations if not a.get("iscrowd")]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    with_masks = eval_json(capsys, tmp_path / "dets.json", "--val", VAL)
    assert with_masks["segm"]["AP"] > 0.9 and "skipped" not in with_masks
    doc = json.loads(VAL.read_text())
    for a in doc["annotations"]:
        a.pop("segmentation", None)
    (tmp_path / "boxes.json").write_text(json.dumps(doc))
    assert main(["eval", str(tmp_path / "dets.json"), "--val", str(tmp_path / "boxes.json")]) == 0
    out = capsys.readouterr().out
    assert "segm       skipped: 156 of 156 ground-truth annotations have no segmentation" in out
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "bbox"]


def test_crt_via_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "crt"
    assert main(["train", "--train", str(TRAIN), "--images", str(IMAGES), "--out", str(out), "--stage2", "crt",
                 "--from", str(run_dir), "--epochs", "1", "--max-iters-per-epoch", "2", "--workers", "0"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["sampler"], cfg["stage2"], cfg["init_from"], cfg["preset"]) == ("cas", "crt", str(run_dir), "cpu")


def test_bags_stage2_via_cli(run_dir, tmp_path, capsys):
    """--stage2 bags: loss bags and the plain sampler unless given, the stage-1 model's settings."""
    out = tmp_path / "bags"
    assert main(["train", "--train", str(TRAIN), "--images", str(IMAGES), "--out", str(out), "--stage2", "bags",
                 "--from", str(run_dir), "--epochs", "1", "--max-iters-per-epoch", "2", "--workers", "0"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["loss"], cfg["sampler"], cfg["stage2"], cfg["init_from"], cfg["preset"]) == \
        ("bags", "plain", "bags", str(run_dir), "cpu")


@pytest.mark.parametrize("args, message", [
    (["eval", "nowhere"], "no checkpoint.pt"),
    (["eval", "{dets}"], "needs --val"),
    (["eval", "{dets}", "--val", str(VAL), "--tau", "1"], "--tau applies to a run"),
    (["eval", "{run}", "--val", str(VAL)], "--val needs --val-images"),
    (["tau-sweep", "{run}", "--taus", "0,-1"], "numbers >= 0"),
    (["train", "--train", str(TRAIN), "--images", str(IMAGES), "--out", "{tmp}/x", "--stage2", "crt"],
     "go together"),
    (["train", "--train", str(TRAIN), "--images", str(IMAGES), "--out", "{tmp}/x", "--stage2", "crt", "--from",
      "{run}", "--sampler", "plain"], "class-balanced"),
    (["train", "--train", str(TRAIN), "--images", str(IMAGES), "--out", "{run}"],
     "holds a checkpoint of an earlier run: pass --resume to continue it, or choose another --out"),
    (["train", "--train", str(TRAIN), "--images", str(IMAGES), "--out", "{run}", "--resume", "--loss", "seesaw"],
     "cannot resume: loss was 'ce' in the run there, is 'seesaw' now"),
    (["train", "--train", str(TRAIN), "--images", str(IMAGES), "--out", "{run}", "--resume", "--classifier", "cosine"],
     "cannot resume: classifier was 'linear' in the run there, is 'cosine' now"),
    (["train", "--train", str(TRAIN), "--images", str(IMAGES), "--out", "{tmp}/x", "--stage2", "bags", "--from",
      "{run}", "--loss", "ce"], "stage 2 bags (--stage2 bags) trains the grouped classifier of BAGS: it needs loss "
                                "bags (--loss bags), got loss ce"),
])
def test_errors_are_one_line(args, message, run_dir, tmp_path, capsys):
    (tmp_path / "dets.json").write_text("[]")
    args = [a.format(dets=tmp_path / "dets.json", run=run_dir, tmp=tmp_path) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def rfs_output(tmp_path):
    """An ltaug output folder of the demo train set (`ltaug run`, one RFS step): annotations.json, run.json."""
    config = tmp_path / "rfs.yaml"
    config.write_text(f"input: {TRAIN}\nimages: {IMAGES}\noutput: {tmp_path / 'rfs'}\nseed: 0\n"
                      "steps:\n  - resample: {method: rfs, threshold: 0.5}\n")
    assert main(["run", str(config), "--workers", "1"]) == 0
    return tmp_path / "rfs"


def test_class_counts_come_from_the_original_of_an_ltaug_output(tmp_path, capsys):
    from ltaug import load_dataset
    from ltaug.trainer.inference import load_run

    out = rfs_output(tmp_path)
    rebalanced, original = load_dataset(out / "annotations.json"), load_dataset(TRAIN)
    assert rebalanced.index.instance_counts.tolist() != original.index.instance_counts.tolist()
    capsys.readouterr()
    run = tmp_path / "run"
    assert main(["train", "--train", str(out / "annotations.json"), "--images", str(out / "images"), "--out", str(run),
                 "--epochs", "1", "--max-iters-per-epoch", "1", "--workers", "0", "--preset", "cpu"]) == 0
    assert f"class frequencies from {TRAIN}, the original of the ltaug output {out / 'annotations.json'}" \
        in capsys.readouterr().err
    saved = json.loads((run / "config.json").read_text())
    assert saved["counts_from"] == saved["class_counts"]["file"] == str(TRAIN)
    assert "the original of the ltaug output" in saved["class_counts"]["note"]
    counts = load_run(run).train_ds.index
    assert counts.instance_counts.tolist() == original.index.instance_counts.tolist()


def test_class_counts_fall_back_to_a_rebalanced_file_with_a_warning(tmp_path):
    from ltaug import load_dataset
    from ltaug.trainer.counts import counts_source

    assert counts_source(load_dataset(TRAIN), None) == (None, f"class frequencies from the training file {TRAIN}")
    assert counts_source(load_dataset(TRAIN), "orig.json") == ("orig.json", "class frequencies from orig.json "
                                                                            "(--counts-from)")
    single = tmp_path / "rfs.json"  # `ltaug resample -o`: provenance in the file, no record of its original
    assert main(["resample", str(TRAIN), "--method", "rfs", "--threshold", "0.5", "-o", str(single)]) == 0
    path, note = counts_source(load_dataset(single), None)
    assert path is None and note == (f"warning: {single} is an ltaug output but no run.json beside it names its "
                                     f"original: class frequencies from it, so they include the rebalancing "
                                     f"(pass --counts-from ORIGINAL)")
    out = rfs_output(tmp_path)
    record = json.loads((out / "run.json").read_text())
    record["input"]["annotations"] = str(tmp_path / "moved.json")
    (out / "run.json").write_text(json.dumps(record))
    path, note = counts_source(load_dataset(out / "annotations.json"), None)
    assert path is None and f"its original {tmp_path / 'moved.json'} (named in {out / 'run.json'}) is not found" in note
    record["input"]["annotations"] = str(single)  # there, but not the file the run read
    (out / "run.json").write_text(json.dumps(record))
    path, note = counts_source(load_dataset(out / "annotations.json"), None)
    assert path is None and "has changed since (sha256 differs" in note


@pytest.mark.slow
def test_image_and_anchor_sizes_from_the_cli_are_saved_and_rebuilt_by_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--train", str(TRAIN), "--images", str(IMAGES), "--val", str(VAL), "--val-images",
                 str(VAL_IMAGES), "--out", str(run), "--epochs", "1", "--max-iters-per-epoch", "1", "--workers", "0",
                 "--preset", "cpu", "--min-size", "160", "--max-size", "224", "--anchor-sizes", "16,48,128"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["min_size"], saved["max_size"], saved["anchor_sizes"]) == (160, 224, [16, 48, 128])
    assert (saved["preset_settings"]["min_size"], saved["preset_settings"]["max_size"]) == (160, 224)
    assert saved["preset_settings"]["backbone"] == "mobilenet_v2" and saved["backbone"] is None
    # eval rebuilds the same model (another anchor count would not load the checkpoint)
    from ltaug.trainer.inference import load_run

    model = load_run(run).model
    assert (model.transform.min_size, model.transform.max_size) == ((160,), 224)
    assert model.rpn.anchor_generator.sizes == ((16, 48, 128),) * 3
    trained = json.loads((run / "metrics.json").read_text())["eval"]
    assert eval_json(capsys, run)["bbox"]["AP"] == trained["bbox"]["AP"]


@pytest.mark.parametrize("args, message", [
    (["--anchor-sizes", "16,x"], "--anchor-sizes wants whole pixel sizes separated by commas, got '16,x'"),
    (["--backbone", "resnet50", "--anchor-sizes", "16,32"], "anchor_sizes needs 5 sizes, one per map, got 2"),
    (["--min-size", "800", "--max-size", "600"], "min_size 800 is above max_size 600"),
    (["--classifier-tau", "10"], "classifier_tau (--classifier-tau) is the scale of the cosine classifier: it needs "
                                 "classifier cosine (--classifier cosine)"),
    (["--classifier", "cosine", "--classifier-tau", "-1"], "classifier_tau (--classifier-tau) must be > 0, got -1.0"),
])
def test_model_option_errors_are_one_line(args, message, tmp_path, capsys):
    assert main(["train", "--train", str(TRAIN), "--images", str(IMAGES), "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_eval_every_records_ap_per_epoch_and_plots_it(tmp_path, capsys):
    import struct

    run = tmp_path / "run"
    assert main(["train", "--train", str(TRAIN), "--images", str(IMAGES), "--val", str(VAL), "--val-images",
                 str(VAL_IMAGES), "--out", str(run), "--epochs", "2", "--max-iters-per-epoch", "1", "--workers", "0",
                 "--preset", "cpu", "--min-size", "160", "--max-size", "224", "--eval-every", "1"]) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(h["eval"]["bbox"]) for h in lines] == [sorted(["AP", "AP50", "AP75", "APr", "APc", "APf"])] * 2
    final = json.loads((run / "metrics.json").read_text())["eval"]["bbox"]
    assert all(final[k] == lines[-1]["eval"]["bbox"][k] for k in lines[-1]["eval"]["bbox"])  # evaluated once
    assert "epoch 2: loss" in capsys.readouterr().out
    width, height = struct.unpack(">II", (run / "curves.png").read_bytes()[16:24])
    assert (width, height) == (960, 900)  # two panels: loss and images/s, AP against epoch


def test_ap_points_take_the_evaluated_epochs_and_the_final_evaluation():
    from ltaug.trainer.engine import ap_points

    box = lambda ap: {"AP": ap, "APr": None, "APc": ap, "APf": ap}  # noqa: E731
    history = [{"epoch": 1}, {"epoch": 2, "eval": {"bbox": box(0.1)}}, {"epoch": 3}]
    assert ap_points({"history": history, "eval": {"bbox": box(0.3)}}) == [(2, box(0.1)), (3, box(0.3))]
    assert ap_points({"history": history[:2], "eval": {"bbox": box(0.1)}}) == [(2, box(0.1))]
    assert ap_points({"history": history}) == [(2, box(0.1))]


def test_no_amp_is_saved_and_a_cpu_history_has_no_loss_scale(tmp_path):
    run = tmp_path / "run"
    common = ["train", "--train", str(TRAIN), "--images", str(IMAGES), "--epochs", "1", "--max-iters-per-epoch", "1",
              "--workers", "0", "--preset", "cpu", "--min-size", "160", "--max-size", "224"]
    assert main([*common, "--out", str(run), "--no-amp"]) == 0
    assert json.loads((run / "config.json").read_text())["amp"] is False
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 1 and not {"amp_scale", "amp_skipped_steps"} & set(history[0])  # no scaler on a CPU
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    assert json.loads((tmp_path / "default" / "config.json").read_text())["amp"] is True


def test_a_loss_identical_to_a_plainer_one_is_named_when_training_starts(tmp_path, capsys):
    """The demo's classes that have training images are each in at least 1 of 30 images: EQL's
    LVIS lambda (1.76e-3) marks none rare, so `--loss eql` is BCE, and training says so; with
    --loss-param tail=0.2 it is EQL. (Classes without training images count as rare: the test
    keeps only the classes the file has.)"""
    doc = json.loads(TRAIN.read_text())
    used = {a["category_id"] for a in doc["annotations"]}
    doc["categories"] = [c for c in doc["categories"] if c["id"] in used]
    train = tmp_path / "train.json"
    train.write_text(json.dumps(doc))
    common = ["train", "--train", str(train), "--images", str(IMAGES), "--epochs", "1", "--max-iters-per-epoch", "1",
              "--workers", "0", "--preset", "cpu", "--min-size", "160", "--max-size", "224", "--loss", "eql"]
    assert main([*common, "--out", str(tmp_path / "lvis-lambda")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "eql: no class is rare" in notes[0] and "bce exactly" in notes[0], notes
    assert main([*common, "--loss-param", "tail=0.2", "--out", str(tmp_path / "tail")]) == 0
    assert "note: " not in capsys.readouterr().err
