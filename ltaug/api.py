"""The Python API of the ``ltaug`` command: one function per command, with the command's parameter names.

Every data command of ``ltaug`` is a thin layer over one function here, as ultralytics'
``model.train(**kw)`` is ``yolo train k=v``: the function's parameters are the command's flags
with ``_`` for ``-`` (``ltaug plan --max-factor 8`` is ``ltaug.plan(ds, max_factor=8)``), and the
command's positional input is ``dataset``: a path (a COCO/LVIS json file or a YOLO-seg folder) or
a :class:`~ltaug.io.dataset.Dataset` already in memory. All are exported by ``ltaug`` itself
(``ltaug.plan``, ...), imported on first use.

| command | function | returns |
|---|---|---|
| ``ltaug stats`` | :func:`class_stats` | the ``--json`` document (dict) |
| ``ltaug validate`` | :func:`validate` | :class:`ValidationResult` |
| ``ltaug convert`` | :func:`convert` | :class:`ConvertResult` |
| ``ltaug recount`` | :func:`recount` | the recounted Dataset |
| ``ltaug resample`` | :func:`resample` | :class:`Resampled` (the resampled dataset, the per-class table) |
| ``ltaug plan`` | :func:`plan` | :class:`PlanResult` (the plan, the planned dataset) |
| ``ltaug bank`` | :func:`build_bank` | the bank's summary (dict) |
| ``ltaug paste`` / ``mosaic`` / ``mixup`` | :func:`run_steps` with one :mod:`ltaug.ops` operation | :class:`RunResult` |
| ``ltaug run CONFIG`` | :func:`run_config` (the YAML file), :func:`run_steps` (steps in Python) | :class:`RunResult` |
| ``ltaug report`` | :func:`make_report` | the page's path |
| ``ltaug openimages`` | :func:`read_openimages` | the LVIS dataset read from Open Images files |
| ``ltaug concurrence`` | :func:`concurrence` | the rates (:class:`~ltaug.stats.concurrence.Concurrence`) |

Three commands have other names here, because ``ltaug.stats``, ``ltaug.run`` and
``ltaug.report`` are the packages that hold their code: :func:`class_stats`, :func:`run_steps` /
:func:`run_config` and :func:`make_report`; ``ltaug openimages`` is :func:`read_openimages`, a
reader rather than an operation on a dataset. The companion trainer's commands (``ltaug train``,
``eval``, ``tau-sweep``, ``compare``) are not here: they live in the ``trainer`` package, behind
the ``train`` extra (torch).

Flags that only shape what the command prints (``--json``, ``--top``, ``--max-per-kind``) have
no parameter: the function returns the whole result. Outputs are written only where a path is
given (``output=``, ``plot=``, ...), atomically, and never over an input; without one,
:func:`resample`, :func:`plan`, :func:`recount`, :func:`class_stats` and :func:`validate` work in
memory. The library never prints: progress bars only with ``progress=True``, messages through
:mod:`logging` (logger ``ltaug``; records skipped with ``on_error="skip"`` at INFO, the report's
warnings at WARNING), errors as :class:`~ltaug.errors.LtaugError` subclasses. A bad value of a
parameter raises :class:`~ltaug.errors.SpecError` naming it.

This module sits on top of the library: it may import every package of ``ltaug``, and none of
them imports it.
"""
from __future__ import annotations

import inspect
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ltaug.errors import InputError, SpecError, UsageError
from ltaug.io.dataset import Dataset
from ltaug.io.paths import refuse_overwriting_inputs
from ltaug.io.policy import summary_lines
from ltaug.io.read import load_dataset
from ltaug.io.validate import Problem
from ltaug.ops import OPERATIONS, Operation, Resample, from_mapping
from ltaug.pixels.bank import Params as BankParams
from ltaug.report.html import SAMPLES, THUMB_WIDTH
from ltaug.stats.frequency import COMMON_MAX, RARE_MAX

if TYPE_CHECKING:
    import numpy as np

    from ltaug.rebalance.planning import Target
    from ltaug.stats.concurrence import Concurrence

_log = logging.getLogger(__name__)

DatasetLike = Union[str, "os.PathLike[str]", Dataset]
"""What the functions take as ``dataset``: a path (COCO/LVIS json, YOLO-seg folder) or a Dataset."""
PathLike = Union[str, "os.PathLike[str]"]
Step = Union[Operation, "tuple[str, Mapping[str, Any] | None]", "Mapping[str, Mapping[str, Any] | None]"]
"""A step of :func:`run_steps`: an :mod:`ltaug.ops` operation, a ``(name, params)`` pair, or a YAML
step's one-key mapping ``{name: params}``."""


# -- shared -------------------------------------------------------------------------------------

def _load(dataset: DatasetLike, on_error: str, split: str = "train", strict: bool = False,
          images: PathLike | None = None) -> Dataset:
    """``dataset`` itself, or the file or folder it names, loaded (``images``: a YOLO folder's
    images, read instead of data.yaml's). What the reader did is logged, one line per kind and
    action (:func:`ltaug.io.policy.summary_lines`): warnings as warnings, fixes and skips as
    information."""
    if isinstance(dataset, Dataset):
        return dataset
    ds = load_dataset(dataset, on_error=on_error, split=split, strict=strict, images=images)
    for action, line in summary_lines(ds.findings):
        _log.log(logging.WARNING if action == "warned" else logging.INFO, "%s: %s", dataset, line)
    if ds.skipped and not ds.findings:  # a reader that lists no findings
        kinds = ", ".join(f"{n} {k}" for k, n in ds.skipped.most_common())
        _log.info("%s: skipped %d invalid record(s): %s", dataset, sum(ds.skipped.values()), kinds)
    return ds


