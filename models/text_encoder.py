"""The text side of text-to-image: prompts -> byte tokens -> a small transformer -> the tokens the
U-Net's cross-attention reads.

The transformer is GPT's blocks as they are: causal self-attention, as in CLIP's text encoder.
Tokens are UTF-8 bytes, so any prompt encodes and no tokenizer file travels with the model
(captions are short; a learned vocabulary would buy little).
"""

from __future__ import annotations

import torch
from torch import nn

from models.gpt import Block, GPTConfig

PAD, BOS = 0, 1
VOCAB = 258  # pad, begin, and the 256 byte values shifted by 2


def encode_prompts(prompts: list[str], max_tokens: int) -> torch.Tensor:
    """(N, max_tokens) ids: BOS, the prompt's bytes, then PAD. The empty prompt is BOS alone: the
    null condition of classifier-free guidance. A longer prompt is cut (the caller may warn)."""
    ids = torch.full((len(prompts), max_tokens), PAD, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        tokens = [BOS, *(byte + 2 for byte in prompt.encode("utf-8"))][:max_tokens]
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return ids


def null_prompts(n: int, max_tokens: int, device: torch.device | None = None) -> torch.Tensor:
    return encode_prompts([""] * n, max_tokens).to(device)


class TextEncoder(nn.Module):
    """(N, T) token ids -> ((N, T, width) states, (N, T) mask of the real tokens)."""

    def __init__(self, width: int, layers: int, heads: int, max_tokens: int):
        super().__init__()
        config = GPTConfig(vocab_size=VOCAB, block_size=max_tokens, n_layer=layers, n_head=heads, n_embd=width)
        self.width, self.max_tokens = width, max_tokens
        self.token_embedding = nn.Embedding(VOCAB, width)
        self.position_embedding = nn.Embedding(max_tokens, width)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(layers))
        self.ln_f = nn.LayerNorm(width, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.token_embedding(ids) + self.position_embedding(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x), ids != PAD
