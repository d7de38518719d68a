"""Samples as a user asks for them from a loaded model: images with the family's own sampling
options, or completions of a prompt. `genpipe sample`, the Python API, evaluation and the served
MLflow model all draw through here."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from models.base import GenerativeModel
from models.capabilities import language_model
from tokens.text_tokenizer import TextTokenizer
from typed_errors import OptionError


def draw_images(model: GenerativeModel, n: int, seed: int = 0, **asked: Any) -> torch.Tensor:
    """`n` images (n, C, H, W) in [-1, 1]; `asked` are sampling options (label, prompt, guidance,
    sampler, steps, or the family's own), and an OptionError names one the model does not take."""
    if n <= 0:
        raise OptionError("n", "must be > 0")
    options = model.sample_options(n, **asked)
    return model.sample(n, generator=torch.Generator().manual_seed(seed), **options)


def complete(
    model: GenerativeModel,
    tokenizer: TextTokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None = None,
) -> str:
    """The prompt followed by what the model writes. A prompt longer than the model's context is
    cut from the left (its end is what conditions the next token), with a warning."""
    text = language_model(model)
    ids = tokenizer.encode(prompt) or [tokenizer.eot_id]
    room = (text.context_size or len(ids) + 1) - 1
    if len(ids) > room:
        warnings.warn(f"prompt of {len(ids)} tokens is longer than the context; keeping its last {room}", stacklevel=2)
        ids = ids[-room:]
    device = next(model.parameters()).device
    out = text.generate(torch.tensor([ids], device=device), max_new_tokens, temperature, top_k, generator)
    return tokenizer.decode(out[0].tolist())


def draw_completions(
    model: GenerativeModel,
    tokenizer: TextTokenizer,
    prompt: str,
    n: int = 1,
    seed: int = 0,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
) -> list[str]:
    """`n` completions of `prompt`; an OptionError names the option out of range."""
    check_token_options(n, max_new_tokens, temperature, top_k)
    generator = torch.Generator().manual_seed(seed)
    return [complete(model, tokenizer, prompt, max_new_tokens, temperature, top_k, generator) for _ in range(n)]


def check_token_options(n: int, max_new_tokens: int, temperature: float, top_k: int | None) -> None:
    """An OptionError naming the first option of a language model's sampling that is out of range."""
    if n <= 0:
        raise OptionError("n", "must be > 0")
    if max_new_tokens <= 0:
        raise OptionError("max_new_tokens", "must be > 0")
    if top_k is not None and top_k <= 0:
        raise OptionError("top_k", "must be > 0")
    if temperature < 0:
        raise OptionError("temperature", "must be >= 0")
