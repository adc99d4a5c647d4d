"""Run the engine's shards as Ray tasks: on a local Ray instance or on a Ray cluster.

:func:`ray_map_shards` returns a ``map_shards`` for :func:`ltaug.run.engine.run_pipeline`, the
drop-in replacement of the local process pool (:func:`ltaug.pool.imap_ordered`)::

    run_pipeline(ds, images, out, steps, map_shards=ray_map_shards(address="auto"))

Each shard is one Ray task (one CPU). A task renders its images and writes them, and the
shard's result file, into the run's work folder itself, and returns a few counts; so every
node must see the input images and the output folder at the same paths (a shared file
system), and have ltaug and its dependencies installed. A task runs in the driver's working
directory when that folder exists on its node, so relative paths work where the driver's
folder is shared too. The output is the same bytes as with the local backend: the plan, the
shards and each shard's rendering do not depend on who runs them.

- Placement: on a cluster of more than one node the tasks are spread over the nodes (Ray's
  ``SPREAD`` strategy); Ray's default packs them onto the driver's node first and, on a busy
  machine whose other node was slow to start its workers, ran every shard there.
- Ordering and memory: results come back in submission order; at most twice the cluster's
  CPUs shards are in flight, so a 1.7 M-image plan is not queued into Ray all at once.
- Failures: a task whose worker or node dies is retried by Ray (``max_retries=3``), and so
  is one that raised an ``OSError`` (a file-system hiccup). An input problem (an unreadable
  or missing image, :class:`~ltaug.errors.LtaugError`) is not retried: it is raised in the
  driver as itself, with its one-line message naming the image id. On a cluster of more than
  one node the message also names the node the task ran on and says that every node must see
  the images, the bank and the output folder at the same paths: a node without the shared
  storage finds no image or bank there (``BANK: not an object bank (no meta.json)``), or no
  work folder to write its shard into (a ``FileNotFoundError``, retried as an ``OSError``,
  then reported as :class:`RayBackendError` naming the file and the node). Shards already
  written stay, so ``--resume`` redoes only the rest (on either backend).
- Ray itself: ``ray.init`` is called on first use if Ray is not initialised yet: ``address``
  None starts a private local instance with ``num_cpus`` CPUs (default: all cores) unless
  ``RAY_ADDRESS`` names a cluster; ``"auto"`` joins the cluster started on this machine by
  ``ray start``; ``"HOST:PORT"`` joins that one (for a cluster with Ray's token
  authentication, set ``RAY_AUTH_MODE=token`` and the token as Ray's docs say). The workers' logs stay in Ray's session
  folder (``/tmp/ray`` by default), not on the driver's terminal, and no dashboard is started.
- OpenCV runs one thread per task (Ray's workers are fresh processes, so it can be set there):
  the parallelism is one task per CPU.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from ltaug.errors import LtaugError, UsageError

MISSING_RAY = "the Ray backend needs the ray extra: pip install 'ltaug[ray]'"
MAX_RETRIES = 3
RETRY_EXCEPTIONS = (OSError,)  # transient; LtaugError (a bad input) is never retried
SAME_PATHS = "every node must see the input images, the bank and the output folder at the same paths"


class RayBackendError(LtaugError):
    """Ray lost a shard's task (worker or node died) more often than it retries."""


