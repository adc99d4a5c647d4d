"""A resume keeps only what verifies: each image a step wrote is checked against the size and
SHA-256 recorded when it was written, a kept copy of an input image against the input, and
what does not verify is made again (the output: the uninterrupted run's bytes). Inputs can be
fingerprinted by content (verify_images). What killed writers leave is removed by the next
writer of the same target, or by ``ltaug clean``."""
from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import DEMO, ROOT
from test_engine import STEPS, same_tree

from ltaug import UsageError, load_dataset
from ltaug.io.dataset import Dataset
from ltaug.run.engine import partial_dir, run_pipeline

TRAIN, IMAGES = DEMO / "annotations" / "train.json", DEMO / "images" / "train"


@contextlib.contextmanager
def stops_after(n):
    """An executor that renders ``n`` shards of a step, then stops (as a kill would)."""
    @contextlib.contextmanager
    def executor(fn, shards, workers):
        def first():
            for k, shard in enumerate(shards):
                if k == n:
                    raise KeyboardInterrupt
                yield fn(shard)
        yield first()
    yield executor


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    run_pipeline(load_dataset(TRAIN), IMAGES, out, STEPS, workers=1, progress=False)
    return out


def interrupted(tmp_path, shards=2, **kw):
    ds = load_dataset(TRAIN)
    with stops_after(shards) as executor, pytest.raises(KeyboardInterrupt):
        run_pipeline(ds, IMAGES, tmp_path / "out", STEPS, workers=1, progress=False, map_shards=executor, **kw)
    return ds, partial_dir(tmp_path / "out")


def shard_files(work, step):
    return sorted((work / f"step-{step}" / "shards").glob("*.json"))


def listed_images(shard):
    return [item["file"][0] for item in json.loads(shard.read_text())["items"] if "file" in item]


def damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 3]))
    elif how == "same size":
        data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
        path.write_bytes(bytes(data))
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["truncated", "same size", "deleted"])
def test_a_damaged_image_of_an_unfinished_step_is_rendered_again(tmp_path, reference, how):
    ds, work = interrupted(tmp_path)
    shard = shard_files(work, 1)[1]  # step 1 (paste) stopped after two shards
    victim = work / "images" / listed_images(shard)[0]
    damage(victim, how)
    run_pipeline(ds, IMAGES, tmp_path / "out", STEPS, workers=1, resume=True, progress=False)
    assert same_tree(reference, tmp_path / "out")


def test_a_damaged_image_of_a_finished_step_is_rendered_again_and_later_steps_follow(tmp_path, reference):
    """Step 1 (paste) finished, step 2 (mosaic) stopped: an image of step 1 damaged with the same
    size is found, its shard rendered again, and the steps after it run again (their own verified
    shards kept)."""
    ds = load_dataset(TRAIN)
    calls = {"step": 0}

    @contextlib.contextmanager
    def stops_in_mosaic(fn, shards, workers):
        calls["step"] += 1

        def gen():
            for k, shard in enumerate(shards):
                if calls["step"] == 2 and k == 1:
                    raise KeyboardInterrupt
                yield fn(shard)
        yield gen()

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(ds, IMAGES, tmp_path / "out", STEPS, workers=1, progress=False, map_shards=stops_in_mosaic)
    work = partial_dir(tmp_path / "out")
    assert (work / "step-1" / "result.json").is_file() and not (work / "step-2" / "result.json").exists()
    damaged_shard = shard_files(work, 1)[2]
    damage(work / "images" / listed_images(damaged_shard)[0], "same size")
    redo_paste = len(json.loads(damaged_shard.read_text())["image_ids"])
    kept_mosaic = sum(len(json.loads(p.read_text())["image_ids"]) for p in shard_files(work, 2))
    assert kept_mosaic > 0
    rendered = []

    @contextlib.contextmanager
    def counting(fn, shards, workers):
        yield (rendered.append(len(shard[1])) or fn(shard) for shard in shards)

    run_pipeline(ds, IMAGES, tmp_path / "out", STEPS, workers=1, resume=True, progress=False, map_shards=counting)
    assert same_tree(reference, tmp_path / "out")
    steps = json.loads((tmp_path / "out" / "run.json").read_text())["steps_run"]
    # rendered again: the damaged paste shard only, mosaic's unfinished shards, all of mixup
    assert sum(rendered) == redo_paste + steps[2]["recipes"] - kept_mosaic + steps[3]["recipes"]


