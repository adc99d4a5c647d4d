"""Checks of the image files a dataset names (``ltaug validate --images``), and the policy
table's image kinds (:mod:`ltaug.io.policy`)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ltaug.io.paths import image_file_name, unsafe_file_name_reason
from ltaug.io.policy import Problem, declare

MISSING_IMAGE_FILE = declare("missing-image-file", "image", "error", "image file not found")
UNREADABLE_IMAGE = declare("unreadable-image", "image", "error", "image file cannot be read as an image")
IMAGE_SIZE_MISMATCH = declare("image-size-mismatch", "image", "error", "image file size differs from the json")
IMAGE_KINDS = frozenset({MISSING_IMAGE_FILE, UNREADABLE_IMAGE, IMAGE_SIZE_MISMATCH})
"""The kinds about an image file: ``validate --fix`` drops such images (and their annotations)."""


def check_image_files(data, images_dir, *, skip=frozenset(), progress: bool = False) -> Iterator[Problem]:
    """Existence, readability (full decode) and size of every image file under ``images_dir``.

    ``skip``: image positions that ``check_document`` already rejected.
    """
    from tqdm import tqdm

    root = Path(images_dir)
    for pos, im in enumerate(tqdm(data["images"], desc="images", unit="img", disable=not progress, leave=False)):
        if pos in skip:
            continue
        name = image_file_name(im)
        label = f"image id {im['id']}"
        if name is None or unsafe_file_name_reason(name):
            continue  # reported by check_document, and never opened
        path = root / name
        if not path.is_file():
            yield Problem("missing-image-file", f"{label}: file {path} not found", "images", pos)
            continue
        try:
            with Image.open(path) as img:
                size = img.size
                img.load()  # full decode: catches truncated files, which a header read misses
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            yield Problem("unreadable-image", f"{label}: file {path} cannot be read as an image ({exc})", "images", pos)
            continue
        if size != (im["width"], im["height"]):
            yield Problem("image-size-mismatch",
                          f"{label}: file {path} is {size[0]}x{size[1]} but the json says {im['width']}x{im['height']}",
                          "images", pos)
