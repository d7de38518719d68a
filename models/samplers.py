"""Samplers: from pure noise to data through a trained denoiser.

`predict(x_t, t)` returns the denoiser's (x_0, epsilon) estimates, already guided and clipped by
the model, so the samplers hold only the update rules: DDPM's ancestral step (Ho et al. 2020)
and DDIM's (Song et al. 2021), which may skip timesteps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from models.schedules import NoiseSchedule, gather

Predict = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _timestep(step: int, n: int, device: torch.device) -> torch.Tensor:
    return torch.full((n,), step, device=device, dtype=torch.long)


@torch.no_grad()
def ancestral(
    predict: Predict, schedule: NoiseSchedule, x: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Every one of the T steps: x_{t-1} ~ q(x_{t-1} | x_t, x_0 = the prediction)."""
    s = schedule
    for step in reversed(range(s.timesteps)):
        t = _timestep(step, len(x), x.device)
        x0, _ = predict(x, t)
        mean = gather(s.posterior_coef_x0, t, x) * x0 + gather(s.posterior_coef_xt, t, x) * x
        if step == 0:
            return mean
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        x = mean + torch.exp(0.5 * gather(s.posterior_log_variance, t, x)) * noise
    return x


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """`steps` timesteps from T-1 down to 0, evenly spaced (both ends included)."""
    steps = max(1, min(steps, timesteps))
    return sorted({round(i * (timesteps - 1) / max(1, steps - 1)) for i in range(steps)}, reverse=True)


@torch.no_grad()
def ddim(
    predict: Predict,
    schedule: NoiseSchedule,
    x: torch.Tensor,
    steps: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDIM over `steps` timesteps; eta = 0 is deterministic, eta = 1 matches DDPM's variance."""
    alpha_bar = schedule.alpha_bar.to(x.device)
    sequence = ddim_timesteps(schedule.timesteps, steps)
    for index, step in enumerate(sequence):
        x0, eps = predict(x, _timestep(step, len(x), x.device))
        previous = sequence[index + 1] if index + 1 < len(sequence) else None
        if previous is None:
            return x0
        a_t, a_prev = alpha_bar[step], alpha_bar[previous]
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device)
    return x
