"""A two-node Ray cluster on this machine, started as a user would, for a benchmark or a test.

:func:`local_ray_cluster` runs ``ray start --head`` and a second ``ray start --address HEAD``
(each ``--num-cpus 1``), as a user starts a cluster, on free ports, with a private
``--temp-dir``, so that it neither joins nor disturbs any other Ray instance on the machine
(``ray stop`` would: it ends every Ray process of the user, so it is never called here). Each
``ray start`` runs with ``--block`` in a session of its own; everything it starts (GCS,
raylet, agents, the task workers) stays in its process group, and the cluster is stopped by
signalling those two groups (SIGTERM, then SIGKILL after ``grace`` seconds).

Ray 2.5x enables token authentication on ``ray start --head``; the second node and every
driver then need ``RAY_AUTH_MODE=token`` (the token is ``~/.ray/auth_token``): ``env`` of the
yielded :class:`Cluster` carries it, as a user exports it.

:func:`tasks_per_node` counts, from the session's logs, how many tasks of a name each node ran
(a worker's log names its tasks; its core-worker log names its node): how a caller checks that
both nodes worked.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")  # the ray command of this environment


@dataclass
class Cluster:
    address: str  # HOST:PORT of the head's GCS, what `--address` takes
    env: dict  # the environment a driver joining it needs (RAY_AUTH_MODE, no RAY_ADDRESS)
    temp_dir: Path  # the cluster's --temp-dir (session logs under session_latest/logs)
    nodes: int  # nodes `ray status` showed active once both had started


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (the OS picks them)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start(args: list[str], env: dict, log: Path, prefix: Sequence[str] = ()) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen([*prefix, str(RAY), "start", *args, "--block"], stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def active_nodes(address: str, env: dict) -> int:
    """Nodes that ``ray status --address`` lists as active (0 if it fails)."""
    r = subprocess.run([str(RAY), "status", "--address", address], capture_output=True, text=True, env=env,
                       timeout=60)
    if r.returncode != 0 or "Active:" not in r.stdout:
        return 0
    block = r.stdout.split("Active:", 1)[1].split("Pending:", 1)[0]
    return len(re.findall(r"^\s*\d+\s+node_[0-9a-f]+", block, re.M))


def _stop(procs: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM the process groups we started, then SIGKILL what is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not all(_group_gone(p) for p in procs):
            time.sleep(0.2)
        if all(_group_gone(p) for p in procs):
            break
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)


def _group_gone(p: subprocess.Popen) -> bool:
    p.poll()
    try:
        os.killpg(p.pid, 0)
    except ProcessLookupError:
        return True
    return False


@contextlib.contextmanager
def local_ray_cluster(cpus: tuple[int, int] = (1, 1), timeout: float = 180.0, grace: float = 10.0,
                      node_prefix: Sequence[str] = (), keep_logs: Path | None = None) -> Iterator[Cluster]:
    """A head node and a second node on this machine (see the module doc); stopped on exit.

    ``cpus``: the two nodes' ``--num-cpus``; ``node_prefix``: a command the second node's ``ray
    start`` runs under (it must ``exec`` it, keeping its process id: ``unshare ... sh -c '...; exec
    "$0" "$@"'``); ``keep_logs``: copy the session's logs there before the temp dir is removed."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.update(RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
    # short: Ray's unix socket paths live under it (about 107 characters at most)
    temp_dir = Path(tempfile.mkdtemp(prefix="ltray-", dir="/tmp"))
    gcs, client, dashboard, agent_head, agent_node = free_ports(5)
    address = f"127.0.0.1:{gcs}"
    common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start(["--head", "--port", str(gcs), "--num-cpus", str(cpus[0]), "--temp-dir", str(temp_dir),
                             "--include-dashboard", "false", "--dashboard-port", str(dashboard),
                             "--ray-client-server-port", str(client), "--dashboard-agent-listen-port",
                             str(agent_head), *common], env, temp_dir / "head.log"))
        _wait(lambda: active_nodes(address, env) >= 1, procs, timeout, temp_dir / "head.log")
        procs.append(_start(["--address", address, "--num-cpus", str(cpus[1]), "--dashboard-agent-listen-port",
                             str(agent_node), *common], env, temp_dir / "node.log", node_prefix))
        _wait(lambda: active_nodes(address, env) >= 2, procs, timeout, temp_dir / "node.log")
        yield Cluster(address=address, env=env, temp_dir=temp_dir, nodes=active_nodes(address, env))
    finally:
        _stop(procs, grace)
        if keep_logs is not None and (temp_dir / "session_latest" / "logs").is_dir():
            shutil.copytree(temp_dir / "session_latest" / "logs", keep_logs, dirs_exist_ok=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait(ready, procs: list[subprocess.Popen], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        if ready():
            return
        time.sleep(1.0)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.is_file() else ""
    raise RuntimeError(f"the Ray node did not start (see {log}):\n{tail}")


def tasks_per_node(cluster: Cluster, task_name: str) -> Counter:
    """Node id -> tasks named ``task_name`` its workers ran, from the session's logs: a worker's
    ``worker-<id>-*.out`` lists ``:task_name:NAME`` per task; ``python-core-worker-<id>_*.log``
    has its ``node_id=``."""
    logs = cluster.temp_dir / "session_latest" / "logs"
    node_of: dict[str, str] = {}
    for f in logs.glob("python-core-worker-*.log"):
        m = re.search(r"node_id=([0-9a-f]+)", f.read_text(errors="replace"))
        if m:
            node_of[f.name[len("python-core-worker-"):].split("_")[0]] = m.group(1)
    counts: Counter = Counter()
    for f in logs.glob("worker-*.out"):
        n = f.read_text(errors="replace").count(f":task_name:{task_name}\n")
        if n:
            counts[node_of.get(f.name.split("-")[1], "unknown")] += n
    return counts
