"""The engine on Ray: same bytes as the local pool, input errors named, retries, resume after a kill.

A local Ray instance (``ray.init(num_cpus=2)``, nothing outside this machine) runs in a helper
process for the whole module; every Ray driver here is a subprocess that joins it with
``--address``. The pytest process itself never starts Ray: Ray leaves native threads behind
after ``ray.shutdown()``, and the local pool of the other tests forks this process.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from test_engine import IMAGES, linked_images, same_tree

from ltaug import UsageError, load_dataset
from ltaug.run.engine import partial_dir, run_pipeline
from ltaug.run.pipeline import load_pipeline, make_step

pytestmark = pytest.mark.slow  # a Ray instance per module or test: seconds each

HOLDER = """\
import logging, sys
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
import os
print(ray.get_runtime_context().gcs_address, os.environ.get("RAY_AUTH_MODE", ""), flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


_AUTH: dict = {}  # RAY_AUTH_MODE of the module's Ray instance, for the drivers that join it


def _env() -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)
    env.update(_AUTH)
    return env


@pytest.fixture(scope="module")
def cluster():
    """The address of a local 2-CPU Ray instance, alive for the module."""
    pytest.importorskip("ray")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=_env())
    try:
        address, _, auth = proc.stdout.readline().strip().partition(" ")
        assert address, "the local Ray instance did not start"
        if auth:  # Ray >= 2.5x: a new local instance has token authentication, joining it needs the mode
            _AUTH["RAY_AUTH_MODE"] = auth
        yield address
    finally:
        _AUTH.clear()
        proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ltaug(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=_env(), **kw)


STEPS = """\
  - resample: {method: rfs, threshold: 0.1}
  - paste: {objects: 4, prob: 0.7}
  - mosaic: {count: 6}
  - mixup: {count: 4}
"""  # test_engine.STEPS, with the same seeds


def _pipeline(tmp_path: Path, demo_train_path, name="pipe.yaml", steps=STEPS, seed=0, **top) -> Path:
    """A pipeline file on the demo data, writing to ``out`` beside it."""
    lines = {"input": demo_train_path, "images": IMAGES, "output": "out", "seed": seed, **top}
    path = tmp_path / name
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()) + "steps:\n" + steps)
    return path


def test_same_bytes_on_local_and_ray(cluster, tmp_path, demo_train_path):
    config = _pipeline(tmp_path, demo_train_path)
    pipe = load_pipeline(config)
    ds = load_dataset(demo_train_path)
    for workers in (1, 2):
        run_pipeline(ds, IMAGES, tmp_path / f"local{workers}", pipe.steps, workers=workers, progress=False)
    r = _ltaug("run", config, "--backend", "ray", "--address", cluster, "-o", tmp_path / "ray")
    assert r.returncode == 0, r.stderr
    assert same_tree(tmp_path / "local1", tmp_path / "local2")
    assert same_tree(tmp_path / "local1", tmp_path / "ray")
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["counts"]["images_written"] == json.loads((tmp_path / "local1" / "run.json").read_text())["counts"]["images_written"]


def test_own_local_ray_instance_is_quiet_and_gives_the_same_bytes(tmp_path, demo_train_path):
    """No --address: the command starts (and stops) its own Ray instance of --workers CPUs; Ray
    prints nothing on the terminal, only the usual summary lines."""
    pytest.importorskip("ray")
    config = _pipeline(tmp_path, demo_train_path)
    run_pipeline(load_dataset(demo_train_path), IMAGES, tmp_path / "local", load_pipeline(config).steps, workers=2,
                 progress=False)
    r = _ltaug("run", config, "--backend", "ray", "--workers", "1", "-o", tmp_path / "ray1")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    steps = [ln for ln in lines if not ln.startswith("    ")]  # a step's detail lines are indented further
    assert len(steps) == 5 and steps[-1].startswith("wrote "), r.stderr  # 4 steps + where the output is
    assert not any(word in r.stderr for word in ("(raylet)", "Ray instance", "Dashboard", "INFO ")), r.stderr
    assert same_tree(tmp_path / "local", tmp_path / "ray1")


def test_failing_input_is_named_and_skip_is_counted(cluster, tmp_path, demo_train_path):
    ds = load_dataset(demo_train_path)
    images = linked_images(tmp_path)
    victim = ds.images[5]
    (images / victim["file_name"]).unlink()
    (images / victim["file_name"]).write_bytes(b"not an image")
    common = [demo_train_path, "--images", images, "--count", 40, "--seed", 0]
    r = _ltaug("mosaic", *common, "-o", tmp_path / "out", "--backend", "ray", "--address", cluster)
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"image id {victim['id']}: file " in r.stderr and "cannot be decoded" in r.stderr
    assert "Traceback" not in r.stderr and "RayTaskError" not in r.stderr
    assert partial_dir(tmp_path / "out").is_dir()
    # skip, finishing the failed run (its written shards are kept): the bad image is counted, and
    # the output is the same bytes as the local pool's skipping the same images
    r = _ltaug("mosaic", *common, "-o", tmp_path / "out", "--backend", "ray", "--address", cluster,
               "--on-error", "skip", "--resume")
    assert r.returncode == 0, r.stderr
    assert "skipped (unreadable images)" in r.stderr
    step = make_step("mosaic", {"count": 40, "size": [640, 640], "min_visible": 0.25, "min_area": 4}, 0)
    run_pipeline(ds, images, tmp_path / "local", [step], workers=2, on_error="skip", progress=False)
    skipped = json.loads((tmp_path / "out" / "run.json").read_text())["steps_run"][0]["images_skipped"]
    assert skipped and all(f"image id {victim['id']}" in s for s in skipped)
    local = json.loads((tmp_path / "local" / "run.json").read_text())["steps_run"][0]["images_skipped"]
    assert skipped == [s.replace(".local.partial", ".out.partial") for s in local]  # read through the work folder
    assert same_tree(tmp_path / "local", tmp_path / "out")


