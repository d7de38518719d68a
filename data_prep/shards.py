"""Writing a prepared dataset's pieces: a fresh write folder, rejects, Parquet shards per split.

Shared by the image and the text builders; the manifest that names these files is published
last, by the caller (data_prep/manifest.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from datetime import UTC, datetime

import pandas as pd
import pyarrow.parquet as pq
import ray.data

from data_prep.errors import DataError
from data_prep.manifest import Shard, Split
from storage import filesystem, is_local, write_bytes_atomic


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


def write_split(dataset: ray.data.Dataset, dataset_root: str, folder: str) -> Split:
    """Write `dataset` as Parquet shards into `folder` and describe what landed there."""
    if is_local(folder):
        dataset.write_parquet(folder, compression="zstd")
    else:
        fs, path = filesystem(folder)
        dataset.write_parquet(path, filesystem=fs, compression="zstd")
    fs, path = filesystem(folder)
    _, root_path = filesystem(dataset_root)
    shards = []
    for file in sorted(f for f in fs.find(path) if f.endswith(".parquet")):
        with fs.open(file, "rb") as handle:
            data = handle.read()
        rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows  # one read serves hash and row count
        shards.append(
            Shard(
                path=file[len(root_path.rstrip("/")) + 1 :],
                rows=rows,
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return Split(rows=sum(s.rows for s in shards), shards=shards)
