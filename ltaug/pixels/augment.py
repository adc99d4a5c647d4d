"""Augment: an albumentations pipeline, as albumentations serialises it, applied to chosen images.

Buslaev et al., "Albumentations: fast and flexible image augmentations", Information 11(2), 2020:
the pipeline is albumentations' own (``A.save(transform, path, data_format="yaml" | "json")``
writes it, ``A.load`` reads it back); ltaug reads the same file, runs it on each chosen image and
writes the result into the dataset, with the parameters albumentations drew.

Which images (:func:`select_images`): ``repeats``, every copy after the first of an image that
an earlier resample repeated (its ``ltaug`` record has ``repeat >= 1``), or ``all``; narrowed, when
``classes`` (category ids) are given, to images with an object of one of them.

Randomness: image ``i`` (its output id) is drawn with its own seed,
``s_i = SeedSequence([seed, SEED_STREAM, i]).generate_state(1)[0]`` (:func:`image_seed`): before
the call the pipeline gets ``Compose.set_random_state(default_rng(s_i), random.Random(s_i))``
(:func:`seed_pipeline`), one numpy and one Python generator that every transform in it shares.
albumentations 2.x draws every parameter from these two (never from global state). Not
``Compose.set_random_seed(s_i)``: in albumentations 2.0.8 that gives each transform its own
generators seeded with the same s_i, so every transform draws the same first number and whether
each is applied is one coin for all (a pipeline of p = 0.8, 0.8, 0.5, 0.3 applied nothing to one
image in five instead of one in 70; albumentations issue #2037 says the Compose should hand down
generators, not a seed). So an image's draw depends on the seed and its id only, never on the
order of processing or the worker count, and ``A.load(file)``, :func:`seed_pipeline` with s_i
and a call on the same RGB image replay it.

What changes (:func:`augment`):

* a pipeline of image-only (photometric) transforms changes the pixels; the annotations are
  left as they are (the same records, byte for byte);
* a pipeline with a spatial transform (albumentations' ``DualTransform``: flips, crops,
  affines, ...) moves the objects with the image when, for this image, such a transform was
  applied: an object with a segmentation (polygons or RLE) is rasterised as pycocotools does,
  transformed as a mask (albumentations' mask rule, nearest neighbour) and written back as a
  compressed RLE with its tight box and pixel area; a box-only object's box goes through
  albumentations' box rule (``BboxParams(format="coco", clip=True)``: clipped to the image;
  rounded to 0.001 px).
  An object with nothing left in the image (no mask pixel, no box area) is dropped and
  counted. Images on which no spatial transform was drawn keep their annotations unchanged.

The pipeline sees RGB images (albumentations' convention; the engine decodes BGR).
"""
from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from ltaug.errors import InputError
from ltaug.io import geometry
from ltaug.pixels import masks as mask_ops

_log = logging.getLogger(__name__)

SEED_STREAM = 0xA06  # an image's seed is SeedSequence([seed, SEED_STREAM, image_id])
SELECT = ("repeats", "all")
INDEX = "ltaug_index"  # the label field that carries each box-only object's position through the pipeline
ALLOWED_TARGETS = {"image", "images", "mask", "masks", "bboxes", INDEX}  # what augment passes


# -- the pipeline file --------------------------------------------------------------------------

