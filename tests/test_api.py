"""The Python API mirrors the command line (:mod:`ltaug.api`): one function per data command with the
flags' names, the same results as the command, in memory where nothing is asked to be written,
and nothing printed."""
from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO, ROOT

import ltaug
from ltaug.cli.main import build_parser, main
from ltaug.io.jsonio import dumps
from ltaug.ops import OPERATIONS, Mixup, Mosaic, PixelOperation, Resample

TRAIN = DEMO / "annotations" / "train.json"
IMAGES = DEMO / "images" / "train"

# The companion trainer's commands: in trainer/, behind the torch extra, not ltaug.api.
TRAINER_COMMANDS = {"train", "eval", "tau-sweep", "compare"}
# Flags that only shape what a command prints; the function returns the whole result instead.
CLI_ONLY = {
    "json": "prints the result as JSON instead of a table: the function returns the document",
    "top": "rows of the printed table: the function returns every class",
    "max_per_kind": "problems printed per kind: the function returns them all",
    "verify": "a mode of `ltaug bank` that builds nothing: the function is ltaug.api.verify_bank",
}
# The positional input of a command is the function's `dataset` (a path or a Dataset).
POSITIONAL = {"annotations": "dataset", "input": "dataset"}


def commands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def flag_dests(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> the flag (or the positional) that sets it; ``target.min_instances`` -> ``target``."""
    out = {}
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        name = a.option_strings[-1] if a.option_strings else a.dest
        out[a.dest.split(".")[0]] = name
    return out


def test_every_data_command_is_a_function_with_the_flags_names():
    found = commands()
    pixel = {cls.name for cls in OPERATIONS if issubclass(cls, PixelOperation)}
    data_commands = set(found) - TRAINER_COMMANDS
    assert data_commands == set(ltaug.api.COMMANDS) | pixel, "a command without a function in ltaug.api.COMMANDS"
    problems = []
    for name in sorted(data_commands):
        if name in pixel:  # ltaug paste ... is run_steps(dataset, images, output, [Paste(...)], workers=...)
            func = ltaug.run_steps
            accepted = set(inspect.signature(func).parameters) | set(OPERATIONS.get(name).declared())
        else:
            func = ltaug.api.COMMANDS[name]
            accepted = set(inspect.signature(func).parameters)
        assert getattr(ltaug, func.__name__) is func, f"ltaug.{func.__name__} is not exported"
        for dest, flag in flag_dests(found[name]).items():
            if dest in CLI_ONLY:
                continue
            param = POSITIONAL.get(dest, dest) if not flag.startswith("-") else dest
            if param not in accepted:
                problems.append(f"ltaug {name} {flag}: {func.__name__}() has no parameter {param!r}")
    assert not problems, "\n".join(problems)


def test_import_ltaug_stays_light_and_the_api_comes_on_first_use():
    code = ("import sys, ltaug\n"
            "assert 'ltaug.api' not in sys.modules and 'ltaug.ops' not in sys.modules\n"
            "assert callable(ltaug.plan) and 'ltaug.api' in sys.modules\n"
            "assert ltaug.api.plan is ltaug.plan and 'run_steps' in dir(ltaug)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with pytest.raises(AttributeError):
        ltaug.no_such_name  # noqa: B018


# -- the same results as the command -------------------------------------------------------------

def test_stats_equals_the_command(capsys, tmp_path):
    assert main(["stats", str(TRAIN), "--json", "--rare-max", "2", "--common-max", "5",
                 "--plot", str(tmp_path / "cli.png")]) == 0
    printed = capsys.readouterr().out
    stats = ltaug.class_stats(str(TRAIN), rare_max=2, common_max=5, plot=tmp_path / "api.png")
    assert dumps(stats, indent=True).decode() + "\n" == printed
    assert stats["summary"]["classes"] == 66 and stats["summary"]["instances"] == 389
    assert (tmp_path / "api.png").read_bytes() == (tmp_path / "cli.png").read_bytes()
    assert ltaug.class_stats(ltaug.load_dataset(TRAIN), rare_max=2, common_max=5) == stats  # in memory


def test_resample_equals_the_command(capsys, tmp_path):
    flags = ["--method", "rfs", "--threshold", "0.1", "--seed", "3", "--epochs", "2"]
    assert main(["resample", str(TRAIN), *flags, "-o", str(tmp_path / "cli.json")]) == 0
    table = capsys.readouterr().out
    assert main(["resample", str(TRAIN), *flags, "--repeat-factors", str(tmp_path / "cli_rf.json")]) == 0
    r = ltaug.resample(TRAIN, "rfs", threshold=0.1, seed=3, epochs=2, output=tmp_path / "api.json",
                       repeat_factors=tmp_path / "api_rf.json")
    assert (tmp_path / "api.json").read_bytes() == (tmp_path / "cli.json").read_bytes()
    assert (tmp_path / "api_rf.json").read_bytes() == (tmp_path / "cli_rf.json").read_bytes()
    assert r.written == {"output": tmp_path / "api.json", "repeat_factors": tmp_path / "api_rf.json"}
    cli_out = ltaug.load_dataset(tmp_path / "cli.json")
    assert len(r.dataset.images) == len(cli_out.images) == int(r.counts.sum())
    assert r.shift["summary"]["after"]["instances"] == len(cli_out.annotations)
    from ltaug.rebalance.shift import format_shift_table
    assert format_shift_table(r.shift) in table
    # the operation itself, or its parameters by name: the same draw
    same = ltaug.resample(TRAIN, Resample(method="rfs", threshold=0.1, seed=3, epochs=2))
    assert (same.counts == r.counts).all()


def _without_seconds(doc):
    if isinstance(doc, dict):
        return {k: _without_seconds(v) for k, v in doc.items() if k != "seconds"}
    if isinstance(doc, list):
        return [_without_seconds(v) for v in doc]
    return doc


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "run.json"}


def test_run_equals_the_command(capsys, tmp_path):
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"input: {TRAIN}\nimages: {IMAGES}\noutput: {tmp_path / 'from_file'}\nseed: 0\nsteps:\n"
                      "  - resample: {method: rfs, threshold: 0.1}\n  - mosaic: {count: 3}\n  - mixup: {count: 2}\n")
    assert main(["run", str(config), "-o", str(tmp_path / "cli"), "--workers", "1"]) == 0
    assert f"wrote {tmp_path / 'cli'}: " in capsys.readouterr().err
    steps = [Resample(method="rfs", threshold=0.1, seed=0), Mosaic(count=3, seed=1), ("mixup", {"count": 2})]
    r = ltaug.run_steps(str(TRAIN), IMAGES, tmp_path / "api", steps, workers=1)
    from_file = ltaug.run_config(config, workers=1)
    cli_record = json.loads((tmp_path / "cli" / "run.json").read_text())
    for result in (r, from_file):
        assert _tree(result.output) == _tree(tmp_path / "cli")
        assert _without_seconds(json.loads(result.run_json.read_text())) == _without_seconds(cli_record)
        assert result.counts == cli_record["counts"] and len(result.steps) == 3
    assert from_file.output == tmp_path / "from_file"
    assert r.annotations == tmp_path / "api" / "annotations.json" and r.images.is_dir()
    assert r.counts["images_after"] == len(r.dataset.images) == r.steps[0]["images_after"] + 3 + 2
    carried = sum(r.added_per_class.values())
    assert carried > 0 and carried == sum(sum(s.get("added_per_class", {}).values()) for s in cli_record["steps_run"])
    table = r.class_table(rare_max=2, common_max=5)
    assert sum(c["after_instances"] for c in table["classes"]) == r.counts["annotations_after"]


def test_errors_name_the_parameter_in_python_and_the_flag_on_the_command_line(tmp_path, capsys):
    with pytest.raises(ltaug.SpecError, match="^workers must be >= 1, got 0$"):
        ltaug.run_steps(TRAIN, IMAGES, tmp_path / "out", [Mosaic(count=1)], workers=0)
    with pytest.raises(ltaug.SpecError, match="^address is for --backend ray"):
        ltaug.run_steps(TRAIN, IMAGES, tmp_path / "out", [Mosaic(count=1)], address="auto")
    with pytest.raises(ltaug.SpecError, match="^target needs min_instances and/or exponent$"):
        ltaug.plan(TRAIN, max_factor=3)
    with pytest.raises(ltaug.SpecError, match="resample: threshold must be >= 0"):
        ltaug.resample(TRAIN, "rfs", threshold=-1)
    with pytest.raises(ltaug.SpecError, match="step 1 must be"):
        ltaug.run_steps(TRAIN, IMAGES, tmp_path / "out", ["mosaic"])
    assert main(["mosaic", str(TRAIN), "--images", str(IMAGES), "-o", str(tmp_path / "out"), "--workers", "0"]) == 2
    assert capsys.readouterr().err == "ltaug mosaic: error: --workers must be >= 1, got 0\n"
    assert not (tmp_path / "out").exists()


# -- in memory -------------------------------------------------------------------------------------

def test_resample_and_plan_of_a_dataset_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = ltaug.load_dataset(TRAIN)
    images_before = [dict(im) for im in ds.images]
    r = ltaug.resample(ds, "cas", seed=1, epochs=2)
    assert isinstance(r.dataset, ltaug.Dataset) and r.input is ds
    assert len(r.dataset.images) == int(r.counts.sum()) == 60 and r.written == {}
    assert all("ltaug" in im for im in r.dataset.images)
    p = ltaug.plan(ds, min_instances=12, max_factor=8, rare_max=2, common_max=5)
    assert isinstance(p.dataset, ltaug.Dataset) and len(p.dataset.images) == int(p.plan["repeats"].sum())
    assert p.plan["summary"]["paste_budget"] >= 0 and p.written == {}
    recounted = ltaug.recount(ds, rare_max=2, common_max=5)
    assert recounted.kind == "lvis" and {c["frequency"] for c in recounted.categories} == {"r", "c", "f"}
    assert ltaug.validate(ds, no_masks=False).ok
    assert ds.images == images_before  # the input is not modified
    assert list(tmp_path.iterdir()) == []


def test_validate_returns_the_problems(tmp_path, demo_doc):
    demo_doc["annotations"][0]["bbox"] = [0, 0, -1, 5]  # a warning
    demo_doc["annotations"][1]["category_id"] = 987654  # an error
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(demo_doc))
    r = ltaug.validate(bad)
    assert not r.ok and r.counts == {"bad-bbox": 1, "unknown-category": 1} and r.images == 30
    assert [(p["kind"], p["severity"]) for p in r.document()["problems"]] == [("bad-bbox", "warning"),
                                                                           ("unknown-category", "error")]
    demo_doc["annotations"][1]["category_id"] = demo_doc["annotations"][2]["category_id"]
    bad.write_text(json.dumps(demo_doc))
    assert ltaug.validate(bad).ok and not ltaug.validate(bad, strict=True).ok
    with pytest.raises(ltaug.UsageError, match="file not found"):
        ltaug.validate(tmp_path / "nope.json")


# -- quiet -----------------------------------------------------------------------------------------

def test_the_functions_print_nothing(tmp_path, demo_doc, capfd):
    """Every function with progress=False (the default), two worker processes included: nothing on
    file descriptors 1 and 2, not even the records skipped with on_error="skip" or the report's warnings
    (they are logged)."""
    demo_doc["annotations"][0]["category_id"] = 987654
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(demo_doc))
    assert ltaug.class_stats(bad, on_error="skip")["summary"]["skipped"] == {"unknown-category": 1}
    ltaug.validate(TRAIN, images=IMAGES)
    ltaug.convert(TRAIN, tmp_path / "lvis.json", to="lvis", rare_max=2, common_max=5)
    ltaug.recount(TRAIN, tmp_path / "recount.json")
    ltaug.resample(bad, "rfs", output=tmp_path / "rfs.json", on_error="skip")
    ltaug.plan(TRAIN, min_instances=5, plan_json=tmp_path / "plan.json")
    ltaug.build_bank(TRAIN, IMAGES, tmp_path / "bank", workers=2)
    run = ltaug.run_steps(bad, IMAGES, tmp_path / "out", [Mosaic(count=2), Mixup(count=2)], workers=2,
                          on_error="skip")
    page = ltaug.make_report(run.output, samples=2, rare_max=2, common_max=5, on_error="skip")  # warns: logged
    assert page == tmp_path / "out" / "report.html" and page.is_file()
    out, err = capfd.readouterr()
    assert out == "" and err == "", f"the library wrote:\nstdout: {out!r}\nstderr: {err!r}"


def test_messages_are_logged_and_the_command_prints_them(tmp_path, demo_doc, caplog, capsys):
    ann = demo_doc["annotations"][0]
    ann["category_id"] = 987654
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(demo_doc))
    line = f"{bad}: unknown-category: annotation id {ann['id']}: category_id 987654 is not among the categories (skipped)"
    with caplog.at_level("INFO", logger="ltaug"):
        ltaug.recount(bad, on_error="skip")
    assert [r.getMessage() for r in caplog.records] == [line]
    assert main(["recount", str(bad), "--on-error", "skip", "-o", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"{line}\n{tmp_path / 'r.fixes.json'}: 0 record(s) fixed and 1 skipped on reading, each listed\nwrote "), err


def test_a_script_sees_no_log_output_without_logging_configured(tmp_path, demo_doc):
    """No handler configured: the ``ltaug`` logger's NullHandler keeps Python's last-resort handler
    from printing its warnings."""
    demo_doc["annotations"][0]["bbox"] = [0, 0, -1, 5]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(demo_doc))
    code = ("import logging, sys, ltaug\n"
            "ltaug.class_stats(sys.argv[1], on_error='skip')\n"
            "logging.getLogger('ltaug.api').warning('a warning of the library')\n")
    r = subprocess.run([sys.executable, "-c", code, str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr
