"""Scoring a language model: val loss, perplexity and bits per byte, and text from prompts.

Bits per byte divides the loss by the tokenizer's bytes per token, so models with different
tokenizers (bytes vs BPE) compare on the same scale.
"""

from __future__ import annotations

import math
import warnings

import torch

from data_prep.text_tokenizer import TextTokenizer
from models.base import GenerativeModel


@torch.no_grad()
def score_text(
    model: GenerativeModel, blocks: torch.Tensor, bytes_per_token: float, batch_size: int = 8
) -> dict[str, float]:
    """Mean next-token loss (nats) over `blocks` (N, T + 1), and what it means per byte."""
    device = next(model.parameters()).device
    (network,) = model.networks()  # a language model is one network
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size].to(device)
        total += model.loss(network, {"tokens": batch}).item() * batch.shape[0]
        count += batch.shape[0]
    loss = total / max(1, count)
    return {
        "val_loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "bits_per_byte": loss / math.log(2) / bytes_per_token,
    }


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
    ids = tokenizer.encode(prompt) or [tokenizer.eot_id]
    room = (model.context_size or len(ids) + 1) - 1
    if len(ids) > room:
        warnings.warn(f"prompt of {len(ids)} tokens is longer than the context; keeping its last {room}", stacklevel=2)
        ids = ids[-room:]
    device = next(model.parameters()).device
    out = model.generate(torch.tensor([ids], device=device), max_new_tokens, temperature, top_k, generator)
    return tokenizer.decode(out[0].tolist())
