"""The image modality: labelled images (one domain, or two for translation) as uint8 pixel shards."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from data_prep.columns import Columns, fixed_width
from data_prep.images import from_stored
from data_prep.manifest import Manifest
from data_prep.modalities.image.settings import ImagePrep
from data_prep.modalities.modality import Modality


class ImageModality(Modality[ImagePrep]):
    name: ClassVar[str] = "image"
    settings = ImagePrep
    placeholder_inputs: ClassVar[dict[str, Any]] = {"image_shape": (1, 8, 8)}

    def build(self, config: ImagePrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
        from data_prep.modalities.image.build import build_images  # Ray Data, when a dataset is built

        return build_images(config, storage, key, description)

    def decode(self, table: pa.Table, manifest: Manifest) -> Columns:
        """`image` (N, C, H, W) float32 in [-1, 1], int64 `label` (and `domain` for translation)."""
        columns = {
            "image": _pixels(table.column("image"), manifest),
            "label": table.column("label").to_numpy().astype(np.int64),
        }
        if manifest.domains is not None:
            columns["domain"] = table.column("domain").to_numpy().astype(np.int64)
        return columns

    def row_bytes(self, manifest: Manifest) -> int:
        channels, height, width = manifest.images
        return channels * height * width * 4 + 8 + (8 if manifest.domains else 0)  # float32 pixels, label, domain

    def summary(self, manifest: Manifest) -> dict[str, Any]:
        return {"image_shape": list(manifest.images), "num_classes": manifest.num_classes}

    def model_inputs(self, manifest: Manifest) -> dict[str, Any]:
        return {
            "image_shape": manifest.image_shape,
            "pixel_levels": manifest.pixel_levels,
            "num_classes": manifest.num_classes,
            "class_names": manifest.class_names,
        }


def _pixels(column: pa.ChunkedArray, manifest: Manifest) -> np.ndarray:
    """(N, C, H, W) float32 in [-1, 1] from a shard's image cells, as the manifest says they are kept."""
    if manifest.stored_levels is None:  # prepared before pixels were stored as bytes
        return fixed_width(column, "<f4", manifest.images)
    return from_stored(fixed_width(column, "u1", manifest.images), manifest.stored_levels)
