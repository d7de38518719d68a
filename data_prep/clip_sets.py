"""What the modalities of labelled clips (audio clips, video clips) build alike: recordings cut
into clips by a row function, rejects counted per recording, classes named from what was kept,
both splits written as shards of fixed-width rows, and the manifest published last.

A modality gives the row function (one recording -> its clips, or its reject row) and its own
details; the split is drawn by recording, so no recording has clips in both splits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from ray.data.expressions import col

from data_prep.errors import DataError
from data_prep.manifest import Manifest, dataset_uri, publish_new
from data_prep.modalities.base import PrepSettings
from data_prep.progress import counting
from data_prep.shards import new_write_id, record_rejects, write_split
from storage import join

SPLITS = ("train", "val")
CLIPS_PER_BATCH = 256  # a Ray Data batch becomes one block of the shards' stream

# One recording's row ({key, ...source fields}) -> its clips, each {key, file, split, <column>,
# label, error}, or one row with its `error` set (a reject).
CutRecording = Callable[[dict[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class ClipCounts:
    """Recordings and clips kept per split, and the classes named from the kept clips."""

    files: dict[str, int]
    clips: dict[str, int]
    class_names: list[str]


def labelled(column: str, class_names: list[str]) -> Callable[[pa.Table], pa.Table]:
    index = {name: i for i, name in enumerate(class_names)}

    def batch(table: pa.Table) -> pa.Table:
        labels = [index[name] for name in table.column("label").to_pylist()]
        return pa.table({column: table.column(column), "label": pa.array(labels, pa.int64())})

    return batch


def build_clip_set(
    config: PrepSettings,
    storage: str,
    key: str,
    description: dict[str, Any],
    *,
    cut: CutRecording,
    column: str,
    row_bytes: int,
    schema: str,
    details: Callable[[ClipCounts], dict[str, Any]],
) -> Manifest:
    """Cut the source's recordings into clips, write both splits' `column` (described by `schema`)
    and `label` as shards, and publish the manifest with the modality's `details`."""
    uri, write_id = dataset_uri(storage, key), new_write_id()
    total = config.source.expected_records(description)
    clips = counting(config.source.read(), total, "recordings").flat_map(cut).materialize()
    index = clips.select_columns(["key", "file", "split", "label", "error"]).to_pandas()
    rejects_uri = join(uri, write_id, "rejects", "rejects.jsonl")
    # A reject is a recording, so the limit counts recordings, not clips.
    per_recording = index.drop_duplicates("file")[["file", "error"]].rename(columns={"file": "key"})
    rejected = record_rejects(per_recording, rejects_uri, config.max_reject_fraction)
    kept = index[index["error"] == ""]
    for split in SPLITS:
        if not (kept["split"] == split).any():
            raise DataError(f"data.val_fraction: the {split} split has no clips ({len(kept)} in all)")
    class_names = sorted(kept["label"].unique())
    splits = {}
    for split, count in (("train", config.num_shards), ("val", None)):
        rows = clips.filter(expr=(col("error") == "") & (col("split") == split)).map_batches(
            labelled(column, class_names), batch_size=CLIPS_PER_BATCH, batch_format="pyarrow"
        )
        splits[split] = write_split(rows, uri, join(uri, write_id, split), row_bytes, config.shard_mb, count)
    by_split = kept.groupby("split")
    counts = ClipCounts(
        files={s: int(by_split["file"].nunique().get(s, 0)) for s in SPLITS},
        clips={s: int(by_split.size().get(s, 0)) for s in SPLITS},
        class_names=class_names,
    )
    return publish_new(
        key,
        uri,
        description,
        config.model_dump(mode="json"),
        splits,
        rejected,
        rejects_uri,
        modality=config.modality,
        schema_={column: schema, "label": "int64"},
        details=details(counts),
        num_classes=len(class_names),
        class_names=class_names,
    )
