"""The diffusion U-Net (Ho et al. 2020; Rombach et al. 2022 for the conditioning), kept readable.

Residual blocks with GroupNorm and a time embedding, down/up levels joined by skip connections,
multi-head self-attention at the low resolutions. Conditioning enters two ways: a class label
as an embedding added to the time embedding, or a text encoder's tokens through cross-attention
in every attention block. The null condition (label `num_classes`, or the empty prompt) is what
classifier-free guidance trains with label dropout and subtracts at sampling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.text_encoder import TextEncoder
from typed_errors import FieldError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, as in the Transformer's positions."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def group_norm(channels: int) -> nn.GroupNorm:
    """32 groups as in the DDPM paper, fewer where the channels do not divide."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with the (time + class) embedding added in between."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.embed = nn.Linear(embed_dim, c_out)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embed(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class Attention(nn.Module):
    """Multi-head attention of a feature map's pixels over themselves, or over a context (the
    text encoder's tokens, `mask` marking the real ones). Residual."""

    def __init__(self, channels: int, heads: int, context_dim: int | None = None):
        super().__init__()
        if channels % heads:
            raise FieldError("attention_heads", f"{channels} channels do not split into {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim or channels, 2 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, c, h, w = x.shape
        pixels = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        source = pixels if context is None else context.to(pixels.dtype)
        q = self.q(pixels).view(b, -1, self.heads, c // self.heads).transpose(1, 2)
        k, v = (t.view(b, -1, self.heads, c // self.heads).transpose(1, 2) for t in self.kv(source).chunk(2, -1))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None, None])
        return x + self.out(attended.transpose(1, 2).reshape(b, h * w, c)).transpose(1, 2).view(b, c, h, w)


class Level(nn.Module):
    """A residual block, then self-attention (and cross-attention to the text) when asked."""

    def __init__(
        self, c_in: int, c_out: int, embed_dim: int, dropout: float, attend: bool, heads: int, context_dim: int | None
    ):
        super().__init__()
        self.res = ResidualBlock(c_in, c_out, embed_dim, dropout)
        self.self_attn = Attention(c_out, heads) if attend else None
        self.cross_attn = Attention(c_out, heads, context_dim) if attend and context_dim else None

    def forward(
        self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        h = self.res(h, emb)
        if self.self_attn is not None:
            h = self.self_attn(h)
        if self.cross_attn is not None:
            h = self.cross_attn(h, context, mask)
        return h


class Downsample(nn.Conv2d):
    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, stride=2, padding=1)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """The denoiser: (x_t, t, condition) -> the model's prediction (noise or v).

    Resolution levels follow `channel_mults`; each level has `num_res_blocks` residual blocks
    (attention after each where the feature map is one of `attention_resolutions` pixels wide),
    then a stride-2 downsample except at the last level. The decoder mirrors it, concatenating
    the encoder's activations (the skip connections). `condition` is a label per image
    (`num_classes` > 0) or token ids for the text encoder (`text_encoder` given).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        base_channels: int,
        channel_mults: tuple[int, ...],
        num_res_blocks: int,
        attention_resolutions: tuple[int, ...],
        dropout: float,
        attention_heads: int = 1,
        num_classes: int = 0,
        text_encoder: TextEncoder | None = None,
        out_channels: int | None = None,
    ):
        super().__init__()
        self.base_channels = base_channels
        embed_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        # One more row than classes: the null label of classifier-free guidance.
        self.class_embedding = nn.Embedding(num_classes + 1, embed_dim) if num_classes else None
        self.text_encoder = text_encoder
        context_dim = text_encoder.width if text_encoder else None
        self.stem = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        def level(c_in: int, c_out: int, size: int) -> Level:
            return Level(c_in, c_out, embed_dim, dropout, size in attention_resolutions, attention_heads, context_dim)

        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        channels, size = base_channels, image_size
        for index, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(level(channels, base_channels * mult, size))
                channels = base_channels * mult
                skip_channels.append(channels)
            if index < len(channel_mults) - 1:
                self.down.append(Downsample(channels))
                skip_channels.append(channels)
                size //= 2

        self.mid = nn.ModuleList(
            [
                Level(channels, channels, embed_dim, dropout, True, attention_heads, context_dim),
                Level(channels, channels, embed_dim, dropout, False, attention_heads, None),
            ]
        )

        self.up = nn.ModuleList()
        for index, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(level(channels + skip_channels.pop(), base_channels * mult, size))
                channels = base_channels * mult
            if index > 0:
                self.up.append(Upsample(channels))
                size *= 2

        # A video model's U-Net reads its context frames beside the noisy frame, and predicts one frame.
        head = nn.Conv2d(channels, out_channels or in_channels, 3, padding=1)
        self.head = nn.Sequential(group_norm(channels), nn.SiLU(), head)

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base_channels).to(x.dtype))
        context = mask = None
        if self.class_embedding is not None and condition is not None:
            emb = emb + self.class_embedding(condition)
        if self.text_encoder is not None and condition is not None:
            context, mask = self.text_encoder(condition)
        h = self.stem(x)
        skips = [h]
        for block in self.down:
            h = block(h, emb, context, mask) if isinstance(block, Level) else block(h)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb, context, mask)
        for block in self.up:
            is_level = isinstance(block, Level)
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context, mask) if is_level else block(h)
        return self.head(h)
