"""Sample grids as pictures: a batch of images in [-1, 1] laid out as one PNG-ready image."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


def grid_image(images: torch.Tensor, scale: int | None = None, columns: int | None = None) -> Image.Image:
    """(N, C, H, W) in [-1, 1] -> one picture, `columns` wide (else as square as N allows), small
    images upscaled for viewing."""
    n, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    scale = scale or max(1, 64 // height)
    pad = 1
    canvas = np.ones((rows * (height + pad) + pad, columns * (width + pad) + pad, channels), np.float32)
    pixels = ((images.detach().float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
    for index in range(n):
        r, c = divmod(index, columns)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        canvas[top : top + height, left : left + width] = pixels[index]
    array = (canvas * 255).round().astype(np.uint8)
    image = Image.fromarray(array[..., 0] if channels == 1 else array)
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
