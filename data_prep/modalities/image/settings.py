"""The `data:` fields that shape an image dataset."""

from __future__ import annotations

from pydantic import Field, model_validator

from data_prep.modalities.base import PrepSettings
from data_prep.modalities.image.sources import ImageSourceConfig
from typed_errors import FieldError


class ImagePrep(PrepSettings):
    image_size: int | None = Field(None, gt=0, description="resize to a square of this size")
    split_seed: int = 0

    @model_validator(mode="after")
    def _size_known(self) -> ImagePrep:
        if self.source.modality_name == "image" and self.image_size is None and self.images.image_side is None:
            raise FieldError("image_size", "required for image_folder and parquet image sources")
        return self

    @property
    def images(self) -> ImageSourceConfig:
        """The source as an image source (channels, side, levels); a FieldError naming the source
        when it holds text or a series."""
        source = self.source
        if not isinstance(source, ImageSourceConfig) or source.modality_name != "image":
            raise FieldError("source", f"{source.kind} holds {source.modality_name} data, not images")
        return source
