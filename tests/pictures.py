"""Pictures as users make them, for the tests: encoded in any format, bad in every way a file can be, and a sample of
real phone photos."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image

# Real phone photos of clothing-dataset-small, a few per class, in its train/ and validation/ layout.
SAMPLE = Path(__file__).parent / "data" / "clothing-small-sample"


def garment_on_white(size=(300, 400), box=(100, 60, 200, 340), shade=40) -> Image.Image:
    """A dark, tall object on a light background: the opposite of Fashion-MNIST's look."""
    pixels = np.full((size[1], size[0]), 235, dtype=np.uint8)
    left, top, right, bottom = box
    pixels[top:bottom, left:right] = shade
    return Image.fromarray(pixels)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    """The picture in a file format: Pillow's, or HEIF (an iPhone's HEIC), which pillow-heif writes."""
    buffer = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif.from_pillow(image.convert("RGB")).save(buffer, **options)
    else:
        image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels: enough for Pillow to read the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    png = encode(garment_on_white(), "PNG")
    jpeg = encode(garment_on_white(), "JPEG")
    heic = encode(garment_on_white(), "HEIF")
    return {
        "empty.png": (b"", "empty file"),
        "text.png": (b"just some words\n", "not an image"),
        "truncated.png": (png[: len(png) // 2], "truncated or corrupt"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated or corrupt"),
        "truncated.heic": (heic[: len(heic) // 2], "truncated or corrupt"),
        "corrupt.heic": (_corrupt_heif_data(heic), "truncated or corrupt"),
        "tiny.png": (encode(Image.new("L", (1, 1)), "PNG"), "1x1, too small"),
        "big.png": (png_header_only(10_000, 6_000), "10000x6000 = 60,000,000 pixels, over the limit of 50,000,000"),
        "huge.png": (png_header_only(20_000, 20_000), "400,000,000 pixels, over the limit of 50,000,000"),
        "strip.png": (png_header_only(6_250_000, 8), "6250000x8, an aspect ratio over 20:1"),
    }


def _corrupt_heif_data(heic: bytes) -> bytes:
    """The HEIC with the start of its coded image overwritten: the header reads, the decoder fails (EOFError)."""
    start = heic.index(b"mdat") + 4
    return heic[:start] + b"\xff" * 8 + heic[start + 8 :]
