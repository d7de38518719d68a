"""Autoencoders: the VAE (Kingma & Welling 2014) in MLP and convolutional shapes, beta-VAE
(Higgins et al. 2017) with optional KL warm-up, and two deterministic ones, the denoising AE
(Vincent et al. 2008) and the sparse AE (L1 or KL sparsity on the code).

Units, since the zoos differ on them: pixels are in [-1, 1]. The VAE's ELBO is in nats per image,
log p(x|z) summed over every pixel and the KL summed over every latent dimension, averaged over
the batch; `beta` multiplies that whole-image KL (never a per-pixel mean against a per-latent sum).
Bernoulli likelihood: each pixel's value mapped to [0, 1] is the target of a sigmoid output (the
usual choice for digits; a proper density only for binary images). Gaussian likelihood: a fixed
standard deviation `sigma` in the [-1, 1] pixel units. Categorical likelihood: a softmax over the
source's intensity levels per pixel, a proper density of the discrete image, so the
importance-weighted NLL compares in bits per dimension with PixelCNN's and the flows'.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.base import GenerativeModel, ModelConfig, interpolate
from models.blocks import decoder, encoder
from models.likelihood import from_levels, to_levels


class EncoderDecoderConfig(ModelConfig):
    image_shape: tuple[int, int, int] = Field(description="(channels, height, width) of the data")
    latent_dim: int = Field(16, gt=0)
    width: int = Field(256, gt=0, description="MLP: hidden units; conv: channels of the first layer")
    depth: int = Field(2, gt=0, description="MLP: hidden layers; conv: stride-2 layers")


class VAEConfig(EncoderDecoderConfig):
    likelihood: Literal["bernoulli", "gaussian", "categorical"] = "bernoulli"
    pixel_levels: int = Field(256, ge=2, le=65536, description="categorical: intensities per pixel, from the data")
    sigma: float = Field(0.1, gt=0, description="gaussian likelihood: pixel standard deviation")
    beta: float = Field(1.0, ge=0, description="weight of the KL term (beta-VAE)")
    kl_warmup_steps: int = Field(0, ge=0, description="the KL weight ramps from 0 to beta over these steps")


class AEConfig(EncoderDecoderConfig):
    noise_std: float = Field(0.0, ge=0, description="denoising: Gaussian noise added to the input")
    sparsity: Literal["none", "l1", "kl"] = "none"
    sparsity_weight: float = Field(1e-3, ge=0)
    sparsity_target: float = Field(0.05, gt=0, lt=1, description="kl sparsity: target mean activation")


class EncoderDecoder(nn.Module):
    """The one trainable network of an autoencoder: image -> code statistics, code -> pixels."""

    def __init__(self, config: EncoderDecoderConfig, arch: str, code_features: int, outputs_per_pixel: int = 1):
        super().__init__()
        shape = config.image_shape
        self.encoder = encoder(arch, shape[0], shape, config.width, config.depth, code_features)
        output_shape = (shape[0] * outputs_per_pixel, shape[1], shape[2])
        self.decoder = decoder(arch, config.latent_dim, output_shape, config.width, config.depth)

    def forward(self, images: torch.Tensor, code_transform) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoder output, encoder output); `code_transform` turns the encoder output into the
        code the decoder sees (reparameterised sample, sparse activation)."""
        encoded = self.encoder(images)
        return self.decoder(code_transform(encoded)), encoded


