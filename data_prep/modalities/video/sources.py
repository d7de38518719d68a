"""Video sources: each kind's config (a `data.source` of the video modality) and how it reads its
recordings, as a Ray Dataset of `{key, frames, shape, label, error}` rows: uint8 frames
(T, H, W, C) at the recording's own size (the builder crops, resizes and cuts them), the class,
or why the recording cannot be used (a reject with its reason), never a crash.
"""

from __future__ import annotations

import functools
import io
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from data_prep.files import file_stamps, glob_files
from data_prep.modalities.base import SourceConfig
from data_prep.modalities.text.sources import glob_root
from storage import filesystem
from typed_errors import FieldError

VIDEO_SUFFIXES = (".gif", ".mp4", ".webm", ".mov", ".avi", ".mkv")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")  # files of a folder of frames: one recording per folder
MAX_VIDEO_MB = 512  # a larger recording is a reject: cut it first


class VideoSourceConfig(SourceConfig):
    """A source of recordings (sequences of frames)."""

    modality: ClassVar[str] = "video"


class MovingDigitsSource(VideoSourceConfig):
    """Moving digits: scikit-learn's handwritten digits moving in straight lines on a black canvas
    and bouncing off its edges (the Moving MNIST construction of Srivastava et al. 2015, with the
    digits that ship with scikit-learn), seeded, so the same config draws the same videos. Each
    video's class is its first digit."""

    kind: Literal["moving_digits"] = "moving_digits"
    videos: int = Field(1000, gt=0, le=200_000)
    frames: int = Field(20, ge=2, le=1000, description="frames per video (data.clip_frames a clip)")
    digits: int = Field(2, ge=1, le=4, description="digits per video")
    canvas: int = Field(32, ge=8, le=256, description="the canvas' side in pixels")
    digit_size: int = Field(14, ge=4, le=128, description="a digit's side in pixels (Moving MNIST: 28 on 64)")
    speed: float = Field(1.5, gt=0, le=16, description="pixels per frame")
    seed: int = 0

    @model_validator(mode="after")
    def _digits_fit_the_canvas(self) -> MovingDigitsSource:
        if self.digit_size > self.canvas:
            raise FieldError("digit_size", f"{self.digit_size} px digits do not fit a canvas of {self.canvas} px")
        return self

    def describe(self) -> dict[str, Any]:
        import sklearn

        return {**self.model_dump(), "sklearn": sklearn.__version__}

    def expected_records(self, description: dict[str, Any]) -> int | None:
        return self.videos

    def read(self) -> Any:
        import ray.data

        return ray.data.range(self.videos).map(functools.partial(moving_digits_video, self))

    def class_names(self) -> list[str]:
        return [str(digit) for digit in range(10)]


class VideoFilesSource(VideoSourceConfig):
    """Video files (GIF, MP4, WebM, MOV, AVI, MKV through imageio and PyAV) or folders of frames
    (PNG/JPEG files, in name order, one recording per folder) matching a glob on any fsspec
    storage; a recording's class is the folder it sits in (a folder of frames: the folder above)."""

    kind: Literal["video_files"]
    path: str = Field(description="a glob such as clips/*/*.gif, or frames/*/*/*.png for folders of frames")

    def describe(self) -> dict[str, Any]:
        fs, pattern = filesystem(self.path)
        return {**self.model_dump(), "files": file_stamps(fs, glob_root(pattern), glob_files(self.path))}

    def expected_records(self, description: dict[str, Any]) -> int | None:
        return len(recordings(description.get("files", []))) or None

    def read(self) -> Any:
        import ray.data

        fs, pattern = filesystem(self.path)
        root = glob_root(pattern)
        scheme = self.path.split("://")[0] + "://" if "://" in self.path else ""
        keys = {p[len(root) :].lstrip("/"): scheme + p for p in glob_files(self.path)}
        items = [{"key": key, "uris": [keys[part] for part in parts]} for key, parts in recordings(list(keys)).items()]
        return ray.data.from_items(items).map(read_recording)


