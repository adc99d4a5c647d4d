"""Offline execution of a pipeline of steps (resample, paste, mosaic, mixup) into an output folder.

Each step turns a dataset into a dataset. Annotation-only steps (resample) run here; pixel
steps run in three phases:

1. plan (here, pure and seeded): one recipe per output image, holding every random choice;
2. execute: the recipes are cut into shards of min(32, max(4, ceil(n / 64))) recipes (n: the
   images the step tries, a function of the input and the seed, never of the worker count:
   small steps still get enough shards to keep two or more workers busy); each shard goes to a
   process pool (``workers``) as soon as its recipes are planned, so planning overlaps
   rendering; a worker decodes the sources, renders, encodes JPEG, writes each image
   atomically, then writes the shard's image ids and annotations as ``shards/NNNNN.json`` (each
   file atomically: temporary name, then rename);
3. merge (here): the shard files in order become the step's dataset, new ids assigned in
   recipe order.

So the output depends only on the input, the steps and the seed: the same bytes whatever the
worker count, and a run killed at any point resumes (``resume=True``) by redoing only the
shards without a result file. Work happens in ``.OUT.partial/`` beside the output folder
``OUT``, which is renamed into place when complete::

    OUT/
      annotations.json   the final COCO/LVIS file (loads in pycocotools, and lvis-api for LVIS)
      images/            every image it references: new ones (JPEG, under ltaug/, or ltaug2/ ...
                         when the input already has an ltaug/ folder) and the originals it keeps
                         (hard links to the input files, or copies across file systems; never
                         re-encoded)
      run.json           input, steps with their parameters, seed, per-step and per-class counts

An LVIS output (an LVIS input's) gives every image record, kept and new alike, the ``coco_url``
``http://images.cocodataset.org/`` + the file's path under ``OUT/images/``, a path without a
folder written ``./NAME`` (``..././000000000071.jpg`` for a kept input image,
``.../ltaug/step1_paste_71.jpg`` for a new one); not percent-encoded. So the trainers that find
LVIS v1 images by that URL find the output's files, with ``OUT/images/`` as their image folder:
mmdetection's ``LVISV1Dataset`` removes the prefix and joins the rest to ``data_prefix['img']``;
ultralytics' ``convert_coco(lvis=True)`` takes the URL relative to
``http://images.cocodataset.org`` (pathlib drops the ``.``) as the image's path under its
``images/`` folder and its label file's under ``labels/``; detectron2's ``load_lvis_json`` joins
the URL's last two components to its ``image_root`` (``.`` and the name for a kept image: hence
the ``./``; a name two or more folders deep, from an input whose file names are, is beyond
that rule). The URL is a locator inside the output, not a download address: an input image's
``train2017/...`` URL is replaced, since the file is not there in the output (the input file
keeps it; ``source_image_ids`` lead to it). COCO outputs are left as they were: a replaced image
drops the input's ``coco_url``, a new one has none.

Every image a pixel step writes and every annotation it adds carries ``"ltaug"`` provenance:
op, step, seed, source image ids, source annotation ids, and the recipe's own parameters (the
step's parameters are in ``run.json``). A pasted image's ``source_image_ids`` is the image
pasted onto; each pasted annotation names the image its object came from.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ltaug.errors import InputError, LtaugError, SpecError, UsageError
from ltaug.io.dataset import Dataset
from ltaug.io.jsonio import dumps, file_sha256, read_json, write_json_atomic
from ltaug.io.lock import output_lock
from ltaug.io.paths import image_file_name, image_file_stat, unsafe_file_name_reason
from ltaug.ops.base import AnnotationOperation, Operation, PixelOperation, StepContext
from ltaug.pixels.functional import encode_jpeg
from ltaug.pixels.imagefile import ImageFileError, read_image, write_file_atomic
from ltaug.pool import imap_ordered
from ltaug.run.limits import class_limits, log_shortfalls

SHARD_MAX = 32
FORMAT = "ltaug-output"
NEW_IMAGES = "ltaug"  # sub-folder of images/ for the images the engine makes
COCO_URL_ROOT = "http://images.cocodataset.org/"  # an LVIS output's coco_url: this + its path under images/
WORK_FORMAT = 4  # of .OUT.partial/: a work folder of another layout is not resumed (4: file hashes)

MapShards = Callable[[Callable[..., Any], Iterable[Any], int], AbstractContextManager[Iterator[Any]]]
"""``map_shards(fn, shards, workers)``: a context manager giving an iterator over ``fn(shard)`` in order."""


@dataclass
class _Stage:
    """What a worker needs to render one step's shard (small: pickled with each shard).

    What the operation opens for rendering (paste: its bank) is opened on first use and
    belongs to this object: once per shard in a worker process, once per step when rendering
    in the calling process. Nothing is kept between steps or runs, so a bank rebuilt at the
    same path is always read afresh.
    """

    op: PixelOperation
    prepared: dict
    on_error: str

    @functools.cached_property
    def opened(self) -> Any:
        return self.op.open(self.prepared)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "opened"}


# -- the worker side --------------------------------------------------------------------------

def _render_shard(task: tuple, stage: _Stage) -> dict:
    """Render one shard; write its images and its result file. Returns the shard's counts."""
    shard_path, items = task
    out = {"image_ids": [recipe["image_id"] for recipe, _, _ in items], "items": []}
    for folder in {os.path.dirname(target) for _, _, target in items}:
        os.makedirs(folder, exist_ok=True)
    for recipe, sources, target in items:
        try:
            loaded = [(read_image(path, rec["id"], rec["height"], rec["width"]), rec, anns)
                      for path, rec, anns in sources]
        except ImageFileError as exc:
            if stage.on_error == "raise":
                raise
            out["items"].append({"skipped": str(exc)})
            continue
        out["items"].append(_render_one(recipe, loaded, stage, target))
    write_file_atomic(Path(shard_path), dumps(out))
    return {"images": sum("skipped" not in i for i in out["items"]), "skipped": sum("skipped" in i for i in out["items"])}