def read_pipeline(path: str) -> dict:
    """The albumentations pipeline in ``path`` (``A.save``'s YAML or JSON; YAML reads both), as
    albumentations' serialised dict ``{"__version__": ..., "transform": {...}}`` (a bare
    transform mapping is taken as ``transform``). Checked by building it (:func:`build`): any
    problem is a one-line :class:`InputError` naming the file and the transform."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: pipeline file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a pipeline file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML or JSON ({str(exc).splitlines()[0]})") from None
    if isinstance(doc, dict) and "transform" not in doc and "__class_fullname__" in doc:
        doc = {"transform": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("transform"), dict):
        raise InputError(f"{path}: not an albumentations pipeline (expected A.save's mapping with a 'transform' "
                         f"key, got {type(doc).__name__ if not isinstance(doc, dict) else 'keys ' + ', '.join(map(str, doc))})")
    _, caught = _build(doc, path)
    for w in caught:  # albumentations' own warnings about the file (deprecated arguments, ...), once per run
        _log.warning("%s: %s", path, " ".join(str(w.message).split()))
    return doc


def build(doc: dict, path: str = "pipeline") -> Any:
    """The ``A.Compose`` that runs ``doc`` (albumentations' serialised dict): its transforms (or
    the one transform it holds) and its ``p``, with ltaug's box parameters (COCO boxes, clipped,
    one label field; the file's own ``min_area`` / ``min_visibility`` kept) and the drawn parameters
    recorded (``save_applied_params``). Errors name ``path`` and the transform, in one line;
    albumentations' warnings are not shown (:func:`read_pipeline` logs them once)."""
    return _build(doc, path)[0]


def _build(doc: dict, path: str) -> tuple[Any, list[warnings.WarningMessage]]:
    """:func:`build`, and the warnings albumentations gave while building."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        return _compose(doc, path), list(caught)


def _compose(doc: dict, path: str) -> Any:
    import albumentations as A

    try:
        loaded = A.from_dict(doc)
    except Exception:  # noqa: BLE001 (albumentations raises KeyError, ValueError, AttributeError, ...)
        raise InputError(f"{path}: {_first_problem(doc['transform'], [])}") from None
    for where, leaf in _leaves(loaded, "transform"):
        if getattr(leaf, "invalid_args", None):
            raise InputError(f"{path}: {where} ({type(leaf).__name__}) has no argument(s) "
                             f"{', '.join(leaf.invalid_args)}")
        needs = set(getattr(leaf, "targets_as_params", ()) or ()) - ALLOWED_TARGETS
        if needs:
            raise InputError(f"{path}: {where} ({type(leaf).__name__}) needs {', '.join(sorted(needs))}, which "
                             f"ltaug augment does not give (only the image, its masks and boxes)")
    top = loaded if isinstance(loaded, A.Compose) else None
    user_box = top.processors.get("bboxes") if top is not None else None
    box = {"min_area": user_box.params.min_area, "min_visibility": user_box.params.min_visibility} if user_box else {}
    spatial = bool(spatial_names(loaded))
    try:
        return A.Compose(top.transforms if top is not None else [loaded], p=top.p if top is not None else 1.0,
                         bbox_params=A.BboxParams(format="coco", label_fields=[INDEX], clip=True, **box)
                         if spatial else None, save_applied_params=True)
    except Exception as exc:  # noqa: BLE001 (a transform without a box rule: albumentations' ValueError)
        raise InputError(f"{path}: {_one_line(exc)}") from None


def _first_problem(node: Any, where: list[int]) -> str:
    """The first transform of a serialised pipeline that albumentations cannot build, in words."""
    import albumentations as A

    place = "transform " + ".".join(str(i + 1) for i in where) if where else "the top transform"
    if not isinstance(node, dict):
        return f"{place} is not a mapping (got {node!r:.60})"
    name = node.get("__class_fullname__")
    if name is None:
        return f"{place} has no __class_fullname__"
    children = node.get("transforms")
    if children is not None:
        if not isinstance(children, list):
            return f"{place} ({name}): transforms must be a list"
        for i, child in enumerate(children):
            try:
                A.from_dict({"transform": child})
            except Exception:  # noqa: BLE001
                return _first_problem(child, [*where, i])
    try:
        A.from_dict({"transform": node})
    except KeyError:
        return f"{place}: {name!r} is not an albumentations transform"
    except Exception as exc:  # noqa: BLE001
        return f"{place} ({name}): {_one_line(exc)}"
    return f"{place} ({name}) cannot be built"


def _one_line(exc: Exception) -> str:
    """An exception's message on one line. albumentations passes on pydantic's validation text
    (``N validation error(s) for InitSchema``, then per field its name and what is wrong, with
    ``[type=...]`` and a link): written ``field: what is wrong; ...``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and re.match(r"\d+ validation errors? for ", lines[0]):
        fields = [line for line in lines[1:] if not line.startswith("For further information")]
        pairs = zip(fields[0::2], fields[1::2])
        return "; ".join(name + ": " + re.sub(r" \[type=[^]]*\]$", "", what) for name, what in pairs)
    return " ".join(lines) or type(exc).__name__


