"""What `genpipe sample` asks a diffusion model for: a prompt or a class for conditioned diffusion
models, the sampler, its steps and the guidance; checked against what the model can take."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch

from models.captions import class_words

if TYPE_CHECKING:  # DDPM calls in here
    from models.ddpm import DDPM


def class_index(model: DDPM, wanted: str) -> int:
    """A class by index ("7"), by name, or by word ("seven")."""
    names = model.class_names()
    for index, name in enumerate(names):
        if wanted.strip().lower() in {name.lower(), class_words(name)[0].lower()}:
            return index
    if wanted.isdigit() and int(wanted) < len(names):
        return int(wanted)
    raise ValueError(f"--label: {wanted!r} is none of the model's classes ({', '.join(names)})")


def diffusion_options(
    model: DDPM,
    n: int,
    prompt: str | None = None,
    label: str | None = None,
    guidance: float | None = None,
    sampler: str | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments for a diffusion model's `sample(n, ...)`; a ValueError names the option
    that does not fit the model."""
    conditioning = model.config.conditioning
    if prompt is not None and conditioning != "text":
        raise ValueError(
            f"--prompt: this {model.family} model is conditioned on {conditioning!r}, not on text"
            + ("; use --label" if conditioning == "class" else "")
        )
    if label is not None and conditioning == "none":
        raise ValueError("--label: this model is unconditional")
    if prompt is not None and label is not None:
        raise ValueError("--label: give a prompt or a label, not both")
    if steps is not None and steps <= 0:
        raise ValueError("--steps: must be > 0")
    if guidance is not None and guidance < 0:
        raise ValueError("--guidance: must be >= 0")
    options: dict[str, Any] = {"guidance_scale": guidance, "sampler": sampler, "steps": steps}
    if prompt is not None:
        if len(prompt.encode("utf-8")) + 1 > model.config.max_prompt_tokens:
            warnings.warn(
                f"--prompt: longer than the model reads ({model.config.max_prompt_tokens - 1} bytes); the rest is cut",
                stacklevel=2,
            )
        options["prompts"] = [prompt] * n
    if label is not None:
        options["labels"] = torch.full((n,), class_index(model, label), dtype=torch.long)
    return options
