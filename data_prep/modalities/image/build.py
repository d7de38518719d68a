"""prepare for images: raw rows -> decoded, resized, split by a seeded hash of their key -> uint8
pixels in Parquet shards sized by bytes -> manifest (written last)."""

from __future__ import annotations

from typing import Any

from ray.data.expressions import col

from data_prep.errors import DataError
from data_prep.images import stored_levels
from data_prep.manifest import Manifest, dataset_uri, publish_new
from data_prep.modalities.image.settings import ImagePrep
from data_prep.progress import counting, say
from data_prep.shards import new_write_id, record_rejects, write_split
from data_prep.transforms import make_transform
from storage import join

IMAGE_TYPE = "binary (uint8 C,H,W: 0..stored_levels-1 for [0, 1])"


def build_images(config: ImagePrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
    uri = dataset_uri(storage, key)
    write_id = new_write_id()
    channels, native = config.images.image_channels, config.images.image_side
    # One grid for every row: the source's levels unless image_size resizes (then 256).
    levels = stored_levels(config.images.pixel_levels, config.image_size is not None and config.image_size != native)
    transform = make_transform(channels, config.image_size, native, config.split_seed, config.val_fraction, levels)
    say(f"reading and decoding {config.source.kind} images")
    total = config.source.expected_records(description)
    rows = counting(config.source.read().map(transform), total, "images").materialize()

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
    described = dict(
        image_shape=(channels, size, size),
        pixel_levels=config.images.pixel_levels,
        stored_levels=levels,
        num_classes=max(len(names), int(kept["label"].max()) + 1),
        class_names=names,
        domains=domains,
        schema_={"key": "string", "label": "int64", **({"domain": "int64"} if domains else {}), "image": IMAGE_TYPE},
    )
    return publish_new(
        key, uri, description, config.model_dump(mode="json"), splits, rejected, rejects_uri, **described
    )
