"""Token streams cut into fixed-length blocks: what a text or music dataset's shards hold.

Each piece's ids are followed by an end id, the pieces of a batch laid end to end and cut into
blocks of `block_tokens` consecutive ids; the tail that does not fill a block is dropped (at most
one block's worth per batch). The column is built on the ids' own buffer: no Python object per
block, whose freed memory a long-lived worker would not give back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

TOKEN_DTYPE = "<i4"


def pack_blocks(encoded: Sequence[np.ndarray], eot_id: int, block_tokens: int) -> pa.Table:
    """`tokens`: binary rows of `block_tokens` little-endian int32 ids."""
    eot = np.array([eot_id], dtype=TOKEN_DTYPE)
    parts = [part for ids in encoded for part in (ids.astype(TOKEN_DTYPE, copy=False), eot)]
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype=TOKEN_DTYPE)
    count = len(stream) // block_tokens
    data = np.ascontiguousarray(stream[: count * block_tokens])
    offsets = np.arange(count + 1, dtype=np.int32) * (block_tokens * 4)
    blocks = pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pa.table({"tokens": blocks})