def _leaves(transform: Any, where: str) -> Iterable[tuple[str, Any]]:
    """``(place, transform)`` for each transform that is not a composition, in order."""
    children = getattr(transform, "transforms", None)
    if children is None:
        yield where, transform
        return
    for i, child in enumerate(children):
        yield from _leaves(child, f"{where} {i + 1}" if where != "transform" else f"transform {i + 1}")


def spatial_names(compose: Any) -> frozenset[str]:
    """Class names of the pipeline's transforms that move pixels (all but image-only ones)."""
    import albumentations as A

    return frozenset(type(t).__name__ for _, t in _leaves(compose, "transform")
                     if not isinstance(t, A.ImageOnlyTransform))


# -- which images -------------------------------------------------------------------------------

def image_seed(seed: int, image_id: int) -> int:
    """The seed of output image ``image_id``: ``SeedSequence([seed, SEED_STREAM, image_id])``'s first word."""
    return int(np.random.SeedSequence([int(seed) % 2**64, SEED_STREAM, int(image_id) % 2**64]).generate_state(1)[0])


def seed_pipeline(compose: Any, seed: int) -> None:
    """Give ``compose`` and every transform in it one shared pair of generators seeded by ``seed``:
    ``default_rng(seed)`` and ``random.Random(seed)`` (the module docstring says why not
    ``set_random_seed``)."""
    import random

    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))


def is_repeat(image: dict) -> bool:
    """Whether an image record is a copy after the first (resample's ``ltaug.repeat >= 1``)."""
    record = image.get("ltaug")
    return isinstance(record, dict) and isinstance(record.get("repeat"), int) and record["repeat"] >= 1


def first_copy_image_counts(images: list[dict], annotations: list[dict], category_ids: Iterable[int]) -> np.ndarray:
    """Images per class counted over first copies only (repeats left out): the input's counts
    before resampling, by which the frequency bins of a resampled dataset are found."""
    firsts = {im["id"] for im in images if not is_repeat(im)}
    pairs = {(a["image_id"], a["category_id"]) for a in annotations if a["image_id"] in firsts}
    per_class: dict[int, int] = {}
    for _, c in pairs:
        per_class[c] = per_class.get(c, 0) + 1
    return np.array([per_class.get(int(c), 0) for c in category_ids], np.int64)


def select_images(images: list[dict], annotations: list[dict], select: str,
                  classes: Iterable[int] | None = None) -> list[dict]:
    """The image records to augment, in dataset order: ``repeats`` (:func:`is_repeat`) or ``all``,
    narrowed to those with an object of ``classes`` when given (None: any image)."""
    if select not in SELECT:
        raise ValueError(f"select must be one of {', '.join(SELECT)}, got {select!r}")
    chosen = [im for im in images if select == "all" or is_repeat(im)]
    if classes is None:
        return chosen
    wanted = set(classes)
    with_class = {a["image_id"] for a in annotations if a["category_id"] in wanted}
    return [im for im in chosen if im["id"] in with_class]


def before(image: dict) -> dict | None:
    """What an image's provenance said before this step (its op, source image and repeat), or None."""
    record = image.get("ltaug")
    if not isinstance(record, dict):
        return None
    return {k: record[k] for k in ("op", "source_image_id", "repeat", "source_image_ids", "step") if k in record}