def _render_one(recipe: dict, loaded: list, stage: _Stage, target: str) -> dict:
    img, item = stage.op.render(recipe, loaded, stage.opened)
    data = encode_jpeg(img)
    write_file_atomic(target, data)
    item["size"] = [int(img.shape[1]), int(img.shape[0])]
    item["file"] = [recipe["file_name"], len(data), hashlib.sha256(data).hexdigest()]  # what a resume verifies
    return item


# -- the calling side -------------------------------------------------------------------------

def partial_dir(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.partial"


def _job(dataset: Dataset, images_dir: Path, steps: list[Operation]) -> dict:
    from ltaug import __version__

    src = dataset.path
    return {"format": FORMAT, "ltaug_version": __version__, "work_format": WORK_FORMAT,
            # absolute paths: `ltaug report` and the trainer find the input from any working folder
            "input": {"annotations": None if src is None else os.path.abspath(src),
                      "sha256": file_sha256(src) if src is not None and Path(src).is_file() else None,
                      "images": os.path.abspath(images_dir), "kind": dataset.kind},
            "steps": [s.describe() for s in steps]}


OUTPUT_FILES = ("annotations.json", "images", "run.json", "report.html", "fixes.json")  # what ltaug writes in an output


def _check_output(out_dir: Path, images_dir: Path, overwrite: bool) -> None:
    """An existing output is replaced only with ``overwrite``, and only when it holds nothing but
    what ltaug writes there (:data:`OUTPUT_FILES`): a file of the user's is never deleted."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UsageError(f"{out_dir}: exists and is not a folder")
        if out_dir.resolve() == images_dir.resolve() or images_dir.resolve().is_relative_to(out_dir.resolve()):
            raise UsageError(f"{out_dir}: refusing to write the output over the input images")
        if not any(out_dir.iterdir()):
            return
        if not (out_dir / "run.json").is_file():
            raise UsageError(f"{out_dir}: folder exists and is not an ltaug output; refusing to replace it")
        if not overwrite:
            raise UsageError(f"{out_dir}: an ltaug output is there; pass --overwrite to replace it (overwrite=True), "
                             f"or choose another output")
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in OUTPUT_FILES)
        if others:
            raise UsageError(f"{out_dir}: holds files ltaug did not write ({', '.join(others[:5])}"
                             f"{', ...' if len(others) > 5 else ''}); move them away to replace the output")


def _prepare_work(work: Path, job: dict, inputs: dict, resume: bool) -> None:
    if work.exists():
        if not resume:
            raise UsageError(f"{work}: an interrupted run is there; add --resume to finish it, or remove the folder")
        saved = read_json(work / "job.json") if (work / "job.json").is_file() else None
        if saved is not None and saved.get("input", {}).get("sha256") != job["input"]["sha256"] \
                and saved.get("work_format") == job["work_format"]:
            raise UsageError(f"{work}: the annotation file {job['input']['annotations']} changed since the "
                             f"interrupted run started; remove the folder to start afresh")
        if saved != job:
            raise UsageError(f"{work}: the interrupted run had other inputs or steps, or was made by another ltaug "
                             f"version; remove the folder to start afresh")
        _check_inputs(work, inputs)
        _remove_leftovers(work)
        return
    (work / "images").mkdir(parents=True)
    write_json_atomic(work / INPUTS, inputs)
    write_json_atomic(work / "job.json", job)


INPUTS = "inputs.json"  # in the work folder: the fingerprints of what the run reads


def _fingerprints(images: dict, steps: list[Operation]) -> dict:
    """What a resumed run must find unchanged beyond the annotation file (hashed in job.json):
    ``images``, each input image's size and modification time (:func:`_check_originals`; and its
    SHA-256 with ``verify_images``), and
    each given bank's table and metadata (SHA-256) and blobs (size and modification time)."""
    from ltaug.pixels.bank import MASKS, META, OBJECTS, PIXELS

    banks: dict[str, dict[str, Any]] = {}
    files: dict[str, list[int]] = {}
    for step in steps:
        if isinstance(step, PixelOperation):
            for path in step.input_files():
                st = path.stat()
                files[str(path)] = [st.st_size, st.st_mtime_ns]
        bank = getattr(step, "bank", None)
        if bank is not None and bank not in banks and Path(bank).is_dir():
            folder = Path(bank)
            banks[bank] = {f: file_sha256(folder / f) for f in (META, OBJECTS) if (folder / f).is_file()}
            for f in (PIXELS, MASKS):
                if (folder / f).is_file():
                    st = (folder / f).stat()
                    banks[bank][f] = [st.st_size, st.st_mtime_ns]
    return {"images": images, "banks": banks, "files": files}


