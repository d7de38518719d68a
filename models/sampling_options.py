"""What `genpipe sample` asks a diffusion model for: a prompt or a class for conditioned diffusion
models, the sampler, its steps and the guidance; checked against what the model can take.

It takes the model's conditioning and classes, not the model, so the diffusion family imports it
and nothing imports back."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from models.captions import class_words
from typed_errors import OptionError


@dataclass(frozen=True)
class Conditioning:
    """What a diffusion model is conditioned on, as its sampling options see it."""

    family: str
    kind: str  # "none", "class" or "text"
    class_names: list[str]
    max_prompt_tokens: int


def class_index(names: list[str], wanted: str) -> int:
    """A class by index ("7"), by name, or by word ("seven")."""
    for index, name in enumerate(names):
        if wanted.strip().lower() in {name.lower(), class_words(name)[0].lower()}:
            return index
    if wanted.isdigit() and int(wanted) < len(names):
        return int(wanted)
    raise OptionError("label", f"{wanted!r} is none of the model's classes ({', '.join(names)})")


def diffusion_options(
    model: Conditioning,
    n: int,
    prompt: str | None = None,
    label: str | None = None,
    guidance: float | None = None,
    sampler: str | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments for a diffusion model's `sample(n, ...)`; an OptionError names the option
    that does not fit the model."""
    if prompt is not None and model.kind != "text":
        raise OptionError(
            "prompt",
            f"this {model.family} model is conditioned on {model.kind!r}, not on text"
            + ("; use a label" if model.kind == "class" else ""),
        )
    if label is not None and model.kind == "none":
        raise OptionError("label", "this model is unconditional")
    if prompt is not None and label is not None:
        raise OptionError("label", "give a prompt or a label, not both")
    if steps is not None and steps <= 0:
        raise OptionError("steps", "must be > 0")
    if guidance is not None and guidance < 0:
        raise OptionError("guidance", "must be >= 0")
    options: dict[str, Any] = {"guidance_scale": guidance, "sampler": sampler, "steps": steps}
    if prompt is not None:
        if len(prompt.encode("utf-8")) + 1 > model.max_prompt_tokens:
            warnings.warn(
                f"prompt: longer than the model reads ({model.max_prompt_tokens - 1} bytes); the rest is cut",
                stacklevel=2,
            )
        options["prompts"] = [prompt] * n
    if label is not None:
        options["labels"] = torch.full((n,), class_index(model.class_names, label), dtype=torch.long)
    return options
