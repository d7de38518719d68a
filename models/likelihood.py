"""What the exact-likelihood families (PixelCNN, the flows) share: pixels as discrete levels and
negative log-likelihoods in bits per dimension.

Images arrive in [-1, 1]; the source had `levels` distinct intensities (digits: 17, 8-bit files:
256), so a pixel is one of `levels` values and a model's NLL of it can be compared with the uniform
baseline log2(levels) bits per dimension.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, ClassVar

import torch
from pydantic import Field

from models.base import SAMPLE_METRICS, GenerativeModel, ModelConfig
from typed_errors import OptionError

BITS_PER_DIM = "eval/bits_per_dim"


class DiscreteImageConfig(ModelConfig):
    image_shape: tuple[int, int, int] = Field(description="(channels, height, width) of the data")
    pixel_levels: int = Field(256, ge=2, le=65536, description="intensities per pixel, from the data")


def to_levels(images: torch.Tensor, levels: int) -> torch.Tensor:
    """Pixels in [-1, 1] as integer levels 0 .. levels - 1."""
    return ((images.float() + 1) / 2 * (levels - 1)).round().clamp(0, levels - 1).long()


def from_levels(levels_index: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer levels back to pixels in [-1, 1]."""
    return levels_index.float() / (levels - 1) * 2 - 1


def nats_to_bits_per_dim(nll_nats: torch.Tensor, dims: int) -> torch.Tensor:
    return nll_nats / (dims * math.log(2))


class ExactLikelihood(GenerativeModel):
    """A family whose NLL of an image is exact (or a tight bound): scored in bits per dimension
    beside the samples' metrics, and gated on it by default."""

    config: DiscreteImageConfig

    default_gate: ClassVar[tuple[str, str]] = (BITS_PER_DIM, "min")

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return (*SAMPLE_METRICS, BITS_PER_DIM, "eval/uniform_bits_per_dim")

    @abstractmethod
    def nll_nats(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """-log p(x) of each discrete image in nats (a flow: one dequantisation draw)."""

    def bits_per_dim(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return nats_to_bits_per_dim(self.nll_nats(images, generator), images[0].numel())

    @torch.no_grad()
    def evaluation_metrics(
        self, images: torch.Tensor, iw_samples: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Bits per dimension on val images, and the uniform model's (log2 of the levels) to read it by."""
        bits = torch.cat([self.bits_per_dim(chunk, generator) for chunk in images.split(128)])
        return {BITS_PER_DIM: float(bits.mean()), "eval/uniform_bits_per_dim": math.log2(self.config.pixel_levels)}

    def sample_options(self, n: int, temperature: float | None = None, **other: Any) -> dict[str, Any]:
        """`temperature` (0.8): a flow's prior narrowed (draws nearer its mode), PixelCNN's
        categoricals sharpened (< 1) or flattened (> 1)."""
        self.refuse_options(other)
        if temperature is None:
            return {}
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature <= 0:
            raise OptionError("temperature", "must be a number > 0", temperature)
        return {"temperature": float(temperature)}
