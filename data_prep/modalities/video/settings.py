"""The `data:` fields that shape a video dataset: the frames' size and channels, and how many
frames a clip holds and how many of them a model is given before it predicts the rest."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from data_prep.modalities.base import PrepSettings
from typed_errors import FieldError


class VideoPrep(PrepSettings):
    split_seed: int = 0
    frame_size: int = Field(32, ge=8, le=256, description="video: frames are cropped to a square and resized to it")
    frame_channels: Literal[1, 3] = Field(1, description="video: 1 (grey) or 3 (RGB)")
    clip_frames: int = Field(20, ge=2, le=500, description="video: frames per clip, context and future")
    context_frames: int = Field(10, ge=1, description="video: the frames a model is given; it predicts the rest")
    frame_step: int = Field(1, ge=1, le=100, description="video: keep every k-th frame of a recording")

    @model_validator(mode="after")
    def _a_future_to_predict(self) -> VideoPrep:
        if self.source.modality_name == "video" and self.context_frames >= self.clip_frames:
            raise FieldError(
                "context_frames",
                f"{self.context_frames} leaves nothing to predict in clips of data.clip_frames={self.clip_frames}",
            )
        return self
