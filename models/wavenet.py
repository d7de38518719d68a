"""WaveNet (van den Oord et al. 2016): raw audio as a 256-way categorical over mu-law levels,
predicted sample by sample by stacks of dilated causal convolutions with gated units, residual
and skip connections, optionally conditioned on the clip's class (global conditioning).

Its loss is the exact negative log-likelihood, reported as bits per sample (8 is a uniform guess
over the 256 levels). Generation keeps, for each layer, the inputs its dilated convolution will
need again (Paine et al. 2016, "Fast WaveNet"): a new sample costs one position's work per
layer instead of the whole receptive field's.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.audio import AUDIO_METRICS, AudioConfig, AudioFamily

LEVELS = 256  # mu-law quantisation levels
MU = LEVELS - 1
BITS_PER_SAMPLE = "eval/bits_per_sample"


def mu_law_encode(audio: torch.Tensor) -> torch.Tensor:
    """Samples in [-1, 1] -> levels 0..255 (mu-law companding, then uniform quantisation)."""
    companded = torch.sign(audio) * torch.log1p(MU * audio.abs().clamp(max=1.0)) / math.log1p(MU)
    return ((companded + 1) / 2 * MU + 0.5).long().clamp(0, MU)


def mu_law_decode(levels: torch.Tensor) -> torch.Tensor:
    """Levels 0..255 -> samples in [-1, 1]."""
    companded = levels.float() / MU * 2 - 1
    return torch.sign(companded) * ((1 + MU) ** companded.abs() - 1) / MU


class WaveNetConfig(AudioConfig):
    residual_channels: int = Field(32, gt=0)
    skip_channels: int = Field(64, gt=0)
    layers: int = Field(8, gt=0, le=16, description="per stack: dilations 1, 2, 4, ..., 2^(layers-1)")
    stacks: int = Field(1, gt=0)

    @property
    def receptive_field(self) -> int:
        return self.stacks * (2**self.layers - 1) + 1


class GatedLayer(nn.Module):
    """A dilated causal convolution (kernel 2) into tanh * sigmoid gates, a 1x1 residual and a 1x1 skip."""

    def __init__(self, channels: int, skip: int, dilation: int, num_classes: int):
        super().__init__()
        self.dilation = dilation
        self.dilated = nn.Conv1d(channels, 2 * channels, kernel_size=2, dilation=dilation)
        self.condition = nn.Embedding(num_classes, 2 * channels) if num_classes else None
        self.residual = nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, skip, 1)

    def gates(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.condition is not None and labels is not None:
            h = h + self.condition(labels).unsqueeze(-1)
        filter_, gate = h.chunk(2, dim=1)
        return torch.tanh(filter_) * torch.sigmoid(gate)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.gates(self.dilated(F.pad(x, (self.dilation, 0))), labels)
        return x + self.residual(z), self.skip(z)

    def step(
        self, x: torch.Tensor, past: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One position: `x` (B, C, 1) now and `past` (B, C, 1) `dilation` samples ago."""
        weight = self.dilated.weight
        h = F.conv1d(past, weight[:, :, :1]) + F.conv1d(x, weight[:, :, 1:], self.dilated.bias)
        z = self.gates(h, labels)
        return x + self.residual(z), self.skip(z)


