"""prepare: source -> validated, transformed rows -> Parquet shards (Ray Data) -> manifest.

Content-addressed: the dataset lives at `<storage>/datasets/<fingerprint>/`, where the
fingerprint hashes the source description, the prep config and PREP_CODE_VERSION. A second
pipeline with the same inputs finds the manifest and reuses the shards.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from data_prep.manifest import PREP_CODE_VERSION, Manifest, find_manifest
from data_prep.modalities.base import PrepSettings
from data_prep.modalities.registry import modality_named, modality_of


def describe_source(config: PrepSettings) -> dict[str, Any]:
    """The source's description (file names, sizes, stamps): one listing of the files."""
    return config.source.describe()


def fingerprint(config: PrepSettings, source_description: dict[str, Any] | None = None) -> str:
    # Only the fields that shape this modality's shards: an image dataset's fingerprint does not
    # change when a text-only default does.
    prep = config.model_dump(mode="json", include=set(modality_named(config.modality).settings.shaping_fields()))
    material = {"source": source_description or describe_source(config), "prep": prep, "code": PREP_CODE_VERSION}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def prepare(config: PrepSettings, storage: str) -> tuple[Manifest, bool]:
    """The dataset for `config` (the `data:` section, data_prep.config.DataConfig, or one
    modality's settings), prepared now or found in storage; returns (manifest, cache_hit)."""
    description = describe_source(config)  # listed once: for the fingerprint and the manifest
    key = fingerprint(config, description)
    cached = find_manifest(storage, key)
    if cached is not None:
        return cached, True
    return modality_named(config.modality).build(config, storage, key, description), False


def describe_result(manifest: Manifest, cache_hit: bool) -> dict[str, Any]:
    """The prepare step's JSON-serialisable result."""
    result = {
        "dataset_uri": manifest.uri,
        "fingerprint": manifest.fingerprint,
        "cache_hit": cache_hit,
        "rows": {name: split.rows for name, split in manifest.splits.items()},
        "rejects": manifest.rejects["count"],
    }
    return {**result, **modality_of(manifest).summary(manifest)}
