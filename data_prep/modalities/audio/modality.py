"""The audio modality: recordings resampled to one rate and cut into labelled clips of int16 samples."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from data_prep.columns import Columns, fixed_width
from data_prep.manifest import Manifest
from data_prep.modalities.audio.settings import AudioPrep
from data_prep.modalities.modality import Modality, details_of

PCM_SCALE = 32768.0  # int16 samples -> [-1, 1)


class AudioInfo(BaseModel):
    """What an audio dataset's clips are (the manifest's `details`)."""

    sample_rate: int
    clip_samples: int
    files: dict[str, int]  # per split: the split is drawn by file, so no recording is in both
    clips: dict[str, int]


def audio_info(manifest: Manifest) -> AudioInfo:
    return details_of(manifest, "audio", AudioInfo)


class AudioModality(Modality[AudioPrep]):
    name: ClassVar[str] = "audio"
    settings = AudioPrep
    placeholder_inputs: ClassVar[dict[str, Any]] = {"clip_samples": 1000}

    def build(self, config: AudioPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
        from data_prep.modalities.audio.build import build_audio  # Ray Data, when a dataset is built

        return build_audio(config, storage, key, description)

    def decode(self, table: pa.Table, manifest: Manifest) -> Columns:
        """`audio` (N, 1, clip_samples) float32 in [-1, 1), int64 `label`."""
        samples = fixed_width(table.column("audio"), "<i2", (1, audio_info(manifest).clip_samples))
        return {
            "audio": samples.astype(np.float32) / PCM_SCALE,
            "label": table.column("label").to_numpy().astype(np.int64),
        }

    def row_bytes(self, manifest: Manifest) -> int:
        return audio_info(manifest).clip_samples * 4 + 8  # float32 samples and the label

    def summary(self, manifest: Manifest) -> dict[str, Any]:
        info = audio_info(manifest)
        return {"clips": info.clips, "sample_rate": info.sample_rate, "num_classes": manifest.num_classes}

    def model_inputs(self, manifest: Manifest) -> dict[str, Any]:
        info = audio_info(manifest)
        return {
            "clip_samples": info.clip_samples,
            "sample_rate": info.sample_rate,
            "num_classes": manifest.num_classes,
            "class_names": manifest.class_names,
        }
