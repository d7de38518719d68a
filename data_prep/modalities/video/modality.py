"""The video modality: recordings cut into labelled clips of frames, context and future."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from data_prep.columns import Columns, fixed_width
from data_prep.manifest import Manifest
from data_prep.modalities.modality import Modality, details_of
from data_prep.modalities.video.settings import VideoPrep


class VideoInfo(BaseModel):
    """What a video dataset's clips are (the manifest's `details`)."""

    frame_shape: list[int]  # channels, height, width
    clip_frames: int
    context_frames: int
    files: dict[str, int]  # per split: the split is drawn by recording, so none is in both
    clips: dict[str, int]

    @property
    def clip_shape(self) -> tuple[int, ...]:
        return (self.clip_frames, *self.frame_shape)


def video_info(manifest: Manifest) -> VideoInfo:
    return details_of(manifest, "video", VideoInfo)


class VideoModality(Modality[VideoPrep]):
    name: ClassVar[str] = "video"
    settings = VideoPrep
    placeholder_inputs: ClassVar[dict[str, Any]] = {
        "frame_shape": (1, 64, 64),
        "clip_frames": 1000,
        "context_frames": 999,
    }

    def build(self, config: VideoPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
        from data_prep.modalities.video.build import build_video  # Ray Data, when a dataset is built

        return build_video(config, storage, key, description)

    def decode(self, table: pa.Table, manifest: Manifest) -> Columns:
        """`video` (N, frames, C, H, W) float32 in [-1, 1], int64 `label`."""
        frames = fixed_width(table.column("video"), "u1", video_info(manifest).clip_shape)
        return {
            "video": frames.astype(np.float32) / 127.5 - 1,
            "label": table.column("label").to_numpy().astype(np.int64),
        }

    def row_bytes(self, manifest: Manifest) -> int:
        return int(np.prod(video_info(manifest).clip_shape)) * 4 + 8  # float32 frames and the label

    def summary(self, manifest: Manifest) -> dict[str, Any]:
        info = video_info(manifest)
        return {"clips": info.clips, "frame_shape": info.frame_shape, "num_classes": manifest.num_classes}

    def model_inputs(self, manifest: Manifest) -> dict[str, Any]:
        info = video_info(manifest)
        return {
            "frame_shape": tuple(info.frame_shape),
            "clip_frames": info.clip_frames,
            "context_frames": info.context_frames,
            "num_classes": manifest.num_classes,
            "class_names": manifest.class_names,
        }
