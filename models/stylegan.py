"""StyleGAN2 (Karras et al. 2020), scaled to small images.

The generator maps a latent z through an MLP (the mapping network) to a style w, and draws from a
learned 4x4 constant by convolutions whose weights each style modulates and then demodulates
(normalising every output feature map instead of the activations, StyleGAN2's fix for the droplet
artefacts), with per-layer noise for stochastic detail and skip connections summing an RGB output
at every resolution. Training mixes two styles at a random layer (style mixing), regularises the
discriminator with R1 on real images only every `r1_interval` steps (lazy R1, the penalty scaled up
to match), and keeps an EMA of the generator: that EMA is what is evaluated and registered.
Sampling can truncate styles toward the average (psi < 1: fidelity for diversity).

Left out from the paper for images of 8-64 px: path-length regularisation, the FIR blur of
up/downsampling (bilinear and average pooling here), progressive channel counts (one width).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.base import GenerativeModel, ModelConfig, interpolate
from models.ema import EMA, AveragedNetworkHooks
from models.gan import frozen
from typed_errors import FieldError, OptionError

LEAK = 0.2
GAIN = math.sqrt(2)  # keeps a leaky-ReLU layer's output variance at its input's
W_AVERAGE_SAMPLES = 4096  # styles averaged for truncation


class StyleGANConfig(ModelConfig):
    image_shape: tuple[int, int, int] = Field(description="(channels, height, width) of the data")
    latent_dim: int = Field(64, gt=0, description="z and w")
    mapping_layers: int = Field(4, gt=0, description="the mapping network's depth (8 in the paper)")
    channels: int = Field(64, gt=0, description="feature maps at every resolution, both networks")
    style_mixing: float = Field(0.9, ge=0, le=1, description="share of training samples drawn from two styles")
    r1_gamma: float = Field(1.0, ge=0, description="weight of the R1 penalty on real images (0: none)")
    r1_interval: int = Field(16, gt=0, description="lazy R1: the penalty every this many steps")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="the generator's EMA (0: none)")
    truncation: float = Field(1.0, ge=0, le=1, description="sampling: psi, 1 = none")


def resolution_doublings(image_shape: tuple[int, int, int]) -> int:
    """How many times the 4x4 constant doubles to reach the images: a square power of two >= 4."""
    _, height, width = image_shape
    if height != width or height < 4 or height & (height - 1):
        raise FieldError("image_shape", f"stylegan draws square images of 4, 8, 16, 32... px, not {height}x{width}")
    return int(math.log2(height)) - 2


class EqualLinear(nn.Module):
    """A linear layer with the equalised learning rate: weights stored at unit variance and scaled
    at run time, so Adam moves every layer at the same pace. `lr_mul` slows the mapping network."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """A conv with the equalised learning rate (see EqualLinear)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)


def leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAK) * GAIN


class MappingNetwork(nn.Module):
    """z -> w: the latent normalised to the unit sphere's scale, then an MLP at 1/100 the
    learning rate (the paper's setting: a fast mapping network destabilises training)."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(EqualLinear(dim, dim, lr_mul=0.01) for _ in range(layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = leaky(layer(x))
        return x


class ModulatedConv2d(nn.Module):
    """A conv whose weights are scaled per input channel by the sample's style, then (demodulate)
    rescaled so each output map has unit expected variance: one grouped conv for the batch."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)  # styles start at 1: plain conv
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        batch, in_channels, height, width = x.shape
        style = self.affine(w)
        weight = self.weight[None] * self.weight_gain * style[:, None, :, None, None]  # (B, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum((2, 3, 4), keepdim=True) + 1e-8)
        out_channels, kernel = weight.shape[1], weight.shape[-1]
        grouped = F.conv2d(
            x.reshape(1, batch * in_channels, height, width),
            weight.reshape(batch * out_channels, in_channels, kernel, kernel),
            padding=kernel // 2,
            groups=batch,
        )
        return grouped.reshape(batch, out_channels, height, width)