def test_a_damaged_kept_copy_of_an_input_image_is_copied_again(tmp_path, monkeypatch):
    """Killed after the originals were copied (link=copy), before the annotation file: a kept copy
    damaged with the same size is found on resume and copied again."""
    ds = load_dataset(TRAIN)
    steps = [STEPS[1]]
    run_pipeline(ds, IMAGES, tmp_path / "ref", steps, workers=1, progress=False, link="copy")

    def killed(self, *a, **kw):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Dataset, "save", killed)
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(ds, IMAGES, tmp_path / "out", steps, workers=1, progress=False, link="copy")
    work = partial_dir(tmp_path / "out")
    kept = sorted(p for p in (work / "images").iterdir() if p.is_file())
    assert kept and all(p.stat().st_nlink == 1 for p in kept)  # copies, not links
    damage(kept[0], "same size")
    run_pipeline(ds, IMAGES, tmp_path / "out", steps, workers=1, resume=True, progress=False, link="copy")
    assert same_tree(tmp_path / "ref", tmp_path / "out")
    assert (tmp_path / "out" / "images" / kept[0].name).read_bytes() == (IMAGES / kept[0].name).read_bytes()


def copied_images(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for p in IMAGES.iterdir():
        (images / p.name).write_bytes(p.read_bytes())
    return images


def edit_keeping_size_and_time(path):
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_verify_images_finds_an_edit_that_keeps_size_and_time(tmp_path):
    ds = load_dataset(TRAIN)
    images = copied_images(tmp_path)
    for name, verify in (("plain", False), ("hashed", True)):
        with stops_after(2) as executor, pytest.raises(KeyboardInterrupt):
            run_pipeline(ds, images, tmp_path / name, STEPS, workers=1, progress=False, map_shards=executor,
                         verify_images=verify)
    victim = sorted(images.iterdir())[5]
    edit_keeping_size_and_time(victim)
    # size and time only: the edit is not seen (documented), the resume runs
    run_pipeline(ds, images, tmp_path / "plain", STEPS, workers=1, resume=True, progress=False)
    # content: refused, naming the image, even when the resume does not ask for hashes again
    with pytest.raises(UsageError, match=f"changed since the interrupted run started .*first: {victim.name}"):
        run_pipeline(ds, images, tmp_path / "hashed", STEPS, workers=1, resume=True, progress=False)


def ltaug(*args):
    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_single_file_write_is_removed_by_the_next_write_of_that_file(tmp_path):
    out = tmp_path / "resampled.json"
    stale = tmp_path / f".resampled.json.{dead_pid()}.k2x9q1zz.tmp"
    live = tmp_path / f".resampled.json.{os.getpid()}.a8b7c6d5.tmp"  # a writer at work: kept
    other = tmp_path / f".other.json.{dead_pid()}.k2x9q1zz.tmp"  # another file's: not this write's business
    for p in (stale, live, other):
        p.write_bytes(b'{"half')
    r = ltaug("resample", TRAIN, "--method", "rfs", "--threshold", "0.5", "-o", out)
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and live.exists() and other.exists()
    json.loads(out.read_text())


def test_a_killed_yolo_export_leaves_nothing_after_the_next_export(tmp_path):
    out = tmp_path / "yolo"
    (out / "labels").mkdir(parents=True)
    stale = out / "labels" / f".a.txt.{dead_pid()}.k2x9q1zz.tmp"
    stale.write_text("0 0.1")
    r = ltaug("convert", TRAIN, "--to", "yolo", "-o", out)
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and (out / "data.yaml").is_file()


def test_clean_lists_and_removes_every_leftover_and_never_the_output(tmp_path):
    ds = load_dataset(TRAIN)
    run_pipeline(ds, IMAGES, tmp_path / "out", [STEPS[2]], workers=1, progress=False)
    finished = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*"))
    with stops_after(1) as executor, pytest.raises(KeyboardInterrupt):
        run_pipeline(ds, IMAGES, tmp_path / "out", STEPS, workers=1, progress=False, map_shards=executor,
                     overwrite=True)
    (tmp_path / ".out.old" / "images").mkdir(parents=True)
    (tmp_path / ".out.x1y2z3w4.tmp").mkdir()
    (tmp_path / ".out.x1y2z3w4.tmp" / "pixels.bin").write_bytes(bytes(1000))
    stale = tmp_path / f".out.{dead_pid()}.k2x9q1zz.tmp"
    stale.write_bytes(b"half")
    leftovers = {".out.partial", ".out.old", ".out.x1y2z3w4.tmp", stale.name}
    r = ltaug("clean", tmp_path / "out", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert [ln.startswith("would remove ") for ln in r.stderr.splitlines()] == [True] * 4 + [False]
    assert "would remove 4 leftover(s)" in r.stderr
    assert leftovers <= {p.name for p in tmp_path.iterdir()}
    r = ltaug("clean", tmp_path / "out")
    assert r.returncode == 0 and "removed 4 leftover(s)" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*")) == finished
    r = ltaug("clean", tmp_path / "out")
    assert r.returncode == 0 and "nothing left behind" in r.stderr


def test_clean_refuses_while_a_writer_holds_the_output(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from ltaug.io.lock import output_lock\n"
                               "with output_lock(sys.argv[1]):\n print('held', flush=True); time.sleep(60)",
                               str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (tmp_path / ".out.partial").mkdir()
        r = ltaug("clean", tmp_path / "out")
        assert r.returncode == 2 and "another ltaug command is writing it" in r.stderr, r.stderr
        assert (tmp_path / ".out.partial").is_dir()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_killed_again_and_again_at_random_moments_then_resumed_gives_the_same_bytes(tmp_path):
    """SIGKILL (whole process group, workers included) at seeded random points of progress, each
    attempt resuming the last, until one finishes. A point is a number of files in the work folder
    (rendered images, shard files, copies of the kept originals with --link copy), drawn between
    the files already there and half of those still to come: the kills land all through rendering
    and copying whatever the machine's speed. The result is the uninterrupted run's bytes."""
    config = tmp_path / "pipe.yaml"
    config.write_text(json.dumps({"input": str(TRAIN), "images": str(IMAGES), "output": str(tmp_path / "out"),
                                  "seed": 3, "steps": [{"resample": {"method": "rfs", "threshold": 0.3}},
                                                       {"paste": {"objects": 3}}, {"mosaic": {"count": 60}},
                                                       {"mixup": {"count": 30}}]}))
    r = ltaug("run", config, "-o", tmp_path / "ref", "--workers", "2", "--link", "copy")
    assert r.returncode == 0, r.stderr
    total = sum(1 for p in (tmp_path / "ref").rglob("*") if p.is_file())
    work = partial_dir(tmp_path / "out")

    def files() -> int:  # os.walk passes over folders the run removes meanwhile
        return sum(len(names) for _, _, names in os.walk(work))

    rng = random.Random(12)
    kills = []
    for attempt in range(60):
        have = files()
        target = rng.randint(have + 1, have + 1 + max(1, (total - have) // 2))
        args = [sys.executable, "-m", "ltaug.cli.main", "run", str(config), "--workers", "2", "--link", "copy"] + (
            ["--resume"] if attempt else [])
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        while proc.poll() is None and files() < target:
            time.sleep(0.005)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills.append(target)
            continue
        assert proc.returncode == 0, proc.stderr.read()
        break
    else:
        pytest.fail("60 attempts, none finished")
    assert len(kills) >= 4, f"only {len(kills)} kills, at {kills} files of {total}"
    assert same_tree(tmp_path / "ref", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pipe.yaml", "ref"]


def test_an_input_changed_while_the_run_runs_is_never_published(tmp_path):
    """An input image replaced (or a bank rebuilt) while the run renders: the run refuses before it
    links or publishes anything, naming the image; exit status 2 on the command line."""
    ds = load_dataset(TRAIN)
    images = copied_images(tmp_path)
    victim = sorted(images.iterdir())[3]

    @contextlib.contextmanager
    def edits_an_input(fn, shards, workers):
        def gen():
            for k, shard in enumerate(shards):
                if k == 1:
                    victim.write_bytes(victim.read_bytes() + b"\0")  # another file under the same name
                yield fn(shard)
        yield gen()

    with pytest.raises(UsageError, match=f"changed while the run ran .*first: {victim.name}"):
        run_pipeline(ds, images, tmp_path / "out", STEPS, workers=1, progress=False, map_shards=edits_an_input)
    assert not (tmp_path / "out").exists()


def test_a_run_refused_before_any_work_leaves_no_work_folder(tmp_path):
    """A bad input found once the run has started (here: --bank names a folder that is not a bank)
    is refused in one line; it leaves no .OUT.partial, so the corrected command runs without --resume."""
    not_a_bank = tmp_path / "notabank"
    not_a_bank.mkdir()
    args = ["paste", TRAIN, "--images", IMAGES, "-o", tmp_path / "out", "--workers", "1"]
    r = ltaug(*args, "--bank", not_a_bank)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not partial_dir(tmp_path / "out").exists()
    r = ltaug(*args)
    assert r.returncode == 0, r.stderr
