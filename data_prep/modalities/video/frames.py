"""Frames to the shape a video dataset holds, for the builder and for a clip a user gives a
trained model (`genpipe sample --input clip.gif`): both must see the same crop, size and colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.errors import DataError
from data_prep.modalities.video.sources import FRAME_SUFFIXES, VIDEO_SUFFIXES, read_frames
from storage import filesystem


def shaped_frames(frames: np.ndarray, size: int, channels: int) -> np.ndarray:
    """(T, H, W, C) uint8 -> (T, channels, size, size) uint8: centre-cropped to a square, resized
    (Pillow's area filter when shrinking, bilinear when growing), grey by ITU-R 601-2 luma."""
    from PIL import Image

    height, width = frames.shape[1:3]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = frames[:, top : top + side, left : left + side]
    mode = "L" if channels == 1 else "RGB"
    shaped = []
    for frame in square:
        picture = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
        picture = picture.convert(mode)
        if side != size:
            picture = picture.resize((size, size), Image.Resampling.BOX if side > size else Image.Resampling.BILINEAR)
        shaped.append(np.asarray(picture).reshape(size, size, channels))
    return np.stack(shaped).transpose(0, 3, 1, 2)


def load_clip(uri: str, frame_shape: tuple[int, int, int]) -> np.ndarray:
    """A video file, or a folder of frame images, as (T, C, H, W) float32 in [-1, 1] shaped as a
    dataset of `frame_shape` holds its frames; a DataError naming the file when it cannot be read."""
    fs, path = filesystem(uri)
    scheme = uri.split("://")[0] + "://" if "://" in uri else ""
    if fs.isdir(path):
        uris = sorted(scheme + p for p in fs.ls(path, detail=False) if Path(p).suffix.lower() in FRAME_SUFFIXES)
        if not uris:
            raise DataError(f"{uri}: a folder without frames ({', '.join(FRAME_SUFFIXES)})")
    elif Path(path).suffix.lower() in VIDEO_SUFFIXES:
        uris = [uri]
    else:
        raise DataError(f"{uri}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")
    try:
        frames = read_frames(uris)
    except (OSError, RuntimeError, ValueError, TypeError, SyntaxError) as exc:
        raise DataError(f"{uri}: not a video imageio can read: {type(exc).__name__}: {str(exc)[:200]}") from None
    channels, size, _ = frame_shape
    return shaped_frames(frames, size, channels).astype(np.float32) / 127.5 - 1
