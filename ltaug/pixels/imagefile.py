"""Reading source images and writing output images, with one-line errors naming the image."""
from __future__ import annotations

import contextlib
import logging
import os

import numpy as np

from ltaug.errors import InputError
from ltaug.io.imagecheck import STORED, HeaderError, TooManyPixels, notes, read_header, size_rule, size_text
from ltaug.io.policy import severity
from ltaug.pixels.functional import decode_image

log = logging.getLogger(__name__)
_warned: set[str] = set()  # the warning kinds this process has named (once each)


class ImageFileError(InputError):
    """A source image is missing, undecodable, too large, or not of the size its record says."""


def read_image(path: str | os.PathLike, image_id, height: int | None = None, width: int | None = None) -> np.ndarray:
    """The decoded image as uint8 BGR (3 channels whatever the file holds:
    :func:`~ltaug.pixels.functional.decode_image`); :class:`ImageFileError` if it is missing,
    unreadable, its header claims more than :data:`~ltaug.io.imagecheck.MAX_IMAGE_PIXELS`
    (refused before decoding), undecodable, or (when given) neither ``height x width`` upright
    nor that size as stored.

    Orientation (:mod:`ltaug.io.imagecheck`): turned upright as its EXIF tag says, unless the
    json's size is the stored size of an image the tag turns by 90 degrees (then as stored, so
    that the annotations line up). Warning kinds of the policy table (that, alpha dropped,
    16 bits read as 8, CMYK) are logged once per kind in a process, naming the first image.
    The caller has checked that ``path`` is inside its image folder
    (:func:`ltaug.io.paths.checked_image_path`).
    """
    label = f"image id {image_id}: file {path}"
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageFileError(f"{label} not found") from None
    except OSError as exc:
        raise ImageFileError(f"{label} cannot be read: {exc.strerror or exc}") from None
    try:
        header = read_header(buf.data)
    except TooManyPixels as exc:
        raise ImageFileError(f"{label} {exc}") from None
    except HeaderError as exc:
        raise ImageFileError(f"{label} cannot be decoded as an image ({exc})") from None
    rule = size_rule(header, width, height) if height is not None else None
    if height is not None and rule is None:
        raise ImageFileError(f"{label} is {size_text(header)} but the json says {width}x{height}")
    upright = rule != STORED
    img = decode_image(buf, header.orientation, upright=upright)
    if img is None:
        raise ImageFileError(f"{label} cannot be decoded as an image")
    want = header.upright if upright else (header.width, header.height)
    if img.shape[1::-1] != want:
        raise ImageFileError(f"{label} decodes to {img.shape[1]}x{img.shape[0]}, not the {want[0]}x{want[1]} "
                             "its header says")
    for kind, text in notes(header, path, rule or "upright"):
        if kind not in _warned and severity(kind) == "warning":
            _warned.add(kind)
            log.warning("%s: %s %s (further images of this kind are read the same way, not named)",
                        kind, label, text)
    return img


def write_file_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to ``path.tmp`` then rename: a reader (or a resumed run) never sees half a file.
    The folder must exist (the engine makes each shard's folders once, not once per image).

    Safe against a killed process, not a power cut: no fsync per image or shard file (it would
    cost more than encoding); the final annotation file is synced (:func:`ltaug.io.jsonio.write_json_atomic`).
    """
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:  # disk full, file too large, ...: no temporary file left, the error names the file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