def import_ray():
    """The ``ray`` module, or :class:`UsageError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UsageError(MISSING_RAY) from None
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """``ray.init`` unless Ray is initialised already (then the running instance is used as is)."""
    ray = import_ray()
    if ray.is_initialized():
        return
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or "local"
    kwargs = {"num_cpus": num_cpus} if address == "local" else {}
    try:
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, **kwargs)
    except ConnectionError as exc:
        hint = "" if os.environ.get("RAY_AUTH_MODE") else (
            " (a cluster with token authentication needs RAY_AUTH_MODE=token here, and its token in "
            "RAY_AUTH_TOKEN or ~/.ray/auth_token)")
        raise UsageError(f"cannot connect to the Ray cluster at {address!r}: {str(exc).splitlines()[0]}{hint}") from None


def ray_map_shards(address: str | None = None, num_cpus: int | None = None) -> Callable:
    """A ``map_shards(fn, shards, workers)`` that runs ``fn(shard)`` as Ray tasks (see the module doc).

    Checks that Ray is installed now; connects (or starts a local instance) on first use, so a
    pipeline without pixel steps never starts Ray. ``num_cpus`` applies to a local instance only.
    ``workers``, the local pool's size, is not used: Ray runs one task per CPU it has.
    """
    import_ray()

    @contextlib.contextmanager
    def map_shards(fn: Callable, shards: Iterable, workers: int) -> Iterator[Iterator]:
        init_ray(address, num_cpus)
        ray = import_ray()
        several_nodes = sum(1 for node in ray.nodes() if node.get("Alive")) > 1
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=list(RETRY_EXCEPTIONS),
                          scheduling_strategy="SPREAD" if several_nodes else "DEFAULT")(run_shard)
        fn_ref = ray.put(fn)  # shipped once, not with every shard
        cwd = os.getcwd()
        window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        shards = iter(shards)
        pending: deque = deque()
        for shard in shards:
            pending.append(task.remote(fn_ref, shard, cwd))
            if len(pending) >= window:
                break
        # On an error the tasks in flight are waited for (at most `window` shards, each written
        # whole, which a resumed run keeps) and their results or errors dropped; they are not
        # cancelled: ray.cancel racing a task that is just completing can trip an internal check that
        # aborts the driver (ray-project/ray#54846; seen here with Ray 2.60). Not fetched, a failed
        # task's error would be printed by Ray as "Unhandled error" with its traceback when the
        # driver exits, after the one-line message.
        yield _drain(ray, task, fn_ref, cwd, pending, shards, several_nodes)

    return map_shards


def _drain(ray, task, fn_ref, cwd: str, pending: deque, shards: Iterator, several_nodes: bool = False) -> Iterator:
    while pending:
        try:
            result = ray.get(pending[0])
        except ray.exceptions.RayError as exc:
            _settle(ray, list(pending)[1:])
            cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
            node = getattr(cause, "ray_node", None) if several_nodes else None
            if isinstance(cause, LtaugError):
                if node and cause.args:
                    cause.args = (f"{cause.args[0]} (on Ray node {node}: {SAME_PATHS})", *cause.args[1:])
                raise cause from None  # the one-line message naming the image, as with the local pool
            if isinstance(cause, FileNotFoundError) and node:  # a file the driver made or saw, missing there
                raise RayBackendError(f"{cause.filename}: {cause.strerror} on Ray node {node} (after {MAX_RETRIES} "
                                      f"retries): {SAME_PATHS}; the shards already written are kept: run again "
                                      "with --resume") from None
            if isinstance(cause, Exception):
                raise cause from exc  # a bug: the remote traceback is in the chained exception
            if isinstance(exc, ray.exceptions.RayTaskError):
                raise
            first = (str(exc).strip().splitlines() or [""])[0]  # a worker or node lost more often than Ray retries
            raise RayBackendError(f"Ray: {type(exc).__name__}: {first} (after {MAX_RETRIES} retries); the shards "
                                  "already written are kept: run again with --resume") from exc
        pending.popleft()
        nxt = next(shards, _END)
        if nxt is not _END:
            pending.append(task.remote(fn_ref, nxt, cwd))
        yield result


def _settle(ray, refs: list) -> None:
    """Wait for tasks still in flight and drop what they return (errors included)."""
    for ref in refs:
        try:
            ray.get(ref)
        except ray.exceptions.RayError:
            pass


_END = object()


def run_shard(fn: Callable, shard, cwd: str | None = None):
    """Body of one Ray task: OpenCV at one thread, the driver's working directory, then ``fn(shard)``.

    An :class:`LtaugError` or ``OSError`` leaves tagged with the node it was raised on
    (``ray_node``: its IP and the start of its id), which the driver names on a cluster of
    several nodes."""
    import cv2

    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)
    if cwd and os.getcwd() != cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    try:
        return fn(shard)
    except (LtaugError, OSError) as exc:
        import ray

        vars(exc)["ray_node"] = f"{ray.util.get_node_ip_address()} (id {ray.get_runtime_context().get_node_id()[:8]})"
        raise
