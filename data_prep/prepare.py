"""prepare: source -> validated, transformed rows -> Parquet shards (Ray Data) -> manifest.

Content-addressed: the dataset lives at `<storage>/datasets/<fingerprint>/`, where the
fingerprint hashes the source description, the prep config and PREP_CODE_VERSION. A second
pipeline with the same inputs finds the manifest and reuses the shards.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from ray.data.expressions import col

from data_prep.config import DataConfig
from data_prep.errors import DataError
from data_prep.images import stored_levels
from data_prep.manifest import PREP_CODE_VERSION, Manifest, dataset_uri, find_manifest, publish
from data_prep.shards import new_write_id, record_rejects, write_split
from data_prep.transforms import make_transform
from storage import join

IMAGE_TYPE = "binary (uint8 C,H,W: 0..stored_levels-1 for [0, 1])"


def describe_source(config: DataConfig) -> dict[str, Any]:
    """The source's description (file names, sizes, stamps): one listing of the files."""
    return config.source.describe()


def fingerprint(config: DataConfig, source_description: dict[str, Any] | None = None) -> str:
    # Only the fields that shape this modality's shards: an image dataset's fingerprint does not
    # change when a text-only default does.
    unused = {
        "image": {"seq_len", "tokenizer", "split_at"},
        "text": {"image_size", "split_at"},
        "series": {"image_size", "tokenizer", "split_seed"},
    }[config.modality]
    prep = config.model_dump(mode="json", exclude={"source", "max_reject_fraction", *unused})
    material = {"source": source_description or describe_source(config), "prep": prep, "code": PREP_CODE_VERSION}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def prepare(config: DataConfig, storage: str) -> tuple[Manifest, bool]:
    """The dataset for `config`, prepared now or found in storage; returns (manifest, cache_hit)."""
    description = describe_source(config)  # listed once: for the fingerprint and the manifest
    key = fingerprint(config, description)
    cached = find_manifest(storage, key)
    if cached is not None:
        return cached, True
    if config.modality == "text":
        from data_prep.text_prepare import build_text

        return build_text(config, storage, key, description), False
    if config.modality == "series":
        from data_prep.series_prepare import build_series

        return build_series(config, storage, key, description), False
    return _build_images(config, storage, key, description), False


def _build_images(config: DataConfig, storage: str, key: str, description: dict[str, Any]) -> Manifest:
    uri = dataset_uri(storage, key)
    write_id = new_write_id()
    channels, native = config.source.image_channels, config.source.image_side
    # One grid for every row: the source's levels unless image_size resizes (then 256).
    levels = stored_levels(config.source.pixel_levels, config.image_size is not None and config.image_size != native)
    transform = make_transform(channels, config.image_size, native, config.split_seed, config.val_fraction, levels)
    rows = config.source.read().map(transform).materialize()

    # One pass over the small columns answers every count below without re-running the pipeline.
    domains = config.source.domains
    domain_column = ["domain"] if domains else []  # a translation dataset's rows carry their domain
    index = rows.select_columns(["key", "label", "split", "error", *domain_column]).to_pandas()
    rejects_uri = join(uri, write_id, "rejects", "rejects.jsonl")
    rejected = record_rejects(index, rejects_uri, config.max_reject_fraction)

    kept = index[index["error"] == ""]
    size = int(config.image_size or native or 0)  # one of them is set: DataConfig checks it
    splits = {}
    if domains:
        for domain, name in enumerate(domains.names):
            if not (kept["domain"] == domain).any():
                raise DataError(f"data.source: domain {name!r} has no usable images")
    row_bytes = channels * size * size * 4 + 8  # decoded (float32), as readers hold a shard: 1/4 of it is stored
    for split, count in (("train", config.num_shards), ("val", None)):
        if not (kept["split"] == split).any():
            raise DataError(f"data.val_fraction: the {split} split is empty ({len(index)} records in all)")
        part = rows.filter(expr=(col("split") == split) & (col("error") == ""))
        columns = part.select_columns(["key", "label", *domain_column, "image"])
        splits[split] = write_split(columns, uri, join(uri, write_id, split), row_bytes, config.shard_mb, count)

    names = config.source.class_names()
    manifest = Manifest(
        fingerprint=key,
        uri=uri,
        code_version=PREP_CODE_VERSION,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        image_shape=(channels, size, size),
        pixel_levels=config.source.pixel_levels,
        stored_levels=levels,
        num_classes=max(len(names), int(kept["label"].max()) + 1),
        class_names=names,
        domains=domains,
        schema_={"key": "string", "label": "int64", **({"domain": "int64"} if domains else {}), "image": IMAGE_TYPE},
        splits=splits,
        rejects={"count": rejected, "uri": rejects_uri if rejected else None},
        source=description,
        prep_config=config.model_dump(mode="json"),
    )
    publish(manifest)
    return manifest


def describe_result(manifest: Manifest, cache_hit: bool) -> dict[str, Any]:
    """The prepare step's JSON-serialisable result."""
    result = {
        "dataset_uri": manifest.uri,
        "fingerprint": manifest.fingerprint,
        "cache_hit": cache_hit,
        "rows": {name: split.rows for name, split in manifest.splits.items()},
        "rejects": manifest.rejects["count"],
    }
    if manifest.text:
        return {**result, "tokens": manifest.text.tokens_in_blocks, "vocab_size": manifest.text.vocab_size}
    if manifest.series:
        return {**result, "series": manifest.series.name, "values": manifest.series.values}
    return {**result, "image_shape": list(manifest.images), "num_classes": manifest.num_classes}
