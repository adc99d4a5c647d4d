"""Read YOLO-seg (ultralytics) folders as COCO documents.

Layout
------
``data.yaml`` names the classes: ``names`` is a list, or a mapping ``{id: name}`` whose ids may
have gaps (COCO's 1..90 for 80 classes); with no ``names``, ``nc: N`` names them ``class_0``...
A folder without a ``data.yaml`` but with exactly one other ``*.yaml`` uses that one, and any
``*.yaml`` / ``*.yml`` file can be passed itself.

The images of a split lie in the folder that data.yaml's entry for it names (``train``, ``val``
or ``test``; ``validation`` stands for ``val``, as in ultralytics; no ``train`` entry means
``images/``), taken, as ultralytics takes it, relative to ``path`` when that folder exists,
else relative to data.yaml's folder (an entry starting ``../`` that does not exist is tried
without it, ultralytics' own rule). When that folder does not exist (an absolute ``path`` or
split entry from the machine that exported the dataset, ``images/train2017`` while the images
lie in ``images/``), the first of these below data.yaml's folder that holds images is read
instead, with one warning naming it (``stale-split-path``): the entry's trailing folders
(``train/images`` of ``/content/ds/train/images``), ``images/<split>``, ``<split>/images``,
``images/``. A ``path`` naming another folder while the split folder lies beside data.yaml (a
copied dataset whose ``path`` still names the original) reads the one beside data.yaml, with
the same warning. ``images=`` (``--images``) names the folder instead of data.yaml.

Labels lie where ultralytics looks for them: the images folder with its last ``images``
component replaced by ``labels`` (beside the images when the path has none), the image's suffix
by ``.txt``. One object per line, coordinates normalised to the image size:

* ``cls x1 y1 x2 y2 ... xn yn`` (n >= 3): a polygon;
* ``cls cx cy w h``: a box (a detection label, no mask).

A missing or empty label file means an image with no objects (a background image). Line endings
may be LF or CRLF, and a UTF-8 byte-order mark is skipped, as ultralytics reads them.

Problems, and what ``on_error`` does to them, are the policy table's ``yolo`` kinds
(:mod:`ltaug.io.policy`, declared below): each is an error (``raise`` refuses the folder naming
file and line, ``skip`` drops the line, or the image for an unreadable image or label file,
``fix`` repairs it where the table says how, else drops it), a warning (processed the way
ultralytics does and recorded; the commands log one line per kind), or fine. What was done is in
``Dataset.findings`` (:class:`~ltaug.io.policy.Finding`; a label line's ``where`` is
``labels/x.txt:3`` relative to data.yaml's folder, ``before`` / ``after`` the line's text as
``{"line": "0 0.1 0.2 ..."}``, written with six decimals after a fix);
dropped records are counted by kind in ``Dataset.skipped``.

Conventions chosen here
-----------------------
* **Category ids are the YOLO class ids, unchanged (0-based).** pycocotools' ``COCO`` and
  ``COCOeval`` (bbox and segm) accept category id 0. Each category also records its
  ``yolo_id``. Trainers that use COCO category ids directly as labels with 0 reserved for
  background (the torchvision detection references) must remap.
* **A box line becomes a box-only annotation**: ``bbox`` and ``area = w * h``, and no
  ``segmentation`` key, because a rectangle is not a mask. :func:`ltaug.io.yolo_export.write_yolo` writes
  box-only annotations as rectangle polygons, so a box line comes back as a 4-point polygon.
* Polygons are stored in pixels (normalised value times width or height). ``bbox`` is the
  tight box around the vertices, ``area`` is the pycocotools mask area, and ``iscrowd`` is 0.
  Coordinates may stray up to :data:`COORD_TOLERANCE` outside [0, 1] (ultralytics' own
  tolerance) and are clipped to it, with a warning. Anything further out is an error.
* Images get ids 1..N in sorted file-name order (the path relative to the images folder).
  Annotations get ids 1..M in image order, then line order. Sizes come from the image
  header (PIL, no decode), upright: a photo's EXIF orientation applied, as ultralytics'
  ``exif_size`` does (its labels are normalised to the upright image).

Writing is :mod:`ltaug.io.yolo_export`.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from ltaug.errors import InputError, SpecError, UsageError
from ltaug.io import geometry
from ltaug.io.dataset import ON_ERROR, Dataset
from ltaug.io.imagecheck import UNREADABLE_IMAGE, upright_size
from ltaug.io.policy import KINDS, Finding, declare

_log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(".bmp .dng .jpeg .jpg .mpo .png .tif .tiff .webp".split())
COORD_TOLERANCE = 0.01  # ultralytics' own: normalised coordinates in [-0.01, 1.01] are clipped, not refused
LINKS = ("copy", "hardlink", "symlink", "none")
DECIMALS = 6
READ_ON_ERROR = ("raise", "skip", "fix")
SPLIT_KEYS = ("train", "val", "test", "minival")
PLACEHOLDER = "unused_{}"  # the name of an id that --keep-ids fills a gap with

# -- the policy table's YOLO kinds (ultralytics.data.utils.verify_image_label drops an image and
# all its labels as "corrupt" for any bad line; ltaug's skip drops the line) ---------------------
NON_NUMERIC = declare("non-numeric", "yolo", "error", "a label value is not a finite number "
                      "(ultralytics drops the image as corrupt)")
BAD_CLASS_ID = declare("bad-class-id", "yolo", "error", "class is not a non-negative integer "
                       "(ultralytics: 'non-integer class labels' / 'negative label values')")
UNKNOWN_CLASS = declare("unknown-class", "yolo", "error", "class id not among data.yaml's names "
                        "(ultralytics: 'Label class N exceeds dataset class count')")
BAD_COORDINATE_COUNT = declare("bad-coordinate-count", "yolo", "error", "neither 4 box values nor >= 3 (x, y) "
                               "pairs (ultralytics drops the image as corrupt)")
COORDS_OUTSIDE = declare("coords-outside-image", "yolo", "error", f"a coordinate outside [0, 1] by more than "
                         f"{COORD_TOLERANCE} (ultralytics: 'non-normalized or out of bounds coordinates', "
                         f"drops the image)", "coordinates clipped to [0, 1]; dropped if nothing is left")
COORDS_SLIGHTLY_OUTSIDE = declare("coords-slightly-outside", "yolo", "warning", f"a coordinate outside [0, 1] by "
                                  f"at most {COORD_TOLERANCE} (ultralytics' tolerance: it loads the line and clips "
                                  f"it): clipped to [0, 1]", "clipped to [0, 1], as under raise and skip")
DEGENERATE_SHAPE = declare("degenerate-shape", "yolo", "error", "polygon or box with zero width or height "
                           "(no COCO box or mask can hold it)")
UNREADABLE_LABEL = declare("unreadable-label-file", "yolo", "error", "label file that cannot be read as UTF-8 "
                           "text (ultralytics drops the image as corrupt); skip drops the image")
LABEL_WITHOUT_IMAGE = declare("label-without-image", "yolo", "warning", "label file with no image (ultralytics "
                              "never reads it): ignored, and counted in skipped",
                              "ignored, as under raise and skip")
STALE_SPLIT_PATH = declare("stale-split-path", "yolo", "warning", "data.yaml's 'path' or split folder does not "
                           "exist (a folder on the machine that exported it; images/train2017 while the images "
                           "lie in images/), or 'path' names another dataset while the split lies beside "
                           "data.yaml (a copied folder): ultralytics refuses the first ('images not found') and "
                           "reads the other folder in the second; ltaug reads the folder below data.yaml that "
                           "holds the images and names it", "the folder found is read, as under raise and skip")
declare("image-without-label", "yolo", "fine", "image with no label file: an image with no objects "
        "(ultralytics: a background image)")
declare("empty-label-file", "yolo", "fine", "empty label file: an image with no objects "
        "(ultralytics: a background image)")
declare("crlf-line-endings", "yolo", "fine", "label file with CRLF (Windows) line endings: read like LF, "
        "as ultralytics reads it")
declare("byte-order-mark", "yolo", "fine", "label file or data.yaml starting with a UTF-8 byte-order mark "
        "(Windows editors): read, as ultralytics reads it (utf-8-sig)")
declare("gapped-class-ids", "yolo", "fine", "data.yaml names with gaps in their ids (COCO's 1..90 for 80 "
        "classes): read with the ids as given; ultralytics refuses such a data.yaml, so ltaug's YOLO export "
        "writes 0..K-1 (ltaug convert --keep-ids pads the gaps instead)")

# Kinds of bad label lines, as counted in ``Dataset.skipped``.
BAD_LINE_KINDS = {k: KINDS[k].what for k in (NON_NUMERIC, BAD_CLASS_ID, UNKNOWN_CLASS, BAD_COORDINATE_COUNT,
                                             COORDS_OUTSIDE, DEGENERATE_SHAPE)}

class BadLine(ValueError):
    """A label line that cannot become an annotation; ``kind`` is one of BAD_LINE_KINDS.
    ``parsed`` is ``(class id, values)`` when only the coordinates' range is wrong."""

    def __init__(self, kind: str, message: str, parsed: tuple[int, np.ndarray] | None = None):
        super().__init__(message)
        self.kind = kind
        self.parsed = parsed


