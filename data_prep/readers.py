"""Reading a prepared dataset: verified manifest first, then Ray Data (training) or pyarrow
(evaluation, small splits)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data

from data_prep.images import from_bytes
from data_prep.manifest import Manifest
from storage import filesystem, is_local


def decode_tokens(column: list[bytes] | np.ndarray, block_tokens: int) -> np.ndarray:
    """A column of token blocks -> one (N, seq_len + 1) int32 array."""
    if len(column) == 0:
        return np.zeros((0, block_tokens), dtype=np.int32)
    return np.frombuffer(b"".join(column), dtype="<i4").reshape(-1, block_tokens).astype(np.int32)


def ray_dataset(manifest: Manifest, split: str) -> ray.data.Dataset:
    """The split as a Ray Dataset: `image` (C, H, W) float32 arrays and int64 `label`s, or, for
    text, `tokens` blocks of seq_len + 1 int32 ids."""
    uris = manifest.shard_uris(split)
    if is_local(uris[0]):
        dataset = ray.data.read_parquet(uris)
    else:
        fs, _ = filesystem(uris[0])
        dataset = ray.data.read_parquet([filesystem(u)[1] for u in uris], filesystem=fs)
    if manifest.text is not None:
        block_tokens = manifest.text.seq_len + 1
        return dataset.map_batches(
            lambda batch: {"tokens": decode_tokens(batch["tokens"], block_tokens)}, batch_format="numpy"
        )
    shape = manifest.images

    def decode(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"image": from_bytes(batch["image"], shape), "label": batch["label"].astype(np.int64)}

    return dataset.map_batches(decode, batch_format="numpy")


def _read_tables(manifest: Manifest, split: str, columns: list[str]) -> list[pa.Table]:
    tables = []
    for uri in manifest.shard_uris(split):
        fs, path = filesystem(uri)
        with fs.open(path, "rb") as handle:
            tables.append(pq.read_table(handle, columns=columns))
    return tables


def read_arrays(manifest: Manifest, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, C, H, W) float32 in [-1, 1], labels (N,)) of a split, read with pyarrow."""
    tables = _read_tables(manifest, split, ["image", "label"])
    images = [from_bytes(table.column("image").to_pylist(), manifest.images) for table in tables]
    return np.concatenate(images), np.concatenate([table.column("label").to_numpy() for table in tables])


def read_tokens(manifest: Manifest, split: str) -> np.ndarray:
    """(N, seq_len + 1) int32 token blocks of a text split, read with pyarrow."""
    block_tokens = manifest.tokens.seq_len + 1
    tables = _read_tables(manifest, split, ["tokens"])
    return np.concatenate([decode_tokens(table.column("tokens").to_pylist(), block_tokens) for table in tables])
