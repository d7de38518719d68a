"""Image rows as they travel through Ray Data: float32 pixels in C,H,W order stored as bytes.

Raw bytes keep the Parquet schema plain (binary + shape in the manifest), so any Arrow reader
can open a shard without Ray's tensor extension type.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def decode_image(data: bytes, channels: int) -> np.ndarray:
    """PNG/JPEG bytes -> float32 array (C, H, W) in [0, 1]; raises on anything unreadable."""
    with Image.open(io.BytesIO(data)) as image:
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
    return np.ascontiguousarray(pixels, dtype="<f4").tobytes()
