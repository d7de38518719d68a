"""The model a config asks for, on the data it will learn: one place for `train` and `tune`."""

from __future__ import annotations

from typing import Any

import models
from data_prep.manifest import Manifest
from data_prep.modalities.registry import modality_of
from models.base import GenerativeModel, ModelConfig
from pipelines.config import PipelineConfig
from pipelines.config.errors import in_pipeline_terms
from typed_errors import FieldError


def data_shape(manifest: Manifest) -> dict[str, Any]:
    """What a model takes from its data, as the dataset's modality says (the vocabulary, or the
    image shape and the classes, or the series' normaliser)."""
    return modality_of(manifest).model_inputs(manifest)


def model_config(config: PipelineConfig, manifest: Manifest) -> ModelConfig:
    """The family's preset, then the data's shape, then the config's `model.params`."""
    return models.resolve_config(config.model.family, config.model.preset, config.model.params, data_shape(manifest))


def built_model(family: str, config: ModelConfig | dict[str, Any]) -> GenerativeModel:
    """The family's model; a field it refuses is named as the pipeline config has it
    (`model.params.channel_mults`, `data.image_size`)."""
    try:
        return models.build_model(family, config)
    except FieldError as exc:
        raise in_pipeline_terms(exc) from None