def _write_fixes(ds: Dataset, output: PathLike, *, folder: bool = False) -> Path | None:
    """List every record the reader fixed or dropped (``on_error`` fix or skip) in ``fixes.json``
    inside the output folder, or ``NAME.fixes.json`` beside the output file ``NAME.json``: kind,
    action, the record named by its input ids, and the record before and after."""
    from ltaug.io.jsonio import write_json_atomic

    listed = [f.record() for f in ds.findings if f.action != "warned"]
    if not listed:
        return None
    out = Path(output)
    path = out / "fixes.json" if folder else out.with_name(f"{out.stem}.fixes.json")
    counts = Counter(f["action"] for f in listed)
    id_map: dict[str, list] = {"images": [], "annotations": []}  # old -> new, in input order
    for f in listed:
        before, after = f["before"], f["after"]
        if f["action"] == "fixed" and before.get("id") != after.get("id"):
            section = "images" if f["where"].startswith("image ") else "annotations"
            id_map[section].append({"old": before.get("id"), "new": after.get("id")})
    write_json_atomic(path, {"input": None if ds.path is None else os.path.abspath(ds.path),
                             "fixed": counts["fixed"], "skipped": counts["skipped"], "id_map": id_map,
                             "records": listed}, indent=True)
    _log.info("%s: %d record(s) fixed and %d skipped on reading, each listed", path, counts["fixed"], counts["skipped"])
    return path


def _write_results(result: Resampled | PlanResult, dataset: DatasetLike, document: tuple[str, PathLike | None, Any],
                   output: PathLike | None, plot: PathLike | None, shift: Any, title: str) -> None:
    """What resample and plan write, each recorded in ``result.written``: ``document`` (its key,
    path and content: the repeat factors, the plan), the dataset to ``output`` with its fix report
    (:func:`_write_fixes`), and the before/after ``plot`` of ``shift``."""
    from ltaug.io.jsonio import write_json_atomic
    from ltaug.rebalance.shift import plot_shift

    key, path, content = document
    if path:
        write_json_atomic(path, content)
        result.written[key] = Path(path)
    if output:
        result.written["output"] = result.save(output, inputs=[_source(dataset)])
        _write_fixes(result.input, output)
    if plot:
        result.written["plot"] = plot_shift(shift, plot, title=title)


def _source(dataset: DatasetLike) -> Path | None:
    """The input file (never to be written over): the path given, or the dataset's own."""
    return dataset.path if isinstance(dataset, Dataset) else Path(dataset)


def _shown(dataset: DatasetLike) -> str:
    """The input as a plot's title names it."""
    if isinstance(dataset, Dataset):
        return str(dataset.path) if dataset.path is not None else "<memory>"
    return str(dataset)


def _refuse_over_input(dataset: DatasetLike, *outputs: PathLike | None) -> None:
    source = _source(dataset)
    for out in outputs:
        if out:
            refuse_overwriting_inputs(out, [source])


# -- ltaug stats / validate / convert / recount -------------------------------------------------

def class_stats(dataset: DatasetLike, *, plot: PathLike | None = None, rare_max: int | None = None,
                common_max: int | None = None, on_error: str = "raise", strict: bool = False) -> dict:
    """``ltaug stats``: per-class images and instances, r/c/f bins, imbalance ratio, Gini.

    Returns the document ``ltaug stats --json`` prints (:func:`ltaug.stats.summary.dataset_stats`).
    ``plot``: also write the sorted log-scale class histogram there (PNG). Bins: LVIS files keep
    their stored bins unless ``rare_max`` / ``common_max`` are given. ``on_error`` applies when
    ``dataset`` is a path (``"skip"`` drops invalid records; the summary's ``skipped`` counts them).
    """
    from ltaug.stats.summary import dataset_stats, plot_class_histogram

    ds = _load(dataset, on_error, strict=strict)
    stats = dataset_stats(ds, rare_max=rare_max, common_max=common_max)
    _refuse_over_input(dataset, plot)
    if plot:
        plot_class_histogram(stats, plot, title=_shown(dataset))
    return stats


@dataclass
class ValidationResult:
    """What :func:`validate` found: every problem, with the record it concerns."""

    path: Path | None
    """The file or folder checked (None: a dataset in memory)."""
    problems: list[Problem]
    images: int | None
    """Images and annotations in the document (None when it has no such lists: not a COCO file)."""
    annotations: int | None
    images_checked: bool
    """Whether the image files were checked too (``images=`` given)."""
    strict: bool = False
    """Warnings count as errors."""
    fixed: Path | None = None
    """With ``fix``: the repaired copy written (its fix report beside it, ``NAME.fixes.json``)."""
    findings: list = field(default_factory=list)
    """With ``fix``: what was fixed and dropped (:class:`ltaug.io.policy.Finding`)."""

    @property
    def errors(self) -> list[Problem]:
        """The problems that are errors (every one with ``strict``)."""
        from ltaug.io.policy import severity

        return [p for p in self.problems if self.strict or severity(p.kind) == "error"]

    @property
    def ok(self) -> bool:
        """No errors (warnings are processed by every command; ``strict``: no problems at all)."""
        return not self.errors

    @property
    def counts(self) -> Counter:
        """Problems per kind (:data:`ltaug.io.validate.KINDS`)."""
        from ltaug.io.validate import summarize

        return summarize(self.problems)

    @property
    def file(self) -> str:
        return str(self.path) if self.path is not None else "<memory>"

    def document(self) -> dict:
        """The document ``ltaug validate --json`` prints: the file, every problem, the counts per kind."""
        from ltaug.io.policy import severity

        return {"file": self.file,
                "problems": [{"kind": p.kind, "severity": severity(p.kind), "section": p.section,
                              "position": p.position, "message": p.message} for p in self.problems],
                "summary": dict(self.counts), "errors": len(self.errors), "warnings": len(self.problems) - len(self.errors),
                **({"fixed": str(self.fixed), "fixes": len(self.findings)} if self.fixed is not None else {})}


