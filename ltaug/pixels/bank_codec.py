"""How an object bank stores each crop and mask: the codecs (``jpeg``, ``png``, ``raw``) and the masks' encoding.

A bank's crops are stored by one codec (``meta.json`` ``codec``), chosen when it is built:

* ``jpeg`` (the default): baseline JPEG, 4:4:4 (no chroma subsampling), optimised Huffman
  tables, and *flat* quantisation tables: every DCT coefficient of every channel quantised with
  the same step, ``100 - quality`` (at least 1). libjpeg's quality tables quantise the high
  frequencies coarsely, for the eye; a flat table gives the most PSNR per byte (for the squared
  error, the same step for every coefficient is the best split of the bits). On COCO photos,
  quality 91 (step 9) keeps the crops at 38.2 dB PSNR in 8.8 KB per object, where libjpeg's
  quality 93 needs 11.2 KB for the same PSNR (``benchmarks/bench_bank_codec.py``). Encoded
  with Pillow (which takes the tables), decoded with OpenCV.
* ``png``: lossless (OpenCV, compression level :data:`PNG_LEVEL`); about 4 times the size of
  ``jpeg``, and 4 times slower to decode.
* ``raw``: uint8 BGR, row-major, as format 1 stored every crop: the largest (3 bytes per
  pixel) and the fastest (nothing to decode).

Masks are always lossless: ``np.packbits`` of the 0/1 mask (row-major, big bit order), and for
``jpeg`` / ``png`` banks zlib-compressed (level 9) on top: about 0.3 KB per COCO object, against
2.4 KB packed.

Decoding a jpeg crop costs about 80 microseconds for a COCO object of 14,000 pixels (one
core of this project's machine): ``ltaug paste`` pays it for every object it pastes, and
nothing else (``benchmarks/bench_bank_codec.py``). Decoded crops are not cached: keeping them
costs memory in every process, and on this machine touching fresh memory cost more than the
decoding it saved.
"""
from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

CODECS = ("jpeg", "png", "raw")
DEFAULT_CODEC = "jpeg"
DEFAULT_QUALITY = 91  # jpeg: quantisation step 100 - 91 = 9
PNG_LEVEL = 6
MASK_ZLIB_LEVEL = 9
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


@dataclass(frozen=True)
class Codec:
    """A bank's codec: ``name`` (:data:`CODECS`) and, for ``jpeg``, ``quality`` (1-100)."""

    name: str = DEFAULT_CODEC
    quality: int | None = None

    @classmethod
    def of(cls, name: str = DEFAULT_CODEC, quality: int | None = None) -> Codec:
        """The codec ``name`` at ``quality`` (``jpeg``: default :data:`DEFAULT_QUALITY`); ValueError
        naming the parameter when either is not taken."""
        if name not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {name!r}")
        if name != "jpeg":
            if quality is not None:
                raise ValueError(f"quality is for codec jpeg; codec {name} takes none")
            return cls(name, None)
        quality = DEFAULT_QUALITY if quality is None else quality
        if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
            raise ValueError(f"quality must be an integer in [1, 100], got {quality!r}")
        return cls(name, int(quality))

    @classmethod
    def from_meta(cls, meta: dict) -> Codec:
        """The codec a bank's ``meta.json`` records (format 1 banks: ``raw``)."""
        if meta.get("format_version") == 1:
            return cls("raw", None)
        c = meta["codec"]
        return cls.of(c["crops"], c.get("quality"))

    @property
    def step(self) -> int | None:
        """``jpeg``: the quantisation step of every DCT coefficient."""
        return None if self.quality is None else max(1, 100 - self.quality)

    @property
    def compressed_masks(self) -> bool:
        return self.name != "raw"

    def describe(self) -> dict:
        """What ``meta.json`` records: ``crops``, ``quality`` and ``step`` (jpeg), ``masks``."""
        out: dict = {"crops": self.name}
        if self.name == "jpeg":
            out.update(quality=self.quality, step=self.step, subsampling="4:4:4", tables="flat")
        elif self.name == "png":
            out["level"] = PNG_LEVEL
        out["masks"] = "packbits+zlib" if self.compressed_masks else "packbits"
        return out

    def __str__(self) -> str:
        return f"jpeg quality {self.quality}" if self.name == "jpeg" else self.name

    # -- one object ---------------------------------------------------------------------------

    def encode_crop(self, crop: np.ndarray) -> bytes:
        """The stored bytes of a uint8 BGR crop (h x w x 3)."""
        if self.name == "raw":
            return np.ascontiguousarray(crop).tobytes()
        if self.name == "png":
            ok, buf = cv2.imencode(".png", crop, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
            if not ok:
                raise ValueError("PNG encoding failed")
            return buf.tobytes()
        from PIL import Image

        out = io.BytesIO()
        table = [self.step] * 64
        Image.fromarray(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)).save(
            out, "JPEG", qtables=[table, table], subsampling=0, optimize=True)
        return out.getvalue()

    def decode_crop(self, data: np.ndarray, height: int, width: int) -> np.ndarray | None:
        """The BGR crop (h x w x 3) from its stored bytes ``data`` (a uint8 array); None when they
        do not decode to that size (a damaged bank)."""
        if self.name == "raw":
            return data.reshape(height, width, 3) if data.size == height * width * 3 else None
        crop = cv2.imdecode(data, _DECODE_FLAGS)
        return crop if crop is not None and crop.shape == (height, width, 3) else None

    def encode_mask(self, mask: np.ndarray) -> bytes:
        """The stored bytes of a 0/1 mask (h x w)."""
        packed = np.packbits(mask).tobytes()
        return zlib.compress(packed, MASK_ZLIB_LEVEL) if self.compressed_masks else packed

    def decode_mask(self, data: np.ndarray, height: int, width: int) -> np.ndarray | None:
        """The uint8 0/1 mask (h x w) from its stored bytes; None when they are damaged."""
        if self.compressed_masks:
            try:
                data = np.frombuffer(zlib.decompress(data.data), np.uint8)
            except zlib.error:
                return None
        if data.size != (height * width + 7) // 8:
            return None
        return np.unpackbits(data, count=height * width).reshape(height, width)
