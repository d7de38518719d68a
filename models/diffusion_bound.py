"""The variational bound of a DDPM on discrete images (Ho et al. 2020, eq. 5; Nichol & Dhariwal's
estimator): -log p(x_0) <= L_T + sum_{t>=1} L_t + L_0, in nats per image.

- L_T: KL(q(x_T | x_0) || N(0, I)), exact.
- L_t: KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)). Both Gaussians have the sampler's variance,
  so each is |mu_q - mu_p|^2 / (2 var). The sum over t is estimated from `timesteps_per_image`
  uniform draws of t per image (unbiased; every t once when it is T - 1).
- L_0: -log of the discretised Gaussian decoder: the mass of the pixel's own bin (width 2 / (L - 1),
  the outer bins open to infinity) under N(predicted x_0, the sampler's last variance).

The network's x_0 predictions are read as the ancestral sampler reads them (clipped), so the
bound is that of the model that draws the samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from models.schedules import gather

if TYPE_CHECKING:
    from models.ddpm import DDPM


def discretised_gaussian_nll(
    x: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor, levels: int
) -> torch.Tensor:
    """-log P(x) per image of pixels x on `levels` even levels of [-1, 1] under N(mean, var)
    integrated over each pixel's bin."""
    half_bin = 1.0 / (levels - 1)
    scale = (-0.5 * log_variance).exp()
    upper = torch.where(x > 1 - half_bin, torch.ones_like(x), torch.special.ndtr((x + half_bin - mean) * scale))
    lower = torch.where(x < -1 + half_bin, torch.zeros_like(x), torch.special.ndtr((x - half_bin - mean) * scale))
    return -(upper - lower).clamp_min(1e-12).log().flatten(1).sum(1)


@torch.no_grad()
def variational_bound_nats(
    model: DDPM, images: torch.Tensor, levels: int, timesteps_per_image: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The bound on -log P(x) per image in nats, for an unconditional DDPM on `levels` levels."""
    s, T = model.schedule, model.schedule.timesteps
    x0 = model.encode(images)
    predict = model._predictor(None, 1.0)

    def noised(t: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        return model.q_sample(x0, t, noise)

    def posterior_mean(start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return gather(s.posterior_coef_x0, t, x_t) * start + gather(s.posterior_coef_xt, t, x_t) * x_t

    last = torch.full((len(x0),), T - 1, device=x0.device)
    prior_mean, prior_variance = gather(s.sqrt_alpha_bar, last, x0) * x0, gather(1 - s.alpha_bar, last, x0)
    prior = 0.5 * (prior_mean.pow(2) + prior_variance - 1 - prior_variance.log()).flatten(1).sum(1)

    if timesteps_per_image >= T - 1:  # every t once: the sum itself
        draws = [torch.full((len(x0),), step, device=x0.device) for step in range(1, T)]
    else:  # uniform t per image: (T - 1) x the mean is an unbiased estimate of the sum
        draws = [
            torch.randint(1, T, (len(x0),), generator=generator, device=x0.device) for _ in range(timesteps_per_image)
        ]
    middle = torch.zeros(len(x0), device=x0.device)
    for t in draws:
        x_t = noised(t)
        predicted, _ = predict(x_t, t)
        gap = posterior_mean(x0, x_t, t) - posterior_mean(predicted, x_t, t)
        middle += (gap.pow(2) / (2 * gather(s.posterior_log_variance, t, x_t).exp())).flatten(1).sum(1)
    middle *= (T - 1) / len(draws)

    first = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
    x_first = noised(first)
    predicted, _ = predict(x_first, first)
    decoder = discretised_gaussian_nll(x0, predicted, gather(s.posterior_log_variance, first, x0), levels)
    return prior + middle + decoder
