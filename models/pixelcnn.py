"""PixelCNN: an autoregressive image model, p(x) = prod_i p(x_i | x_<i) in raster order
(van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders").

Gated blocks with a vertical stack (the rows above) and a horizontal stack (the pixels to the left
in the row), so the receptive field has no blind spot; the first block's masks exclude the centre
(type A), later ones include it (type B). The output is a categorical distribution over the
source's intensity levels per pixel and channel, so the NLL is exact: bits per dimension without
bounds or dequantisation. The channels of one pixel are predicted from the pixels before it, not
from each other: still a normalised density, simpler than the paper's R -> G -> B masking.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.likelihood import DiscreteImageConfig, ExactLikelihood, from_levels, to_levels


class PixelCNNConfig(DiscreteImageConfig):
    channels: int = Field(64, gt=0, description="feature maps of every gated block")
    layers: int = Field(6, gt=0, description="gated blocks after the first (type A) one")
    kernel: int = Field(5, ge=3, description="odd kernel size of the stacks' masked convolutions")
    temperature: float = Field(1.0, gt=0, description="sampling: the categorical's temperature")


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel is multiplied by a fixed 0/1 mask (what a pixel may see)."""

    mask: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int, mask: torch.Tensor):
        height, width = mask.shape
        super().__init__(in_channels, out_channels, (height, width), padding=(height // 2, width // 2))
        self.register_buffer("mask", mask[None, None].clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask.to(self.weight.dtype), self.bias, padding=self.padding)


def vertical_mask(kernel: int, include_centre_row: bool) -> torch.Tensor:
    """The rows above the pixel (and its own row, type B): what the vertical stack sees."""
    mask = torch.ones(kernel, kernel)
    mask[kernel // 2 + (1 if include_centre_row else 0) :] = 0
    return mask


def horizontal_mask(kernel: int, include_centre: bool) -> torch.Tensor:
    """The pixels to the left in the row (and the pixel itself, type B)."""
    mask = torch.ones(1, kernel)
    mask[0, kernel // 2 + (1 if include_centre else 0) :] = 0
    return mask


def gated(features: torch.Tensor) -> torch.Tensor:
    value, gate = features.chunk(2, dim=1)
    return torch.tanh(value) * torch.sigmoid(gate)


class GatedBlock(nn.Module):
    """One gated block of both stacks; the vertical stack feeds the horizontal one, never back."""

    def __init__(self, in_channels: int, channels: int, kernel: int, first: bool):
        super().__init__()
        self.first = first  # type A: no centre, and no residual from the raw pixels
        self.vertical = MaskedConv2d(in_channels, 2 * channels, vertical_mask(kernel, not first))
        self.horizontal = MaskedConv2d(in_channels, 2 * channels, horizontal_mask(kernel, not first))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, vertical: torch.Tensor, horizontal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.vertical(vertical)
        h = self.horizontal(horizontal) + self.vertical_to_horizontal(v)
        h_out = self.out(gated(h))
        return gated(v), h_out if self.first else h_out + horizontal


class PixelCNNNetwork(nn.Module):
    """Pixels in [-1, 1] -> logits (N, levels, C, H, W) of each pixel given the ones before it."""

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        image_channels, c = config.image_shape[0], config.channels
        self.image_channels, self.levels = image_channels, config.pixel_levels
        kernel = config.kernel | 1  # odd
        self.blocks = nn.ModuleList(
            [GatedBlock(image_channels, c, kernel, first=True)]
            + [GatedBlock(c, c, kernel, first=False) for _ in range(config.layers)]
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, image_channels * self.levels, 1)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vertical = horizontal = images
        for block in self.blocks:
            vertical, horizontal = block(vertical, horizontal)
        logits = self.head(horizontal)
        n, _, height, width = logits.shape
        return logits.view(n, self.image_channels, self.levels, height, width).transpose(1, 2)


class PixelCNN(ExactLikelihood):
    """Gated PixelCNN over discrete intensities; sampled pixel by pixel."""

    config: PixelCNNConfig

    family = "pixelcnn"
    config_class = PixelCNNConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"channels": 32, "layers": 4},
        "small": {"channels": 64, "layers": 8},
        "base": {"channels": 128, "layers": 15},
    }

    def __init__(self, config: PixelCNNConfig):
        super().__init__(config)
        self.pixelcnn = PixelCNNNetwork(config)

    def networks(self) -> dict[str, nn.Module]:
        return {"pixelcnn": self.pixelcnn}

    def _nll(self, network: str | None, images: torch.Tensor) -> torch.Tensor:
        levels = self.config.pixel_levels
        targets = to_levels(images, levels)
        inputs = from_levels(targets, levels)  # the network sees exactly the discrete values
        logits = self.run_network("pixelcnn", inputs, bare=network is None)
        return F.cross_entropy(logits, targets, reduction="none").flatten(1).sum(1)

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean NLL per dimension in nats (the scale does not move with the image size)."""
        images = batch["image"]
        return self._nll(network, images).mean() / images[0].numel()

    def nll_nats(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._nll(None, images)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float | None = None
    ) -> torch.Tensor:
        """Raster order, one network pass per pixel position (all channels of it at once)."""
        channels, height, width = self.config.image_shape
        levels, tau = self.config.pixel_levels, temperature or self.config.temperature
        device = next(self.pixelcnn.parameters()).device
        images = torch.full((n, channels, height, width), -1.0, device=device)
        for row in range(height):
            for column in range(width):
                logits = self.run_network("pixelcnn", images, bare=True)[:, :, :, row, column]  # (n, L, C)
                probabilities = F.softmax(logits.transpose(1, 2).reshape(-1, levels) / tau, dim=-1)
                drawn = torch.multinomial(probabilities, 1, generator=generator).view(n, channels)
                images[:, :, row, column] = from_levels(drawn, levels)
        return images
