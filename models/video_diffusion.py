"""Video diffusion (after MCVD, Voleti et al. 2022): a DDPM U-Net denoises the next frame given
the last `condition_frames` frames, stacked with the noisy frame as channels; a clip's future is
drawn frame by frame, each frame by DDIM from pure noise, then appended to what conditions the
next. The U-Net predicts v (Salimans & Ho 2022): with epsilon, a tiny model's frames at 10 DDIM
steps came out as noise (MSE 0.13-0.24 against 0.02-0.07 with v, measured on moving digits).
`residual: true` diffuses the change from the last frame instead of the frame (residual video
diffusion, Yang et al. 2023); measured here it drifts as the changes add up over the horizon, so
it is not the default.

Why diffusion for the second video family, not a transformer over frames: a predictor trained by
squared error (ConvLSTM, or a transformer regressing frames) forecasts the mean of the possible
futures and blurs as the horizon grows; a diffusion model samples one of them, sharp, which is
what "generative" asks of video. It also costs the zoo one module: the U-Net, schedules and
samplers are DDPM's own. The price is sampling time (`sampling_steps` passes a frame).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from models.samplers import ddim
from models.schedules import BetaSchedule, NoiseSchedule, Prediction, gather, targets, x0_and_eps
from models.unet import UNet
from models.video import VideoConfig, VideoFamily
from typed_errors import FieldError, OptionError


class VideoDiffusionConfig(VideoConfig):
    condition_frames: int = Field(2, gt=0, description="the last frames the next one is conditioned on")
    base_channels: int = Field(32, gt=0)
    channel_mults: tuple[int, ...] = Field((1, 2), min_length=1)
    num_res_blocks: int = Field(1, gt=0)
    attention_resolutions: tuple[int, ...] = Field((8,), description="attend at feature maps this many pixels wide")
    dropout: float = Field(0.0, ge=0, lt=1)
    timesteps: int = Field(200, gt=1)
    beta_schedule: BetaSchedule = "cosine"
    sampling_steps: int = Field(20, gt=0, description="DDIM steps per predicted frame")
    prediction: Prediction = Field("v", description="what the U-Net predicts: the noise or v")
    residual: bool = Field(False, description="diffuse the change from the last frame, not the frame")

    @model_validator(mode="after")
    def _conditions_fit(self) -> VideoDiffusionConfig:
        if self.condition_frames > self.context_frames:
            reason = f"{self.condition_frames} is more than the data's {self.context_frames} context frames"
            raise FieldError("condition_frames", reason)
        side = self.frame_shape[1]
        if self.frame_shape[1] != self.frame_shape[2] or side % 2 ** (len(self.channel_mults) - 1):
            reason = f"{side}x{self.frame_shape[2]} frames cannot be halved {len(self.channel_mults) - 1} times"
            raise FieldError("channel_mults", reason)
        return self


class VideoDiffusion(VideoFamily):
    """The next frame, denoised from noise given the frames before it."""

    config: VideoDiffusionConfig

    family = "video-diffusion"
    config_class = VideoDiffusionConfig
    gpu_precision = "bf16-autocast"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"base_channels": 16, "channel_mults": (1, 2), "attention_resolutions": (), "sampling_steps": 10},
        "small": {"base_channels": 64, "channel_mults": (1, 2, 2), "num_res_blocks": 2},
        "base": {
            "base_channels": 128,
            "channel_mults": (1, 2, 2, 2),
            "num_res_blocks": 2,
            "attention_resolutions": (16,),
            "timesteps": 1000,
            "sampling_steps": 50,
        },
    }

    def __init__(self, config: VideoDiffusionConfig):
        super().__init__(config)
        channels, side, _ = config.frame_shape
        self.unet = UNet(
            channels * (config.condition_frames + 1),
            side,
            config.base_channels,
            config.channel_mults,
            config.num_res_blocks,
            config.attention_resolutions,
            config.dropout,
            out_channels=channels,
        )
        self.schedule = NoiseSchedule(config.beta_schedule, config.timesteps)

    def networks(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """MSE between the noise added to a frame (at a random position after the first k) and the
        U-Net's prediction of it, given the k true frames before it."""
        video = batch["video"]
        k = self.config.condition_frames
        position = torch.randint(k, video.shape[1], (len(video),), device=video.device)
        rows = torch.arange(len(video), device=video.device)
        offsets = torch.arange(-k, 0, device=video.device)
        condition = video[rows[:, None], position[:, None] + offsets].flatten(1, 2)  # (B, k*C, H, W)
        x0 = video[rows, position]
        if self.config.residual:
            x0 = (x0 - video[rows, position - 1]) / 2  # the change, halved to stay in [-1, 1]
        t = torch.randint(0, self.config.timesteps, (len(video),), device=video.device)
        noise = torch.randn_like(x0)
        s = self.schedule
        x_t = gather(s.sqrt_alpha_bar, t, x0) * x0 + gather(s.sqrt_one_minus_alpha_bar, t, x0) * noise
        output = self.run_network("unet", torch.cat([x_t, condition], dim=1), t)
        return F.mse_loss(output, targets(s, x0, noise, t, self.config.prediction))

    def predict(self, context: torch.Tensor, horizon: int, generator: torch.Generator | None) -> torch.Tensor:
        k = self.config.condition_frames
        if context.shape[1] < k:
            raise OptionError("input", f"at least {k} context frames (condition_frames), not {context.shape[1]}")
        frames = list(context[:, -k:].unbind(1))
        for _ in range(horizon):
            condition = torch.cat(frames[-k:], dim=1)

            def denoise(x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor = condition) -> tuple:
                output = self.run_network("unet", torch.cat([x, condition], dim=1), t, bare=True)
                x0, eps = x0_and_eps(self.schedule, x, t, output, self.config.prediction)
                return x0.clamp(-1, 1), eps

            noise = torch.randn(frames[0].shape, generator=generator, device=context.device)
            drawn = ddim(denoise, self.schedule, noise, self.config.sampling_steps)
            frames.append((frames[-1] + 2 * drawn if self.config.residual else drawn).clamp(-1, 1))
        return torch.stack(frames[k:], dim=1)
