"""Config problems as lines that each start with the field's path (`train.batch_size: must be > 0`).

The lower layers raise `typed_errors.FieldError` with the field as they name it; this is where it
becomes a path in a pipeline config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from data_prep.config import SOURCE_KINDS
from typed_errors import FieldError

# Where the names a model family's own errors use sit in a pipeline config (the family reads its
# image shape from the data, is told about activation checkpointing by train:); any other name is
# one of its `model.params`.
MODEL_NAMES = {
    "family": "model.family",
    "image_shape": "data.image_size",
    "frame_shape": "data.frame_size",
    "clip_frames": "data.clip_frames",
    "context_frames": "data.context_frames",
    "activation_checkpointing": "train.activation_checkpointing",
}


class ConfigError(ValueError):
    """One or more problems with a config, each a line that starts with the field's path."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def describe_error(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if error["type"] in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[error['type']]} {limit}"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "string_pattern_mismatch":
        return f"{error['input']!r} does not match {ctx['pattern']}"
    if error["type"] == "missing":
        return "required"
    return error["msg"].removeprefix("Value error, ")


def field_error(error: Mapping[str, Any], within: str = "") -> FieldError:
    """One pydantic error as a FieldError with the field's whole path (under `within`, a section)."""
    # Drop the union tag pydantic inserts for discriminated unions (data.source.digits.x).
    loc = [within] if within else []
    loc += [str(p) for p in error["loc"] if not (isinstance(p, str) and p in SOURCE_KINDS)]
    raised = (error.get("ctx") or {}).get("error")
    if isinstance(raised, FieldError):  # a model validator naming a sub-field
        return FieldError(".".join([*loc, raised.field]), raised.reason)
    return FieldError(".".join(loc) or "config", describe_error(error))


def problem_line(error: Mapping[str, Any]) -> str:
    """One pydantic error as `field.path: message`."""
    return str(field_error(error))


def in_pipeline_terms(error: FieldError) -> FieldError:
    """A model family's FieldError, its field named as a pipeline config has it."""
    return FieldError(MODEL_NAMES.get(error.field, f"model.params.{error.field}"), error.reason)