# -- one image ----------------------------------------------------------------------------------

def augment(image_bgr: np.ndarray, record: dict, anns: list[dict], compose: Any, spatial: frozenset[str],
            seed: int, where: str = "pipeline") -> tuple[np.ndarray, list[dict | int], list[int], list[dict]]:
    """One image through the pipeline: ``(image, kept, removed, applied)``.

    ``image_bgr``: uint8 BGR pixels; ``record`` / ``anns``: its image record and annotations;
    ``compose``: :func:`build`'s; ``spatial``: :func:`spatial_names`; ``seed``: the image's
    (:func:`image_seed`). ``kept``: the annotations in order, each as its id when unchanged or as
    the changed record (same id); ``removed``: category ids of the objects dropped;
    ``applied``: the transforms drawn and their parameters (:func:`applied_params`). ``where``
    names the pipeline in errors.
    """
    import cv2

    h, w = image_bgr.shape[:2]
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    seed_pipeline(compose, seed)
    if not spatial:
        out = _call(compose, where, record, image=rgb)
        applied = applied_params(out["applied_transforms"])
        return _bgr(out["image"], record, where, (h, w)), [a["id"] for a in anns], [], applied
    seg_rows, box_rows, seg_masks, boxes = [], [], [], []
    for i, a in enumerate(anns):
        rle, box_only = mask_ops.annotation_rle(a.get("segmentation"), a["bbox"], h, w, a.get("id"))
        if box_only:
            box_rows.append(i)
            boxes.append([float(v) for v in a["bbox"]])
        else:
            seg_rows.append(i)
            seg_masks.append(mask_ops.decode_rle(rle))
    degenerate = [i for i, b in zip(box_rows, boxes) if not (b[2] > 0 and b[3] > 0)]
    box_rows = [i for i in box_rows if i not in set(degenerate)]
    boxes = [b for b in boxes if b[2] > 0 and b[3] > 0]
    data: dict[str, Any] = {"image": rgb, "bboxes": np.asarray(boxes, np.float64).reshape(-1, 4),
                            INDEX: list(range(len(box_rows)))}
    if seg_masks:
        data["masks"] = seg_masks
    out = _call(compose, where, record, **data)
    applied = applied_params(out["applied_transforms"])
    img = _bgr(out["image"], record, where, None)
    if not any(t["transform"] in spatial for t in applied):  # nothing moved on this image
        return img, [a["id"] for a in anns], [], applied
    changed: dict[int, dict | None] = {i: None for i in range(len(anns))}  # None: dropped
    for row, m in zip(seg_rows, out.get("masks", [])):
        changed[row] = _with_mask(anns[row], np.asarray(m))
    for pos, box in zip(out[INDEX], out["bboxes"]):
        changed[box_rows[int(pos)]] = _with_box(anns[box_rows[int(pos)]], box)
    kept: list[dict | int] = [c for c in (changed[i] for i in range(len(anns))) if c is not None]
    removed = [int(anns[i]["category_id"]) for i in range(len(anns)) if changed[i] is None]
    return img, kept, removed, applied


def _call(compose: Any, where: str, record: dict, **data: Any) -> dict:
    try:
        return compose(**data)
    except Exception as exc:  # noqa: BLE001 (a transform refusing this image: a crop larger than it, ...)
        raise InputError(f"image id {record['id']}: the pipeline {where} failed on it: {_one_line(exc)}") from None


