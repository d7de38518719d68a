"""The `data:` fields that shape a music dataset: the grid notes are placed on and the block length."""

from __future__ import annotations

from pydantic import Field

from data_prep.modalities.base import SequencePrep


class MusicPrep(SequencePrep):
    split_seed: int = 0
    ticks_per_quarter: int = Field(
        4,
        ge=1,
        le=24,
        description="music: grid steps per quarter note (4: sixteenths); notes snap to it",
    )
