"""Writing a prepared dataset's pieces: a fresh write folder, rejects, Parquet shards per split.

Shared by the image and the text builders; the manifest that names these files is published
last, by the caller (data_prep/manifest.py). Shards are sized by bytes (`data.shard_mb`) and each
one is hashed as its bytes go out, so nothing is read back to describe it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
from ray.data import Datasink
from ray.data.block import BlockAccessor

from data_prep.errors import DataError
from data_prep.manifest import MEGABYTE, Shard, Split
from storage import filesystem, join, write_bytes_atomic


def new_write_id() -> str:
    return f"write-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def record_rejects(index: pd.DataFrame, rejects_uri: str, max_fraction: float) -> int:
    """Write the rows whose `error` is set as rejects.jsonl; fail when they are too many."""
    total, rejected = len(index), index[index["error"] != ""]
    if len(rejected):
        pairs = zip(rejected["key"], rejected["error"], strict=True)
        lines = "".join(json.dumps({"key": key, "reason": reason}) + "\n" for key, reason in pairs)
        write_bytes_atomic(rejects_uri, lines.encode())
    fraction = len(rejected) / max(total, 1)
    if fraction > max_fraction:
        raise DataError(
            f"{len(rejected)} of {total} records rejected ({fraction:.1%}), above "
            f"data.max_reject_fraction={max_fraction}; reasons in {rejects_uri}"
        )
    return len(rejected)


def rows_per_shard(row_bytes: int, shard_mb: float) -> int:
    """Rows of `row_bytes` (decoded) that make a shard of about `shard_mb`."""
    return max(1, math.floor(shard_mb * MEGABYTE / row_bytes))


class _HashingFile(io.RawIOBase):
    """A writable file that hashes and counts every byte on its way to `target`."""

    def __init__(self, target: Any):
        self.target, self.sha256, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha256.update(view)
        self.size += len(view)
        self.target.write(view)
        return len(view)

    def tell(self) -> int:
        return self.size


class ShardSink(Datasink):
    """Parquet shards named by the write task's index (a retried task rewrites the same files),
    described (rows, bytes, sha256) by the task that wrote them.

    Written here rather than with `Dataset.write_parquet`, whose files would have to be read back
    whole to be hashed."""

    def __init__(self, folder: str, max_rows: int | None = None):
        self.folder, self.max_rows = folder, max_rows
        self.written: list[dict[str, Any]] = []

    def write(self, blocks: Iterable[Any], ctx: Any) -> list[dict[str, Any]]:
        """Shards of `max_rows` rows written as the blocks stream in (the task's last one may be
        smaller): a task holds about one shard, however much it writes."""
        written: list[dict[str, Any]] = []
        pending: list[pa.Table] = []
        held = 0

        def flush(table: pa.Table) -> None:
            written.append(self._write_shard(table, f"shard-{ctx.task_idx:05d}-{len(written):03d}.parquet"))

        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            if not table.num_rows:
                continue
            pending.append(table)
            held += table.num_rows
            while self.max_rows and held >= self.max_rows:
                combined = pa.concat_tables(pending)
                flush(combined.slice(0, self.max_rows))
                rest = combined.slice(self.max_rows)
                pending, held = ([rest] if rest.num_rows else []), rest.num_rows
        if held:
            flush(pa.concat_tables(pending))
        return written

    def _write_shard(self, table: pa.Table, name: str) -> dict[str, Any]:
        uri = join(self.folder, name)
        fs, path = filesystem(uri)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as handle:
            hashing = _HashingFile(handle)
            pq.write_table(table, pa.PythonFile(hashing, mode="w"), compression="zstd")
        return {"uri": uri, "rows": table.num_rows, "bytes": hashing.size, "sha256": hashing.sha256.hexdigest()}

    def on_write_complete(self, write_result: Any) -> None:
        self.written = [shard for task in write_result.write_returns for shard in task]


def _unchanged(batch: pa.Table) -> pa.Table:
    return batch


def write_split(
    dataset: ray.data.Dataset, dataset_root: str, folder: str, row_bytes: int, shard_mb: float, count: int | None
) -> Split:
    """Write `dataset` as Parquet shards into `folder` and describe them: shards of at most
    `shard_mb` (rows of `row_bytes` decoded), gathered as the rows stream by (Ray Data's streaming
    repartition), or exactly `count` shards (data.num_shards: a repartition that holds the whole
    split at once)."""
    if count:
        sink = ShardSink(folder)
        dataset.repartition(count).write_datasink(sink)
    else:
        rows = rows_per_shard(row_bytes, shard_mb)
        sink = ShardSink(folder, rows)
        # A streamed repartition splits large blocks but never joins small ones: a folder of N
        # image files (a block per file) became N one-row shards. Batches of a shard's rows join
        # them first (Ray fuses this pair and bundles its inputs to `rows` rows per task).
        bundled = dataset.map_batches(_unchanged, batch_size=rows, batch_format="pyarrow")
        bundled.repartition(target_num_rows_per_block=rows).write_datasink(sink)
    root = dataset_root.rstrip("/") + "/"
    shards = [
        Shard(path=item["uri"].removeprefix(root), rows=item["rows"], bytes=item["bytes"], sha256=item["sha256"])
        for item in sorted(sink.written, key=lambda item: item["uri"])
    ]
    return Split(rows=sum(s.rows for s in shards), shards=shards)
