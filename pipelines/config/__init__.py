"""The pipeline config: sections, validation with one line per problem, loading and overrides."""

from pipelines.config.composition import builtin_configs
from pipelines.config.errors import ConfigError
from pipelines.config.loading import (
    CONFIG_VARIABLE,
    dump_config,
    load_config,
    read_config_source,
    validate_config,
)
from pipelines.config.overrides import apply_overrides, assign, flatten
from pipelines.config.pipeline import DEFAULT_STORAGE, PipelineConfig, default_storage
from pipelines.config.sections import EvaluateConfig, GateConfig, ModelSection, RegisterConfig, TrainConfig
from pipelines.config.threads import cpu_threads

__all__ = [
    "CONFIG_VARIABLE",
    "DEFAULT_STORAGE",
    "ConfigError",
    "EvaluateConfig",
    "GateConfig",
    "ModelSection",
    "PipelineConfig",
    "RegisterConfig",
    "TrainConfig",
    "apply_overrides",
    "assign",
    "builtin_configs",
    "cpu_threads",
    "default_storage",
    "dump_config",
    "flatten",
    "load_config",
    "read_config_source",
    "validate_config",
]
