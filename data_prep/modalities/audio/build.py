"""prepare for audio: recordings (mono float32 at their own rate) -> resampled to data.sample_rate
(a polyphase filter, scipy's resample_poly) -> cut into clips of data.clip_seconds (a tail
shorter than a clip is dropped) -> a seeded split by recording -> int16 clips with their class in
Parquet shards sized by bytes -> manifest (data_prep/clip_sets.py)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from data_prep.clip_sets import ClipCounts, CutRecording, build_clip_set
from data_prep.manifest import Manifest
from data_prep.modalities.audio.modality import PCM_SCALE, AudioInfo
from data_prep.modalities.audio.settings import AudioPrep
from data_prep.progress import say
from data_prep.transforms import split_of


def resampled(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    from scipy.signal import resample_poly

    ratio = Fraction(target, rate).limit_denominator(1000)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def cut(config: AudioPrep) -> CutRecording:
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


def build_audio(config: AudioPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
    clip_samples = round(config.sample_rate * config.clip_seconds)
    say(f"reading {config.source.kind} recordings (resampled to {config.sample_rate} Hz, clips of {clip_samples})")

    def details(counts: ClipCounts) -> dict[str, Any]:
        info = AudioInfo(
            sample_rate=config.sample_rate, clip_samples=clip_samples, files=counts.files, clips=counts.clips
        )
        return info.model_dump()

    schema = f"binary (int16 little-endian x {clip_samples})"
    return build_clip_set(
        config,
        storage,
        key,
        description,
        cut=cut(config),
        column="audio",
        row_bytes=clip_samples * 4 + 8,
        schema=schema,
        details=details,
    )
