"""prepare for video: recordings (uint8 frames at their own size) -> every data.frame_step-th
frame, centre-cropped to a square, resized to data.frame_size, grey or RGB (data.frame_channels)
-> cut into clips of data.clip_frames (a tail shorter than a clip is dropped) -> a seeded split by
recording -> uint8 clips (frames, C, H, W) with their class in Parquet shards -> manifest
(data_prep/clip_sets.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from data_prep.clip_sets import ClipCounts, CutRecording, build_clip_set
from data_prep.manifest import Manifest
from data_prep.modalities.video.frames import shaped_frames
from data_prep.modalities.video.modality import VideoInfo
from data_prep.modalities.video.settings import VideoPrep
from data_prep.progress import say
from data_prep.transforms import split_of


def cut(config: VideoPrep) -> CutRecording:
    """A Ray Data row function: one recording -> its clips (uint8 bytes), or its reject row."""

    def clips(row: dict[str, Any]) -> list[dict[str, Any]]:
        base = {"file": row["key"], "split": split_of(row["key"], config.split_seed, config.val_fraction)}

        def reject(error: str) -> list[dict[str, Any]]:
            return [{**base, "key": row["key"], "video": b"", "label": "", "error": error}]

        if row["error"]:
            return reject(row["error"])
        frames = np.frombuffer(row["frames"], dtype=np.uint8).reshape(row["shape"])[:: config.frame_step]
        count = len(frames) // config.clip_frames
        if count == 0:
            return reject(
                f"{len(frames)} frames (every {config.frame_step}): shorter than one clip of "
                f"data.clip_frames={config.clip_frames}"
            )
        shaped = shaped_frames(frames[: count * config.clip_frames], config.frame_size, config.frame_channels)
        parts = shaped.reshape(count, config.clip_frames, *shaped.shape[1:])
        return [
            {**base, "key": f"{row['key']}#{i}", "video": part.tobytes(), "label": row["label"], "error": ""}
            for i, part in enumerate(parts)
        ]

    return clips


def build_video(config: VideoPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
    frame_shape = [config.frame_channels, config.frame_size, config.frame_size]
    size = config.frame_size
    say(f"reading {config.source.kind} recordings (clips of {config.clip_frames} frames of {size}x{size})")
    values = config.clip_frames * int(np.prod(frame_shape))

    def details(counts: ClipCounts) -> dict[str, Any]:
        info = VideoInfo(
            frame_shape=frame_shape,
            clip_frames=config.clip_frames,
            context_frames=config.context_frames,
            files=counts.files,
            clips=counts.clips,
        )
        return info.model_dump()

    schema = f"binary (uint8 x frames {config.clip_frames} x {frame_shape})"
    return build_clip_set(
        config,
        storage,
        key,
        description,
        cut=cut(config),
        column="video",
        row_bytes=values * 4 + 8,
        schema=schema,
        details=details,
    )
