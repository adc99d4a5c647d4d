"""Operations and their parameters, declared once.

An operation is a class with :class:`Param` class attributes. From those declarations come:

- the Python API: ``Paste(objects=4, blend="poisson")`` validates every value and raises
  :class:`~ltaug.errors.SpecError` naming the parameter (``paste: objects must be >= 1, got 0``);
- the YAML pipeline schema: ``- paste: {objects: 4}`` is ``Paste(**mapping)`` (:func:`from_mapping`);
- the command line: :func:`add_arguments` adds one flag per parameter (``--objects``), with the
  help text, the default and the allowed values or range taken from the declaration, and
  :func:`from_args` builds the operation from the parsed flags;
- provenance: :meth:`Operation.params` is what ``run.json`` records for the step.

Registering (:func:`register`) makes an operation a pipeline step, an ``ltaug`` subcommand and
an ``ltaug.ops`` name; see :mod:`ltaug.ops` for the kinds of operation and what each implements.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ltaug.errors import SpecError, UsageError
from ltaug.params import Declared, Param, Registry

if TYPE_CHECKING:
    from ltaug.io.dataset import Dataset


class Operation(Declared):
    """Base of every operation: a set of validated parameter values (immutable once made).

    Subclasses declare ``name`` (the step's and the command's name), ``summary`` (one line for
    ``ltaug --help``), ``description`` (the command's ``--help`` text; default: the class
    docstring) and their :class:`Param` attributes. :meth:`check` adds rules across parameters.
    The parameters of a base class (``seed``) follow the operation's own.
    """

    summary: ClassVar[str] = ""
    description: ClassVar[str] = ""
    paths: ClassVar[tuple[str, ...]] = ()  # parameters that name files: `ltaug run` reads them relative to its YAML

    seed = Param(0, "random seed; same seed, same output bytes", type=int)

    def describe(self) -> dict:
        """The step as ``run.json`` lists it: ``{"op": name, "params": params()}``."""
        return {"op": self.name, "params": self.params()}


class PixelOperation(Operation):
    """An operation that writes images. The engine (:mod:`ltaug.run.engine`) calls, in this order:

    1. :meth:`prepare` (the calling process, once per step): what the workers will need, as
       JSON-able values (paste: the path of its object bank, built here if none was given);
    2. :meth:`plan` (the calling process): the recipes, one per output image, holding every
       random choice, drawn from a generator seeded by ``seed`` only;
    3. :meth:`open` (a worker, once per shard of recipes) then :meth:`render` for each recipe:
       the output image and its annotations, from the decoded source images.

    ``replaces_images``: each recipe's ``image_id`` is an input image that the output image
    replaces (paste); otherwise recipes are new images, added after the input's (the engine
    gives them ids and file names).
    """

    replaces_images: ClassVar[bool] = False

    def prepare(self, ctx: StepContext) -> dict:
        return {}

    def plan(self, dataset: Dataset, prepared: dict) -> tuple[Iterable[dict], dict, int]:
        """``(recipes, summary, tried)``: the recipes in order (a list, or an iterator planning
        as it goes), a planning summary for ``run.json`` (complete once the recipes are taken)
        and the number of images tried (at least the number of recipes; it sets the shard size)."""
        raise NotImplementedError

    def sources(self, recipe: dict) -> list:
        """The image ids a recipe reads (decoded for :meth:`render`, in this order)."""
        return recipe["sources"]

    def files(self, recipe: dict) -> list[tuple[str, str]]:
        """Image files a recipe reads besides the dataset's (paste: its background), decoded after
        the sources, in this order: ``(path, what it is)``, the second for messages."""
        return []

    def input_files(self) -> list[Path]:
        """Files the step reads besides the dataset's images and its bank (paste: the backgrounds):
        a resumed run, and the run before it publishes, refuses them changed."""
        return []

    def open(self, prepared: dict) -> Any:
        """What :meth:`render` reads besides the images (paste: the bank), opened in a worker."""
        return None

    def render(self, recipe: dict, loaded: list, opened: Any) -> tuple[Any, dict]:
        """``(image, item)`` for one recipe. ``loaded``: ``(image, image record, annotations)`` per
        source. ``item["new"]``: the output's new annotations (no ids yet; each with an ``ltaug``
        record naming its ``source_annotation_id``), ``item["removed"]``: category ids of the
        objects dropped; a replacing operation also returns ``item["kept"]``. ``item["params"]``
        (optional, JSON-able): what rendering drew, added to the image's provenance ``params``."""
        raise NotImplementedError

    def recipe_params(self, recipe: dict) -> dict:
        """What the image's provenance records of its recipe."""
        return {}

    @staticmethod
    def report_parts(r: dict) -> list[str]:
        """Phrases for the command line's summary of a finished step (``run.json``'s entry)."""
        added, removed = sum(r["added_per_class"].values()), sum(r["removed_per_class"].values())
        return [f"{added} objects carried, {removed} cut remnants dropped"]