def _check_inputs(work: Path, now: dict, when: str = "since the interrupted run started") -> None:
    """Refuse inputs that changed since the run started (a resume, or the run itself before it
    publishes: :func:`_inputs_unchanged`), naming the first change."""
    saved = read_json(work / INPUTS) if (work / INPUTS).is_file() else {"images": {}, "banks": {}}
    changed = [name for name in saved["images"].keys() | now["images"].keys()
               if saved["images"].get(name) != now["images"].get(name)]
    if changed:
        raise UsageError(f"{work}: {len(changed)} input image file(s) changed {when} "
                         f"(size, time or content; first: {sorted(changed)[0]}); remove the folder to start afresh")
    old_files, new_files = saved.get("files", {}), now.get("files", {})
    changed = sorted(f for f in old_files.keys() | new_files.keys() if old_files.get(f) != new_files.get(f))
    if changed:
        raise UsageError(f"{work}: {len(changed)} file(s) a step reads changed {when} (first: {changed[0]}); "
                         f"remove the folder to start afresh")
    for bank in saved["banks"].keys() | now["banks"].keys():
        old, new = saved["banks"].get(bank, {}), now["banks"].get(bank, {})
        if old != new:
            what = sorted(f for f in old.keys() | new.keys() if old.get(f) != new.get(f))
            raise UsageError(f"{work}: the bank {bank} changed {when} ({', '.join(what)}); "
                             f"remove the folder to start afresh")


def _input_fingerprints(dataset: Dataset, images_dir: Path, steps: list[Operation], work: Path,
                        verify_images: bool) -> dict:
    """What :data:`INPUTS` records: :func:`_fingerprints` of the images (hashed with
    ``verify_images``, or when the interrupted run in ``work`` hashed them) and the banks."""
    originals = _check_originals(dataset, images_dir)
    if verify_images or _hashed_images(work):
        for name, fingerprint in originals.items():
            fingerprint.append(file_sha256(images_dir / name))
    return _fingerprints(originals, steps)


def _hashed_images(work: Path) -> bool:
    """Whether the interrupted run in ``work`` fingerprinted its input images by content too
    (``verify_images``): its resume then hashes them again, asked or not."""
    saved = work / INPUTS
    return saved.is_file() and any(len(v) > 2 for v in read_json(saved)["images"].values())


def _remove_leftovers(work: Path) -> None:
    """Delete what a killed run left half-written: ``*.tmp`` files (images, shard files) and
    ``*.tmp`` folders (an object bank that was being built)."""
    for tmp in sorted(work.rglob("*.tmp"), key=lambda p: len(p.parts)):
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():  # not inside a folder removed above
            tmp.unlink()


def _check_unique_annotation_ids(dataset: Dataset) -> None:
    """Pixel steps name the annotations they keep by id: repeated ids (a warning on reading, see
    :mod:`ltaug.io.policy`) would make one annotation stand for two, so they are refused here."""
    ids = dataset.index.ann_ids
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        first = int(unique[counts > 1][0])
        raise InputError(f"annotation id {first} is used by {int(counts[unique == first][0])} annotations "
                         f"({int((counts > 1).sum())} repeated ids in all): the pixel steps name annotations by id; "
                         f"--on-error fix renumbers them")


