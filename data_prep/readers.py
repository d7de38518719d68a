"""Reading a prepared dataset: whole shards, each checked against the manifest's sha256 as it
arrives, decoded into numpy columns. Training asks for rows by id (ShardReader, holding only the
shards under its current window); evaluation reads the first rows it uses and no more.

Whole shards rather than Parquet row groups: a shard is at most `data.shard_mb`, one sequential
read is what object stores serve best, and only a whole file can be checked against its hash.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.columns import Columns
from data_prep.files import read_checked
from data_prep.manifest import Manifest, Shard
from data_prep.modalities.registry import modality_of
from storage.node_cache import NodeCache


def decode_table(table: pa.Table, manifest: Manifest) -> Columns:
    """A shard's table -> the model's columns, as the dataset's modality decodes them."""
    return modality_of(manifest).decode(table, manifest)


def read_shard(manifest: Manifest, shard: Shard, cache: NodeCache | None = None) -> Columns:
    """One shard, fetched whole and checked against the manifest: a missing or damaged shard is a
    DataError that names it (never skipped). With `cache`, the node's copy when it has one."""
    uri = f"{manifest.uri.rstrip('/')}/{shard.path}"
    if cache is None:
        data = read_checked(uri, shard.sha256)
    else:
        data = cache.get(shard.sha256, lambda: read_checked(uri, shard.sha256))
    return decode_table(pq.read_table(io.BytesIO(data)), manifest)


class ShardReader:
    """Rows of a split by their split-wide ids, from at most `max_shards` decoded shards held at
    once (least recently used goes first)."""

    def __init__(self, manifest: Manifest, split: str, max_shards: int, cache: NodeCache | None = None):
        self.manifest, self.shards, self.cache = manifest, manifest.splits[split].shards, cache
        self.first_row = np.concatenate([[0], np.cumsum([s.rows for s in self.shards])]).astype(np.int64)
        self.max_shards = max(1, max_shards)
        self._held: OrderedDict[int, Columns] = OrderedDict()
        self.fetched_bytes = 0  # of shard files read (from the node's cache or not), again after an eviction
        self.most_held = 0

    def shard(self, index: int) -> Columns:
        if index not in self._held:
            self._held[index] = read_shard(self.manifest, self.shards[index], self.cache)
            self.fetched_bytes += self.shards[index].bytes
            self.most_held = max(self.most_held, len(self._held))
            while len(self._held) > self.max_shards:
                self._held.popitem(last=False)
        self._held.move_to_end(index)
        return self._held[index]

    def read(self, rows: np.ndarray) -> Columns:
        """The columns of `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        owner = np.searchsorted(self.first_row, rows, side="right") - 1
        out: Columns = {}
        for index in np.unique(owner):
            chosen = np.flatnonzero(owner == index)
            columns = self.shard(int(index))
            for name, values in columns.items():
                if name not in out:
                    out[name] = np.empty((len(rows), *values.shape[1:]), dtype=values.dtype)
                out[name][chosen] = values[rows[chosen] - self.first_row[index]]
        return out


def iter_shards(manifest: Manifest, split: str) -> Iterator[Columns]:
    for shard in manifest.splits[split].shards:
        yield read_shard(manifest, shard)


def read_split(manifest: Manifest, split: str, limit: int | None = None) -> Columns:
    """The first `limit` rows of a split (all of them when None), reading no shard past them."""
    parts: list[Columns] = []
    held = 0
    for columns in iter_shards(manifest, split):
        parts.append(columns)
        held += len(next(iter(columns.values())))
        if limit is not None and held >= limit:
            break
    return {name: np.concatenate([part[name] for part in parts])[:limit] for name in parts[0]}


def read_arrays(manifest: Manifest, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, C, H, W) float32 in [-1, 1], labels (N,)) of a split's first `limit` rows."""
    columns = read_split(manifest, split, limit)
    return columns["image"], columns["label"]


def read_tokens(manifest: Manifest, split: str, limit: int | None = None) -> np.ndarray:
    """(N, seq_len + 1) int32 token blocks of a text split's first `limit` rows."""
    return read_split(manifest, split, limit)["tokens"]
