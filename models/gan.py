"""GANs: the MLP GAN (Goodfellow et al. 2014), DCGAN (Radford et al. 2015), the conditional GAN
(Mirza & Osindero 2014) and WGAN-GP (Gulrajani et al. 2017), as variants of one class.

A variant is the architecture (MLP or strided convs), the objective (the minimax game with the
non-saturating generator loss, or the Wasserstein distance with a gradient penalty) and whether
labels enter both networks. The discriminator is listed first, so the loop steps it first (and
`n_critic` times for WGAN-GP) and then the generator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.base import GenerativeModel, ModelConfig, interpolate
from models.blocks import Norm, decoder, encoder
from typed_errors import FieldError


class GANConfig(ModelConfig):
    image_shape: tuple[int, int, int] = Field(description="(channels, height, width) of the data")
    num_classes: int = Field(0, ge=0, description="from the data; used by conditional variants")
    latent_dim: int = Field(32, gt=0)
    width: int = Field(128, gt=0, description="MLP: hidden units; conv: channels of the first layer")
    depth: int = Field(2, gt=0, description="MLP: hidden layers; conv: stride-2 layers")
    gp_weight: float = Field(10.0, ge=0, description="WGAN-GP: weight of the gradient penalty")
    n_critic: int = Field(1, gt=0, description="discriminator updates per generator update")


def one_hot_maps(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """Labels as constant one-hot image planes, concatenated to the images' channels."""
    planes = F.one_hot(labels, num_classes).to(like.dtype)[:, :, None, None]
    return planes.expand(-1, -1, *like.shape[2:])


class Generator(nn.Module):
    """z (and a one-hot label) -> an image in [-1, 1]."""

    def __init__(self, config: GANConfig, arch: str, conditional: bool):
        super().__init__()
        self.num_classes = config.num_classes if conditional else 0
        self.body = decoder(arch, config.latent_dim + self.num_classes, config.image_shape, config.width, config.depth)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is not None and self.num_classes:
            z = torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1)
        return torch.tanh(self.body(z))


class Discriminator(nn.Module):
    """An image (and its label as one-hot planes) -> one real-vs-fake logit, or a critic score."""

    def __init__(self, config: GANConfig, arch: str, conditional: bool, norm: Norm):
        super().__init__()
        self.num_classes = config.num_classes if conditional else 0
        channels = config.image_shape[0] + self.num_classes
        self.body = encoder(arch, channels, config.image_shape, config.width, config.depth, 1, norm)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is not None and self.num_classes:
            images = torch.cat([images, one_hot_maps(labels, self.num_classes, images)], dim=1)
        return self.body(images).squeeze(1)