def _check_originals(dataset: Dataset, images_dir: Path) -> dict[str, list[int | str]]:
    """Every image of ``dataset`` has a safe file name and its file is under ``images_dir``.
    Returns each file's size and modification time (one ``stat`` per file), by name."""
    found: dict[str, list[int | str]] = {}
    for image in dataset.images:
        name = image_file_name(image)
        reason = "is missing" if name is None else unsafe_file_name_reason(name)
        if reason or name is None:
            raise InputError(f"image id {image['id']}: file name {name!r} {reason}")
        if name in found:
            continue
        try:
            st = image_file_stat(images_dir, name, image["id"])  # refuses a file leading outside images_dir
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise InputError(f"image id {image['id']}: file {images_dir / name} not found")
        found[name] = [st.st_size, st.st_mtime_ns]
    return found


def _new_images_folder(dataset: Dataset) -> str:
    """The sub-folder of ``images/`` for the images this run makes: ``ltaug``, or ``ltaugN``
    (smallest N >= 2) when the input already has files there (an ltaug output run again), so
    that a new image never takes the name of an input file another record still points to."""
    # every image has a file name here (_check_originals)
    used = {name.split("/", 1)[0] for name in map(image_file_name, dataset.images) if name is not None and "/" in name}
    if NEW_IMAGES not in used:
        return NEW_IMAGES
    return next(name for name in (f"{NEW_IMAGES}{n}" for n in itertools.count(2)) if name not in used)


LINKS = ("hard", "symlink", "copy")


def _link_originals(names: Iterable[str], images_dir: Path, dest: Path, link: str) -> None:
    """Make the input files ``names`` present under ``dest``: ``hard`` links (the input file
    itself: editing one edits the other; a copy across file systems), ``symlink`` (absolute
    links to the inputs) or ``copy``. A copy is made under a temporary name and renamed: a file
    there is whole, so a resumed run may keep it."""
    for name in names:
        target = dest / name
        if target.is_symlink() or (target.exists() and _same_file_content(images_dir / name, target)):
            continue
        target.unlink(missing_ok=True)  # a damaged copy
        target.parent.mkdir(parents=True, exist_ok=True)
        if link == "symlink":
            os.symlink(os.path.abspath(images_dir / name), target)
            continue
        if link == "hard":
            try:
                os.link(images_dir / name, target)
                continue
            except OSError:  # another file system: copied
                pass
        tmp = Path(f"{target}.tmp")
        try:
            shutil.copyfile(images_dir / name, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror, os.fspath(target)) from None


def _same_file_content(source: Path, kept: Path) -> bool:
    """A kept original found by a resumed run is the input (a hard link to it) or a whole copy of it
    (same size and bytes); anything else is made again."""
    a, b = source.stat(), kept.stat()
    if os.path.samestat(a, b):
        return True
    return a.st_size == b.st_size and file_sha256(source) == file_sha256(kept)


def run_pipeline(dataset: Dataset, images_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 steps: list[Operation], *, workers: int | None = None, resume: bool = False,
                 on_error: str = "raise", progress: bool = True, map_shards: MapShards = imap_ordered,
                 overwrite: bool = False, link: str = "hard", verify_images: bool = False) -> dict:
    """Run ``steps`` on ``dataset`` (images under ``images_dir``) into the folder ``out_dir``.

    ``map_shards(fn, shards, workers)``: a context manager giving an iterator over
    ``fn(shard)`` in order; the local process pool (:func:`ltaug.pool.imap_ordered`) by
    default. Any executor that runs the same ``fn`` on the same shards gives the same output.
    Returns the run summary that is also written to ``OUT/run.json``. One writer per output: a
    second run into the same ``out_dir`` while this one writes is refused (:mod:`ltaug.io.lock`).
    A finished output already at ``out_dir`` is replaced only with ``overwrite`` (and only when it
    holds nothing but ltaug's files); ``resume`` finishes the interrupted run of ``out_dir``.
    ``link``: how the input images the output keeps get there (:data:`LINKS`: ``hard`` links,
    copied across file systems; ``symlink``; ``copy``); the images a step makes are new files.
    A resume refuses input images whose size or modification time changed since the run started;
    ``verify_images`` adds their SHA-256 (every image read once more: same-size, same-time edits
    are found too).
    """
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise SpecError("workers", f"must be >= 1, got {workers}")
    if not steps:
        raise UsageError("the pipeline has no steps")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: image folder not found")
    if link not in LINKS:
        raise SpecError("link", f"must be one of {', '.join(LINKS)}, got {link!r}")
    _check_output(out_dir, images_dir, overwrite or resume)
    _check_unique_annotation_ids(dataset)
    with output_lock(out_dir):  # one writer per output, from here to the published folder
        fresh = not partial_dir(out_dir).exists()
        try:
            return _run_locked(dataset, images_dir, out_dir, steps, workers, resume, on_error, progress, map_shards,
                               link, verify_images)
        except LtaugError:
            if fresh:
                _drop_if_empty(partial_dir(out_dir))
            raise


