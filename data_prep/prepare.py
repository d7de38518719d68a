"""prepare: source -> validated, transformed rows -> Parquet shards (Ray Data) -> manifest.

Content-addressed: the dataset lives at `<storage>/datasets/<fingerprint>/`, where the
fingerprint hashes the source description, the prep config and PREP_CODE_VERSION. A second
pipeline with the same inputs finds the manifest and reuses the shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
import ray.data

from data_prep import sources
from data_prep.config import DataConfig, DigitsSource
from data_prep.errors import DataError
from data_prep.manifest import Manifest, Shard, Split, dataset_uri, find_manifest, publish
from data_prep.transforms import make_transform
from pipelines.storage import filesystem, is_local, join, write_bytes_atomic

# Bump when a change here alters the shards' content: it invalidates every cached dataset.
PREP_CODE_VERSION = "1"
DIGITS_SIZE = 8


def fingerprint(config: DataConfig) -> str:
    prep = config.model_dump(mode="json", exclude={"source", "max_reject_fraction"})
    material = {"source": sources.describe(config.source), "prep": prep, "code": PREP_CODE_VERSION}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def prepare(config: DataConfig, storage: str) -> tuple[Manifest, bool]:
    """The dataset for `config`, prepared now or found in storage; returns (manifest, cache_hit)."""
    key = fingerprint(config)
    cached = find_manifest(storage, key)
    if cached is not None:
        return cached, True
    return _build(config, storage, key), False


def _build(config: DataConfig, storage: str, key: str) -> Manifest:
    uri = dataset_uri(storage, key)
    write_id = f"write-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    channels = 1 if isinstance(config.source, DigitsSource) else config.source.channels
    native = DIGITS_SIZE if isinstance(config.source, DigitsSource) else None
    transform = make_transform(channels, config.image_size, native, config.split_seed, config.val_fraction)
    rows = sources.read(config.source).map(transform).materialize()

    # One pass over the small columns answers every count below without re-running the pipeline.
    index = rows.select_columns(["key", "label", "split", "error"]).to_pandas()
    total, rejected = len(index), index[index["error"] != ""]
    rejects_uri = join(uri, write_id, "rejects", "rejects.jsonl")
    if len(rejected):
        pairs = zip(rejected["key"], rejected["error"], strict=True)
        lines = "".join(json.dumps({"key": key, "reason": reason}) + "\n" for key, reason in pairs)
        write_bytes_atomic(rejects_uri, lines.encode())
    fraction = len(rejected) / max(total, 1)
    if fraction > config.max_reject_fraction:
        raise DataError(
            f"{len(rejected)} of {total} records rejected ({fraction:.1%}), above "
            f"data.max_reject_fraction={config.max_reject_fraction}; reasons in {rejects_uri}")

    kept = index[index["error"] == ""]
    splits = {}
    for split, shard_count in (("train", config.num_shards), ("val", 1)):
        if not (kept["split"] == split).any():
            raise DataError(f"data.val_fraction: the {split} split is empty ({total} records in all)")
        part = rows.filter(lambda row, s=split: row["split"] == s and not row["error"])
        folder = join(uri, write_id, split)
        _write_parquet(part.select_columns(["key", "label", "image"]).repartition(shard_count), folder)
        splits[split] = _describe_split(uri, folder)

    size = config.image_size or DIGITS_SIZE
    names = sources.class_names(config.source)
    manifest = Manifest(
        fingerprint=key, uri=uri, code_version=PREP_CODE_VERSION,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        image_shape=(channels, size, size), num_classes=max(len(names), int(kept["label"].max()) + 1),
        class_names=names, schema_={"key": "string", "label": "int64", "image": "binary (float32 C,H,W)"},
        splits=splits,
        rejects={"count": len(rejected), "uri": rejects_uri if len(rejected) else None},
        source=sources.describe(config.source), prep_config=config.model_dump(mode="json"),
    )
    publish(manifest)
    return manifest


def _write_parquet(dataset: ray.data.Dataset, folder: str) -> None:
    if is_local(folder):
        dataset.write_parquet(folder, compression="zstd")
    else:
        fs, path = filesystem(folder)
        dataset.write_parquet(path, filesystem=fs, compression="zstd")


def _describe_split(dataset_root: str, folder: str) -> Split:
    fs, path = filesystem(folder)
    _, root_path = filesystem(dataset_root)
    shards = []
    for file in sorted(f for f in fs.find(path) if f.endswith(".parquet")):
        with fs.open(file, "rb") as handle:
            data = handle.read()
        rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows  # one read serves hash and row count
        shards.append(Shard(path=file[len(root_path.rstrip("/")) + 1:], rows=rows, bytes=len(data),
                            sha256=hashlib.sha256(data).hexdigest()))
    return Split(rows=sum(s.rows for s in shards), shards=shards)


def describe_result(manifest: Manifest, cache_hit: bool) -> dict[str, Any]:
    """The prepare step's JSON-serialisable result."""
    return {"dataset_uri": manifest.uri, "fingerprint": manifest.fingerprint, "cache_hit": cache_hit,
            "rows": {name: split.rows for name, split in manifest.splits.items()},
            "rejects": manifest.rejects["count"], "image_shape": list(manifest.image_shape),
            "num_classes": manifest.num_classes}
