"""Normalizing flows: RealNVP (Dinh et al. 2017) and Glow (Kingma & Dhariwal 2018).

An invertible network maps an image to Gaussian noise; the change-of-variables formula gives its
exact log-density, and running the network backwards draws samples. Both are multi-scale: after a
squeeze (2x2 pixels -> 4 channels) half the channels are factored out to the prior, so later
layers work on fewer dimensions.

- RealNVP: affine couplings with checkerboard masks, a squeeze, couplings with channel masks, a
  split to a standard normal; the last scale only checkerboard couplings.
- Glow: per level a squeeze, then steps of actnorm (data-dependent initialisation), an invertible
  1x1 convolution and an affine coupling; a split whose prior is learned from the kept half.

Discrete pixels are dequantised uniformly, y = (level + u) / L, and moved to logit space. The
bits per dimension bound the discrete NLL from above, -log P(x) <= -E_u log p(y) + D log L,
comparable with PixelCNN's exact figure on the same levels.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from models.likelihood import DiscreteImageConfig, ExactLikelihood, from_levels, to_levels
from typed_errors import FieldError

LOG_2PI = math.log(2 * math.pi)


class FlowConfig(DiscreteImageConfig):
    hidden: int = Field(64, gt=0, description="channels of each coupling's conditioner network")
    scales: int = Field(2, gt=0, description="levels of the multi-scale architecture")
    steps: int = Field(4, gt=0, description="couplings per stage (RealNVP) or flow steps per level (Glow)")
    logit_margin: float = Field(0.05, ge=0, lt=0.5, description="alpha of the logit transform")
    temperature: float = Field(1.0, gt=0, description="sampling: the prior's standard deviation")
    squeezes_first: ClassVar[bool] = False  # Glow squeezes at every level, RealNVP after each

    @model_validator(mode="after")
    def _image_halves(self) -> FlowConfig:
        _, height, width = self.image_shape
        halvings = self.scales if self.squeezes_first else self.scales - 1
        if height != width or height % 2**halvings or height < 2**halvings:
            raise FieldError(
                "scales",
                f"{self.scales} levels halve the image {halvings} times; "
                f"{height}x{width} is not a square side divisible by {2**halvings}: fewer scales or another image size",
            )
        return self


class GlowConfig(FlowConfig):
    squeezes_first: ClassVar[bool] = True


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    return (-0.5 * (z.pow(2) + LOG_2PI)).flatten(1).sum(1)


def zeroed(conv: nn.Conv2d) -> nn.Conv2d:
    """A convolution whose output starts at zero (an identity coupling, a standard prior)."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def conditioner(in_channels: int, out_channels: int, hidden: int, kernel: int = 3) -> nn.Sequential:
    """The small CNN that predicts a coupling's scale and shift; it starts at the identity map.
    With `kernel` 1 it is an MLP applied at each position (vectors: 1x1 "images")."""
    last = zeroed(nn.Conv2d(hidden, out_channels, kernel, padding=kernel // 2))
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel, padding=kernel // 2),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        last,
    )


class FlowLayer(nn.Module):
    """forward: (x, log_density so far) -> (y, log_density + log|det dy/dx| or a factor's prior);
    inverse: y -> x, drawing what a split factored out from its prior at `temperature`."""

    def forward(self, x: torch.Tensor, log_density: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse(self, y: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError


class AffineCoupling(FlowLayer):
    """Half of the dimensions (a checkerboard or a channel half) pass unchanged and set the scale
    and shift of the other half: y_b = x_b * exp(s(x_a)) + t(x_a). The log-scale is a learned
    multiple of tanh, so early steps cannot blow up."""

    def __init__(self, channels: int, hidden: int, mask: str, parity: int, kernel: int = 3):
        super().__init__()
        self.mask, self.parity = mask, parity
        passed = channels if mask == "checkerboard" else channels // 2
        changed = channels if mask == "checkerboard" else channels - passed
        self.passed = passed
        self.net = conditioner(passed, 2 * changed, hidden, kernel)
        self.scale = nn.Parameter(torch.ones(1, changed, 1, 1))

    def _checkerboard(self, x: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(x.shape[2], device=x.device)[:, None]
        columns = torch.arange(x.shape[3], device=x.device)[None, :]
        return ((rows + columns + self.parity) % 2).to(x.dtype)[None, None]

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        passed, changed = x.split([self.passed, x.shape[1] - self.passed], dim=1)
        return (changed, passed) if self.parity else (passed, changed)

    def _join(self, passed: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        return torch.cat((changed, passed) if self.parity else (passed, changed), dim=1)

    def _scale_shift(self, passed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_scale, shift = self.net(passed).chunk(2, dim=1)
        return self.scale * torch.tanh(raw_scale), shift

    def forward(self, x: torch.Tensor, log_density: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mask == "checkerboard":
            keep = self._checkerboard(x)
            log_scale, shift = self._scale_shift(x * keep)
            log_scale, shift = log_scale * (1 - keep), shift * (1 - keep)
            return x * log_scale.exp() + shift, log_density + log_scale.float().flatten(1).sum(1)
        passed, changed = self._split(x)
        log_scale, shift = self._scale_shift(passed)
        changed = changed * log_scale.exp() + shift
        return self._join(passed, changed), log_density + log_scale.float().flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        if self.mask == "checkerboard":
            keep = self._checkerboard(y)
            log_scale, shift = self._scale_shift(y * keep)
            return y * keep + (1 - keep) * (y - shift) * (-log_scale).exp()
        passed, changed = self._split(y)
        log_scale, shift = self._scale_shift(passed)
        return self._join(passed, (changed - shift) * (-log_scale).exp())


class Squeeze(FlowLayer):
    """(C, H, W) -> (4C, H/2, W/2): each 2x2 block of pixels becomes four channels; volume kept."""

    def forward(self, x: torch.Tensor, log_density: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = x.shape
        return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(
            n, 4 * c, h // 2, w // 2
        ), log_density

    def inverse(self, y: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        n, c, h, w = y.shape
        return y.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, 2 * h, 2 * w)


class Split(FlowLayer):
    """Half the channels leave for the prior: a standard normal (RealNVP) or a Gaussian whose
    mean and scale a convolution predicts from the kept half (Glow's learned prior)."""

    def __init__(self, channels: int, learned_prior: bool):
        super().__init__()
        factored = channels - channels // 2
        self.prior = zeroed(nn.Conv2d(channels // 2, 2 * factored, 3, padding=1)) if learned_prior else None

    def _prior(self, kept: torch.Tensor, factored_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prior is None:
            zeros = kept.new_zeros(kept.shape[0], factored_channels, *kept.shape[2:])
            return zeros, zeros
        mean, log_std = self.prior(kept).chunk(2, dim=1)
        return mean, log_std

    def forward(self, x: torch.Tensor, log_density: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, factored = x.split([x.shape[1] // 2, x.shape[1] - x.shape[1] // 2], dim=1)
        mean, log_std = self._prior(kept, factored.shape[1])
        z = ((factored - mean) * (-log_std).exp()).float()
        return kept, log_density + standard_normal_log_density(z) - log_std.float().flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        factored_channels = y.shape[1] if self.prior is None else self.prior.out_channels // 2
        mean, log_std = self._prior(y, factored_channels)
        noise = torch.randn(mean.shape, generator=generator, device=y.device).to(y.dtype)
        return torch.cat((y, mean + temperature * log_std.exp() * noise), dim=1)


class ActNorm(FlowLayer):
    """Per-channel affine map initialised from the first training batch to zero mean and unit
    variance (Glow). The data's statistics sit in buffers beside zero-initialised parameters
    rather than in the parameters themselves: an optimizer that keeps its own fp32 master copy
    (DeepSpeed's ZeRO) would otherwise overwrite the initialisation on its first step. Across
    workers the statistics are averaged, so every rank starts from the same map."""

    initialised: torch.Tensor  # buffers
    data_bias: torch.Tensor
    data_log_scale: torch.Tensor

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("data_bias", torch.zeros(1, channels, 1, 1))
        self.register_buffer("data_log_scale", torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialised", torch.zeros(()))

    @torch.no_grad()
    def _initialise(self, x: torch.Tensor) -> None:
        moments = torch.stack([x.float().mean(dim=(0, 2, 3)), x.float().pow(2).mean(dim=(0, 2, 3))])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(moments)
            moments /= dist.get_world_size()
        mean, variance = moments[0], (moments[1] - moments[0].pow(2)).clamp_min(1e-6)
        self.data_bias.copy_(-mean.view_as(self.data_bias))
        self.data_log_scale.copy_(-0.5 * variance.log().view_as(self.data_log_scale))
        self.initialised.fill_(1)

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data_bias + self.bias, self.data_log_scale + self.log_scale

    def forward(self, x: torch.Tensor, log_density: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (On the meta device, where the zoo's shape checks run, there are no values to read.)
        if self.training and not x.is_meta and not bool(self.initialised):
            self._initialise(x)
        bias, log_scale = self._affine()
        pixels = x.shape[2] * x.shape[3]
        return (x + bias) * log_scale.exp(), log_density + pixels * log_scale.float().sum()

    def inverse(self, y: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        bias, log_scale = self._affine()
        return y * (-log_scale).exp() - bias


class InvertibleConv1x1(FlowLayer):
    """A learned channel mix, W starting as a random rotation; log|det| = H * W * log|det W|
    (computed in fp32: bf16 has too few bits for a determinant)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(channels, channels))[0].contiguous())

    def forward(self, x: torch.Tensor, log_density: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.linalg.slogdet(self.weight.float())[1]
        y = F.conv2d(x, self.weight[:, :, None, None])
        return y, log_density + x.shape[2] * x.shape[3] * log_det

    def inverse(self, y: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        inverse = torch.linalg.inv(self.weight.float()).to(y.dtype)
        return F.conv2d(y, inverse[:, :, None, None])


def realnvp_layers(config: FlowConfig) -> tuple[list[FlowLayer], tuple[int, int, int]]:
    """Per scale: checkerboard couplings, squeeze, channel couplings, split; the last scale one
    more checkerboard coupling and no split. Returns the layers and the top prior's shape. On
    vectors, shaped (features, 1, 1), the couplings alternate which half of the features they
    change: the RealNVP of 2-D densities."""
    channels, side, _ = config.image_shape
    layers: list[FlowLayer] = []
    for scale in range(config.scales):
        last = scale == config.scales - 1
        couplings = config.steps + 1 if last else config.steps
        if side > 1:
            layers += [AffineCoupling(channels, config.hidden, "checkerboard", i % 2) for i in range(couplings)]
        else:  # a 1x1 "image" is a vector (2-D points): halves of it, MLP conditioners
            layers += [AffineCoupling(channels, config.hidden, "channel", i % 2, kernel=1) for i in range(couplings)]
        if last:
            break
        layers.append(Squeeze())
        channels, side = 4 * channels, side // 2
        layers += [AffineCoupling(channels, config.hidden, "channel", i % 2) for i in range(config.steps)]
        layers.append(Split(channels, learned_prior=False))
        channels //= 2
    return layers, (channels, side, side)


def glow_layers(config: FlowConfig) -> tuple[list[FlowLayer], tuple[int, int, int]]:
    """Per level: squeeze, `steps` x (actnorm, 1x1 convolution, coupling), a split but on the last."""
    channels, side, _ = config.image_shape
    layers: list[FlowLayer] = []
    for level in range(config.scales):
        layers.append(Squeeze())
        channels, side = 4 * channels, side // 2
        for _ in range(config.steps):
            layers += [
                ActNorm(channels),
                InvertibleConv1x1(channels),
                AffineCoupling(channels, config.hidden, "channel", 0),
            ]
        if level < config.scales - 1:
            layers.append(Split(channels, learned_prior=True))
            channels //= 2
    return layers, (channels, side, side)


class FlowNetwork(nn.Module):
    """Dequantised pixels y in (0, 1) -> log p(y) per image in nats; `generate` runs it backwards."""

    def __init__(self, layers: list[FlowLayer], top_shape: tuple[int, int, int], logit_margin: float):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.top_shape, self.margin = top_shape, logit_margin

    def flow_layers(self) -> list[FlowLayer]:
        return [cast(FlowLayer, layer) for layer in self.layers]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        squeezed = self.margin + (1 - 2 * self.margin) * y  # away from 0 and 1, where logit diverges
        x = squeezed.log() - (-squeezed).log1p()
        logit_log_det = math.log(1 - 2 * self.margin) - squeezed.log() - (-squeezed).log1p()
        log_density = logit_log_det.float().flatten(1).sum(1)
        for layer in self.flow_layers():
            x, log_density = layer(x, log_density)
        return log_density + standard_normal_log_density(x.float())

    @torch.no_grad()
    def generate(self, n: int, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        """Dequantised pixels in (0, 1) from the prior at `temperature`."""
        parameter = next(self.parameters())
        z = torch.randn((n, *self.top_shape), generator=generator, device=parameter.device)
        x = (temperature * z).to(parameter.dtype)
        for layer in reversed(self.flow_layers()):
            x = layer.inverse(x, temperature, generator)
        return ((torch.sigmoid(x.float()) - self.margin) / (1 - 2 * self.margin)).clamp(0, 1)


class RealNVP(ExactLikelihood):
    """Affine coupling flow with checkerboard and channel masks, multi-scale."""

    config: FlowConfig

    family = "realnvp"
    config_class: ClassVar[type[FlowConfig]] = FlowConfig
    gpu_precision = "bf16-autocast"  # log-determinants summed over every pixel need fp32 weights
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"hidden": 32, "scales": 2, "steps": 3},
        "small": {"hidden": 64, "scales": 2, "steps": 4},
        "base": {"hidden": 128, "scales": 3, "steps": 4},
    }

    def __init__(self, config: FlowConfig):
        super().__init__(config)
        layers, top_shape = (glow_layers if config.squeezes_first else realnvp_layers)(config)
        self.flow = FlowNetwork(layers, top_shape, config.logit_margin)

    def networks(self) -> dict[str, nn.Module]:
        return {"flow": self.flow}

    def _nll(self, images: torch.Tensor, generator: torch.Generator | None, bare: bool) -> torch.Tensor:
        """-log P(x) per image in nats, bounded through one uniform dequantisation draw."""
        levels = self.config.pixel_levels
        noise = torch.rand(images.shape, generator=generator, device=images.device)
        dequantised = (to_levels(images, levels).float() + noise) / levels
        log_density = self.run_network("flow", dequantised, bare=bare)
        return images[0].numel() * math.log(levels) - log_density

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        images = batch["image"]
        return self._nll(images, None, bare=False).mean() / images[0].numel()

    def nll_nats(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._nll(images, generator, bare=True)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, temperature: float | None = None
    ) -> torch.Tensor:
        levels = self.config.pixel_levels
        dequantised = self.flow.generate(n, temperature or self.config.temperature, generator)
        return from_levels((dequantised * levels).floor().clamp(max=levels - 1), levels)


class Glow(RealNVP):
    """Actnorm, invertible 1x1 convolutions and affine couplings, with learned split priors."""

    family = "glow"
    config_class = GlowConfig
    presets = {
        "tiny": {"hidden": 32, "scales": 2, "steps": 3},
        "small": {"hidden": 64, "scales": 2, "steps": 6},
        "base": {"hidden": 128, "scales": 3, "steps": 8},
    }