class AnnotationOperation(Operation):
    """An operation on annotations only (no pixels): :meth:`apply` gives the new dataset."""

    def apply(self, dataset: Dataset) -> tuple[Dataset, dict]:
        """``(dataset, report)``; the report goes into ``run.json``."""
        raise NotImplementedError

    @staticmethod
    def report_parts(r: dict) -> list[str]:
        """Phrases for the command line's summary of a finished step (``run.json``'s entry)."""
        return []


@dataclass(frozen=True)
class StepContext:
    """What :meth:`PixelOperation.prepare` may use: the pipeline's input dataset and image
    folder, the run's work folder (removed when the run completes) and its worker count."""

    source: Dataset
    images_dir: Path
    work: Path
    workers: int


OPERATIONS: Registry[type[Operation]] = Registry("operation")
"""Every operation by name: the steps of a pipeline, the ``ltaug`` subcommands."""
register = OPERATIONS.register


def from_mapping(cls: type[Operation], params: Mapping | None, **defaults: Any) -> Operation:
    """An operation from a YAML step's mapping; ``defaults`` fill parameters it does not set."""
    if params is not None and not isinstance(params, Mapping):
        raise SpecError("parameters", f"must be a mapping, got {params!r}", cls.name)
    return cls(**{**defaults, **(params or {})})


# -- the command line -----------------------------------------------------------------------

def _flag(name: str, p: Param | None = None) -> str:
    if p is not None and p.flag:
        return "--" + p.flag
    if p is not None and p.kind is bool and p.nargs is None and p.default:
        return "--no-" + name.replace("_", "-")
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls: type[Operation], *, skip: Iterable[str] = ()) -> None:
    """One flag per parameter of ``cls`` (flags not given stay out of the namespace)."""
    groups: dict[str | None, Any] = {None: parser}
    for key, p in cls.declared().items():
        if key in skip:
            continue
        if p.group not in groups:
            groups[p.group] = parser.add_argument_group(p.group)
        g = groups[p.group]
        if p.fields is not None:
            for sub_key, sub in p.fields.items():
                g.add_argument(_flag(sub_key), dest=f"{key}.{sub_key}", type=sub.kind, metavar=sub.metavar,
                               default=argparse.SUPPRESS, help=f"{p.help}: {sub.help_text()}")
        elif p.kind is bool and p.nargs is None:
            if p.default:
                g.add_argument(_flag(key, p), dest=key, action="store_false", default=argparse.SUPPRESS,
                               help=p.help if p.flag else f"turn off: {p.help}")
            else:
                g.add_argument(_flag(key, p), dest=key, action="store_true", default=argparse.SUPPRESS, help=p.help)
        elif p.nargs == "*":
            g.add_argument(_flag(key, p), dest=key, metavar=p.metavar or "A,B", default=argparse.SUPPRESS,
                           type=lambda text: [v.strip() for v in text.split(",") if v.strip()],
                           help=f"{p.help}, comma-separated" + (f" (default {','.join(p.default)})"
                                                                if p.default else ""))
        else:
            g.add_argument(_flag(key, p), dest=key, type=p.kind, nargs=p.nargs, choices=p.allowed(), metavar=p.metavar,
                           required=p.required, default=argparse.SUPPRESS, help=p.help_text())


def from_args(cls: type[Operation], args: argparse.Namespace, **values: Any) -> Operation:
    """The operation from parsed flags (those given; the rest keep their defaults).

    A value the operation refuses is a :class:`UsageError` naming the flag (``--max-overlap must
    lie in [0, 1], got 1.5``), with the value as the user typed it."""
    given = dict(values)
    for key, p in cls.declared().items():
        if p.fields is not None:
            sub = {k: getattr(args, f"{key}.{k}") for k in p.fields if hasattr(args, f"{key}.{k}")}
            if sub:
                given[key] = sub
        elif hasattr(args, key):
            given[key] = getattr(args, key)
    try:
        return cls(**given)
    except SpecError as exc:
        refused = cls.declared().get(exc.field)
        flags = (" / ".join(map(_flag, refused.fields)) if refused is not None and refused.fields
                 else _flag(exc.field, refused))
        raise UsageError(f"{flags} {exc.detail}") from None
