"""Reading a config: a YAML file, a built-in config, or `env:NAME`; overridden, then validated."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipelines.config.errors import ConfigError, problem_line
from pipelines.config.overrides import apply_overrides
from pipelines.config.pipeline import AS_ENTERED, PipelineConfig

BUILTIN_PACKAGE = "pipelines.config.builtin"
ENV_CONFIG_PREFIX = "env:"
# Where a job or a scheduled run finds its resolved config (`genpipe run env:GENPIPE_CONFIG`).
CONFIG_VARIABLE = "GENPIPE_CONFIG"


def builtin_configs() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(BUILTIN_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def read_config_source(name_or_path: str) -> dict[str, Any]:
    """The raw mapping from a YAML file, a built-in config of that name, or `env:NAME`: the YAML
    in environment variable NAME (how `genpipe submit` hands a job its config)."""
    path = Path(name_or_path)
    if name_or_path.startswith(ENV_CONFIG_PREFIX):
        variable = name_or_path.removeprefix(ENV_CONFIG_PREFIX)
        if variable not in os.environ:
            raise ConfigError([f"CONFIG: environment variable {variable} is not set"])
        text, origin = os.environ[variable], name_or_path
    elif path.is_file():
        text, origin = path.read_text(), str(path)
    elif name_or_path in builtin_configs():
        text = resources.files(BUILTIN_PACKAGE).joinpath(f"{name_or_path}.yaml").read_text()
        origin = f"built-in {name_or_path}"
    else:
        raise ConfigError(
            [f"CONFIG: {name_or_path!r} is neither a file nor a built-in config ({', '.join(builtin_configs())})"]
        )
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"CONFIG: {origin} is not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"CONFIG: {origin} must hold a mapping at the top level"])
    return raw


def validate_config(raw: dict[str, Any]) -> PipelineConfig:
    """A config as a user gives it: every check, each problem a line naming its field."""
    try:
        return PipelineConfig.model_validate(raw, context={AS_ENTERED: True})
    except ValidationError as exc:
        raise ConfigError([problem_line(error) for error in exc.errors()]) from None


def load_config(name_or_path: str, assignments: list[str] | None = None, **top_level: str | None) -> PipelineConfig:
    """Read, override (`--set`, then CLI options such as storage), validate."""
    raw = apply_overrides(read_config_source(name_or_path), assignments or [])
    raw.update({key: value for key, value in top_level.items() if value is not None})
    return validate_config(raw)


def dump_config(config: PipelineConfig) -> str:
    """The resolved config as the YAML a job or a scheduled run reads back (`env:GENPIPE_CONFIG`):
    every value explicit, so the run cannot fall back to a different default."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
