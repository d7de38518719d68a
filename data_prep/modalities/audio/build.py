"""prepare for audio: recordings (mono float32 at their own rate) -> resampled to data.sample_rate
(a polyphase filter, scipy's resample_poly) -> cut into clips of data.clip_seconds (a tail
shorter than a clip is dropped) -> a seeded split by recording -> int16 clips with their class in
Parquet shards sized by bytes -> manifest."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
from ray.data.expressions import col

from data_prep.errors import DataError
from data_prep.manifest import Manifest, dataset_uri, publish_new
from data_prep.modalities.audio.modality import PCM_SCALE, AudioInfo
from data_prep.modalities.audio.settings import AudioPrep
from data_prep.progress import counting, say
from data_prep.shards import new_write_id, record_rejects, write_split
from data_prep.transforms import split_of
from storage import join

SPLITS = ("train", "val")
CLIPS_PER_BATCH = 256  # a Ray Data batch becomes one block of the shards' stream


def resampled(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(target, rate).limit_denominator(1000)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def cut(config: AudioPrep):
    """A Ray Data row function: one recording -> its clips (int16 bytes), or its reject row."""
    clip_samples = round(config.sample_rate * config.clip_seconds)

    def clips(row: dict[str, Any]) -> list[dict[str, Any]]:
        base = {"file": row["key"], "split": split_of(row["key"], config.split_seed, config.val_fraction)}
        if row["error"]:
            return [{**base, "key": row["key"], "audio": b"", "label": "", "error": row["error"]}]
        audio = resampled(np.frombuffer(row["audio"], dtype=np.float32), int(row["rate"]), config.sample_rate)
        count = len(audio) // clip_samples
        if count == 0:
            seconds = len(audio) / config.sample_rate
            error = f"{seconds:.2f} s long: shorter than one clip of data.clip_seconds={config.clip_seconds}"
            return [{**base, "key": row["key"], "audio": b"", "label": "", "error": error}]
        pcm = np.clip(np.round(audio[: count * clip_samples] * PCM_SCALE), -32768, 32767).astype("<i2")
        return [
            {**base, "key": f"{row['key']}#{i}", "audio": part.tobytes(), "label": row["label"], "error": ""}
            for i, part in enumerate(pcm.reshape(count, clip_samples))
        ]

    return clips


def labelled(class_names: list[str]):
    index = {name: i for i, name in enumerate(class_names)}

    def batch(table: pa.Table) -> pa.Table:
        labels = [index[name] for name in table.column("label").to_pylist()]
        return pa.table({"audio": table.column("audio"), "label": pa.array(labels, pa.int64())})

    return batch


def build_audio(config: AudioPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
    uri, write_id = dataset_uri(storage, key), new_write_id()
    clip_samples = round(config.sample_rate * config.clip_seconds)
    say(f"reading {config.source.kind} recordings (resampled to {config.sample_rate} Hz, clips of {clip_samples})")
    total = config.source.expected_records(description)
    clips = counting(config.source.read(), total, "recordings").flat_map(cut(config)).materialize()
    index = clips.select_columns(["key", "file", "split", "label", "error"]).to_pandas()
    rejects_uri = join(uri, write_id, "rejects", "rejects.jsonl")
    # A reject is a recording, so the limit counts recordings, not clips.
    recordings = index.drop_duplicates("file")[["file", "error"]].rename(columns={"file": "key"})
    rejected = record_rejects(recordings, rejects_uri, config.max_reject_fraction)
    kept = index[index["error"] == ""]
    for split in SPLITS:
        if not (kept["split"] == split).any():
            raise DataError(f"data.val_fraction: the {split} split has no clips ({len(kept)} in all)")
    class_names = sorted(kept["label"].unique())
    splits = {}
    for split, count in (("train", config.num_shards), ("val", None)):
        rows = clips.filter(expr=(col("error") == "") & (col("split") == split)).map_batches(
            labelled(class_names), batch_size=CLIPS_PER_BATCH, batch_format="pyarrow"
        )
        splits[split] = write_split(rows, uri, join(uri, write_id, split), clip_samples * 4 + 8, config.shard_mb, count)
    by_split = kept.groupby("split")
    info = AudioInfo(
        sample_rate=config.sample_rate,
        clip_samples=clip_samples,
        files={s: int(by_split["file"].nunique().get(s, 0)) for s in SPLITS},
        clips={s: int(by_split.size().get(s, 0)) for s in SPLITS},
    )
    described = dict(
        modality="audio",
        schema_={"audio": f"binary (int16 little-endian x {clip_samples})", "label": "int64"},
        details=info.model_dump(),
        num_classes=len(class_names),
        class_names=class_names,
    )
    return publish_new(
        key, uri, description, config.model_dump(mode="json"), splits, rejected, rejects_uri, **described
    )