def _drop_if_empty(work: Path) -> None:
    """Remove the work folder of a run that failed (a bad input, not an interruption) before it
    finished any shard or step: there is nothing to resume, and the next run should not have to
    say --resume."""
    if work.is_dir() and not any(work.glob("step-*/result.json")) and not any(work.glob("step-*/shards/*.json")):
        shutil.rmtree(work, ignore_errors=True)


def _run_locked(dataset: Dataset, images_dir: Path, out_dir: Path, steps: list[Operation], workers: int,
                resume: bool, on_error: str, progress: bool, map_shards: MapShards, link: str,
                verify_images: bool) -> dict:
    from tqdm import tqdm

    shutil.rmtree(out_dir.parent / f".{out_dir.name}.old", ignore_errors=True)  # a killed replace's; ours to remove
    work = partial_dir(out_dir)
    if resume and (work / "run.json").is_file():  # finished, killed while moving into place
        _publish(work, out_dir)
        return read_json(out_dir / "run.json")
    _prepare_work(work, _job(dataset, images_dir, steps),
                  _input_fingerprints(dataset, images_dir, steps, work, verify_images), resume)
    start = time.perf_counter()
    folder = _new_images_folder(dataset)
    current = dataset
    reports: list[dict] = []
    made: set[str] = set()  # file names this run has written (under work/images)
    finished = _finished_steps(work, len(steps))
    for k, step in enumerate(steps):
        done = work / f"step-{k}" / "result.json"
        if done.is_file():
            saved = read_json(done)
            if _kept_files_verify(work, k, saved["written"], finished):
                current = dataset.replace(**saved["dataset"])
                reports.append(saved["report"])
                made.update(saved["written"])
                continue
            for later in range(k, len(steps)):  # redo this step's damaged shards, then the steps after it
                (work / f"step-{later}" / "result.json").unlink(missing_ok=True)
            finished = None
        t0 = time.perf_counter()
        written: dict[str, list] = {}
        if isinstance(step, AnnotationOperation):
            current, report = step.apply(current)
        else:
            assert isinstance(step, PixelOperation), f"{step.name}: neither a pixel nor an annotation operation"
            current, report, written = _pixel_step(
                current, dataset, images_dir, step, k, work, folder, made, workers, on_error, map_shards,
                bar=functools.partial(tqdm, disable=not progress, leave=False, unit="img",
                                      desc=f"{step.name} ({k + 1}/{len(steps)})"))
        report["seconds"] = round(time.perf_counter() - t0, 3)
        write_json_atomic(done, {"dataset": {"images": current.images, "annotations": current.annotations},
                                 "report": report, "written": written})
        reports.append(report)
        made.update(written)
    # inputs changed while the run ran (an image replaced, a bank rebuilt) would make an output
    # of two inputs: checked again, before anything is linked or published
    _check_inputs(work, _input_fingerprints(dataset, images_dir, steps, work, verify_images), "while the run ran")
    summary = _finish(dataset, current, steps, reports, images_dir, made, work, out_dir, time.perf_counter() - start,
                      link)
    return summary


def _finished_steps(work: Path, n: int) -> set[str] | None:
    """When every step of a resumed run is done: the image files its final dataset references
    (the made files a resume must still find; :func:`_finish` may have removed the others). Else None."""
    last = work / f"step-{n - 1}" / "result.json"
    if not all((work / f"step-{k}" / "result.json").is_file() for k in range(n)):
        return None
    return {name for name in map(image_file_name, read_json(last)["dataset"]["images"]) if name is not None}


def _file_verifies(path: str, size: int, sha256: str) -> bool:
    """``path`` is a regular file of ``size`` bytes whose SHA-256 is ``sha256`` (as when written)."""
    try:
        return os.path.getsize(path) == size and file_sha256(path) == sha256
    except OSError:
        return False