def validate(dataset: DatasetLike, *, images: PathLike | None = None, no_masks: bool = False,
             strict: bool = False, fix: bool = False, output: PathLike | None = None,
             progress: bool = False) -> ValidationResult:
    """``ltaug validate``: every problem of an annotation file (and, with ``images``, of its image
    files), each naming its image, annotation or category id, with its severity in the policy
    table (:mod:`ltaug.io.policy`; ``result.ok``: no errors, or with ``strict`` no problems).

    ``dataset``: the file or YOLO-seg folder (checked as it is, before any loading), or a
    Dataset in memory (its document). ``no_masks``: skip the area-vs-mask and box-vs-mask checks
    (they rasterise every mask). ``fix``: write a repaired copy to ``output`` (:func:`ltaug.io.fix.fix_document`:
    what the table can fix is fixed, the rest dropped; with ``images``, images whose files are
    missing, unreadable or of another size are dropped) and the list of every change to
    ``NAME.fixes.json`` beside it. A missing file or image folder is a
    :class:`~ltaug.errors.UsageError`; problems in the file are the result, not errors.
    """
    from ltaug.io.read import read_document
    from ltaug.io.validate import validate_document

    path = _source(dataset)
    if not isinstance(dataset, Dataset) and path is not None and not path.exists():
        raise UsageError(f"{path}: file not found")
    if images and not Path(images).is_dir():
        raise UsageError(f"{images}: image folder not found")
    data: Any
    problems: list[Problem]
    if isinstance(dataset, Dataset):
        data, problems = dataset.data, []
    else:
        data, problems = read_document(dataset)
    if data is not None:
        problems += validate_document(data, images_dir=images, masks=not no_masks, progress=progress)
    counted = isinstance(data, dict) and all(isinstance(data.get(k), list) for k in ("images", "annotations"))
    result = ValidationResult(path=path, problems=problems, images=len(data["images"]) if counted else None,
                              annotations=len(data["annotations"]) if counted else None,
                              images_checked=bool(images), strict=strict)
    if fix:
        result.fixed, result.findings = _write_fixed(data, problems, path, output, masks=not no_masks)
    return result


def _write_fixed(data: Any, problems: list[Problem], source: Path | None, output: PathLike | None, *,
                 masks: bool) -> tuple[Path, list]:
    """``validate --fix``: the repaired document written to ``output``, its fixes beside it."""
    from ltaug.io.fix import fix_document
    from ltaug.io.imagecheck import IMAGE_KINDS

    if output is None:
        raise SpecError("output", "is needed with fix: the file to write the repaired copy to")
    fatal = [p for p in problems if p.fatal]
    if fatal:
        raise InputError(f"{source}: {fatal[0].message}: the file as a whole cannot be fixed")
    refuse_overwriting_inputs(output, [source])
    fixed, findings = fix_document(data, masks=masks, extra=[p for p in problems if p.kind in IMAGE_KINDS])
    ds = Dataset(fixed, path=source, findings=findings)
    ds.save(output, inputs=[source])
    _write_fixes(ds, output)
    return Path(output), findings


@dataclass
class ConvertResult:
    """What :func:`convert` wrote."""

    output: Path
    format: str
    """``yolo``, or the kind of the json written (``coco``, ``lvis``; a COCO output of an LVIS
    input keeps the LVIS fields, so its kind stays ``lvis``)."""
    dataset: Dataset
    """The dataset written (for a YOLO output: the input)."""
    yolo: dict | None = None
    """A YOLO output's summary (:func:`ltaug.io.yolo_export.write_yolo`): images, objects, labels, crowd
    regions skipped, images placed."""


