"""A small DDPM U-Net: residual blocks with GroupNorm and a time embedding, down/up blocks joined
by skip connections, self-attention at the low resolutions (Ho et al. 2020, kept readable)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, as in the Transformer's positions."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with the time embedding added in between."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(time_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(attended.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """eps_theta(x_t, t): predicts the noise in x_t.

    Resolution levels follow `channel_mults`; each level has `num_res_blocks` residual blocks
    (attention after each where the feature map is at most `attention_resolution` pixels wide),
    then a stride-2 downsample except at the last level. The decoder mirrors it, concatenating
    the encoder's activations (the skip connections).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        base_channels: int,
        channel_mults: tuple[int, ...],
        num_res_blocks: int,
        attention_resolution: int,
        dropout: float,
    ):
        super().__init__()
        self.base_channels = base_channels
        time_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.stem = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        channels, size = base_channels, image_size
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(self._block(channels, base_channels * mult, time_dim, size,
                                             attention_resolution, dropout))
                channels = base_channels * mult
                skip_channels.append(channels)
            if level < len(channel_mults) - 1:
                self.down.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
                skip_channels.append(channels)
                size //= 2

        self.mid1 = ResidualBlock(channels, channels, time_dim, dropout)
        self.mid_attn = SelfAttention(channels)
        self.mid2 = ResidualBlock(channels, channels, time_dim, dropout)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(self._block(channels + skip_channels.pop(), base_channels * mult,
                                           time_dim, size, attention_resolution, dropout))
                channels = base_channels * mult
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(channels, channels, 3, padding=1)))
                size *= 2

        self.head = nn.Sequential(_norm(channels), nn.SiLU(),
                                  nn.Conv2d(channels, in_channels, 3, padding=1))

    @staticmethod
    def _block(c_in: int, c_out: int, time_dim: int, size: int, attention_resolution: int,
               dropout: float) -> nn.ModuleList:
        layers = [ResidualBlock(c_in, c_out, time_dim, dropout)]
        if size <= attention_resolution:
            layers.append(SelfAttention(c_out))
        return nn.ModuleList(layers)

    @staticmethod
    def _run_block(block: nn.Module, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        if isinstance(block, nn.ModuleList):  # residual block (+ attention)
            h = block[0](h, temb)
            return block[1](h) if len(block) > 1 else h
        return block(h)  # down- or upsampling

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(timestep_embedding(t, self.base_channels).to(x.dtype))
        h = self.stem(x)
        skips = [h]
        for block in self.down:
            h = self._run_block(block, h, temb)
            skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for block in self.up:
            if isinstance(block, nn.ModuleList):
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._run_block(block, h, temb)
        return self.head(h)
