"""The `data:` fields that shape a text dataset: the tokenizer and the block length."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from data_prep.modalities.base import SequencePrep, Strict


class TokenizerConfig(Strict):
    kind: Literal["byte", "bpe"] = "byte"
    vocab_size: int = Field(4096, ge=300, le=65536, description="bpe only; byte is always 257")
    sample_mb: float = Field(
        256, gt=0, description="bpe only: learns its merges from a seeded sample of this much train text"
    )


class TextPrep(SequencePrep):
    split_seed: int = 0
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