def _bgr(image: np.ndarray, record: dict, where: str, size: tuple[int, int] | None) -> np.ndarray:
    """The pipeline's RGB output as uint8 BGR (a one-channel output as grey BGR); refused when it
    is not uint8, or (``size`` given: an image-only pipeline) changed the image's size."""
    import cv2

    if image.dtype != np.uint8:
        raise InputError(f"image id {record['id']}: the pipeline {where} gives {image.dtype} pixels, not uint8 "
                         f"(normalising belongs in training, not in the written dataset)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if size is not None and image.shape[:2] != size:
        raise InputError(f"image id {record['id']}: the pipeline {where} changed the size of the image without a "
                         f"spatial transform")
    if image.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def _with_mask(ann: dict, mask: np.ndarray) -> dict | None:
    """The annotation with its transformed mask (compressed RLE, tight box, pixel area); None if empty."""
    rle = mask_ops.rle_from_mask(mask.astype(np.uint8, copy=False))
    area = mask_ops.area(rle)
    if area <= 0:
        return None
    return {**ann, "segmentation": geometry.rle_to_json(rle), "bbox": mask_ops.tight_bbox(rle), "area": area}


def _with_box(ann: dict, box: Iterable[float]) -> dict | None:
    """The box-only annotation with its transformed box (and its area); None if it has none left.
    albumentations works on float32 coordinates normalised by the image size, which leaves noise
    of about 1e-7 of the size (a flipped 2.0 comes back as 2.0000000596): rounded to 0.001 px."""
    x, y, bw, bh = (round(float(v), 3) for v in box)
    if not (bw > 0 and bh > 0):
        return None
    return {**ann, "bbox": [x, y, bw, bh], "area": bw * bh}


def applied_params(applied: list) -> list[dict]:
    """albumentations' record of a call (``save_applied_params``: ``(class name, params)`` per
    transform drawn, in order) as JSON: ``{"transform": name, **params}``, the image's ``shape``
    left out; tuples as lists, numpy scalars as numbers, NaN and infinities as None, and an array
    (a noise map, ...) as ``{"array": shape, "dtype", "mean", "std"}`` (its values are not kept)."""
    return [{"transform": name, **{str(k): _jsonable(v) for k, v in params.items() if k != "shape"}}
            for name, params in applied]


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"array": list(v.shape), "dtype": str(v.dtype),
                "mean": _jsonable(float(v.mean())) if v.size else None,
                "std": _jsonable(float(v.std())) if v.size else None}
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


def wanted_classes(dataset: Any, classes: Iterable[str] | None, bins: Iterable[str] | None,
                   rare_max: int | None = None, common_max: int | None = None) -> tuple[list[int] | None, dict]:
    """The category ids whose images are augmented, and how they were found: ``classes`` (names or
    ids, :func:`~ltaug.pixels.bank_select.resolve_classes`) and the classes of the frequency
    ``bins`` (r / c / f, as ``ltaug stats`` bins them: an LVIS file's own ``frequency`` unless
    ``rare_max`` / ``common_max`` are given, else images per class <= rare_max: r, <= common_max:
    c, else f; Gupta et al., LVIS, CVPR 2019), images counted over first copies only
    (:func:`first_copy_image_counts`: a resampled dataset's bins are its input's). ``(None, {})``
    when neither is given: every class."""
    from ltaug.pixels.bank_select import resolve_classes
    from ltaug.stats.frequency import COMMON_MAX, RARE_MAX, frequency_bins, uses_stored_frequency

    classes, bins = list(classes or ()), list(bins or ())
    if not classes and not bins:
        return None, {}
    ix = dataset.index
    ids = resolve_classes(ix.category_ids.tolist(), ix.category_names, classes) if classes else []
    info: dict = {}
    if bins:
        if uses_stored_frequency(dataset, rare_max, common_max):
            of_class = [c.get("frequency") for c in dataset.categories]
            info["bins_from"] = "file"
        else:
            counts = first_copy_image_counts(dataset.images, dataset.annotations, ix.category_ids.tolist())
            of_class = frequency_bins(counts, rare_max=RARE_MAX if rare_max is None else rare_max,
                                      common_max=COMMON_MAX if common_max is None else common_max).tolist()
            info["bins_from"] = "image_counts"
        ids += [int(c) for c, b in zip(ix.category_ids.tolist(), of_class) if b in bins and int(c) not in ids]
    info["category_ids"] = sorted(ids)
    return ids, info