def convert(dataset: DatasetLike, output: PathLike, *, to: str | None = None, images: PathLike | None = None,
            link: str = "copy", split: str = "train", rare_max: int = RARE_MAX, common_max: int = COMMON_MAX,
            on_error: str = "raise", strict: bool = False, keep_ids: bool = False, val: DatasetLike | None = None,
            val_images: PathLike | None = None) -> ConvertResult:
    """``ltaug convert``: COCO <-> YOLO-seg folder, COCO -> LVIS-style json.

    ``to``: ``coco``, ``lvis`` or ``yolo`` (default: a ``*.json`` output keeps the input's kind,
    anything else is a YOLO-seg folder). ``images``: the image folder of a json input, put into a
    YOLO folder by ``link`` (copy, hardlink, symlink, none); for a YOLO input (a folder or its
    ``*.yaml``), the images folder read instead of the one its data.yaml names (and put into a
    YOLO output). ``split``: the split read from a YOLO folder. ``rare_max`` / ``common_max``:
    the bins of an LVIS output. A YOLO output's class ids are 0..K-1 (the summary's ``id_map``:
    input id -> id written, also in its data.yaml), or with ``keep_ids`` the input's own, gaps
    filled with placeholder classes (:func:`ltaug.io.yolo_export.write_yolo`). ``val`` (its images under
    ``val_images``): for a YOLO output, the validation split written beside (``images/train``,
    ``images/val``, one data.yaml naming both).
    """
    from ltaug.io.read import is_yolo_source
    from ltaug.stats.frequency import to_lvis

    out = Path(output)
    fmt = to or ("yolo" if out.suffix.lower() != ".json" else None)
    refuse_overwriting_inputs(out, [_source(dataset), images])
    yolo_input = not isinstance(dataset, Dataset) and is_yolo_source(dataset)
    ds = _load(dataset, on_error, split, strict=strict, images=images if yolo_input else None)
    if fmt == "yolo":
        from ltaug.io.yolo_export import write_yolo

        if out.exists() and not out.is_dir():
            raise UsageError(f"{out}: exists and is not a folder; YOLO output is a folder")
        if images and not Path(images).is_dir():
            raise UsageError(f"{images}: image folder not found")
        val_ds = None
        if val is not None:
            if val_images is not None and not Path(val_images).is_dir():
                raise UsageError(f"{val_images}: image folder not found")
            refuse_overwriting_inputs(out, [_source(val), val_images])
            val_ds = _load(val, on_error, "val" if not isinstance(val, Dataset) and is_yolo_source(val) else split,
                           strict=strict)
        elif val_images is not None:
            raise SpecError("val_images", "is the image folder of val: give val too")
        summary = write_yolo(ds, out, images_dir=images, link=link, keep_ids=keep_ids, val=val_ds,
                             val_images=val_images)
        _write_fixes(ds, out, folder=True)
        return ConvertResult(output=out, format="yolo", dataset=ds, yolo=summary)
    if val is not None:
        raise SpecError("val", "is for a YOLO output (--to yolo), which holds both splits")
    if fmt == "lvis" and ds.kind != "lvis":
        crowd = int(ds.index.ann_iscrowd.sum())
        ds = to_lvis(ds, rare_max=rare_max, common_max=common_max)
        if crowd:
            _log.info("%s: %d crowd region(s) removed (LVIS has none); their classes are marked not exhaustively "
                      "annotated on their images", out, crowd)
    ds.save(out, inputs=[_source(dataset)])
    _write_fixes(ds, out)
    return ConvertResult(output=out, format=ds.kind, dataset=ds)


def recount(dataset: DatasetLike, output: PathLike | None = None, *, rare_max: int = RARE_MAX,
            common_max: int = COMMON_MAX, on_error: str = "raise", strict: bool = False) -> Dataset:
    """``ltaug recount``: the dataset with each category's ``image_count``, ``instance_count`` and
    ``frequency`` (r/c/f, by ``rare_max`` / ``common_max`` images) recomputed, an LVIS-kind
    dataset; written to ``output`` if given (:func:`ltaug.stats.frequency.recount`)."""
    from ltaug.stats.frequency import recount as recount_categories

    ds = _load(dataset, on_error, strict=strict)
    out = recount_categories(ds, rare_max=rare_max, common_max=common_max)
    if output is not None:
        out.save(output, inputs=[_source(dataset)])
        _write_fixes(ds, output)
    return out


# -- ltaug resample / plan ------------------------------------------------------------------------

class _Expanded:
    """What resample and plan share: the input with per-image repeat counts, as a dataset
    (:func:`ltaug.rebalance.resample.expand_dataset`), built on first use, or written to a file
    without building it."""

    input: Dataset

    def _expansion(self) -> tuple[Any, str, dict]:
        """The per-image counts, the provenance's ``op`` and ``params``."""
        raise NotImplementedError

    @cached_property
    def dataset(self) -> Dataset:
        """The input with image i repeated as counted, repeats with new ids, provenance."""
        from ltaug.rebalance.resample import expand_dataset

        counts, op, params = self._expansion()
        return expand_dataset(self.input, counts, op=op, params=params)

    @property
    def output_size(self) -> tuple[int, int]:
        """``(images, annotations)`` of :attr:`dataset`, without building it."""
        from ltaug.rebalance.resample import expanded_size

        return expanded_size(self.input, self._expansion()[0])

    def save(self, path: PathLike, *, inputs: Sequence[PathLike | None] = ()) -> Path:
        """Write :attr:`dataset` to ``path`` (json, atomically; never over the input or
        ``inputs``), the same bytes whether or not it was built: when not, it is written a
        chunk at a time and not kept (:func:`ltaug.rebalance.resample.write_expanded`)."""
        from ltaug.rebalance.resample import write_expanded

        if "dataset" in self.__dict__:
            return self.dataset.save(path, inputs=inputs)
        counts, op, params = self._expansion()
        return write_expanded(self.input, counts, path, op=op, params=params, inputs=inputs)


@dataclass
class Resampled(_Expanded):
    """What :func:`resample` drew: the per-image counts, the per-class before/after table, and
    the resampled dataset (built on first use of :attr:`dataset`; ``output`` is written without
    building it)."""

    input: Dataset
    spec: Resample
    counts: np.ndarray
    """(I,) uses of each input image over all epochs (0: dropped)."""
    shift: dict
    """The per-class before/after document (:func:`ltaug.rebalance.shift.class_shift`) that
    ``ltaug resample`` prints as a table."""
    repeat_factors: dict
    """Per-image expected uses per epoch, the document ``--repeat-factors`` writes (for ``rfs``:
    the repeat factors) for an online sampler."""
    written: dict[str, Path] = field(default_factory=dict)
    """The files written, by parameter: ``output``, ``repeat_factors``, ``plot``."""
    note: str | None = None
    """One line when the parameters change nothing or almost nothing (``rfs`` with a threshold
    under the rarest class's image share), with the value that would; also logged as a warning."""

    def _expansion(self) -> tuple[Any, str, dict]:
        """:attr:`dataset`: image i ``counts[i]`` times (repeats with new ids, provenance)."""
        return self.counts, f"resample:{self.spec.method}", self.spec.params()


