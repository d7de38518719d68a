"""Config problems as lines that each start with the field's path (`train.batch_size: must be > 0`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from data_prep.config import SOURCE_KINDS


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


def problem_line(error: Mapping[str, Any]) -> str:
    """One pydantic error as `field.path: message`."""
    # Drop the union tag pydantic inserts for discriminated unions (data.source.digits.x).
    loc = [str(p) for p in error["loc"] if not (isinstance(p, str) and p in SOURCE_KINDS)]
    message = describe_error(error)
    nested = re.match(r"^([\w.]+): (.*)$", message)  # a model validator naming a sub-field
    if nested:
        loc, message = [*loc, nested.group(1)], nested.group(2)
    return f"{'.'.join(loc) or 'config'}: {message}"
