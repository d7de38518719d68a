"""Recurrent language models: LSTM (Hochreiter & Schmidhuber 1997) and GRU (Cho et al. 2014) over
the same token blocks as GPT, in the manner of Zaremba et al. 2014's word-level LSTM.

Training is truncated back-propagation through time: a block is read in windows of `bptt` tokens,
the state carried from one window to the next but its gradient cut between them, so memory and
the gradient's reach do not grow with the block. Gradient clipping is the training config's
`grad_clip`, which DeepSpeed applies. Generation carries the state token by token: a new token
costs one step of the cell, whatever the length of the text before it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.base import TokenConfig, parameter_count
from models.capabilities import LanguageFamily
from models.decoding import next_token

State = Any  # (h, c) for an LSTM, h for a GRU


class RecurrentConfig(TokenConfig):
    hidden: int = Field(256, gt=0, description="the state's width, and the token embedding's")
    layers: int = Field(2, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1, description="between layers and before the head")
    bptt: int = Field(64, gt=0, description="tokens per window of truncated back-propagation")


def detach(state: State) -> State:
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class RecurrentNetwork(nn.Module):
    """Token ids -> next-token logits; the embedding is tied to the output head."""

    def __init__(self, config: RecurrentConfig, cell: type[nn.LSTM] | type[nn.GRU]):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.hidden)
        self.rnn = cell(
            config.hidden,
            config.hidden,
            config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size, bias=False)
        self.head.weight = self.embedding.weight
        self.bptt = config.bptt

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits (B, T, V) and the state after the last token. Training cuts the gradient every
        `bptt` tokens (the state passes on, its history does not)."""
        window = self.bptt if self.training else ids.shape[1]
        outputs = []
        for start in range(0, ids.shape[1], window):
            if start:
                state = detach(state)
            output, state = self.rnn(self.drop(self.embedding(ids[:, start : start + window])), state)
            outputs.append(output)
        return self.head(self.drop(torch.cat(outputs, dim=1))), state


class LSTMLanguageModel(LanguageFamily):
    """A stacked LSTM language model."""

    config: RecurrentConfig

    family = "lstm"
    config_class = RecurrentConfig
    cell: ClassVar[type[nn.LSTM] | type[nn.GRU]] = nn.LSTM
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"hidden": 128, "layers": 2, "bptt": 64},
        "small": {"hidden": 512, "layers": 2, "bptt": 128, "dropout": 0.1},
        "base": {"hidden": 1024, "layers": 3, "bptt": 128, "dropout": 0.2},
    }

    def __init__(self, config: RecurrentConfig):
        super().__init__(config)
        self.recurrent = RecurrentNetwork(config, self.cell)

    def networks(self) -> dict[str, nn.Module]:
        return {"recurrent": self.recurrent}

    def flops_per_token(self, seq_len: int) -> float:
        """6 FLOPs per weight and token, forward and backward (the embedding is a lookup)."""
        return 6 * (parameter_count(self.recurrent.parameters()) - parameter_count([self.recurrent.embedding.weight]))

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-token cross-entropy in nats, as GPT's: the two compare on the same blocks."""
        tokens = batch["tokens"].long()
        net = self.net("recurrent")
        logits, _ = net(tokens[:, :-1])
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    @property
    def context_size(self) -> int | None:
        return None  # a recurrent state carries any length

    @torch.no_grad()
    def generate(
        self,
        ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Extend `ids` (B, T): the prompt read once, then one cell step per new token (the state
        is the cache, so `use_cache` changes nothing)."""
        logits, state = self.recurrent(ids)
        for _ in range(max_new_tokens):
            token = next_token(logits[:, -1, :], temperature, top_k, generator)
            ids = torch.cat((ids, token), dim=1)
            logits, state = self.recurrent(token, state)
        return ids

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, start_id: int = 0, length: int = 256
    ) -> torch.Tensor:
        """`n` token sequences of `length` tokens, each started from `start_id`."""
        device = next(self.recurrent.parameters()).device
        start = torch.full((n, 1), start_id, dtype=torch.long, device=device)
        return self.generate(start, length - 1, generator=generator)


class GRULanguageModel(LSTMLanguageModel):
    """The same language model with GRU cells (no cell state; a third fewer weights)."""

    family = "gru"
    cell = nn.GRU
