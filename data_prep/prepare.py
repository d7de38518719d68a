"""prepare: source -> validated, transformed rows -> Parquet shards (Ray Data) -> manifest.

Content-addressed: the dataset lives at `<storage>/datasets/<fingerprint>/`, where the
fingerprint hashes the source description, the prep config and PREP_CODE_VERSION. A second
pipeline with the same inputs finds the manifest and reuses the shards.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from data_prep.manifest import PREP_CODE_VERSION, Manifest, find_manifest
from data_prep.modalities.base import PrepSettings
from data_prep.modalities.registry import modality_named, modality_of
from data_prep.progress import Report, reporting, say


def describe_source(config: PrepSettings) -> dict[str, Any]:
    """The source's description (file names, sizes, stamps): one listing of the files."""
    return config.source.describe()


def fingerprint(config: PrepSettings, source_description: dict[str, Any] | None = None) -> str:
    # Only the fields that shape this modality's shards: an image dataset's fingerprint does not
    # change when a text-only default does.
    prep = config.model_dump(mode="json", include=set(modality_named(config.modality).settings.shaping_fields()))
    material = {"source": source_description or describe_source(config), "prep": prep, "code": PREP_CODE_VERSION}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def prepare(config: PrepSettings, storage: str, report: Report | None = None) -> tuple[Manifest, bool]:
    """The dataset for `config` (the `data:` section, data_prep.config.DataConfig, or one
    modality's settings), prepared now or found in storage; returns (manifest, cache_hit).
    `report` (the step's console) hears what it does as it does it (data_prep/progress.py)."""
    with reporting(report):
        description = describe_source(config)  # listed once: for the fingerprint and the manifest
        key = fingerprint(config, description)
        say(f"source {config.source.kind}{_size(description)}: dataset {key}")
        cached = find_manifest(storage, key)
        if cached is not None:
            say(f"dataset {key} is in storage already: nothing to read")
            return cached, True
        started = time.monotonic()
        manifest = modality_named(config.modality).build(config, storage, key, description)
        say(_written(manifest, time.monotonic() - started))
        return manifest, False


def _size(description: dict[str, Any]) -> str:
    """ ", 1,204 files, 35.2 MB" for a source of files (what its description lists)."""
    files = description.get("files")
    if not isinstance(files, list) or not files:
        return ""
    size = sum(entry[1] or 0 for entry in files)
    return f", {len(files):,} files, {size / 1e6:.1f} MB"


def _written(manifest: Manifest, seconds: float) -> str:
    stored = sum(shard.bytes for split in manifest.splits.values() for shard in split.shards)
    rows = ", ".join(f"{name} {split.rows:,}" for name, split in manifest.splits.items())
    return (
        f"wrote {rows} rows ({manifest.rejects['count']} rejected) in "
        f"{sum(len(split.shards) for split in manifest.splits.values())} shards, {stored / 1e6:.1f} MB, "
        f"in {seconds:.1f} s ({stored / 1e6 / max(seconds, 1e-3):.1f} MB/s)"
    )


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
