"""A time series -> windows as shards: the series split in time (train is the head, val the
held-out tail), normalised by the train values, and cut into windows of seq_len + 1 values.

Train windows lie wholly in the train part. A val window ends at a held-out value and reads the
seq_len values before it, whichever part they are in: scoring val windows is one-step-ahead
forecasting over the tail with the true past (how Zhang 2003 and the AR literature score). The
kept series itself is stored too (series.parquet), for plots and multi-step forecasts.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data

from data_prep.errors import DataError
from data_prep.files import read_checked
from data_prep.manifest import Manifest, SeriesInfo, dataset_uri, publish_new
from data_prep.modalities.series.settings import SeriesPrep
from data_prep.shards import new_write_id, record_rejects, write_split
from storage import join, write_bytes_atomic

SERIES_FILE = "series.parquet"


def split_position(times: np.ndarray, config: SeriesPrep) -> int:
    """Where the held-out tail starts: at `split_at`, else the last `val_fraction` of values."""
    if config.split_at is not None:
        position = int(np.searchsorted(times, config.split_at, side="left"))
        if position >= len(times):
            raise DataError(f"data.split_at: no value at or after {config.split_at} (the series ends at {times[-1]:g})")
        return position
    return len(times) - max(1, round(len(times) * config.val_fraction))


def chosen_lags(train: np.ndarray, max_lags: int, criterion: str) -> int:
    """The AR order `criterion` picks on the train values (statsmodels' `ar_select_order`), at
    least 1 and at most `max_lags` (the context a window holds)."""
    from statsmodels.tsa.ar_model import ar_select_order

    most = max(1, min(max_lags, len(train) // 2 - 1))
    selected = ar_select_order(train, maxlag=most, ic=criterion, trend="c").ar_lags
    return max(1, max(selected)) if selected else 1


def windows(values: np.ndarray, seq_len: int, targets: range) -> pa.Table:
    """One row per target position t: the values t - seq_len .. t as float32 bytes."""
    rows = (
        np.stack([values[t - seq_len : t + 1] for t in targets]).astype("<f4")
        if len(targets)
        else np.zeros((0, seq_len + 1), "<f4")
    )
    return pa.table({"key": [str(t) for t in targets], "window": [row.tobytes() for row in rows]})


def build_series(config: SeriesPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
    uri, write_id = dataset_uri(storage, key), new_write_id()
    raw = config.source.read()
    index = pd.DataFrame({"key": [f"{t:g}" for t in raw.times], "error": raw.errors})
    rejects_uri = join(uri, write_id, "rejects", "rejects.jsonl")
    rejected = record_rejects(index, rejects_uri, config.max_reject_fraction)
    usable = np.array([error == "" for error in raw.errors], dtype=bool)
    order = np.argsort(raw.times[usable], kind="stable")
    times, values = raw.times[usable][order], raw.values[usable][order]
    if len(times) and (np.diff(times) == 0).any():
        repeated = times[1:][np.diff(times) == 0][0]
        raise DataError(f"data.source: time {repeated:g} appears twice in {raw.name}")

    seq_len = config.seq_len
    first_held_out = split_position(times, config)
    if first_held_out <= seq_len:
        raise DataError(
            f"data.seq_len: {seq_len} values of context need more than {first_held_out} train values "
            f"(lower data.seq_len, or move data.split_at / data.val_fraction)"
        )
    train = values[:first_held_out]
    mean, std = float(train.mean()), float(train.std())
    if std == 0:
        raise DataError(f"data.source: the train values of {raw.name} are all {mean:g}; nothing to model")
    normalised = (values - mean) / std

    splits = {}
    for split, targets, count in (
        ("train", range(seq_len, first_held_out), config.num_shards),
        ("val", range(first_held_out, len(values)), None),
    ):
        table = windows(normalised, seq_len, targets)
        folder = join(uri, write_id, split)
        splits[split] = write_split(ray.data.from_arrow(table), uri, folder, (seq_len + 1) * 4, config.shard_mb, count)

    series_path = f"{write_id}/{SERIES_FILE}"
    split_names = np.where(np.arange(len(values)) < first_held_out, "train", "val")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"time": times, "value": values, "split": split_names}), buffer)
    write_bytes_atomic(join(uri, series_path), buffer.getvalue())

    info = SeriesInfo(
        name=raw.name,
        seq_len=seq_len,
        mean=mean,
        std=std,
        split_index=first_held_out,
        split_time=float(times[first_held_out]),
        values={"train": first_held_out, "val": len(values) - first_held_out},
        criterion_lags={
            criterion: chosen_lags(normalised[:first_held_out], seq_len, criterion) for criterion in ("aic", "bic")
        },
        last_values=[float(v) for v in normalised[-seq_len:]],
        series=series_path,
        series_sha256=hashlib.sha256(buffer.getvalue()).hexdigest(),
    )
    described = dict(
        modality="series",
        schema_={"key": "string", "window": f"binary (float32 little-endian x {seq_len + 1})"},
        series=info,
        side_files={info.series: info.series_sha256},
    )
    return publish_new(
        key, uri, description, config.model_dump(mode="json"), splits, rejected, rejects_uri, **described
    )


def read_series(manifest: Manifest) -> pd.DataFrame:
    """The kept series (time, value, split), checked against the manifest's sha256."""
    if manifest.series is None:
        raise DataError(f"{manifest.uri}: not a time-series dataset")
    data = read_checked(join(manifest.uri, manifest.series.series), manifest.series.series_sha256, "series file")
    return pq.read_table(io.BytesIO(data)).to_pandas()
