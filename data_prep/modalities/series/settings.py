"""The `data:` fields that shape a series dataset: the context length and where the held-out tail starts."""

from __future__ import annotations

from pydantic import Field

from data_prep.modalities.base import PrepSettings


class SeriesPrep(PrepSettings):
    seq_len: int = Field(
        256, gt=0, description="text: tokens a model sees per block (+1 for the targets); series: values of context"
    )
    split_at: float | None = Field(
        None, description="series: the first time of the held-out tail (default: the last val_fraction)"
    )
