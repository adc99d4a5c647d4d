"""File names of images, where an image may be read from, and guards on where outputs may go."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ltaug.errors import InputError, UsageError


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


def outside_folder_reason(root: str | os.PathLike, name: str) -> str | None:
    """Why the file ``root/name``, its symlinks followed, is not inside the folder ``root``
    (its real path, itself symlinks followed), or None if it is inside or does not exist
    (a missing file is reported as missing). A symlink inside ``root`` to a file elsewhere in
    ``root`` is fine; one leading elsewhere (``x.jpg -> /home/me/.ssh/id_rsa``, or a
    sub-folder linked to another disk) is not: a dataset's file names pick files, and the
    folder given for them bounds what they can pick.

    One ``lstat`` for a plain file directly in ``root`` (the common case); the real paths only
    for a symlink or a name with sub-folders.
    """
    path = os.path.join(root, name)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        st = None  # e.g. a permission refused on the way: decided on the real path below
    if st is not None and not stat.S_ISLNK(st.st_mode) and "/" not in name and os.sep not in name:
        return None
    real, top = os.path.realpath(path), os.path.realpath(root)
    if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
        return None
    return f"leads outside the image folder {root} (to {real})"


def image_file_stat(root: str | os.PathLike, name: str, image_id: object) -> os.stat_result:
    """``os.stat`` of the image file ``root/name`` (``FileNotFoundError`` as ``os.stat`` raises
    it); an :class:`~ltaug.errors.InputError` naming the image when the file leads outside
    ``root`` (:func:`outside_folder_reason`): it is never read. One ``lstat`` for a plain file."""
    path = os.path.join(root, name)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or "/" in name or os.sep in name:
        reason = outside_folder_reason(root, name)
        if reason:
            raise InputError(f"image id {image_id}: file {path} {reason}: refused, not read")
        st = os.stat(path)
    return st


def checked_image_path(root: str | os.PathLike, name: str, image_id: object) -> str:
    """The path of the image file ``root/name`` to read; an :class:`~ltaug.errors.InputError`
    naming the image when it leads outside ``root`` (:func:`outside_folder_reason`). A missing
    file is left to the reader, which names it."""
    reason = outside_folder_reason(root, name)
    path = str(Path(root) / name)
    if reason:
        raise InputError(f"image id {image_id}: file {path} {reason}: refused, not read")
    return path


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
