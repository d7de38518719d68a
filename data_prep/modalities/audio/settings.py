"""The `data:` fields that shape an audio dataset: the sample rate clips are resampled to and their length."""

from __future__ import annotations

from pydantic import Field

from data_prep.modalities.base import PrepSettings


class AudioPrep(PrepSettings):
    split_seed: int = 0
    sample_rate: int = Field(8000, ge=1000, le=48000, description="audio: every file is resampled to this rate")
    clip_seconds: float = Field(1.0, gt=0, le=30, description="audio: files are cut into clips this long")
