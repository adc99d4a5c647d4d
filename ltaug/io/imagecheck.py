"""Image files as they come: what ltaug makes of each one, the checks of ``ltaug validate
--images``, and the policy table's image kinds (:mod:`ltaug.io.policy`).

Every reader of an image file goes through here: :func:`check_image_files` (validate) and
:func:`ltaug.pixels.imagefile.read_image` (the bank, the engine, the report, the transforms)
read the file's header with :func:`read_header`, refuse a decompression bomb before decoding
(:data:`MAX_IMAGE_PIXELS`), decide the orientation with :func:`size_rule`, and name what is
unusual with :func:`notes`. So the size that validate checks is the size of the pixels the
engine gets, and a file validate passes is one the engine reads the same way.

Orientation. A photo's EXIF orientation tag (0x0112) says how to turn the stored pixels to
show them upright. detectron2's ``read_image`` turns them (``_apply_exif_orientation``) and
its ``check_image_size`` compares the json's size with the turned image; mmcv's
``imfrombytes`` (flag ``color``, mmdetection's default) and ultralytics' loaders decode with
OpenCV's ``IMREAD_COLOR``, which turns them (ultralytics' ``exif_size`` checks the turned
size); ``ltaug train`` reads with ``cv2.imread(IMREAD_COLOR)`` too. torchvision's
``decode_image`` turns them only with ``apply_exif_orientation=True`` (default False). So the
upright size is the one checked: a json with the upright size is ``exif-orientation`` (fine),
and the pixels are read upright, as the trainers will. A json with the stored size of an image
whose tag turns it by 90 degrees was annotated on the stored pixels: ``exif-stored-size``
(warning), read as stored (the tag ignored) so that pixels and annotations line up. Any other
size is ``image-size-mismatch``. A tag that keeps the size (180 degrees, mirrors) cannot be
told apart by the size; the upright pixels are read, as the trainers read them.

Pixels. What OpenCV's ``IMREAD_COLOR`` decodes: 3-channel 8-bit BGR whatever the file holds
(grayscale: the channel repeated; palette: expanded; alpha: dropped, the stored colours kept;
16-bit: the high byte of each value; CMYK: converted without colour management); the format
is read from the content, not the file name.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ltaug.io.jpeghead import jpeg_header
from ltaug.io.paths import image_file_name, outside_folder_reason, unsafe_file_name_reason
from ltaug.io.policy import Problem, declare, severity

MAX_IMAGE_PIXELS = 89_478_485
"""Images whose header claims more pixels are refused before decoding (``image-too-large``).
Pillow's default ``Image.MAX_IMAGE_PIXELS`` (2^28 / 3: 256 MiB as 8-bit RGB), above which
Pillow itself warns of a decompression bomb; a fixed number here, so the same files pass
whatever a program sets Pillow's to. It admits any camera photo (a 61 Mpx full-frame sensor
is 9504 x 6336; COCO's largest images are 640 px a side), and bounds what one worker holds
for one decoded image at 256 MiB."""
TINY_SIDE = 10
"""Images under this many pixels a side are ``tiny-image`` (ultralytics refuses them)."""
ORIENTATION_TAG = 0x0112
ORIENTATIONS = {1: "upright", 2: "mirrored", 3: "turned 180 degrees", 4: "mirrored upside down",
                5: "mirrored and turned 90 degrees", 6: "turned 90 degrees clockwise",
                7: "mirrored and turned 90 degrees", 8: "turned 90 degrees counter-clockwise"}
"""EXIF orientation values: what showing the stored pixels upright does to them."""
UPRIGHT, STORED = "upright", "stored"
EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
              ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF"}
SAME_FORMAT = {"MPO": "JPEG"}  # a phone's multi-picture JPEG is a JPEG

MISSING_IMAGE_FILE = declare("missing-image-file", "image", "error", "image file not found")
UNREADABLE_IMAGE = declare("unreadable-image", "image", "error", "image file cannot be read as an image")
IMAGE_SIZE_MISMATCH = declare("image-size-mismatch", "image", "error", "image's width and height differ from the "
                              "json's (neither its upright size nor, for a tag turning it by 90 degrees, its stored "
                              "size)")
IMAGE_TOO_LARGE = declare("image-too-large", "image", "error",
                          f"image header claims more than {MAX_IMAGE_PIXELS:,} pixels (Pillow's decompression-bomb "
                          "limit): refused before decoding")
IMAGE_OUTSIDE_FOLDER = declare("image-outside-folder", "image", "error", "image file is a symlink (or under a "
                               "linked folder) leading outside the image folder: refused, never read")
EXIF_STORED_SIZE = declare("exif-stored-size", "image", "warning",
                           "EXIF orientation turns the image by 90 degrees but the json has its stored size: the "
                           "annotations are on the stored pixels, so they are read as stored (the tag ignored, as "
                           "torchvision's default); detectron2 and ltaug train refuse such an image, mmdetection "
                           "and ultralytics turn it away from its boxes",
                           "kept as is (read as stored)")
IMAGE_ALPHA = declare("image-alpha", "image", "warning",
                      "transparency (RGBA, LA, a palette's transparent colour): dropped, the colours stored under it "
                      "kept, nothing composited (as OpenCV IMREAD_COLOR, detectron2 and ultralytics read it)",
                      "kept as is (read without alpha)")
HIGH_BIT_DEPTH = declare("high-bit-depth", "image", "warning",
                         "16 bits per channel: read as 8, the high byte of each value (value >> 8, as OpenCV "
                         "IMREAD_COLOR, mmcv and ultralytics read it; Pillow's convert, detectron2's reader, clips at "
                         "255 instead)", "kept as is (read as 8 bits)")
CMYK_IMAGE = declare("cmyk-image", "image", "warning",
                     "CMYK JPEG: converted to BGR without colour management (any ICC profile ignored; OpenCV and "
                     "Pillow agree within 1 level), so colours may differ from a colour-managed viewer's",
                     "kept as is (read converted)")
EXIF_ORIENTATION = declare("exif-orientation", "image", "fine", "EXIF orientation tag and the json has the upright "
                           "size: read turned upright, as detectron2, mmdetection, ultralytics and ltaug train read it")
GRAYSCALE_IMAGE = declare("grayscale-image", "image", "fine", "one channel: read as 3 equal BGR channels")
PALETTE_IMAGE = declare("palette-image", "image", "fine", "palette image: read through its palette as BGR")
FORMAT_NOT_EXTENSION = declare("image-format-not-extension", "image", "fine", "content of another format than the "
                               "file name says (a PNG named .jpg): read by its content, as every loader does")
TINY_IMAGE = declare("tiny-image", "image", "fine", f"an image under {TINY_SIDE} px a side, even 1x1: read and "
                     "processed as any other (ultralytics drops it as corrupt)")
NON_ASCII_NAME = declare("non-ascii-file-name", "image", "fine", "file name with non-ASCII characters: read as it is")

IMAGE_KINDS = frozenset({MISSING_IMAGE_FILE, UNREADABLE_IMAGE, IMAGE_SIZE_MISMATCH, IMAGE_TOO_LARGE,
                         IMAGE_OUTSIDE_FOLDER})
"""The kinds about an image file: ``validate --fix`` drops such images (and their annotations)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


