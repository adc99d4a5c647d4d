"""Reading source images and writing output images, with one-line errors naming the image."""
from __future__ import annotations

import contextlib
import os

import numpy as np

from ltaug.errors import InputError
from ltaug.pixels.functional import decode_image


class ImageFileError(InputError):
    """A source image is missing, undecodable or not of the size its record says."""


def read_image(path: str | os.PathLike, image_id, height: int | None = None, width: int | None = None) -> np.ndarray:
    """The decoded BGR image (EXIF orientation ignored); :class:`ImageFileError` if missing,
    unreadable, undecodable, or (when given) not ``height x width``."""
    label = f"image id {image_id}: file {path}"
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageFileError(f"{label} not found") from None
    except OSError as exc:
        raise ImageFileError(f"{label} cannot be read: {exc.strerror or exc}") from None
    img = decode_image(buf)
    if img is None:
        raise ImageFileError(f"{label} cannot be decoded as an image")
    if height is not None and img.shape[:2] != (height, width):
        raise ImageFileError(f"{label} is {img.shape[1]}x{img.shape[0]} but the json says {width}x{height}")
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