# -- reading ---------------------------------------------------------------------------


def read_yolo(root, *, on_error: str = "raise", split: str = "train", strict: bool = False,
              images=None) -> Dataset:
    """Read a YOLO-seg folder (``root``, or its data.yaml or any ``*.yaml``) as a COCO-kind
    :class:`Dataset`.

    ``on_error``: ``"raise"`` refuses the first error (a bad label line, an unreadable image or
    label file) with an :class:`InputError` naming the file and line; ``"skip"`` drops it (the
    line; the image, for an unreadable image or label file) and counts it by kind in
    ``Dataset.skipped``; ``"fix"`` clips coordinates outside [0, 1] and drops the rest as
    ``skip`` does. Warnings (labels with no image, coordinates within ultralytics' tolerance,
    a stale split folder) are processed as the module docstring says under all three
    (the commands log one line per kind); ``strict`` makes them errors (``raise`` refuses the first; ``skip``
    drops a line within the tolerance, ``fix`` clips it as a fix). Everything done is in
    ``Dataset.findings``. Problems with the folder
    itself (no data.yaml, bad names, no images, two images sharing a label file) always raise.
    ``split``: the data.yaml entry to read. ``images``: the images folder to read instead of
    the one data.yaml names (its labels are found by the ultralytics rule).
    """
    if on_error not in READ_ON_ERROR:
        raise UsageError(f"on_error must be one of {', '.join(READ_ON_ERROR)}, got {on_error!r}")
    yaml_path = find_data_yaml(Path(root))
    root = yaml_path.parent
    config = _read_data_yaml(yaml_path)
    names = parse_names(config.get("names"), yaml_path, nc=config.get("nc"))
    for key in _placeholder_ids(config, yaml_path):
        names.pop(key, None)
    if not names:
        raise InputError(f"{yaml_path}: 'names' holds only placeholders")
    reading = _Reading(root, on_error, strict)
    images_dir, stale = _images_dir(config, yaml_path, split, images)
    if stale is not None:  # where names the folder read: the command's one summary line shows it
        reading.warn(STALE_SPLIT_PATH, f"{reading.where(yaml_path)}: '{split}' read from {_shown(images_dir, root)}",
                     stale[0], yaml_path, before={"folder": stale[1]},
                     after={"folder": str(images_dir)})
    labels_dir = labels_dir_for(images_dir)
    image_paths = _list_images(images_dir)

    images_out: list[dict] = []
    annotations: list[dict] = []
    label_files = set()
    for path in image_paths:
        rel = path.relative_to(images_dir)
        label_path = labels_dir / rel.with_suffix(".txt")
        label_files.add(label_path)
        try:
            with Image.open(path) as im:
                width, height = upright_size(im)  # labels are normalised to the upright image, as ultralytics reads it
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            reading.error(UNREADABLE_IMAGE, path, None, f"cannot be read as an image ({exc})", what="image")
            continue
        try:
            text = label_path.read_text(encoding="utf-8-sig") if label_path.is_file() else ""
        except (OSError, UnicodeDecodeError) as exc:
            reading.error(UNREADABLE_LABEL, label_path, None, f"cannot read label file ({_reason(exc)})",
                          what="image")
            continue
        image_id = len(images_out) + 1
        images_out.append({"id": image_id, "file_name": rel.as_posix(), "width": width, "height": height})
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            ann = reading.annotation(line, names, width, height, label_path, lineno, image_id)
            if ann is not None:
                ann.update(id=len(annotations) + 1, image_id=image_id)
                annotations.append(ann)
                reading.claim(ann["id"])
    if labels_dir.is_dir():
        for p in sorted(labels_dir.rglob("*.txt")):
            if p not in label_files:
                reading.skipped[LABEL_WITHOUT_IMAGE] += 1
                reading.warn(LABEL_WITHOUT_IMAGE, reading.where(p), "label file with no image: ignored, as "
                             "ultralytics does")

    categories = [{"id": k, "name": n, "yolo_id": k} for k, n in sorted(names.items())]
    data = {"images": images_out, "annotations": annotations, "categories": categories}
    dataset = Dataset.from_dict(data, source=str(yaml_path), path=root,
                                on_error=on_error if on_error in ON_ERROR else "skip")
    dataset.skipped.update(reading.skipped)
    dataset.findings = [*reading.findings, *getattr(dataset, "findings", [])]
    return dataset


