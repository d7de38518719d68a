"""Series sources: each kind's config (a `data.source` of the series modality) and how it reads
its series: statsmodels' packaged datasets, or a column of a CSV or Parquet file.

A series is (time, value) pairs; a pair whose value or time is not a finite number is kept with
the reason it cannot be used (a reject), never dropped silently or turned into a NaN that a model
would train on.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from data_prep.errors import DataError
from data_prep.files import file_stamps
from data_prep.modalities.base import SourceConfig
from storage import filesystem
from typed_errors import FieldError

DEFAULT_COLUMNS = {"sunspots": "SUNACTIVITY", "co2": "co2", "macrodata": "realgdp"}


class SeriesSource(SourceConfig):
    """A time series: one column of numbers in time order. It is read whole on the driver (a
    series of millions of values is tens of MB), not through Ray Data."""

    modality: ClassVar[str] = "series"
    start: float | None = Field(None, description="the first time kept (inclusive)")
    end: float | None = Field(None, description="the last time kept (inclusive)")

    @model_validator(mode="after")
    def _range_in_order(self) -> SeriesSource:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise FieldError("end", f"{self.end} is before start {self.start}")
        return self


class StatsmodelsSeriesSource(SeriesSource):
    """A series that ships with statsmodels: yearly sunspots (1700-2008), weekly CO2 at Mauna Loa
    (1958-2001, as decimal years) or a quarterly US macro series (1959-2009)."""

    kind: Literal["statsmodels"] = "statsmodels"
    dataset: Literal["sunspots", "co2", "macrodata"] = "sunspots"
    column: str | None = Field(None, description="default: SUNACTIVITY, co2 or realgdp")

    def describe(self) -> dict[str, Any]:
        import statsmodels

        return {**self.model_dump(mode="json"), "statsmodels": statsmodels.__version__}

    def read(self) -> Any:
        return read_statsmodels(self)


class SeriesFileSource(SeriesSource):
    """A numeric column of a CSV or Parquet file (any fsspec URI), optionally with a time column."""

    kind: Literal["series_file"]
    path: str = Field(description="a .csv or .parquet file, local or s3://...")
    column: str = Field(description="the values")
    time_column: str | None = Field(None, description="numeric times; default: the row number")

    def describe(self) -> dict[str, Any]:
        return describe_series_file(self)

    def read(self) -> Any:
        return read_series_file(self)


@dataclass
class RawSeries:
    """Every record of a source in its order: times, values (NaN where unusable) and the reason
    each record cannot be used ("" when it can)."""

    name: str
    times: np.ndarray
    values: np.ndarray
    errors: list[str]


def _number(cell: Any) -> float | None:
    """A cell as a finite float, or None."""
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def checked(name: str, times: list[Any], values: list[Any], source: SeriesSource) -> RawSeries:
    """Records to floats with their reasons; records outside [start, end] are left out."""
    out_times, out_values, errors = [], [], []
    for time_cell, value_cell in zip(times, values, strict=True):
        time, value = _number(time_cell), _number(value_cell)
        if time is not None and (
            (source.start is not None and time < source.start) or (source.end is not None and time > source.end)
        ):
            continue
        error = ""
        if time is None:
            error = f"time {time_cell!r} is not a finite number"
        elif value is None:
            error = f"value {value_cell!r} is not a finite number"
        out_times.append(math.nan if time is None else time)
        out_values.append(math.nan if value is None else value)
        errors.append(error)
    return RawSeries(name, np.array(out_times, dtype=np.float64), np.array(out_values, dtype=np.float64), errors)


def _column(frame: Any, column: str, where: str) -> list[Any]:
    if column not in frame.columns:
        raise DataError(
            f"data.source.column: {column!r} is not a column of {where} (columns: {', '.join(map(str, frame.columns))})"
        )
    return list(frame[column])


def read_statsmodels(source: StatsmodelsSeriesSource) -> RawSeries:
    from statsmodels import datasets

    column = source.column or DEFAULT_COLUMNS[source.dataset]
    frame = getattr(datasets, source.dataset).load_pandas().data
    if source.dataset == "sunspots":
        times = list(frame["YEAR"])
    elif source.dataset == "co2":  # weekly, indexed by date: decimal years
        index = frame.index
        times = list(index.year + (index.dayofyear - 1) / np.where(index.is_leap_year, 366, 365))
    else:  # macrodata: quarters
        times = list(frame["year"] + (frame["quarter"] - 1) / 4)
    return checked(f"{source.dataset}.{column}", times, _column(frame, column, source.dataset), source)


def read_series_file(source: SeriesFileSource) -> RawSeries:
    import pyarrow as pa
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    fs, path = filesystem(source.path)
    if not fs.exists(path):
        raise DataError(f"data.source.path: {source.path} does not exist")
    suffix = posixpath.splitext(path)[1].lower()
    if suffix not in (".csv", ".parquet"):
        raise DataError(f"data.source.path: {source.path} is neither .csv nor .parquet")
    with fs.open(path, "rb") as handle:
        try:
            if suffix == ".csv":  # cells read as written, so a reject quotes what the file holds
                wanted = [name for name in (source.column, source.time_column) if name]
                as_text = pv.ConvertOptions(column_types=dict.fromkeys(wanted, pa.string()))
                table = pv.read_csv(handle, convert_options=as_text)
            else:
                table = pq.read_table(handle)
        except Exception as error:  # pyarrow's parse errors name the line; keep them
            raise DataError(f"data.source.path: {source.path} cannot be read: {error}") from error
    frame = table.to_pandas()
    values = _column(frame, source.column, source.path)
    times = _column(frame, source.time_column, source.path) if source.time_column else list(range(len(frame)))
    return checked(f"{posixpath.basename(path)}.{source.column}", times, values, source)


def describe_series_file(source: SeriesFileSource) -> dict[str, Any]:
    """The config with the file's size and modification stamp: changes when the file does."""
    fs, path = filesystem(source.path)
    if not fs.exists(path):
        raise DataError(f"data.source.path: {source.path} does not exist")
    return {**source.model_dump(), "files": file_stamps(fs, posixpath.dirname(path), [path])}
