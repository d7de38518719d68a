"""The text modality: documents tokenized (byte or BPE) and packed into blocks of seq_len + 1 ids."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from data_prep.columns import Columns, fixed_width
from data_prep.manifest import Manifest
from data_prep.modalities.modality import Modality
from data_prep.modalities.text.settings import TextPrep
from data_prep.text_tokenizer import TOKENIZER_FILE


class TextModality(Modality[TextPrep]):
    name: ClassVar[str] = "text"
    settings = TextPrep
    placeholder_inputs: ClassVar[dict[str, Any]] = {"vocab_size": 257}

    def build(self, config: TextPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
        from data_prep.modalities.text.build import build_text  # Ray Data, when a dataset is built

        return build_text(config, storage, key, description)

    def decode(self, table: pa.Table, manifest: Manifest) -> Columns:
        """`tokens` (N, seq_len + 1) int32: a block's inputs and, shifted by one, its targets."""
        return {"tokens": fixed_width(table.column("tokens"), "<i4", (manifest.tokens.seq_len + 1,)).astype(np.int32)}

    def row_bytes(self, manifest: Manifest) -> int:
        return (manifest.tokens.seq_len + 1) * 4  # a block of int32 ids

    def summary(self, manifest: Manifest) -> dict[str, Any]:
        return {"tokens": manifest.tokens.tokens_in_blocks, "vocab_size": manifest.tokens.vocab_size}

    def model_inputs(self, manifest: Manifest) -> dict[str, Any]:
        return {"vocab_size": manifest.tokens.vocab_size}

    def model_files(self, manifest: Manifest) -> dict[str, str]:
        return {TOKENIZER_FILE: manifest.tokenizer_uri}  # a served model decodes with the data's tokenizer

    def tokens_per_row(self, manifest: Manifest) -> int | None:
        return manifest.tokens.seq_len