class _Reading:
    """One folder being read: the findings and skips so far, by the policy table."""

    def __init__(self, root: Path, on_error: str, strict: bool = False) -> None:
        self.root, self.on_error, self.strict = root, on_error, strict
        self.findings: list[Finding] = []
        self.skipped: Counter = Counter()
        self._unclaimed: list[Finding] = []  # the current line's findings, waiting for its annotation id

    def where(self, path: Path, lineno: int | None = None) -> str:
        """``path`` relative to data.yaml's folder (absolute when outside it), ``:line``."""
        try:
            shown = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            shown = str(path)
        return f"{shown}:{lineno}" if lineno is not None else shown

    def warn(self, kind: str, where: str, message: str, place: Path | None = None, **record: Any) -> None:
        """A warning (``place``: the file named if --strict refuses it; default ``where``)."""
        if self.strict and self.on_error == "raise":
            raise InputError(f"{place or self.root / where}: {message} ({kind}: a warning, made an error by --strict)")
        self.findings.append(Finding(kind, "warned", where, message, **record))

    def error(self, kind: str, path: Path, lineno: int | None, message: str, *, what: str = "line",
              before: Any = None, image_id: Any = None) -> None:
        """An error in a record: refused (``raise``), else dropped and recorded as skipped."""
        if self.on_error == "raise":
            fix = KINDS[kind].fix
            hint = f"--on-error fix: {fix}; skip drops the {what}" if fix else f"--on-error skip drops the {what}"
            if KINDS[kind].severity == "warning":
                hint = "a warning, made an error by --strict"
            place = f"{path}:{lineno}" if lineno is not None else str(path)
            raise InputError(f"{place}: {message} ({kind}; {hint})")
        self.skipped[kind] += 1
        self.findings.append(Finding(kind, "skipped", self.where(path, lineno), message, image_id=image_id,
                                     before=None if before is None else {"line": before}))

    def changed(self, kind: str, action: str, path: Path, lineno: int, message: str, before: str, after: str,
                image_id: int) -> None:
        """A line read with its coordinates clipped: ``warned`` or ``fixed``; its annotation id follows."""
        f = Finding(kind, action, self.where(path, lineno), message, image_id=image_id, before={"line": before},
                    after={"line": after})
        self.findings.append(f)
        self._unclaimed.append(f)

    def claim(self, annotation_id: int) -> None:
        for f in self._unclaimed:
            f.annotation_id = annotation_id
        self._unclaimed.clear()

    def annotation(self, line: str, names: dict, width: int, height: int, path: Path, lineno: int,
                   image_id: int) -> dict | None:
        """One label line as an annotation (``id`` and ``image_id`` to be set), or None if dropped."""
        self._unclaimed.clear()
        before = line.strip()
        try:
            cls, values = parse_label_line(line, names)
        except BadLine as exc:
            if exc.kind != COORDS_OUTSIDE or self.on_error != "fix" or exc.parsed is None:
                self.error(exc.kind, path, lineno, str(exc), before=before, image_id=image_id)
                return None
            cls, values = exc.parsed
            values = clip_values(values)
            self.changed(COORDS_OUTSIDE, "fixed", path, lineno, f"{exc}: clipped to [0, 1]", before,
                         format_values(cls, values), image_id)
        else:
            clipped = clip_values(values)
            if not np.array_equal(clipped, values):
                message = f"coordinates within {COORD_TOLERANCE} outside [0, 1]: clipped, as ultralytics does"
                if self.strict and self.on_error != "fix":
                    self.error(COORDS_SLIGHTLY_OUTSIDE, path, lineno, message, before=before, image_id=image_id)
                    return None
                self.changed(COORDS_SLIGHTLY_OUTSIDE, "fixed" if self.strict else "warned", path, lineno, message,
                             before, format_values(cls, clipped), image_id)
                values = clipped
        try:
            return annotation_from_yolo(cls, values, width, height)
        except BadLine as exc:
            kind = COORDS_OUTSIDE if self._unclaimed and self._unclaimed[0].action == "fixed" else exc.kind
            del self.findings[len(self.findings) - len(self._unclaimed):]  # the line is not read after all
            self._unclaimed.clear()
            self.error(kind, path, lineno, str(exc) + (" after clipping" if kind == COORDS_OUTSIDE else ""),
                       before=before, image_id=image_id)
            return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