def recordings(files: list[Any]) -> dict[str, list[str]]:
    """Files (their keys, or their stamps: [key, size, stamp]) grouped into recordings: a video
    file is one, the frame images of one folder are one (keyed by the folder, frames in name order)."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for file in files:
        key = str(file[0]) if isinstance(file, list | tuple) else str(file)
        if Path(key).suffix.lower() in FRAME_SUFFIXES:
            grouped[str(Path(key).parent)].append(key)
        else:
            grouped[key] = [key]
    return {key: sorted(parts) for key, parts in sorted(grouped.items())}


def video_row(key: str, frames: np.ndarray | None = None, label: str = "", error: str = "") -> dict[str, Any]:
    """A recording as the builder takes it: uint8 frames (T, H, W, C) and their shape."""
    frames = np.zeros((0, 1, 1, 1), dtype=np.uint8) if frames is None else frames
    return {"key": key, "frames": frames.tobytes(), "shape": list(frames.shape), "label": label, "error": error}


@functools.cache
def _digit_pictures() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images * (255 / 16)).astype(np.uint8), digits.target


def moving_digits_video(source: MovingDigitsSource, row: dict[str, Any]) -> dict[str, Any]:
    """Video number `row["id"]`: `source.digits` digits, each from a random start in a random
    direction at `source.speed`, reflected at the canvas' edges; overlaps keep the brighter pixel."""
    from PIL import Image

    index = int(row["id"])
    rng = np.random.default_rng([source.seed, index])
    pictures, targets = _digit_pictures()
    chosen = rng.integers(0, len(pictures), source.digits)
    size, room = source.digit_size, source.canvas - source.digit_size
    sprites = [np.asarray(Image.fromarray(pictures[i]).resize((size, size), Image.Resampling.BILINEAR)) for i in chosen]
    position = rng.uniform(0, room, (source.digits, 2))
    angle = rng.uniform(0, 2 * np.pi, source.digits)
    velocity = source.speed * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    frames = np.zeros((source.frames, source.canvas, source.canvas, 1), dtype=np.uint8)
    for t in range(source.frames):
        for sprite, (y, x) in zip(sprites, np.rint(position).astype(int), strict=True):
            window = frames[t, y : y + size, x : x + size, 0]
            np.maximum(window, sprite, out=window)
        position += velocity
        for axis in range(2):  # bounce: reflect the position into [0, room] and turn the velocity
            low, high = position[:, axis] < 0, position[:, axis] > room
            position[low, axis] = -position[low, axis]
            position[high, axis] = 2 * room - position[high, axis]
            velocity[low | high, axis] *= -1
    return video_row(f"video-{index:06d}", frames, str(targets[chosen[0]]))


def read_recording(row: dict[str, Any]) -> dict[str, Any]:
    """A video file's frames, or a folder's frame images stacked, as uint8 RGB; or why not."""
    key, uris = row["key"], list(row["uris"])
    is_folder = len(uris) > 1 or Path(uris[0]).suffix.lower() in FRAME_SUFFIXES
    label = Path(key).parent.name
    suffix = Path(key).suffix.lower()
    if not is_folder and suffix not in VIDEO_SUFFIXES:
        accepted = ", ".join(VIDEO_SUFFIXES + FRAME_SUFFIXES)
        return video_row(key, error=f"not a video file ({suffix or 'no suffix'}; reads {accepted})")
    try:
        fs, _ = filesystem(uris[0])
        size = sum(fs.size(filesystem(uri)[1]) for uri in uris)
        if size > MAX_VIDEO_MB * 1_000_000:
            return video_row(key, error=f"over {MAX_VIDEO_MB} MB: cut it into shorter recordings")
        frames = read_frames(uris)
    except (OSError, RuntimeError, ValueError, TypeError, SyntaxError) as exc:  # what imageio and Pillow raise
        return video_row(key, error=f"not a video imageio can read: {type(exc).__name__}: {str(exc)[:200]}")
    if len(frames) == 0:
        return video_row(key, error="no frames")
    return video_row(key, frames, label)


def read_frames(uris: list[str]) -> np.ndarray:
    """(T, H, W, 3) uint8: one video file's frames, or frame images stacked in the order given."""
    suffix = Path(uris[0]).suffix.lower()
    if len(uris) > 1 or suffix in FRAME_SUFFIXES:
        return np.stack([_read_picture(uri) for uri in uris])
    return _read_video(uris[0], suffix)


def _read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as handle:
        return handle.read()


def _read_picture(uri: str) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(_read_bytes(uri))) as picture:
        return np.asarray(picture.convert("RGB"))


def _read_video(uri: str, suffix: str) -> np.ndarray:
    """(T, H, W, 3) uint8: GIFs through Pillow, the rest through PyAV (imageio's plugins)."""
    import imageio.v3 as iio

    plugin = "pillow" if suffix == ".gif" else "pyav"
    frames = np.asarray(iio.imread(_read_bytes(uri), index=None, extension=suffix, plugin=plugin))
    if frames.ndim == 3:  # grey frames
        frames = frames[..., None]
    if frames.ndim != 4:
        raise ValueError(f"frames of shape {frames.shape}, not (frames, height, width, channels)")
    return np.repeat(frames, 3, axis=3) if frames.shape[3] == 1 else frames[..., :3]