class StyledLayer(nn.Module):
    """(upsample,) modulated 3x3 conv, per-pixel noise scaled by a learned strength, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(1))  # not 0-d: DeepSpeed broadcasts flat views
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.upsample = upsample

    def forward(self, x: torch.Tensor, w: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, w)
        noise = torch.randn((x.shape[0], 1, *x.shape[2:]), generator=generator, device=x.device, dtype=x.dtype)
        return leaky(x + self.noise_strength * noise + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Feature maps -> image channels: a modulated 1x1 conv without demodulation."""

    def __init__(self, in_channels: int, image_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, image_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(image_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class SynthesisNetwork(nn.Module):
    """Styles (B, num_ws, w_dim) -> images: the constant, one styled layer at 4x4, two per
    doubling, and an RGB output at every resolution summed up the skips."""

    def __init__(self, config: StyleGANConfig):
        super().__init__()
        channels, dim = config.channels, config.latent_dim
        doublings = resolution_doublings(config.image_shape)
        self.const = nn.Parameter(torch.randn(channels, 4, 4))
        self.layers = nn.ModuleList([StyledLayer(channels, channels, dim)])
        self.to_rgb = nn.ModuleList([ToRGB(channels, config.image_shape[0], dim)])
        for _ in range(doublings):
            self.layers.extend(
                [StyledLayer(channels, channels, dim, upsample=True), StyledLayer(channels, channels, dim)]
            )
            self.to_rgb.append(ToRGB(channels, config.image_shape[0], dim))
        self.num_ws = len(self.layers)

    def forward(self, ws: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.layers[0](self.const[None].expand(len(ws), -1, -1, -1), ws[:, 0], generator)
        rgb = self.to_rgb[0](x, ws[:, 0])
        for index, to_rgb in enumerate(self.to_rgb[1:]):
            first = 1 + 2 * index
            x = self.layers[first](x, ws[:, first], generator)
            x = self.layers[first + 1](x, ws[:, first + 1], generator)
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + to_rgb(x, ws[:, first + 1])
        return rgb


class StyleGenerator(nn.Module):
    """z -> image. In training, rows with `crossover` < num_ws take the second latent's style from
    that layer on (style mixing)."""

    def __init__(self, config: StyleGANConfig):
        super().__init__()
        self.mapping = MappingNetwork(config.latent_dim, config.mapping_layers)
        self.synthesis = SynthesisNetwork(config)

    def styles(self, z: torch.Tensor, z_mix: torch.Tensor, crossover: torch.Tensor) -> torch.Tensor:
        w, w_mix = self.mapping(z), self.mapping(z_mix)
        layer = torch.arange(self.synthesis.num_ws, device=z.device)
        second = (layer[None, :] >= crossover[:, None])[:, :, None]
        return torch.where(second, w_mix[:, None], w[:, None])

    def forward(self, z: torch.Tensor, z_mix: torch.Tensor, crossover: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.styles(z, z_mix, crossover))


class MinibatchStd(nn.Module):
    """Appends the batch's feature spread (over groups of up to 4) as one channel: a generator
    that collapses shows it to the discriminator."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        group = math.gcd(batch, 4)
        spread = x.reshape(group, -1, channels, height, width).var(0, unbiased=False).add(1e-8).sqrt()
        summary = spread.mean((1, 2, 3))[:, None, None, None].repeat(group, 1, height, width)
        return torch.cat([x, summary], dim=1)


class DiscriminatorBlock(nn.Module):
    """Two 3x3 convs and a halving, with a 1x1 residual path (StyleGAN2's resnet discriminator)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = EqualConv2d(channels, channels, 3)
        self.conv2 = EqualConv2d(channels, channels, 3)
        self.skip = EqualConv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = F.avg_pool2d(leaky(self.conv2(leaky(self.conv1(x)))), 2)
        return (x + skip) / math.sqrt(2)


class StyleDiscriminator(nn.Module):
    """Image -> one real-vs-fake logit: halvings down to 4x4, minibatch std, conv, two linears."""

    def __init__(self, config: StyleGANConfig):
        super().__init__()
        channels = config.channels
        self.from_rgb = EqualConv2d(config.image_shape[0], channels, 1)
        self.blocks = nn.Sequential(
            *(DiscriminatorBlock(channels) for _ in range(resolution_doublings(config.image_shape)))
        )
        self.std = MinibatchStd()
        self.conv = EqualConv2d(channels + 1, channels, 3)
        self.fc = EqualLinear(channels * 16, channels)
        self.out = EqualLinear(channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.blocks(leaky(self.from_rgb(images)))
        x = leaky(self.conv(self.std(x)))
        return self.out(leaky(self.fc(x.flatten(1)))).squeeze(1)


def r1_penalty(discriminator, real: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 on real images (Mescheder et al. 2018): no gradient where the data is."""
    real = real.detach().requires_grad_(True)
    (gradients,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return gradients.pow(2).flatten(1).sum(1).mean()


class StyleGAN(AveragedNetworkHooks, GenerativeModel):
    """The StyleGAN2 recipe: see the module docstring."""

    config: StyleGANConfig

    family = "stylegan"
    averaged_network = "generator"
    config_class = StyleGANConfig
    # Style mixing off in the small presets: at 600 steps on 16 px digits, mixing 90% of the batch
    # doubled classifier-FID (125 against 53.5; 50%: 82), a regulariser for long runs (base keeps
    # the paper's 0.9; benchmarks/RESULTS.md).
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"latent_dim": 32, "mapping_layers": 2, "channels": 32, "style_mixing": 0.0},  # 8x8 digits, 2 cores
        "small": {"latent_dim": 64, "mapping_layers": 4, "channels": 64, "style_mixing": 0.0},  # 16 px
        "base": {"latent_dim": 128, "mapping_layers": 8, "channels": 128, "r1_gamma": 2.0},  # 32 px
    }

    def __init__(self, config: StyleGANConfig):
        super().__init__(config)
        self.discriminator = StyleDiscriminator(config)
        self.generator = StyleGenerator(config)
        self.ema = EMA(config.ema_decay) if config.ema_decay > 0 else None

    def networks(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator, "generator": self.generator}

    def _latents(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two latents a row and the layer its second style starts at (num_ws: never)."""
        num_ws = self.generator.synthesis.num_ws
        z, z_mix = torch.randn(2, n, self.config.latent_dim, device=device)
        mixed = torch.rand(n, device=device) < self.config.style_mixing
        crossover = torch.where(mixed, torch.randint(1, max(2, num_ws), (n,), device=device), num_ws)
        return z, z_mix, crossover

    def r1_due(self) -> bool:
        return self.config.r1_gamma > 0 and self.global_step % self.config.r1_interval == 0

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Non-saturating logistic losses; the discriminator's carries lazy R1 on its due steps."""
        real = batch["image"]
        latents = self._latents(len(real), real.device)
        if network == "discriminator":
            with torch.no_grad():
                fake = self.run_network("generator", *latents)
            loss = F.softplus(self.run_network("discriminator", fake)).mean()
            loss = loss + F.softplus(-self.run_network("discriminator", real)).mean()
            if self.r1_due():
                # autograd.grad is a backward of its own: not through the engine (see run_network).
                penalty = r1_penalty(lambda x: self.run_network("discriminator", x, bare=True), real)
                loss = loss + self.config.r1_gamma / 2 * self.config.r1_interval * penalty
            return loss
        with frozen(self.discriminator):
            fake = self.run_network("generator", *latents)
            return F.softplus(-self.run_network("discriminator", fake, bare=True)).mean()

    # --- sampling -------------------------------------------------------------------------------

    def sample_options(self, n: int, truncation: float | None = None, **other: Any) -> dict[str, Any]:
        """`truncation` (0.7): styles pulled toward the average style (psi in [0, 1])."""
        self.refuse_options(other)
        if truncation is None:
            return {}
        if not isinstance(truncation, int | float) or not 0 <= truncation <= 1:
            raise OptionError("truncation", "must be a number in [0, 1]", truncation)
        return {"truncation": float(truncation)}

    @torch.no_grad()
    def average_style(self, device: torch.device) -> torch.Tensor:
        """The mean w over a fixed set of latents. Computed when sampling, not tracked during
        training as in the paper: a few thousand rows through a small MLP cost milliseconds, and
        the same weights give the same average on any worker and after any resume."""
        fixed = torch.Generator(device).manual_seed(0)
        z = torch.randn((W_AVERAGE_SAMPLES, self.config.latent_dim), generator=fixed, device=device)
        return self.generator.mapping(z.to(self._dtype())).mean(0)

    def _dtype(self) -> torch.dtype:
        return next(self.generator.parameters()).dtype

    @torch.no_grad()
    def decode(
        self, z: torch.Tensor, generator: torch.Generator | None = None, truncation: float | None = None
    ) -> torch.Tensor:
        """Images for latents, one style for every layer, truncated by psi (config's by default)."""
        psi = self.config.truncation if truncation is None else truncation
        w = self.generator.mapping(z.to(self._dtype()))
        if psi < 1:
            average = self.average_style(z.device)
            w = average + psi * (w - average)
        ws = w[:, None].expand(-1, self.generator.synthesis.num_ws, -1)
        return self.generator.synthesis(ws, generator).float().clamp(-1, 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, truncation: float | None = None) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=device)
        return self.decode(z, generator, truncation)

    @torch.no_grad()
    def evaluation_pictures(
        self, images: torch.Tensor, generator: torch.Generator, rows: int = 8, steps: int = 10
    ) -> dict[str, tuple[torch.Tensor, int]]:
        """Lines between two latents, and style mixing: row i takes the coarse styles (the first
        layers) of source i and the fine ones of each column's source."""
        device = images.device
        start, end = (torch.randn((rows, self.config.latent_dim), generator=generator, device=device) for _ in range(2))
        line = interpolate(lambda z: self.decode(z, generator), start, end, steps)
        # Row i, column j: the coarse styles of start[i], the fine ones of end[j] (training's mixing).
        synthesis = self.generator.synthesis
        coarse, fine = start.repeat_interleave(rows, 0).to(self._dtype()), end.repeat(rows, 1).to(self._dtype())
        crossover = torch.full((rows * rows,), max(1, synthesis.num_ws // 2), device=device)
        ws = self.generator.styles(coarse, fine, crossover)
        mixed = synthesis(ws, generator).float().clamp(-1, 1)
        return {"interpolation.png": (line, steps), "style_mixing.png": (mixed, rows)}
