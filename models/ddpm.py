"""DDPM (Ho et al. 2020): epsilon prediction with a U-Net, ancestral sampling."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.base import GenerativeModel, ModelConfig
from models.schedules import BetaSchedule, NoiseSchedule, gather
from models.unet import UNet


class DDPMConfig(ModelConfig):
    image_shape: tuple[int, int, int] = Field(description="(channels, height, width) of the data")
    base_channels: int = Field(32, gt=0)
    channel_mults: tuple[int, ...] = Field((1, 2), min_length=1)
    num_res_blocks: int = Field(1, gt=0)
    attention_resolution: int = Field(4, ge=0, description="attend at feature maps this wide or less")
    dropout: float = Field(0.0, ge=0, lt=1)
    timesteps: int = Field(1000, gt=1)
    beta_schedule: BetaSchedule = "linear"


class DDPM(GenerativeModel):
    """Denoising diffusion (DDPM): a U-Net predicts the noise; ancestral sampling from pure noise."""

    family = "ddpm"
    config_class = DDPMConfig
    presets: dict[str, dict[str, Any]] = {
        # ~0.4M parameters: about a second per epoch of digits on 2 CPU cores.
        "tiny": {"base_channels": 24, "channel_mults": (1, 2), "num_res_blocks": 1,
                 "attention_resolution": 4, "timesteps": 200, "beta_schedule": "cosine"},
        # ~6M parameters: a GPU model for 16-32 px images.
        "small": {"base_channels": 64, "channel_mults": (1, 2, 2), "num_res_blocks": 2,
                  "attention_resolution": 16, "dropout": 0.1, "timesteps": 1000,
                  "beta_schedule": "linear"},
    }

    def __init__(self, config: DDPMConfig):
        super().__init__(config)
        channels, height, width = config.image_shape
        if height != width:
            raise ValueError(f"model.image_shape: the U-Net needs square images, got {height}x{width}")
        downsamples = len(config.channel_mults) - 1
        if height % (2**downsamples):
            raise ValueError(f"model.channel_mults: {height}px cannot be halved {downsamples} times")
        self.unet = UNet(channels, height, config.base_channels, config.channel_mults,
                         config.num_res_blocks, config.attention_resolution, config.dropout)
        self.schedule = NoiseSchedule(config.beta_schedule, config.timesteps)

    def networks(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)."""
        s = self.schedule
        return gather(s.sqrt_alpha_bar, t, x0) * x0 + gather(s.sqrt_one_minus_alpha_bar, t, x0) * noise

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The simple loss: MSE between the true and the predicted noise at a random t."""
        x0 = batch["image"]
        t = torch.randint(0, self.config.timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        predicted = self._predict_noise(self.q_sample(x0, t, noise), t)
        return F.mse_loss(predicted.float(), noise)

    def _predict_noise(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.run_network("unet", x, t)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling, x_T -> x_0, clipping the predicted x_0 to the data range."""
        s = self.schedule
        device = next(self.unet.parameters()).device
        x = torch.randn((n, *self.config.image_shape), generator=generator, device=device)
        for step in reversed(range(self.config.timesteps)):
            t = torch.full((n,), step, device=device, dtype=torch.long)
            eps = self._predict_noise(x, t)
            x0 = (gather(s.sqrt_recip_alpha_bar, t, x) * x - gather(s.sqrt_recipm1_alpha_bar, t, x) * eps)
            x0 = x0.clamp(-1, 1)
            mean = gather(s.posterior_coef_x0, t, x) * x0 + gather(s.posterior_coef_xt, t, x) * x
            if step == 0:
                return mean
            noise = torch.randn(x.shape, generator=generator, device=device)
            x = mean + torch.exp(0.5 * gather(s.posterior_log_variance, t, x)) * noise
        return x