def find_data_yaml(path: Path) -> Path:
    """The YAML file of a YOLO folder: ``path`` itself if it is a file, else ``path/data.yaml``,
    else the only ``*.yaml`` / ``*.yml`` in ``path`` (as ultralytics' ``find_dataset_yaml``)."""
    if path.is_file() or not path.is_dir():
        return path if path.is_file() or path.suffix.lower() in (".yaml", ".yml") else path / "data.yaml"
    default = path / "data.yaml"
    if default.is_file():
        return default
    found = sorted(p for p in path.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file())
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(f"{default}: file not found, and {path} holds {len(found)} other YAML files "
                         f"({', '.join(p.name for p in found[:4])}); pass the one to read")
    return default


def _read_data_yaml(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: file not found (a YOLO folder needs a data.yaml)")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a mapping with 'names', got a {type(config).__name__}")
    return config


def parse_names(names, source, *, nc=None) -> dict[int, str]:
    """data.yaml ``names`` (a list, or a dict ``{id: name}``, gaps allowed) -> ``{class id: name}``;
    with no ``names``, ``nc`` classes named ``class_0``... as ultralytics names them."""
    if names is None and isinstance(nc, int) and not isinstance(nc, bool) and nc > 0:
        return {i: f"class_{i}" for i in range(nc)}
    if isinstance(names, list):
        items = list(enumerate(names))
    elif isinstance(names, dict):
        items = list(names.items())
    else:
        raise InputError(f"{source}: 'names' must be a list or a mapping of class id to name, "
                         f"got {type(names).__name__}")
    out = {}
    for key, name in items:
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key)
        if not isinstance(key, int) or isinstance(key, bool) or key < 0:
            raise InputError(f"{source}: class id {key!r} in 'names' is not a non-negative integer")
        if name is None or str(name).strip() == "":
            raise InputError(f"{source}: class {key} has an empty name")
        out[key] = str(name)
    if not out:
        raise InputError(f"{source}: 'names' is empty")
    return out


