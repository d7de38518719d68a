"""Noise schedules: beta_t for t = 0..T-1 and the quantities DDPM derives from them."""

from __future__ import annotations

import math
from typing import Literal

import torch

BetaSchedule = Literal["linear", "cosine"]
Prediction = Literal["epsilon", "v"]


def linear_betas(timesteps: int) -> torch.Tensor:
    """Ho et al.'s 1e-4..0.02 over 1000 steps, rescaled so other T keep the same end points of
    alpha_bar."""
    scale = 1000 / timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, offset: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's cosine alpha_bar, betas clipped at 0.999 to avoid a singular end."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    alpha_bar = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=0.999)


def make_betas(schedule: BetaSchedule, timesteps: int) -> torch.Tensor:
    if schedule == "linear":
        return linear_betas(timesteps)
    if schedule == "cosine":
        return cosine_betas(timesteps)
    raise ValueError(f"unknown beta schedule {schedule!r} (linear, cosine)")


class NoiseSchedule:
    """Precomputed forward-process and posterior coefficients (float32 copies for the model)."""

    def __init__(self, schedule: BetaSchedule, timesteps: int):
        betas = make_betas(schedule, timesteps)
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, dim=0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        self.timesteps = timesteps
        self.betas = betas.float()
        self.alpha_bar = alpha_bar.float()
        self.sqrt_alpha_bar = alpha_bar.sqrt().float()
        self.sqrt_one_minus_alpha_bar = (1 - alpha_bar).sqrt().float()
        self.sqrt_recip_alpha_bar = (1 / alpha_bar).sqrt().float()
        self.sqrt_recipm1_alpha_bar = (1 / alpha_bar - 1).sqrt().float()
        # q(x_{t-1} | x_t, x_0) = N(coef_x0 * x_0 + coef_xt * x_t, posterior_variance)
        self.posterior_variance = (betas * (1 - alpha_bar_prev) / (1 - alpha_bar)).float()
        self.posterior_log_variance = torch.log(torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]))
        self.posterior_coef_x0 = (betas * alpha_bar_prev.sqrt() / (1 - alpha_bar)).float()
        self.posterior_coef_xt = ((1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar)).float()


def targets(
    schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction: Prediction
) -> torch.Tensor:
    """What the network learns to output: the noise, or v = sqrt(ab) eps - sqrt(1 - ab) x0
    (Salimans & Ho 2022), whose scale stays even across t."""
    if prediction == "epsilon":
        return noise
    return gather(schedule.sqrt_alpha_bar, t, x0) * noise - gather(schedule.sqrt_one_minus_alpha_bar, t, x0) * x0


def x0_and_eps(
    schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, output: torch.Tensor, prediction: Prediction
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's output read back as (x_0, epsilon) estimates."""
    s = schedule
    if prediction == "epsilon":
        x0 = gather(s.sqrt_recip_alpha_bar, t, x_t) * x_t - gather(s.sqrt_recipm1_alpha_bar, t, x_t) * output
        return x0, output
    a, b = gather(s.sqrt_alpha_bar, t, x_t), gather(s.sqrt_one_minus_alpha_bar, t, x_t)
    return a * x_t - b * output, b * x_t + a * output


def eps_from_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The noise that takes x0 to x_t: re-derived after x0 is clipped, as DDIM needs it consistent."""
    s = schedule
    return (gather(s.sqrt_recip_alpha_bar, t, x_t) * x_t - x0) / gather(s.sqrt_recipm1_alpha_bar, t, x_t)


def gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped to broadcast against a batch like `like`."""
    out = values.to(like.device)[t].to(like.dtype)
    return out.reshape(-1, *([1] * (like.dim() - 1)))