RETRIES = """\
import functools, json, sys
from pathlib import Path
from ltaug.errors import InputError
from ltaug.run.ray_backend import ray_map_shards

address, folder = sys.argv[1], Path(sys.argv[2])

def flaky(shard):  # an OSError on the first two tries of shard 1
    log = folder / f"tries-{shard}"
    with open(log, "a") as fh:
        fh.write("x")
    if shard == 1 and len(log.read_text()) < 3:
        raise OSError("the file server hiccupped")
    return shard * 10

def bad_input(shard):
    with open(folder / f"bad-{shard}", "a") as fh:
        fh.write("x")
    raise InputError(f"image id {shard}: file x.jpg cannot be decoded as an image")

map_shards = ray_map_shards(address)
with map_shards(flaky, range(4), 2) as results:
    out = {"flaky": list(results)}
try:
    with map_shards(bad_input, [7], 2) as results:
        list(results)
except InputError as exc:
    out["error"] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


def test_transient_errors_are_retried_and_input_errors_are_not(cluster, tmp_path):
    r = subprocess.run([sys.executable, "-c", RETRIES, cluster, str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, env=_env())
    assert r.returncode == 0, r.stderr
    # Ray's driver prints each retry ("Task run_shard failed. There are 3 retries remaining...") on stdout
    out = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("{")))
    assert out["flaky"] == [0, 10, 20, 30]  # in order, shard 1 after two retries
    assert (tmp_path / "tries-1").read_text() == "xxx" and (tmp_path / "tries-0").read_text() == "x"
    assert out["error"] == ["InputError", "image id 7: file x.jpg cannot be decoded as an image"]
    assert (tmp_path / "bad-7").read_text() == "x"  # tried once, not retried


def test_killed_ray_run_resumes_to_the_same_output(cluster, tmp_path, demo_train_path):
    """SIGKILL a Ray driver once some shards are written; --resume (on Ray) then gives the same
    bytes as an uninterrupted local run. The cluster outlives the killed driver."""
    config = _pipeline(tmp_path, demo_train_path, seed=7, steps="""\
  - resample: {method: rfs, threshold: 0.5, epochs: 2}
  - paste: {objects: 5, blend: poisson}
""")  # about 230 images in 8 shards
    pipe = load_pipeline(config)
    run_pipeline(load_dataset(demo_train_path), IMAGES, tmp_path / "ref", pipe.steps, workers=2, progress=False)
    shards = partial_dir(tmp_path / "out") / "step-1" / "shards"
    proc = subprocess.Popen([sys.executable, "-m", "ltaug.cli.main", "run", str(config), "--backend", "ray",
                             "--address", cluster], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=_env())
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if shards.is_dir() and len(list(shards.glob("*.json"))) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; give it more work"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out").exists() and partial_dir(tmp_path / "out").is_dir()
    r = _ltaug("run", config, "--backend", "ray", "--address", cluster, "--resume")
    assert r.returncode == 0, r.stderr
    assert not partial_dir(tmp_path / "out").exists()
    assert same_tree(tmp_path / "ref", tmp_path / "out")


def test_missing_ray_names_the_extra(monkeypatch, tmp_path, demo_train_path, capsys):
    from ltaug.cli.main import main
    from ltaug.run.ray_backend import MISSING_RAY, ray_map_shards

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UsageError) as exc:
        ray_map_shards()
    assert str(exc.value) == MISSING_RAY == "the Ray backend needs the ray extra: pip install 'ltaug[ray]'"
    assert main(["mosaic", str(demo_train_path), "--images", str(IMAGES), "-o", str(tmp_path / "out"),
                 "--backend", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"ltaug mosaic: error: {MISSING_RAY}"
    assert not (tmp_path / "out").exists() and not partial_dir(tmp_path / "out").exists()


def test_backend_options_and_pipeline_keys(tmp_path, demo_train_path, capsys):
    from ltaug.cli.main import main

    pipe = load_pipeline(_pipeline(tmp_path, demo_train_path, backend="ray", address="auto"))
    assert (pipe.backend, pipe.address) == ("ray", "auto")
    pipe = load_pipeline(_pipeline(tmp_path, demo_train_path))
    assert (pipe.backend, pipe.address) == (None, None)
    for top, message in (({"backend": "dask"}, "backend must be one of local, ray, got 'dask'"),
                         ({"address": "auto"}, "address needs backend: ray"),
                         ({"backend": "local", "address": "auto"}, "address needs backend: ray")):
        with pytest.raises(UsageError, match=message):
            load_pipeline(_pipeline(tmp_path, demo_train_path, name="bad.yaml", **top))
    assert main(["mosaic", str(demo_train_path), "--images", str(IMAGES), "-o", str(tmp_path / "o"),
                 "--address", "auto"]) == 2
    assert capsys.readouterr().err.strip() == "ltaug mosaic: error: --address is for --backend ray"