def _placeholder_ids(config: dict, source) -> list[int]:
    """The ids ``ltaug_placeholder_ids`` names: gaps that an export with ``keep_ids`` filled."""
    ids = config.get("ltaug_placeholder_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InputError(f"{source}: 'ltaug_placeholder_ids' must be a list of class ids")
    return ids


def _split_names(config: dict) -> str:
    found = [k for k in (*SPLIT_KEYS, "validation") if config.get(k)]
    return ", ".join(found) if found else "none: 'train' is images/"


def _split_entry(config: dict, split: str, source: Path) -> str:
    """data.yaml's folder for ``split`` (``images`` for a missing ``train``)."""
    if not isinstance(split, str) or not split.strip():
        raise SpecError("split", f"is empty: name the data.yaml entry to read ({source} has: {_split_names(config)})")
    entry = config.get(split)
    if not entry and split == "val":
        entry = config.get("validation")  # ultralytics renames it 'val'
    if not entry:
        if split != "train":
            raise InputError(f"{source}: no '{split}' entry (it has: {_split_names(config)})")
        return "images"
    if isinstance(entry, list) and len(entry) == 1:
        entry = entry[0]
    if not isinstance(entry, str):
        raise InputError(f"{source}: '{split}' must be one folder; lists of folders are not supported")
    if entry.endswith(".txt"):
        raise InputError(f"{source}: '{split}: {entry}' is an image list file; only folders are supported")
    return entry


def _images_dir(config: dict, source: Path, split: str, images=None) -> tuple[Path, tuple[str, str] | None]:
    """The split's images folder, and, when it is not the one data.yaml names, the warning and
    the folder data.yaml named."""
    if images is not None:
        folder = Path(images)
        if not folder.is_dir():
            raise InputError(f"{folder}: image folder not found")
        return folder, None
    yaml_dir = source.parent
    entry = _split_entry(config, split, source)
    said = f"'{split}: {entry}'"
    given, root = config.get("path"), None  # the dataset root that 'path' names
    if given not in (None, ""):
        if not isinstance(given, str):
            raise InputError(f"{source}: 'path' must be a folder, got {type(given).__name__}")
        root = Path(given).expanduser()
        root = root if root.is_absolute() else yaml_dir / root
    here = _existing(_named(yaml_dir, entry))  # the split folder as data.yaml's folder has it
    if root is None or _same(root, yaml_dir):
        if here is not None:
            return here, None
        missing = _named(yaml_dir, entry)[0]
    elif root.is_dir():
        there = _existing(_named(root, entry))
        if there is not None and (here is None or _same(here, there)):
            return there, None  # a data.yaml outside its dataset: read as ultralytics reads it
        if here is not None:  # a copied dataset whose 'path' still names the original
            return here, (f"path '{given}' is another folder than data.yaml's: read {said} beside data.yaml, "
                          f"{here}" + (f" (ultralytics would read {there})" if there else ""),
                          str(there or _named(root, entry)[0]))
        missing = _named(root, entry)[0]
    else:
        if here is not None:
            return here, (f"path '{given}' not found: read {said} beside data.yaml, {here}", str(root / entry))
        said += f" (path '{given}' not found)"
        missing = root / entry
    tried = [f for f in _fallbacks(entry, yaml_dir, split) if f != missing]
    for folder in tried:
        if _has_images(folder):
            return folder, (f"{said} not found at {missing}: read {folder} instead", str(missing))
    shown = ", ".join(_shown(f, yaml_dir) for f in tried)
    raise InputError(f"{source}: {said}: image folder {missing} not found, nor images in {shown}; "
                     f"pass the image folder (--images)")


def _named(base: Path, entry: str) -> list[Path]:
    """The folders a split entry names below ``base``: an entry starting ``../`` is also tried
    without it, as ultralytics tries it."""
    return [base / entry] + ([base / entry[3:]] if entry.startswith("../") else [])


def _existing(folders: list[Path]) -> Path | None:
    return next((f for f in folders if f.is_dir()), None)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _fallbacks(entry: str, yaml_dir: Path, split: str) -> list[Path]:
    """Where the images of ``split`` may lie when data.yaml's entry is stale, below ``yaml_dir``."""
    parts = [p for p in PurePosixPath(entry.replace("\\", "/")).parts if p not in ("/", "..", ".")
             and not p.endswith(":")]
    out = [yaml_dir.joinpath(*parts[i:]) for i in range(len(parts) - 1)]  # its trailing folders, 2 or more
    names = [split] + {"val": ["valid", "validation"]}.get(split, [])
    out += [yaml_dir / "images" / s for s in names] + [yaml_dir / s / "images" for s in names]
    out.append(yaml_dir / "images")
    return list(dict.fromkeys(out))


def _shown(folder: Path, root: Path) -> str:
    try:
        return folder.relative_to(root).as_posix() + "/"
    except ValueError:
        return str(folder)


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*"))


def labels_dir_for(images_dir: Path) -> Path:
    """The labels folder ultralytics pairs with ``images_dir``: its last ``images`` component
    replaced by ``labels``; ``images_dir`` itself when it has none (labels beside the images)."""
    parts = list(Path(images_dir).parts)
    if "images" not in parts:
        return Path(images_dir)
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts)


