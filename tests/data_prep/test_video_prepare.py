"""prepare for video on a real local Ray: moving digits are drawn the same for the same seed and
move as the construction says; a folder of GIFs, MP4s and folders of frames becomes clips of one
size, split by recording, with rejects and their reasons."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from data_prep.config import DataConfig
from data_prep.errors import DataError
from data_prep.modalities.video.modality import video_info
from data_prep.modalities.video.sources import MovingDigitsSource, moving_digits_video
from data_prep.prepare import prepare
from data_prep.readers import read_split
from storage import read_bytes

pytestmark = pytest.mark.slow


def video_config(source: dict, **extra) -> DataConfig:
    settings = {"frame_size": 16, "clip_frames": 6, "context_frames": 3, "val_fraction": 0.3}
    return DataConfig.model_validate({"source": source, **settings, **extra})


def square_moving(frames: int, side: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A bright square moving one pixel a frame to the right, (T, side, side, 3) uint8."""
    video = np.zeros((frames, side, side, 3), dtype=np.uint8)
    for t in range(frames):
        video[t, side // 4 : side // 2, t : t + side // 4] = colour
    return video


def test_moving_digits_are_seeded_and_stay_on_the_canvas():
    source = MovingDigitsSource(videos=4, frames=30, digits=2, canvas=24, digit_size=10, speed=2.0, seed=3)
    first = moving_digits_video(source, {"id": 1})
    again = moving_digits_video(source, {"id": 1})
    other = moving_digits_video(source.model_copy(update={"seed": 4}), {"id": 1})
    assert first == again and first["frames"] != other["frames"]
    frames = np.frombuffer(first["frames"], dtype=np.uint8).reshape(first["shape"])
    assert frames.shape == (30, 24, 24, 1) and first["label"] in [str(d) for d in range(10)]
    ink = frames.reshape(30, -1).sum(axis=1)
    assert ink.min() > 0  # never leaves the canvas (bounces)
    # It moves: consecutive frames differ, and the ink's centre travels at most the speed (+ rounding).
    rows, cols = np.indices((24, 24))
    weights = frames[..., 0].astype(float)
    centres = np.stack([(weights * rows).sum((1, 2)), (weights * cols).sum((1, 2))], 1) / weights.sum((1, 2))[:, None]
    assert (np.abs(np.diff(frames.astype(int), axis=0)).sum(axis=(1, 2, 3)) > 0).all()
    assert np.abs(np.diff(centres, axis=0)).max() <= 2 * 2.0 + 1


def test_moving_digits_become_clips_of_context_and_future(ray_session, tmp_path):
    config = video_config({"kind": "moving_digits", "videos": 40, "frames": 12, "canvas": 24, "digit_size": 10})
    manifest, _ = prepare(config, str(tmp_path / "store"))
    info = video_info(manifest)
    assert info.frame_shape == [1, 16, 16] and info.clip_frames == 6 and info.context_frames == 3
    assert info.clips["train"] + info.clips["val"] == 80 and info.files["train"] + info.files["val"] == 40
    clips = read_split(manifest, "train")
    assert clips["video"].shape == (info.clips["train"], 6, 1, 16, 16)
    assert clips["video"].min() >= -1 and clips["video"].max() <= 1 and clips["video"].max() > 0.5


def recordings(folder):
    """Two classes: GIFs and MP4s of a moving square, a folder of PNG frames; and what cannot be used."""
    for name, colour in {"red": (255, 0, 0), "green": (0, 255, 0)}.items():
        (folder / name).mkdir(parents=True)
        iio.imwrite(folder / name / "a.gif", square_moving(12, 24, colour), duration=100, loop=0)
        iio.imwrite(folder / name / "b.mp4", square_moving(13, 32, colour), fps=10, codec="libx264")
        frames = folder / name / "c_frames"
        frames.mkdir()
        for t, frame in enumerate(square_moving(7, 20, colour)):
            Image.fromarray(frame).save(frames / f"{t:03d}.png")
    (folder / "red" / "broken.mp4").write_bytes(b"\x00\x00\x00 ftypisom not really a video")
    iio.imwrite(folder / "green" / "short.gif", square_moving(3, 24, (0, 255, 0)), duration=100)
    (folder / "green" / "notes.txt").write_text("not video")
    return folder


def test_video_files_and_frame_folders_become_clips_with_their_rejects(ray_session, tmp_path):
    folder = recordings(tmp_path / "videos")
    config = video_config({"kind": "video_files", "path": f"{folder}/*/**"}, frame_channels=3, max_reject_fraction=0.5)
    manifest, _ = prepare(config, str(tmp_path / "store"))
    info = video_info(manifest)
    assert manifest.class_names == ["green", "red"] and info.frame_shape == [3, 16, 16]
    assert info.files["train"] + info.files["val"] == 6  # a GIF, an MP4 and a frame folder per class
    # 12 frames: 2 clips of 6; 13: 2 (the tail dropped); 7: 1.
    assert info.clips["train"] + info.clips["val"] == 2 * (2 + 2 + 1)
    rejects = [json.loads(line) for line in read_bytes(manifest.rejects["uri"]).decode().splitlines()]
    reasons = {row["key"]: row["reason"] for row in rejects}
    assert set(reasons) == {"red/broken.mp4", "green/short.gif", "green/notes.txt"}
    assert reasons["red/broken.mp4"].startswith("not a video imageio can read")
    assert reasons["green/short.gif"].startswith("3 frames (every 1): shorter than one clip of data.clip_frames=6")
    assert reasons["green/notes.txt"].startswith("not a video file (.txt")
    clips = {split: read_split(manifest, split) for split in ("train", "val")}
    for split in clips.values():
        for video, label in zip(split["video"], split["label"], strict=True):
            colour = {"red": 0, "green": 1}[manifest.class_names[label]]
            brightest = video.reshape(6, 3, -1).max(axis=2).mean(axis=0)  # per channel, over frames
            assert brightest.argmax() == colour, (manifest.class_names[label], brightest)
            assert np.abs(np.diff(video, axis=0)).sum() > 0  # the square moves


def test_recordings_too_short_for_a_clip_fail_naming_the_limit(ray_session, tmp_path):
    folder = tmp_path / "videos" / "any"
    folder.mkdir(parents=True)
    iio.imwrite(folder / "short.gif", square_moving(4, 16, (255, 255, 255)), duration=100)
    with pytest.raises(DataError, match="max_reject_fraction"):
        prepare(video_config({"kind": "video_files", "path": f"{folder}/*"}), str(tmp_path / "store"))


def test_a_clip_with_nothing_to_predict_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="context_frames: 6 leaves nothing to predict"):
        video_config({"kind": "moving_digits"}, context_frames=6)
    with pytest.raises(ValueError, match="digit_size: 40 px digits do not fit a canvas of 32 px"):
        video_config({"kind": "moving_digits", "digit_size": 40})