class WaveNetNetwork(nn.Module):
    """Levels (B, T) -> logits (B, 256, T) over the next level at each position."""

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        classes = config.num_classes if config.conditional else 0
        self.embed = nn.Embedding(LEVELS, config.residual_channels)
        self.layers = nn.ModuleList(
            GatedLayer(config.residual_channels, config.skip_channels, 2**i, classes)
            for _ in range(config.stacks)
            for i in range(config.layers)
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv1d(config.skip_channels, config.skip_channels, 1), nn.ReLU(),
            nn.Conv1d(config.skip_channels, LEVELS, 1),
        )  # fmt: skip

    def forward(self, levels: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(levels).transpose(1, 2)
        skips = 0
        for layer in self.layers:
            x, skip = layer(x, labels)
            skips = skips + skip
        return self.head(skips)


class WaveNet(AudioFamily):
    """Clips of audio, sample by sample."""

    config: WaveNetConfig

    family = "wavenet"
    config_class = WaveNetConfig
    default_gate = (BITS_PER_SAMPLE, "min")
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"residual_channels": 16, "skip_channels": 32, "layers": 7, "stacks": 1},  # CPU tests
        "small": {"residual_channels": 64, "skip_channels": 128, "layers": 10, "stacks": 2},
        "base": {"residual_channels": 128, "skip_channels": 256, "layers": 10, "stacks": 3},
    }

    def __init__(self, config: WaveNetConfig):
        super().__init__(config)
        self.wavenet = WaveNetNetwork(config)

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return (BITS_PER_SAMPLE, *AUDIO_METRICS)

    def networks(self) -> dict[str, nn.Module]:
        return {"wavenet": self.wavenet}

    def _inputs_and_targets(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each position's input is the level before it (silence before the first)."""
        targets = mu_law_encode(audio[:, 0])
        silence = torch.full_like(targets[:, :1], LEVELS // 2)
        return torch.cat([silence, targets[:, :-1]], dim=1), targets

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of each sample's level given the samples before it (nats per sample)."""
        inputs, targets = self._inputs_and_targets(batch["audio"])
        logits = self.net("wavenet")(inputs, self.labels_of(batch))
        return F.cross_entropy(logits.float(), targets)

    @torch.no_grad()
    def evaluation_metrics(
        self, images: torch.Tensor, iw_samples: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Exact bits per sample of the val clips (`images`: the hook is named for the image families)."""
        total, count = 0.0, 0
        for start in range(0, len(images), 16):
            batch = {"audio": images[start : start + 16]}
            if labels is not None:
                batch["label"] = labels[start : start + 16].to(images.device)
            total += self.loss("wavenet", batch).item() * len(batch["audio"])
            count += len(batch["audio"])
        return {BITS_PER_SAMPLE: total / max(1, count) / math.log(2), "eval/uniform_bits_per_sample": math.log2(LEVELS)}

    # --- sampling -------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
        length: int | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """`n` clips (n, 1, length) in [-1, 1], sample by sample; `use_cache` keeps each layer's past
        inputs (Fast WaveNet) instead of running the receptive field again for every sample."""
        device = next(self.wavenet.parameters()).device
        length = length or self.config.clip_samples
        if labels is None:
            labels = self.requested_labels(n, device)
        labels = labels.to(device) if labels is not None else None
        step = self._cached_steps(n, labels) if use_cache else self._windowed_steps(n, labels, device)
        level = torch.full((n,), LEVELS // 2, dtype=torch.long, device=device)
        out = torch.empty((n, length), dtype=torch.long, device=device)
        for t in range(length):
            logits = step(level)
            level = torch.multinomial(F.softmax(logits.float(), dim=-1), 1, generator=generator)[:, 0]
            out[:, t] = level
        return mu_law_decode(out).unsqueeze(1)

    def _cached_steps(self, n: int, labels: torch.Tensor | None):
        """A function: the level just drawn -> logits of the next, with each layer's past inputs
        kept in a ring of `dilation` positions."""
        net = self.wavenet
        layers = cast(list[GatedLayer], list(net.layers))
        device = next(net.parameters()).device
        rings = [torch.zeros((n, self.config.residual_channels, layer.dilation), device=device) for layer in layers]
        position = 0

        def step(level: torch.Tensor) -> torch.Tensor:
            nonlocal position
            x = net.embed(level).unsqueeze(-1)  # (n, C, 1)
            skips = torch.zeros((), device=device)
            for layer, ring in zip(layers, rings, strict=True):
                slot = position % layer.dilation
                past = ring[:, :, slot : slot + 1].clone()
                ring[:, :, slot : slot + 1] = x
                x, skip = layer.step(x, past, labels)
                skips = skips + skip
            position += 1
            return net.head(skips)[:, :, 0]

        return step

    def _windowed_steps(self, n: int, labels: torch.Tensor | None, device: torch.device):
        """The same function without a cache: the levels so far (the last receptive field of them)
        through the whole network again."""
        history = torch.empty((n, 0), dtype=torch.long, device=device)

        def step(level: torch.Tensor) -> torch.Tensor:
            nonlocal history
            history = torch.cat([history, level[:, None]], dim=1)[:, -self.config.receptive_field :]
            return self.wavenet(history, labels)[:, :, -1]

        return step
