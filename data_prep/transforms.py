"""Row transforms applied by Ray Data between a source and the shards."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from data_prep.images import resize, to_stored


def seeded_fraction(key: str, seed: int, salt: str = "") -> float:
    """A number in [0, 1) that a record's key and a seed fix, whatever order the records come in."""
    digest = hashlib.sha256(f"{salt}{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(key: str, seed: int, val_fraction: float) -> str:
    """A seeded, order-independent train/val assignment: the same record always lands in the
    same split, however the source is partitioned or re-read."""
    return "val" if seeded_fraction(key, seed) < val_fraction else "train"


def make_transform(
    channels: int,
    image_size: int | None,
    native_size: int | None,
    seed: int,
    val_fraction: float,
    levels: int,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Resize to `image_size`, keep the pixels as stored bytes on a grid of `levels`
    (data_prep/images.to_stored; the readers give models [-1, 1]) and assign the split. Without
    a resize, every image must be `native_size` square; one that is not becomes a reject."""

    def transform(row: dict[str, Any]) -> dict[str, Any]:
        out = {
            "key": row["key"],
            "label": int(row["label"]),
            "image": b"",
            "error": row["error"],
            "split": split_of(row["key"], seed, val_fraction),
        }
        if "domain" in row:  # a translation dataset's (data_prep/domains.py)
            out["domain"] = int(row["domain"])
        if out["error"]:
            return out
        height, width = int(row["height"]), int(row["width"])
        pixels = np.frombuffer(row["pixels"], dtype="<f4").reshape(channels, height, width)
        if image_size is None and (height, width) != (native_size, native_size):
            out["error"] = f"image is {height}x{width}, not {native_size}x{native_size}; set data.image_size"
            return out
        out["image"] = to_stored(resize(pixels, image_size or height), levels)
        return out

    return transform
