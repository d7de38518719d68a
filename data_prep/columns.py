"""A shard's columns as a model reads them: fixed-width binary cells straight to NumPy arrays."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from data_prep.errors import DataError

Columns = dict[str, np.ndarray]


def fixed_width(column: pa.ChunkedArray | pa.Array, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """A binary column whose values all hold `shape` items of `dtype` -> one (N, *shape) array,
    straight from Arrow's value buffer (no Python bytes object per row)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return np.zeros((0, *shape), dtype=dtype)
    offsets_type = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offsets_type)[array.offset : array.offset + len(array) + 1]
    values = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    if len(values) != len(array) * int(np.prod(shape)) * np.dtype(dtype).itemsize:
        raise DataError(f"a {array.type} column whose values are not all {shape} x {dtype}")
    return values.view(dtype).reshape(-1, *shape).copy()