class HeaderError(ValueError):
    """The file's header cannot be read as an image's (the message says why)."""


class TooManyPixels(ValueError):
    """The header claims more than :data:`MAX_IMAGE_PIXELS` pixels (the message says how many)."""

    def __init__(self, pixels: int, size: tuple[int, int] | None = None) -> None:
        self.pixels, self.size = pixels, size
        claim = f"{size[0]}x{size[1]} = {pixels:,}" if size else f"{pixels:,}"
        super().__init__(f"claims {claim} pixels, over the limit of {MAX_IMAGE_PIXELS:,} "
                         "(a decompression bomb?): refused before decoding")


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: ``format`` (Pillow's name: JPEG, PNG, ...), the size
    as stored (``width`` x ``height``), Pillow's ``mode`` (RGB, L, P, RGBA, CMYK, I;16, ...),
    the EXIF ``orientation`` (1-8; 1 when there is none), ``bits`` per channel and ``alpha``."""

    format: str
    width: int
    height: int
    mode: str
    orientation: int = 1
    bits: int = 8
    alpha: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def upright(self) -> tuple[int, int]:
        """(width, height) once turned as the orientation tag says."""
        return (self.height, self.width) if self.orientation >= 5 else (self.width, self.height)


def read_header(data: bytes | bytearray | memoryview) -> ImageHeader:
    """The header of the encoded image ``data``, read without decoding the pixels: a plain JPEG
    from its markers (:func:`~ltaug.io.jpeghead.jpeg_header`, what Pillow would say, 50-100 times
    faster), anything else by Pillow; :class:`TooManyPixels` past :data:`MAX_IMAGE_PIXELS`,
    :class:`HeaderError` if it is not an image's."""
    plain = jpeg_header(data)
    if plain is not None and plain.width * plain.height <= MAX_IMAGE_PIXELS:
        orientation = plain.orientation if 1 <= plain.orientation <= 8 else 1
        return ImageHeader("JPEG", plain.width, plain.height, plain.mode, orientation)
    try:
        with warnings.catch_warnings():  # Pillow warns past its limit; the limit is checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # past twice Pillow's limit: Pillow says how many
        found = _BOMB_PIXELS.search(str(exc))
        raise TooManyPixels(int(found.group(1)) if found else 2 * MAX_IMAGE_PIXELS + 1) from None
    except UnidentifiedImageError:  # Pillow's text names its BytesIO object by address
        raise HeaderError("not an image format Pillow knows") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise HeaderError(str(exc) or type(exc).__name__) from None
    with img:
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            raise TooManyPixels(width * height, (width, height))
        mode, info, fmt = img.mode, img.info, img.format or "?"
        bits = 16 if mode.startswith("I;16") else 32 if mode in ("I", "F") else 8
        if fmt == "PNG" and bytes(data[:8]) == PNG_SIGNATURE and bytes(data[12:16]) == b"IHDR":
            bits = max(bits, data[24])  # IHDR bit depth: Pillow opens 16-bit RGB as 8-bit "RGB"
        alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in info
        return ImageHeader(fmt, width, height, mode, _orientation(img), bits, alpha)


def upright_size(img: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of an opened image as shown upright: its EXIF orientation applied (the
    size ultralytics' ``exif_size`` and detectron2 give), from the header only."""
    width, height = img.size
    return (height, width) if _orientation(img) in (5, 6, 7, 8) else (width, height)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8), 1 when there is none or it is not a valid one. A PNG's eXIf
    chunk is looked for only before the pixel data (Pillow would decode the image to find one
    after it)."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block: no orientation (as detectron2's _apply_exif_orientation)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def size_rule(header: ImageHeader, width: object, height: object) -> str | None:
    """How to read an image whose json says ``width`` x ``height``: :data:`UPRIGHT` (turned as
    its orientation tag says; also every image without one) when that is its upright size,
    :data:`STORED` (the tag ignored) when it is its stored size and the tag turns it by 90
    degrees, None when it is neither (``image-size-mismatch``)."""
    if (width, height) == header.upright:
        return UPRIGHT
    if (width, height) == (header.width, header.height):
        return STORED
    return None


def size_text(header: ImageHeader) -> str:
    """``640x480``, or ``480x640 upright (640x480 as stored, EXIF orientation 6)``."""
    w, h = header.upright
    if header.orientation == 1:
        return f"{w}x{h}"
    return f"{w}x{h} upright ({header.width}x{header.height} as stored, EXIF orientation {header.orientation})"


def notes(header: ImageHeader, path: str | os.PathLike, rule: str | None = UPRIGHT) -> list[tuple[str, str]]:
    """The warning and fine kinds this image is, each with what follows ``file PATH`` in its
    message (``has transparency (RGBA): ...``). ``rule``: how it is read (:func:`size_rule`)."""
    out = []
    o, (w, h), mode = header.orientation, header.upright, header.mode
    if o != 1 and rule == STORED:
        out.append((EXIF_STORED_SIZE, f"has EXIF orientation {o} ({ORIENTATIONS[o]}: {w}x{h} upright) but the json "
                                      f"has its stored size {header.width}x{header.height}: read as stored, the tag "
                                      "ignored, so that the annotations line up"))
    if header.alpha:
        what = mode if mode in ("RGBA", "LA", "PA", "RGBa", "La") else f"{mode} with a transparent colour"
        out.append((IMAGE_ALPHA, f"has transparency ({what}): read without it, the colours stored under it kept"))
    if header.bits > 8:
        out.append((HIGH_BIT_DEPTH, f"has {header.bits} bits per channel: read as 8, the high byte of each value"))
    if mode == "CMYK":
        out.append((CMYK_IMAGE, "is CMYK: converted to BGR without colour management"))
    if o != 1 and rule == UPRIGHT:
        out.append((EXIF_ORIENTATION, f"has EXIF orientation {o} ({ORIENTATIONS[o]}): read upright, {w}x{h}"))
    if mode in ("L", "LA", "1", "I", "F") or mode.startswith("I;16"):
        out.append((GRAYSCALE_IMAGE, "is grayscale: read as 3 equal channels"))
    if mode in ("P", "PA"):
        out.append((PALETTE_IMAGE, "has a palette: read through it"))
    name = os.fspath(path)
    ext = os.path.splitext(name)[1]
    expected = EXTENSIONS.get(ext.lower())
    if expected and SAME_FORMAT.get(header.format, header.format) != expected:
        out.append((FORMAT_NOT_EXTENSION, f"holds a {header.format} image under a {ext} name: read by its content"))
    if min(w, h) < TINY_SIDE:
        out.append((TINY_IMAGE, f"is {w}x{h}: read and processed as any other"))
    if not os.path.basename(name).isascii():
        out.append((NON_ASCII_NAME, "has a non-ASCII name: read as it is"))
    return out


def check_image_files(data, images_dir, *, skip=frozenset(), progress: bool = False) -> Iterator[Problem]:
    """Each image file under ``images_dir``: inside that folder, present, its header an image's
    and under :data:`MAX_IMAGE_PIXELS` (checked before decoding), fully decodable (a truncated
    file, which a header read misses), of the json's size (:func:`size_rule`), and its warning
    kinds (:func:`notes`; the fine ones are not problems).

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
        outside = outside_folder_reason(root, name)
        if outside:
            yield Problem(IMAGE_OUTSIDE_FOLDER, f"{label}: file {path} {outside}: refused, not read", "images", pos)
            continue
        if not path.is_file():
            yield Problem(MISSING_IMAGE_FILE, f"{label}: file {path} not found", "images", pos)
            continue
        try:
            raw = path.read_bytes()
            header = read_header(raw)
        except TooManyPixels as exc:
            yield Problem(IMAGE_TOO_LARGE, f"{label}: file {path} {exc}", "images", pos)
            continue
        except (HeaderError, OSError) as exc:
            yield Problem(UNREADABLE_IMAGE, f"{label}: file {path} cannot be read as an image ({exc})", "images", pos)
            continue
        try:
            with Image.open(io.BytesIO(raw)) as img:
                img.load()  # full decode: catches truncated files, which a header read misses
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
            yield Problem(UNREADABLE_IMAGE, f"{label}: file {path} cannot be read as an image ({exc})", "images", pos)
            continue
        rule = size_rule(header, im["width"], im["height"])
        if rule is None:
            yield Problem(IMAGE_SIZE_MISMATCH, f"{label}: file {path} is {size_text(header)} but the json says "
                                               f"{im['width']}x{im['height']}", "images", pos)
            continue
        for kind, text in notes(header, path, rule):
            if severity(kind) == "warning":
                yield Problem(kind, f"{label}: file {path} {text}", "images", pos)