def resample(dataset: DatasetLike, method: str | Resample, *, output: PathLike | None = None,
             repeat_factors: PathLike | None = None, plot: PathLike | None = None, rare_max: int | None = None,
             common_max: int | None = None, on_error: str = "raise", strict: bool = False, **params: Any) -> Resampled:
    """``ltaug resample``: class-balanced resampling (rfs, cas, sqrt, soft).

    ``method`` and ``params`` are the parameters of :class:`ltaug.ops.Resample` (``threshold``,
    ``epochs``, ``seed``, ...: the command's flags, listed in this signature), or ``method`` is a
    Resample itself. Nothing is written unless asked: ``output`` (the rebalanced COCO/LVIS
    file), ``repeat_factors`` (per-image expected uses per epoch, for an online sampler),
    ``plot`` (before/after class histogram). ``rare_max`` / ``common_max``: the bins of the
    per-class table.
    """
    from ltaug.rebalance.resample import repeat_factor_document, resample_counts
    from ltaug.rebalance.shift import class_shift

    if isinstance(method, Resample):
        spec = method.replace(**params) if params else method
    else:
        spec = Resample(method=method, **params)
    _refuse_over_input(dataset, output, repeat_factors, plot)
    ds = _load(dataset, on_error, strict=strict)
    drawn = resample_counts(ds, spec)
    shift = class_shift(ds, drawn.counts, rare_max=rare_max, common_max=common_max)
    result = Resampled(input=ds, spec=spec, counts=drawn.counts, shift=shift,
                       repeat_factors=repeat_factor_document(ds, drawn), note=drawn.note)
    _write_results(result, dataset, ("repeat_factors", repeat_factors, result.repeat_factors), output, plot,
                   shift, f"{_shown(dataset)}: resample --method {spec.method}")
    return result


def _add_parameters(func: Callable[..., Any], cls: type[Operation]) -> None:
    """Show ``cls``'s parameters in ``func``'s signature (help(), inspect, the API reference), where
    its ``**params`` takes them."""
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    first_keyword = next(k for k, p in enumerate(own) if p.kind is inspect.Parameter.KEYWORD_ONLY)
    declared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=p.default)
                for name, p in cls.declared().items() if name not in sig.parameters]
    func.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[*own[:first_keyword], *declared, *own[first_keyword:]])


_add_parameters(resample, Resample)


@dataclass
class PlanResult(_Expanded):
    """What :func:`plan` solved: the plan and the planned dataset (built on first use of
    :attr:`dataset`; ``output`` is written without building it)."""

    input: Dataset
    target: Target
    plan: dict
    """The serialisable plan (what ``plan_json`` writes): ``target``, per-image ``repeats``, the
    per-class table (``classes``: before, target, after, status, deficit) and its ``summary``
    (``classes_short``, ``classes_capped``, ``paste_budget``: the objects copy-paste must add)."""
    written: dict[str, Path] = field(default_factory=dict)
    """The files written, by parameter: ``plan_json``, ``output``, ``plot``."""

    @property
    def note(self) -> str | None:
        """One line when the plan repeats no image (a target every class already meets, a
        max_factor that holds every class, or caps that block every repeat), with the value
        that would; also logged as a warning. None otherwise."""
        return self.plan.get("note")

    def _expansion(self) -> tuple[Any, str, dict]:
        """:attr:`dataset`: each image repeated as the plan says (provenance)."""
        return self.plan["repeats"], "plan", {"target": self.plan["target"]}


def plan(dataset: DatasetLike, *, min_instances: int | None = None, exponent: float | None = None,
         max_factor: float | None = None, plan_json: PathLike | None = None, output: PathLike | None = None,
         plot: PathLike | None = None, rare_max: int | None = None, common_max: int | None = None,
         on_error: str = "raise", strict: bool = False) -> PlanResult:
    """``ltaug plan``: solve a per-class target (:class:`ltaug.rebalance.planning.Target`: at least
    ``min_instances``, a flatter power law ``exponent``, at most ``max_factor`` times a class's
    count) for image repeats. Nothing is written unless asked: ``plan_json`` (the plan),
    ``output`` (the planned COCO/LVIS file), ``plot`` (before/after class histogram).
    """
    from ltaug.rebalance.planning import Target, make_plan

    target = Target(min_instances=min_instances, exponent=exponent, max_factor=max_factor)
    _refuse_over_input(dataset, output, plan_json, plot)
    ds = _load(dataset, on_error, strict=strict)
    result = PlanResult(input=ds, target=target,
                        plan=make_plan(ds, target, rare_max=rare_max, common_max=common_max))
    _write_results(result, dataset, ("plan_json", plan_json, result.plan), output, plot, result.plan,
                   f"{_shown(dataset)}: plan")
    return result


# -- ltaug bank ----------------------------------------------------------------------------------

