"""The model a config asks for, on the data it will learn: one place for `train` and `tune`."""

from __future__ import annotations

from typing import Any

import models
from data_prep.manifest import Manifest
from models.base import ModelConfig
from pipelines.config import PipelineConfig


def data_shape(manifest: Manifest) -> dict[str, Any]:
    """What a model takes from its data: the vocabulary, or the image shape and the classes."""
    if manifest.text:
        return {"vocab_size": manifest.text.vocab_size}
    if manifest.series:
        series = manifest.series
        return {
            "context_len": series.seq_len,
            "series_mean": series.mean,
            "series_std": series.std,
            "last_values": series.last_values,
            "criterion_lags": series.criterion_lags,
        }
    return {
        "image_shape": manifest.image_shape,
        "pixel_levels": manifest.pixel_levels,
        "num_classes": manifest.num_classes,
        "class_names": manifest.class_names,
    }


def model_config(config: PipelineConfig, manifest: Manifest) -> ModelConfig:
    """The family's preset, then the data's shape, then the config's `model.params`."""
    return models.resolve_config(config.model.family, config.model.preset, config.model.params, data_shape(manifest))
