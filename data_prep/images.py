"""Image rows as they travel through Ray Data: float32 pixels in C,H,W order stored as bytes.

Raw bytes keep the Parquet schema plain (binary + shape in the manifest), so any Arrow reader
can open a shard without Ray's tensor extension type.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from typed_errors import OptionError

# What a user means by an image: PIL knows dozens of formats (and their decoders' bugs); these are
# the ones genpipe reads, whatever the file's name says.
IMAGE_FORMATS = ("PNG", "JPEG")
DEFAULT_MAX_PIXELS = 4096 * 4096


class ImageRejected(ValueError):
    """A file that is an image, but not one genpipe reads: its format or its size (a reject reason)."""


def decode_image(data: bytes, channels: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """PNG/JPEG bytes -> float32 array (C, H, W) in [0, 1]; raises on anything unreadable. The size
    is read from the header and checked before any pixel is decoded: a few KB of PNG can claim
    169 megapixels (2 GB of floats)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageRejected(f"holds {type(data).__name__}, not encoded image bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise ImageRejected(f"not a {' or '.join(IMAGE_FORMATS)} image") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageRejected(
                f"{width}x{height} = {width * height} pixels, over data.source.max_pixels ({max_pixels})"
            )
        image.load()
        converted = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(converted, dtype=np.float32) / 255.0
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (C, size, size), bilinear per channel."""
    if pixels.shape[1:] == (size, size):
        return pixels
    planes = [
        np.asarray(Image.fromarray(plane, mode="F").resize((size, size), Image.Resampling.BILINEAR)) for plane in pixels
    ]
    return np.stack(planes).astype(np.float32)


def to_bytes(pixels: np.ndarray) -> bytes:
    """Pixels as they travel between Ray Data's stages: float32 bytes, exact."""
    return np.ascontiguousarray(pixels, dtype="<f4").tobytes()


def stored_levels(source_levels: int, resized: bool) -> int:
    """The grid a shard keeps pixels on: the source's own levels (digits: 17, PNG/JPEG: 256), so
    its values come back exactly; 256 once a resize has put values between them."""
    return 256 if resized else source_levels


def to_stored(pixels: np.ndarray, levels: int) -> bytes:
    """(C, H, W) in [0, 1] -> the bytes a shard keeps: one uint8 per pixel, the nearest of `levels`
    (at most 256), a quarter of float32's bytes. Exact for values on the grid; a resized value
    moves by at most 1/510."""
    return np.rint(np.clip(pixels, 0.0, 1.0) * (levels - 1)).astype(np.uint8).tobytes()


def from_stored(codes: np.ndarray, levels: int) -> np.ndarray:
    """Stored uint8 codes (any shape) on `levels` -> float32 in [-1, 1], as models read images."""
    return codes.astype(np.float32) * np.float32(2.0 / (levels - 1)) - np.float32(1.0)


def load_images(uris: list[str], image_shape: tuple[int, int, int]) -> np.ndarray:
    """Image files (any fsspec URI) as a model reads them: (N, C, H, W) float32 in [-1, 1], resized
    to `image_shape`; a ValueError names the file that cannot be read."""
    from storage import read_bytes

    channels, height, _ = image_shape
    images = []
    for uri in uris:
        try:
            pixels = decode_image(read_bytes(uri), channels)
        except (OSError, ValueError) as exc:
            raise OptionError("input", f"{uri}: {exc}") from None
        images.append(resize(pixels, height) * 2.0 - 1.0)
    return np.stack(images)