def build_bank(dataset: DatasetLike, images: PathLike, output: PathLike, *, workers: int | None = None,
               min_area: int = BankParams.min_area, occluded_fraction: float = BankParams.occluded_fraction,
               classes: Sequence[int | str] | str | None = None, bins: Sequence[str] | str | None = None,
               rare_max: int | None = None, common_max: int | None = None, max_per_class: int | None = None,
               seed: int = 0, codec: str = "jpeg", quality: int | None = None, on_error: str = "raise",
               strict: bool = False, progress: bool = False) -> dict:
    """``ltaug bank``: cut the non-crowd objects out once (crop, mask, class, source ids, quality
    flags) into an object bank folder ``output`` for copy-paste (:func:`ltaug.pixels.bank.build_bank`;
    open it with :class:`ltaug.pixels.bank.Bank`).

    ``workers``: processes (default: all cores; the bank is the same bytes for any number).
    ``min_area`` / ``occluded_fraction``: the thresholds of the too-small and occluded flags.
    What goes in: the classes ``classes`` (names or ids, a list or one comma-separated string)
    and those of the frequency ``bins`` (``"r,c"`` or ``["r", "c"]``: the bins of
    :func:`class_stats`, an LVIS file's own unless ``rare_max`` / ``common_max`` are given, else by
    image counts with 10 / 100); both given: their union; neither: every class. ``max_per_class``:
    at most that many objects of each class, a choice seeded by ``seed`` that prefers unflagged,
    larger and less occluded objects (:data:`ltaug.pixels.bank_select.RULE`). How the crops are
    stored: ``codec`` ``jpeg`` (at ``quality``, default 91), ``png`` (lossless) or ``raw``
    (:mod:`ltaug.pixels.bank_codec`). The selection and the codec are recorded in ``meta.json``.
    Returns the summary: ``path``, ``objects``, ``source_objects``, ``left_out``, ``images``,
    ``flags``, ``codec``, ``bytes``, ``bytes_per_object``, ``seconds``, ...
    """
    from ltaug.pixels.bank import build_bank as build
    from ltaug.pixels.bank_select import split_names
    from ltaug.stats.frequency import BINS, dataset_bins, uses_stored_frequency

    if not Path(images).is_dir():
        raise UsageError(f"{images}: image folder not found")
    ds = _load(dataset, on_error, strict=strict)
    named = split_names(classes)
    asked: dict[str, Any] = {}
    if bins is None:
        if rare_max is not None or common_max is not None:
            _log.warning("rare_max / common_max choose the frequency bins of `bins`; without bins they change nothing")
    else:
        wanted = [str(b) for b in split_names(bins) or []]
        wrong = [b for b in wanted if b not in BINS]
        if wrong or not wanted:
            raise SpecError("bins", f"takes {', '.join(BINS)} (comma-separated), got {', '.join(wrong) or 'nothing'}")
        of_class = dataset_bins(ds, rare_max=rare_max, common_max=common_max)
        from_file = uses_stored_frequency(ds, rare_max, common_max)
        in_bins = [int(c) for c, b in zip(ds.index.category_ids.tolist(), of_class) if b in wanted]
        if not in_bins and not named:
            how = "the file's own frequency" if from_file else "by image counts"
            raise SpecError("bins", f"{','.join(wanted)}: no class of the dataset is in these bins ({how})")
        asked = {"bins": wanted, "bins_from": "file" if from_file else "image_counts",
                 "rare_max": None if from_file else (RARE_MAX if rare_max is None else rare_max),
                 "common_max": None if from_file else (COMMON_MAX if common_max is None else common_max),
                 "bin_classes": len(in_bins)}
        named = [*(named or []), *in_bins]
    summary = build(ds, images, output, workers=workers, min_area=min_area, occluded_fraction=occluded_fraction,
                    on_error=on_error, progress=progress, classes=named, max_per_class=max_per_class, seed=seed,
                    codec=codec, quality=quality, asked={"classes": split_names(classes), **asked})
    _write_fixes(ds, output, folder=True)
    return summary


def verify_bank(bank: PathLike) -> list[str]:
    """``ltaug bank --verify``: every file of the bank folder ``bank`` compared with its SHA-256
    in ``meta.json``; one line per problem (an empty list: the bank is intact)."""
    from ltaug.pixels.bank import Bank

    return Bank(bank).verify()


# -- ltaug clean ------------------------------------------------------------------------------------

def clean(output: PathLike, *, dry_run: bool = False) -> list:
    """``ltaug clean``: remove what killed or interrupted writers of ``output`` (a run's folder, a
    bank, a json file, a YOLO export) left beside or inside it: an interrupted run's work folder,
    the previous output of a killed replace, a killed bank build's folder, the temporary files of
    killed writes. Returns them (:class:`ltaug.run.clean.Leftover`: path, what, bytes); nothing is
    removed with ``dry_run``. Refused while a command is writing ``output``."""
    from ltaug.run.clean import clean as remove

    return remove(output, dry_run=dry_run)


# -- ltaug run / paste / mosaic / mixup ------------------------------------------------------------

