"""Energy-based models: an energy network trained by contrastive divergence, its negatives drawn by
stochastic-gradient Langevin dynamics from a replay buffer (Du & Mordatch 2019, "IGEBM"), and JEM
(Grathwohl et al. 2020), where the same network is also a classifier.

A network f maps an image to K numbers; the energy is E(x) = -logsumexp_y f(x)[y] (K = 1 for the
plain EBM, K = classes for JEM, whose softmax over f is p(y | x)). Each step lowers the energy of
data (plus a little noise) and raises that of Langevin samples, with a penalty on both energies'
squares that keeps them near zero (IGEBM's stabiliser; `spectral_norm` is the other). Chains
start from the replay buffer, or with probability `reinit` from uniform noise. Sampling for
evaluation runs longer chains from noise (short-run sampling, Nijkamp et al. 2019), so a
registered model samples without its training buffer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.base import SAMPLE_METRICS, GenerativeModel, ModelConfig
from typed_errors import OptionError


class EBMConfig(ModelConfig):
    image_shape: tuple[int, int, int] = Field(description="(channels, height, width) of the data")
    num_classes: int = Field(10, gt=0, description="JEM: the classes, from the data")
    channels: int = Field(64, gt=0, description="feature maps of the energy network's first layer")
    spectral_norm: bool = Field(False, description="spectral normalisation of every layer")
    energy_penalty: float = Field(1.0, ge=0, description="weight of E(x)^2 on data and negatives")
    sgld_steps: int = Field(20, gt=0, description="Langevin steps per training step")
    sgld_step_size: float = Field(1.0, gt=0, description="multiplies the energy's gradient")
    sgld_noise: float = Field(0.01, ge=0, description="standard deviation of each step's noise")
    buffer_size: int = Field(10000, gt=0, description="replay buffer of past negatives")
    reinit: float = Field(0.05, ge=0, le=1, description="share of chains restarted from noise")
    data_noise: float = Field(0.03, ge=0, description="Gaussian noise added to data images")
    sample_steps: int = Field(200, gt=0, description="Langevin steps of a sample drawn from noise")
    classifier_weight: float = Field(1.0, ge=0, description="JEM: weight of the cross-entropy")


class EnergyNetwork(nn.Module):
    """Strided convolutions with SiLU (smooth, so Langevin gradients are too), then K outputs."""

    def __init__(self, config: EBMConfig, outputs: int):
        super().__init__()
        c = config.channels
        layers: list[nn.Module] = [
            nn.Conv2d(config.image_shape[0], c, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * c, outputs),
        ]
        if config.spectral_norm:
            layers = [
                nn.utils.parametrizations.spectral_norm(m) if isinstance(m, nn.Conv2d | nn.Linear) else m
                for m in layers
            ]
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class EBM(GenerativeModel):
    """An unconditional energy-based model of images."""

    config: EBMConfig

    family = "ebm"
    config_class = EBMConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"channels": 32, "sgld_steps": 20, "buffer_size": 2000, "sample_steps": 200},
        "small": {"channels": 64, "sgld_steps": 40, "buffer_size": 10000, "sample_steps": 300},
    }
    classifies: ClassVar[bool] = False

    def __init__(self, config: EBMConfig):
        super().__init__(config)
        self.energy_net = EnergyNetwork(config, config.num_classes if self.classifies else 1)
        self.replay = self._noise(config.buffer_size, None, None)  # on the default device, kept there

    def networks(self) -> dict[str, nn.Module]:
        return {"energy_net": self.energy_net}

    def _noise(self, n: int, device: torch.device | None, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand((n, *self.config.image_shape), generator=generator, device=device) * 2 - 1

    def energy(self, images: torch.Tensor, bare: bool = False) -> torch.Tensor:
        """E(x) per image: -logsumexp of the network's outputs."""
        return -torch.logsumexp(self.run_network("energy_net", images, bare=bare), dim=1)

    def langevin(self, images: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x <- x - step_size * dE/dx + noise, `steps` times, inside [-1, 1]. Through the bare
        network: these gradients are the input's, never the weights'."""
        c = self.config
        x = images.detach()
        with torch.enable_grad():
            for _ in range(steps):
                x.requires_grad_(True)
                (gradient,) = torch.autograd.grad(self.energy(x, bare=True).sum(), x)
                noise = torch.randn(x.shape, generator=generator, device=x.device)
                x = (x.detach() - c.sgld_step_size * gradient + c.sgld_noise * noise).clamp(-1, 1)
        return x.detach()

    def _replay_draw(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Chain starts: buffer rows (their indices, to write the results back), a `reinit` share
        of them swapped for fresh noise."""
        indices = torch.randint(len(self.replay), (n,))
        starts = self.replay[indices].to(device)
        restart = torch.rand(n, device=device) < self.config.reinit
        return torch.where(restart[:, None, None, None], self._noise(n, device, None), starts), indices

    def contrastive_loss(self, network: str, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the contrastive divergence loss with its energy penalty, the network's outputs on
        the data) from one pass over data and negatives together."""
        c = self.config
        starts, indices = self._replay_draw(len(images), images.device)
        negatives = self.langevin(starts, c.sgld_steps)
        self.replay[indices] = negatives.to(self.replay.device)
        positives = images + c.data_noise * torch.randn_like(images)
        outputs = self.run_network(network, torch.cat([positives, negatives]))
        energies = -torch.logsumexp(outputs, dim=1)
        data_energy, negative_energy = energies.chunk(2)
        loss = data_energy.mean() - negative_energy.mean() + c.energy_penalty * energies.pow(2).mean()
        return loss, outputs[: len(images)]

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.contrastive_loss(network, batch["image"])[0]

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        return {"replay": self.replay.cpu()}

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        if "replay" in state:
            self.replay = state["replay"].float().cpu()

    def sample_options(self, n: int, steps: int | None = None, **other: Any) -> dict[str, Any]:
        """`steps`: longer Langevin chains from noise (200 rather than the trained length)."""
        self.refuse_options(other)
        if steps is None:
            return {}
        if steps <= 0:
            raise OptionError("steps", "must be > 0")
        return {"steps": steps}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, steps: int | None = None) -> torch.Tensor:
        device = next(self.energy_net.parameters()).device
        return self.langevin(self._noise(n, device, generator), steps or self.config.sample_steps, generator)

    @torch.no_grad()
    def evaluation_pictures(
        self, images: torch.Tensor, generator: torch.Generator, rows: int = 8, steps: int = 10
    ) -> dict[str, tuple[torch.Tensor, int]]:
        """Langevin chains from noise: each row one chain, `steps` snapshots left to right."""
        x = self._noise(rows, images.device, generator)
        every = max(1, self.config.sample_steps // (steps - 1))
        snapshots = [x]
        for _ in range(steps - 1):
            x = self.langevin(x, every, generator)
            snapshots.append(x)
        return {"langevin_chains.png": (torch.stack(snapshots, dim=1).flatten(0, 1), steps)}


class JEM(EBM):
    """The energy network as a classifier too: p(y|x) is the softmax of its outputs, and the loss
    adds the classifier's cross-entropy to the contrastive divergence of p(x)."""

    family = "jem"
    classifies = True

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return (*SAMPLE_METRICS, "eval/class_accuracy")

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        generative, outputs = self.contrastive_loss(network, batch["image"])
        return generative + self.config.classifier_weight * F.cross_entropy(outputs, batch["label"].long())

    @torch.no_grad()
    def evaluation_metrics(
        self, images: torch.Tensor, iw_samples: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, float]:
        """The classifier's accuracy on val images."""
        if labels is None:
            return {}
        predicted = torch.cat(
            [self.run_network("energy_net", chunk, bare=True).argmax(1) for chunk in images.split(256)]
        )
        return {"eval/class_accuracy": float((predicted.cpu() == labels.cpu()).float().mean())}
