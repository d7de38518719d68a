"""What the video families (ConvLSTM, video diffusion) share: clips of frames from a video
dataset, prediction of the frames that follow a context, the options a request gives (the
context frames and the horizon), and what they are scored on.

A video model is conditional by nature: `sample(n, context=..., horizon=...)` continues `n`
clips of context frames by `horizon` frames. With no context there is nothing to continue, so
the served model's example and the contract tests ask with blank frames (`example_options`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from pydantic import Field, model_validator

from models.base import GenerativeModel, ModelConfig
from typed_errors import FieldError, OptionError

# What every video model is scored on (pipelines/evaluate/video.py): mean squared error and SSIM
# of its predicted frames against the true ones over the horizon, and classifier-FID of the frames.
VIDEO_METRICS = ("eval/frame_mse", "eval/frame_ssim", "eval/frame_fid")
MAX_HORIZON = 1000


class VideoConfig(ModelConfig):
    frame_shape: tuple[int, int, int] = Field(description="from the dataset: (channels, height, width)")
    clip_frames: int = Field(gt=1, description="from the dataset: frames per clip")
    context_frames: int = Field(gt=0, description="from the dataset: the frames given before the prediction")

    @model_validator(mode="after")
    def _a_future_to_predict(self) -> VideoConfig:
        if self.context_frames >= self.clip_frames:
            raise FieldError("context_frames", f"must be below clip_frames ({self.clip_frames})")
        return self

    @property
    def horizon(self) -> int:
        """The frames a clip holds after its context: what training predicts."""
        return self.clip_frames - self.context_frames


class VideoFamily(GenerativeModel):
    """A model of what follows a few frames: (N, T, C, H, W) clips in [-1, 1]."""

    config: VideoConfig
    modality = "video"
    default_gate = ("eval/frame_mse", "min")

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return VIDEO_METRICS

    def sample_options(self, n: int, input: Any = None, horizon: Any = None, **other: Any) -> dict[str, Any]:
        """`input`: context clips (N, T, C, H, W) in [-1, 1] (the last frames matter most; any T of
        at least one); `horizon`: frames to predict (the data's by default)."""
        self.refuse_options(other)
        if input is None:
            raise OptionError("input", f"a {self.family} model predicts what follows frames: give the context frames")
        context = torch.as_tensor(input, dtype=torch.float32)
        if context.dim() != 5 or tuple(context.shape[2:]) != tuple(self.config.frame_shape) or context.shape[1] < 1:
            expected = "x".join(map(str, self.config.frame_shape))
            raise OptionError(
                "input", f"clips of frames of {expected} (N, frames, C, H, W) expected, not {tuple(context.shape)}"
            )
        if len(context) != n:
            raise OptionError("n", f"{n} predictions asked for {len(context)} input clips")
        horizon = self.config.horizon if horizon is None else horizon
        if not isinstance(horizon, int) or isinstance(horizon, bool) or not 0 < horizon <= MAX_HORIZON:
            raise OptionError("horizon", f"a whole number of frames from 1 to {MAX_HORIZON}, not {horizon!r}")
        return {"context": context.clamp(-1, 1), "horizon": horizon}

    def example_options(self, n: int) -> dict[str, Any]:
        """Blank context frames (a served model's example request; live previews)."""
        return {"input": torch.full((n, self.config.context_frames, *self.config.frame_shape), -1.0).tolist()}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
        horizon: int | None = None,
    ) -> torch.Tensor:
        """The `horizon` frames (n, horizon, C, H, W) in [-1, 1] that follow each clip of `context`."""
        if context is None:
            raise OptionError("input", f"a {self.family} model predicts what follows frames: give the context frames")
        device = next(self.parameters()).device
        return self.predict(context[:n].to(device), horizon or self.config.horizon, generator).clamp(-1, 1)

    @abstractmethod
    def predict(self, context: torch.Tensor, horizon: int, generator: torch.Generator | None) -> torch.Tensor:
        """(N, T, C, H, W) context frames -> (N, horizon, C, H, W) predicted frames."""

    def split_clip(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch's clips as (context, future)."""
        video = batch["video"]
        return video[:, : self.config.context_frames], video[:, self.config.context_frames :]