@dataclass
class RunResult:
    """An engine output folder (``ltaug run`` / paste / mosaic / mixup): its paths and its record."""

    output: Path
    record: dict
    """``run.json``: input, steps with their parameters, per-step reports, counts, seconds."""
    input: Dataset
    """The dataset the steps ran on."""

    @property
    def annotations(self) -> Path:
        """The output's COCO/LVIS file."""
        return self.output / "annotations.json"

    @property
    def images(self) -> Path:
        """The output's image folder (the images made, and links to the input's it keeps)."""
        return self.output / "images"

    @property
    def run_json(self) -> Path:
        return self.output / "run.json"

    @property
    def steps(self) -> list[dict]:
        """One report per step: ``op``, ``params``, ``images_written``, ``added_per_class``, ..."""
        return list(self.record["steps_run"])

    @property
    def counts(self) -> dict:
        """``images_before``, ``images_after``, ``images_written``, ``annotations_before``, ``annotations_after``."""
        return dict(self.record["counts"])

    @property
    def seconds(self) -> float:
        return float(self.record["seconds"])

    @property
    def limits(self) -> dict:
        """Per-class limits over the whole pipeline (run.json's ``limits``): ``checked`` (per step that
        sets them: held, over, short) and ``not_held`` (per class: asked, got, why); see
        :func:`ltaug.run.limits.class_limits`."""
        return dict(self.record.get("limits") or {"checked": [], "not_held": []})

    def _per_class(self, key: str) -> dict[int, int]:
        out: dict[int, int] = {}
        for r in self.record["steps_run"]:
            for cid, n in (r.get(key) or {}).items():
                out[int(cid)] = out.get(int(cid), 0) + int(n)
        return dict(sorted(out.items()))

    @property
    def added_per_class(self) -> dict[int, int]:
        """Objects the steps added, by category id (pasted; carried into mosaics and mixups)."""
        return self._per_class("added_per_class")

    @property
    def removed_per_class(self) -> dict[int, int]:
        """Objects the steps removed, by category id (occluded by pastes; cut remnants of mosaics and mixups)."""
        return self._per_class("removed_per_class")

    @cached_property
    def dataset(self) -> Dataset:
        """The output's dataset (read from :attr:`annotations` on first use)."""
        return load_dataset(self.annotations)

    def class_table(self, *, rare_max: int | None = None, common_max: int | None = None) -> dict:
        """The per-class before/after table of ``ltaug report`` (:func:`ltaug.report.html.class_table`):
        ``classes`` (bin, instances and images before / after, pasted, removed, dropped, factor)
        and ``summary``."""
        from ltaug.report.html import class_table

        return class_table(self.input, self.dataset, self.record, rare_max=rare_max, common_max=common_max)


def _step(k: int, step: Step) -> Operation:
    if isinstance(step, Operation):
        return step
    if isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str):
        name, params = step
    elif isinstance(step, Mapping) and len(step) == 1:
        (name, params), = step.items()
    else:
        raise SpecError("steps", f"step {k + 1} must be an ltaug.ops operation, a (name, params) pair or a "
                                 f"one-key mapping {{name: params}}, got {step!r}")
    return from_mapping(OPERATIONS.get(name), params, seed=k)