def _kept_files_verify(work: Path, k: int, written: dict[str, list], finished: set[str] | None) -> bool:
    """A resumed run keeps step ``k``'s images only if each verifies (size and SHA-256 recorded when
    it was written); otherwise the shard files naming the damaged ones are removed, so that the
    step renders those shards again. When all steps are done (``finished``: the final dataset's
    files), an image no longer referenced may be gone: :func:`_finish` removes such files."""
    images = work / "images"
    bad = {name for name, (size, digest) in written.items()
           if (finished is None or name in finished) and not _file_verifies(str(images / name), size, digest)}
    if not bad:
        return True
    for shard in (work / f"step-{k}" / "shards").glob("*.json"):
        if any(item.get("file", [None])[0] in bad for item in read_json(shard)["items"]):
            shard.unlink()
    return False


def _shard_verifies(path: Path) -> bool:
    """A shard result file left by an interrupted run is kept if every image it lists verifies."""
    images = str(path.parents[2] / "images")  # WORK/step-K/shards/NNNNN.json -> WORK/images
    return all(_file_verifies(os.path.join(images, item["file"][0]), *item["file"][1:])
               for item in read_json(path)["items"] if "file" in item)


def _pixel_step(current: Dataset, source_dataset: Dataset, images_dir: Path, step: PixelOperation, k: int,
                work: Path, folder: str, made: set[str], workers: int, on_error: str, map_shards: MapShards,
                bar: Callable[..., Any]) -> tuple[Dataset, dict, dict[str, list]]:
    """Plan, render in shards, merge; also returns the files written (name: [size, SHA-256]). Shards go to the
    workers as soon as their recipes are planned, so the pool renders the first while this
    process plans the rest. A source is read where it is: under ``work/images`` if this run
    made it (``made``), else from the input folder (the originals are linked only at the end,
    and only those the output keeps)."""
    prepared = step.prepare(StepContext(source_dataset, images_dir, work, workers))
    planned, plan_info, tried = _plan(current, step, prepared, k, folder)
    stage_dir = work / f"step-{k}"
    shards_dir = stage_dir / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    images = {im["id"]: im for im in current.images}
    anns_of: dict = {}
    for a in current.annotations:
        anns_of.setdefault(a["image_id"], []).append(a)
    stage = _Stage(step, prepared, on_error)
    size = shard_size(tried)
    recipes: list = []  # every recipe, in order, as it is planned
    work_images, input_images = str(work / "images"), str(images_dir)  # str paths: pathlib joins cost µs each

    def source_path(name: str | None) -> str:
        assert name is not None  # every image has a file name (_check_originals; the new ones are named here)
        return os.path.join(work_images if name in made else input_images, name)

    def tasks() -> Iterator[tuple[str, list]]:
        for i, chunk in enumerate(_chunks(planned, size)):
            recipes.extend(chunk)
            path = shards_dir / f"{i:05d}.json"
            if path.is_file() and _shard_verifies(path):  # rendered before an interruption, its images whole
                pbar.update(len(chunk))
                continue
            yield str(path), [(r, [(source_path(image_file_name(images[s])), images[s], anns_of.get(s, []))
                                   for s in step.sources(r)]
                               + [(f, {"id": what, "height": None, "width": None}, []) for f, what in step.files(r)],
                               os.path.join(work_images, r["file_name"]))
                              for r in chunk]

    with bar(total=tried) as pbar, map_shards(functools.partial(_render_shard, stage=stage), tasks(),
                                              min(workers, max(1, -(-tried // size)))) as results:
        for counts in results:
            pbar.update(counts["images"] + counts["skipped"])
        pbar.total = len(recipes)
        pbar.refresh()
    items = []
    for i in range(-(-len(recipes) // size)):
        shard = read_json(shards_dir / f"{i:05d}.json")
        if shard["image_ids"] != [r["image_id"] for r in recipes[i * size:(i + 1) * size]]:
            raise UsageError(f"{shards_dir}: shard {i} holds other images than this run plans (a work folder of "
                             f"another ltaug version?); remove {work} to start afresh")
        items += shard["items"]
    written = {item["file"][0]: item["file"][1:] for item in items if "skipped" not in item}
    return (*_merge(current, step, k, recipes, items, plan_info, anns_of), written)


def _chunks(items: Iterable, n: int) -> Iterator[list]:
    """Consecutive lists of ``n`` items (the last one shorter), taken as they come."""
    items = iter(items)
    while chunk := list(itertools.islice(items, n)):
        yield chunk


def shard_size(n: int) -> int:
    """Recipes per shard: min(32, max(4, ceil(n / 64)))."""
    return min(SHARD_MAX, max(4, -(-n // 64)))


def _plan(current: Dataset, step: PixelOperation, prepared: dict, k: int,
          folder: str) -> tuple[Iterable[dict], dict, int]:
    """The step's recipes with their output file names (and, for new images, their ids; for an
    operation that plans as it goes, an iterator), the planning summary (complete once the
    recipes are taken) and the number of images tried (at least the number of recipes: it sets
    the shard size)."""
    recipes, info, tried = step.plan(current, prepared)
    if step.replaces_images:
        return ({**r, "file_name": f"{folder}/step{k}_{step.name}_{r['image_id']}.jpg"} for r in recipes), info, tried
    recipes = list(recipes)
    next_id = int(current.index.image_ids.max(initial=0)) + 1
    for i, r in enumerate(recipes):
        r["image_id"] = next_id + i
        r["file_name"] = f"{folder}/step{k}_{step.name}_{r['image_id']}.jpg"
    return recipes, info, tried


def _merge(current: Dataset, step: PixelOperation, k: int, recipes: list, items: list, plan_info: dict,
           anns_of: dict) -> tuple[Dataset, dict]:
    """The step's dataset from the rendered items (recipe order), and the step's report.
    ``anns_of``: the current annotations by image id (a paste item names its untouched ones by id)."""
    seed = step.seed
    next_ann = int(current.index.ann_ids.max(initial=0)) + 1
    removed: list[int] = []
    pasted_removed: list[int] = []
    added: list[int] = []
    skipped: list[str] = []
    blends: dict[str, int] = {}
    new_images: dict[int, dict] = {}  # by image id: the replacement / new record
    new_anns: dict[int, list[dict]] = {}  # and its annotations
    lvis = current.kind == "lvis"
    records = {im["id"]: im for im in current.images}
    lost_classes = getattr(step, "recipe_classes", None)  # what a skipped recipe's image would have got
    lost: list[int] = []
    for recipe, item in zip(recipes, items):
        if "skipped" in item:
            skipped.append(item["skipped"])
            if callable(lost_classes):
                lost += lost_classes(recipe)
            continue
        removed += item["removed"]
        pasted_removed += item.get("pasted_removed", [])
        for name, n in item.get("blend", {}).items():
            blends[name] = blends.get(name, 0) + n
        sources = step.sources(recipe)
        anns = []
        for a in item["new"]:
            a = {"id": next_ann, "image_id": recipe["image_id"], **a}
            a["ltaug"] = {**a["ltaug"], "step": k, "seed": seed}
            next_ann += 1
            anns.append(a)
            added.append(a["category_id"])
        record = {"id": recipe["image_id"], "file_name": recipe["file_name"],
                  "width": item["size"][0], "height": item["size"][1]}
        if step.replaces_images:
            original = records[recipe["image_id"]]
            record = {**original, "file_name": recipe["file_name"],  # the size as rendered (augment may crop)
                      "width": item["size"][0], "height": item["size"][1]}
            if "coco_url" in record:
                del record["coco_url"]  # the new file is not that URL (an LVIS output gets its own below)
            by_id = {a["id"]: a for a in anns_of.get(recipe["image_id"], ())}
            anns = [by_id[a] if isinstance(a, int) else a for a in item["kept"]] + anns
        if lvis:
            _lvis_lists(record, [records[s] for s in sources], anns)
        record["ltaug"] = {"op": step.name, "step": k, "seed": seed, "source_image_ids": sources,
                           "source_annotation_ids": [a["ltaug"]["source_annotation_id"] for a in item["new"]],
                           "params": {**step.recipe_params(recipe), **item.get("params", {})}}
        new_images[recipe["image_id"]] = record
        new_anns[recipe["image_id"]] = anns
    if step.replaces_images:
        images = [new_images.get(im["id"], im) for im in current.images]
        annotations = []
        touched = set(new_anns)
        for a in current.annotations:
            if a["image_id"] not in touched:
                annotations.append(a)
        for anns in new_anns.values():
            annotations.extend(anns)
        annotations.sort(key=_ann_order(images))  # stable: each image's annotations stay in their order
    else:
        images = current.images + list(new_images.values())
        annotations = current.annotations + [a for anns in new_anns.values() for a in anns]
    report = {"op": step.name, "step": k, "params": step.params(), "recipes": len(recipes),
              "images_written": len(recipes) - len(skipped), "images_skipped": skipped,
              "added_per_class": _count(added), "removed_per_class": _count(removed),
              "pasted_removed_per_class": _count(pasted_removed), "blend": blends, "plan": plan_info}
    if callable(lost_classes):
        report["skipped_per_class"] = _count(lost)
    shortfalls = getattr(step, "shortfalls", None)  # what the step asked per class and did not get, and why
    if callable(shortfalls):
        ix = current.index
        report["shortfalls"] = shortfalls(report, dict(zip(ix.category_ids.tolist(), ix.category_names)))
    return current.replace(images=images, annotations=annotations), report


def _ann_order(images: list) -> Callable[[dict], int]:
    """Sort key keeping annotations grouped by image in image order (stable within an image)."""
    pos = {im["id"]: i for i, im in enumerate(images)}
    return lambda a: pos[a["image_id"]]


def _with_coco_url(record: dict) -> dict:
    """An LVIS output's image record with the ``coco_url`` of its file in the output (the rule is in
    the module docstring): the record itself when it already has that URL, else a copy (records
    of the input are never changed)."""
    name = image_file_name(record)
    assert name is not None  # every image has a file name (_check_originals; the new ones are named here)
    url = COCO_URL_ROOT + (name if "/" in name else "./" + name)
    return record if record.get("coco_url") == url else {**record, "coco_url": url}


def _lvis_lists(record: dict, sources: list, anns: list) -> None:
    """LVIS image lists of an output image: a class is verified absent (``neg_category_ids``) only
    if it was in every source and is not in the output; not-exhaustive if it was in any source."""
    present = {a["category_id"] for a in anns}
    neg = set.intersection(*(set(s.get("neg_category_ids", ())) for s in sources)) - present if sources else set()
    not_exhaustive = set().union(*(set(s.get("not_exhaustive_category_ids", ())) for s in sources))
    record["neg_category_ids"] = sorted(neg)
    record["not_exhaustive_category_ids"] = sorted(not_exhaustive)


def _count(category_ids: list) -> dict:
    ids, n = np.unique(np.asarray(category_ids, np.int64), return_counts=True)
    return dict(zip(ids.tolist(), n.tolist()))


def _finish(dataset: Dataset, final: Dataset, steps: list[Operation], reports: list, images_dir: Path, made: set, work: Path,
            out_dir: Path, seconds: float, link: str) -> dict:
    """Link the input files the output keeps, drop the made ones it does not (an image a later
    step replaced), write annotations.json and run.json (with ``limits``: each per-class limit a
    step set, checked over the whole pipeline, :func:`class_limits`; what was not met is also
    logged as warnings: :mod:`ltaug.run.limits`), move the folder into place."""
    referenced = {name for name in map(image_file_name, final.images) if name is not None}  # all have one
    _link_originals(sorted(referenced - made), images_dir, work / "images", link)
    for name in sorted(made - referenced):
        (work / "images" / name).unlink(missing_ok=True)
    if final.kind == "lvis":  # every image, a pipeline of annotation steps only included
        final = final.replace(images=[_with_coco_url(im) for im in final.images])
    final.save(work / "annotations.json", inputs=[dataset.path] if dataset.path else ())
    job = {k: v for k, v in read_json(work / "job.json").items() if k != "work_format"}  # the work folder's own
    summary = {"format": FORMAT, **job,
               "input": {**job["input"], "classes": input_classes(dataset)},
               "steps_run": reports,
               "counts": {"images_before": len(dataset.images), "images_after": len(final.images),
                          "annotations_before": len(dataset.annotations), "annotations_after": len(final.annotations),
                          "images_written": sum(r.get("images_written", 0) for r in reports)},
               "limits": class_limits(dataset, final, steps, reports),
               "seconds": round(seconds, 3)}
    log_shortfalls(summary)
    write_json_atomic(work / "run.json", summary, indent=True)
    _publish(work, out_dir)
    return summary


def input_classes(dataset: Dataset) -> dict:
    """What ``run.json`` records of the input's classes, so that ``ltaug report`` need not read the
    input again for its 'before' counts: the number of images and, per category (file order),
    id, name, instances, images and the stored LVIS ``frequency`` (None where there is none)."""
    ix = dataset.index
    return {"images": ix.num_images, "ids": ix.category_ids.tolist(), "names": list(ix.category_names),
            "instances": ix.instance_counts.tolist(), "image_counts": ix.image_counts.tolist(),
            "frequency": [c.get("frequency") for c in dataset.categories],
            "skipped": int(sum(dataset.skipped.values()))}


def _publish(work: Path, out_dir: Path) -> None:
    """Drop the work files and swap the finished folder into place (an earlier output is replaced)."""
    for step_dir in work.glob("step-*"):
        shutil.rmtree(step_dir)
    shutil.rmtree(work / "bank", ignore_errors=True)
    (work / "job.json").unlink(missing_ok=True)
    (work / INPUTS).unlink(missing_ok=True)
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
        os.replace(work, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out_dir)
