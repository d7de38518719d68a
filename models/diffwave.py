"""DiffWave (Kong et al. 2021): diffusion on raw waveforms. A stack of non-causal dilated
convolutions (kernel 3, dilations cycling 1, 2, ..., 2^(cycle-1)) with tanh x sigmoid gates,
residual and skip connections predicts the noise in a clip; each layer hears the diffusion step
(a sinusoidal embedding through an MLP) and, for a conditional model, the clip's class.

Unlike WaveNet it draws a whole clip at once: `timesteps` passes of the network over all samples
(DDPM's ancestral sampler, models/samplers.py), not one pass per sample. It has no exact
likelihood; it is scored by the audio Fréchet distance and class accuracy.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.audio import AudioConfig, AudioFamily
from models.samplers import ancestral
from models.schedules import BetaSchedule, NoiseSchedule, gather, x0_and_eps
from models.unet import timestep_embedding


class DiffWaveConfig(AudioConfig):
    residual_channels: int = Field(32, gt=0)
    layers: int = Field(10, gt=0)
    dilation_cycle: int = Field(5, gt=0, le=12, description="dilations 1, 2, ..., 2^(cycle-1), then again")
    timesteps: int = Field(50, gt=1, description="DiffWave's base model: 50")
    # Cosine, not DiffWave's linear 1e-4..0.05: models/schedules.py's linear schedule keeps DDPM's
    # 1000-step end points, which at a few dozen steps reaches beta = 1 (alpha_bar = 0).
    beta_schedule: BetaSchedule = "cosine"


class ResidualLayer(nn.Module):
    def __init__(self, channels: int, dilation: int, num_classes: int):
        super().__init__()
        self.dilated = nn.Conv1d(channels, 2 * channels, kernel_size=3, padding=dilation, dilation=dilation)
        self.step = nn.Linear(channels * 4, channels)
        self.condition = nn.Embedding(num_classes, 2 * channels) if num_classes else None
        self.output = nn.Conv1d(channels, 2 * channels, 1)  # residual and skip halves

    def forward(
        self, x: torch.Tensor, step: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.dilated(x + self.step(step).unsqueeze(-1))
        if self.condition is not None and labels is not None:
            h = h + self.condition(labels).unsqueeze(-1)
        filter_, gate = h.chunk(2, dim=1)
        residual, skip = self.output(torch.tanh(filter_) * torch.sigmoid(gate)).chunk(2, dim=1)
        return (x + residual) / 2**0.5, skip


class DiffWaveNetwork(nn.Module):
    """(noisy clips (B, 1, T), steps (B,), labels) -> the predicted noise (B, 1, T)."""

    def __init__(self, config: DiffWaveConfig):
        super().__init__()
        channels = config.residual_channels
        classes = config.num_classes if config.conditional else 0
        self.channels = channels
        self.input = nn.Conv1d(1, channels, 1)
        self.step_mlp = nn.Sequential(
            nn.Linear(channels, channels * 4), nn.SiLU(), nn.Linear(channels * 4, channels * 4)
        )
        self.layers = nn.ModuleList(
            ResidualLayer(channels, 2 ** (i % config.dilation_cycle), classes) for i in range(config.layers)
        )
        self.skip = nn.Conv1d(channels, channels, 1)
        self.out = nn.Conv1d(channels, 1, 1)
        nn.init.zeros_(self.out.weight)  # as DiffWave: the first prediction is no noise at all

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.input(x))
        step = self.step_mlp(timestep_embedding(t, self.channels))
        skips = torch.zeros_like(h)
        for layer in self.layers:
            h, skip = layer(h, step, labels)
            skips = skips + skip
        return self.out(F.relu(self.skip(skips / len(self.layers) ** 0.5)))


class DiffWave(AudioFamily):
    """Clips of audio, denoised from pure noise."""

    config: DiffWaveConfig

    family = "diffwave"
    config_class = DiffWaveConfig
    default_gate = ("eval/audio_fid", "min")
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"residual_channels": 32, "layers": 8, "dilation_cycle": 4},  # CPU tests
        "small": {"residual_channels": 64, "layers": 20, "dilation_cycle": 10},
        "base": {"residual_channels": 64, "layers": 30, "dilation_cycle": 10},  # the paper's base model
    }

    def __init__(self, config: DiffWaveConfig):
        super().__init__(config)
        self.diffwave = DiffWaveNetwork(config)
        self.schedule = NoiseSchedule(config.beta_schedule, config.timesteps)

    def networks(self) -> dict[str, nn.Module]:
        return {"diffwave": self.diffwave}

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """MSE between the noise added at a random step and the network's prediction of it."""
        x0 = batch["audio"]
        t = torch.randint(0, self.config.timesteps, (len(x0),), device=x0.device)
        noise = torch.randn_like(x0)
        s = self.schedule
        x_t = gather(s.sqrt_alpha_bar, t, x0) * x0 + gather(s.sqrt_one_minus_alpha_bar, t, x0) * noise
        labels = self.labels_of(batch)
        output = self.run_network("diffwave", x_t, t, *((labels,) if labels is not None else ()))
        return F.mse_loss(output, noise)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`n` clips (n, 1, clip_samples) in [-1, 1] by the ancestral sampler over every step."""
        device = next(self.diffwave.parameters()).device
        if labels is None:
            labels = self.requested_labels(n, device)
        labels = labels.to(device) if labels is not None else None

        def predict(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x0, eps = x0_and_eps(self.schedule, x, t, self.diffwave(x, t, labels), "epsilon")
            return x0.clamp(-1, 1), eps

        noise = torch.randn((n, 1, self.config.clip_samples), generator=generator, device=device)
        return ancestral(predict, self.schedule, noise, generator).clamp(-1, 1)