def gradient_penalty(
    critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """E[(||grad_x critic(x_hat)||_2 - 1)^2] on random interpolates x_hat of real and fake images:
    zero for a critic that is 1-Lipschitz with unit slope along every interpolate."""
    mix = torch.rand((real.shape[0], *[1] * (real.dim() - 1)), generator=generator, device=real.device)
    interpolates = (mix * real + (1 - mix) * fake).requires_grad_(True)
    scores = critic(interpolates, labels) if labels is not None else critic(interpolates)
    (gradients,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
    return ((gradients.flatten(1).norm(dim=1) - 1) ** 2).mean()


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No gradient reaches `module`'s parameters: the generator's loss flows through the
    discriminator without filling the discriminator's gradients."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(module.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)


class GAN(GenerativeModel):
    """The MLP GAN: minimax objective, non-saturating generator loss."""

    config: GANConfig

    family = "gan"
    config_class = GANConfig
    arch: ClassVar[Literal["mlp", "conv"]] = "mlp"
    objective: ClassVar[Literal["minimax", "wasserstein-gp"]] = "minimax"
    conditional: ClassVar[bool] = False
    critic_norm: ClassVar[Norm] = "none"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"latent_dim": 32, "width": 256, "depth": 2},
        "small": {"latent_dim": 64, "width": 512, "depth": 3},
    }

    def __init__(self, config: GANConfig):
        super().__init__(config)
        if self.conditional and config.num_classes < 2:
            raise FieldError("family", f"{self.family} needs labelled data (num_classes >= 2)")
        self.discriminator = Discriminator(config, self.arch, self.conditional, self.critic_norm)
        self.generator = Generator(config, self.arch, self.conditional)

    def networks(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator, "generator": self.generator}

    def updates_per_step(self, network: str) -> int:
        return self.config.n_critic if network == "discriminator" else 1

    def _labels(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return (batch["label"],) if self.conditional else ()

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        real = batch["image"]
        labels = self._labels(batch)
        z = torch.randn(real.shape[0], self.config.latent_dim, device=real.device)
        if network == "discriminator":
            with torch.no_grad():
                fake = self.run_network("generator", z, *labels)
            real_score = self.run_network("discriminator", real, *labels)
            fake_score = self.run_network("discriminator", fake, *labels)
            if self.objective == "wasserstein-gp":
                # autograd.grad is a backward of its own: not through the engine (see run_network).
                penalty = gradient_penalty(
                    lambda x, *y: self.run_network("discriminator", x, *y, bare=True),
                    real,
                    fake,
                    labels[0] if labels else None,
                )
                return fake_score.mean() - real_score.mean() + self.config.gp_weight * penalty
            return F.binary_cross_entropy_with_logits(
                real_score, torch.ones_like(real_score)
            ) + F.binary_cross_entropy_with_logits(fake_score, torch.zeros_like(fake_score))
        with frozen(self.discriminator):
            fake = self.run_network("generator", z, *labels)
            score = self.run_network("discriminator", fake, *labels, bare=True)
        if self.objective == "wasserstein-gp":
            return -score.mean()
        return F.binary_cross_entropy_with_logits(score, torch.ones_like(score))  # non-saturating

    def requested_labels(self, n: int, device: torch.device) -> torch.Tensor | None:
        """0, 1, ..., K-1, 0, 1, ...: what a conditional model is asked for when sampling."""
        return torch.arange(n, device=device) % self.config.num_classes if self.conditional else None

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=device)
        return self.decode(z)

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return (*super().metric_names(), "eval/class_accuracy") if cls.conditional else super().metric_names()

    @torch.no_grad()
    def evaluation_pictures(
        self, images: torch.Tensor, generator: torch.Generator, rows: int = 8, steps: int = 10
    ) -> dict[str, tuple[torch.Tensor, int]]:
        """Lines in latent space between two random latents, one class a row when conditional."""
        start, end = (
            torch.randn((rows, self.config.latent_dim), generator=generator, device=images.device) for _ in range(2)
        )
        labels = torch.arange(rows, device=images.device).repeat_interleave(steps) % max(1, self.config.num_classes)
        return {"interpolation.png": (interpolate(lambda codes: self.decode(codes, labels), start, end, steps), steps)}

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images for latent codes; a conditional model draws `labels` (default: balanced)."""
        if not self.conditional:
            return self.generator(z).float()
        labels = self.requested_labels(len(z), z.device) if labels is None else labels
        return self.generator(z, labels).float()


class DCGAN(GAN):
    """Strided convolutions with batch norm in both networks."""

    family = "dcgan"
    arch = "conv"
    critic_norm = "batch"
    presets = {
        "tiny": {"latent_dim": 32, "width": 32, "depth": 2},
        "small": {"latent_dim": 100, "width": 64, "depth": 3},
    }


class ConditionalGAN(GAN):
    """The MLP GAN with the label one-hot in both networks' inputs."""

    family = "cgan"
    conditional = True


class WGANGP(GAN):
    """The DCGAN shape, a critic with a gradient penalty, n_critic critic steps per generator step.

    The critic has no batch norm: it would mix samples and break the per-sample penalty."""

    family = "wgan-gp"
    arch = "conv"
    objective = "wasserstein-gp"
    presets = {name: {**preset, "n_critic": 5, "gp_weight": 10.0} for name, preset in DCGAN.presets.items()}


GAN_FAMILIES: tuple[type[GAN], ...] = (GAN, DCGAN, ConditionalGAN, WGANGP)
