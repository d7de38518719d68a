"""Dotted-path assignments on a raw config mapping: `--set a.b=v`, sweep trials, MLflow params."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from pipelines.config.errors import ConfigError


def assign(raw: dict[str, Any], assignments: dict[str, Any]) -> dict[str, Any]:
    """A copy of `raw` with each dotted path set to its value (a sweep trial's config)."""
    result = copy.deepcopy(raw)
    for path, value in assignments.items():
        *parents, leaf = path.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return result


def apply_overrides(raw: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """`a.b=value` assignments; values are parsed as YAML (numbers, booleans, lists)."""
    result = copy.deepcopy(raw)
    problems = []
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {assignment}: expected KEY.PATH=VALUE")
            continue
        *parents, leaf = key.strip().split(".")
        node = result
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"{key}: {part} is not a section")
                break
            node = child
        else:
            try:
                node[leaf] = yaml.safe_load(value)
            except yaml.YAMLError:
                node[leaf] = value
    if problems:
        raise ConfigError(problems)
    return result


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: MLflow params are flat."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
