"""ConvLSTM (Shi et al. 2015): an LSTM whose gates are convolutions, so its state is a stack of
feature maps and motion is learned where it happens. Frames are encoded (a strided convolution
per `downsample`), run through stacked ConvLSTM cells, and the next frame is decoded from every
layer's hidden state.

It reads the context frame by frame, predicting each next frame, then feeds its own predictions
back for the horizon (closed loop, as at test time: no teacher forcing on the future), and is
trained by mean squared error on every prediction. Its forecast is the conditional mean, so it
blurs where the future is uncertain; the video diffusion model (models/video_diffusion.py)
samples one sharp future instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.video import VideoConfig, VideoFamily
from typed_errors import FieldError


class ConvLSTMConfig(VideoConfig):
    hidden_channels: tuple[int, ...] = Field((32, 32), min_length=1, description="each ConvLSTM layer's channels")
    kernel_size: int = Field(3, ge=1, le=9, description="odd: the gates' convolutions keep the maps' size")
    downsample: int = Field(1, ge=0, le=4, description="stride-2 encoder convolutions before the ConvLSTM")


class ConvLSTMCell(nn.Module):
    """One layer: input, forget, output gates and the candidate from one convolution over [x, h]
    (without the peephole terms of the paper, as most re-implementations)."""

    def __init__(self, inputs: int, hidden: int, kernel_size: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(inputs + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTMNetwork(nn.Module):
    """(context (B, T, C, H, W), horizon) -> the next frame after each context frame but the
    last, then `horizon` frames fed back: (B, T - 1 + horizon, C, H, W) in [-1, 1]."""

    def __init__(self, config: ConvLSTMConfig):
        super().__init__()
        channels, height, width = config.frame_shape
        scale = 2**config.downsample
        if height % scale or width % scale:
            raise FieldError("downsample", f"{height}x{width} frames cannot be halved {config.downsample} times")
        first = config.hidden_channels[0]
        encoder: list[nn.Module] = [nn.Conv2d(channels, first, 3, padding=1), nn.LeakyReLU(0.2)]
        for _ in range(config.downsample):
            encoder += [nn.Conv2d(first, first, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*encoder)
        inputs = [first, *config.hidden_channels[:-1]]
        self.cells = nn.ModuleList(
            ConvLSTMCell(i, h, config.kernel_size) for i, h in zip(inputs, config.hidden_channels, strict=True)
        )
        stacked = sum(config.hidden_channels)
        decoder: list[nn.Module] = []
        for _ in range(config.downsample):
            decoder += [nn.ConvTranspose2d(stacked, stacked, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.decoder = nn.Sequential(*decoder, nn.Conv2d(stacked, channels, 3, padding=1))
        self.state_size = (height // scale, width // scale)

    def forward(self, context: torch.Tensor, horizon: int) -> torch.Tensor:
        batch = len(context)
        states = []
        for cell in self.cells:
            zeros = context.new_zeros((batch, int(cell.hidden), *self.state_size))  # type: ignore[arg-type]
            states.append((zeros, zeros))
        predictions, frame = [], context[:, 0]
        for step in range(context.shape[1] - 1 + horizon):
            x = self.encoder(frame)
            hidden = []
            for index, cell in enumerate(self.cells):
                x, c = cell(x, states[index])
                states[index] = (x, c)
                hidden.append(x)
            predicted = torch.tanh(self.decoder(torch.cat(hidden, dim=1)))
            predictions.append(predicted)
            frame = context[:, step + 1] if step + 1 < context.shape[1] else predicted
        return torch.stack(predictions, dim=1)


class ConvLSTM(VideoFamily):
    """Next frames from the last ones, by stacked convolutional LSTMs."""

    config: ConvLSTMConfig

    family = "convlstm"
    config_class = ConvLSTMConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"hidden_channels": (16, 16), "kernel_size": 3, "downsample": 1},  # CPU tests
        "small": {"hidden_channels": (64, 64), "kernel_size": 3, "downsample": 1},
        # Shi et al.'s Moving MNIST network: 128, 64, 64 hidden maps, 5x5 gates (on 4x4 patches).
        "base": {"hidden_channels": (128, 64, 64), "kernel_size": 5, "downsample": 2},
    }

    def __init__(self, config: ConvLSTMConfig):
        super().__init__(config)
        self.convlstm = ConvLSTMNetwork(config)

    def networks(self) -> dict[str, nn.Module]:
        return {"convlstm": self.convlstm}

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """MSE of every predicted frame: the context's next frames, then the fed-back horizon."""
        context, future = self.split_clip(batch)
        predicted = self.run_network("convlstm", context, future.shape[1])
        return F.mse_loss(predicted, batch["video"][:, 1:])

    def predict(self, context: torch.Tensor, horizon: int, generator: torch.Generator | None) -> torch.Tensor:
        return self.run_network("convlstm", context, horizon, bare=True)[:, -horizon:]
