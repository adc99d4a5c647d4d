"""The policy table: every problem kind ltaug's readers know, its severity, and what each
``--on-error`` choice does to it.

Severities:

- ``error``: the record cannot be read or processed correctly. ``--on-error raise`` (the
  default) refuses the file naming the first one; ``skip`` drops the record (and an image's
  annotations with it), counted and listed; ``fix`` repairs it where the table says how, else
  drops it as ``skip`` does. Errors in the file as a whole (``fatal``) always refuse.
- ``warning``: pycocotools (or ultralytics, for a YOLO folder) loads it; ltaug processes it
  the way that loader would, prints one summary line per kind, and exits 0. ``--strict``
  makes warnings errors; ``fix`` repairs them too.
- ``fine``: not a problem (listed so that nobody has to wonder): processed as is.

Each reading module declares its kinds once with :func:`declare`; ``ltaug validate --help``
and the README print the table (:func:`ltaug.io.read.policy_table`).
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

SEVERITIES = ("error", "warning", "fine")
SOURCES = ("json", "yolo", "image")


@dataclass(frozen=True)
class Kind:
    """One problem kind: ``name`` (as in messages and ``fixes.json``), where it is found
    (``source``: a COCO/LVIS json, a YOLO folder, an image file), its ``severity``, what it is,
    and what ``fix`` does to it (``None``: not fixable, the record is dropped as with ``skip``)."""

    name: str
    source: str
    severity: str
    what: str
    fix: str | None = None
    fatal: bool = False  # the file as a whole: always refused

    @property
    def on_fix(self) -> str:
        if self.fatal:
            return "refused (the file as a whole)"
        if self.severity == "fine":
            return "kept as is"
        return self.fix or "dropped, as with skip"


KINDS: dict[str, Kind] = {}


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str                 # names the record: "annotation id 17: ..."
    section: str | None = None   # "images" | "annotations" | "categories" | None (whole file)
    position: int | None = None  # row in that section's list

    @property
    def fatal(self) -> bool:
        """A problem that cannot be skipped record by record."""
        return self.section in (None, "categories")

    def line(self, file) -> str:
        return f"{file}: {self.message}"



def declare(name: str, source: str, severity: str, what: str, fix: str | None = None, *,
            fatal: bool = False) -> str:
    """Register a kind (once: a second declaration of ``name`` is a programming error); returns ``name``."""
    if name in KINDS:
        raise ValueError(f"problem kind {name!r} is declared twice")
    if severity not in SEVERITIES or source not in SOURCES:
        raise ValueError(f"{name}: severity must be one of {SEVERITIES}, source one of {SOURCES}")
    KINDS[name] = Kind(name, source, severity, what, fix, fatal)
    return name


def severity(kind: str) -> str:
    """The severity of ``kind``; an undeclared kind is an error."""
    k = KINDS.get(kind)
    return k.severity if k is not None else "error"


def table(*, markdown: bool = False) -> str:
    """The policy table of the kinds declared so far (:func:`ltaug.io.read.policy_table` has them
    all), grouped by source, errors first: plain text for ``--help``, or markdown."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    rows = sorted(KINDS.values(), key=lambda k: (SOURCES.index(k.source), order[k.severity], k.name))
    if markdown:
        lines = ["| found in | kind | severity | what | `--on-error fix` |", "|---|---|---|---|---|"]
        lines += [f"| {k.source} | `{k.name}` | {k.severity} | {k.what} | {k.on_fix} |" for k in rows]
        return "\n".join(lines)
    width = max(len(k.name) for k in rows)
    indent = " " * (width + 13)
    lines = []
    for source in SOURCES:
        lines.append({"json": "COCO/LVIS json:", "yolo": "YOLO folder:", "image": "image files:"}[source])
        for k in (k for k in rows if k.source == source):
            lines.append(textwrap.fill(k.what, 100, initial_indent=f"  {k.name:<{width}}  {k.severity:<7}  ",
                                       subsequent_indent=indent))
            if k.severity != "fine":
                lines.append(textwrap.fill(f"fix: {k.on_fix}", 100, initial_indent=indent, subsequent_indent=indent))
    return "\n".join(lines)


@dataclass
class Finding:
    """What a reader did about one problem it met: ``action`` is ``warned`` (processed as is),
    ``fixed`` (``before`` -> ``after``) or ``skipped`` (the record dropped: ``before`` holds it).
    ``where`` names the record: ``image id 3``, ``annotation id 17``, ``labels/a.txt:4``; the
    ids are the input's. Writers list every fixed and skipped finding in ``fixes.json``; the
    command line prints one summary line per kind and action (:func:`summary_lines`)."""

    kind: str
    action: str
    where: str
    message: str
    image_id: object = None
    annotation_id: object = None
    before: object = None
    after: object = None

    def record(self) -> dict:
        """The ``fixes.json`` entry."""
        return {"kind": self.kind, "action": self.action, "where": self.where, "message": self.message,
                "image_id": self.image_id, "annotation_id": self.annotation_id,
                "before": self.before, "after": self.after}


def summary_lines(findings: list[Finding], *, examples: int = 3) -> list[tuple[str, str]]:
    """One ``(action, line)`` per kind and action: the count and the first records named, e.g.
    ``("warned", "duplicate-id: 2 record(s) processed as they are (annotation id 17, annotation id 17)")``,
    or a single finding's own message."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.kind, f.action), []).append(f)
    verbs = {"warned": "processed as they are", "fixed": "fixed", "skipped": "skipped"}
    lines = []
    for (kind, action), group in groups.items():
        if len(group) == 1:  # its own message says it best
            one = {"warned": "processed as it is", "fixed": "fixed", "skipped": "skipped"}
            lines.append((action, f"{kind}: {group[0].message} ({one.get(action, action)})"))
            continue
        shown = ", ".join(f.where for f in group[:examples]) + (", ..." if len(group) > examples else "")
        lines.append((action, f"{kind}: {len(group)} record(s) {verbs.get(action, action)} ({shown})"))
    return lines
