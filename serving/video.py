"""Clips of frames made visible: animated GIFs, MP4s and strips of frames, for `genpipe sample`
and the evaluation's artifacts."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from typed_errors import OptionError

FRAME_SCALE = 4  # frames are small (16-64 px): shown this many times larger
SUFFIXES = (".gif", ".mp4", ".png")


def to_pixels(frames: np.ndarray, scale: int = FRAME_SCALE) -> np.ndarray:
    """(T, C, H, W) in [-1, 1] -> (T, H * scale, W * scale, 3) uint8, nearest-neighbour upscaled."""
    pixels = np.clip(np.rint((frames + 1) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return pixels.repeat(scale, axis=1).repeat(scale, axis=2)


def side_by_side(*clips: np.ndarray, gap: int = 2) -> np.ndarray:
    """Clips of the same length (T, H, W, 3) next to each other, a grey gap between."""
    height = clips[0].shape[1]
    spacer = np.full((len(clips[0]), height, gap, 3), 128, dtype=np.uint8)
    parts = [part for clip in clips for part in (clip, spacer)][:-1]
    return np.concatenate(parts, axis=2)


def truth_over_prediction(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(N, T, C, H, W) true and predicted frames in [-1, 1] -> one (H', W', 3) uint8 picture:
    per clip, its true frames in a row over its predicted ones."""
    rows = [
        np.concatenate(list(to_pixels(clip[index])), axis=1)
        for index in range(len(truth))
        for clip in (truth, predicted)
    ]
    return np.concatenate(rows, axis=0)


def gif_bytes(pixels: np.ndarray, fps: float) -> bytes:
    """(T, H, W, 3) uint8 as an animated GIF that loops."""
    from PIL import Image

    pictures = [Image.fromarray(frame) for frame in pixels]
    buffer = io.BytesIO()
    duration = max(20, round(1000 / fps))
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=duration, loop=0)
    return buffer.getvalue()


def png_bytes(picture: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def strip_png(pixels: np.ndarray) -> bytes:
    """(T, H, W, 3) uint8 frames left to right in one PNG."""
    return png_bytes(np.concatenate(list(pixels), axis=1))


def mp4_bytes(pixels: np.ndarray, fps: float) -> bytes:
    import imageio.v3 as iio

    even = pixels[:, : pixels.shape[1] // 2 * 2, : pixels.shape[2] // 2 * 2]  # H.264 wants even sides
    return iio.imwrite("<bytes>", even, extension=".mp4", plugin="pyav", codec="libx264", fps=fps)


@dataclass(frozen=True)
class Video:
    """A predicted clip: the context frames it was given and the frames predicted after them,
    both (T, C, H, W) in [-1, 1]; its files show the context, then the prediction (a red bar
    under the predicted frames)."""

    context: np.ndarray
    predicted: np.ndarray
    fps: float = 5.0
    default_file: ClassVar[str] = "prediction.gif"

    def pixels(self) -> np.ndarray:
        frames = np.concatenate([to_pixels(self.context), to_pixels(self.predicted)])
        marked = np.concatenate([frames, np.zeros((len(frames), 3, frames.shape[2], 3), dtype=np.uint8)], axis=1)
        marked[len(self.context) :, -3:, :, 0] = 255
        return marked

    def file_bytes(self, suffix: str) -> bytes:
        """The clip as the file a suffix names: .gif (animated), .mp4, or .png (the frames in a row)."""
        suffix = suffix.lower()
        if suffix == ".gif":
            return gif_bytes(self.pixels(), self.fps)
        if suffix == ".mp4":
            return mp4_bytes(self.pixels(), self.fps)
        if suffix == ".png":
            return strip_png(self.pixels())
        raise OptionError("out", f"a predicted clip is written as {', '.join(SUFFIXES)}, not {suffix or 'no suffix'}")
