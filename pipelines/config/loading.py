"""Reading a config: a YAML file, a built-in config, or `env:NAME`; overridden, then validated."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from pipelines.config.composition import Composed, compose, resolved, where
from pipelines.config.errors import ConfigError, problem_line
from pipelines.config.overrides import apply_overrides
from pipelines.config.pipeline import AS_ENTERED, PipelineConfig

# Where a job or a scheduled run finds its resolved config (`genpipe run env:GENPIPE_CONFIG`).
CONFIG_VARIABLE = "GENPIPE_CONFIG"


def read_config_source(name_or_path: str) -> dict[str, Any]:
    """The whole mapping of a YAML file, a built-in config of that name, or `env:NAME` (the YAML in
    environment variable NAME: how `genpipe submit` hands a job its config), its `defaults`
    merged in and its interpolations resolved (pipelines/config/composition.py)."""
    composed = compose(name_or_path)
    return resolved(composed.raw, composed)


def validate_config(raw: dict[str, Any], composed: Composed | None = None) -> PipelineConfig:
    """A config as a user gives it: every check, each problem a line naming its field (and the
    base it was written in, when it came from one)."""
    try:
        return PipelineConfig.model_validate(raw, context={AS_ENTERED: True})
    except ValidationError as exc:
        lines = [problem_line(error) for error in exc.errors()]
        if composed is not None:
            lines = [f"{line}{where(line.partition(':')[0], composed)}" for line in lines]
        raise ConfigError(lines) from None


def load_config(
    name_or_path: str,
    assignments: list[str] | None = None,
    sections: tuple[str, ...] = (),
    **top_level: str | None,
) -> PipelineConfig:
    """Compose, override (`--set`, then CLI options such as storage), resolve, validate.
    `sections`: those the command needs, with their defaults where the config has none
    (`genpipe compare` on a config without `compare:`)."""
    composed = compose(name_or_path)
    raw = {**{section: {} for section in sections}, **composed.raw}
    raw = apply_overrides(raw, assignments or [])
    given = {key: value for key, value in top_level.items() if value is not None}
    raw.update(given)
    for key in [*given, *(assignment.partition("=")[0].strip() for assignment in assignments or [])]:
        composed.origins[key] = composed.origin  # the user's own, as the config's own keys are
    return validate_config(resolved(raw, composed), composed)


def dump_config(config: PipelineConfig) -> str:
    """The resolved config as the YAML a job or a scheduled run reads back (`env:GENPIPE_CONFIG`):
    every value explicit, so the run cannot fall back to a different default."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
