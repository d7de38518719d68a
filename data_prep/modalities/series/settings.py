"""The `data:` fields that shape a series dataset: the context length and where the held-out tail starts."""

from __future__ import annotations

from pydantic import Field

from data_prep.modalities.base import SequencePrep


class SeriesPrep(SequencePrep):
    split_at: float | None = Field(
        None, description="series: the first time of the held-out tail (default: the last val_fraction)"
    )
