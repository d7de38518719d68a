"""Layers the GAN and autoencoder families share: an MLP, a strided-conv encoder and its mirror
decoder. A DCGAN's discriminator is a conv encoder ending in one logit and its generator a conv
decoder; a convolutional VAE is the same two halves around a latent code."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from typed_errors import FieldError

Norm = Literal["batch", "none"]


def mlp(sizes: list[int], activation: type[nn.Module] = nn.LeakyReLU) -> nn.Sequential:
    """Linear layers of `sizes` with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if index < len(sizes) - 2:
            layers.append(activation(0.2) if activation is nn.LeakyReLU else activation())
    return nn.Sequential(*layers)


def check_halvable(size: int, depth: int, field: str = "depth") -> None:
    if size % (2**depth) or size // (2**depth) < 1:
        raise FieldError(field, f"{size}px cannot be halved {depth} times")


class ConvEncoder(nn.Module):
    """(N, C, S, S) -> (N, out_features): `depth` stride-2 4x4 convs doubling the channels, then a
    linear map. `norm="none"` for critics whose gradient penalty batch norm would distort."""

    def __init__(
        self, in_channels: int, size: int, base_channels: int, depth: int, out_features: int, norm: Norm = "batch"
    ):
        super().__init__()
        check_halvable(size, depth)
        layers: list[nn.Module] = []
        channels = in_channels
        for level in range(depth):
            out = base_channels * 2**level
            layers.append(nn.Conv2d(channels, out, 4, stride=2, padding=1))
            if norm == "batch" and level > 0:  # not on the first layer, as in DCGAN
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.LeakyReLU(0.2))
            channels = out
        self.convs = nn.Sequential(*layers)
        self.head = nn.Linear(channels * (size // 2**depth) ** 2, out_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(images).flatten(1))


class ConvDecoder(nn.Module):
    """(N, in_features) -> (N, C, S, S): a linear map onto a small grid, then `depth` stride-2
    transposed convs halving the channels, then a 3x3 conv to the image channels (no squashing:
    the family decides between tanh, logits or a Gaussian mean)."""

    def __init__(self, in_features: int, image_shape: tuple[int, int, int], base_channels: int, depth: int):
        super().__init__()
        channels_out, size, _ = image_shape
        check_halvable(size, depth)
        self.start = (base_channels * 2 ** (depth - 1), size // 2**depth)
        channels, grid = self.start
        self.project = nn.Sequential(nn.Linear(in_features, channels * grid * grid), nn.ReLU())
        layers: list[nn.Module] = []
        for level in reversed(range(depth)):
            out = base_channels * 2 ** max(0, level - 1)
            layers += [nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        layers.append(nn.Conv2d(channels, channels_out, 3, padding=1))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        channels, grid = self.start
        return self.deconvs(self.project(vectors).view(-1, channels, grid, grid))


class MLPDecoder(nn.Module):
    """(N, in_features) -> (N, C, H, W) through `depth` hidden layers of `width`."""

    def __init__(self, in_features: int, image_shape: tuple[int, int, int], width: int, depth: int):
        super().__init__()
        self.image_shape = image_shape
        self.layers = mlp([in_features, *[width] * depth, math.prod(image_shape)])

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.layers(vectors).view(-1, *self.image_shape)


class MLPEncoder(nn.Module):
    """(N, C, H, W) -> (N, out_features) through `depth` hidden layers of `width`."""

    def __init__(self, image_features: int, width: int, depth: int, out_features: int):
        super().__init__()
        self.layers = mlp([image_features, *[width] * depth, out_features])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images.flatten(1))


def encoder(
    arch: str,
    in_channels: int,
    image_shape: tuple[int, int, int],
    width: int,
    depth: int,
    out_features: int,
    norm: Norm = "batch",
) -> nn.Module:
    _, height, width_px = image_shape
    if arch == "conv":
        return ConvEncoder(in_channels, height, width, depth, out_features, norm)
    return MLPEncoder(in_channels * height * width_px, width, depth, out_features)


def decoder(arch: str, in_features: int, image_shape: tuple[int, int, int], width: int, depth: int) -> nn.Module:
    if arch == "conv":
        return ConvDecoder(in_features, image_shape, width, depth)
    return MLPDecoder(in_features, image_shape, width, depth)