class Autoencoding(GenerativeModel):
    """What the evaluator asks of every autoencoder: encode, decode, reconstruct."""

    config: EncoderDecoderConfig
    autoencoder: EncoderDecoder

    arch: ClassVar[Literal["mlp", "conv"]] = "mlp"

    def networks(self) -> dict[str, nn.Module]:
        return {"autoencoder": self.autoencoder}

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The code of each image (the posterior mean for a VAE)."""

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] for codes."""

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))

    def _device(self) -> torch.device:
        return next(self.autoencoder.parameters()).device

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return (*super().metric_names(), "eval/reconstruction_mse")

    @torch.no_grad()
    def evaluation_metrics(
        self, images: torch.Tensor, iw_samples: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Reconstruction error: mean squared error per pixel, in [-1, 1] units."""
        return {"eval/reconstruction_mse": float((self.reconstruct(images) - images).pow(2).mean())}

    @torch.no_grad()
    def evaluation_pictures(
        self, images: torch.Tensor, generator: torch.Generator, rows: int = 8, steps: int = 10
    ) -> dict[str, tuple[torch.Tensor, int]]:
        """Originals over their reconstructions, and lines in latent space between the codes of
        two val images."""
        originals = images[: 2 * rows]
        pairs = torch.stack(
            [originals.view(2, rows, *images.shape[1:]), self.reconstruct(originals).view(2, rows, *images.shape[1:])],
            dim=1,
        )
        start, end = self.encode(images[:rows]), self.encode(images[rows : 2 * rows])
        return {
            "reconstructions.png": (pairs.flatten(0, 2), rows),
            "interpolation.png": (interpolate(self.decode, start, end, steps), steps),
        }


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per sample, summed over the latent dimensions."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(dim=1)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, exp(log_var)) per sample, summed over dimensions."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mean).pow(2) / log_var.exp()).sum(dim=-1)


class VAE(Autoencoding):
    """MLP encoder to (mean, log-variance), reparameterised sample, MLP decoder; loss = -ELBO."""

    config: VAEConfig

    family = "vae"
    config_class = VAEConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"latent_dim": 16, "width": 256, "depth": 2},
        "small": {"latent_dim": 32, "width": 512, "depth": 3},
    }

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        levels = config.pixel_levels if config.likelihood == "categorical" else 1
        self.autoencoder = EncoderDecoder(config, self.arch, 2 * config.latent_dim, outputs_per_pixel=levels)

    def log_likelihood(self, output: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per image, summed over pixels; `output` is the decoder's raw output."""
        if self.config.likelihood == "bernoulli":
            targets = ((images + 1) / 2).expand_as(output)
            return -F.binary_cross_entropy_with_logits(output, targets, reduction="none").flatten(1).sum(1)
        if self.config.likelihood == "categorical":
            targets = to_levels(images, self.config.pixel_levels)
            return -F.cross_entropy(self._level_logits(output), targets, reduction="none").flatten(1).sum(1)
        sigma = self.config.sigma
        log_density = -0.5 * ((images - output) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)
        return log_density.flatten(1).sum(1)

    def elbo_terms(
        self, images: torch.Tensor, noise: torch.Tensor | None = None, network: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x|z), KL(q(z|x) || p(z))) per image, with z = mean + std * noise."""
        net = network or self.autoencoder
        noise = torch.randn(images.shape[0], self.config.latent_dim, device=images.device) if noise is None else noise
        statistics: list[torch.Tensor] = []

        def reparameterise(encoded: torch.Tensor) -> torch.Tensor:
            mean, log_var = encoded.float().chunk(2, dim=1)
            statistics.extend((mean, log_var))
            return (mean + (0.5 * log_var).exp() * noise).to(encoded.dtype)

        dtype = next(net.parameters()).dtype
        output, _ = net(images.to(dtype), reparameterise)
        return self.log_likelihood(output.float(), images), gaussian_kl(*statistics)

    def kl_weight(self) -> float:
        warmup = self.config.kl_warmup_steps
        return self.config.beta * (min(1.0, (self.global_step + 1) / warmup) if warmup else 1.0)

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        log_likelihood, kl = self.elbo_terms(batch["image"], network=self.net("autoencoder"))
        return (self.kl_weight() * kl - log_likelihood).mean()

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.autoencoder.encoder(images).float().chunk(2, dim=1)

    @torch.no_grad()
    def elbo(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The ELBO (beta = 1) per image in nats."""
        noise = torch.randn(images.shape[0], self.config.latent_dim, generator=generator, device=images.device)
        log_likelihood, kl = self.elbo_terms(images, noise)
        return log_likelihood - kl

    @torch.no_grad()
    def importance_weighted_nll(
        self, images: torch.Tensor, k: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """-log p(x) per image estimated with k posterior samples (Burda et al. 2016): at k = 1 a
        one-sample estimate of -ELBO, an ever tighter upper bound on the NLL as k grows."""
        mean, log_var = self.posterior(images)
        noise = torch.randn((k, *mean.shape), generator=generator, device=images.device)
        z = mean + (0.5 * log_var).exp() * noise  # (k, N, D)
        output = self.autoencoder.decoder(z.flatten(0, 1)).float()
        log_px = self.log_likelihood(output, images.repeat(k, 1, 1, 1)).view(k, -1)
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = gaussian_log_density(z, mean, log_var)
        return -(torch.logsumexp(log_px + log_pz - log_qz, dim=0) - math.log(k))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.posterior(images)[0]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        output = self.autoencoder.decoder(codes).float()
        if self.config.likelihood == "bernoulli":
            return torch.sigmoid(output) * 2 - 1
        if self.config.likelihood == "categorical":  # the mean pixel of each softmax
            levels = self.config.pixel_levels
            values = from_levels(torch.arange(levels, device=output.device), levels)
            return torch.einsum("nlchw,l->nchw", self._level_logits(output).softmax(1), values)
        return output.clamp(-1, 1)

    def _level_logits(self, output: torch.Tensor) -> torch.Tensor:
        """The decoder's (N, C * L, H, W) as cross-entropy's (N, L, C, H, W)."""
        n, _, height, width = output.shape
        return output.view(n, -1, self.config.pixel_levels, height, width).transpose(1, 2)

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return (*super().metric_names(), "eval/elbo", "eval/elbo_per_pixel", "eval/nll_iw")

    @torch.no_grad()
    def evaluation_metrics(
        self, images: torch.Tensor, iw_samples: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, float]:
        """With the reconstruction error: the ELBO (nats per image and per pixel) and the
        k-sample importance-weighted NLL."""
        metrics = super().evaluation_metrics(images, iw_samples, generator)
        elbo = self.elbo(images, generator).mean()
        metrics["eval/elbo"] = float(elbo)
        metrics["eval/elbo_per_pixel"] = float(elbo) / images[0].numel()
        nll = torch.cat([self.importance_weighted_nll(chunk, iw_samples, generator) for chunk in images.split(64)])
        metrics["eval/nll_iw"] = float(nll.mean())
        return metrics

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=self._device())
        return self.decode(z)


