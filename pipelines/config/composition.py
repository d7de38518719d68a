"""Configs made of configs, as Hydra and OmegaConf users write them, with OmegaConf doing the work:

    defaults: [base/digits-sweep]        # merged first, in order; this file's own keys win
    train:
      batch_size: ${oc.env:BATCH,64}     # an environment variable, with a default
      learning_rate: ${tune.lr_start}    # another key of the composed config

A name in `defaults` is a file beside the config that names it (`.yaml` may be left out) or a
built-in config (`base/...` are the built-ins' shared parts). Mappings merge key by key; a list or
a value replaces the one before it. Interpolations are resolved after `--set`, so a reference
follows an override, as in Hydra. Each key remembers the file that wrote it last: a problem with a
value that came from a base names that base.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipelines.config.errors import ConfigError

BUILTIN_PACKAGE = "pipelines.config.builtin"
ENV_CONFIG_PREFIX = "env:"
DEFAULTS_KEY = "defaults"


@dataclass
class Composed:
    """A config's mapping with its bases merged in, interpolations not yet resolved."""

    raw: dict[str, Any]
    origin: str  # where the config itself came from
    origins: dict[str, str] = field(default_factory=dict)  # dotted key -> the file that wrote it last


def builtin_configs() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(BUILTIN_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def _builtin_text(name: str) -> str | None:
    entry = resources.files(BUILTIN_PACKAGE).joinpath(*f"{name}.yaml".split("/"))
    return entry.read_text() if entry.is_file() else None


def _locate(name: str, beside: Path | None, from_builtin: bool) -> tuple[str, str, Path | None]:
    """(text, origin, folder) of a config named on the command line, or in the `defaults` list of a
    file in `beside`, or of a built-in (whose bases are built-ins, never a file where it runs)."""
    if from_builtin:
        text = _builtin_text(name)
        if text is None:
            raise ConfigError([f"defaults: {name!r} is not a built-in config"])
        return text, f"built-in {name}", None
    if name.startswith(ENV_CONFIG_PREFIX):
        variable = name.removeprefix(ENV_CONFIG_PREFIX)
        if variable not in os.environ:
            raise ConfigError([f"CONFIG: environment variable {variable} is not set"])
        return os.environ[variable], name, None
    for candidate in [Path(name), Path(f"{name}.yaml")] if beside is None else []:
        if candidate.is_file():
            return candidate.read_text(), str(candidate), candidate.resolve().parent
    for candidate in [beside / name, beside / f"{name}.yaml"] if beside is not None else []:
        if candidate.is_file():
            return candidate.read_text(), str(candidate), candidate.parent
    text = _builtin_text(name)
    if text is not None:
        return text, f"built-in {name}", None
    if beside is not None:
        raise ConfigError([f"defaults: {name!r} is neither a file in {beside} nor a built-in config"])
    raise ConfigError([f"CONFIG: {name!r} is neither a file nor a built-in config ({', '.join(builtin_configs())})"])


def _parse(text: str, origin: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"CONFIG: {origin} is not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"CONFIG: {origin} must hold a mapping at the top level"])
    return raw


def _leaves(raw: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of a mapping's values (a list is one value; a section is not one)."""
    found = []
    for key, value in raw.items():
        path = f"{prefix}{key}"
        found += _leaves(value, f"{path}.") if isinstance(value, dict) else [path]
    return found


def compose(name: str, beside: Path | None = None, chain: tuple[str, ...] = ()) -> Composed:
    """`name` with its `defaults` merged under it, recursively."""

    from_builtin = bool(chain) and chain[-1].startswith("built-in ")
    text, origin, folder = _locate(name, beside, from_builtin)
    if origin in chain:
        raise ConfigError([f"defaults: a cycle: {' -> '.join([*chain, origin])}"])
    raw = _parse(text, origin)
    if name.startswith(ENV_CONFIG_PREFIX):  # a resolved config handed to a job: used as it is
        return Composed(raw, origin)
    bases = raw.pop(DEFAULTS_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(base, str) for base in bases):
        raise ConfigError([f"defaults: a list of config names (in {origin}), got {bases!r}"])
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for base in bases:
        part = compose(base, folder, (*chain, origin))
        merged = _merge(merged, part.raw, origins)
        origins.update(part.origins)
    merged = _merge(merged, raw, origins)
    origins.update(dict.fromkeys(_leaves(raw), origin))
    return Composed(merged, origin, origins)


def _merge(below: dict[str, Any], above: dict[str, Any], origins: dict[str, str]) -> dict[str, Any]:
    """`above` over `below` as OmegaConf merges them, except that a mapping whose `kind` changes
    (a `data.source` of text files over a base's code corpus) replaces the one below: another kind
    is another object, and the fields of the one below (`include`) are not its fields."""
    from omegaconf import OmegaConf

    below = copy.deepcopy(below)
    for path in _replaced_kinds(below, above):
        *parents, last = path.split(".")
        holder = below
        for key in parents:
            holder = holder[key]
        del holder[last]
        for key in [key for key in origins if key == path or key.startswith(f"{path}.")]:
            del origins[key]
    merged = OmegaConf.merge(OmegaConf.create(below), OmegaConf.create(above))
    return OmegaConf.to_container(merged, resolve=False)  # type: ignore[return-value]


def _replaced_kinds(below: dict[str, Any], above: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the mappings whose `kind` differs between `below` and `above`."""
    paths = []
    for key, value in above.items():
        under = below.get(key)
        if isinstance(value, dict) and isinstance(under, dict):
            if "kind" in value and "kind" in under and value["kind"] != under["kind"]:
                paths.append(f"{prefix}{key}")
            else:
                paths += _replaced_kinds(under, value, f"{prefix}{key}.")
    return paths


def resolved(raw: dict[str, Any], composed: Composed) -> dict[str, Any]:
    """`raw` (the composed mapping, overridden) with `${...}` interpolations replaced by their values."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if composed.origin.startswith(ENV_CONFIG_PREFIX):
        return raw
    try:
        return OmegaConf.to_container(OmegaConf.create(raw), resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or "CONFIG"
        reason = str(exc).splitlines()[0]
        raise ConfigError([f"{key}: {reason}{where(key, composed)}"]) from None


def where(key: str, composed: Composed) -> str:
    """ " (in FILE)" when the value at `key` was written by a base, not by the config itself."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        origin = composed.origins.get(".".join(parts[:end]))
        if origin is not None:
            return "" if origin == composed.origin else f" (in {origin})"
    return ""
