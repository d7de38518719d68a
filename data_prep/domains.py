"""Two image domains in one dataset, for unpaired image-to-image translation (CycleGAN).

Every row carries `domain` (0: A, 1: B). The domains come from two sources, or from one source
whose B half is A's images under a known map (`b_from_a`): digits and their inverted copies. Then
the true translation is known and evaluation can measure a model against it. Each record lands in
one domain only, chosen by a seeded hash of its key, so no image is seen in both: the pairs stay
unknown to training, as in the unpaired setting.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from data_prep.images import to_bytes
from data_prep.transforms import seeded_fraction
from typed_errors import FieldError

DomainMap = Literal["invert", "rotate90", "flip"]
DOMAIN_MAPS: tuple[str, ...] = ("invert", "rotate90", "flip")


def apply_map(name: str, images: np.ndarray, inverse: bool = False) -> np.ndarray:
    """A known map on images (..., C, H, W) in [-1, 1] (or its inverse): inverted intensities, a
    quarter turn counter-clockwise, or a left-right mirror."""
    if name == "invert":
        return -images
    if name == "rotate90":
        return np.ascontiguousarray(np.rot90(images, -1 if inverse else 1, axes=(-2, -1)))
    if name == "flip":
        return np.ascontiguousarray(images[..., ::-1])
    raise FieldError("data.source.b_from_a", f"{name!r} is not one of {', '.join(DOMAIN_MAPS)}")


def in_domain_b(key: str, seed: int) -> bool:
    """Half the records, fixed by key and seed, become domain B."""
    return seeded_fraction(key, seed, salt="domain") < 0.5


def tag_domain(row: dict[str, Any], domain: int) -> dict[str, Any]:
    """A raw row of one domain's source, its key prefixed so the two sources cannot collide."""
    return {**row, "key": f"{'ab'[domain]}/{row['key']}", "domain": domain}


def mapped_row(row: dict[str, Any], name: str, seed: int) -> dict[str, Any]:
    """A raw row (pixels float32 (C, H, W) in [0, 1]) of the single source: kept in A, or moved to B
    under map `name`."""
    if not in_domain_b(row["key"], seed):
        return tag_domain(row, 0)
    out = tag_domain(row, 1)
    if row["error"]:
        return out
    channels = len(row["pixels"]) // (4 * int(row["height"]) * int(row["width"]))
    pixels = np.frombuffer(row["pixels"], dtype="<f4").reshape(channels, int(row["height"]), int(row["width"]))
    moved = (apply_map(name, pixels * 2 - 1) + 1) / 2
    return {**out, "pixels": to_bytes(moved), "height": moved.shape[1], "width": moved.shape[2]}
