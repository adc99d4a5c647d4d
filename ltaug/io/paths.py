"""File names of images, and guards on where outputs may go."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ltaug.errors import UsageError


def image_file_name(image: dict) -> str | None:
    """The image's path relative to the image root.

    COCO stores ``file_name``; LVIS v1 stores only ``coco_url``, whose last path component is
    the file name inside the COCO image folder (as lvis-api's own loader assumes).
    """
    name = image.get("file_name")
    if isinstance(name, str) and name:
        return name
    url = image.get("coco_url")
    if isinstance(url, str) and url:
        return url.rstrip("/").rsplit("/", 1)[-1]
    return None


def unsafe_file_name_reason(name: str) -> str | None:
    """Why ``name`` could escape the image root (absolute path, drive, ``..``), or None if safe.

    Plain string tests (this runs once per image on every load): POSIX and Windows roots
    (``/x``, ``\\x``, ``C:x``) and any ``..`` component under either separator.
    """
    if name[:1] in ("/", "\\") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        return "is an absolute path"
    if ".." in name and ".." in name.replace("\\", "/").split("/"):
        return "contains '..'"
    if "\x00" in name:
        return "contains a NUL byte"
    return None


def refuse_overwriting_inputs(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Raise a UsageError when ``output`` is one of ``inputs`` (inputs are never modified)."""
    out = Path(output)
    for inp in inputs:
        if inp is None:
            continue
        inp = Path(inp)
        same = out.resolve() == inp.resolve()
        if not same and out.exists() and inp.exists():
            same = os.path.samefile(out, inp)
        if same:
            raise UsageError(f"{output}: refusing to write the output over the input file")
