"""What the audio families (WaveNet, DiffWave) share: the data they take from an audio dataset,
class conditioning by name, and what they are scored on."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from models.base import GenerativeModel, ModelConfig
from models.sampling_options import class_index
from typed_errors import OptionError

# What every audio model is scored on (pipelines/evaluate/audio.py): a Fréchet distance on an
# audio classifier's features (a conditional model also reports eval/class_accuracy).
AUDIO_METRICS = ("eval/audio_fid",)


class AudioConfig(ModelConfig):
    clip_samples: int = Field(gt=1, description="from the dataset: samples per clip")
    sample_rate: int = Field(8000, gt=0, description="from the dataset")
    num_classes: int = Field(0, ge=0, description="from the dataset")
    class_names: list[str] = Field(default_factory=list, description="from the dataset")
    conditional: bool = Field(True, description="condition on the clip's class (when the data has classes)")


class AudioFamily(GenerativeModel):
    """A model of clips (N, 1, samples) in [-1, 1], optionally conditioned on their class."""

    config: AudioConfig
    modality = "audio"

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return AUDIO_METRICS

    @property
    def conditional(self) -> bool:
        return self.config.conditional and self.config.num_classes > 0

    def labels_of(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return batch["label"] if self.conditional else None

    def requested_labels(self, n: int, device: torch.device) -> torch.Tensor | None:
        """0, 1, ..., K-1, 0, ...: the classes a conditional model is asked for when sampling."""
        return torch.arange(n, device=device) % self.config.num_classes if self.conditional else None

    def sample_options(self, n: int, label: str | None = None, **other: Any) -> dict[str, Any]:
        """A class by index or name (`--label minor`) for a conditional model."""
        self.refuse_options(other)
        if label is None:
            return {}
        if not self.conditional:
            raise OptionError("label", "this model is unconditional")
        return {"labels": torch.full((n,), class_index(self.config.class_names, label), dtype=torch.long)}
