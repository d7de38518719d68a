"""What a dataset is made of: the `data:` section of a pipeline config.

It lives here, not in pipelines/, so that data_prep can be used (and tested) on its own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DigitsSource(Strict):
    """scikit-learn's 8x8 handwritten digits (1,797 images, ships with the package)."""

    kind: Literal["digits"] = "digits"


class ImageFolderSource(Strict):
    """PNG/JPEG files under `path`; the label is the name of the image's subfolder."""

    kind: Literal["image_folder"]
    path: str
    channels: Literal[1, 3] = 1


class ParquetSource(Strict):
    """Parquet files with encoded images (PNG/JPEG bytes) and an optional label column."""

    kind: Literal["parquet"]
    path: str
    image_column: str = "image"
    label_column: str | None = "label"
    channels: Literal[1, 3] = 1


Source = Annotated[DigitsSource | ImageFolderSource | ParquetSource, Field(discriminator="kind")]


class DataConfig(Strict):
    source: Source = Field(default_factory=DigitsSource)
    image_size: int | None = Field(None, gt=0, description="resize to a square of this size")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    num_shards: int = Field(2, gt=0)
    max_reject_fraction: float = Field(0.01, ge=0, le=1)

    @model_validator(mode="after")
    def _size_known(self) -> DataConfig:
        if self.image_size is None and self.source.kind != "digits":
            raise ValueError("image_size: required for image_folder and parquet sources")
        return self
