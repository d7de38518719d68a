"""GPT: a decoder-only transformer language model, kept readable in the manner of nanoGPT.

Pre-LayerNorm blocks, a GELU MLP, learned or rotary positions, the token embedding tied to the
output head, attention through `F.scaled_dot_product_attention` (flash kernels on GPU) and GPT-2's
initialisation (residual projections scaled by 1/sqrt(2 * n_layer)). Generation keeps each layer's
keys and values (`KVCache`), so a new token costs one position's work, not the whole context's.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.base import TokenConfig, parameter_count
from models.capabilities import LanguageFamily
from models.decoding import next_token
from typed_errors import FieldError

VOCAB_MULTIPLE = 64  # pad the embedding so the head's matmul has tensor-core friendly shapes


class GPTConfig(TokenConfig):
    block_size: int = Field(256, gt=0, description="the longest context the model holds")
    n_layer: int = Field(4, gt=0)
    n_head: int = Field(4, gt=0)
    n_embd: int = Field(128, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    bias: bool = False
    positions: Literal["learned", "rotary"] = "learned"

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTConfig:
        if self.n_embd % self.n_head:
            raise FieldError("n_embd", f"{self.n_embd} is not a multiple of n_head={self.n_head}")
        if self.positions == "rotary" and (self.n_embd // self.n_head) % 2:
            raise FieldError("n_head", "rotary positions need an even head size")
        return self

    @property
    def padded_vocab_size(self) -> int:
        return math.ceil(self.vocab_size / VOCAB_MULTIPLE) * VOCAB_MULTIPLE


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021): rotates query/key pairs by position."""

    cos: torch.Tensor  # buffers: (T, head_size / 2)
    sin: torch.Tensor

    def __init__(self, head_size: int, block_size: int, base: float = 10000.0):
        super().__init__()
        inverse = 1.0 / base ** (torch.arange(0, head_size, 2).float() / head_size)
        angles = torch.outer(torch.arange(block_size).float(), inverse)  # (T, head_size / 2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:  # x: (B, heads, T, head_size)
        """Rotated as positions start .. start + T - 1 (a cached generation's new tokens)."""
        end = start + x.shape[-2]
        cos, sin = self.cos[start:end].to(x.dtype), self.sin[start:end].to(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class KVCache:
    """Every layer's keys and values of the tokens fed so far, in buffers of `capacity`
    positions: each generated token attends to them instead of recomputing the context."""

    def __init__(self, config: GPTConfig):
        self.capacity, self.length = config.block_size, 0  # `length` tokens are held
        self.keys: list[torch.Tensor | None] = [None] * config.n_layer
        self.values: list[torch.Tensor | None] = [None] * config.n_layer

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one layer's keys and values of the new tokens; all keys and values so far. The
        buffers take the dtype attention computes in (bf16 under autocast, whatever the weights)."""
        if self.keys[layer] is None:
            batch, heads, _, head_size = k.shape
            self.keys[layer] = k.new_empty(batch, heads, self.capacity, head_size)
            self.values[layer] = v.new_empty(batch, heads, self.capacity, head_size)
        keys, values = self.keys[layer], self.values[layer]
        assert keys is not None and values is not None
        end = self.length + k.shape[2]
        keys[:, :, self.length : end] = k
        values[:, :, self.length : end] = v
        return keys[:, :, :end], values[:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer, self.n_head, self.dropout = layer, config.n_head, config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.proj.residual = True  # type: ignore[assignment]  # a marker: scaled at init
        head_size = config.n_embd // config.n_head
        self.rotary = Rotary(head_size, config.block_size) if config.positions == "rotary" else None

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (t.view(batch, length, self.n_head, -1).transpose(1, 2) for t in self.qkv(x).split(width, dim=2))
        start = cache.length if cache is not None else 0
        if self.rotary is not None:
            q, k = self.rotary(q, start), self.rotary(k, start)
        mask = None
        if cache is not None:
            k, v = cache.extend(self.layer, k, v)
            if start and length > 1:  # new tokens after cached ones: each sees the cache and its past
                mask = torch.ones(length, start + length, dtype=torch.bool, device=x.device).tril(start)
        causal = mask is None and start == 0  # a lone new token attends to everything cached
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.up = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.down = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.down.residual = True  # type: ignore[assignment]  # a marker: scaled at init
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, padded vocab). The network DeepSpeed wraps."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.positions == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one matrix reads and writes tokens
        self.activation_checkpointing = False
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.config.n_layer) if getattr(module, "residual", False) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """With a `cache`, `ids` are the tokens after those it holds, and join them."""
        start = cache.length if cache is not None else 0
        end = start + ids.shape[1]
        if end > self.config.block_size:
            raise ValueError(f"sequence of {end} tokens is longer than block_size={self.config.block_size}")
        x = self.wte(ids)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, end, device=ids.device))
        x = self.drop(x)
        recompute = self.activation_checkpointing and self.training  # memory for compute, for long contexts
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x, cache)
        if cache is not None:
            cache.length = end
        return self.lm_head(self.ln_f(x))


class GPT(LanguageFamily):
    """Decoder-only language model trained on fixed-length token blocks (seq_len + 1 tokens)."""

    config: GPTConfig

    family = "gpt"
    config_class = GPTConfig
    supports_activation_checkpointing = True
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"block_size": 256, "n_layer": 4, "n_head": 4, "n_embd": 128},  # ~1M: CPU tests
        "small": {"block_size": 1024, "n_layer": 12, "n_head": 12, "n_embd": 768},  # GPT-2 small, 124M
        "medium": {"block_size": 1024, "n_layer": 24, "n_head": 16, "n_embd": 1024},  # 350M
        "large": {"block_size": 1024, "n_layer": 36, "n_head": 20, "n_embd": 1280},  # 760M
        "xl": {"block_size": 1024, "n_layer": 48, "n_head": 25, "n_embd": 1600},  # 1.3B
    }

    def __init__(self, config: GPTConfig):
        super().__init__(config)
        self.transformer = Transformer(config)

    def networks(self) -> dict[str, nn.Module]:
        return {"transformer": self.transformer}

    def set_activation_checkpointing(self, enabled: bool) -> None:
        self.transformer.activation_checkpointing = enabled

    def num_parameters(self, include_embedding: bool = True) -> int:
        count = parameter_count(self.transformer.parameters())  # tied weights count once
        if not include_embedding and self.transformer.wpe is not None:
            count -= parameter_count([self.transformer.wpe.weight])
        return count

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, forward and backward: 6N for the weights' matmuls plus
        12·L·H·Q·T for attention (PaLM appendix B; nanoGPT's estimate_mfu)."""
        c = self.config
        return (
            6 * self.num_parameters(include_embedding=False)
            + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * seq_len
        )

    def logits(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Float logits over the real vocabulary (the padding columns dropped)."""
        return self.net("transformer")(ids, cache=cache).float()[..., : self.config.vocab_size]

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-token cross-entropy in nats over each block's seq_len predictions."""
        tokens = batch["tokens"].long()
        logits = self.logits(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    @property
    def context_size(self) -> int | None:
        return self.config.block_size

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
        """Extend `ids` (B, T) by sampling; the context is cut from the left to block_size.
        While the text fits the context, earlier tokens' keys and values are reused (`use_cache`);
        past it, the window slides and moves every position, so each token is computed afresh."""
        block = self.config.block_size
        cache = KVCache(self.config) if use_cache and ids.shape[1] < block else None
        for _ in range(max_new_tokens):
            if cache is not None and ids.shape[1] <= block:
                logits = self.logits(ids[:, cache.length :], cache)[:, -1, :]
            else:
                logits = self.logits(ids[:, -block:])[:, -1, :]
            ids = torch.cat((ids, next_token(logits, temperature, top_k, generator)), dim=1)
        return ids

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, start_id: int = 0) -> torch.Tensor:
        """`n` token sequences of block_size tokens, each started from `start_id`."""
        device = next(self.transformer.parameters()).device
        start = torch.full((n, 1), start_id, dtype=torch.long, device=device)
        return self.generate(start, self.config.block_size - 1, generator=generator)
