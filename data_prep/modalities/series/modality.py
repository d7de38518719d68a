"""The series modality: one numeric series as normalised windows of seq_len + 1 values."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from data_prep.columns import Columns, fixed_width
from data_prep.errors import DataError
from data_prep.manifest import Manifest, SeriesInfo
from data_prep.modalities.modality import Modality
from data_prep.modalities.series.settings import SeriesPrep


def series_info(manifest: Manifest) -> SeriesInfo:
    if manifest.series is None:
        raise DataError(f"{manifest.uri}: not a time-series dataset")
    return manifest.series


class SeriesModality(Modality[SeriesPrep]):
    name: ClassVar[str] = "series"
    settings = SeriesPrep
    placeholder_inputs: ClassVar[dict[str, Any]] = {"context_len": 1 << 20}

    def build(self, config: SeriesPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
        from data_prep.modalities.series.build import build_series  # Ray Data, when a dataset is built

        return build_series(config, storage, key, description)

    def decode(self, table: pa.Table, manifest: Manifest) -> Columns:
        """`window` (N, seq_len + 1) float32 normalised values: the context and, last, its target."""
        window = fixed_width(table.column("window"), "<f4", (series_info(manifest).seq_len + 1,))
        return {"window": window.astype(np.float32)}

    def row_bytes(self, manifest: Manifest) -> int:
        return (series_info(manifest).seq_len + 1) * 4  # a window of float32 values

    def summary(self, manifest: Manifest) -> dict[str, Any]:
        info = series_info(manifest)
        return {"series": info.name, "values": info.values}

    def model_inputs(self, manifest: Manifest) -> dict[str, Any]:
        info = series_info(manifest)
        return {
            "context_len": info.seq_len,
            "series_mean": info.mean,
            "series_std": info.std,
            "last_values": info.last_values,
            "criterion_lags": info.criterion_lags,
        }