def run_steps(dataset: DatasetLike, images: PathLike, output: PathLike, steps: Sequence[Step], *,
              workers: int | None = None, resume: bool = False, overwrite: bool = False, link: str = "hard",
              verify_images: bool = False, on_error: str = "raise", strict: bool = False, backend: str | None = None, address: str | None = None,
              progress: bool = False) -> RunResult:
    """Run ``steps`` (resample, paste, mosaic, mixup, ...) on ``dataset`` (its images under
    ``images``) into the output folder ``output``: ``annotations.json``, ``images/``, ``run.json``.
    ``ltaug paste | mosaic | mixup`` is this with one step, ``ltaug run`` with a file's steps
    (:func:`run_config`).

    ``steps``: :mod:`ltaug.ops` operations (``Paste(objects=4)``), or ``(name, params)`` pairs /
    ``{name: params}`` mappings as a pipeline file's steps (step k's seed is k unless it sets
    its own). ``workers``: processes (default: all cores); the output is the same bytes for any
    number. ``resume``: finish an interrupted run. ``overwrite``: replace a finished output at
    ``output`` (refused when it holds files ltaug did not write). ``link``: how the input images
    the output keeps get there: ``hard`` links (the input files themselves; copies across file
    systems), ``symlink`` or ``copy``. ``verify_images``: fingerprint the input images by SHA-256 too
    (a resume then refuses any changed image). ``on_error``: ``"skip"`` leaves out images that
    cannot be read (and, for a path, invalid records); ``"fix"`` also repairs the records it can
    (each listed in ``OUTPUT/fixes.json``); ``strict``: a path's warnings are errors. ``backend``: ``local`` (default) or ``ray``
    (the ray extra), on the Ray cluster ``address`` (``auto``, ``HOST:PORT``; default: RAY_ADDRESS,
    else a local instance).
    """
    from ltaug.run.engine import run_pipeline
    from ltaug.run.pipeline import BACKENDS

    operations = [_step(k, s) for k, s in enumerate(steps)]
    ds = _load(dataset, on_error, strict=strict)
    backend = backend or "local"
    if backend not in BACKENDS:
        raise SpecError("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "ray" and address:
        raise SpecError("address", "is for --backend ray")
    executor = {}
    if backend == "ray":
        from ltaug.run.ray_backend import ray_map_shards

        executor["map_shards"] = ray_map_shards(address, num_cpus=workers)
    record = run_pipeline(ds, images, output, operations, workers=workers, resume=resume, on_error=on_error,
                          progress=progress, overwrite=overwrite, link=link, verify_images=verify_images, **executor)
    _write_fixes(ds, output, folder=True)
    return RunResult(output=Path(output), record=record, input=ds)


def run_config(config: PathLike, output: PathLike | None = None, *, workers: int | None = None,
               resume: bool = False, overwrite: bool = False, link: str = "hard", verify_images: bool = False,
               on_error: str | None = None, strict: bool = False,
               backend: str | None = None, address: str | None = None, progress: bool = False) -> RunResult:
    """``ltaug run CONFIG``: the pipeline file ``config`` (YAML: input, images, output, seed, steps;
    :mod:`ltaug.run.pipeline`) run by :func:`run_steps`. ``output``, ``workers``, ``on_error``,
    ``backend`` and ``address`` override the file's values; ``address`` is used with the ray
    backend only (the file's, when the backend is the file's ray and none is given).
    """
    from ltaug.run.pipeline import load_pipeline

    pipe = load_pipeline(config)
    backend = backend or pipe.backend or "local"
    if backend == "ray":
        address = address or pipe.address
    return run_steps(pipe.input, pipe.images, output or pipe.output, pipe.steps,
                     workers=workers if workers is not None else pipe.workers, resume=resume, overwrite=overwrite,
                     link=link, verify_images=verify_images, on_error=on_error or pipe.on_error, strict=strict, backend=backend, address=address, progress=progress)


# -- ltaug report ----------------------------------------------------------------------------------

def make_report(output_dir: PathLike, output: PathLike | None = None, *, input: PathLike | None = None,
                samples: int = SAMPLES, seed: int = 0, thumb_width: int = THUMB_WIDTH,
                rare_max: int | None = None, common_max: int | None = None, on_error: str = "raise") -> Path:
    """``ltaug report``: one self-contained HTML page of the engine output folder ``output_dir``
    (:func:`ltaug.report.html.write_report`), written to ``output`` (default
    ``OUTPUT_DIR/report.html``); returns its path.

    ``input``: the run's input annotations if they moved from where run.json says. ``samples``
    images in the grid (chosen with ``seed``), ``thumb_width`` pixels wide. Warnings (an input
    changed since the run, records skipped) are logged and shown on the page.
    """
    from ltaug.report.html import REPORT_NAME, input_path, read_run, write_report

    out_dir = Path(output_dir)
    target = Path(output) if output else out_dir / REPORT_NAME
    record = read_run(out_dir)
    refuse_overwriting_inputs(target, [out_dir / "run.json", out_dir / "annotations.json",
                                       input_path(out_dir, record, input)])
    path, _, warnings = write_report(out_dir, target, input_annotations=input, samples=samples, seed=seed,
                                     thumb_width=thumb_width, rare_max=rare_max, common_max=common_max,
                                     on_error=on_error)
    for w in warnings:
        _log.warning("%s", w)
    return path


def read_openimages(boxes: PathLike, classes: PathLike, images: PathLike, output: PathLike | None = None, *,
                    hierarchy: PathLike | None = None, labels: Sequence[PathLike] = (), masks: PathLike | None = None,
                    mask_dir: PathLike | None = None, rare_max: int = RARE_MAX, common_max: int = COMMON_MAX) -> Dataset:
    """``ltaug openimages``: Open Images boxes (class descriptions, images; optionally the hierarchy,
    image-level labels, masks) as an LVIS dataset, labels expanded up the hierarchy, one
    annotation per label of an object sharing its ``object_id``, negatives in ``neg_category_ids``
    (the rules: :mod:`ltaug.io.openimages`); categories counted and binned by ``rare_max`` /
    ``common_max``. Written to ``output`` when given. What was skipped is logged."""
    from ltaug.io.openimages import read_openimages as read
    from ltaug.stats.frequency import recount as count

    inputs = [boxes, classes, hierarchy, *labels, masks]
    if output is not None:
        refuse_overwriting_inputs(output, inputs)
    got = read(boxes, classes, images, hierarchy=hierarchy, labels=labels, masks=masks, mask_dir=mask_dir)
    for what, n in sorted(got.counts.items()):
        if n:
            _log.info("%s: %d %s", boxes, n, what)
    ds = count(got.dataset, rare_max=rare_max, common_max=common_max)
    if output is not None:
        ds.save(output, inputs=inputs)
    return ds


def concurrence(dataset: DatasetLike, output: PathLike | None = None, *, hierarchy: bool = True,
                on_error: str = "raise", strict: bool = False) -> Concurrence:
    """``ltaug concurrence``: the concurrence rates r_ij of concurrent softmax from the labels that
    share an object and (``hierarchy``) the categories' ``parent_ids``
    (:func:`ltaug.stats.concurrence.concurrence_rates`), written to ``output`` when given, for
    ``ltaug train --loss concurrent_softmax --concurrence FILE``."""
    from ltaug.stats.concurrence import concurrence_rates, write_concurrence

    if output is not None:
        refuse_overwriting_inputs(output, [_source(dataset)])
    rates = concurrence_rates(_load(dataset, on_error, strict=strict), hierarchy=hierarchy)
    if output is not None:
        write_concurrence(rates, output, source=None if isinstance(dataset, Dataset) else str(dataset))
    return rates


COMMANDS: dict[str, Callable[..., Any]] = {
    "stats": class_stats, "validate": validate, "convert": convert, "recount": recount, "resample": resample,
    "plan": plan, "bank": build_bank, "run": run_config, "report": make_report, "clean": clean,
    "openimages": read_openimages, "concurrence": concurrence,
}
"""The function of each data command of ``ltaug`` (the pixel commands, one per registered
:class:`~ltaug.ops.PixelOperation`, are :func:`run_steps` with that operation)."""

__all__ = ["COMMANDS", "ConvertResult", "DatasetLike", "PlanResult", "Resampled", "RunResult", "Step",
           "ValidationResult", "build_bank", "class_stats", "clean", "concurrence", "convert", "make_report", "plan", "recount", "resample",
           "read_openimages", "run_config", "run_steps", "validate", "verify_bank"]
