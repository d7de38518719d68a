"""Scoring a language model: val loss, perplexity and bits per byte.

Bits per byte divides the loss by the tokenizer's bytes per token, so models with different
tokenizers (bytes vs BPE) compare on the same scale.
"""

from __future__ import annotations

import math

import torch

from models.base import GenerativeModel


@torch.no_grad()
def token_loss(model: GenerativeModel, blocks: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token loss (nats) over `blocks` (N, T + 1)."""
    device = next(model.parameters()).device
    (network,) = model.networks()  # a language model is one network
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size].to(device)
        total += model.loss(network, {"tokens": batch}).item() * batch.shape[0]
        count += batch.shape[0]
    return total / max(1, count)


def score_text(
    model: GenerativeModel, blocks: torch.Tensor, bytes_per_token: float, batch_size: int = 8
) -> dict[str, float]:
    """Mean next-token loss (nats) over `blocks` (N, T + 1), and what it means per byte."""
    loss = token_loss(model, blocks, batch_size)
    return {
        "val_loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "bits_per_byte": loss / math.log(2) / bytes_per_token,
    }
