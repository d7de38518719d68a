"""What the driver hands every Ray Train worker: one frozen, typed object in `train_loop_config`
(Ray Train's hand-off is a dict; this is its one entry), read by attribute, never by string key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines.config import PipelineConfig

KEY = "genpipe"  # the one key of `train_loop_config`


@dataclass(frozen=True)
class TrainHandOff:
    config: PipelineConfig
    model_config: dict[str, Any]  # the family's config, resolved for the data (model_setup.model_config)
    manifest_uri: str
    tracking_uri: str
    run_id: str
    warm_start: str | None = None  # registered weights to start from
    pretrained: dict[str, str] = field(default_factory=dict)  # {submodule: registered URI} (a latent model's VAE)
    model_files: dict[str, str] = field(default_factory=dict)  # files a trained model carries (a tokenizer)
    report: Callable[..., None] | None = None  # progress lines for the console
    fit_called_at: float | None = None  # the start-up's origin (pipelines/train/startup.py)

    def as_loop_config(self) -> dict[str, Any]:
        return {KEY: self}

    @staticmethod
    def from_loop_config(loop_config: dict[str, Any]) -> TrainHandOff:
        handoff = loop_config[KEY]
        if not isinstance(handoff, TrainHandOff):
            raise TypeError(f"train_loop_config[{KEY!r}] holds {type(handoff).__name__}, not a TrainHandOff")
        return handoff
