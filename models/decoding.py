"""Choosing the next token from a language model's logits: what every text family's `generate` shares."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def next_token(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """One token id per row of `logits` (B, V), shape (B, 1): the most likely at temperature 0,
    else a draw from the softmax at `temperature` over the `top_k` most likely."""
    logits = logits.float()
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
