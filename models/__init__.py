"""The model zoo: one module per family behind `models.base.GenerativeModel`; no Ray, no MLflow."""

from models.base import GenerativeModel, ModelConfig
from models.zoo import FAMILIES, build_model, check_runs_on, family_class, resolve_config

__all__ = [
    "FAMILIES",
    "GenerativeModel",
    "ModelConfig",
    "build_model",
    "check_runs_on",
    "family_class",
    "resolve_config",
]