def _list_images(images_dir: Path) -> list[Path]:
    """Image files under ``images_dir``, sorted by relative path; refuses shared label stems."""
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: image folder not found")
    paths = sorted((p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(images_dir).as_posix())
    if not paths:
        raise InputError(f"{images_dir}: no image files found")
    seen: dict[str, Path] = {}
    for p in paths:
        stem = p.relative_to(images_dir).with_suffix("").as_posix()
        if stem in seen:
            raise InputError(f"{images_dir}: images {seen[stem].name} and {p.name} would share the label file {stem}.txt")
        seen[stem] = p
    return paths


def parse_label_line(line: str, names) -> tuple[int, np.ndarray]:
    """``cls v1 v2 ...`` -> ``(class id, values)``; values has 4 (a box) or 2n >= 6 entries.

    Raises :class:`BadLine` naming what is wrong. Values are checked against [0, 1] with
    :data:`COORD_TOLERANCE` but not yet clipped (:func:`clip_values`).
    """
    tokens = line.split()
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise BadLine(NON_NUMERIC, f"{bad!r} is not a number") from None
    if not all(math.isfinite(v) for v in values):
        raise BadLine(NON_NUMERIC, "non-finite value")
    cls, coords = values[0], np.asarray(values[1:], dtype=np.float64)
    if not cls.is_integer() or cls < 0:
        raise BadLine(BAD_CLASS_ID, f"class {tokens[0]!r} is not a non-negative integer")
    cls = int(cls)
    if cls not in names:
        raise BadLine(UNKNOWN_CLASS, f"class {cls} is not among data.yaml names ({_id_range(names)})")
    n = coords.size
    if n != 4 and (n % 2 or n < 6):
        raise BadLine(BAD_COORDINATE_COUNT,
                      f"{n} coordinate values: expected 4 (cx cy w h) or an even number >= 6 (polygon)")
    if n == 4:
        cx, cy, w, h = coords
        if w <= 0 or h <= 0:
            raise BadLine(DEGENERATE_SHAPE, f"box with width {w:g} and height {h:g}")
        _check_range(_box_corners(coords), cls, coords)
    else:
        _check_range(coords, cls, coords)
    return cls, coords


def _box_corners(values: np.ndarray) -> np.ndarray:
    cx, cy, w, h = values
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _check_range(values: np.ndarray, cls: int, coords: np.ndarray) -> None:
    lo, hi = float(values.min()), float(values.max())
    if lo < -COORD_TOLERANCE or hi > 1 + COORD_TOLERANCE:
        worst = lo if -lo > hi - 1 else hi
        raise BadLine(COORDS_OUTSIDE, f"coordinate {worst:g} is outside [0, 1] (normalised)", (cls, coords))


def clip_values(values: np.ndarray) -> np.ndarray:
    """A line's values with the polygon, or the box's corners, clipped to [0, 1] (a box stays
    ``cx cy w h``); the same array when nothing is outside."""
    if values.size == 4:
        corners = _box_corners(values)
        clipped = np.clip(corners, 0.0, 1.0)
        if np.array_equal(clipped, corners):
            return values
        x0, y0, x1, y1 = clipped
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
    clipped = np.clip(values, 0.0, 1.0)
    return values if np.array_equal(clipped, values) else clipped


def format_values(cls: int, values) -> str:
    """``cls v1 v2 ...`` with :data:`DECIMALS` places: a label line as ltaug writes it."""
    return " ".join([str(cls), *(f"{v + 0.0:.{DECIMALS}f}" for v in np.asarray(values, dtype=np.float64))])


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _id_range(names) -> str:
    ids = sorted(names)
    return f"ids {ids[0]}-{ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) else f"ids {ids}"


def annotation_from_yolo(cls: int, values: np.ndarray, width: int, height: int) -> dict:
    """One parsed label line -> a COCO annotation (pixels), without ``id`` and ``image_id``."""
    scale = np.array([width, height], dtype=np.float64)
    if values.size == 4:
        cx, cy, w, h = values
        x0, y0 = np.clip([cx - w / 2, cy - h / 2], 0, 1) * scale
        x1, y1 = np.clip([cx + w / 2, cy + h / 2], 0, 1) * scale
        bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise BadLine(DEGENERATE_SHAPE, "box has no extent inside the image")
        return {"category_id": cls, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0}
    xy = np.clip(values.reshape(-1, 2), 0, 1) * scale
    polygon = [xy.reshape(-1).tolist()]
    bbox = geometry.polygons_bbox(polygon)
    if bbox[2] <= 0 or bbox[3] <= 0:
        raise BadLine(DEGENERATE_SHAPE, "polygon has zero width or height")
    return {"category_id": cls, "segmentation": polygon, "bbox": bbox,
            "area": float(geometry.mask_area(polygon, height, width)), "iscrowd": 0}