class ConvVAE(VAE):
    """The VAE with a strided-conv encoder and a transposed-conv decoder."""

    family = "conv-vae"
    arch = "conv"
    presets = {
        "tiny": {"latent_dim": 16, "width": 32, "depth": 2},
        "small": {"latent_dim": 64, "width": 64, "depth": 3},
    }


class BetaVAE(ConvVAE):
    """The convolutional VAE with beta > 1 (more disentangled, blurrier) and a KL warm-up."""

    family = "beta-vae"
    presets = {name: {**preset, "beta": 4.0, "kl_warmup_steps": 200} for name, preset in ConvVAE.presets.items()}


class Autoencoder(Autoencoding):
    """The denoising autoencoder: reconstruct clean images from noisy ones (noise_std).

    A deterministic autoencoder has no prior to sample from, so it keeps running moments of its
    training codes and samples by decoding draws from that diagonal Gaussian: crude, but it lets
    classifier-FID compare it with the other generators."""

    config: AEConfig
    code_mean: torch.Tensor
    code_var: torch.Tensor

    family = "dae"
    config_class = AEConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"latent_dim": 16, "width": 256, "depth": 2, "noise_std": 0.3},
        "small": {"latent_dim": 32, "width": 512, "depth": 3, "noise_std": 0.3},
    }
    code_momentum: ClassVar[float] = 0.02

    def __init__(self, config: AEConfig):
        super().__init__(config)
        self.autoencoder = EncoderDecoder(config, self.arch, config.latent_dim)
        self.register_buffer("code_mean", torch.zeros(config.latent_dim))
        self.register_buffer("code_var", torch.ones(config.latent_dim))

    def activate(self, encoded: torch.Tensor) -> torch.Tensor:
        if self.config.sparsity == "kl":
            return torch.sigmoid(encoded)  # activations in (0, 1), pulled towards sparsity_target
        if self.config.sparsity == "l1":
            return F.relu(encoded)
        return encoded

    def sparsity_penalty(self, codes: torch.Tensor) -> torch.Tensor:
        if self.config.sparsity == "l1":
            return codes.abs().sum(dim=1).mean()
        if self.config.sparsity == "kl":
            rho, rho_hat = self.config.sparsity_target, codes.mean(dim=0).clamp(1e-6, 1 - 1e-6)
            return (rho * (rho / rho_hat).log() + (1 - rho) * ((1 - rho) / (1 - rho_hat)).log()).sum()
        return codes.new_zeros(())

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        images = batch["image"]
        noisy = images + self.config.noise_std * torch.randn_like(images) if self.config.noise_std else images
        codes: list[torch.Tensor] = []

        def activate(encoded: torch.Tensor) -> torch.Tensor:
            codes.append(self.activate(encoded))
            return codes[0]

        net = self.net("autoencoder")
        output, _ = net(noisy.to(next(net.parameters()).dtype), activate)
        code = codes[0].float()
        self._track_codes(code.detach())
        reconstruction = (output.float() - images).pow(2).flatten(1).sum(1).mean()
        return reconstruction + self.config.sparsity_weight * self.sparsity_penalty(code)

    @torch.no_grad()
    def _track_codes(self, codes: torch.Tensor) -> None:
        self.code_mean.lerp_(codes.mean(0), self.code_momentum)
        self.code_var.lerp_(codes.var(0, unbiased=False), self.code_momentum)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.activate(self.autoencoder.encoder(images).float())

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decoder(codes).float().clamp(-1, 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn((n, self.config.latent_dim), generator=generator, device=self._device())
        codes = self.code_mean + self.code_var.sqrt() * noise
        if self.config.sparsity != "none":
            codes = codes.clamp(0, 1) if self.config.sparsity == "kl" else codes.clamp_min(0)
        return self.decode(codes)


class SparseAutoencoder(Autoencoder):
    """An autoencoder whose code is pushed to sparsity: L1 on ReLU codes, or KL to a target rate."""

    family = "sparse-ae"
    presets = {
        "tiny": {"latent_dim": 64, "width": 256, "depth": 2, "sparsity": "l1", "sparsity_weight": 1e-2},
        "small": {"latent_dim": 128, "width": 512, "depth": 3, "sparsity": "l1", "sparsity_weight": 1e-2},
    }


AUTOENCODER_FAMILIES: tuple[type[Autoencoding], ...] = (VAE, ConvVAE, BetaVAE, Autoencoder, SparseAutoencoder)
