"""``ltaug run --backend ray`` on a two-node Ray cluster started as a user starts one.

``ray start --head`` and a second ``ray start --address HEAD`` on this machine (one CPU each,
free ports, a private ``--temp-dir``: ``benchmarks/ray_local_cluster.py``), then ``ltaug run``
joins it with ``--address HOST:PORT``. Both nodes render shards (counted from Ray's logs) and
the output is the same bytes as the local backend's. A node that does not see the bank (the
second node in a mount namespace where the bank's folder is an empty tmpfs: storage that is
not shared) makes the run stop with one line naming the bank and the node.

The cluster is stopped by signalling the two ``ray start --block`` process groups this module
started, never with ``ray stop`` (which ends every Ray process of the user, other tests' too).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from test_engine import IMAGES, same_tree

sys.path.insert(0, str(ROOT / "benchmarks"))
from ray_local_cluster import active_nodes, local_ray_cluster, tasks_per_node  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray cluster start is 20-40 s here

STEPS = """\
  - resample: {method: rfs, threshold: 0.1}
  - paste: {objects: 4, prob: 0.7, bank: BANK}
  - mosaic: {count: 6}
  - mixup: {count: 4}
"""


def _ltaug(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ltaug.cli.main", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=env)


def _setup(folder: Path, demo_train_path: Path) -> Path:
    """A bank of the demo set in ``folder/shared/bank`` and a pipeline file pasting from it."""
    (folder / "shared").mkdir(parents=True)
    r = _ltaug("bank", demo_train_path, "--images", IMAGES, "-o", folder / "shared" / "bank", "--workers", 1)
    assert r.returncode == 0, r.stderr
    config = folder / "pipe.yaml"
    config.write_text(f"input: {demo_train_path}\nimages: {IMAGES}\noutput: {folder / 'out'}\nseed: 0\nsteps:\n"
                      + STEPS.replace("BANK", str(folder / "shared" / "bank")))
    return config


def _without_seconds(x):
    if isinstance(x, dict):
        return {k: _without_seconds(v) for k, v in x.items() if k != "seconds"}
    return [_without_seconds(v) for v in x] if isinstance(x, list) else x


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray")
    with local_ray_cluster() as c:
        yield c


def test_two_nodes_render_shards_and_give_the_local_backends_bytes(cluster, tmp_path, demo_train_path):
    assert cluster.nodes == 2 and active_nodes(cluster.address, cluster.env) == 2  # `ray status`: 2 nodes
    config = _setup(tmp_path, demo_train_path)
    r = _ltaug("run", config, "--workers", 2, "-o", tmp_path / "local")
    assert r.returncode == 0, r.stderr
    r = _ltaug("run", config, "--backend", "ray", "--address", cluster.address, "-o", tmp_path / "ray",
               env=cluster.env)
    assert r.returncode == 0, r.stderr
    per_node = tasks_per_node(cluster, "run_shard")
    assert len(per_node) == 2 and "unknown" not in per_node and min(per_node.values()) >= 1, per_node
    assert same_tree(tmp_path / "local", tmp_path / "ray")  # every file but run.json, byte for byte
    runs = [json.loads((tmp_path / name / "run.json").read_text()) for name in ("local", "ray")]
    assert _without_seconds(runs[0]) == _without_seconds(runs[1])  # run.json: all but its timings
    assert runs[1]["counts"]["images_written"] > 30


@pytest.mark.parametrize("hidden", ["bank", "output"])
def test_a_node_that_does_not_see_the_shared_storage_stops_the_run_with_one_line(hidden, tmp_path, demo_train_path):
    """Storage that is not shared: the second node, the only one with a CPU, in its own mount
    namespace where a folder is an empty tmpfs (needs root and unshare): the bank's folder, or the
    output's parent (where the run's work folder is)."""
    pytest.importorskip("ray")
    config = _setup(tmp_path, demo_train_path)
    folder = tmp_path / "shared"
    if hidden == "output":
        folder = tmp_path / "outs"
        folder.mkdir()
        config.write_text(config.read_text().replace(f"output: {tmp_path / 'out'}", f"output: {folder / 'out'}"))
    unshare = shutil.which("unshare")
    hide = [unshare, "--mount", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs tmpfs "{folder}" && exec "$0" "$@"'] if unshare else []
    if not hide or subprocess.run([*hide, "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare --mount (root) to hide a folder from one node")
    with local_ray_cluster(cpus=(0, 1), node_prefix=hide) as c:
        r = _ltaug("run", config, "--backend", "ray", "--address", c.address, env=c.env)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    node = r"on Ray node \S+ \(id [0-9a-f]{8}\)"
    same = "every node must see the input images, the bank and the output folder at the same paths"
    if hidden == "bank":
        assert re.fullmatch(rf"ltaug run: error: {re.escape(str(folder / 'bank'))}: not an object bank \(no "
                            rf"meta.json\) \({node}: {same}\)", lines[0]), lines[0]
    else:
        shard = folder / ".out.partial" / "step-1" / "shards" / "00000.json"  # paste, the first pixel step
        assert re.fullmatch(rf"ltaug run: error: {re.escape(str(shard))}: No such file or directory {node} \(after 3 "
                            rf"retries\): {same}; the shards already written are kept: run again with --resume",
                            lines[0]), lines[0]
    assert not (folder / "out").exists()
